//! # compat-v0-3 — a policy built against contract 0.3.0, FOR TESTS ONLY
//!
//! Built with wit-bindgen straight from `wit/archive/0.3.0/policy.wit` (not the SDK,
//! which follows the newest minor), the way a policy shipped before 0.4.0 was built:
//! it exports `mask-cells` but no `authorize-json`, and imports `context` as
//! `portcullis:policy/context@0.3.0`. The gateway's tests load it to prove that the
//! host still runs the previous minor.
//!
//! - `authorize` denies a statement whose SQL contains `compat-deny`, with the message
//!   `denied by the 0.3.0 policy for <user>` (plus ` acting for <person> (<groups>)`
//!   for an agent, the groups asked through `context`), and allows everything else;
//! - `plan-masks` plans `custom` for every result column named `compat_masked`;
//! - `mask-cells` (and `mask-rows`) turn each non-NULL value `v` into
//!   `v3:<v upper-cased>`.

#![warn(missing_docs)]

#[allow(missing_docs, clippy::all)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/archive/0.3.0",
        world: "policy",
    });
}

use bindings::portcullis::policy::types::{
    ApprovalRequest, ApprovalRoute, ApprovalRouting, CellBatch, ColumnMask, Decision, Denial, Hook,
    LogLevel, MaskFunction, MaskPlan, Metadata, Request, ResultContext,
};

/// The exported component.
pub struct Compat;

fn mask(v: &str) -> String {
    format!("v3:{}", v.to_uppercase())
}

impl bindings::Guest for Compat {
    fn metadata() -> Metadata {
        Metadata {
            name: "compat-v0-3".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hooks: vec![Hook::Authorize, Hook::Mask],
        }
    }

    fn configure(_settings: String) -> Result<(), String> {
        bindings::log(LogLevel::Info, "built against portcullis:policy@0.3.0");
        Ok(())
    }

    fn authorize(req: Request) -> Decision {
        if !req.statement.sql.contains("compat-deny") {
            return Decision::Allow;
        }
        let mut message = format!("denied by the 0.3.0 policy for {}", req.identity.user);
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
            .map(|row| row.into_iter().map(|v| v.map(|s| mask(&s))).collect())
            .collect())
    }

    fn mask_cells(_ctx: ResultContext, batch: CellBatch) -> Result<CellBatch, String> {
        let mut data = Vec::with_capacity(batch.data.len() + 3 * batch.lengths.len());
        let mut lengths = Vec::with_capacity(batch.lengths.len());
        let mut at = 0usize;
        for &len in &batch.lengths {
            if len < 0 {
                lengths.push(-1);
                continue;
            }
            let end = at + len as usize;
            let cell = std::str::from_utf8(&batch.data[at..end]).map_err(|e| e.to_string())?;
            at = end;
            let masked = mask(cell);
            lengths.push(masked.len() as i32);
            data.extend_from_slice(masked.as_bytes());
        }
        Ok(CellBatch {
            columns: batch.columns,
            data,
            lengths,
        })
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
