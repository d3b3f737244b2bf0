//! Policy metrics, registered in the gateway's registry (prefix `portcullis_`).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Call latency buckets in microseconds, from 1 µs to 1 s.
const CALL_BUCKETS_US: &[f64] = &[
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    1_000.0,
    5_000.0,
    25_000.0,
    100_000.0,
    1_000_000.0,
];

/// Metrics of every loaded policy.
#[derive(Clone)]
pub struct PolicyMetrics {
    /// Failed calls that discarded an instance, by policy and kind (`timeout`,
    /// `memory`, `trap`, `exit`, `oversized`, `instantiate`, `configure`):
    /// `portcullis_policy_traps_total`.
    pub traps: IntCounterVec,
    /// Decisions, by policy and decision (`allow`, `deny`, `require_approval`,
    /// `error`): `portcullis_policy_decisions_total`.
    pub decisions: IntCounterVec,
    /// Time of one `authorize` call, by policy: `portcullis_policy_call_microseconds`.
    pub call_us: HistogramVec,
    /// Decision-cache lookups, by policy and outcome (`hit`, `miss`):
    /// `portcullis_policy_decision_cache_total`.
    pub decision_cache: IntCounterVec,
}

impl PolicyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let traps = IntCounterVec::new(
            Opts::new(
                "policy_traps_total",
                "Policy calls that failed (trap, timeout, memory cap, oversized result); each discards the instance",
            ),
            &["policy", "kind"],
        )?;
        let decisions = IntCounterVec::new(
            Opts::new("policy_decisions_total", "Policy decisions"),
            &["policy", "decision"],
        )?;
        let call_us = HistogramVec::new(
            HistogramOpts::new(
                "policy_call_microseconds",
                "Time of one policy authorize call",
            )
            .buckets(CALL_BUCKETS_US.to_vec()),
            &["policy"],
        )?;
        let decision_cache = IntCounterVec::new(
            Opts::new(
                "policy_decision_cache_total",
                "Decision-cache lookups of policies with decision_cache = true",
            ),
            &["policy", "outcome"],
        )?;
        registry.register(Box::new(decision_cache.clone()))?;
        registry.register(Box::new(traps.clone()))?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(call_us.clone()))?;
        Ok(PolicyMetrics {
            traps,
            decisions,
            call_us,
            decision_cache,
        })
    }

    /// Metrics in a private registry (tests, benchmarks, embedding without `/metrics`).
    pub fn unregistered() -> Self {
        Self::register(&Registry::new()).expect("static metric definitions are valid")
    }

    /// Failed calls of `policy` with `kind` so far.
    pub fn trap_count(&self, policy: &str, kind: &str) -> u64 {
        self.traps.with_label_values(&[policy, kind]).get()
    }
}
