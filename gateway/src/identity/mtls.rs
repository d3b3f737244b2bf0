//! Client certificates (`[auth.mtls]`): the TLS handshake verifies the chain against the
//! configured CA and the validity period (rustls/webpki); the mapping rules then turn
//! the certificate's subject CN or a subject alternative name into a user name.

use std::sync::Arc;

use anyhow::Context;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::{CertField, CertRule, MtlsConfig};

/// Verifies client certificates and maps them to user names.
pub struct CertMapper {
    verifier: Arc<dyn ClientCertVerifier>,
    rules: Vec<CertRule>,
}

impl CertMapper {
    /// Loads the CA bundle of `[auth.mtls]`.
    pub fn new(cfg: &MtlsConfig) -> anyhow::Result<Self> {
        let pem = std::fs::read(&cfg.ca)
            .with_context(|| format!("auth.mtls.ca: {}", cfg.ca.display()))?;
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots
                .add(c.with_context(|| format!("auth.mtls.ca: {}", cfg.ca.display()))?)
                .with_context(|| format!("auth.mtls.ca: {}", cfg.ca.display()))?;
        }
        anyhow::ensure!(
            !roots.is_empty(),
            "auth.mtls.ca: {}: no certificate found",
            cfg.ca.display()
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        if !cfg.required {
            builder = builder.allow_unauthenticated();
        }
        let verifier = builder.build().context("auth.mtls")?;
        let rules = if cfg.map.is_empty() {
            vec![CertRule {
                from: CertField::Cn,
                pattern: None,
                user: "{value}".into(),
            }]
        } else {
            cfg.map.clone()
        };
        Ok(CertMapper { verifier, rules })
    }

    /// The verifier the TLS acceptor uses.
    pub fn verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::clone(&self.verifier)
    }

    /// The user name of a (verified) end-entity certificate, by the first matching rule.
    pub fn user_of(&self, der: &[u8]) -> Option<String> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        self.rules.iter().find_map(|r| {
            values(&cert, r.from)
                .into_iter()
                .find(|v| r.pattern.as_deref().is_none_or(|p| matches(p, v)))
                .map(|v| {
                    let local = v.split('@').next().unwrap_or(&v).to_owned();
                    r.user.replace("{value}", &v).replace("{local}", &local)
                })
        })
    }
}

fn values(cert: &X509Certificate<'_>, field: CertField) -> Vec<String> {
    if field == CertField::Cn {
        return cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok().map(str::to_owned))
            .collect();
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match (field, n) {
            (CertField::SanDns, GeneralName::DNSName(s))
            | (CertField::SanEmail, GeneralName::RFC822Name(s))
            | (CertField::SanUri, GeneralName::URI(s)) => Some((*s).to_owned()),
            _ => None,
        })
        .collect()
}

/// Exact match, or one `*` standing for any run of characters.
fn matches(pattern: &str, value: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == value,
        Some((pre, post)) => {
            value.len() >= pre.len() + post.len() && value.starts_with(pre) && value.ends_with(post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_cn_maps_by_rules_or_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let pki = portcullis_cluster::generate_test_pki(dir.path(), &[]).unwrap();
        let pem = std::fs::read(&pki.client_cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_slice())
            .next()
            .unwrap()
            .unwrap();
        let cfg = |map: Vec<CertRule>| MtlsConfig {
            ca: pki.ca_cert.clone(),
            required: false,
            map,
        };
        let m = CertMapper::new(&cfg(Vec::new())).unwrap();
        assert_eq!(m.user_of(der.as_ref()).as_deref(), Some("alice"));
        let rule = |from, pattern: &str, user: &str| CertRule {
            from,
            pattern: Some(pattern.into()),
            user: user.into(),
        };
        let m = CertMapper::new(&cfg(vec![
            rule(CertField::SanEmail, "*", "{local}"),
            rule(CertField::Cn, "bob", "bob"),
            rule(CertField::Cn, "al*", "{value}-cert"),
        ]))
        .unwrap();
        assert_eq!(m.user_of(der.as_ref()).as_deref(), Some("alice-cert"));
        let m = CertMapper::new(&cfg(vec![rule(CertField::Cn, "bob", "bob")])).unwrap();
        assert_eq!(m.user_of(der.as_ref()), None);
    }

    #[test]
    fn wildcards() {
        assert!(matches("*@example.com", "alice@example.com"));
        assert!(!matches("*@example.com", "alice@evil.com"));
        assert!(matches("alice", "alice"));
        assert!(!matches("a*a", "a"));
    }
}
