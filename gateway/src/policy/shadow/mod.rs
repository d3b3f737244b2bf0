//! Shadow mode: a candidate policy set evaluated alongside the live one on real
//! traffic, never enforced.
//!
//! The [`ShadowGate`] returns the live gate's decision untouched and hands a copy of
//! the request to a worker thread through a bounded queue: the client never waits
//! for the candidate, a full queue drops the evaluation (counted), and a candidate
//! that traps or times out is only counted. Differences are logged and counted in
//! `portcullis_shadow_differences_total{kind}` (`allow_to_deny`, `deny_to_allow`,
//! `allow_to_hold`, ..., `error`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use serde::Deserialize;

use super::bindings::portcullis::policy::types as wit;
use super::evaluate::{Outcome, evaluate};
use crate::masking::Catalog;
use crate::pipeline::{Decision, Gate, SessionInfo, StatementContext};

/// `[shadow]`: the candidate policy set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// A policy directory (`policies.toml` + artifacts), as `[policy_dir]` reads it.
    /// Relative to the configuration file.
    pub path: PathBuf,
    /// Evaluations queued for the worker; beyond that they are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
}

fn default_queue() -> usize {
    4096
}

/// Counters of a shadow set.
#[derive(Clone)]
pub struct ShadowStats {
    /// Statements the candidate evaluated.
    pub evaluated: prometheus::IntCounter,
    /// Differences from the live decision, by kind.
    pub differences: prometheus::IntCounterVec,
    /// Evaluations dropped because the worker was behind.
    pub dropped: prometheus::IntCounter,
}

impl ShadowStats {
    fn new(registry: Option<&prometheus::Registry>) -> prometheus::Result<Self> {
        let s = ShadowStats {
            evaluated: prometheus::IntCounter::new(
                "shadow_evaluations_total",
                "Statements the shadow policy set evaluated",
            )?,
            differences: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "shadow_differences_total",
                    "Shadow decisions that differ from the live ones, by kind",
                ),
                &["kind"],
            )?,
            dropped: prometheus::IntCounter::new(
                "shadow_dropped_total",
                "Shadow evaluations dropped because the candidate fell behind",
            )?,
        };
        if let Some(r) = registry {
            r.register(Box::new(s.evaluated.clone()))?;
            r.register(Box::new(s.differences.clone()))?;
            r.register(Box::new(s.dropped.clone()))?;
        }
        Ok(s)
    }
}

struct Job {
    req: wit::Request,
    live: &'static str,
    live_policy: Option<String>,
}

/// A running shadow set.
pub struct Shadow {
    tx: SyncSender<Job>,
    stats: ShadowStats,
    version: String,
}

impl Shadow {
    /// Loads the candidate directory and starts its worker. Blocking (compiles).
    pub fn start(
        config: &ShadowConfig,
        cache_dir: Option<PathBuf>,
        registry: Option<&prometheus::Registry>,
    ) -> anyhow::Result<Arc<Shadow>> {
        let runtime = super::PolicyRuntime::new(cache_dir, super::PolicyMetrics::unregistered())?;
        let candidate = super::candidate::load_candidate(&config.path, &runtime)
            .map_err(|e| anyhow::anyhow!("[shadow] {}: {e}", config.path.display()))?;
        let stats = ShadowStats::new(registry)?;
        let (tx, rx) = sync_channel::<Job>(config.queue.max(1));
        let worker_stats = stats.clone();
        let version = candidate.version.clone();
        std::thread::Builder::new()
            .name("portcullis-shadow".into())
            .spawn(move || {
                let _runtime = runtime;
                while let Ok(job) = rx.recv() {
                    let e = evaluate(&candidate.chain, &job.req, false);
                    worker_stats.evaluated.inc();
                    let kind = if e.failed {
                        Some("error".to_owned())
                    } else {
                        let shadow = e.outcome.as_str();
                        (shadow != job.live).then(|| format!("{}_to_{shadow}", job.live))
                    };
                    if let Some(kind) = kind {
                        worker_stats.differences.with_label_values(&[&kind]).inc();
                        let shadow_policy = match &e.outcome {
                            Outcome::Deny { policy, .. } => policy.clone(),
                            Outcome::Hold { policies, .. } => policies.join(","),
                            Outcome::Allow => String::new(),
                        };
                        tracing::info!(
                            kind = %kind,
                            user = %job.req.identity.user,
                            fingerprint = %job.req.statement.fingerprint,
                            live_policy = job.live_policy.as_deref().unwrap_or(""),
                            shadow_policy = %shadow_policy,
                            "shadow policy set decides differently"
                        );
                    }
                }
            })?;
        tracing::info!(version = %version, path = %config.path.display(), "shadow policy set loaded");
        Ok(Arc::new(Shadow { tx, stats, version }))
    }

