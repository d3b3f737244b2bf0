//! # guardrails — the standard Portcullis authorization policy
//!
//! Denies statements by rules from its settings: statement kinds, table access,
//! UPDATE/DELETE without WHERE, dangerous functions, server-side COPY, statement
//! prefixes (e.g. `SET ROLE`), and statements the gateway cannot analyse. It implements
//! the `authorize` hook only.
//!
//! Build: `bash policies-rs/build.sh` (→ `target/policies/guardrails.wasm`), or
//! `cargo build --release --target wasm32-wasip2 -p portcullis-guardrails`.
//!
//! ## Settings
//!
//! JSON from the policy's manifest entry (shown as TOML; every key is optional and an
//! unknown key is an error). `demo-settings.toml` next to this crate is a full example.
//!
//! ```toml
//! deny_unparsed = true      # default true: deny statements the gateway could not parse
//!                           # (DO blocks, unknown syntax) and DO blocks in general: no
//!                           # rule can see what they touch
//!
//! [[rules]]                 # evaluated in order; every rule applies; any deny wins
//!                           # (the first denying rule gives the message)
//! description = "nobody drops or truncates in prod"   # used in messages and errors
//!
//! # Scope: which statements the rule is about. Absent or empty = any.
//! databases = ["prod"]      # database names, exact
//! users = ["alice"]         # the rule applies to these users or these groups ...
//! groups = ["analysts"]
//! principal_kinds = ["agent"]       # ... and only to these kinds (person, service, agent)
//! except_users = ["bob"]            # exemptions: any match exempts
//! except_groups = ["dba"]
//! except_principal_kinds = ["service"]
//! tables = ["secrets", "hr.salaries", "*"]  # the rule only concerns statements touching
//!                           # these tables; needed by deny_access
//!
//! # What is denied (at least one):
//! deny_kinds = ["drop", "truncate"]         # statement kinds (wit `statement-kind` names)
//! deny_access = ["read", "write", "ddl"]    # access to the `tables` above
//! deny_unbounded_writes = true              # UPDATE/DELETE without WHERE, also inside
//!                                           # a CTE, PREPARE or EXPLAIN ANALYZE
//! deny_functions = ["pg_read_file", "dblink"]  # in any schema; "s.f" = schema s or none
//! deny_copy_targets = ["server-file", "program"]   # also "client"
//! deny_statements_matching = ["set role", "reset role"]  # fingerprint prefixes
//!
//! sqlstate = "42501"        # default 42501 (insufficient_privilege)
//! message = "..."           # replaces the generated message
//!
//! acting_for = ["alice"]    # only agents acting for these people ("*": for anyone);
//!                           # absent or empty: regardless of delegation
//! acting_for_groups = ["etl-owners"]         # only agents acting for a person in
//!                           # one of these groups (the person's groups, not the agent's)
//! except_acting_for_groups = ["etl-owners"]  # exempt agents acting for such a person
//! action = "require-approval"   # instead of denying, hold for approval (default "deny");
//!                           # any denying rule still wins over approvals
//! approvers = ["group:dba"] # who may approve (with action = "require-approval")
//! ```
//!
//! ## Matching
//!
//! - **Tables** are written as in SQL: unquoted names fold to lower case (`Secrets` is
//!   `secrets`), `"Quoted"` names stay verbatim (`'"Audit Log"'` in TOML). They then
//!   compare case-sensitively with the names the gateway sends, which are folded the same
//!   way (`"Secrets"` in a statement is another table than `secrets`). `secrets` means
//!   `public.secrets`: it matches `secrets` and `public.secrets`, not `hr.secrets`.
//!   `hr.salaries` matches `hr.salaries` and an unqualified `salaries` (which
//!   `search_path` may resolve to it). `*` matches every table.
//!   `GRANT ... ON ALL TABLES IN SCHEMA s` matches every table of `s`. See
//!   `portcullis_sdk::TablePattern`.
//! - **Access** is the strongest one the statement makes on the table (`read < write <
//!   ddl`): an `UPDATE ... RETURNING` is `write`. To forbid any contact, deny all three.
//! - **Functions** compare case-insensitively; an unqualified name matches in every
//!   schema (`pg_catalog.pg_read_file`, `public.dblink`).
//! - **Statement prefixes** compare against the statement's literal-free fingerprint,
//!   lower-cased, double quotes dropped, whitespace collapsed, at a word boundary:
//!   `set role` matches `SET ROLE admin`, `SET role = 'x'`, `SET "ROLE" TO x`, not
//!   `SET LOCAL ROLE x` (list `set local role` and `set session role` too).
//! - A statement the gateway could not parse has no tables, functions or WHERE
//!   information, so rules about those cannot see into it: keep `deny_unparsed` on.
//!
//! Messages say what was denied and by which rule, e.g.
//! `DROP on "customers" is not allowed in database "demo" (rule: nobody drops or
//! truncates in prod)`.

