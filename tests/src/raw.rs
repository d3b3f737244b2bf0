//! A byte-level PostgreSQL protocol client, for feeding the gateway (and
//! PostgreSQL, for comparison) malformed and hostile input.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One backend message: its type byte and body (without the length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Type byte (`b'E'`, `b'Z'`, ...).
    pub tag: u8,
    /// Body.
    pub body: Vec<u8>,
}

impl Msg {
    /// The fields of an ErrorResponse / NoticeResponse, by field code.
    pub fn fields(&self) -> Vec<(u8, String)> {
        parse_fields(&self.body)
    }

    /// Field `code` of an ErrorResponse / NoticeResponse.
    pub fn field(&self, code: u8) -> Option<String> {
        self.fields()
            .into_iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v)
    }

    /// SQLSTATE of an ErrorResponse.
    pub fn sqlstate(&self) -> Option<String> {
        (self.tag == b'E').then(|| self.field(b'C')).flatten()
    }

    /// For display in assertion messages.
    pub fn describe(&self) -> String {
        match self.tag {
            b'E' | b'N' => format!("{}{:?}", self.tag as char, self.fields()),
            _ => format!("{}({} bytes)", self.tag as char, self.body.len()),
        }
    }
}

/// Parses the `code value\0 ... \0` fields of ErrorResponse / NoticeResponse.
pub fn parse_fields(body: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&code, tail)) = rest.split_first() {
        if code == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        out.push((code, String::from_utf8_lossy(&tail[..end]).into_owned()));
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    out
}

/// What reading produced.
#[derive(Debug)]
pub enum Read {
    /// A complete message.
    Msg(Msg),
    /// The peer closed the connection (cleanly or with a reset).
    Closed,
    /// Nothing within the timeout.
    Timeout,
}

/// A raw client connection.
pub struct RawConn {
    /// The socket.
    pub stream: TcpStream,
    /// Process id and secret from BackendKeyData, after login.
    pub key: Option<(i32, i32)>,
    /// ParameterStatus values received during login.
    pub params: Vec<(String, String)>,
}

