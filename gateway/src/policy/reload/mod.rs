//! Hot reload of a policy directory: versioned, pinned, optionally signed artifacts.
//!
//! A reload is a transaction ([`PolicySets::reload`]): read the manifest → check every
//! digest and signature → compile (through the precompiled cache) → instantiate and
//! configure → run the bundled fixtures → swap the whole set atomically. Statements
//! being decided keep the set they started with (they hold its `Arc`); new ones see the
//! new set. Any failure keeps the old set serving and is logged, counted and shown on
//! `/policies`. The previous set is kept for [`PolicySets::rollback`].

pub mod cli;
pub mod manifest;
pub mod signing;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use ed25519_dalek::VerifyingKey;
use portcullis_sql::Analyzer;
use serde::Serialize;

use self::manifest::{Expect, Fixtures, MANIFEST_FILE, Manifest};
use super::harness::{Who, decide_sql, offline_session};
use super::{PolicyChain, PolicyRuntime, load_chain_with};
use crate::config::{PolicyDirConfig, validate_policy_entries};
use crate::pipeline::{Decision, Gate, SessionInfo, StatementContext};

/// One loaded, live-able policy set.
pub struct PolicySet {
    /// The manifest's `version`.
    pub version: String,
    /// The chain, in manifest order.
    pub chain: PolicyChain,
    /// SHA-256 of the manifest file.
    pub manifest_sha256: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// How long loading took (read, verify, compile, configure, fixtures).
    pub load_ms: f64,
    /// Reload generation (1 for the set loaded at start).
    pub generation: u64,
}

/// The sets of a gateway: the live one, the previous one, and the last failure.
pub struct PolicySets {
    /// Where the directory is and how it is checked.
    config: PolicyDirConfig,
    /// Trusted signing keys.
    trusted: Vec<VerifyingKey>,
    /// The engine (shared compile cache and epoch ticker).
    runtime: PolicyRuntime,
    /// Whether fast-path FunctionCalls are allowed.
    allow_function_call: bool,
    /// The live set.
    current: ArcSwap<PolicySet>,
    /// The set before it, for rollback.
    previous: Mutex<Option<Arc<PolicySet>>>,
    /// Why the last reload failed, if it did (cleared by a successful one).
    last_error: Mutex<Option<ReloadFailure>>,
    /// Serialises reloads and rollbacks.
    reloading: Mutex<u64>,
    /// Reload outcomes.
    reloads: prometheus::IntCounterVec,
}

/// A failed reload, as `/policies` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ReloadFailure {
    /// What failed.
    pub error: String,
    /// When (seconds since the Unix epoch).
    pub at_unix: u64,
}

/// `/policies`: what is loaded.
#[derive(Debug, Clone, Serialize)]
pub struct SetStatus {
    /// The live set's version.
    pub version: String,
    /// Its generation.
    pub generation: u64,
    /// The manifest's digest.
    pub manifest_sha256: String,
    /// Loaded at (seconds since the Unix epoch).
    pub loaded_at_unix: u64,
    /// Load time, ms.
    pub load_ms: f64,
    /// Each policy.
    pub policies: Vec<PolicyStatus>,
    /// The version a rollback would restore.
    pub previous_version: Option<String>,
    /// The last failed reload, if the latest attempt failed.
    pub last_error: Option<ReloadFailure>,
}

