//! The identity provider's signing keys (a JWKS from a file or a URL), cached.
//!
//! Keys are fetched on first use and again after `jwks_cache_secs`. A token naming a
//! key id that is not in the cached set triggers one refetch (key rotation), at most
//! once per `jwks_min_refresh_ms`, so a flood of tokens with made-up key ids cannot
//! turn the gateway into a load generator against the identity provider.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio_rustls::TlsConnector;

use crate::config::JwtConfig;

/// Largest JWKS document accepted, in bytes.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Time allowed for fetching a JWKS URL.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

enum Source {
    File(PathBuf),
    Url { url: hyper::Uri, tls: TlsConnector },
}

#[derive(Default)]
struct State {
    keys: Arc<Vec<Jwk>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

/// A cached JWKS.
pub struct Jwks {
    source: Source,
    cache_for: Duration,
    min_refresh: Duration,
    state: tokio::sync::Mutex<State>,
}

impl Jwks {
    /// The key source of `[auth.jwt]`. Nothing is fetched yet.
    pub fn new(cfg: &JwtConfig) -> anyhow::Result<Self> {
        let source = match (&cfg.jwks_file, &cfg.jwks_url) {
            (Some(f), _) => Source::File(f.clone()),
            (None, Some(u)) => Source::Url {
                url: u.parse().context("auth.jwt.jwks_url")?,
                tls: tls_connector(cfg)?,
            },
            (None, None) => bail!("auth.jwt: set jwks_file or jwks_url"),
        };
        Ok(Jwks {
            source,
            cache_for: Duration::from_secs(cfg.jwks_cache_secs),
            min_refresh: Duration::from_millis(cfg.jwks_min_refresh_ms),
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// Loads the keys now (at start, so a broken source is reported early). A failure
    /// is logged, not fatal: the provider may be down while the gateway starts.
    pub async fn prime(&self) {
        let mut st = self.state.lock().await;
        if let Err(e) = self.refresh(&mut st).await {
            tracing::warn!(error = %format!("{e:#}"), "JWKS not loaded at start; retrying at the first token");
        }
    }

    /// The key for a token header: by `kid`, or the only key fitting `alg` when the
    /// token names none.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, String> {
        let mut st = self.state.lock().await;
        let stale = st.fetched.is_none_or(|t| t.elapsed() >= self.cache_for);
        if stale
            && self.may_refresh(&st)
            && let Err(e) = self.refresh(&mut st).await
        {
            tracing::warn!(error = %format!("{e:#}"), "JWKS refresh failed; using the cached keys");
        }
        if let Some(k) = find(&st.keys, kid, alg) {
            return k;
        }
        // Unknown key id: the provider may have rotated its keys.
        if kid.is_some() && self.may_refresh(&st) {
            match self.refresh(&mut st).await {
                Ok(()) => {
                    if let Some(k) = find(&st.keys, kid, alg) {
                        return k;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "JWKS refetch for an unknown key id failed");
                    return Err("the identity provider's keys cannot be fetched".into());
                }
            }
        }
        if st.fetched.is_none() {
            return Err("the identity provider's keys are not available yet".into());
        }
        Err(match kid {
            Some(k) => format!("unknown signing key id \"{k}\""),
            None => "no signing key fits the token (it names no key id)".into(),
        })
    }

    fn may_refresh(&self, st: &State) -> bool {
        st.attempted.is_none_or(|t| t.elapsed() >= self.min_refresh)
    }

    async fn refresh(&self, st: &mut State) -> anyhow::Result<()> {
        st.attempted = Some(Instant::now());
        let bytes = match &self.source {
            Source::File(p) => tokio::fs::read(p)
                .await
                .with_context(|| format!("reading {}", p.display()))?,
            Source::Url { url, tls } => tokio::time::timeout(FETCH_TIMEOUT, fetch(url, tls))
                .await
                .map_err(|_| anyhow::anyhow!("fetching {url}: timed out"))?
                .with_context(|| format!("fetching {url}"))?,
        };
        let keys = parse(&bytes)?;
        tracing::info!(keys = keys.len(), "JWKS loaded");
        st.keys = Arc::new(keys);
        st.fetched = Some(Instant::now());
        Ok(())
    }
}

/// Parses a JWKS document, keeping the public keys this gateway can use (RSA, EC,
/// OKP); symmetric (`oct`) and unparseable entries are skipped.
pub fn parse(bytes: &[u8]) -> anyhow::Result<Vec<Jwk>> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc = serde_json::from_slice(bytes).context("not a JWKS document")?;
    Ok(doc
        .keys
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Jwk>(v).ok())
        .filter(|k| !matches!(k.algorithm, AlgorithmParameters::OctetKey(_)))
        .collect())
}

fn fits(k: &Jwk, alg: Algorithm) -> bool {
    use Algorithm as A;
    match &k.algorithm {
        AlgorithmParameters::RSA(_) => matches!(
            alg,
            A::RS256 | A::RS384 | A::RS512 | A::PS256 | A::PS384 | A::PS512
        ),
        AlgorithmParameters::EllipticCurve(_) => matches!(alg, A::ES256 | A::ES384),
        AlgorithmParameters::OctetKeyPair(_) => alg == A::EdDSA,
        AlgorithmParameters::OctetKey(_) => false,
    }
}

fn find(keys: &[Jwk], kid: Option<&str>, alg: Algorithm) -> Option<Result<DecodingKey, String>> {
    let key = match kid {
        Some(kid) => keys
            .iter()
            .find(|k| k.common.key_id.as_deref() == Some(kid))?,
        None => {
            let mut fitting = keys.iter().filter(|k| fits(k, alg));
            let first = fitting.next()?;
            if fitting.next().is_some() {
                return None;
            }
            first
        }
    };
    if !fits(key, alg) {
        return Some(Err(format!(
            "the signing key does not fit algorithm {alg:?}"
        )));
    }
    Some(DecodingKey::from_jwk(key).map_err(|e| format!("unusable signing key: {e}")))
}

fn tls_connector(cfg: &JwtConfig) -> anyhow::Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    match &cfg.jwks_ca {
        Some(ca) => {
            let pem =
                std::fs::read(ca).with_context(|| format!("auth.jwt.jwks_ca: {}", ca.display()))?;
            for c in rustls_pemfile::certs(&mut pem.as_slice()) {
                roots
                    .add(c.with_context(|| format!("auth.jwt.jwks_ca: {}", ca.display()))?)
                    .context("auth.jwt.jwks_ca")?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// GETs `url` (HTTP/1.1, `http` or `https`), refusing bodies over [`MAX_JWKS_BYTES`].
async fn fetch(url: &hyper::Uri, tls: &TlsConnector) -> anyhow::Result<Vec<u8>> {
    let host = url.host().context("the URL has no host")?.to_owned();
    let https = match url.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        other => bail!("unsupported URL scheme {other:?}"),
    };
    let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host.trim_matches(['[', ']']), port)).await?;
    if https {
        let name =
            rustls_pki_types::ServerName::try_from(host.trim_matches(['[', ']']).to_owned())?;
        let stream = tls.connect(name, tcp).await?;
        get(TokioIo::new(stream), url, &host).await
    } else {
        get(TokioIo::new(tcp), url, &host).await
    }
}

async fn get<T>(io: T, url: &hyper::Uri, host: &str) -> anyhow::Result<Vec<u8>>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    let conn = tokio::spawn(conn);
    let path = url.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let req = hyper::Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    if !status.is_success() {
        conn.abort();
        bail!("HTTP status {status}");
    }
    let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading the body: {e}"))?
        .to_bytes();
    conn.abort();
    Ok(body.to_vec())
}
