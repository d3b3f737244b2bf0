//! The client side: the gateway logging in to an upstream PostgreSQL server with its own
//! credentials (trust, cleartext, md5 or SCRAM-SHA-256).
//!
//! The wire layer feeds each `Authentication*` message to
//! [`UpstreamAuthenticator::step`] (parsed with [`UpstreamAuthRequest::parse`] or by
//! itself) and sends back whatever [`UpstreamAuthResponse`] it returns, in a `p`
//! message whose payload [`UpstreamAuthResponse::message_payload`] builds.

use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

use crate::AuthError;
use crate::messages;
use crate::server::SCRAM_SHA_256;

/// The mechanism name of SCRAM with channel binding, which the gateway cannot use yet.
const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

/// An `Authentication*` request from the upstream server (message type `R`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuthRequest<'a> {
    /// `AuthenticationOk` (code 0).
    Ok,
    /// `AuthenticationCleartextPassword` (code 3).
    Cleartext,
    /// `AuthenticationMD5Password` (code 5) with its 4-byte salt.
    Md5 {
        /// The random salt to hash with.
        salt: [u8; 4],
    },
    /// `AuthenticationSASL` (code 10) with the mechanisms the server offers.
    Sasl {
        /// Mechanism names, in the server's order of preference.
        mechanisms: Vec<&'a str>,
    },
    /// `AuthenticationSASLContinue` (code 11) with the server-first-message.
    SaslContinue(&'a [u8]),
    /// `AuthenticationSASLFinal` (code 12) with the server-final-message.
    SaslFinal(&'a [u8]),
    /// Any other code: Kerberos V5 (2), SCM credentials (6), GSSAPI (7, 8), SSPI (9), or
    /// unknown. None is supported.
    Other(i32),
}

impl<'a> UpstreamAuthRequest<'a> {
    /// Parses the body of an `Authentication*` message: everything after the type byte
    /// and the length, i.e. an Int32 code followed by code-specific data.
    pub fn parse(body: &'a [u8]) -> Result<Self, AuthError> {
        let (code, rest) = body
            .split_first_chunk::<4>()
            .ok_or_else(|| AuthError::upstream("authentication request shorter than 4 bytes"))?;
        let code = i32::from_be_bytes(*code);
        let expect_empty = |req: UpstreamAuthRequest<'a>| {
            if rest.is_empty() {
                Ok(req)
            } else {
                Err(AuthError::upstream(format!(
                    "unexpected data after authentication request code {code}"
                )))
            }
        };
        match code {
            0 => expect_empty(UpstreamAuthRequest::Ok),
            3 => expect_empty(UpstreamAuthRequest::Cleartext),
            5 => <[u8; 4]>::try_from(rest)
                .map(|salt| UpstreamAuthRequest::Md5 { salt })
                .map_err(|_| AuthError::upstream("MD5 request without a 4-byte salt")),
            10 => parse_mechanisms(rest).map(|mechanisms| UpstreamAuthRequest::Sasl { mechanisms }),
            11 => Ok(UpstreamAuthRequest::SaslContinue(rest)),
            12 => Ok(UpstreamAuthRequest::SaslFinal(rest)),
            other => Ok(UpstreamAuthRequest::Other(other)),
        }
    }
}

/// Parses the NUL-terminated mechanism list of `AuthenticationSASL`, itself ended by an
/// empty name.
fn parse_mechanisms(mut rest: &[u8]) -> Result<Vec<&str>, AuthError> {
    let mut mechanisms = Vec::new();
    loop {
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| AuthError::upstream("unterminated SASL mechanism list"))?;
        let (name, tail) = rest.split_at(nul);
        rest = tail.get(1..).unwrap_or_default();
        if name.is_empty() {
            break;
        }
        let name = std::str::from_utf8(name)
            .map_err(|_| AuthError::upstream("SASL mechanism name is not UTF-8"))?;
        mechanisms.push(name);
    }
    if !rest.is_empty() {
        return Err(AuthError::upstream(
            "unexpected data after the SASL mechanism list",
        ));
    }
    Ok(mechanisms)
}

