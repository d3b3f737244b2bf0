//! The login state machine: startup packet, TLS negotiation, then SCRAM-SHA-256, a
//! client certificate, or an identity-provider token as a cleartext password (over TLS
//! only). Socket-free: bytes in, bytes out, and an event when the caller must act (the
//! caller verifies tokens, which may need the identity provider's keys).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use portcullis_auth::{AuthError, ScramServer};
use portcullis_wire::backend::{self, ErrorFields, Severity};
use portcullis_wire::frontend::{SaslInitialResponse, tag};
use portcullis_wire::{
    CancelKey, FrameDecoder, Limits, StartupMessage, StartupPacket, WireError, decode_startup,
};

use crate::identity::{Identity, IdentityStore, LoginFailure};

/// What the caller must do next.
#[derive(Debug)]
pub enum LoginEvent {
    /// Write the output, then wrap the socket in TLS and keep feeding input.
    StartTls,
    /// The connection is a CancelRequest for another session; close it afterwards.
    Cancel(CancelKey),
    /// The client sent a cleartext password (a token, or a password): verify it with
    /// [`IdentityStore::verify_password`] and call
    /// [`Login::password_verified`].
    VerifyPassword {
        /// The user name the client gave.
        user: String,
        /// The password as sent.
        token: String,
    },
    /// Login succeeded: write the output (AuthenticationOk is in it) and connect upstream.
    Authenticated {
        /// Who logged in.
        identity: Arc<Identity>,
        /// The StartupMessage as sent.
        startup: StartupMessage,
    },
    /// Login failed: write the output (a FATAL ErrorResponse) and close.
    Refused {
        /// The SQLSTATE sent, for metrics and logs.
        sqlstate: String,
        /// The user name the client gave, when the refusal is about it.
        user: Option<String>,
    },
}

enum State {
    AwaitStartup,
    AwaitSaslInitial {
        startup: StartupMessage,
        user: String,
        scram: ScramServer,
        identity: Option<Arc<Identity>>,
    },
    AwaitSaslResponse {
        startup: StartupMessage,
        user: String,
        scram: ScramServer,
        identity: Option<Arc<Identity>>,
    },
    AwaitPassword {
        startup: StartupMessage,
        user: String,
    },
    AwaitVerdict {
        startup: StartupMessage,
        user: String,
    },
    Done,
}

/// The login of one client connection.
pub struct Login {
    state: State,
    identities: Arc<IdentityStore>,
    limits: Limits,
    tls_available: bool,
    tls_required: bool,
    tls_active: bool,
    cert_user: Option<String>,
}

impl Login {
    /// Starts a login. `tls_available`: whether SSLRequest can be accepted;
    /// `tls_required`: whether plaintext sessions are refused.
    pub fn new(
        identities: Arc<IdentityStore>,
        limits: Limits,
        tls_available: bool,
        tls_required: bool,
    ) -> Self {
        Login {
            state: State::AwaitStartup,
            identities,
            limits,
            tls_available,
            tls_required,
            tls_active: false,
            cert_user: None,
        }
    }

    /// Tells the machine the TLS handshake completed.
    pub fn tls_started(&mut self) {
        self.tls_active = true;
    }

    /// The user name the client's verified certificate maps to, if any.
    pub fn set_certificate_user(&mut self, user: Option<String>) {
        self.cert_user = user;
    }

    /// Finishes a token login with the caller's verification result.
    pub fn password_verified(
        &mut self,
        result: Result<Arc<Identity>, LoginFailure>,
        out: &mut BytesMut,
    ) -> LoginEvent {
        let State::AwaitVerdict { startup, user } = std::mem::replace(&mut self.state, State::Done)
        else {
            return refuse(
                out,
                ErrorFields::new(Severity::Fatal, "08P01", "no token login in progress"),
            );
        };
        match result {
            Ok(identity) => {
                backend::auth_ok(out);
                LoginEvent::Authenticated { identity, startup }
            }
            Err(f) => {
                let ev = refuse(
                    out,
                    ErrorFields::new(Severity::Fatal, f.sqlstate, f.message),
                );
                match ev {
                    LoginEvent::Refused { sqlstate, .. } => LoginEvent::Refused {
                        sqlstate,
                        user: Some(user),
                    },
                    other => other,
                }
            }
        }
    }

