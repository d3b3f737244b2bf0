use std::sync::Arc;

use anyhow::Context;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTlsConfig;

/// Builds the acceptor for client TLS from PEM files; with `client_certs`, clients may
/// (or must, as the verifier says) present certificates it verifies.
pub fn server_tls_acceptor(
    cfg: &ServerTlsConfig,
    client_certs: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
) -> anyhow::Result<TlsAcceptor> {
    let cert_pem = std::fs::read(&cfg.cert)
        .with_context(|| format!("server.tls.cert: {}", cfg.cert.display()))?;
    let key_pem = std::fs::read(&cfg.key)
        .with_context(|| format!("server.tls.key: {}", cfg.key.display()))?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "server.tls.cert: {}: not PEM certificates",
                cfg.cert.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "server.tls.cert: {}: no certificate found",
        cfg.cert.display()
    );
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .with_context(|| format!("server.tls.key: {}: not a PEM key", cfg.key.display()))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "server.tls.key: {}: no private key found",
                cfg.key.display()
            )
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?;
    let builder = match client_certs {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("server.tls: certificate and key do not match")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
