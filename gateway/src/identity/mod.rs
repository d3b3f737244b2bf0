//! Verified identities: who is on the other end of a client connection.
//!
//! An identity is proved by a SCRAM-SHA-256 password ([`IdentityStore::scram`]), an
//! identity-provider token ([`jwt`]) or a client certificate ([`mtls`]). Its groups come
//! from the config, the token and a directory file ([`directory`]); its upstream role
//! from the config's role mapping ([`IdentityStore::role_for`]).

pub mod directory;
pub mod introspect;
pub mod jwks;
pub mod jwt;
pub mod mtls;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_auth::ScramVerifier;

use crate::config::{AuthConfig, Config, OnExpiry, PrincipalKind};

/// How an identity proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// SCRAM-SHA-256 against a verifier in the config.
    ScramSha256,
    /// An identity-provider token (JWT) sent as the password over TLS.
    Token,
    /// A TLS client certificate.
    Certificate,
}

impl AuthMethod {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ScramSha256 => "scram-sha-256",
            AuthMethod::Token => "token",
            AuthMethod::Certificate => "certificate",
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
    /// For an agent acting for a person (token `act` claim): that person's user name.
    pub acting_for: Option<String>,
    /// The groups of the person in `acting_for`.
    pub acting_for_groups: Vec<String>,
    /// When the token this identity logged in with expires.
    pub expires_at: Option<SystemTime>,
}

impl Identity {
    /// True if the identity is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A declared identity (`[[identities]]`).
#[derive(Debug, Clone)]
pub struct Declared {
    /// The SCRAM verifier, when it logs in with a password.
    pub verifier: Option<ScramVerifier>,
    /// Person, service or agent.
    pub kind: PrincipalKind,
    /// Groups from the config.
    pub groups: Vec<String>,
    /// The explicitly configured role.
    pub role: Option<String>,
}

/// Why a token or certificate login failed: SQLSTATE and message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginFailure {
    /// SQLSTATE (28000 or 28P01).
    pub sqlstate: &'static str,
    /// The message.
    pub message: String,
}

impl LoginFailure {
    /// A 28000 failure.
    pub fn new(message: impl Into<String>) -> Self {
        LoginFailure {
            sqlstate: "28000",
            message: message.into(),
        }
    }
}

/// Everything that establishes identities: declared identities and the configured
/// token, certificate, directory and role-mapping settings.
pub struct IdentityStore {
    by_name: HashMap<String, Declared>,
    /// Secret for mock authentication of unknown users (so their absence does not leak).
    mock_secret: [u8; 32],
    jwt: Option<jwt::JwtVerifier>,
    mtls: Option<mtls::CertMapper>,
    directory: Option<directory::Directory>,
    roles: crate::config::RoleMapConfig,
    max_password_bytes: usize,
}

impl std::fmt::Debug for IdentityStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityStore")
            .field("identities", &self.by_name.len())
            .finish_non_exhaustive()
    }
}

/// Checks `[auth]` beyond what its types say; returns the key and the message.
pub fn validate_auth(a: &AuthConfig) -> Result<(), (String, String)> {
    if a.max_password_bytes < 64 {
        return Err((
            "auth.max_password_bytes".into(),
            "must be at least 64".into(),
        ));
    }
    if let Some(j) = &a.jwt {
        jwt::validate(j)?;
    }
    if let Some(m) = &a.mtls {
        for (i, r) in m.map.iter().enumerate() {
            if r.pattern
                .as_deref()
                .is_some_and(|p| p.matches('*').count() > 1)
            {
                return Err((
                    format!("auth.mtls.map[{i}].match"),
                    "at most one `*` wildcard".into(),
                ));
            }
        }
    }
    Ok(())
}

