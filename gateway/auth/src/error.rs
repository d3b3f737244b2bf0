//! The error type shared by every part of the crate.

/// Everything that can go wrong while authenticating a client to the gateway, or the
/// gateway to an upstream PostgreSQL server.
///
/// The `Display` text is meant for logs. What a *client* is told should come from
/// [`AuthError::client_message`] together with [`AuthError::sqlstate`], which keep the
/// PostgreSQL wording and never reveal more than PostgreSQL would.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The client's proof did not match the verifier (wrong password), or the user does
    /// not exist and a mock exchange was run. SQLSTATE `28P01`.
    #[error("password authentication failed")]
    InvalidPassword,
    /// The client sent a malformed or out-of-sequence SASL message. SQLSTATE `08P01`.
    #[error("malformed SCRAM message: {0}")]
    Protocol(String),
    /// The client selected a SASL mechanism the gateway does not offer. SQLSTATE `08P01`,
    /// as PostgreSQL reports it.
    #[error("client selected an invalid SASL authentication mechanism: {0}")]
    UnsupportedMechanism(String),
    /// A SCRAM verifier text (from configuration) could not be parsed. SQLSTATE `F0000`
    /// (config_file_error): this is an operator problem, never a client one.
    #[error("malformed SCRAM verifier: {0}")]
    MalformedVerifier(String),
    /// Authenticating the gateway to the upstream server failed: bad server signature,
    /// unsupported method, missing password, out-of-order messages. SQLSTATE `08001`
    /// (sqlclient_unable_to_establish_sqlconnection).
    #[error("upstream authentication failed: {0}")]
    Upstream(String),
}

impl AuthError {
    /// The SQLSTATE to put in the `ErrorResponse` sent to the client.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            AuthError::InvalidPassword => "28P01",
            AuthError::Protocol(_) | AuthError::UnsupportedMechanism(_) => "08P01",
            AuthError::MalformedVerifier(_) => "F0000",
            AuthError::Upstream(_) => "08001",
        }
    }

    /// The primary message to put in the `ErrorResponse` sent to the client `user`,
    /// worded as PostgreSQL words it.
    ///
    /// For [`AuthError::InvalidPassword`] this is exactly
    /// `password authentication failed for user "<user>"`, whether the user exists or not.
    /// Verifier and upstream problems get a generic text, since their details concern the
    /// operator (log the `Display` text instead).
    pub fn client_message(&self, user: &str) -> String {
        match self {
            AuthError::InvalidPassword => {
                format!("password authentication failed for user \"{user}\"")
            }
            AuthError::Protocol(_) | AuthError::UnsupportedMechanism(_) => self.to_string(),
            AuthError::MalformedVerifier(_) => {
                "authentication is misconfigured on the gateway".to_string()
            }
            AuthError::Upstream(_) => "could not connect to the upstream server".to_string(),
        }
    }

    /// Shorthand for a [`AuthError::Protocol`] error.
    pub(crate) fn protocol(msg: impl Into<String>) -> Self {
        AuthError::Protocol(msg.into())
    }

    /// Shorthand for a [`AuthError::Upstream`] error.
    pub(crate) fn upstream(msg: impl Into<String>) -> Self {
        AuthError::Upstream(msg.into())
    }

    /// Shorthand for a [`AuthError::MalformedVerifier`] error.
    pub(crate) fn verifier(msg: impl Into<String>) -> Self {
        AuthError::MalformedVerifier(msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_match_postgres() {
        assert_eq!(AuthError::InvalidPassword.sqlstate(), "28P01");
        assert_eq!(AuthError::protocol("x").sqlstate(), "08P01");
        assert_eq!(
            AuthError::UnsupportedMechanism("X".into()).sqlstate(),
            "08P01"
        );
        assert_eq!(AuthError::verifier("x").sqlstate(), "F0000");
        assert_eq!(AuthError::upstream("x").sqlstate(), "08001");
    }

    #[test]
    fn client_message_for_invalid_password_names_the_user() {
        assert_eq!(
            AuthError::InvalidPassword.client_message("alice"),
            "password authentication failed for user \"alice\""
        );
        // Operator-side details stay out of what the client is told.
        assert!(
            !AuthError::verifier("bad salt")
                .client_message("alice")
                .contains("salt")
        );
        assert!(
            !AuthError::upstream("server signature mismatch")
                .client_message("alice")
                .contains("signature")
        );
    }
}