    /// Consumes bytes from the client; appends the answer to `out`. Returns an event when
    /// the caller must act, `None` when more input is needed.
    pub fn input(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Option<LoginEvent> {
        loop {
            let step = match std::mem::replace(&mut self.state, State::Done) {
                State::AwaitStartup => self.on_startup(input, out),
                State::AwaitSaslInitial {
                    startup,
                    user,
                    scram,
                    identity,
                } => self.on_sasl_initial(input, out, startup, user, scram, identity),
                State::AwaitSaslResponse {
                    startup,
                    user,
                    scram,
                    identity,
                } => self.on_sasl_response(input, out, startup, user, scram, identity),
                State::AwaitPassword { startup, user } => {
                    self.on_password(input, out, startup, user)
                }
                s @ State::AwaitVerdict { .. } => {
                    self.state = s;
                    return Some(refuse(
                        out,
                        ErrorFields::new(
                            Severity::Fatal,
                            "08P01",
                            "unexpected data during authentication",
                        ),
                    ));
                }
                State::Done => {
                    return Some(refuse(
                        out,
                        ErrorFields::new(Severity::Fatal, "08P01", "login already finished"),
                    ));
                }
            };
            match step {
                Step::NeedMore => return None,
                Step::Progress => continue,
                Step::Event(e) => return Some(e),
            }
        }
    }

    fn on_startup(&mut self, input: &mut BytesMut, out: &mut BytesMut) -> Step {
        let (packet, used) = match decode_startup(input, &self.limits) {
            Ok(Some(p)) => p,
            Ok(None) => {
                self.state = State::AwaitStartup;
                return Step::NeedMore;
            }
            Err(e) => return Step::Event(protocol_error(out, &e)),
        };
        let _ = input.split_to(used);
        match packet {
            StartupPacket::SslRequest => {
                self.state = State::AwaitStartup;
                if self.tls_available && !self.tls_active && input.is_empty() {
                    out.put_u8(b'S');
                    Step::Event(LoginEvent::StartTls)
                } else {
                    out.put_u8(b'N');
                    Step::Progress
                }
            }
            StartupPacket::GssEncRequest => {
                self.state = State::AwaitStartup;
                out.put_u8(b'N');
                Step::Progress
            }
            StartupPacket::Cancel(key) => Step::Event(LoginEvent::Cancel(key)),
            StartupPacket::Startup(startup) => self.begin_auth(out, startup),
        }
    }

    fn begin_auth(&mut self, out: &mut BytesMut, startup: StartupMessage) -> Step {
        if self.tls_required && !self.tls_active {
            return Step::Event(refuse(
                out,
                ErrorFields::new(
                    Severity::Fatal,
                    "28000",
                    "the Portcullis gateway requires TLS: connect with sslmode=require",
                ),
            ));
        }
        if startup
            .get("replication")
            .is_some_and(|v| v != "false" && v != "off" && v != "0" && v != "no")
        {
            return Step::Event(refuse(
                out,
                ErrorFields::new(
                    Severity::Fatal,
                    "0A000",
                    "replication connections are not supported through the Portcullis gateway",
                ),
            ));
        }
        let Some(user) = startup.get("user").map(str::to_owned) else {
            return Step::Event(refuse(
                out,
                ErrorFields::new(
                    Severity::Fatal,
                    "28000",
                    "no PostgreSQL user name specified in startup packet",
                ),
            ));
        };
        if startup.minor > 0 {
            let unknown: Vec<&str> = startup
                .params
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| k.starts_with("_pq_."))
                .collect();
            backend::negotiate_protocol_version(out, 0, &unknown);
        }
        if self.tls_active && self.cert_user.as_deref() == Some(user.as_str()) {
            // A verified client certificate mapped to this user: like PostgreSQL's
            // `cert` method, no password is asked.
            backend::auth_ok(out);
            let identity = self.identities.certificate_identity(&user);
            return Step::Event(LoginEvent::Authenticated { identity, startup });
        }
        if self.identities.wants_cleartext(&user, self.tls_active) {
            {
                if !self.tls_active {
                    return Step::Event(refuse(
                        out,
                        ErrorFields::new(
                            Severity::Fatal,
                            "28000",
                            format!(
                                "token authentication for user \"{user}\" requires TLS: connect with sslmode=require (the gateway never asks for a password in cleartext)"
                            ),
                        ),
                    ));
                }
                backend::auth_cleartext(out);
                self.state = State::AwaitPassword { startup, user };
                return Step::Progress;
            }
        }
        let (scram, identity) = match self.identities.scram(&user) {
            Some((verifier, identity)) => (ScramServer::new(verifier), Some(identity)),
            None => (
                ScramServer::mock(&user, self.identities.mock_secret()),
                None,
            ),
        };
        backend::auth_sasl(out, ScramServer::mechanisms());
        self.state = State::AwaitSaslInitial {
            startup,
            user,
            scram,
            identity,
        };
        Step::Progress
    }

