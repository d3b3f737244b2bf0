//! The server side of a SCRAM-SHA-256 exchange, as a PostgreSQL server runs it.
//!
//! The wire layer drives it like this:
//!
//! 1. send `AuthenticationSASL` listing [`ScramServer::mechanisms`];
//! 2. on `SASLInitialResponse`, call [`ScramServer::client_first`] with the mechanism
//!    name and the data bytes, and send the result in `AuthenticationSASLContinue`;
//! 3. on `SASLResponse`, call [`ScramServer::client_final`] with the data bytes, and send
//!    the result in `AuthenticationSASLFinal`, then `AuthenticationOk`.
//!
//! Any error ends the exchange: reply with an `ErrorResponse` built from
//! [`AuthError::sqlstate`] and [`AuthError::client_message`] and close the connection.
//! (A `SASLInitialResponse` without initial data, length -1, should be refused by the
//! wire layer or passed here as an empty slice, which is refused as malformed; no
//! PostgreSQL client omits it.)
//!
//! # Channel binding (SCRAM-SHA-256-PLUS), not offered yet
//!
//! Adding `tls-server-end-point` binding (RFC 5929, what PostgreSQL implements) would
//! take:
//!
//! - a constructor taking the binding data: the hash of the gateway's own TLS
//!   certificate (SHA-256 if the certificate's signature uses MD5 or SHA-1, otherwise the
//!   signature's hash), known only on TLS connections;
//! - advertising `SCRAM-SHA-256-PLUS` (before `SCRAM-SHA-256`) only on such connections;
//! - accepting the `-PLUS` mechanism only with the flag `p=tls-server-end-point`, and
//!   the `p` flag only with the `-PLUS` mechanism;
//! - refusing the flag `y` whenever `-PLUS` was advertised (it means a downgrade: the
//!   client supports binding and believes the server does not);
//! - expecting `c=` to be base64 of the GS2 header followed by the binding data.
//!
//! Today the GS2 header is all `c=` can carry, `p` is refused and `y` is accepted.

use std::mem;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::crypto::{hmac_sha256, xor};
use crate::messages::{self, KEY_LEN};
use crate::verifier::DEFAULT_ITERATIONS;
use crate::{AuthError, ScramVerifier};

/// The SASL mechanism name of SCRAM-SHA-256.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Raw length of the server nonce; base64 makes it 24 characters (as PostgreSQL).
const SERVER_NONCE_LEN: usize = 18;

/// Where an exchange stands.
enum State {
    /// Waiting for the client-first-message.
    Initial,
    /// server-first-message sent, waiting for the client-final-message.
    AwaitingFinal(Pending),
    /// The proof was valid and the server-final-message was produced.
    Authenticated,
    /// An error ended the exchange; nothing more is accepted.
    Failed,
}

/// What the server remembers between its two messages.
struct Pending {
    /// The `c=` value the client must send: base64 of its GS2 header.
    expected_binding: String,
    /// Client nonce followed by server nonce.
    full_nonce: String,
    /// `client-first-message-bare "," server-first-message ","`.
    auth_message_prefix: Vec<u8>,
}

/// Server side of one SCRAM-SHA-256 exchange (RFC 5802/7677 as PostgreSQL speaks it).
///
/// Inputs are the *data* bytes of `SASLInitialResponse`/`SASLResponse`; outputs are the
/// *data* bytes of `AuthenticationSASLContinue`/`AuthenticationSASLFinal`. One value per
/// connection attempt; it is not reusable.
pub struct ScramServer {
    verifier: ScramVerifier,
    /// A mock exchange: always fails at the end, however good the proof.
    doomed: bool,
    state: State,
}

impl ScramServer {
    /// Starts an exchange for a user whose verifier is known.
    pub fn new(verifier: ScramVerifier) -> Self {
        ScramServer {
            verifier,
            doomed: false,
            state: State::Initial,
        }
    }

    /// Starts a mock exchange for an unknown user (PostgreSQL's mock authentication).
    ///
    /// It behaves exactly like a real one (same messages, same checks, same work) with a
    /// fake verifier derived deterministically from `(user, server_secret)`, so a client
    /// probing twice sees the same salt, and fails at the end with
    /// [`AuthError::InvalidPassword`]. The fake verifier uses [`DEFAULT_ITERATIONS`];
    /// if real verifiers use another count, use [`ScramServer::mock_with_iterations`]
    /// with that count, or the iteration count leaks which users exist.
    ///
    /// `server_secret` should be random, at least 32 bytes, and stable across restarts
    /// (otherwise a restart changes an unknown user's salt, which a patient prober can
    /// notice).
    pub fn mock(user: &str, server_secret: &[u8]) -> Self {
        ScramServer::mock_with_iterations(user, server_secret, DEFAULT_ITERATIONS)
    }

    /// [`ScramServer::mock`] with an explicit iteration count (0 is raised to 1).
    pub fn mock_with_iterations(user: &str, server_secret: &[u8], iterations: u32) -> Self {
        let key: [u8; KEY_LEN] = Sha256::digest(server_secret).into();
        let user = user.as_bytes();
        let salt = hmac_sha256(&key, &[b"portcullis mock salt\0", user]);
        let verifier = ScramVerifier {
            iterations: iterations.max(1),
            salt: salt[..crate::verifier::DEFAULT_SALT_LEN].to_vec(),
            stored_key: hmac_sha256(&key, &[b"portcullis mock stored key\0", user]),
            server_key: hmac_sha256(&key, &[b"portcullis mock server key\0", user]),
        };
        ScramServer {
            verifier,
            doomed: true,
            state: State::Initial,
        }
    }

