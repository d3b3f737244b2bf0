//! # shop-rules, in Rust
//!
//! The example policy of `policies-examples/`, written with the Portcullis SDK. The
//! same policy exists in Python (`../python/app.py`) and JavaScript
//! (`../js/policy.js`); all three must decide `../fixtures.toml` identically, down to
//! the messages (`tests/tests/policy_languages.rs` checks it).
//!
//! Rules, in this order (the first that applies decides):
//! 1. an agent may not run a statement the gateway could not parse;
//! 2. the table `secrets` (any schema, any access) is reserved to the groups in
//!    `secret_readers`;
//! 3. an agent may write (or change the definition of) only the tables in
//!    `agent_write_tables`;
//! 4. an agent acting for a person writes only when that person is in one of
//!    `agent_sponsor_groups` (when set);
//! 5. a `DELETE` on a table in `approval_tables` needs approval by `approvers`;
//! 6. everything else is allowed.
//!
//! Masking (`plan-masks`): for members of `email_masked_groups`, every result column
//! computed from a column named `email` is masked with the gateway's native `email`
//! mask (keeps the domain). Approvals (`approve-hook`) route to the approvers the
//! request names, else to `approvers`: one approval, valid one hour.
//!
//! Settings (JSON, every key optional, unknown keys rejected):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `agent_write_tables` | `[]` | tables agents may write |
//! | `agent_sponsor_groups` | `[]` | groups of the people agents may write for (empty: anyone) |
//! | `approval_tables` | `["orders"]` | tables whose DELETE needs approval |
//! | `approvers` | `["group:dba"]` | who approves (`group:x` or `user:y`) |
//! | `secret_readers` | `[]` | groups that may touch `secrets` |
//! | `email_masked_groups` | `["analysts"]` | groups that see e-mail addresses masked |

#![warn(missing_docs)]

use portcullis_sdk::{
    Access, ApprovalRequest, ApprovalRoute, Decision, Identity, MaskFunction, MaskPlan, Metadata,
    Policy, PrincipalKind, Request, ResultContext, Row, StatementKind,
};
use serde_json::Value;

/// The table only `secret_readers` may touch.
pub const SECRET_TABLE: &str = "secrets";

/// The validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Tables agents may write.
    pub agent_write_tables: Vec<String>,
    /// Groups of the people an agent may write for (empty: anyone).
    pub agent_sponsor_groups: Vec<String>,
    /// Tables whose DELETE needs approval.
    pub approval_tables: Vec<String>,
    /// Who approves.
    pub approvers: Vec<String>,
    /// Groups that may touch `secrets`.
    pub secret_readers: Vec<String>,
    /// Groups that see e-mail addresses masked.
    pub email_masked_groups: Vec<String>,
}

impl Settings {
    /// Validates settings JSON (already parsed). The messages are the same in all
    /// three languages.
    pub fn from_json(value: &Value) -> Result<Settings, String> {
        let obj = match value {
            Value::Object(o) => o.clone(),
            Value::Null => Default::default(),
            _ => return Err("settings must be a JSON object".into()),
        };
        const KEYS: [&str; 6] = [
            "agent_write_tables",
            "agent_sponsor_groups",
            "approval_tables",
            "approvers",
            "secret_readers",
            "email_masked_groups",
        ];
        if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(format!("unknown setting \"{k}\""));
        }
        let list = |key: &str, default: &[&str]| -> Result<Vec<String>, String> {
            match obj.get(key) {
                None => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| format!("setting \"{key}\" must be a list of strings")),
                Some(_) => Err(format!("setting \"{key}\" must be a list of strings")),
            }
        };
        let s = Settings {
            agent_write_tables: list("agent_write_tables", &[])?,
            agent_sponsor_groups: list("agent_sponsor_groups", &[])?,
            approval_tables: list("approval_tables", &["orders"])?,
            approvers: list("approvers", &["group:dba"])?,
            secret_readers: list("secret_readers", &[])?,
            email_masked_groups: list("email_masked_groups", &["analysts"])?,
        };
        if let Some(a) = s
            .approvers
            .iter()
            .find(|a| !a.starts_with("group:") && !a.starts_with("user:"))
        {
            return Err(format!(
                "approver \"{a}\" must start with \"group:\" or \"user:\""
            ));
        }
        if !s.approval_tables.is_empty() && s.approvers.is_empty() {
            return Err("approvers must not be empty when approval_tables is set".into());
        }
        Ok(s)
    }
}