impl IdentityStore {
    /// Builds the store from a validated configuration (reads the JWKS file, the client
    /// CA and the directory file).
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let mut by_name = HashMap::new();
        for id in &config.identities {
            let verifier = id.scram.as_ref().map(|s| s.parse()).transpose()?;
            by_name.insert(
                id.name.clone(),
                Declared {
                    verifier,
                    kind: id.kind,
                    groups: id.groups.clone(),
                    role: id.role.clone(),
                },
            );
        }
        let a = &config.auth;
        Ok(IdentityStore {
            by_name,
            mock_secret: rand::random(),
            jwt: a.jwt.as_ref().map(jwt::JwtVerifier::new).transpose()?,
            mtls: a.mtls.as_ref().map(mtls::CertMapper::new).transpose()?,
            directory: a
                .directory
                .as_ref()
                .map(directory::Directory::open)
                .transpose()?,
            roles: a.roles.clone(),
            max_password_bytes: a.max_password_bytes,
        })
    }

    /// Fetches the identity provider's keys, so a broken JWKS source shows at start.
    pub async fn prime(&self) {
        if let Some(j) = &self.jwt {
            j.prime().await;
        }
    }

    /// The declared identity of a user name.
    pub fn declared(&self, name: &str) -> Option<&Declared> {
        self.by_name.get(name)
    }

    /// The SCRAM verifier and resolved identity of a password user.
    pub fn scram(&self, name: &str) -> Option<(ScramVerifier, Arc<Identity>)> {
        let d = self.by_name.get(name)?;
        let v = d.verifier.clone()?;
        Some((
            v,
            Arc::new(self.resolve(name, AuthMethod::ScramSha256, Vec::new())),
        ))
    }

    /// True when tokens are accepted as passwords (`[auth.jwt]`).
    pub fn accepts_tokens(&self) -> bool {
        self.jwt.is_some()
    }

    /// What happens to token sessions at expiry.
    pub fn on_expiry(&self) -> OnExpiry {
        self.jwt.as_ref().map(|j| j.on_expiry()).unwrap_or_default()
    }

    /// Largest password or token accepted, in bytes.
    pub fn max_password_bytes(&self) -> usize {
        self.max_password_bytes
    }

    /// The client certificate verifier, when `[auth.mtls]` is configured.
    pub fn mtls(&self) -> Option<&mtls::CertMapper> {
        self.mtls.as_ref()
    }

    /// The secret used to fake an exchange for unknown users.
    pub fn mock_secret(&self) -> &[u8] {
        &self.mock_secret
    }

    /// True when `user` must send a cleartext password (a token, or with
    /// `tokens_for_password_users` possibly the password) rather than use SCRAM.
    pub fn wants_cleartext(&self, user: &str, tls: bool) -> bool {
        let Some(j) = &self.jwt else { return false };
        let scram_user = self.by_name.get(user).is_some_and(|d| d.verifier.is_some());
        !scram_user || (tls && j.tokens_for_password_users())
    }

    /// Verifies the cleartext password of `user`: a token, or (for a SCRAM identity)
    /// the password itself.
    pub async fn verify_password(
        &self,
        user: &str,
        password: &str,
    ) -> Result<Arc<Identity>, LoginFailure> {
        if jwt::looks_like_jwt(password) {
            return self.verify_token(user, password).await;
        }
        match self.scram(user) {
            Some((v, id)) if v.matches_password(password) => Ok(id),
            Some(_) => Err(LoginFailure {
                sqlstate: "28P01",
                message: format!("password authentication failed for user \"{user}\""),
            }),
            None => Err(LoginFailure::new(format!(
                "token authentication failed for user \"{user}\": the password is not a JWT"
            ))),
        }
    }

    /// Verifies a token sent as the password of `user`.
    pub async fn verify_token(
        &self,
        user: &str,
        token: &str,
    ) -> Result<Arc<Identity>, LoginFailure> {
        let Some(j) = &self.jwt else {
            return Err(LoginFailure::new("token authentication is not configured"));
        };
        let claims = j.verify(token).await.map_err(|e| {
            LoginFailure::new(format!(
                "token authentication failed for user \"{user}\": {e}"
            ))
        })?;
        if claims.user != user {
            return Err(LoginFailure::new(format!(
                "token authentication failed for user \"{user}\": the token is for \"{}\"",
                claims.user
            )));
        }
        let mut id = match &claims.subject_of_actor {
            // An agent acting for a person: the token's groups are the person's.
            Some(person) => {
                let mut id = self.resolve(user, AuthMethod::Token, Vec::new());
                id.kind = PrincipalKind::Agent;
                id.acting_for_groups = self.groups_of(person, claims.groups.clone());
                id.acting_for = Some(person.clone());
                id
            }
            None => self.resolve(user, AuthMethod::Token, claims.groups.clone()),
        };
        id.expires_at = claims.expires_at;
        Ok(Arc::new(id))
    }

    /// The identity of a user proved by a client certificate.
    pub fn certificate_identity(&self, user: &str) -> Arc<Identity> {
        Arc::new(self.resolve(user, AuthMethod::Certificate, Vec::new()))
    }

    /// Groups of `name`: declared, then from `extra` (a token), then the directory.
    fn groups_of(&self, name: &str, extra: Vec<String>) -> Vec<String> {
        let mut groups: Vec<String> = self
            .by_name
            .get(name)
            .map(|d| d.groups.clone())
            .unwrap_or_default();
        let dir = self
            .directory
            .as_ref()
            .map(|d| d.groups(name))
            .unwrap_or_default();
        for g in extra.into_iter().chain(dir) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        groups
    }

    /// The identity of `name` with every source of groups and the role mapping applied.
    fn resolve(&self, name: &str, method: AuthMethod, extra_groups: Vec<String>) -> Identity {
        let declared = self.by_name.get(name);
        let groups = self.groups_of(name, extra_groups);
        let role = self.role_for(name, declared.and_then(|d| d.role.as_deref()), &groups);
        Identity {
            name: name.to_owned(),
            kind: declared.map(|d| d.kind).unwrap_or_default(),
            groups,
            auth_method: method,
            role,
            acting_for: None,
            acting_for_groups: Vec::new(),
            expires_at: None,
        }
    }

    /// The upstream role: the identity's own, else the first group mapped in
    /// `[auth.roles] groups`, else `[auth.roles] template`.
    pub fn role_for(&self, name: &str, own: Option<&str>, groups: &[String]) -> Option<String> {
        if let Some(r) = own {
            return Some(r.to_owned());
        }
        if let Some(r) = groups.iter().find_map(|g| self.roles.groups.get(g)) {
            return Some(r.clone());
        }
        self.roles
            .template
            .as_ref()
            .map(|t| t.replace("{user}", name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(extra: &str) -> IdentityStore {
        let text = format!(
            "[upstream]\nuser = \"u\"\n[databases.demo]\n[[identities]]\nname = \"alice\"\ngroups = [\"analysts\"]\nscram = \"{}\"\n[[identities]]\nname = \"etl-agent\"\nkind = \"agent\"\ngroups = [\"pipelines\"]\n{extra}",
            portcullis_auth::verifier_for("pw")
        );
        let config = crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        IdentityStore::from_config(&config).unwrap()
    }

    #[test]
    fn auth_config_errors_name_the_key() {
        let base = "[upstream]\nuser = \"u\"\n[databases.demo]\n";
        for (extra, key) in [
            (
                "[auth.jwt]\nissuer = \"i\"\naudience = [\"a\"]\njwks_file = \"j\"\nalgorithms = [\"none\"]\n",
                "auth.jwt.algorithms",
            ),
            (
                "[auth.jwt]\nissuer = \"i\"\naudience = []\njwks_file = \"j\"\n",
                "auth.jwt.audience",
            ),
            (
                "[auth.jwt]\nissuer = \"i\"\naudience = [\"a\"]\n",
                "auth.jwt.jwks_file",
            ),
            (
                "[auth]\nmax_password_bytes = 1\n",
                "auth.max_password_bytes",
            ),
        ] {
            let e = crate::config::parse(std::path::Path::new("t.toml"), &format!("{base}{extra}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn roles_come_from_identity_then_groups_then_template() {
        let s = store("[auth.roles]\ntemplate = \"u_{user}\"\ngroups = { pipelines = \"etl\" }\n");
        assert_eq!(s.scram("alice").unwrap().1.role.as_deref(), Some("u_alice"));
        assert_eq!(
            s.certificate_identity("etl-agent").role.as_deref(),
            Some("etl")
        );
        assert!(
            s.scram("etl-agent").is_none(),
            "no verifier: no password login"
        );
    }
}
