use std::time::Duration;

use bytes::BytesMut;
use portcullis_auth::{UpstreamAuthRequest, UpstreamAuthResponse, UpstreamAuthenticator};
use portcullis_wire::backend::{
    AuthRequest, ErrorFields, decode_backend_key_data, decode_parameter_status, tag,
};
use portcullis_wire::frontend::{PasswordMessage, SaslInitialResponse};
use portcullis_wire::{
    CancelKey, FrameDecoder, Limits, StartupMessage, encode_cancel_request, encode_ssl_request,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::stream::Stream;

/// Where and how to log in upstream for one session.
#[derive(Clone)]
pub struct UpstreamTarget {
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Database name upstream.
    pub dbname: String,
    /// The gateway's own user.
    pub user: String,
    /// Its password.
    pub password: Option<String>,
    /// TLS, when configured.
    pub tls: Option<TlsConnector>,
    /// Time allowed for connect + login.
    pub timeout: Duration,
}

/// A logged-in upstream connection, ready for queries.
pub struct Upstream {
    /// The connection.
    pub stream: Stream,
    /// ParameterStatus values the server reported, in order.
    pub parameters: Vec<(String, String)>,
    /// The server's own cancel key.
    pub key: CancelKey,
    /// Bytes read past the first ReadyForQuery (normally empty).
    pub leftover: BytesMut,
}

/// Failures connecting upstream.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The server answered with an error (e.g. 3D000 for a missing database); relay it.
    #[error("upstream refused: {}", .0.message().unwrap_or("?"))]
    Server(ErrorFields),
    /// Network, TLS, protocol or authentication trouble on the gateway's side.
    #[error("{0}")]
    Other(String),
}

impl From<std::io::Error> for UpstreamError {
    fn from(e: std::io::Error) -> Self {
        UpstreamError::Other(format!("upstream i/o: {e}"))
    }
}

/// Connects and logs in with the gateway's credentials, passing `params` (the client's
/// session parameters, already filtered) in the StartupMessage.
pub async fn connect(
    target: &UpstreamTarget,
    params: Vec<(String, String)>,
) -> Result<Upstream, UpstreamError> {
    match tokio::time::timeout(target.timeout, connect_inner(target, params)).await {
        Ok(r) => r,
        Err(_) => Err(UpstreamError::Other(format!(
            "timed out connecting to upstream {}:{}",
            target.host, target.port
        ))),
    }
}

