//! `portcullis policy bench`: per-policy latency and instance cost on a recording.
//!
//! The recording is read into memory first; then each policy of the candidate set
//! is called on every recorded statement (`authorize`) and result set
//! (`plan-masks`), `rounds` times, warm instances reused as in the gateway. Instance
//! cost is the time to instantiate and configure one fresh instance and the linear
//! memory it holds.

use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;

use super::CallContext;
use super::bindings::portcullis::policy::types as wit;
use super::candidate::{load_candidate, offline_runtime};
use super::replay::{PolicyLatency, Timings};
use crate::recording::read::{Entry, Reader};

/// One policy's instance cost.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceCost {
    /// Policy id.
    pub policy: String,
    /// Artifact size, bytes.
    pub artifact_bytes: u64,
    /// Instantiate + configure, µs (median of 5).
    pub instantiate_us: f64,
    /// Linear memory of a fresh instance, KiB.
    pub memory_kib: u64,
}

/// The benchmark report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The recording.
    pub recording: PathBuf,
    /// The candidate directory.
    pub policies: PathBuf,
    /// Statements in the recording.
    pub statements: usize,
    /// Result sets in the recording.
    pub results: usize,
    /// Rounds over the recording.
    pub rounds: usize,
    /// Per policy and hook.
    pub latency: Vec<PolicyLatency>,
    /// Per policy.
    pub instances: Vec<InstanceCost>,
    /// Statements per second through the whole chain, stopping where the live chain
    /// stops (the first denial).
    pub chain_statements_per_sec: f64,
}

/// Runs the benchmark.
pub fn bench(
    recording: &std::path::Path,
    policies: &std::path::Path,
    rounds: usize,
) -> Result<BenchReport, String> {
    let runtime = offline_runtime()?;
    let candidate = load_candidate(policies, &runtime)
        .map_err(|e| format!("candidate {}: {e}", policies.display()))?;
    let mut requests: Vec<(wit::Request, CallContext)> = Vec::new();
    let mut contexts: Vec<(wit::ResultContext, CallContext)> = Vec::new();
    for entry in Reader::open(recording)? {
        match entry? {
            Entry::Statement(s, _) => requests.push((s.request()?, s.identity.call_context())),
            Entry::Result(r) if !r.columns.is_empty() => {
                contexts.push((r.context()?, r.identity.call_context()))
            }
            Entry::Result(_) => {}
        }
    }
    let rounds = rounds.max(1);
    let mut timings = Timings::default();
    let chain = &candidate.chain;
    for (i, p) in chain.policies().iter().enumerate() {
        for _ in 0..rounds {
            if p.metadata().authorize {
                for (req, call) in &requests {
                    let started = Instant::now();
                    let _ = p.authorize(req, call);
                    timings.add(i, p.id(), "authorize", started.elapsed());
                }
            }
            if p.metadata().mask {
                for (ctx, call) in &contexts {
                    let started = Instant::now();
                    let _ = p.plan_masks(ctx, call);
                    timings.add(i, p.id(), "plan-masks", started.elapsed());
                }
            }
        }
    }
    let started = Instant::now();
    for _ in 0..rounds {
        for (req, call) in &requests {
            let _ = super::evaluate::evaluate(chain, req, call, false);
        }
    }
    let chain_elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let mut instances = Vec::new();
    let dir_manifest = super::reload::manifest::Manifest::parse(
        &policies.join(super::reload::manifest::MANIFEST_FILE),
        &std::fs::read_to_string(policies.join(super::reload::manifest::MANIFEST_FILE))
            .map_err(|e| e.to_string())?,
    )?;
    for (p, entry) in chain.policies().iter().zip(&dir_manifest.policies) {
        let mut times = Vec::new();
        let mut memory = 0;
        for _ in 0..5 {
            let (t, m) = p.pool().instance_cost()?;
            times.push(t);
            memory = m;
        }
        times.sort();
        instances.push(InstanceCost {
            policy: p.id().to_owned(),
            artifact_bytes: std::fs::metadata(policies.join(&entry.artifact))
                .map(|m| m.len())
                .unwrap_or(0),
            instantiate_us: times[2].as_secs_f64() * 1e6,
            memory_kib: (memory / 1024) as u64,
        });
    }
    Ok(BenchReport {
        recording: recording.to_owned(),
        policies: policies.to_owned(),
        statements: requests.len(),
        results: contexts.len(),
        rounds,
        latency: timings.summary(),
        instances,
        chain_statements_per_sec: (requests.len() * rounds) as f64 / chain_elapsed,
    })
}

/// The human-readable report.
pub fn render(r: &BenchReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} statements, {} result sets from {}, {} round(s); candidate {}",
        r.statements,
        r.results,
        r.recording.display(),
        r.rounds,
        r.policies.display()
    );
    let _ = writeln!(
        s,
        "\n  {:<16} {:<11} {:>9} {:>9} {:>9} {:>9}",
        "policy", "hook", "calls", "p50 µs", "p99 µs", "max µs"
    );
    for l in &r.latency {
        let _ = writeln!(
            s,
            "  {:<16} {:<11} {:>9} {:>9.1} {:>9.1} {:>9.1}",
            l.policy, l.hook, l.calls, l.p50_us, l.p99_us, l.max_us
        );
    }
    let _ = writeln!(
        s,
        "\n  {:<16} {:>12} {:>15} {:>12}",
        "policy", "artifact KiB", "instantiate µs", "memory KiB"
    );
    for i in &r.instances {
        let _ = writeln!(
            s,
            "  {:<16} {:>12} {:>15.0} {:>12}",
            i.policy,
            i.artifact_bytes / 1024,
            i.instantiate_us,
            i.memory_kib
        );
    }
    let _ = writeln!(
        s,
        "\nwhole chain (authorize): {:.0} statements/s",
        r.chain_statements_per_sec
    );
    s
}