impl RawConn {
    /// Opens a TCP connection.
    pub async fn connect(addr: SocketAddr) -> Result<RawConn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(RawConn {
            stream,
            key: None,
            params: Vec::new(),
        })
    }

    /// Writes raw bytes. A write error (peer already closed) is returned.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    /// Reads one message (type byte + int32 length + body).
    pub async fn read(&mut self, timeout: Duration) -> Result<Read> {
        match tokio::time::timeout(timeout, self.read_inner()).await {
            Err(_) => Ok(Read::Timeout),
            Ok(r) => r,
        }
    }

    async fn read_inner(&mut self) -> Result<Read> {
        let mut head = [0u8; 5];
        match self.stream.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if is_closed(&e) => return Ok(Read::Closed),
            Err(e) => return Err(e.into()),
        }
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        if !(4..=(1 << 30)).contains(&len) {
            bail!(
                "server sent a message {:?} with invalid length {len}",
                head[0] as char
            );
        }
        let mut body = vec![0u8; len as usize - 4];
        match self.stream.read_exact(&mut body).await {
            Ok(_) => Ok(Read::Msg(Msg { tag: head[0], body })),
            Err(e) if is_closed(&e) => Ok(Read::Closed),
            Err(e) => Err(e.into()),
        }
    }

    /// Reads one message, failing on close or timeout.
    pub async fn expect_msg(&mut self, timeout: Duration) -> Result<Msg> {
        match self.read(timeout).await? {
            Read::Msg(m) => Ok(m),
            Read::Closed => bail!("connection closed while a message was expected"),
            Read::Timeout => bail!("no message within {timeout:?}"),
        }
    }

    /// Reads messages until ReadyForQuery; fails on close or timeout.
    pub async fn until_ready(&mut self, timeout: Duration) -> Result<Vec<Msg>> {
        let mut out = Vec::new();
        loop {
            let m = self
                .expect_msg(timeout)
                .await
                .with_context(|| format!("after {:?}", describe_all(&out)))?;
            let done = m.tag == b'Z';
            out.push(m);
            if done {
                return Ok(out);
            }
        }
    }

    /// Reads everything until the peer closes the connection, failing if it
    /// stays open longer than `within`.
    pub async fn until_closed(&mut self, within: Duration) -> Result<Vec<Msg>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read(left).await {
                Ok(Read::Msg(m)) => out.push(m),
                Ok(Read::Closed) => return Ok(out),
                Ok(Read::Timeout) => {
                    bail!(
                        "connection still open after {within:?}; received {:?}",
                        describe_all(&out)
                    )
                }
                // A malformed reply counts as an error of the server, not a close.
                Err(e) => return Err(e.context(format!("after {:?}", describe_all(&out)))),
            }
        }
    }

    /// Sends a StartupMessage and logs in with SCRAM-SHA-256; returns once
    /// ReadyForQuery arrives. Errors carry the server's ErrorResponse.
    pub async fn login(&mut self, user: &str, password: &str, db: &str) -> Result<()> {
        self.login_with(user, password, db, &[("application_name", "raw-test")])
            .await
    }

    /// [`login`](Self::login) with extra startup parameters.
    pub async fn login_with(
        &mut self,
        user: &str,
        password: &str,
        db: &str,
        extra: &[(&str, &str)],
    ) -> Result<()> {
        let mut params = vec![("user", user), ("database", db)];
        params.extend_from_slice(extra);
        self.send(&startup(&params)).await?;
        self.authenticate(password).await
    }

    /// Answers the authentication exchange after a StartupMessage was sent
    /// and reads until ReadyForQuery.
    pub async fn authenticate(&mut self, password: &str) -> Result<()> {
        let t = Duration::from_secs(10);
        let mut scram: Option<ScramSha256> = None;
        loop {
            let m = self.expect_msg(t).await?;
            match m.tag {
                b'R' => {
                    let code = i32::from_be_bytes(m.body[..4].try_into()?);
                    match code {
                        0 => {}
                        10 => {
                            let mechs = String::from_utf8_lossy(&m.body[4..]).into_owned();
                            if !mechs.split('\0').any(|x| x == SCRAM_SHA_256) {
                                bail!("server offers no SCRAM-SHA-256: {mechs:?}");
                            }
                            let s = ScramSha256::new(
                                password.as_bytes(),
                                ChannelBinding::unsupported(),
                            );
                            let mut buf = BytesMut::new();
                            frontend::sasl_initial_response(SCRAM_SHA_256, s.message(), &mut buf)?;
                            self.send(&buf).await?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().context("SASLContinue before SASL")?;
                            s.update(&m.body[4..])?;
                            let mut buf = BytesMut::new();
                            frontend::sasl_response(s.message(), &mut buf)?;
                            self.send(&buf).await?;
                        }
                        12 => {
                            scram
                                .as_mut()
                                .context("SASLFinal before SASL")?
                                .finish(&m.body[4..])?;
                        }
                        other => bail!("unexpected authentication request {other}"),
                    }
                }
                b'K' => {
                    let pid = i32::from_be_bytes(m.body[..4].try_into()?);
                    let key = i32::from_be_bytes(m.body[4..8].try_into()?);
                    self.key = Some((pid, key));
                }
                b'S' => {
                    let parts: Vec<String> = m
                        .body
                        .split(|&b| b == 0)
                        .map(|p| String::from_utf8_lossy(p).into_owned())
                        .collect();
                    if parts.len() >= 2 {
                        self.params.push((parts[0].clone(), parts[1].clone()));
                    }
                }
                b'E' => bail!("login refused: {}", m.describe()),
                b'N' | b'v' => {}
                b'Z' => return Ok(()),
                other => bail!("unexpected message {:?} during login", other as char),
            }
        }
    }

    /// Sends a simple Query and collects the replies until ReadyForQuery.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Msg>> {
        self.send(&query(sql)).await?;
        self.until_ready(Duration::from_secs(30)).await
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe
    )
}

/// Short descriptions of messages, for assertion messages.
pub fn describe_all(msgs: &[Msg]) -> Vec<String> {
    msgs.iter().map(Msg::describe).collect()
}

/// The first ErrorResponse among `msgs`.
pub fn first_error(msgs: &[Msg]) -> Option<&Msg> {
    msgs.iter().find(|m| m.tag == b'E')
}

/// A StartupMessage (protocol 3.0) with the given parameters.
pub fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = BytesMut::new();
    frontend::startup_message(params.iter().copied(), &mut buf).expect("startup message");
    buf.to_vec()
}

/// A tagged message with a correct length.
pub fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(b'Q', &body)
}

/// A tagged message header declaring `len` (the length field, which counts
/// itself) with no body.
pub fn header(tag: u8, len: u32) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&len.to_be_bytes());
    out
}

/// CopyData.
pub fn copy_data(data: &[u8]) -> Vec<u8> {
    message(b'd', data)
}

/// Terminate.
pub fn terminate() -> Vec<u8> {
    message(b'X', &[])
}