async fn connect_inner(
    target: &UpstreamTarget,
    params: Vec<(String, String)>,
) -> Result<Upstream, UpstreamError> {
    let tcp = TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| {
            UpstreamError::Other(format!(
                "cannot connect to upstream {}:{}: {e}",
                target.host, target.port
            ))
        })?;
    tcp.set_nodelay(true)?;
    let mut stream = match &target.tls {
        None => Stream::Plain(tcp),
        Some(connector) => start_tls(tcp, connector, &target.host).await?,
    };
    let mut startup = StartupMessage {
        minor: 0,
        params: Vec::with_capacity(params.len() + 2),
    };
    startup.params.push(("user".into(), target.user.clone()));
    startup
        .params
        .push(("database".into(), target.dbname.clone()));
    startup.params.extend(params);
    let mut out = BytesMut::new();
    startup.encode(&mut out);
    stream.write_all(&out).await?;

    let decoder = FrameDecoder::new(Limits::default());
    let mut auth = UpstreamAuthenticator::new(&target.user, target.password.as_deref());
    let mut buf = BytesMut::with_capacity(4096);
    let mut parameters = Vec::new();
    let mut key = CancelKey { pid: 0, secret: 0 };
    loop {
        let frame = loop {
            if let Some(f) = decoder
                .decode(&mut buf)
                .map_err(|e| UpstreamError::Other(e.to_string()))?
            {
                break f;
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(UpstreamError::Other(
                    "upstream closed the connection during login".into(),
                ));
            }
        };
        match frame.tag() {
            tag::AUTHENTICATION => {
                let req = AuthRequest::decode(frame.body())
                    .map_err(|e| UpstreamError::Other(e.to_string()))?;
                let req = match req {
                    AuthRequest::Ok => UpstreamAuthRequest::Ok,
                    AuthRequest::Cleartext => UpstreamAuthRequest::Cleartext,
                    AuthRequest::Md5 { salt } => UpstreamAuthRequest::Md5 { salt },
                    AuthRequest::Sasl { mechanisms } => UpstreamAuthRequest::Sasl { mechanisms },
                    AuthRequest::SaslContinue(d) => UpstreamAuthRequest::SaslContinue(d),
                    AuthRequest::SaslFinal(d) => UpstreamAuthRequest::SaslFinal(d),
                    AuthRequest::Other(n) => UpstreamAuthRequest::Other(n),
                };
                let mut out = BytesMut::new();
                match auth
                    .step(req)
                    .map_err(|e| UpstreamError::Other(format!("upstream authentication: {e}")))?
                {
                    UpstreamAuthResponse::None => {}
                    UpstreamAuthResponse::Password(p) => PasswordMessage::encode(&p, &mut out),
                    UpstreamAuthResponse::SaslInitial { mechanism, data } => {
                        SaslInitialResponse::encode(&mechanism, &data, &mut out)
                    }
                    UpstreamAuthResponse::SaslResponse(d) => PasswordMessage::encode(&d, &mut out),
                }
                if !out.is_empty() {
                    stream.write_all(&out).await?;
                    stream.flush().await?;
                }
            }
            tag::PARAMETER_STATUS => {
                let (k, v) = decode_parameter_status(frame.body())
                    .map_err(|e| UpstreamError::Other(e.to_string()))?;
                parameters.push((k.to_owned(), v.to_owned()));
            }
            tag::BACKEND_KEY_DATA => {
                key = decode_backend_key_data(frame.body())
                    .map_err(|e| UpstreamError::Other(e.to_string()))?;
            }
            tag::ERROR_RESPONSE => {
                let fields = ErrorFields::decode(tag::ERROR_RESPONSE, frame.body())
                    .map_err(|e| UpstreamError::Other(e.to_string()))?;
                return Err(UpstreamError::Server(fields));
            }
            tag::READY_FOR_QUERY => {
                return Ok(Upstream {
                    stream,
                    parameters,
                    key,
                    leftover: buf,
                });
            }
            // NoticeResponse and NegotiateProtocolVersion during login are not for the client.
            _ => {}
        }
    }
}

async fn start_tls(
    mut tcp: TcpStream,
    connector: &TlsConnector,
    host: &str,
) -> Result<Stream, UpstreamError> {
    let mut out = BytesMut::new();
    encode_ssl_request(&mut out);
    tcp.write_all(&out).await?;
    let mut answer = [0u8; 1];
    tcp.read_exact(&mut answer).await?;
    if answer[0] != b'S' {
        return Err(UpstreamError::Other(
            "upstream server does not support TLS".into(),
        ));
    }
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| UpstreamError::Other(format!("invalid upstream host name {host:?}: {e}")))?;
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Other(format!("upstream TLS handshake failed: {e}")))?;
    Ok(Stream::ClientTls(Box::new(tls)))
}

/// Sends a CancelRequest for `key` to the upstream server (on a new plain connection,
/// as libpq does).
pub async fn send_cancel(host: &str, port: u16, key: CancelKey) -> std::io::Result<()> {
    let mut tcp = TcpStream::connect((host, port)).await?;
    let mut out = BytesMut::new();
    encode_cancel_request(&mut out, key);
    tcp.write_all(&out).await?;
    // The server closes the connection without answering.
    let mut sink = [0u8; 1];
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read(&mut sink)).await;
    Ok(())
}
