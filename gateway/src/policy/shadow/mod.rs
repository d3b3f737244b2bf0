//! Shadow mode: a candidate policy set evaluated alongside the live one on real
//! traffic, never enforced.
//!
//! The [`ShadowGate`] returns the live gate's decision untouched and the
//! [`ShadowFilter`] the live mask plan; each hands a copy of what the live set was
//! asked (the policy request, the masking context with the plan applied) to a worker
//! thread through a bounded queue. The client never waits for the candidate, a full
//! queue drops the evaluation (counted), and a candidate that traps or times out is
//! only counted. Differences are logged and counted in
//! `portcullis_shadow_differences_total{kind}` (`allow_to_deny`, ..., `mask_changed`,
//! `result_refused`, `result_unrefused`, `error`).
//!
//! The candidate directory is watched like a live policy directory: a change reloads
//! the candidate without touching a session ([`Shadow::reload`]); a candidate that does
//! not load keeps the previous one, and the failure is logged, counted
//! (`portcullis_shadow_reloads_total{result="error"}`) and shown on `GET /shadow`.

mod seams;
mod worker;

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Deserialize;

use super::PolicyRuntime;
use super::candidate::{Candidate, load_candidate};
pub use seams::{ShadowFilter, ShadowGate};
use worker::Job;

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
    /// Reload the candidate when the directory changes.
    #[serde(default = "default_true")]
    pub watch: bool,
    /// Quiet time after the last change before reloading, ms.
    #[serde(default = "crate::config::default_debounce_ms")]
    pub debounce_ms: u64,
}

fn default_queue() -> usize {
    4096
}

fn default_true() -> bool {
    true
}

/// Counters of a shadow set.
#[derive(Clone)]
pub struct ShadowStats {
    /// Statements the candidate evaluated.
    pub evaluated: prometheus::IntCounter,
    /// Result sets whose mask plan the candidate made again.
    pub results: prometheus::IntCounter,
    /// Differences from the live decision or mask plan, by kind.
    pub differences: prometheus::IntCounterVec,
    /// Evaluations dropped because the worker was behind.
    pub dropped: prometheus::IntCounter,
    /// Candidate reloads by result (`ok`, `error`).
    pub reloads: prometheus::IntCounterVec,
}

impl ShadowStats {
    fn new(registry: Option<&prometheus::Registry>) -> prometheus::Result<Self> {
        let s = ShadowStats {
            evaluated: prometheus::IntCounter::new(
                "shadow_evaluations_total",
                "Statements the shadow policy set evaluated",
            )?,
            results: prometheus::IntCounter::new(
                "shadow_result_evaluations_total",
                "Result sets the shadow policy set planned masks for",
            )?,
            differences: prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "shadow_differences_total",
                    "Shadow decisions and mask plans that differ from the live ones, by kind",
                ),
                &["kind"],
            )?,
            dropped: prometheus::IntCounter::new(
                "shadow_dropped_total",
                "Shadow evaluations dropped because the candidate fell behind",
            )?,
            reloads: prometheus::IntCounterVec::new(
                prometheus::Opts::new("shadow_reloads_total", "Shadow candidate reloads by result"),
                &["result"],
            )?,
        };
        if let Some(r) = registry {
            r.register(Box::new(s.evaluated.clone()))?;
            r.register(Box::new(s.results.clone()))?;
            r.register(Box::new(s.differences.clone()))?;
            r.register(Box::new(s.dropped.clone()))?;
            r.register(Box::new(s.reloads.clone()))?;
        }
        Ok(s)
    }
}

/// A running shadow set.
pub struct Shadow {
    config: ShadowConfig,
    runtime: PolicyRuntime,
    /// The candidate the worker evaluates with (swapped by a reload).
    candidate: Arc<ArcSwap<Candidate>>,
    tx: SyncSender<Job>,
    stats: ShadowStats,
    /// Why the last reload failed, when it did (cleared by a successful one).
    last_error: Mutex<Option<String>>,
    /// Serialises reloads.
    reloading: Mutex<()>,
}

