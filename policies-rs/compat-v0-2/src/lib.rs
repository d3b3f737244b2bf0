//! # compat-v0-2 — a policy built against contract 0.2.0, FOR TESTS ONLY
//!
//! Built with wit-bindgen straight from `wit/archive/0.2.0/policy.wit` (not the SDK,
//! which follows the newest minor), the way a policy shipped before 0.3.0 was built:
//! it exports `mask-rows` and no `mask-cells`, and imports `context` as
//! `portcullis:policy/context@0.2.0`. The gateway's tests load it to prove that the
//! host still runs the previous minor, masking through `mask-rows`.
//!
//! - `authorize` denies a statement whose SQL contains `compat-deny`, with the message
//!   `denied by the 0.2.0 policy for <user>` (plus ` acting for <person> (<groups>)`
//!   for an agent, the groups asked through `context`), and allows everything else;
//! - `plan-masks` plans `custom` for every result column named `compat_masked`;
//! - `mask-rows` turns each non-NULL value `v` into `v2:<v upper-cased>`.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/archive/0.2.0",
        world: "policy",
    });
}

use bindings::portcullis::policy::types::{
    ApprovalRequest, ApprovalRoute, ApprovalRouting, ColumnMask, Decision, Denial, Hook, LogLevel,
    MaskFunction, MaskPlan, Metadata, Request, ResultContext,
};

/// The exported component.
pub struct Compat;

impl bindings::Guest for Compat {
    fn metadata() -> Metadata {
        Metadata {
            name: "compat-v0-2".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hooks: vec![Hook::Authorize, Hook::Mask],
        }
    }

    fn configure(_settings: String) -> Result<(), String> {
        bindings::log(LogLevel::Info, "built against portcullis:policy@0.2.0");
        Ok(())
    }

    fn authorize(req: Request) -> Decision {
        if !req.statement.sql.contains("compat-deny") {
            return Decision::Allow;
        }
        let mut message = format!("denied by the 0.2.0 policy for {}", req.identity.user);
        if let Some(person) = bindings::portcullis::policy::context::acting_for() {
            message.push_str(&format!(
                " acting for {} ({})",
                person.user,
                person.groups.join(",")
            ));
        }
        Decision::Deny(Denial {
            message,
            sqlstate: None,
        })
    }

    fn plan_masks(ctx: ResultContext) -> MaskPlan {
        MaskPlan {
            columns: ctx
                .columns
                .iter()
                .filter(|c| c.name == "compat_masked")
                .map(|c| ColumnMask {
                    index: c.index,
                    mask: MaskFunction::Custom,
                })
                .collect(),
            refuse: None,
        }
    }

    fn mask_rows(
        _ctx: ResultContext,
        rows: Vec<Vec<Option<String>>>,
    ) -> Result<Vec<Vec<Option<String>>>, String> {
        Ok(rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|v| v.map(|s| format!("v2:{}", s.to_uppercase())))
                    .collect()
            })
            .collect())
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