    fn on_sasl_initial(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        startup: StartupMessage,
        user: String,
        mut scram: ScramServer,
        identity: Option<Arc<Identity>>,
    ) -> Step {
        let frame = match self.password_frame(input) {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.state = State::AwaitSaslInitial {
                    startup,
                    user,
                    scram,
                    identity,
                };
                return Step::NeedMore;
            }
            Err(e) => return Step::Event(protocol_error(out, &e)),
        };
        let initial = match SaslInitialResponse::decode(frame.body()) {
            Ok(i) => i,
            Err(e) => return Step::Event(protocol_error(out, &e)),
        };
        match scram.client_first(initial.mechanism, initial.data.unwrap_or_default()) {
            Ok(server_first) => {
                backend::auth_sasl_continue(out, &server_first);
                self.state = State::AwaitSaslResponse {
                    startup,
                    user,
                    scram,
                    identity,
                };
                Step::Progress
            }
            Err(e) => Step::Event(auth_failed(out, &user, &e)),
        }
    }

    fn on_sasl_response(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        startup: StartupMessage,
        user: String,
        mut scram: ScramServer,
        identity: Option<Arc<Identity>>,
    ) -> Step {
        let frame = match self.password_frame(input) {
            Ok(Some(f)) => f,
            Ok(None) => {
                self.state = State::AwaitSaslResponse {
                    startup,
                    user,
                    scram,
                    identity,
                };
                return Step::NeedMore;
            }
            Err(e) => return Step::Event(protocol_error(out, &e)),
        };
        match (scram.client_final(frame.body()), identity) {
            (Ok(server_final), Some(identity)) => {
                backend::auth_sasl_final(out, &server_final);
                backend::auth_ok(out);
                Step::Event(LoginEvent::Authenticated { identity, startup })
            }
            (Ok(_), None) => Step::Event(auth_failed(out, &user, &AuthError::InvalidPassword)),
            (Err(e), _) => Step::Event(auth_failed(out, &user, &e)),
        }
    }

    fn on_password(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
        startup: StartupMessage,
        user: String,
    ) -> Step {
        let max = self.identities.max_password_bytes();
        let decoder = FrameDecoder::new(Limits {
            max_message: max + 5,
            ..self.limits
        });
        let frame = match decoder.decode(input) {
            Ok(Some(f)) if f.tag() == tag::PASSWORD => f,
            Ok(Some(f)) => {
                return Step::Event(protocol_error(
                    out,
                    &WireError::UnexpectedTag(f.tag() as char),
                ));
            }
            Ok(None) => {
                self.state = State::AwaitPassword { startup, user };
                return Step::NeedMore;
            }
            Err(WireError::TooLarge { len, .. }) => {
                return Step::Event(refuse(
                    out,
                    ErrorFields::new(
                        Severity::Fatal,
                        "08P01",
                        format!(
                            "password message of {len} bytes is larger than the {max} bytes allowed (auth.max_password_bytes)"
                        ),
                    ),
                ));
            }
            Err(e) => return Step::Event(protocol_error(out, &e)),
        };
        let body = frame.body();
        let body = body.strip_suffix(&[0]).unwrap_or(body);
        let Ok(token) = std::str::from_utf8(body) else {
            return Step::Event(refuse(
                out,
                ErrorFields::new(Severity::Fatal, "28000", "the password is not valid UTF-8"),
            ));
        };
        let token = token.to_owned();
        self.state = State::AwaitVerdict {
            startup,
            user: user.clone(),
        };
        Step::Event(LoginEvent::VerifyPassword { user, token })
    }

    /// Reads one `p` message; anything else during login is a protocol violation.
    fn password_frame(
        &self,
        input: &mut BytesMut,
    ) -> Result<Option<portcullis_wire::Frame>, WireError> {
        let decoder = FrameDecoder::new(Limits {
            max_message: self.limits.max_startup,
            ..self.limits
        });
        match decoder.decode(input)? {
            Some(f) if f.tag() == tag::PASSWORD => Ok(Some(f)),
            Some(f) => Err(WireError::UnexpectedTag(f.tag() as char)),
            None => Ok(None),
        }
    }
}