    /// The SASL mechanisms to list in `AuthenticationSASL`: `["SCRAM-SHA-256"]`.
    /// (No `-PLUS`; see the module documentation for how channel binding would be added.)
    pub fn mechanisms() -> &'static [&'static str] {
        &[SCRAM_SHA_256]
    }

    /// True once [`ScramServer::client_final`] has accepted the client's proof; only then
    /// may the gateway send `AuthenticationOk`. Never true for a mock exchange.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Authenticated)
    }

    /// Handles `SASLInitialResponse`: the chosen `mechanism` and the client-first-message
    /// `data`. Returns the server-first-message for `AuthenticationSASLContinue`.
    ///
    /// The username inside the message is ignored (the startup packet's user counts).
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let mut nonce = [0u8; SERVER_NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        self.client_first_with_nonce(mechanism, data, &STANDARD.encode(nonce))
    }

    /// [`ScramServer::client_first`] with a given server nonce (known-answer tests).
    fn client_first_with_nonce(
        &mut self,
        mechanism: &str,
        data: &[u8],
        server_nonce: &str,
    ) -> Result<Vec<u8>, AuthError> {
        if !matches!(self.state, State::Initial) {
            self.state = State::Failed;
            return Err(AuthError::protocol(
                "unexpected SASLInitialResponse: the SCRAM exchange has already started",
            ));
        }
        // Until this succeeds, the exchange is over.
        self.state = State::Failed;

        if mechanism != SCRAM_SHA_256 {
            return Err(AuthError::UnsupportedMechanism(messages::printable(
                mechanism,
            )));
        }
        let first = messages::parse_client_first(data)?;

        let full_nonce = format!("{}{server_nonce}", first.nonce);
        let server_first =
            messages::server_first(&full_nonce, &self.verifier.salt, self.verifier.iterations);

        let mut auth_message_prefix = Vec::with_capacity(first.bare.len() + server_first.len() + 2);
        auth_message_prefix.extend_from_slice(first.bare);
        auth_message_prefix.push(b',');
        auth_message_prefix.extend_from_slice(server_first.as_bytes());
        auth_message_prefix.push(b',');

        self.state = State::AwaitingFinal(Pending {
            expected_binding: STANDARD.encode(first.cbind_flag.gs2_header()),
            full_nonce,
            auth_message_prefix,
        });
        Ok(server_first.into_bytes())
    }

    /// Handles `SASLResponse`: the client-final-message `data`. Verifies the proof in
    /// constant time and returns the server-final-message (`v=<signature>`) for
    /// `AuthenticationSASLFinal`.
    ///
    /// A wrong proof, or any proof in a mock exchange, gives
    /// [`AuthError::InvalidPassword`]; a malformed message, a changed channel-binding
    /// attribute or a wrong nonce gives [`AuthError::Protocol`].
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let pending = match mem::replace(&mut self.state, State::Failed) {
            State::AwaitingFinal(pending) => pending,
            State::Initial => {
                return Err(AuthError::protocol(
                    "unexpected SASLResponse: no client-first-message yet",
                ));
            }
            State::Authenticated | State::Failed => {
                return Err(AuthError::protocol(
                    "unexpected SASLResponse: the SCRAM exchange is over",
                ));
            }
        };
        let last = messages::parse_client_final(data)?;

        if last.channel_binding != pending.expected_binding.as_bytes() {
            return Err(AuthError::protocol(
                "unexpected SCRAM channel-binding attribute in client-final-message",
            ));
        }
        if last.nonce != pending.full_nonce.as_bytes() {
            return Err(AuthError::protocol("SCRAM nonce mismatch"));
        }

        let mut auth_message = pending.auth_message_prefix;
        auth_message.extend_from_slice(last.without_proof);

        let v = &self.verifier;
        let client_signature = hmac_sha256(&v.stored_key, &[&auth_message]);
        let client_key = xor(&last.proof, &client_signature);
        let computed_stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let proof_ok: bool = computed_stored_key.ct_eq(&v.stored_key).into();
        // Computed whatever the outcome, so success and failure cost the same.
        let server_signature = hmac_sha256(&v.server_key, &[&auth_message]);

        if !proof_ok || self.doomed {
            return Err(AuthError::InvalidPassword);
        }
        self.state = State::Authenticated;
        Ok(messages::server_final(&server_signature).into_bytes())
    }
}

impl std::fmt::Debug for ScramServer {
    /// Shows the stage and whether the exchange is a mock; no key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = match self.state {
            State::Initial => "initial",
            State::AwaitingFinal(_) => "awaiting client-final",
            State::Authenticated => "authenticated",
            State::Failed => "failed",
        };
        f.debug_struct("ScramServer")
            .field("stage", &stage)
            .field("mock", &self.doomed)
            .finish()
    }
}

#[cfg(test)]
mod tests;
