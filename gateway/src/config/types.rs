use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The client-facing listener.
    #[serde(default)]
    pub server: ServerConfig,
    /// The admin HTTP endpoint (metrics, health).
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the gateway reaches PostgreSQL by default.
    pub upstream: UpstreamConfig,
    /// Databases clients may connect to, by the name clients use. `"*"` admits any name.
    #[serde(default)]
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// The identities allowed to connect.
    #[serde(default, rename = "identities")]
    pub identities: Vec<IdentityConfig>,
    /// Statement analysis settings.
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Settings shared by every policy (compile cache, fast-path calls).
    #[serde(default)]
    pub policy_runtime: PolicyRuntimeConfig,
    /// Policies, called in this order for every statement. Empty: every statement is
    /// allowed (pass-through).
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    /// A watched policy directory (manifest + artifacts), reloaded without restart.
    /// Replaces `[[policies]]`; the two cannot be combined.
    #[serde(default)]
    pub policy_dir: Option<PolicyDirConfig>,
    /// Dynamic data masking (used when a policy implements the `mask` hook).
    #[serde(default)]
    pub masking: MaskingConfig,
    /// The tamper-evident audit trail; absent: no audit trail is written.
    #[serde(default)]
    pub audit: Option<AuditConfig>,
    /// Approvals of held statements; absent: a statement that needs approval is denied.
    #[serde(default)]
    pub approvals: Option<super::ApprovalsConfig>,
    /// Tokens, client certificates, groups directory, role mapping.
    #[serde(default)]
    pub auth: super::AuthConfig,
    /// Traffic recording for `portcullis policy replay`; absent: nothing is recorded.
    #[serde(default)]
    pub recording: Option<crate::recording::RecordingConfig>,
    /// A candidate policy set evaluated alongside the live one (never enforced).
    #[serde(default)]
    pub shadow: Option<crate::policy::shadow::ShadowConfig>,
}

/// A policy directory the gateway loads and hot-reloads: `[policy_dir]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDirConfig {
    /// The directory holding `policies.toml` and the artifacts (relative: to the
    /// configuration file). It can be a git checkout kept current by any sync tool.
    pub path: PathBuf,
    /// Reload when files in the directory change (debounced).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Quiet time after the last change before reloading, in milliseconds.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// Refuse artifacts and manifests without a valid signature (`<file>.sig`).
    #[serde(default)]
    pub require_signatures: bool,
    /// Public keys (files with base64 Ed25519 keys) whose signatures are trusted.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
}

fn default_true() -> bool {
    true
}

/// The default quiet time after a policy directory change before it is reloaded, ms.
pub(crate) fn default_debounce_ms() -> u64 {
    200
}

/// Dynamic data masking: `[masking]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Secret key of the `pseudonym` mask (deterministic keyed pseudonyms: equal
    /// values give equal tokens, so joins and GROUP BY still work). Without a key (here
    /// or in `pseudonym_key_env`) a random one is drawn at start, so pseudonyms change
    /// when the gateway restarts.
    #[serde(default)]
    pub pseudonym_key: Option<String>,
    /// Read the pseudonym key from this environment variable instead.
    #[serde(default)]
    pub pseudonym_key_env: Option<String>,
    /// Reload the catalog (table OIDs, columns, view definitions) of a database at
    /// most this old when a session starts; DDL through the gateway reloads it too.
    #[serde(default = "default_catalog_refresh_ms")]
    pub catalog_refresh_ms: u64,
    /// Rows per `mask-rows` call for `custom` masks.
    #[serde(default = "default_mask_batch_rows")]
    pub batch_rows: usize,
}

impl Default for MaskingConfig {
    fn default() -> Self {
        MaskingConfig {
            pseudonym_key: None,
            pseudonym_key_env: None,
            catalog_refresh_ms: default_catalog_refresh_ms(),
            batch_rows: default_mask_batch_rows(),
        }
    }
}

impl MaskingConfig {
    /// The configured pseudonym key, from `pseudonym_key` or `pseudonym_key_env`.
    pub fn resolved_key(&self) -> Option<String> {
        self.pseudonym_key.clone().or_else(|| {
            self.pseudonym_key_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok())
        })
    }
}

fn default_catalog_refresh_ms() -> u64 {
    60_000
}
fn default_mask_batch_rows() -> usize {
    1024
}