enum Step {
    NeedMore,
    Progress,
    Event(LoginEvent),
}

fn refuse(out: &mut BytesMut, fields: ErrorFields) -> LoginEvent {
    let sqlstate = fields.code().unwrap_or("08P01").to_owned();
    fields.encode_error(out);
    LoginEvent::Refused {
        sqlstate,
        user: None,
    }
}

fn protocol_error(out: &mut BytesMut, e: &WireError) -> LoginEvent {
    refuse(
        out,
        ErrorFields::new(
            Severity::Fatal,
            e.sqlstate(),
            format!("invalid startup: {e}"),
        ),
    )
}

fn auth_failed(out: &mut BytesMut, user: &str, e: &AuthError) -> LoginEvent {
    let fields = match e {
        AuthError::InvalidPassword => ErrorFields::new(
            Severity::Fatal,
            "28P01",
            format!("password authentication failed for user \"{user}\""),
        ),
        other => ErrorFields::new(Severity::Fatal, other.sqlstate(), other.to_string()),
    };
    match refuse(out, fields) {
        LoginEvent::Refused { sqlstate, .. } => LoginEvent::Refused {
            sqlstate,
            user: Some(user.to_owned()),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn store() -> Arc<IdentityStore> {
        static STORE: std::sync::OnceLock<Arc<IdentityStore>> = std::sync::OnceLock::new();
        STORE
            .get_or_init(|| {
                let text = format!(
                    "[upstream]\nuser = \"u\"\n[databases.demo]\n[[identities]]\nname = \"alice\"\nscram = \"{}\"\n",
                    portcullis_auth::verifier_for("pw")
                );
                let config = parse(std::path::Path::new("t.toml"), &text).unwrap();
                Arc::new(IdentityStore::from_config(&config).unwrap())
            })
            .clone()
    }

    fn login() -> Login {
        Login::new(store(), Limits::default(), true, false)
    }

    fn startup(user: &str) -> BytesMut {
        let mut b = BytesMut::new();
        StartupMessage {
            minor: 0,
            params: vec![
                ("user".into(), user.into()),
                ("database".into(), "demo".into()),
            ],
        }
        .encode(&mut b);
        b
    }

    #[test]
    fn ssl_request_then_startup_asks_for_scram() {
        let mut l = login();
        let mut input = BytesMut::new();
        portcullis_wire::encode_ssl_request(&mut input);
        let mut out = BytesMut::new();
        assert!(matches!(
            l.input(&mut input, &mut out),
            Some(LoginEvent::StartTls)
        ));
        assert_eq!(&out[..], b"S");
        l.tls_started();
        let mut input = startup("alice");
        let mut out = BytesMut::new();
        assert!(l.input(&mut input, &mut out).is_none());
        assert_eq!(out[0], b'R');
    }

    #[test]
    fn gssenc_is_declined_and_tls_required_refuses_plaintext() {
        let mut l = login();
        let mut input = BytesMut::from(&[0u8, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30][..]);
        let mut out = BytesMut::new();
        assert!(l.input(&mut input, &mut out).is_none());
        assert_eq!(&out[..], b"N");
        let mut l = Login::new(store(), Limits::default(), true, true);
        let mut out = BytesMut::new();
        match l.input(&mut startup("alice"), &mut out) {
            Some(LoginEvent::Refused { sqlstate, .. }) => assert_eq!(sqlstate, "28000"),
            other => panic!("{other:?}"),
        }
    }

    fn token_store() -> Arc<IdentityStore> {
        let text = "[upstream]\nuser = \"u\"\n[databases.demo]\n[auth]\nmax_password_bytes = 100\n[auth.jwt]\nissuer = \"i\"\naudience = [\"a\"]\njwks_file = \"/nonexistent/jwks.json\"\n";
        let config = parse(std::path::Path::new("t.toml"), text).unwrap();
        Arc::new(IdentityStore::from_config(&config).unwrap())
    }

    #[test]
    fn token_users_are_refused_in_cleartext_and_asked_for_a_password_over_tls() {
        let mut l = Login::new(token_store(), Limits::default(), true, false);
        let mut out = BytesMut::new();
        match l.input(&mut startup("carol"), &mut out) {
            Some(LoginEvent::Refused { sqlstate, .. }) => assert_eq!(sqlstate, "28000"),
            other => panic!("{other:?}"),
        }
        let mut l = Login::new(token_store(), Limits::default(), true, false);
        l.tls_started();
        let mut out = BytesMut::new();
        assert!(l.input(&mut startup("carol"), &mut out).is_none());
        assert_eq!(
            &out[..],
            &[b'R', 0, 0, 0, 8, 0, 0, 0, 3],
            "AuthenticationCleartextPassword"
        );
        let mut p = BytesMut::new();
        portcullis_wire::put_message(&mut p, tag::PASSWORD, |b| b.extend_from_slice(b"eyJ.x.y\0"));
        match l.input(&mut p, &mut BytesMut::new()) {
            Some(LoginEvent::VerifyPassword { user, token }) => {
                assert_eq!((user.as_str(), token.as_str()), ("carol", "eyJ.x.y"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_oversized_password_is_refused_from_its_header() {
        let mut l = Login::new(token_store(), Limits::default(), true, false);
        l.tls_started();
        let mut out = BytesMut::new();
        assert!(l.input(&mut startup("carol"), &mut out).is_none());
        // Only the header of a 1 MB password message.
        let mut p = BytesMut::from(&[b'p', 0, 0x10, 0, 4][..]);
        let mut out = BytesMut::new();
        match l.input(&mut p, &mut out) {
            Some(LoginEvent::Refused { sqlstate, .. }) => assert_eq!(sqlstate, "08P01"),
            other => panic!("{other:?}"),
        }
        let e = ErrorFields::decode(out[0], &out[5..]).unwrap();
        assert!(e.message().unwrap().contains("auth.max_password_bytes"));
    }

    #[test]
    fn garbage_during_login_is_refused_never_panics() {
        let mut seed = 77u64;
        for _ in 0..500 {
            let mut l = login();
            let mut input = startup("alice");
            let mut out = BytesMut::new();
            let _ = l.input(&mut input, &mut out);
            let len = (seed % 40) as usize;
            let junk: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let mut input = BytesMut::from(&junk[..]);
            let _ = l.input(&mut input, &mut out);
        }
    }
}
