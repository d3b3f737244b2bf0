//! Shadow mode at the pipeline seams: observers of the live gate and result filter
//! (see [`crate::pipeline::ObservingGate`]) handing what they saw to the shadow
//! worker.

use std::sync::Arc;

use super::Shadow;
use super::worker::{Job, ResultJob, StatementJob};
use crate::masking::{Catalog, MaskObservation};
use crate::pipeline::{
    Decision, DecisionObserver, PlanObserver, ResultContext, RowRewriter, StatementContext,
};
use crate::policy::CallContext;
use crate::recording::format::mask_name;

/// `allow`, `deny` or `hold`, and the deciding policy.
fn live_outcome(d: &Decision) -> (&'static str, Option<String>) {
    match d {
        Decision::Allow => ("allow", None),
        // Until approvals are enabled, a statement needing one is denied saying so.
        Decision::Deny(d)
            if d.message
                .starts_with(crate::policy::replay::APPROVAL_DENIAL) =>
        {
            ("hold", Some(d.policy.clone()))
        }
        Decision::Deny(d) => ("deny", Some(d.policy.clone())),
        Decision::Hold(h) => ("hold", Some(h.policy.clone())),
    }
}

/// Hands each statement the live gate decided to the shadow worker (an
/// [`ObservingGate`](crate::pipeline::ObservingGate) observer).
pub struct ShadowGate {
    shadow: Arc<Shadow>,
    catalog: Option<Arc<Catalog>>,
}

impl ShadowGate {
    /// Submits to `shadow`; `catalog` completes view columns like the masking gate.
    pub fn new(shadow: Arc<Shadow>, catalog: Option<Arc<Catalog>>) -> Self {
        ShadowGate { shadow, catalog }
    }
}

impl DecisionObserver for ShadowGate {
    fn decided(&self, ctx: &StatementContext<'_>, decision: &Decision) {
        // Statements the gateway itself refuses (audit sink down) never reach here.
        let req = crate::recording::live_request(ctx, self.catalog.as_ref());
        let (live, live_policy) = live_outcome(decision);
        self.shadow.submit(Job::Statement(Box::new(StatementJob {
            req,
            call: CallContext::of(&ctx.session.identity),
            live,
            live_policy,
        })));
    }
}

/// Hands each result set's live mask plan to the shadow worker (an
/// [`ObservingFilter`](crate::pipeline::ObservingFilter) observer).
pub struct ShadowFilter {
    shadow: Arc<Shadow>,
}

impl ShadowFilter {
    /// Submits to `shadow`.
    pub fn new(shadow: Arc<Shadow>) -> Self {
        ShadowFilter { shadow }
    }
}

impl PlanObserver for ShadowFilter {
    fn planned(
        &self,
        ctx: &ResultContext<'_>,
        plan: &MaskObservation,
        rewriter: Option<Box<dyn RowRewriter>>,
    ) -> Option<Box<dyn RowRewriter>> {
        let live_planned = plan.context.is_some();
        if (live_planned || self.shadow.candidate_masks()) && !ctx.columns.fields.is_empty() {
            self.shadow.submit(Job::Result(ResultJob {
                ctx: crate::masking::planned_context(ctx, plan),
                call: CallContext::of(&ctx.session.identity),
                masks: plan
                    .masks
                    .iter()
                    .map(|(c, p, m)| (*c, p.clone(), mask_name(m)))
                    .collect(),
                refused_by: plan.refused.as_ref().map(|(p, _)| p.clone()),
            }));
        }
        rewriter
    }
}
