//! Per-policy evaluation: every policy's verdict on a request and the time its call
//! took, for replay, shadow mode and the benchmark.
//!
//! This is an observer of the chain, not the gateway's decision point: the live
//! decision stays [`PolicyChain::decide_request`](super::PolicyChain::decide_request).
//! The combined [`Outcome`] follows the same rules (deny wins, a failure of an
//! enforcing policy denies, monitor policies never decide) and reports a statement
//! that needs an approval as [`Outcome::Hold`].

use std::time::{Duration, Instant};

use super::CallContext;
use super::bindings::portcullis::policy::types as wit;
use super::chain::{DEFAULT_SQLSTATE, PolicyChain, Verdict};
use crate::config::PolicyMode;

/// One policy's verdict on one request.
#[derive(Debug, Clone)]
pub struct PolicyVerdict {
    /// The policy id.
    pub policy: String,
    /// Enforce or monitor.
    pub mode: PolicyMode,
    /// What it said.
    pub verdict: Verdict,
    /// Wall time of the call (instance checkout, call, checks).
    pub elapsed: Duration,
}

/// The combined outcome of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied by `policy` (a failure of an enforcing policy is a denial too).
    Deny {
        /// The policy that decided.
        policy: String,
        /// Its message.
        message: String,
        /// The SQLSTATE.
        sqlstate: String,
    },
    /// Held for approval by these policies.
    Hold {
        /// The policies that require an approval.
        policies: Vec<String>,
        /// Their reasons.
        reasons: Vec<String>,
    },
}

impl Outcome {
    /// `allow`, `deny` or `hold`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny { .. } => "deny",
            Outcome::Hold { .. } => "hold",
        }
    }
}

/// Every called policy's verdict and the combined outcome.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// The combined outcome.
    pub outcome: Outcome,
    /// The verdicts, in chain order.
    pub verdicts: Vec<PolicyVerdict>,
    /// True when an enforcing policy failed (trap, timeout, memory, oversized).
    pub failed: bool,
}

/// Calls the chain's `authorize` policies on `req`, with `call` answering their
/// `context` import. With `all`, every policy is called even after a denial (replay
/// wants each verdict); without, the calls stop where the live chain stops.
pub fn evaluate(
    chain: &PolicyChain,
    req: &wit::Request,
    call: &CallContext,
    all: bool,
) -> Evaluation {
    let mut verdicts = Vec::new();
    let mut outcome: Option<Outcome> = None;
    let mut held: (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut failed = false;
    for p in chain.policies().iter().filter(|p| p.metadata().authorize) {
        if outcome.is_some() && !all {
            break;
        }
        let started = Instant::now();
        let verdict = p.authorize(req, call);
        let elapsed = started.elapsed();
        if p.mode() == PolicyMode::Enforce && outcome.is_none() {
            match &verdict {
                Verdict::Allow => {}
                Verdict::Deny { message, sqlstate } => {
                    outcome = Some(Outcome::Deny {
                        policy: p.id().to_owned(),
                        message: message.clone(),
                        sqlstate: sqlstate.clone(),
                    });
                }
                Verdict::RequireApproval { reason, .. } => {
                    held.0.push(p.id().to_owned());
                    held.1.push(reason.clone());
                }
                Verdict::Failed(f) => {
                    failed = true;
                    outcome = Some(Outcome::Deny {
                        policy: p.id().to_owned(),
                        message: format!("policy \"{}\" failed ({f}); statement denied", p.id()),
                        sqlstate: DEFAULT_SQLSTATE.to_owned(),
                    });
                }
            }
        } else if p.mode() == PolicyMode::Enforce && matches!(verdict, Verdict::Failed(_)) {
            failed = true;
        }
        verdicts.push(PolicyVerdict {
            policy: p.id().to_owned(),
            mode: p.mode(),
            verdict,
            elapsed,
        });
    }
    let outcome = match outcome {
        Some(o) => o,
        None if held.0.is_empty() => Outcome::Allow,
        None => Outcome::Hold {
            policies: held.0,
            reasons: held.1,
        },
    };
    Evaluation {
        outcome,
        verdicts,
        failed,
    }
}

/// A short name of a verdict: `allow`, `deny`, `hold` or `error`.
pub fn verdict_name(v: &Verdict) -> &'static str {
    match v {
        Verdict::Allow => "allow",
        Verdict::Deny { .. } => "deny",
        Verdict::RequireApproval { .. } => "hold",
        Verdict::Failed(_) => "error",
    }
}