/// The client-facing listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Most client connections served at once; more are refused with SQLSTATE 53300.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest protocol message accepted from either side, in bytes.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// Time a client has to finish startup and authentication.
    #[serde(default = "default_startup_timeout_ms")]
    pub startup_timeout_ms: u64,
    /// Close a client connection idle this long outside a transaction (0 = never).
    #[serde(default)]
    pub idle_timeout_ms: u64,
    /// Time given to open sessions to finish on shutdown.
    #[serde(default = "default_shutdown_grace_ms")]
    pub shutdown_grace_ms: u64,
    /// TLS for clients; without it SSLRequest is declined.
    #[serde(default)]
    pub tls: Option<ServerTlsConfig>,
    /// `0` (default): sessions run on the shared multi-threaded runtime. `N`: N threads,
    /// each with its own single-threaded runtime and its own `SO_REUSEPORT` listener on
    /// `listen`; a session stays on the thread that accepted it (no work-stealing
    /// wakeups between threads).
    #[serde(default)]
    pub session_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_connections: default_max_connections(),
            max_message_bytes: default_max_message_bytes(),
            startup_timeout_ms: default_startup_timeout_ms(),
            idle_timeout_ms: 0,
            shutdown_grace_ms: default_shutdown_grace_ms(),
            tls: None,
            session_threads: 0,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 6432))
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_message_bytes() -> usize {
    256 << 20
}
fn default_startup_timeout_ms() -> u64 {
    10_000
}
fn default_shutdown_grace_ms() -> u64 {
    10_000
}

/// Client-facing TLS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// Refuse clients that do not use TLS (SQLSTATE 28000).
    #[serde(default)]
    pub required: bool,
}

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; `None` disables the endpoint.
    #[serde(default = "default_admin_listen")]
    pub listen: Option<SocketAddr>,
    /// Bearer token for the control endpoints (reload, rollback). Without a token
    /// (here or in `control_token_env`) they are disabled; reading endpoints stay open.
    #[serde(default)]
    pub control_token: Option<String>,
    /// Read the control token from this environment variable instead.
    #[serde(default)]
    pub control_token_env: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: default_admin_listen(),
            control_token: None,
            control_token_env: None,
        }
    }
}

impl AdminConfig {
    /// The control token, from `control_token` or `control_token_env`.
    pub fn resolved_control_token(&self) -> Option<String> {
        self.control_token
            .clone()
            .or_else(|| {
                self.control_token_env
                    .as_ref()
                    .and_then(|v| std::env::var(v).ok())
            })
            .filter(|t| !t.is_empty())
    }
}

fn default_admin_listen() -> Option<SocketAddr> {
    Some(SocketAddr::from(([127, 0, 0, 1], 9187)))
}

/// How to reach and log in to PostgreSQL. Clients never see these credentials.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Host name or address.
    #[serde(default = "default_host")]
    pub host: String,
    /// Port.
    #[serde(default = "default_port")]
    pub port: u16,
    /// The gateway's own database user.
    pub user: String,
    /// Its password (SCRAM-SHA-256, md5 or cleartext, as the server asks).
    #[serde(default)]
    pub password: Option<String>,
    /// Read the password from this environment variable instead.
    #[serde(default)]
    pub password_env: Option<String>,
    /// TLS toward the server.
    #[serde(default)]
    pub tls: UpstreamTlsMode,
    /// CA bundle (PEM) used to verify the server with `verify-full`.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Time allowed for connecting and logging in.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5432
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}

impl UpstreamConfig {
    /// The password to use, from `password` or `password_env`.
    pub fn resolved_password(&self) -> Option<String> {
        self.password.clone().or_else(|| {
            self.password_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok())
        })
    }
}

/// TLS mode toward PostgreSQL.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS without certificate verification.
    Require,
    /// TLS with certificate and host name verification against `ca`.
    VerifyFull,
}

/// A database clients may connect to.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// The database name upstream (defaults to the name clients use).
    #[serde(default)]
    pub dbname: Option<String>,
    /// Override the upstream host for this database.
    #[serde(default)]
    pub host: Option<String>,
    /// Override the upstream port for this database.
    #[serde(default)]
    pub port: Option<u16>,
}

/// What kind of principal an identity is.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum PrincipalKind {
    /// A person.
    #[default]
    Person,
    /// A service or pipeline.
    Service,
    /// An AI agent (possibly acting for a person).
    Agent,
}

impl PrincipalKind {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::Person => "person",
            PrincipalKind::Service => "service",
            PrincipalKind::Agent => "agent",
        }
    }
}

/// One identity allowed to connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The user name clients log in with.
    pub name: String,
    /// Person, service or agent.
    #[serde(default)]
    pub kind: PrincipalKind,
    /// Groups, used by policies.
    #[serde(default)]
    pub groups: Vec<String>,
    /// SCRAM-SHA-256 verifier (`portcullis passwd` prints one). Never a plaintext
    /// password. Absent: the identity logs in only with a token or a certificate.
    #[serde(default)]
    pub scram: Option<String>,
    /// Upstream role to `SET ROLE` to after connecting, if any.
    #[serde(default)]
    pub role: Option<String>,
}

