//! SCRAM-SHA-256 verifiers (PostgreSQL calls them "secrets"): generation, parsing and
//! the PostgreSQL text format.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::AuthError;
use crate::crypto::hmac_sha256;
use crate::messages::KEY_LEN;

/// PostgreSQL's default iteration count (`scram_iterations`), used by
/// [`crate::verifier_for`] and by mock exchanges.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// PostgreSQL's salt length for generated verifiers, in bytes.
pub const DEFAULT_SALT_LEN: usize = 16;

/// Longest salt accepted when parsing a verifier, in bytes. PostgreSQL uses 16; the
/// bound only keeps a corrupt configuration from producing huge messages.
pub const MAX_SALT_LEN: usize = 1024;

/// The mechanism prefix of the PostgreSQL text format.
const PREFIX: &str = "SCRAM-SHA-256$";

/// A SCRAM-SHA-256 verifier in PostgreSQL's format:
/// `SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>`.
///
/// It holds no password, but it is still sensitive: `ServerKey` lets its holder pose as
/// the server, and `StoredKey` with one observed exchange yields a reusable client key.
/// `Debug` therefore shows only the iteration count and salt. `PartialEq` is not
/// constant-time: never use it to decide an authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    /// PBKDF2 iteration count (at least 1).
    pub iterations: u32,
    /// The salt, raw bytes (not base64).
    pub salt: Vec<u8>,
    /// `StoredKey = H(HMAC(SaltedPassword, "Client Key"))`.
    pub stored_key: [u8; 32],
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub server_key: [u8; 32],
}

impl ScramVerifier {
    /// Builds a verifier for `password` with a random 16-byte salt.
    ///
    /// The password is SASLprep'd; if SASLprep refuses it (prohibited or unassigned
    /// characters, bad bidi), the raw bytes are used, exactly as PostgreSQL and libpq do.
    /// An `iterations` of 0 is raised to 1. The cost is linear in `iterations`: this is a
    /// deliberately slow call.
    pub fn generate(password: &str, iterations: u32) -> ScramVerifier {
        let mut salt = [0u8; DEFAULT_SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        ScramVerifier::with_salt(password, &salt, iterations)
    }

    /// Builds the verifier for `password` with a given salt; deterministic. See
    /// [`ScramVerifier::generate`] for the password normalisation.
    pub fn with_salt(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
        let iterations = iterations.max(1);
        let salted = salted_password(password, salt, iterations);
        let (stored_key, server_key) = keys_from_salted(&salted);
        ScramVerifier {
            iterations,
            salt: salt.to_vec(),
            stored_key,
            server_key,
        }
    }

    /// Parses the PostgreSQL text format, as found in `pg_authid.rolpassword` or produced
    /// by [`fmt::Display`]. Fails with [`AuthError::MalformedVerifier`] naming the
    /// faulty part; the error never echoes the key material.
    pub fn parse(s: &str) -> Result<ScramVerifier, AuthError> {
        let rest = s.strip_prefix(PREFIX).ok_or_else(|| {
            AuthError::verifier(
                "does not start with \"SCRAM-SHA-256$\" (only SCRAM-SHA-256 is supported)",
            )
        })?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| {
            AuthError::verifier(
                "expected '$' between <iterations>:<salt> and <StoredKey>:<ServerKey>",
            )
        })?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or_else(|| AuthError::verifier("expected <iterations>:<salt>"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or_else(|| AuthError::verifier("expected <StoredKey>:<ServerKey>"))?;

        if iterations.is_empty() || !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AuthError::verifier(
                "iteration count is not a positive decimal number",
            ));
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| AuthError::verifier("iteration count is out of range"))?;
        if iterations == 0 {
            return Err(AuthError::verifier("iteration count must be at least 1"));
        }

        if salt.len() > MAX_SALT_LEN * 4 / 3 + 4 {
            return Err(AuthError::verifier("salt is too long"));
        }
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| AuthError::verifier("salt is not valid base64"))?;
        if salt.is_empty() {
            return Err(AuthError::verifier("salt is empty"));
        }

        Ok(ScramVerifier {
            iterations,
            salt,
            stored_key: decode_verifier_key(stored_key, "StoredKey")?,
            server_key: decode_verifier_key(server_key, "ServerKey")?,
        })
    }

    /// Checks a cleartext password against this verifier in constant time (for the
    /// key comparison), as PostgreSQL does for password authentication against a SCRAM
    /// secret. Costs one PBKDF2 run of [`ScramVerifier::iterations`].
    pub fn matches_password(&self, password: &str) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let (stored_key, server_key) = keys_from_salted(&salted);
        let stored_ok = stored_key.ct_eq(&self.stored_key);
        let server_ok = server_key.ct_eq(&self.server_key);
        (stored_ok & server_ok).into()
    }
}

