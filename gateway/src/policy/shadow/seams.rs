//! Shadow mode at the pipeline seams: a [`Gate`] and a [`ResultFilter`] that pass
//! everything to the live ones and hand what they were asked to the shadow worker.

use std::sync::Arc;

use super::Shadow;
use super::worker::{Job, ResultJob, StatementJob};
use crate::masking::{Catalog, MaskObservation};
use crate::pipeline::{
    Decision, Gate, MaskedColumn, ResultContext, ResultFilter, RowRewriter, SessionInfo,
    StatementContext,
};
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
        let (live, live_policy) = live_outcome(&decision);
        self.shadow.submit(Job::Statement(Box::new(StatementJob {
            req,
            live,
            live_policy,
        })));
        decision
    }

    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision {
        self.inner.decide_function_call(session, function_oid)
    }

    fn route_approval(
        &self,
        ctx: &StatementContext<'_>,
        ask: &crate::pipeline::ApprovalAsk<'_>,
    ) -> crate::pipeline::ApprovalRoute {
        self.inner.route_approval(ctx, ask)
    }

    fn observes_binds(&self) -> bool {
        self.inner.observes_binds()
    }

    fn bound(&self, ctx: &StatementContext<'_>, params: &crate::pipeline::BoundParams<'_>) {
        self.inner.bound(ctx, params)
    }
}

/// The live result filter with the shadow set watching its mask plans.
pub struct ShadowFilter {
    inner: Arc<dyn ResultFilter>,
    shadow: Arc<Shadow>,
}

impl ShadowFilter {
    /// Wraps `inner`, reading the mask plan it reports
    /// ([`ResultFilter::begin_with_plan`]).
    pub fn new(inner: Arc<dyn ResultFilter>, shadow: Arc<Shadow>) -> Self {
        ShadowFilter { inner, shadow }
    }
}

impl ResultFilter for ShadowFilter {
    fn begin(&self, ctx: &ResultContext<'_>) -> Option<Box<dyn RowRewriter>> {
        self.begin_masked(ctx, &mut Vec::new())
    }

    fn begin_masked(
        &self,
        ctx: &ResultContext<'_>,
        masked: &mut Vec<MaskedColumn>,
    ) -> Option<Box<dyn RowRewriter>> {
        self.begin_with_plan(ctx, masked, &mut MaskObservation::default())
    }

    fn begin_with_plan(
        &self,
        ctx: &ResultContext<'_>,
        masked: &mut Vec<MaskedColumn>,
        plan: &mut MaskObservation,
    ) -> Option<Box<dyn RowRewriter>> {
        let rewriter = self.inner.begin_with_plan(ctx, masked, plan);
        let live_planned = plan.context.is_some();
        if (live_planned || self.shadow.candidate_masks()) && !ctx.columns.fields.is_empty() {
            self.shadow.submit(Job::Result(ResultJob {
                ctx: crate::masking::planned_context(ctx, plan),
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

    fn is_passthrough(&self) -> bool {
        false
    }

    fn scrub_error(
        &self,
        session: &SessionInfo,
        error: &portcullis_wire::backend::ErrorFields,
    ) -> Option<portcullis_wire::backend::ErrorFields> {
        self.inner.scrub_error(session, error)
    }

    fn catalog(&self) -> Option<&Arc<Catalog>> {
        self.inner.catalog()
    }
}