#![warn(missing_docs)]

mod rules;

use portcullis_sdk::{
    Access, CopyTarget, Decision, Policy, PrincipalKind, Request, StatementKind, log,
};
use serde::Deserialize;

use rules::Rule;

/// The policy's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Deny statements the gateway could not parse, and DO blocks (default true).
    pub deny_unparsed: bool,
    /// The rules, in order.
    pub rules: Vec<RuleSettings>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            deny_unparsed: true,
            rules: Vec::new(),
        }
    }
}

/// One rule as written in the settings (see the crate documentation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSettings {
    /// Shown in messages and configuration errors.
    pub description: Option<String>,
    /// Databases the rule applies to (empty: any).
    pub databases: Vec<String>,
    /// Users the rule applies to (with `groups`; both empty: anyone).
    pub users: Vec<String>,
    /// Groups the rule applies to (with `users`; both empty: anyone).
    pub groups: Vec<String>,
    /// Principal kinds the rule applies to (empty: any).
    pub principal_kinds: Vec<PrincipalKind>,
    /// Users exempt from the rule.
    pub except_users: Vec<String>,
    /// Groups exempt from the rule.
    pub except_groups: Vec<String>,
    /// Principal kinds exempt from the rule.
    pub except_principal_kinds: Vec<PrincipalKind>,
    /// Tables the rule is about (empty: any statement).
    pub tables: Vec<String>,
    /// Statement kinds denied.
    pub deny_kinds: Vec<StatementKind>,
    /// Access to `tables` denied.
    pub deny_access: Vec<Access>,
    /// Deny UPDATE and DELETE without WHERE.
    pub deny_unbounded_writes: bool,
    /// Functions whose call is denied.
    pub deny_functions: Vec<String>,
    /// COPY targets denied.
    pub deny_copy_targets: Vec<CopyTarget>,
    /// Fingerprint prefixes denied (e.g. `set role`).
    pub deny_statements_matching: Vec<String>,
    /// SQLSTATE of the denial (default `42501`).
    pub sqlstate: Option<String>,
    /// Message of the denial (default: generated).
    pub message: Option<String>,
    /// Only agents acting for these users (`*`: anyone); empty: regardless.
    pub acting_for: Vec<String>,
    /// Only agents acting for a person in one of these groups; empty: regardless.
    pub acting_for_groups: Vec<String>,
    /// Exempt agents acting for a person in one of these groups.
    pub except_acting_for_groups: Vec<String>,
    /// `deny` (default) or `require-approval`.
    pub action: Action,
    /// Approvers, with `action = "require-approval"`.
    pub approvers: Vec<String>,
}

/// What a matching rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Deny the statement.
    #[default]
    Deny,
    /// Hold it for approval.
    RequireApproval,
}

/// The configured policy.
#[derive(Debug, Clone)]
pub struct Guardrails {
    deny_unparsed: bool,
    rules: Vec<Rule>,
}

impl Policy for Guardrails {
    type Settings = Settings;

    fn configure(settings: Settings) -> Result<Self, String> {
        let rules = settings
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| Rule::compile(i + 1, r))
            .collect::<Result<Vec<_>, _>>()?;
        log::info!(
            "{} rule(s); unparsed statements {}",
            rules.len(),
            if settings.deny_unparsed {
                "denied"
            } else {
                "allowed"
            }
        );
        Ok(Guardrails {
            deny_unparsed: settings.deny_unparsed,
            rules,
        })
    }

    fn authorize(&self, req: &Request) -> Decision {
        let s = &req.statement;
        if self.deny_unparsed && matches!(s.kind, StatementKind::Unparsed | StatementKind::Do) {
            let message = if s.kind == StatementKind::Do || s.leading_keyword == "do" {
                "DO blocks are not allowed: the gateway cannot check what they do".to_string()
            } else {
                let why = s.parse_error.as_deref().unwrap_or("unknown syntax");
                format!(
                    "this statement is not allowed: the gateway could not analyse it ({})",
                    truncate(why, 200)
                )
            };
            return Decision::deny(message);
        }
        // Any denial wins; else the first approval requirement.
        let mut approval = None;
        for r in &self.rules {
            match r.check(req) {
                Some(d @ Decision::Deny(_)) => return d,
                Some(a) => {
                    approval.get_or_insert(a);
                }
                None => {}
            }
        }
        approval.unwrap_or(Decision::Allow)
    }
}

/// At most `max` bytes of `s`, cut at a character boundary, with `...` when cut.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

portcullis_sdk::export_policy!(Guardrails, hooks: [authorize]);

#[cfg(test)]
mod tests;
