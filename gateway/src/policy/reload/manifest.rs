//! The policy directory's manifest, `policies.toml`.
//!
//! ```toml
//! version = "2026-12-01.1"          # the policy set's version (audit, /policies)
//!
//! [[policies]]
//! id = "guardrails"
//! artifact = "guardrails.wasm"      # beside the manifest
//! version = "0.1.0"                 # must match the component's own metadata
//! sha256 = "5a74..."                # required: the artifact's pinned digest
//! order = 10                        # chain position (then manifest order)
//! mode = "enforce"                  # or "monitor"
//! deadline_ms = 50
//! memory_mb = 64
//! decision_cache = true             # verdicts keyed on the literal-free request
//! fixtures = "guardrails.fixtures.toml"   # optional, run before the set goes live
//! [policies.settings]
//! deny_unparsed = true
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{
    DEFAULT_POLICY_DEADLINE_MS, DEFAULT_POLICY_MAX_CALLS, DEFAULT_POLICY_MEMORY_MB, PolicyConfig,
    PolicyMode,
};

/// The manifest's file name inside the policy directory.
pub const MANIFEST_FILE: &str = "policies.toml";

/// A parsed manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The policy set's version.
    pub version: String,
    /// The policies, sorted into chain order by [`Manifest::parse`].
    #[serde(default)]
    pub policies: Vec<ManifestPolicy>,
}

/// One `[[policies]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestPolicy {
    /// Policy id (logs, metrics, denials).
    pub id: String,
    /// The component file, relative to the directory.
    pub artifact: PathBuf,
    /// The version the component must report in its metadata.
    pub version: String,
    /// The artifact's SHA-256 (hex).
    pub sha256: String,
    /// Chain position; lower runs first. Ties keep manifest order.
    #[serde(default)]
    pub order: i64,
    /// `enforce` or `monitor`.
    #[serde(default)]
    pub mode: PolicyMode,
    /// `hold` or `defer` for statements this policy holds.
    #[serde(default)]
    pub approval_mode: Option<crate::config::ApprovalMode>,
    /// CPU per call.
    #[serde(default = "default_deadline")]
    pub deadline_ms: u64,
    /// Memory cap per instance, MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    /// Calls before an instance is replaced.
    #[serde(default = "default_max_calls")]
    pub max_calls_per_instance: u64,
    /// Remember verdicts keyed on the literal-free request (see
    /// [`PolicyConfig::decision_cache`]).
    #[serde(default)]
    pub decision_cache: bool,
    /// Fixture file run against the new set before it goes live.
    #[serde(default)]
    pub fixtures: Option<PathBuf>,
    /// Settings for `configure`.
    #[serde(default)]
    pub settings: toml::Table,
}

fn default_deadline() -> u64 {
    DEFAULT_POLICY_DEADLINE_MS
}
fn default_memory() -> u64 {
    DEFAULT_POLICY_MEMORY_MB
}
fn default_max_calls() -> u64 {
    DEFAULT_POLICY_MAX_CALLS
}

impl Manifest {
    /// Parses manifest text; `path` is for messages.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, String> {
        let mut m: Manifest =
            toml::from_str(text).map_err(|e| format!("{}: {}", path.display(), e.message()))?;
        let mut seen = std::collections::HashSet::new();
        for p in &m.policies {
            if !seen.insert(p.id.as_str()) {
                return Err(format!(
                    "{}: policy id \"{}\" appears twice",
                    path.display(),
                    p.id
                ));
            }
            if p.artifact.is_absolute() || p.artifact.components().any(|c| c.as_os_str() == "..") {
                return Err(format!(
                    "{}: policy \"{}\": artifact {} must be a path inside the policy directory",
                    path.display(),
                    p.id,
                    p.artifact.display()
                ));
            }
        }
        m.policies.sort_by_key(|p| p.order);
        Ok(m)
    }

    /// The runtime configuration of each policy, with artifact paths under `dir`.
    pub fn policy_configs(&self, dir: &Path) -> Vec<PolicyConfig> {
        self.policies
            .iter()
            .map(|p| {
                let mut c = PolicyConfig::new(p.id.clone(), dir.join(&p.artifact));
                c.sha256 = Some(p.sha256.to_ascii_lowercase());
                c.settings = p.settings.clone();
                c.deadline_ms = p.deadline_ms;
                c.memory_mb = p.memory_mb;
                c.max_calls_per_instance = p.max_calls_per_instance;
                c.mode = p.mode;
                c.approval_mode = p.approval_mode;
                c.decision_cache = p.decision_cache;
                c
            })
            .collect()
    }
}

/// A fixture file: statements with the decision they must get.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixtures {
    /// The cases.
    #[serde(default, rename = "case")]
    pub cases: Vec<Fixture>,
}

/// One fixture case.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fixture {
    /// Identity.
    pub user: String,
    /// Its groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Its kind.
    #[serde(default)]
    pub kind: crate::config::PrincipalKind,
    /// For an agent acting for a person: that person.
    #[serde(default)]
    pub acting_for: Option<String>,
    /// That person's groups.
    #[serde(default)]
    pub acting_for_groups: Vec<String>,
    /// Database.
    #[serde(default = "default_database")]
    pub database: String,
    /// The SQL string.
    pub sql: String,
    /// `allow`, `deny` or `require-approval`.
    pub expect: Expect,
}

fn default_database() -> String {
    "postgres".to_owned()
}

/// A fixture's expected decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Expect {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
    /// Held for approval.
    #[serde(alias = "hold")]
    RequireApproval,
}