/// Decodes a base64 key of a verifier, which must hold exactly 32 bytes.
fn decode_verifier_key(b64: &str, name: &str) -> Result<[u8; KEY_LEN], AuthError> {
    crate::messages::decode_key(b64.as_bytes(), name)
        .map_err(|_| AuthError::verifier(format!("{name} is not 32 bytes of valid base64")))
}

/// SASLprep with PostgreSQL's fallback to the raw bytes.
pub(crate) fn normalize_password(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// `SaltedPassword = Hi(Normalize(password), salt, i)`, Hi being PBKDF2-HMAC-SHA-256.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    pbkdf2::pbkdf2_hmac::<Sha256>(&normalize_password(password), salt, iterations, &mut out);
    out
}

/// `(StoredKey, ServerKey)` from a SaltedPassword.
fn keys_from_salted(salted: &[u8; KEY_LEN]) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
    let client_key = hmac_sha256(salted, &[b"Client Key"]);
    let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
    let server_key = hmac_sha256(salted, &[b"Server Key"]);
    (stored_key, server_key)
}

impl fmt::Display for ScramVerifier {
    /// Writes the PostgreSQL text format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

impl fmt::Debug for ScramVerifier {
    /// Shows iterations and salt only; the keys are redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &STANDARD.encode(&self.salt))
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

impl FromStr for ScramVerifier {
    type Err = AuthError;

    /// Same as [`ScramVerifier::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScramVerifier::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Verifiers produced by PostgreSQL 15.20 (`SET password_encryption='scram-sha-256';
    /// CREATE ROLE .. PASSWORD ..`, read back from `pg_authid.rolpassword`), with the
    /// password that produced each. The non-ASCII ones pin SASLprep: a soft hyphen is
    /// mapped to nothing, U+2168 (ROMAN NUMERAL NINE) is NFKC-normalised to "IX", a
    /// no-break space becomes a space, and Hebrew-then-Latin breaks the bidi rule so the
    /// raw bytes are used.
    const POSTGRES_15_VERIFIERS: &[(&str, &str)] = &[
        (
            "secret",
            "SCRAM-SHA-256$4096:E2ECC6B82n+/937RIovzWQ==$oHdVjGP9y0d5dMLFuXKm29ut3oYIrcdeocX+6sxPhpQ=:WPa6m/lierupG1gOgf9+t7EPgWWrCvqjeo4xUzqFg0c=",
        ),
        (
            "pass\u{ad}word",
            "SCRAM-SHA-256$4096:kMGtvMRS0MnKCdU2azaU7w==$t+Qg5nub+MubOhtldtmxmCtiAIXAo2mzOmQyMPVmVHM=:W0fJgl20+jhWmVVmXAQ6phmJ2lLqtcOCzJOKN0rUGcc=",
        ),
        (
            "\u{2168}",
            "SCRAM-SHA-256$4096:JAi7BiRdTZ52wMJC0Qg8aA==$cOCFFYDDiedNKNSr1nEkOcsxKRzMdNNymb0F+yT9pIY=:48fXj/zOYDptyyHwGEKLcvM+q9mxD1oxt/0dmoABXoA=",
        ),
        (
            "\u{5d0}a",
            "SCRAM-SHA-256$4096:qC5m9Y3aEVIu+wFIn4xPDQ==$RJEbEA+qT8dcbJD5HqHQs8jmqDnYxOWItWCXNgeBTWo=:zCudWAOYgg7ECaw0fJQ1FtJfC9puxwtsz2b/6gEB2E0=",
        ),
        (
            "sp\u{a0}ace",
            "SCRAM-SHA-256$4096:STR3bQuh0QixaauJaKujVw==$Xc0ucC6iNm50IeKFIw/Hveq92toRkPr4F8lgRwZ8w+g=:xSaGnO8oYwdQ/pQ9LHJvXbjtCad6oyt3nz3Bru5BtSs=",
        ),
    ];

    #[test]
    fn with_salt_reproduces_postgres_verifiers() {
        for (password, text) in POSTGRES_15_VERIFIERS {
            let parsed = ScramVerifier::parse(text).unwrap();
            assert_eq!(parsed.iterations, 4096);
            assert_eq!(parsed.salt.len(), 16);
            let ours = ScramVerifier::with_salt(password, &parsed.salt, parsed.iterations);
            assert_eq!(ours, parsed, "password {password:?}");
            assert_eq!(ours.to_string(), *text, "password {password:?}");
            assert!(parsed.matches_password(password));
            assert!(!parsed.matches_password("not it"));
        }
    }

