//! Keeps a role-mapped session in its role.
//!
//! When an identity has `role` in the config, the gateway runs `SET ROLE` upstream
//! before the client gets the session. Without this guard the client could simply
//! `RESET ROLE` (or `SET ROLE`, `SET SESSION AUTHORIZATION`, `DISCARD ALL`,
//! `set_config('role', ...)`) and act as the gateway's own, more privileged user.

use std::sync::Arc;

use super::{Decision, Denial, Gate, SessionInfo, StatementContext};

/// Fingerprint prefixes of statements that change the current role.
const ROLE_CHANGING: &[&str] = &[
    "set role",
    "set session role",
    "set local role",
    "reset role",
    "set session authorization",
    "set session session authorization",
    "set local session authorization",
    "reset session authorization",
    "discard all",
    "reset all",
];

/// Wraps a gate; denies role changes for role-mapped identities, then asks the inner gate.
pub struct RoleLock {
    inner: Arc<dyn Gate>,
}

impl RoleLock {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Gate>) -> Self {
        RoleLock { inner }
    }
}

fn changes_role(ctx: &StatementContext<'_>) -> bool {
    let s = ctx.statement;
    ROLE_CHANGING.iter().any(|p| s.fingerprint.starts_with(p))
        || s.functions
            .iter()
            .any(|f| f == "set_config" || f == "pg_catalog.set_config")
}

impl Gate for RoleLock {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        if let Some(role) = &ctx.session.identity.role
            && changes_role(ctx)
        {
            return Decision::Deny(Denial {
                sqlstate: "42501".into(),
                message: format!(
                    "the session role is fixed to \"{role}\" for identity \"{}\"",
                    ctx.session.identity.name
                ),
                policy: "portcullis:role-lock".into(),
            });
        }
        self.inner.decide(ctx)
    }

    fn route_approval(
        &self,
        ctx: &StatementContext<'_>,
        ask: &crate::pipeline::ApprovalAsk<'_>,
    ) -> crate::pipeline::ApprovalRoute {
        self.inner.route_approval(ctx, ask)
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
}