impl Shadow {
    /// Loads the candidate directory and starts its worker. Blocking (compiles).
    pub fn start(
        config: &ShadowConfig,
        cache_dir: Option<PathBuf>,
        registry: Option<&prometheus::Registry>,
    ) -> anyhow::Result<Arc<Shadow>> {
        let runtime = PolicyRuntime::new(cache_dir, super::PolicyMetrics::unregistered())?;
        let first = load_candidate(&config.path, &runtime)
            .map_err(|e| anyhow::anyhow!("[shadow] {}: {e}", config.path.display()))?;
        let stats = ShadowStats::new(registry)?;
        let (tx, rx) = sync_channel::<Job>(config.queue.max(1));
        tracing::info!(version = %first.version, path = %config.path.display(), "shadow policy set loaded");
        let candidate = Arc::new(ArcSwap::from_pointee(first));
        worker::spawn(rx, Arc::clone(&candidate), stats.clone())?;
        Ok(Arc::new(Shadow {
            config: config.clone(),
            runtime,
            candidate,
            tx,
            stats,
            last_error: Mutex::new(None),
            reloading: Mutex::new(()),
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &ShadowConfig {
        &self.config
    }

    /// The counters.
    pub fn stats(&self) -> &ShadowStats {
        &self.stats
    }

    /// The candidate set's version.
    pub fn version(&self) -> String {
        self.candidate.load().version.clone()
    }

    /// Loads the directory again and swaps the candidate in; evaluations already
    /// queued finish with the one they started with. On failure the previous
    /// candidate stays, and the error is logged, counted, kept for `GET /shadow` and
    /// returned. Blocking: compiles.
    pub fn reload(&self) -> Result<String, String> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let last_error = || self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match load_candidate(&self.config.path, &self.runtime) {
            Ok(c) => {
                let version = c.version.clone();
                self.candidate.store(Arc::new(c));
                *last_error() = None;
                self.stats.reloads.with_label_values(&["ok"]).inc();
                tracing::info!(version = %version, path = %self.config.path.display(), "shadow policy set reloaded");
                Ok(version)
            }
            Err(e) => {
                self.stats.reloads.with_label_values(&["error"]).inc();
                tracing::error!(error = %e, path = %self.config.path.display(), "shadow policy reload failed; the previous candidate keeps running");
                *last_error() = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Queues a job; drops (and counts) it when the worker is behind.
    fn submit(&self, job: Job) {
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.inc()
            }
        }
    }

    /// True when the candidate plans masks (result sets are worth comparing even
    /// when the live set masked nothing).
    fn candidate_masks(&self) -> bool {
        !self.candidate.load().chain.mask_policies().is_empty()
    }
}

/// Starts the task reloading the candidate when its directory changes (debounced,
/// as for `[policy_dir]`), until `shutdown`.
pub fn spawn_watcher(
    shadow: Arc<Shadow>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use super::reload::watch::{next_change, watch_dir};
    let (watcher, mut changed) =
        watch_dir(&shadow.config.path).map_err(|e| anyhow::anyhow!("[shadow] {e}"))?;
    let debounce = std::time::Duration::from_millis(shadow.config.debounce_ms);
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        loop {
            tokio::select! {
                _ = shutdown.changed() => break,
                change = next_change(&mut changed, debounce) => {
                    if change.is_none() {
                        break;
                    }
                    let s = Arc::clone(&shadow);
                    // The outcome is logged and counted by `reload`.
                    let _ = tokio::task::spawn_blocking(move || s.reload()).await;
                }
            }
        }
    }))
}

/// `GET /shadow` on the admin endpoint: the candidate's version, its counters and the
/// last failed reload.
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
    let by_label = |v: &prometheus::IntCounterVec, label: &str| {
        use prometheus::core::Collector as _;
        let mut out = serde_json::Map::new();
        for m in v.collect() {
            for metric in m.get_metric() {
                let key = metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == label)
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                out.insert(key, (metric.get_counter().get_value() as u64).into());
            }
        }
        out
    };
    axum::Json(serde_json::json!({
        "version": s.version(),
        "evaluated": s.stats.evaluated.get(),
        "results_evaluated": s.stats.results.get(),
        "dropped": s.stats.dropped.get(),
        "differences": by_label(&s.stats.differences, "kind"),
        "reloads": by_label(&s.stats.reloads, "result"),
        "last_error": s.last_error.lock().unwrap_or_else(|e| e.into_inner()).clone(),
    }))
    .into_response()
}