    /// The counters.
    pub fn stats(&self) -> &ShadowStats {
        &self.stats
    }

    /// The candidate set's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn submit(&self, req: wit::Request, live: &Decision) {
        let (live, live_policy) = live_outcome(live);
        match self.tx.try_send(Job {
            req,
            live,
            live_policy,
        }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.inc()
            }
        }
    }
}

/// `GET /shadow` on the admin endpoint: the candidate's version and its counters.
pub async fn admin_status(
    axum::extract::State(shared): axum::extract::State<Arc<crate::server::Shared>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let Some(s) = &shared.shadow else {
        return (
            axum::http::StatusCode::NOT_FOUND,
            "no [shadow] policy set is configured\n",
        )
            .into_response();
    };
    let mut differences = serde_json::Map::new();
    use prometheus::core::Collector as _;
    for m in s.stats.differences.collect() {
        for metric in m.get_metric() {
            let kind = metric
                .get_label()
                .iter()
                .find(|l| l.name() == "kind")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            differences.insert(kind, (metric.get_counter().get_value() as u64).into());
        }
    }
    axum::Json(serde_json::json!({
        "version": s.version,
        "evaluated": s.stats.evaluated.get(),
        "dropped": s.stats.dropped.get(),
        "differences": differences,
    }))
    .into_response()
}

/// `allow`, `deny` or `hold`, and the deciding policy.
fn live_outcome(d: &Decision) -> (&'static str, Option<String>) {
    match d {
        Decision::Allow => ("allow", None),
        // Until approvals are enabled, a statement needing one is denied saying so.
        Decision::Deny(d) if d.message.starts_with(super::replay::APPROVAL_DENIAL) => {
            ("hold", Some(d.policy.clone()))
        }
        Decision::Deny(d) => ("deny", Some(d.policy.clone())),
        Decision::Hold(h) => ("hold", Some(h.policy.clone())),
    }
}

/// The live gate with the shadow set watching.
pub struct ShadowGate {
    inner: Arc<dyn Gate>,
    shadow: Arc<Shadow>,
    catalog: Option<Arc<Catalog>>,
}

impl ShadowGate {
    /// Wraps `inner`; `catalog` completes view columns like the masking gate.
    pub fn new(inner: Arc<dyn Gate>, shadow: Arc<Shadow>, catalog: Option<Arc<Catalog>>) -> Self {
        ShadowGate {
            inner,
            shadow,
            catalog,
        }
    }
}

impl Gate for ShadowGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        let decision = self.inner.decide(ctx);
        // Statements the gateway itself refuses (audit sink down) never reach here.
        let req = crate::recording::live_request(ctx, self.catalog.as_ref());
        self.shadow.submit(req, &decision);
        decision
    }

    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision {
        self.inner.decide_function_call(session, function_oid)
    }

    fn observes_binds(&self) -> bool {
        self.inner.observes_binds()
    }

    fn bound(&self, ctx: &StatementContext<'_>, params: &crate::pipeline::BoundParams<'_>) {
        self.inner.bound(ctx, params)
    }

    fn route_approval(
        &self,
        ctx: &StatementContext<'_>,
        ask: &crate::pipeline::ApprovalAsk<'_>,
    ) -> crate::pipeline::ApprovalRoute {
        self.inner.route_approval(ctx, ask)
    }
}