/// Statement analysis settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// Entries in the shared parse cache.
    #[serde(default = "default_parse_cache")]
    pub parse_cache_entries: usize,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            parse_cache_entries: default_parse_cache(),
        }
    }
}

fn default_parse_cache() -> usize {
    10_000
}

/// Settings shared by every policy: `[policy_runtime]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRuntimeConfig {
    /// Directory of precompiled policies. Default: `$XDG_CACHE_HOME/portcullis`, else
    /// `~/.cache/portcullis`, else a directory under the system temp dir. A relative
    /// path is relative to the configuration file.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Allow fast-path FunctionCall messages while enforcing policies are loaded. They
    /// name a function by OID and carry no SQL a policy could inspect, so they are
    /// denied by default.
    #[serde(default)]
    pub allow_function_call: bool,
}

/// Whether a policy's decisions are enforced.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyMode {
    /// Denials and failures refuse the statement.
    #[default]
    Enforce,
    /// Decisions and failures are logged and counted, never enforced.
    Monitor,
}

impl PolicyMode {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyMode::Enforce => "enforce",
            PolicyMode::Monitor => "monitor",
        }
    }
}

/// One policy component: `[[policies]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Name used in logs, metrics and denials (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// The component (`.wasm`). A relative path is relative to the configuration file
    /// (resolved when the file is loaded).
    pub path: PathBuf,
    /// Expected SHA-256 of the file (hex). A different file refuses to load.
    #[serde(default)]
    pub sha256: Option<String>,
    /// Settings handed to the policy's `configure`, as JSON.
    #[serde(default)]
    pub settings: toml::Table,
    /// CPU time one call may take before it is stopped (the statement is denied).
    #[serde(default = "default_policy_deadline_ms")]
    pub deadline_ms: u64,
    /// Linear memory cap of one instance, in MiB.
    #[serde(default = "default_policy_memory_mb")]
    pub memory_mb: u64,
    /// Calls an instance serves before it is replaced by a fresh one.
    #[serde(default = "default_policy_max_calls")]
    pub max_calls_per_instance: u64,
    /// `enforce` (default) or `monitor`.
    #[serde(default)]
    pub mode: PolicyMode,
    /// `hold` or `defer` for statements this policy holds; default `[approvals] mode`.
    #[serde(default)]
    pub approval_mode: Option<super::ApprovalMode>,
    /// Remember `authorize` verdicts keyed on the literal-free request. Only for a
    /// policy whose verdict does not depend on the SQL text's literals, the bound
    /// parameters or the session id (the standard policies qualify); see
    /// `portcullis::policy::decision_cache`.
    #[serde(default)]
    pub decision_cache: bool,
}

/// Default per-call deadline of a policy.
pub const DEFAULT_POLICY_DEADLINE_MS: u64 = 50;
/// Default memory cap of a policy instance.
pub const DEFAULT_POLICY_MEMORY_MB: u64 = 64;
/// Default number of calls before an instance is recycled.
pub const DEFAULT_POLICY_MAX_CALLS: u64 = 100_000;

fn default_policy_deadline_ms() -> u64 {
    DEFAULT_POLICY_DEADLINE_MS
}
fn default_policy_memory_mb() -> u64 {
    DEFAULT_POLICY_MEMORY_MB
}
fn default_policy_max_calls() -> u64 {
    DEFAULT_POLICY_MAX_CALLS
}

impl PolicyConfig {
    /// A policy entry with default limits, enforcing, without settings.
    pub fn new(id: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        PolicyConfig {
            id: id.into(),
            path: path.into(),
            sha256: None,
            settings: toml::Table::new(),
            deadline_ms: DEFAULT_POLICY_DEADLINE_MS,
            memory_mb: DEFAULT_POLICY_MEMORY_MB,
            max_calls_per_instance: DEFAULT_POLICY_MAX_CALLS,
            mode: PolicyMode::Enforce,
            approval_mode: None,
            decision_cache: false,
        }
    }

    /// The settings as the JSON text handed to `configure`.
    pub fn settings_json(&self) -> Result<String, String> {
        let value = toml_table_to_json(&self.settings, "settings")?;
        serde_json::to_string(&value).map_err(|e| e.to_string())
    }
}

/// Converts a TOML table to JSON. Datetimes become strings; non-finite floats, which
/// JSON cannot carry, are an error naming the key.
pub fn toml_table_to_json(table: &toml::Table, key: &str) -> Result<serde_json::Value, String> {
    let mut map = serde_json::Map::with_capacity(table.len());
    for (k, v) in table {
        map.insert(k.clone(), toml_to_json(v, &format!("{key}.{k}"))?);
    }
    Ok(serde_json::Value::Object(map))
}