/// One policy in [`SetStatus`].
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    /// Id.
    pub id: String,
    /// Name from its metadata.
    pub name: String,
    /// Version from its metadata.
    pub version: String,
    /// Artifact digest.
    pub sha256: String,
    /// enforce / monitor.
    pub mode: String,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl PolicySets {
    /// Loads the directory's set for the first time; an error stops the gateway start.
    pub fn load(
        config: PolicyDirConfig,
        runtime: PolicyRuntime,
        allow_function_call: bool,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<PolicySets> {
        let mut trusted = Vec::new();
        for k in &config.trusted_keys {
            trusted.push(signing::read_public(k).map_err(|e| anyhow::anyhow!("trusted key {e}"))?);
        }
        anyhow::ensure!(
            !config.require_signatures || !trusted.is_empty(),
            "[policy_dir] require_signatures = true needs at least one trusted_keys entry"
        );
        let reloads = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "portcullis_policy_reloads_total",
                "Policy set reloads and rollbacks by outcome",
            ),
            &["result"],
        )?;
        let _ = registry.register(Box::new(reloads.clone()));
        let first = load_set(&config, &trusted, &runtime, allow_function_call, 1)
            .map_err(|e| anyhow::anyhow!("policy directory {}: {e}", config.path.display()))?;
        tracing::info!(version = %first.version, policies = first.chain.policies().len(), load_ms = first.load_ms, "policy set loaded");
        Ok(PolicySets {
            config,
            trusted,
            runtime,
            allow_function_call,
            current: ArcSwap::from_pointee(first),
            previous: Mutex::new(None),
            last_error: Mutex::new(None),
            reloading: Mutex::new(1),
            reloads,
        })
    }

    /// The live set. Hold the `Arc` for as long as one decision takes.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// The directory's configuration.
    pub fn config(&self) -> &PolicyDirConfig {
        &self.config
    }

    /// Loads the directory again and swaps it in if everything checks out; on failure
    /// the live set stays and the error is returned (and kept for `/policies`).
    /// Blocking: compiles. Call it off the async runtime's workers.
    pub fn reload(&self) -> Result<Arc<PolicySet>, String> {
        let mut generation = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        match load_set(
            &self.config,
            &self.trusted,
            &self.runtime,
            self.allow_function_call,
            *generation + 1,
        ) {
            Ok(set) => {
                *generation += 1;
                let set = Arc::new(set);
                let old = self.current.swap(Arc::clone(&set));
                *self.previous.lock().unwrap_or_else(|e| e.into_inner()) = Some(old);
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                self.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(version = %set.version, generation = set.generation, load_ms = set.load_ms, "policy set reloaded");
                Ok(set)
            }
            Err(e) => {
                self.reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, "policy reload failed; the previous set keeps serving");
                *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(ReloadFailure {
                    error: e.clone(),
                    at_unix: unix(SystemTime::now()),
                });
                Err(e)
            }
        }
    }

    /// Swaps the previous set back in (the live one becomes the previous).
    pub fn rollback(&self) -> Result<Arc<PolicySet>, String> {
        let _guard = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let mut previous = self.previous.lock().unwrap_or_else(|e| e.into_inner());
        let Some(prev) = previous.take() else {
            return Err("no previous policy set to roll back to".to_owned());
        };
        let old = self.current.swap(Arc::clone(&prev));
        *previous = Some(old);
        self.reloads.with_label_values(&["rollback"]).inc();
        tracing::warn!(version = %prev.version, generation = prev.generation, "policy set rolled back");
        Ok(prev)
    }

    /// What `/policies` shows.
    pub fn status(&self) -> SetStatus {
        let cur = self.current();
        SetStatus {
            version: cur.version.clone(),
            generation: cur.generation,
            manifest_sha256: cur.manifest_sha256.clone(),
            loaded_at_unix: unix(cur.loaded_at),
            load_ms: cur.load_ms,
            policies: cur
                .chain
                .policies()
                .iter()
                .map(|p| PolicyStatus {
                    id: p.id().to_owned(),
                    name: p.metadata().name.clone(),
                    version: p.metadata().version.clone(),
                    sha256: p.sha256().to_owned(),
                    mode: p.mode().as_str().to_owned(),
                })
                .collect(),
            previous_version: self
                .previous
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|p| p.version.clone()),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// The gate of a gateway with a policy directory: decides with the live set.
pub struct ReloadableGate(pub Arc<PolicySets>);

impl Gate for ReloadableGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        self.0.current().chain.decide(ctx)
    }

    fn route_approval(
        &self,
        ctx: &StatementContext<'_>,
        ask: &crate::pipeline::ApprovalAsk<'_>,
    ) -> crate::pipeline::ApprovalRoute {
        self.0.current().chain.route_approval(ctx, ask)
    }

    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision {
        self.0
            .current()
            .chain
            .decide_function_call(session, function_oid)
    }
}