/// What to send upstream in reply to an [`UpstreamAuthRequest`].
#[derive(Clone, PartialEq, Eq)]
pub enum UpstreamAuthResponse {
    /// Nothing to send; wait for the next message.
    None,
    /// A `PasswordMessage`: its payload, NUL-terminated (cleartext or `md5...` hash).
    Password(Vec<u8>),
    /// A `SASLInitialResponse`: the chosen mechanism and the client-first-message.
    SaslInitial {
        /// The chosen mechanism (always `SCRAM-SHA-256` today).
        mechanism: String,
        /// The client-first-message.
        data: Vec<u8>,
    },
    /// A `SASLResponse` with the client-final-message.
    SaslResponse(Vec<u8>),
}

impl UpstreamAuthResponse {
    /// The payload of the `p` message to send (everything after the type byte and the
    /// length), or `None` when there is nothing to send. For `SaslInitial` this is the
    /// mechanism name, a NUL, the Int32 data length and the data. (Also `None` if SASL
    /// data exceeded `i32::MAX` bytes, which no response built here can.)
    pub fn message_payload(&self) -> Option<Vec<u8>> {
        match self {
            UpstreamAuthResponse::None => None,
            UpstreamAuthResponse::Password(payload) => Some(payload.clone()),
            UpstreamAuthResponse::SaslInitial { mechanism, data } => {
                let len = i32::try_from(data.len()).ok()?;
                let mut out = Vec::with_capacity(mechanism.len() + 5 + data.len());
                out.extend_from_slice(mechanism.as_bytes());
                out.push(0);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(data);
                Some(out)
            }
            UpstreamAuthResponse::SaslResponse(data) => Some(data.clone()),
        }
    }
}

impl std::fmt::Debug for UpstreamAuthResponse {
    /// Redacts password payloads (a cleartext password or a replayable md5 hash).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAuthResponse::None => f.write_str("None"),
            UpstreamAuthResponse::Password(_) => f.write_str("Password(<redacted>)"),
            UpstreamAuthResponse::SaslInitial { mechanism, data } => f
                .debug_struct("SaslInitial")
                .field("mechanism", mechanism)
                .field("data", &String::from_utf8_lossy(data))
                .finish(),
            UpstreamAuthResponse::SaslResponse(data) => f
                .debug_tuple("SaslResponse")
                .field(&String::from_utf8_lossy(data))
                .finish(),
        }
    }
}

/// Where the upstream login stands.
enum Stage {
    /// Nothing received yet.
    Start,
    /// A cleartext or md5 password was sent; waiting for `AuthenticationOk`.
    PasswordSent,
    /// client-first sent; waiting for `AuthenticationSASLContinue`.
    ScramFirstSent(Box<ScramSha256>),
    /// client-final sent; waiting for `AuthenticationSASLFinal`.
    ScramFinalSent(Box<ScramSha256>),
    /// The server's SCRAM signature checked out; waiting for `AuthenticationOk`.
    ScramVerified,
    /// `AuthenticationOk` received.
    Done,
    /// An error ended the login.
    Failed,
}

/// Client side of the authentication exchange, for the gateway's own login to an
/// upstream PostgreSQL server. One value per connection.
///
/// SCRAM uses `postgres_protocol`'s client without channel binding (the flag `n`), and
/// the server's final signature is verified: a server that skips it (sends
/// `AuthenticationOk` mid-exchange) is refused.
pub struct UpstreamAuthenticator {
    user: String,
    password: Option<String>,
    require_scram: bool,
    stage: Stage,
}

