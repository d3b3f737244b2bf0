//! The statement pipeline's two seams.
//!
//! Every statement, simple or extended protocol, passes one [`Gate`] before it reaches
//! PostgreSQL, and every result set passes one [`ResultFilter`] before it reaches the
//! client. Policies, approvals, masking and audit plug in here; the gateway core ships
//! pass-through implementations.

mod decision;
mod filter;
mod observe;
mod role_lock;

pub use decision::{
    ApprovalAsk, ApprovalNeed, ApprovalRoute, BoundParams, Decision, Denial, Gate, PassThrough,
    PolicyVerdictRecord, Protocol, SessionInfo, StatementContext, VerdictSink, Verdicts,
};
pub use filter::{MaskedColumn, NoMasking, Refusal, ResultContext, ResultFilter, RowRewriter};
pub use observe::{DecisionObserver, ObservingFilter, ObservingGate, PlanObserver};
pub use role_lock::RoleLock;
