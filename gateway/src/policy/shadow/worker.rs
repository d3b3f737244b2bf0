//! The shadow worker: decides each queued statement and plans each queued result set
//! with the candidate, compares with what the live set did, and logs and counts the
//! differences.

use std::sync::Arc;
use std::sync::mpsc::Receiver;

use arc_swap::ArcSwap;

use super::ShadowStats;
use crate::policy::CallContext;
use crate::policy::bindings::portcullis::policy::types as wit;
use crate::policy::candidate::Candidate;
use crate::policy::evaluate::{Outcome, evaluate};
use crate::policy::maskdiff;

/// A statement the live set decided.
pub(super) struct StatementJob {
    /// The policy request, as the live policies got it.
    pub req: wit::Request,
    /// What the live policies' `context` import answered.
    pub call: CallContext,
    /// `allow`, `deny` or `hold`.
    pub live: &'static str,
    /// The live deciding policy.
    pub live_policy: Option<String>,
}

/// A result set the live set planned masks for (or would have, had it masked).
pub(super) struct ResultJob {
    /// The masking context (columns with provenance).
    pub ctx: Arc<wit::ResultContext>,
    /// What the live policies' `context` import answered.
    pub call: CallContext,
    /// The live plan's masks.
    pub masks: Vec<maskdiff::Mask>,
    /// The live policy that refused the result, if one did.
    pub refused_by: Option<String>,
}

/// What the worker is handed.
pub(super) enum Job {
    /// Decide a statement again.
    Statement(Box<StatementJob>),
    /// Plan a result set again.
    Result(ResultJob),
}

/// Starts the worker thread; it ends when every sender is gone.
pub(super) fn spawn(
    rx: Receiver<Job>,
    candidate: Arc<ArcSwap<Candidate>>,
    stats: ShadowStats,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("portcullis-shadow".into())
        .spawn(move || {
            while let Ok(job) = rx.recv() {
                let c = candidate.load_full();
                match job {
                    Job::Statement(j) => statement(&c, &j, &stats),
                    Job::Result(j) => result(&c, &j, &stats),
                }
            }
        })?;
    Ok(())
}

fn statement(c: &Candidate, job: &StatementJob, stats: &ShadowStats) {
    let e = evaluate(&c.chain, &job.req, &job.call, false);
    stats.evaluated.inc();
    let kind = if e.failed {
        "error".to_owned()
    } else {
        let shadow = e.outcome.as_str();
        if shadow == job.live {
            return;
        }
        format!("{}_to_{shadow}", job.live)
    };
    stats.differences.with_label_values(&[&kind]).inc();
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
        candidate = %c.version,
        "shadow policy set decides differently"
    );
}

fn result(c: &Candidate, job: &ResultJob, stats: &ShadowStats) {
    let planned = maskdiff::plan(&c.chain, &job.ctx, &job.call, |_, _, _| {});
    stats.results.inc();
    let n = job.ctx.columns.len();
    for d in maskdiff::compare(n, &job.masks, job.refused_by.as_deref(), &planned) {
        stats.differences.with_label_values(&[d.kind]).inc();
        let column = d
            .column
            .and_then(|i| job.ctx.columns.get(i))
            .map_or("", |col| col.name.as_str());
        tracing::info!(
            kind = d.kind,
            user = %job.ctx.identity.user,
            fingerprint = job.ctx.statement.as_ref().map_or("", |s| s.fingerprint.as_str()),
            column,
            live = %d.before,
            shadow = %d.after,
            shadow_policy = d.policy.as_deref().unwrap_or(""),
            detail = d.detail.as_deref().unwrap_or(""),
            candidate = %c.version,
            "shadow policy set masks differently"
        );
    }
}