impl UpstreamAuthenticator {
    /// Prepares a login as `user` (the startup packet's user, used by md5) with an
    /// optional password (`None` only works against trust authentication).
    pub fn new(user: &str, password: Option<&str>) -> Self {
        UpstreamAuthenticator {
            user: user.to_string(),
            password: password.map(str::to_string),
            require_scram: false,
            stage: Stage::Start,
        }
    }

    /// Refuses any login other than a completed SCRAM-SHA-256 exchange (like libpq's
    /// `require_auth=scram-sha-256`): no trust, no cleartext, no md5. This stops an
    /// impersonated upstream from harvesting the password or skipping mutual auth.
    pub fn require_scram(mut self, required: bool) -> Self {
        self.require_scram = required;
        self
    }

    /// True once the server sent `AuthenticationOk` and everything before it checked out.
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// Handles one request from the server and says what to send back.
    ///
    /// Errors ([`AuthError::Upstream`]) are final: a request the gateway cannot honour
    /// (GSSAPI, SSPI, Kerberos, SCM credentials, SCRAM with channel binding only), a
    /// password request with no password configured, a bad server signature or nonce,
    /// or a message out of sequence.
    pub fn step(
        &mut self,
        req: UpstreamAuthRequest<'_>,
    ) -> Result<UpstreamAuthResponse, AuthError> {
        let stage = std::mem::replace(&mut self.stage, Stage::Failed);
        let (next, response) = self.advance(stage, req)?;
        self.stage = next;
        Ok(response)
    }

    /// The state machine proper; on error the stage stays `Failed`.
    fn advance(
        &self,
        stage: Stage,
        req: UpstreamAuthRequest<'_>,
    ) -> Result<(Stage, UpstreamAuthResponse), AuthError> {
        use UpstreamAuthRequest as Req;
        match (stage, req) {
            (Stage::Failed, _) => Err(AuthError::upstream(
                "authentication already failed on this connection",
            )),
            (Stage::Done, _) => Err(AuthError::upstream(
                "authentication request after AuthenticationOk",
            )),
            (_, Req::Other(code)) => Err(AuthError::upstream(format!(
                "the server requested {}, which the gateway does not support",
                method_name(code)
            ))),

            (Stage::Start, Req::Ok) if self.require_scram => Err(AuthError::upstream(
                "the server accepted the login without authentication, but SCRAM is required",
            )),
            (Stage::Start | Stage::PasswordSent | Stage::ScramVerified, Req::Ok) => {
                Ok((Stage::Done, UpstreamAuthResponse::None))
            }
            (Stage::ScramFirstSent(_) | Stage::ScramFinalSent(_), Req::Ok) => {
                Err(AuthError::upstream(
                    "the server sent AuthenticationOk before completing the SCRAM exchange",
                ))
            }

            (Stage::Start, Req::Cleartext) => {
                self.refuse_if_scram_required("a cleartext password")?;
                let mut payload = self.password("a cleartext password")?.as_bytes().to_vec();
                payload.push(0);
                Ok((Stage::PasswordSent, UpstreamAuthResponse::Password(payload)))
            }
            (Stage::Start, Req::Md5 { salt }) => {
                self.refuse_if_scram_required("an MD5 password")?;
                let password = self.password("an MD5 password")?;
                let mut payload =
                    md5_hash(self.user.as_bytes(), password.as_bytes(), salt).into_bytes();
                payload.push(0);
                Ok((Stage::PasswordSent, UpstreamAuthResponse::Password(payload)))
            }
            (Stage::Start, Req::Sasl { mechanisms }) => {
                if !mechanisms.contains(&SCRAM_SHA_256) {
                    let offered: Vec<String> = mechanisms
                        .iter()
                        .take(8)
                        .map(|m| messages::printable(m))
                        .collect();
                    let why = if mechanisms.contains(&SCRAM_SHA_256_PLUS) {
                        " (channel binding is not supported by the gateway)"
                    } else {
                        ""
                    };
                    return Err(AuthError::upstream(format!(
                        "no supported SASL mechanism among [{}]{why}",
                        offered.join(", ")
                    )));
                }
                let password = self.password("a SCRAM-SHA-256 password")?;
                let client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                let data = client.message().to_vec();
                Ok((
                    Stage::ScramFirstSent(Box::new(client)),
                    UpstreamAuthResponse::SaslInitial {
                        mechanism: SCRAM_SHA_256.to_string(),
                        data,
                    },
                ))
            }
            (Stage::ScramFirstSent(mut client), Req::SaslContinue(data)) => {
                client.update(data).map_err(|e| {
                    AuthError::upstream(format!("bad SCRAM server-first-message: {e}"))
                })?;
                let data = client.message().to_vec();
                Ok((
                    Stage::ScramFinalSent(client),
                    UpstreamAuthResponse::SaslResponse(data),
                ))
            }
            (Stage::ScramFinalSent(mut client), Req::SaslFinal(data)) => {
                client.finish(data).map_err(|e| {
                    AuthError::upstream(format!("server signature verification failed: {e}"))
                })?;
                Ok((Stage::ScramVerified, UpstreamAuthResponse::None))
            }

            (_, req) => Err(AuthError::upstream(format!(
                "unexpected authentication request {} at this point of the exchange",
                request_name(&req)
            ))),
        }
    }