/// The policy.
#[derive(Debug)]
pub struct ShopRules {
    settings: Settings,
}

fn is_agent(id: &Identity) -> bool {
    id.kind == PrincipalKind::Agent
}

impl Policy for ShopRules {
    type Settings = Value;

    fn configure(settings: Value) -> Result<Self, String> {
        let settings = Settings::from_json(&settings)?;
        portcullis_sdk::log::info(format!(
            "shop-rules: agents may write {} table(s)",
            settings.agent_write_tables.len()
        ));
        Ok(ShopRules { settings })
    }

    fn metadata(defaults: Metadata) -> Metadata {
        Metadata {
            name: "shop-rules".into(),
            version: "0.1.0".into(),
            ..defaults
        }
    }

    fn authorize(&self, req: &Request) -> Decision {
        let s = &self.settings;
        let st = &req.statement;
        let who = &req.identity;
        if is_agent(who) && st.kind == StatementKind::Unparsed {
            return Decision::deny("agents may not run statements the gateway cannot parse");
        }
        for t in &st.tables {
            if t.name == SECRET_TABLE && !who.in_any_group(&s.secret_readers) {
                let groups = if s.secret_readers.is_empty() {
                    "nobody".to_owned()
                } else {
                    s.secret_readers.join(", ")
                };
                return Decision::deny(format!(
                    "table {} is restricted to members of: {groups}",
                    t.name
                ));
            }
        }
        if is_agent(who) {
            for t in &st.tables {
                if t.access != Access::Read && !s.agent_write_tables.contains(&t.name) {
                    return Decision::deny(format!("agents may not write to table {}", t.name));
                }
            }
        }
        let writes = st.tables.iter().any(|t| t.access != Access::Read);
        if is_agent(who)
            && who.acting_for.is_some()
            && writes
            && !s.agent_sponsor_groups.is_empty()
            && !who.acting_for_any_group(&s.agent_sponsor_groups)
        {
            return Decision::deny(format!(
                "agents may write only for members of: {}",
                s.agent_sponsor_groups.join(", ")
            ));
        }
        if st.kind == StatementKind::Delete {
            for t in &st.tables {
                if t.access == Access::Write && s.approval_tables.contains(&t.name) {
                    return Decision::require_approval(
                        format!("DELETE on {} needs approval", t.name),
                        s.approvers.iter().cloned(),
                    );
                }
            }
        }
        Decision::Allow
    }

    fn plan_masks(&self, ctx: &ResultContext) -> MaskPlan {
        let mut plan = MaskPlan::none();
        if !ctx
            .identity
            .in_any_group(&self.settings.email_masked_groups)
        {
            return plan;
        }
        for c in &ctx.columns {
            if c.provenance.sources().iter().any(|s| s.column == "email") {
                plan = plan.mask(c.index, MaskFunction::Email);
            }
        }
        plan
    }

    fn mask_rows(&self, _ctx: &ResultContext, rows: Vec<Row>) -> Result<Vec<Row>, String> {
        // The plan uses only native masks, so the gateway never asks; pass rows through.
        Ok(rows)
    }

    fn approve(&self, req: &ApprovalRequest) -> ApprovalRoute {
        if req.approvers.is_empty() {
            ApprovalRoute::route(self.settings.approvers.iter().cloned())
        } else {
            ApprovalRoute::route(req.approvers.iter().cloned())
        }
    }
}

portcullis_sdk::export_policy!(ShopRules, hooks: [authorize, mask, approve]);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn settings_are_validated_with_the_shared_messages() {
        let e = |v: Value| Settings::from_json(&v).unwrap_err();
        assert_eq!(e(json!([])), "settings must be a JSON object");
        assert_eq!(e(json!({"nope": 1})), "unknown setting \"nope\"");
        assert_eq!(
            e(json!({"approvers": "group:dba"})),
            "setting \"approvers\" must be a list of strings"
        );
        assert_eq!(
            e(json!({"secret_readers": [1]})),
            "setting \"secret_readers\" must be a list of strings"
        );
        assert_eq!(
            e(json!({"approvers": ["dba"]})),
            "approver \"dba\" must start with \"group:\" or \"user:\""
        );
        assert_eq!(
            e(json!({"approvers": []})),
            "approvers must not be empty when approval_tables is set"
        );
        let d = Settings::from_json(&json!({})).unwrap();
        assert_eq!(d.approval_tables, ["orders"]);
        assert_eq!(d.email_masked_groups, ["analysts"]);
    }
}
