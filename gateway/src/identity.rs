//! Verified identities: who is on the other end of a client connection.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_auth::ScramVerifier;

use crate::config::{Config, PrincipalKind};

/// How an identity proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 against a verifier in the config.
    ScramSha256,
}

impl AuthMethod {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
        }
    }
}

/// A verified identity, as policies and the audit trail see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name.
    pub name: String,
    /// Person, service or agent.
    pub kind: PrincipalKind,
    /// Groups the identity belongs to.
    pub groups: Vec<String>,
    /// How it authenticated.
    pub auth_method: AuthMethod,
    /// The upstream role to `SET ROLE` to, if configured.
    pub role: Option<String>,
}

impl Identity {
    /// True if the identity is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A declared identity with its credential.
#[derive(Debug, Clone)]
pub struct Credential {
    /// The SCRAM verifier.
    pub verifier: ScramVerifier,
    /// Who this is once verified.
    pub identity: Arc<Identity>,
}

/// The identities declared in the configuration, by user name.
#[derive(Debug, Default)]
pub struct IdentityStore {
    by_name: HashMap<String, Credential>,
    /// Secret for mock authentication of unknown users (so their absence does not leak).
    mock_secret: [u8; 32],
}

impl IdentityStore {
    /// Builds the store from a validated configuration.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for id in &config.identities {
            let verifier: ScramVerifier = id.scram.parse()?;
            let identity = Arc::new(Identity {
                name: id.name.clone(),
                kind: id.kind,
                groups: id.groups.clone(),
                auth_method: AuthMethod::ScramSha256,
                role: id.role.clone(),
            });
            by_name.insert(id.name.clone(), Credential { verifier, identity });
        }
        Ok(IdentityStore {
            by_name,
            mock_secret: rand::random(),
        })
    }

    /// The credential for a user name.
    pub fn get(&self, name: &str) -> Option<&Credential> {
        self.by_name.get(name)
    }

    /// The secret used to fake an exchange for unknown users.
    pub fn mock_secret(&self) -> &[u8] {
        &self.mock_secret
    }
}