    #[test]
    fn saslprep_equivalents_share_a_verifier() {
        let salt = b"0123456789abcdef";
        assert_eq!(
            ScramVerifier::with_salt("pass\u{ad}word", salt, 16),
            ScramVerifier::with_salt("password", salt, 16)
        );
        assert_eq!(
            ScramVerifier::with_salt("\u{2168}", salt, 16),
            ScramVerifier::with_salt("IX", salt, 16)
        );
    }

    #[test]
    fn matches_postgres_protocol_reference_encoder() {
        // postgres-protocol's own encoder hard-codes 4096 iterations and a 16-byte salt.
        let reference = postgres_protocol::password::scram_sha_256(b"hunter2");
        let reference = ScramVerifier::parse(&reference).unwrap();
        let ours = ScramVerifier::with_salt("hunter2", &reference.salt, reference.iterations);
        assert_eq!(ours, reference);
    }

    #[test]
    fn generate_round_trips_through_text() {
        let v = ScramVerifier::generate("correct horse", 64);
        assert_eq!(v.iterations, 64);
        assert_eq!(v.salt.len(), DEFAULT_SALT_LEN);
        let text = v.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$64:"));
        let back: ScramVerifier = text.parse().unwrap();
        assert_eq!(back, v);
        assert!(back.matches_password("correct horse"));
        // Two generations use different salts.
        assert_ne!(ScramVerifier::generate("correct horse", 64).salt, v.salt);
    }

    #[test]
    fn zero_iterations_are_raised_to_one() {
        let v = ScramVerifier::with_salt("x", b"salt", 0);
        assert_eq!(v.iterations, 1);
        assert_eq!(ScramVerifier::parse(&v.to_string()).unwrap(), v);
    }

    #[test]
    fn debug_redacts_keys() {
        let v = ScramVerifier::with_salt("x", b"salt", 1);
        let dbg = format!("{v:?}");
        assert!(dbg.contains("redacted"));
        assert!(!dbg.contains(&STANDARD.encode(v.stored_key)));
        assert!(!dbg.contains(&STANDARD.encode(v.server_key)));
    }

    #[test]
    fn parse_rejects_malformed_text() {
        let good = POSTGRES_15_VERIFIERS[0].1;
        let key = "oHdVjGP9y0d5dMLFuXKm29ut3oYIrcdeocX+6sxPhpQ=";
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "does not start"),
            (
                "md5e5e28b7a3d0b8a8e6fb1d26eb1e7c5f3".into(),
                "does not start",
            ),
            ("SCRAM-SHA-1$4096:c2FsdA==$a:b".into(), "does not start"),
            ("SCRAM-SHA-256$4096:c2FsdA==".into(), "expected '$'"),
            (
                format!("SCRAM-SHA-256$4096$x:{key}"),
                "expected <iterations>:<salt>",
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==${key}"),
                "expected <StoredKey>:<ServerKey>",
            ),
            (
                format!("SCRAM-SHA-256$:c2FsdA==${key}:{key}"),
                "positive decimal",
            ),
            (
                format!("SCRAM-SHA-256$-1:c2FsdA==${key}:{key}"),
                "positive decimal",
            ),
            (
                format!("SCRAM-SHA-256$+5:c2FsdA==${key}:{key}"),
                "positive decimal",
            ),
            (
                format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
                "at least 1",
            ),
            (
                format!("SCRAM-SHA-256$4294967296:c2FsdA==${key}:{key}"),
                "out of range",
            ),
            (format!("SCRAM-SHA-256$4096:${key}:{key}"), "salt is empty"),
            (
                format!("SCRAM-SHA-256$4096:c2Fsd!==${key}:{key}"),
                "salt is not valid",
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==$AAAA:{key}"),
                "StoredKey",
            ),
            (format!("SCRAM-SHA-256$4096:c2FsdA==${key}:"), "ServerKey"),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}:{key}"),
                "ServerKey",
            ),
            (format!("{good} "), "ServerKey"),
            (format!(" {good}"), "does not start"),
            (
                format!(
                    "SCRAM-SHA-256$4096:{}${key}:{key}",
                    "A".repeat(4 * MAX_SALT_LEN)
                ),
                "too long",
            ),
        ];
        for (text, needle) in cases {
            let err = ScramVerifier::parse(&text).unwrap_err();
            assert!(
                matches!(&err, AuthError::MalformedVerifier(m) if m.contains(needle)),
                "{text:?}: got {err:?}, wanted {needle:?}"
            );
        }
    }

    #[test]
    fn parse_never_panics_on_mangled_text() {
        let good = POSTGRES_15_VERIFIERS[0].1;
        for cut in 0..good.len() {
            let _ = ScramVerifier::parse(&good[..cut]);
            let mut s = good.to_string();
            s.insert(cut, '$');
            let _ = ScramVerifier::parse(&s);
            let mut s = good.to_string();
            s.insert(cut, 'é');
            let _ = ScramVerifier::parse(&s);
        }
    }
}
