//! `[auth]`: identity beyond SCRAM passwords — identity-provider tokens (OIDC/JWT),
//! client certificates (mTLS), a groups directory and upstream role mapping.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// The `[auth]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Largest password (or token) a client may send, in bytes; a larger password
    /// message is refused before it is read.
    #[serde(default = "default_max_password_bytes")]
    pub max_password_bytes: usize,
    /// Identity-provider tokens as passwords: `[auth.jwt]`.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// Client certificates: `[auth.mtls]`.
    #[serde(default)]
    pub mtls: Option<MtlsConfig>,
    /// Groups from a directory file: `[auth.directory]`.
    #[serde(default)]
    pub directory: Option<DirectoryConfig>,
    /// Upstream roles derived from identities: `[auth.roles]`.
    #[serde(default)]
    pub roles: RoleMapConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_password_bytes: default_max_password_bytes(),
            jwt: None,
            mtls: None,
            directory: None,
            roles: RoleMapConfig::default(),
        }
    }
}

fn default_max_password_bytes() -> usize {
    16 * 1024
}

/// What happens to a session when its token expires.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OnExpiry {
    /// The session goes on (the token was valid at login).
    #[default]
    Keep,
    /// The session is ended at expiry with a FATAL error (SQLSTATE 28000).
    Disconnect,
}

/// Tokens from an OIDC identity provider (or any JWT issuer): `[auth.jwt]`.
///
/// A client whose user name is not a SCRAM identity is asked for a cleartext
/// password — only over TLS — and must send a signed JWT as that password.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values (the token must name at least one).
    pub audience: Vec<String>,
    /// A JWKS file (relative: to the configuration file). Re-read when a token names
    /// an unknown key id.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// A JWKS URL (`https://`, or `http://` for a local provider).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM CA bundle trusted for an `https` JWKS URL (default: the public web roots).
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Fetched keys are used this long before they are fetched again.
    #[serde(default = "default_jwks_cache_secs")]
    pub jwks_cache_secs: u64,
    /// At most one refetch for an unknown key id per this many milliseconds.
    #[serde(default = "default_jwks_min_refresh_ms")]
    pub jwks_min_refresh_ms: u64,
    /// Signature algorithms accepted. `HS256`/`HS384`/`HS512` need `hmac_secret_env`
    /// too; `none` is never accepted.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Environment variable holding the shared secret for HS* algorithms.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// Clock skew tolerated for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Claim holding the user name.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// Claim holding the groups (a list of strings, or one space-separated string).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Over TLS, also ask identities that have a SCRAM verifier for a cleartext
    /// password, which may then be a token or their password (checked against the
    /// verifier). Off (default): they log in with SCRAM, and only identities without a
    /// verifier use tokens. Note: clients requiring SCRAM channel binding refuse this.
    #[serde(default)]
    pub tokens_for_password_users: bool,
    /// `keep` (default) or `disconnect` when the token expires during a session.
    #[serde(default)]
    pub on_expiry: OnExpiry,
}

fn default_jwks_cache_secs() -> u64 {
    300
}
fn default_jwks_min_refresh_ms() -> u64 {
    10_000
}
fn default_algorithms() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}
fn default_leeway_secs() -> u64 {
    60
}
fn default_user_claim() -> String {
    "sub".into()
}
fn default_groups_claim() -> String {
    "groups".into()
}

/// Client certificates: `[auth.mtls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    /// PEM bundle of the CAs client certificates must chain to (relative: to the
    /// configuration file). Certificates from other CAs, or expired, fail the handshake.
    pub ca: PathBuf,
    /// Refuse TLS clients without a certificate.
    #[serde(default)]
    pub required: bool,
    /// Rules mapping a certificate to a user name, first match wins. Empty: the
    /// subject CN is the user name.
    #[serde(default)]
    pub map: Vec<CertRule>,
}

/// Which certificate field a rule reads.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum CertField {
    /// The subject common name.
    Cn,
    /// A DNS subject alternative name.
    SanDns,
    /// An email (rfc822) subject alternative name.
    SanEmail,
    /// A URI subject alternative name.
    SanUri,
}

/// One certificate mapping rule: `[[auth.mtls.map]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRule {
    /// The field read.
    pub from: CertField,
    /// The value it must have: exact, or with one `*` wildcard (`*@example.com`).
    /// Absent: any value.
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    /// The user name; `{value}` is the field's value, `{local}` the part before `@`.
    #[serde(default = "default_cert_user")]
    pub user: String,
}

fn default_cert_user() -> String {
    "{value}".into()
}

/// Groups from a directory file: `[auth.directory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// A TOML or JSON file (by extension) mapping user names to lists of groups
    /// (relative: to the configuration file). Re-read when it changes; an unreadable
    /// new version is logged and the previous one kept.
    pub path: PathBuf,
    /// How often a change is looked for at most, in milliseconds.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
}

fn default_poll_ms() -> u64 {
    1_000
}

/// Upstream roles derived from identities: `[auth.roles]`. An identity's own `role`
/// wins, then the first of its groups in `groups`, then `template`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapConfig {
    /// A role name built from the identity: `{user}` is replaced by the user name.
    #[serde(default)]
    pub template: Option<String>,
    /// Group → role.
    #[serde(default)]
    pub groups: BTreeMap<String, String>,
}
