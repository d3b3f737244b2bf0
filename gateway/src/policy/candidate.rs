//! Loading a candidate policy set — a policy directory as hot reload reads it — for
//! replay, shadow mode and the benchmark. Offline use may load masking policies too.

use std::path::Path;
use std::time::Instant;

use super::reload::manifest::{MANIFEST_FILE, Manifest};
use super::{PolicyChain, PolicyRuntime, load_chain_with};
use crate::config::validate_policy_entries;

/// A loaded candidate set.
pub struct Candidate {
    /// The manifest's `version`.
    pub version: String,
    /// The chain, in manifest order.
    pub chain: PolicyChain,
    /// Load time (read, digests, compile or cache, configure), ms.
    pub load_ms: f64,
}

/// Reads `dir/policies.toml`, checks every pinned digest and version, compiles and
/// configures the chain. Blocking.
pub fn load_candidate(dir: &Path, runtime: &PolicyRuntime) -> Result<Candidate, String> {
    let started = Instant::now();
    let manifest_path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("cannot read {}: {e}", manifest_path.display()))?;
    let manifest = Manifest::parse(&manifest_path, &text)?;
    let configs = manifest.policy_configs(dir);
    validate_policy_entries(&configs).map_err(|(i, key, msg)| {
        format!("{}: policies[{i}].{key}: {msg}", manifest_path.display())
    })?;
    let chain = load_chain_with(runtime, &configs, false).map_err(|e| e.to_string())?;
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
    Ok(Candidate {
        version: manifest.version,
        chain,
        load_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// A runtime for offline tools, with the compile cache under the system temp dir.
pub fn offline_runtime() -> Result<PolicyRuntime, String> {
    let cache = std::env::temp_dir().join("portcullis-harness-cache");
    PolicyRuntime::new(Some(cache), super::PolicyMetrics::unregistered()).map_err(|e| e.to_string())
}
