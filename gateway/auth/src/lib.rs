//! Authentication for Portcullis.
//!
//! Two directions, both sans-IO (message payload bytes in, payload bytes out; the wire
//! codec lives elsewhere):
//!
//! - **Clients to the gateway.** Identities are declared in configuration with
//!   SCRAM-SHA-256 verifiers ([`ScramVerifier`], PostgreSQL's text format, never a
//!   plaintext password). [`ScramServer`] runs the server side of the exchange exactly
//!   as PostgreSQL does, including mock authentication for unknown users
//!   ([`ScramServer::mock`]) so that user existence does not leak.
//! - **The gateway to upstream PostgreSQL.** [`UpstreamAuthenticator`] answers the
//!   server's `Authentication*` requests with the gateway's own credentials (trust,
//!   cleartext, md5 or SCRAM-SHA-256), verifying the server's SCRAM signature.
//!
//! [`verifier_for`] backs `portcullis passwd`. Errors are [`AuthError`], which knows the
//! SQLSTATE and client-facing text for each case.
//!
//! Channel binding (SCRAM-SHA-256-PLUS) is not offered yet; the [`server`] module
//! documentation says what adding it would take.

#![warn(missing_docs)]

mod client;
mod crypto;
mod error;
mod messages;
pub mod server;
mod verifier;

pub use client::{UpstreamAuthRequest, UpstreamAuthResponse, UpstreamAuthenticator};
pub use error::AuthError;
pub use server::{SCRAM_SHA_256, ScramServer};
pub use verifier::{DEFAULT_ITERATIONS, DEFAULT_SALT_LEN, MAX_SALT_LEN, ScramVerifier};

/// The verifier text for `password` with a random salt and PostgreSQL's default 4096
/// iterations, ready to paste into the configuration (`portcullis passwd`).
///
/// Prompting for the password is the caller's business; this never prints or stores it.
pub fn verifier_for(password: &str) -> String {
    ScramVerifier::generate(password, DEFAULT_ITERATIONS).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_for_produces_a_working_default_verifier() {
        let text = verifier_for("secret");
        assert!(text.starts_with("SCRAM-SHA-256$4096:"));
        let v = ScramVerifier::parse(&text).unwrap();
        assert_eq!(v.salt.len(), DEFAULT_SALT_LEN);
        assert!(v.matches_password("secret"));
        assert_ne!(verifier_for("secret"), text, "salts must differ");
    }
}