    /// The configured password, or an error saying what the server asked for.
    fn password(&self, what: &str) -> Result<&str, AuthError> {
        let password = self.password.as_deref().ok_or_else(|| {
            AuthError::upstream(format!(
                "the server requested {what}, but no upstream password is configured"
            ))
        })?;
        if password.contains('\0') {
            return Err(AuthError::upstream(
                "the upstream password contains a NUL byte, which PostgreSQL cannot accept",
            ));
        }
        Ok(password)
    }

    /// Fails if only SCRAM is acceptable.
    fn refuse_if_scram_required(&self, what: &str) -> Result<(), AuthError> {
        if self.require_scram {
            return Err(AuthError::upstream(format!(
                "the server requested {what}, but SCRAM is required"
            )));
        }
        Ok(())
    }
}

impl std::fmt::Debug for UpstreamAuthenticator {
    /// Shows the user and the stage; never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.stage {
            Stage::Start => "start",
            Stage::PasswordSent => "password sent",
            Stage::ScramFirstSent(_) => "SCRAM client-first sent",
            Stage::ScramFinalSent(_) => "SCRAM client-final sent",
            Stage::ScramVerified => "SCRAM server verified",
            Stage::Done => "done",
            Stage::Failed => "failed",
        };
        f.debug_struct("UpstreamAuthenticator")
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("require_scram", &self.require_scram)
            .field("stage", &stage)
            .finish()
    }
}

/// A human name for an authentication request code.
fn method_name(code: i32) -> String {
    match code {
        2 => "Kerberos V5 authentication (code 2)".to_string(),
        6 => "SCM credential authentication (code 6)".to_string(),
        7 => "GSSAPI authentication (code 7)".to_string(),
        8 => "GSSAPI continuation (code 8)".to_string(),
        9 => "SSPI authentication (code 9)".to_string(),
        other => format!("an unknown authentication method (code {other})"),
    }
}

/// A short name for a request, for error messages.
fn request_name(req: &UpstreamAuthRequest<'_>) -> &'static str {
    match req {
        UpstreamAuthRequest::Ok => "AuthenticationOk",
        UpstreamAuthRequest::Cleartext => "AuthenticationCleartextPassword",
        UpstreamAuthRequest::Md5 { .. } => "AuthenticationMD5Password",
        UpstreamAuthRequest::Sasl { .. } => "AuthenticationSASL",
        UpstreamAuthRequest::SaslContinue(_) => "AuthenticationSASLContinue",
        UpstreamAuthRequest::SaslFinal(_) => "AuthenticationSASLFinal",
        UpstreamAuthRequest::Other(_) => "Authentication (other)",
    }
}

#[cfg(test)]
mod tests;
