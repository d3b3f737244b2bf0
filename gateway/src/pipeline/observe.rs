//! Observers at the seams: a [`Gate`] and a [`ResultFilter`] that pass everything to
//! the ones they wrap, changing nothing, and show an observer what was decided and
//! planned (the traffic recording, shadow mode).

use std::sync::Arc;

use super::{
    ApprovalAsk, ApprovalRoute, BoundParams, Decision, Gate, MaskedColumn, ResultContext,
    ResultFilter, RowRewriter, SessionInfo, StatementContext,
};
use crate::masking::MaskObservation;

/// Sees each statement decision of the gate an [`ObservingGate`] wraps.
pub trait DecisionObserver: Send + Sync {
    /// `decision` was made for `ctx`.
    fn decided(&self, ctx: &StatementContext<'_>, decision: &Decision);

    /// Whether [`DecisionObserver::bound`] is wanted (see [`Gate::observes_binds`]).
    fn observes_binds(&self) -> bool {
        false
    }

    /// An executed Bind of a statement allowed at Parse (see [`Gate::bound`]).
    fn bound(&self, _ctx: &StatementContext<'_>, _params: &BoundParams<'_>) {}
}

/// A gate deciding with `inner` and showing every decision to an observer.
pub struct ObservingGate<O> {
    inner: Arc<dyn Gate>,
    observer: O,
}

impl<O: DecisionObserver> ObservingGate<O> {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Gate>, observer: O) -> Self {
        ObservingGate { inner, observer }
    }
}

impl<O: DecisionObserver> Gate for ObservingGate<O> {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        let decision = self.inner.decide(ctx);
        self.observer.decided(ctx, &decision);
        decision
    }

    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision {
        self.inner.decide_function_call(session, function_oid)
    }

    fn route_approval(&self, ctx: &StatementContext<'_>, ask: &ApprovalAsk<'_>) -> ApprovalRoute {
        self.inner.route_approval(ctx, ask)
    }

    fn observes_binds(&self) -> bool {
        self.observer.observes_binds() || self.inner.observes_binds()
    }

    fn bound(&self, ctx: &StatementContext<'_>, params: &BoundParams<'_>) {
        if self.observer.observes_binds() {
            self.observer.bound(ctx, params);
        }
        if self.inner.observes_binds() {
            self.inner.bound(ctx, params);
        }
    }
}

/// Sees the mask plan of each result set the filter an [`ObservingFilter`] wraps
/// begins.
pub trait PlanObserver: Send + Sync {
    /// The wrapped filter began the result set `ctx` with `plan` and `rewriter`;
    /// returns the rewriter to use: the one given, or one wrapping it.
    fn planned(
        &self,
        ctx: &ResultContext<'_>,
        plan: &MaskObservation,
        rewriter: Option<Box<dyn RowRewriter>>,
    ) -> Option<Box<dyn RowRewriter>>;
}

/// A result filter passing everything to `inner` and showing each mask plan to an
/// observer. It tracks every result set (never pass-through).
pub struct ObservingFilter<O> {
    inner: Arc<dyn ResultFilter>,
    observer: O,
}

impl<O: PlanObserver> ObservingFilter<O> {
    /// Wraps `inner`, reading the plan it reports ([`ResultFilter::begin_with_plan`]).
    pub fn new(inner: Arc<dyn ResultFilter>, observer: O) -> Self {
        ObservingFilter { inner, observer }
    }
}

impl<O: PlanObserver> ResultFilter for ObservingFilter<O> {
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
        self.observer.planned(ctx, plan, rewriter)
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

    fn scrub_notice(
        &self,
        session: &SessionInfo,
        notice: &portcullis_wire::backend::ErrorFields,
    ) -> Option<portcullis_wire::backend::ErrorFields> {
        self.inner.scrub_notice(session, notice)
    }

    fn catalog(&self) -> Option<&Arc<crate::masking::Catalog>> {
        self.inner.catalog()
    }
}
