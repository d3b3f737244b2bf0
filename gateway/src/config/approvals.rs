//! `[approvals]`: holding statements until a reviewer approves them.

use std::path::PathBuf;

use serde::Deserialize;

/// What the client sees while a statement waits for approval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// The statement waits (up to `hold_timeout_ms`), then runs or fails.
    #[default]
    Hold,
    /// The statement fails at once with the request id; once approved, the same
    /// identity re-running the same statement (same text and parameters) within the
    /// TTL runs it once.
    Defer,
}

impl ApprovalMode {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Hold => "hold",
            ApprovalMode::Defer => "defer",
        }
    }
}

/// Where approval requests live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalStoreKind {
    /// A single local file (`path`), rewritten atomically on every change.
    #[default]
    File,
    /// A table in PostgreSQL (`postgres_url`), shared by gateway replicas.
    Postgres,
}

/// Approvals: `[approvals]`. Absent: a statement that needs approval is denied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// `hold` (default) or `defer`; a policy entry's `approval_mode` overrides it.
    #[serde(default)]
    pub mode: ApprovalMode,
    /// How long a held client waits before its statement fails (57014) and the request
    /// is withdrawn.
    #[serde(default = "default_hold_timeout_ms")]
    pub hold_timeout_ms: u64,
    /// Seconds a request (and an approval, for deferred re-runs) stays valid when the
    /// routing policy sets none.
    #[serde(default = "default_ttl_seconds")]
    pub default_ttl_seconds: u32,
    /// `file` (default) or `postgres`.
    #[serde(default)]
    pub store: ApprovalStoreKind,
    /// The file of the `file` store (relative to the config file).
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// libpq-style connection string of the `postgres` store (`host=... user=...
    /// dbname=...`); it may be a different database from the governed one.
    #[serde(default)]
    pub postgres_url: Option<String>,
    /// Read the connection string from this environment variable instead.
    #[serde(default)]
    pub postgres_url_env: Option<String>,
    /// Table of the `postgres` store (created if missing).
    #[serde(default = "default_table")]
    pub table: String,
    /// How often waiting statements look for decisions made by other replicas.
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Base URL of this gateway's admin endpoint as reviewers reach it, for links in
    /// notifications (`http://gateway.example:9187`).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Outgoing webhooks, notified of each new request and each decision.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

/// One webhook: `[[approvals.webhooks]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Channel name a routing policy can pick; requests with no channel go to every
    /// webhook whose `default` is true.
    pub name: String,
    /// URL to POST to.
    pub url: String,
    /// `generic` (the request as JSON) or `slack` (a Slack-compatible message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Whether requests without a channel are sent here.
    #[serde(default = "yes")]
    pub default: bool,
    /// Attempts before a notification is given up (logged and counted).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// First retry delay; doubles on each attempt.
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
}

/// Body format of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFormat {
    /// `{"event": ..., "request": {...}}`.
    #[default]
    Generic,
    /// `{"text": ..., "blocks": [...]}`.
    Slack,
}

impl ApprovalsConfig {
    /// The PostgreSQL store's connection string, from `postgres_url` or
    /// `postgres_url_env`.
    pub fn resolved_postgres_url(&self) -> Option<String> {
        self.postgres_url.clone().or_else(|| {
            self.postgres_url_env
                .as_ref()
                .and_then(|v| std::env::var(v).ok())
        })
    }
}

fn default_hold_timeout_ms() -> u64 {
    300_000
}
fn default_ttl_seconds() -> u32 {
    3600
}
fn default_path() -> PathBuf {
    PathBuf::from("approvals.json")
}
fn default_table() -> String {
    "portcullis_approvals".into()
}
fn default_poll_ms() -> u64 {
    500
}
fn yes() -> bool {
    true
}
fn default_attempts() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    200
}