/// Reads, verifies, compiles, configures and tests the directory's set.
fn load_set(
    config: &PolicyDirConfig,
    trusted: &[VerifyingKey],
    runtime: &PolicyRuntime,
    allow_function_call: bool,
    generation: u64,
) -> Result<PolicySet, String> {
    let started = Instant::now();
    let dir = &config.path;
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    if config.require_signatures {
        signing::verify_file(trusted, &manifest_path, &text)?;
    }
    let text =
        String::from_utf8(text).map_err(|_| format!("{}: not UTF-8", manifest_path.display()))?;
    let manifest = Manifest::parse(&manifest_path, &text)?;
    let configs = manifest.policy_configs(dir);
    validate_policy_entries(&configs).map_err(|(i, key, msg)| {
        format!("{}: policies[{i}].{key}: {msg}", manifest_path.display())
    })?;
    for (entry, c) in manifest.policies.iter().zip(&configs) {
        let bytes = std::fs::read(&c.path)
            .map_err(|e| format!("policy \"{}\": cannot read {}: {e}", c.id, c.path.display()))?;
        let digest = super::cache::sha256_hex(&bytes);
        if !digest.eq_ignore_ascii_case(&entry.sha256) {
            return Err(format!(
                "policy \"{}\": {} has sha256 {digest}, but the manifest pins {} (a half-written or wrong file?)",
                c.id,
                c.path.display(),
                entry.sha256
            ));
        }
        if config.require_signatures {
            signing::verify_file(trusted, &c.path, &bytes)
                .map_err(|e| format!("policy \"{}\": {e}", c.id))?;
        }
    }
    let chain =
        load_chain_with(runtime, &configs, allow_function_call).map_err(|e| e.to_string())?;
    for (entry, p) in manifest.policies.iter().zip(chain.policies()) {
        if p.metadata().version != entry.version {
            return Err(format!(
                "policy \"{}\": the manifest says version {}, the component reports {}",
                entry.id,
                entry.version,
                p.metadata().version
            ));
        }
    }
    for entry in &manifest.policies {
        if let Some(f) = &entry.fixtures {
            run_fixtures(&chain, &dir.join(f))
                .map_err(|e| format!("policy \"{}\": {e}", entry.id))?;
        }
    }
    Ok(PolicySet {
        version: manifest.version,
        chain,
        manifest_sha256: super::cache::sha256_hex(text.as_bytes()),
        loaded_at: SystemTime::now(),
        load_ms: started.elapsed().as_secs_f64() * 1e3,
        generation,
    })
}

/// Runs a fixture file against a chain; the first case decided otherwise fails it.
pub fn run_fixtures(chain: &PolicyChain, path: &Path) -> Result<usize, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("fixtures {}: {e}", path.display()))?;
    let fixtures: Fixtures = toml::from_str(&text)
        .map_err(|e| format!("fixtures {}: {}", path.display(), e.message()))?;
    let analyzer = Analyzer::new(256);
    for (i, case) in fixtures.cases.iter().enumerate() {
        let who = Who {
            user: case.user.clone(),
            kind: case.kind,
            groups: case.groups.clone(),
            acting_for: case.acting_for.clone(),
            acting_for_groups: case.acting_for_groups.clone(),
        };
        let session = offline_session(&who, &case.database, "portcullis-fixtures");
        let decision = decide_sql(&analyzer, &session, &case.sql, |ctx| {
            chain.decide_checked(ctx)
        })
        .map_err(|e| format!("fixtures {} case {}: {e}", path.display(), i + 1))?;
        let got = match decision {
            Decision::Allow => Expect::Allow,
            Decision::Deny(_) => Expect::Deny,
            Decision::Hold(_) => Expect::RequireApproval,
        };
        if got != case.expect {
            return Err(format!(
                "fixtures {} case {} ({} as {}): expected {:?}, got {:?}{}",
                path.display(),
                i + 1,
                case.sql,
                case.user,
                case.expect,
                got,
                decision
                    .denial()
                    .map(|d| format!(" ({})", d.message))
                    .unwrap_or_default()
            ));
        }
    }
    Ok(fixtures.cases.len())
}

/// Where a manifest-relative artifact lives (for the CLI).
pub fn artifact_path(dir: &Path, artifact: &Path) -> PathBuf {
    dir.join(artifact)
}