fn toml_to_json(value: &toml::Value, key: &str) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(J::Number)
            .ok_or_else(|| format!("`{key}`: {f} cannot be represented in JSON"))?,
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(items) => J::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| toml_to_json(v, &format!("{key}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(t) => toml_table_to_json(t, key)?,
    })
}

/// When the audit writer forces events to stable storage.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum AuditFsync {
    /// `fdatasync` after every batch written.
    Always,
    /// Events of statements that change data are written and synced before their
    /// result is released (group commit; inside a transaction block only written, and
    /// the block's COMMIT waits for the sync); other events are written and synced
    /// every `batch_interval_ms`.
    #[default]
    Batch,
    /// Never sync: events reach the kernel (they survive a gateway crash or `kill -9`,
    /// not a power loss).
    Never,
}

impl AuditFsync {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditFsync::Always => "always",
            AuditFsync::Batch => "batch",
            AuditFsync::Never => "never",
        }
    }
}

/// How much of a statement's text the audit trail keeps.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StatementText {
    /// The SQL as sent, and bound parameters.
    Full,
    /// The SQL with every literal replaced by `?`; no parameters.
    #[default]
    Redacted,
    /// Only the statement's literal-free fingerprint.
    Fingerprint,
}

impl StatementText {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            StatementText::Full => "full",
            StatementText::Redacted => "redacted",
            StatementText::Fingerprint => "fingerprint",
        }
    }
}

/// The audit trail: `[audit]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Directory of the JSON-lines files (`audit-<first seq>.jsonl`). A relative path is
    /// relative to the configuration file.
    pub dir: PathBuf,
    /// `always`, `batch` (default) or `never`.
    #[serde(default)]
    pub fsync: AuditFsync,
    /// Longest time events that no client waits for stay unwritten (and, with
    /// `fsync = "batch"`, unsynced).
    #[serde(default = "default_audit_batch_ms")]
    pub batch_interval_ms: u64,
    /// Start a new file once the current one reaches this size (0 = never).
    #[serde(default = "default_audit_max_file_bytes")]
    pub max_file_bytes: u64,
    /// Start a new file once the current one is this old (0 = never).
    #[serde(default)]
    pub max_file_age_secs: u64,
    /// `full`, `redacted` (default) or `fingerprint`.
    #[serde(default)]
    pub statement_text: StatementText,
    /// When the trail cannot be written: `false` (default) denies statements (SQLSTATE
    /// 58030) until it can; `true` lets them run unaudited.
    #[serde(default)]
    pub fail_open: bool,
    /// Ed25519 signing key (64 hex digits, `portcullis audit keygen` makes one) used to
    /// sign checkpoints. A relative path is relative to the configuration file.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Seconds between signed checkpoints (with `signing_key`).
    #[serde(default = "default_audit_checkpoint_secs")]
    pub checkpoint_interval_secs: u64,
    /// Also write every line to a PostgreSQL table (`[audit.postgres]`).
    #[serde(default)]
    pub postgres: Option<AuditPostgresConfig>,
}

/// The PostgreSQL audit sink: `[audit.postgres]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPostgresConfig {
    /// libpq-style connection string (`host=... user=... dbname=...`).
    #[serde(default)]
    pub url: Option<String>,
    /// Read the connection string from this environment variable instead.
    #[serde(default)]
    pub url_env: Option<String>,
    /// The table (created if missing).
    #[serde(default = "default_audit_table")]
    pub table: String,
    /// This gateway's name in the table; replicas need distinct names (default: the
    /// host name).
    #[serde(default)]
    pub gateway: Option<String>,
}

fn default_audit_table() -> String {
    "portcullis_audit".into()
}

impl AuditPostgresConfig {
    /// The connection string, from `url` or `url_env`.
    pub fn resolved_url(&self) -> Option<String> {
        self.url
            .clone()
            .or_else(|| self.url_env.as_ref().and_then(|v| std::env::var(v).ok()))
    }

    /// The gateway name: `gateway`, else the host name.
    pub fn resolved_gateway(&self) -> String {
        self.gateway.clone().unwrap_or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "portcullis".into())
        })
    }
}

fn default_audit_batch_ms() -> u64 {
    10
}
fn default_audit_max_file_bytes() -> u64 {
    64 << 20
}
fn default_audit_checkpoint_secs() -> u64 {
    60
}

impl AuditConfig {
    /// An audit configuration writing to `dir` with every default.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AuditConfig {
            dir: dir.into(),
            fsync: AuditFsync::default(),
            batch_interval_ms: default_audit_batch_ms(),
            max_file_bytes: default_audit_max_file_bytes(),
            max_file_age_secs: 0,
            statement_text: StatementText::default(),
            fail_open: false,
            signing_key: None,
            checkpoint_interval_secs: default_audit_checkpoint_secs(),
            postgres: None,
        }
    }
}
