//! # compat-v0-1 — a policy built against contract 0.1.0, FOR TESTS ONLY
//!
//! Built with wit-bindgen straight from `wit/archive/0.1.0/policy.wit` (not the SDK,
//! which follows the newest minor), the way a policy shipped before 0.2.0 was built.
//! The gateway's tests load it to prove that the host still runs the previous minor.
//!
//! `authorize` denies a statement whose SQL contains `compat-deny`, with the message
//! `denied by the 0.1.0 policy for <user>` (plus ` acting for <person>` for an agent),
//! and allows everything else. The other hooks do nothing.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/archive/0.1.0",
        world: "policy",
    });
}

use bindings::portcullis::policy::types::{
    ApprovalRequest, ApprovalRoute, ApprovalRouting, Decision, Denial, Hook, LogLevel, MaskPlan,
    Metadata, Request, ResultContext,
};

/// The exported component.
pub struct Compat;

impl bindings::Guest for Compat {
    fn metadata() -> Metadata {
        Metadata {
            name: "compat-v0-1".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hooks: vec![Hook::Authorize],
        }
    }

    fn configure(_settings: String) -> Result<(), String> {
        bindings::log(LogLevel::Info, "built against portcullis:policy@0.1.0");
        Ok(())
    }

    fn authorize(req: Request) -> Decision {
        if !req.statement.sql.contains("compat-deny") {
            return Decision::Allow;
        }
        let mut message = format!("denied by the 0.1.0 policy for {}", req.identity.user);
        if let Some(person) = &req.identity.acting_for {
            message.push_str(&format!(" acting for {person}"));
        }
        Decision::Deny(Denial {
            message,
            sqlstate: None,
        })
    }

    fn plan_masks(_ctx: ResultContext) -> MaskPlan {
        MaskPlan {
            columns: Vec::new(),
            refuse: None,
        }
    }

    fn mask_rows(
        _ctx: ResultContext,
        rows: Vec<Vec<Option<String>>>,
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        Ok(rows)
    }

    fn approve_hook(req: ApprovalRequest) -> ApprovalRoute {
        ApprovalRoute::Route(ApprovalRouting {
            approvers: req.approvers,
            required_approvals: 1,
            ttl_seconds: 3600,
            channel: None,
        })
    }
}

bindings::export!(Compat with_types_in bindings);
