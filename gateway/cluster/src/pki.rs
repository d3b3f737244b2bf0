//! A throwaway certificate authority for TLS and mTLS tests.
//!
//! [`generate_test_pki`] writes, into one directory:
//!
//! | file         | contents                                                   |
//! |--------------|------------------------------------------------------------|
//! | `ca.pem`     | self-signed CA certificate ("Portcullis Test CA")          |
//! | `ca.key`     | its private key (0600), to issue more certificates         |
//! | `server.pem` | server certificate signed by the CA, SANs = server names   |
//! | `server.key` | its private key (0600)                                     |
//! | `client.pem` | client certificate signed by the CA, CN `alice`            |
//! | `client.key` | its private key (0600)                                     |
//!
//! Keys are ECDSA P-256 (PKCS#8 PEM), accepted by OpenSSL (PostgreSQL, libpq)
//! and rustls alike. Certificates are valid from 2000 to 2099.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, date_time_ymd,
};

use crate::cluster::TlsFiles;
use crate::error::{ClusterError, Result};

/// Common name of the client certificate written by [`generate_test_pki`].
pub const TEST_CLIENT_CN: &str = "alice";

/// Common name of the test CA.
pub const TEST_CA_CN: &str = "Portcullis Test CA";

/// Paths of the files written by [`generate_test_pki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPki {
    /// Directory holding all the files.
    pub dir: PathBuf,
    /// CA certificate (`ca.pem`): use as `sslrootcert` / trust anchor.
    pub ca_cert: PathBuf,
    /// CA private key (`ca.key`).
    pub ca_key: PathBuf,
    /// Server certificate (`server.pem`).
    pub server_cert: PathBuf,
    /// Server private key (`server.key`).
    pub server_key: PathBuf,
    /// Client certificate (`client.pem`, CN [`TEST_CLIENT_CN`]).
    pub client_cert: PathBuf,
    /// Client private key (`client.key`).
    pub client_key: PathBuf,
}

impl TestPki {
    /// The server certificate and key, ready for
    /// [`ClusterOptions::tls`](crate::ClusterOptions::tls).
    pub fn server_tls(&self) -> TlsFiles {
        TlsFiles {
            cert_pem: self.server_cert.clone(),
            key_pem: self.server_key.clone(),
        }
    }

    /// Issues another client certificate signed by this CA with common name
    /// `cn`, written as `<file_stem>.pem` / `<file_stem>.key` in [`dir`](Self::dir).
    /// Returns (certificate, key) paths.
    pub fn issue_client_cert(&self, cn: &str, file_stem: &str) -> Result<(PathBuf, PathBuf)> {
        let ca_key_pem = fs::read_to_string(&self.ca_key)
            .map_err(|e| ClusterError::io(format!("reading {}", self.ca_key.display()), e))?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        write_leaf(&self.dir, file_stem, &client_params(cn), &issuer)
    }

    /// Like [`issue_client_cert`](Self::issue_client_cert), with an email (rfc822)
    /// subject alternative name.
    pub fn issue_client_cert_with_email(
        &self,
        cn: &str,
        email: &str,
        file_stem: &str,
    ) -> Result<(PathBuf, PathBuf)> {
        let ca_key_pem = fs::read_to_string(&self.ca_key)
            .map_err(|e| ClusterError::io(format!("reading {}", self.ca_key.display()), e))?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let mut params = client_params(cn);
        params
            .subject_alt_names
            .push(rcgen::SanType::Rfc822Name(email.try_into()?));
        write_leaf(&self.dir, file_stem, &params, &issuer)
    }

    /// Like [`issue_client_cert`](Self::issue_client_cert), valid only between the two
    /// dates (year, month, day) — e.g. an already expired certificate.
    pub fn issue_client_cert_valid(
        &self,
        cn: &str,
        file_stem: &str,
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> Result<(PathBuf, PathBuf)> {
        let ca_key_pem = fs::read_to_string(&self.ca_key)
            .map_err(|e| ClusterError::io(format!("reading {}", self.ca_key.display()), e))?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let mut params = client_params(cn);
        params.not_before = date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = date_time_ymd(not_after.0, not_after.1, not_after.2);
        write_leaf(&self.dir, file_stem, &params, &issuer)
    }

    /// Issues another server certificate signed by this CA for `names` (DNS
    /// names or IP addresses), written as `<file_stem>.pem` / `<file_stem>.key`.
    pub fn issue_server_cert(&self, names: &[&str], file_stem: &str) -> Result<TlsFiles> {
        let ca_key_pem = fs::read_to_string(&self.ca_key)
            .map_err(|e| ClusterError::io(format!("reading {}", self.ca_key.display()), e))?;
        let issuer = Issuer::new(ca_params(), KeyPair::from_pem(&ca_key_pem)?);
        let (cert_pem, key_pem) =
            write_leaf(&self.dir, file_stem, &server_params(names)?, &issuer)?;
        Ok(TlsFiles { cert_pem, key_pem })
    }
}

/// Generates a test CA, a server certificate for `server_names` (DNS names
/// or IP addresses; empty means `localhost` + `127.0.0.1`) and a client
/// certificate with CN `alice`, all written into `dir` (created if missing).
pub fn generate_test_pki(dir: &Path, server_names: &[&str]) -> Result<TestPki> {
    fs::create_dir_all(dir)
        .map_err(|e| ClusterError::io(format!("creating {}", dir.display()), e))?;

    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params().self_signed(&ca_key)?;
    write_file(&dir.join("ca.pem"), ca_cert.pem().as_bytes(), 0o644)?;
    write_file(
        &dir.join("ca.key"),
        ca_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    let issuer = Issuer::new(ca_params(), ca_key);

    let names: &[&str] = if server_names.is_empty() {
        &["localhost", "127.0.0.1"]
    } else {
        server_names
    };
    let (server_cert, server_key) = write_leaf(dir, "server", &server_params(names)?, &issuer)?;
    let (client_cert, client_key) =
        write_leaf(dir, "client", &client_params(TEST_CLIENT_CN), &issuer)?;

    Ok(TestPki {
        dir: dir.to_path_buf(),
        ca_cert: dir.join("ca.pem"),
        ca_key: dir.join("ca.key"),
        server_cert,
        server_key,
        client_cert,
        client_key,
    })
}

/// The CA's parameters. Deterministic, so the CA can be rebuilt from its key.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(TEST_CA_CN);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params);
    params
}

fn server_params(names: &[&str]) -> Result<CertificateParams> {
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name = dn(names.first().copied().unwrap_or("localhost"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    Ok(params)
}

fn client_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params);
    params
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Portcullis Tests");
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    params.not_before = date_time_ymd(2000, 1, 1);
    params.not_after = date_time_ymd(2099, 12, 31);
}

/// Generates a key, signs `params` with `issuer`, writes `<stem>.pem` and
/// `<stem>.key` (0600) into `dir`.
fn write_leaf(
    dir: &Path,
    stem: &str,
    params: &CertificateParams,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(PathBuf, PathBuf)> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    write_file(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok((cert_path, key_path))
}

/// Writes a file with `mode`, replacing any existing one.
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))
}
