//! Loading the configured policies.
//!
//! For each `[[policies]]` entry: read the file, compute its SHA-256, check the pinned
//! digest, compile (or load from the cache), link, start one instance, `configure` it
//! with the settings, ask for its `metadata`. Any failure is an error naming the policy
//! id and the config key, and stops the gateway from starting: it never serves without
//! the policies it was told to enforce.

use std::sync::Arc;
use std::time::Instant;

use super::bindings::PolicyPre;
use super::cache::sha256_hex;
use super::chain::{LoadedPolicy, PolicyChain, PolicyMetadata};
use super::instance::{InstancePool, PolicyLimits, StartError};
use super::metrics::PolicyMetrics;
use super::{PolicyError, PolicyRuntime};
use crate::config::{Config, PolicyConfig};

/// Loads every policy of `config` into a chain, in order. Blocking (compiling can take
/// seconds): call it from a blocking context.
pub fn load_chain(config: &Config, metrics: PolicyMetrics) -> Result<PolicyChain, PolicyError> {
    let runtime = PolicyRuntime::new(config.policy_runtime.cache_dir.clone(), metrics)?;
    load_chain_with(
        &runtime,
        &config.policies,
        config.policy_runtime.allow_function_call,
    )
}

/// Loads `policies` on an existing runtime.
pub fn load_chain_with(
    runtime: &PolicyRuntime,
    policies: &[PolicyConfig],
    allow_function_call: bool,
) -> Result<PolicyChain, PolicyError> {
    let mut loaded = Vec::with_capacity(policies.len());
    for (i, p) in policies.iter().enumerate() {
        loaded.push(Arc::new(load_policy(runtime, p, i)?));
    }
    Ok(PolicyChain::new(loaded, allow_function_call))
}

/// Loads one policy; `index` is its position in `[[policies]]` (for error messages).
pub fn load_policy(
    runtime: &PolicyRuntime,
    config: &PolicyConfig,
    index: usize,
) -> Result<LoadedPolicy, PolicyError> {
    let started = Instant::now();
    let id = config.id.clone();
    let key = |k: &str| format!("policies[{index}].{k}");
    let wasm = std::fs::read(&config.path).map_err(|source| PolicyError::Read {
        id: id.clone(),
        key: key("path"),
        path: config.path.clone(),
        source,
    })?;
    let sha256 = sha256_hex(&wasm);
    if let Some(expected) = &config.sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        return Err(PolicyError::DigestMismatch {
            id,
            key: key("sha256"),
            path: config.path.clone(),
            expected: expected.to_ascii_lowercase(),
            actual: sha256,
        });
    }
    let settings_json = config
        .settings_json()
        .map_err(|message| PolicyError::Settings {
            id: id.clone(),
            key: key("settings"),
            message,
        })?;
    let (component, outcome, compile_time) = runtime
        .cache()
        .load_or_compile(runtime.engine(), &wasm, &sha256)
        .map_err(|e| PolicyError::Compile {
            id: id.clone(),
            key: key("path"),
            path: config.path.clone(),
            message: format!("{e:#}"),
        })?;
    drop(wasm);
    let link_error = |e: wasmtime::Error| PolicyError::Link {
        id: id.clone(),
        key: key("path"),
        message: format!("{e:#}"),
    };
    let pre = runtime
        .linker()
        .instantiate_pre(&component)
        .map_err(link_error)?;
    let pre = PolicyPre::new(pre).map_err(link_error)?;
    let limits = PolicyLimits {
        deadline_ms: config.deadline_ms,
        memory_mb: config.memory_mb,
        max_calls_per_instance: config.max_calls_per_instance,
    };
    let shared_id: Arc<str> = Arc::from(id.as_str());
    let pool = InstancePool::new(
        Arc::clone(&shared_id),
        runtime.clone(),
        pre,
        settings_json,
        limits,
    )
    .map_err(link_error)?;
    let metadata = pool
        .prime(|p, store| p.call_metadata(store))
        .map_err(|e| match e {
            StartError::Rejected(message) => PolicyError::Settings {
                id: id.clone(),
                key: key("settings"),
                message,
            },
            StartError::Configure(f) => PolicyError::Start {
                id: id.clone(),
                key: key("settings"),
                message: format!("configure failed ({f}); the policy cannot be loaded"),
            },
            StartError::Instantiate(f) => PolicyError::Start {
                id: id.clone(),
                key: key("path"),
                message: format!("cannot start an instance ({f})"),
            },
            StartError::Call(f) => PolicyError::Start {
                id: id.clone(),
                key: key("path"),
                message: format!("metadata failed ({f})"),
            },
        })?;
    PolicyMetadata::check(&metadata).map_err(|message| PolicyError::Start {
        id: id.clone(),
        key: key("path"),
        message,
    })?;
    let metadata = PolicyMetadata::from_wit(&metadata);
    if !metadata.authorize {
        tracing::warn!(policy = %id, "policy does not implement authorize; it is not called for statements");
    }
    let load_time = started.elapsed();
    tracing::info!(
        policy = %id,
        name = %metadata.name,
        version = %metadata.version,
        %sha256,
        mode = config.mode.as_str(),
        cache = ?outcome,
        compile_or_cache_us = compile_time.as_micros() as u64,
        load_us = load_time.as_micros() as u64,
        "policy loaded"
    );
    let metrics = runtime.metrics().clone();
    Ok(LoadedPolicy::new(
        shared_id,
        config.mode,
        metadata,
        sha256,
        outcome,
        load_time,
        pool,
        metrics,
    )
    .with_approval_mode(config.approval_mode)
    .with_decision_cache(config.decision_cache))
}
