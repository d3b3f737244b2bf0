//! # approvals — the standard Portcullis approvals policy
//!
//! Holds statements for human approval by rules from its settings (`authorize`
//! returns require-approval), and routes the resulting requests (`approve-hook`):
//! who may approve, how many approvals are needed, how long the request stays valid,
//! which notification channel hears of it, and auto-approval windows (an on-call
//! group during an incident).
//!
//! Build: `bash policies-rs/build.sh` (→ `target/policies/approvals.wasm`).
//!
//! ## Settings
//!
//! ```toml
//! [[rules]]                       # the first matching rule decides
//! description = "DDL on prod needs 1 approval from dba"
//! databases = ["prod"]            # scope; absent or empty = any
//! users = []                      # the rule applies to these users or groups ...
//! groups = ["pipelines"]
//! principal_kinds = ["agent"]     # ... of these kinds
//! except_users = ["bob"]          # exemptions
//! except_groups = ["dba"]
//! kinds = ["drop", "truncate"]    # statement kinds that need approval, and/or
//! tables = ["customers"]          # access to these tables (`*` = any)
//! access = ["write", "ddl"]
//! approvers = ["group:dba", "user:carol"]   # required
//! approvals = 1                   # default 1
//! ttl_seconds = 3600              # default: the gateway's
//! channel = "ops"                 # a webhook name from the gateway config
//!
//! [[auto_approve]]                # requests in a window are approved at once
//! groups = ["oncall"]             # requester in one of these groups (or users)
//! users = []
//! from = "2026-12-01T00:00:00Z"   # RFC 3339
//! until = "2026-12-01T06:00:00Z"
//! reason = "incident INC-4711"
//! ```

#![warn(missing_docs)]

use std::time::UNIX_EPOCH;

use portcullis_sdk::{
    Access, ApprovalRequest, ApprovalRoute, ApprovalRouting, Decision, Policy, PrincipalKind,
    Request, StatementKind, TablePattern, log,
};
use serde::Deserialize;

/// The policy's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Rules, in order.
    pub rules: Vec<RuleSettings>,
    /// Auto-approval windows.
    pub auto_approve: Vec<WindowSettings>,
}

/// One rule (see the crate documentation).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleSettings {
    /// Shown to reviewers and the client.
    pub description: Option<String>,
    /// Databases (empty: any).
    pub databases: Vec<String>,
    /// Users the rule applies to (with `groups`; both empty: anyone).
    pub users: Vec<String>,
    /// Groups the rule applies to.
    pub groups: Vec<String>,
    /// Principal kinds (empty: any).
    pub principal_kinds: Vec<PrincipalKind>,
    /// Users exempt.
    pub except_users: Vec<String>,
    /// Groups exempt.
    pub except_groups: Vec<String>,
    /// Statement kinds that need approval.
    pub kinds: Vec<StatementKind>,
    /// Tables whose `access` needs approval.
    pub tables: Vec<String>,
    /// Access to `tables` that needs approval.
    pub access: Vec<Access>,
    /// Who may approve.
    pub approvers: Vec<String>,
    /// Approvals needed (default 1).
    pub approvals: Option<u32>,
    /// Seconds the request stays valid.
    pub ttl_seconds: Option<u32>,
    /// Notification channel.
    pub channel: Option<String>,
}

/// An auto-approval window.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowSettings {
    /// Requesters in these groups ...
    pub groups: Vec<String>,
    /// ... or these users.
    pub users: Vec<String>,
    /// Start (RFC 3339).
    pub from: String,
    /// End (RFC 3339).
    pub until: String,
    /// Recorded with the approval.
    pub reason: String,
}

#[derive(Debug, Clone)]
struct Rule {
    label: String,
    s: RuleSettings,
    tables: Vec<TablePattern>,
}

#[derive(Debug, Clone)]
struct Window {
    groups: Vec<String>,
    users: Vec<String>,
    from_ms: u64,
    until_ms: u64,
    reason: String,
}

/// The configured policy.
#[derive(Debug, Clone)]
pub struct Approvals {
    rules: Vec<Rule>,
    windows: Vec<Window>,
}

fn rfc3339_ms(s: &str, what: &str) -> Result<u64, String> {
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| format!("{what} {s:?}: {e}"))?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| format!("{what} {s:?} is before 1970"))
}

fn valid_approver(a: &str) -> bool {
    let name = a.strip_prefix("group:").or_else(|| a.strip_prefix("user:"));
    name.is_some_and(|n| !n.is_empty())
}

impl Policy for Approvals {
    type Settings = Settings;

    fn configure(settings: Settings) -> Result<Self, String> {
        let mut rules = Vec::new();
        for (i, s) in settings.rules.into_iter().enumerate() {
            let label = match &s.description {
                Some(d) => format!("rule {} ({d:?})", i + 1),
                None => format!("rule {}", i + 1),
            };
            if s.approvers.is_empty() {
                return Err(format!(
                    "{label}: approvers is required (\"group:dba\", \"user:bob\")"
                ));
            }
            if let Some(bad) = s.approvers.iter().find(|a| !valid_approver(a)) {
                return Err(format!(
                    "{label}: approver {bad:?} must be \"group:NAME\" or \"user:NAME\""
                ));
            }
            if s.kinds.is_empty() && s.access.is_empty() {
                return Err(format!("{label}: needs kinds or tables + access"));
            }
            if !s.access.is_empty() && s.tables.is_empty() {
                return Err(format!(
                    "{label}: access needs tables (tables = [\"*\"] for any)"
                ));
            }
            if s.approvals == Some(0) {
                return Err(format!("{label}: approvals must be at least 1"));
            }
            let tables = s
                .tables
                .iter()
                .map(|t| TablePattern::parse(t).map_err(|e| format!("{label}: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(Rule { label, s, tables });
        }
        let mut windows = Vec::new();
        for (i, w) in settings.auto_approve.into_iter().enumerate() {
            let label = format!("auto_approve[{i}]");
            if w.groups.is_empty() && w.users.is_empty() {
                return Err(format!("{label}: needs groups or users"));
            }
            let from_ms = rfc3339_ms(&w.from, &format!("{label}.from"))?;
            let until_ms = rfc3339_ms(&w.until, &format!("{label}.until"))?;
            if until_ms <= from_ms {
                return Err(format!("{label}: until must be after from"));
            }
            windows.push(Window {
                groups: w.groups,
                users: w.users,
                from_ms,
                until_ms,
                reason: if w.reason.is_empty() {
                    format!("{label} window")
                } else {
                    w.reason
                },
            });
        }
        log::info!(
            "{} approval rule(s), {} auto-approve window(s)",
            rules.len(),
            windows.len()
        );
        Ok(Approvals { rules, windows })
    }

    fn authorize(&self, req: &Request) -> Decision {
        match self.rule_for(req) {
            Some(r) => Decision::require_approval(
                r.s.description.clone().unwrap_or_else(|| r.label.clone()),
                r.s.approvers.iter().cloned(),
            ),
            None => Decision::Allow,
        }
    }

    fn approve(&self, areq: &ApprovalRequest) -> ApprovalRoute {
        let id = &areq.request.identity;
        if let Some(w) = self.windows.iter().find(|w| {
            (w.users.contains(&id.user) || id.in_any_group(&w.groups))
                && (w.from_ms..w.until_ms).contains(&areq.requested_at_ms)
        }) {
            return ApprovalRoute::auto_approve(w.reason.clone());
        }
        match self.rule_for(&areq.request) {
            Some(r) => {
                let mut routing = ApprovalRouting::new(r.s.approvers.iter().cloned())
                    .approvals(r.s.approvals.unwrap_or(1));
                if let Some(t) = r.s.ttl_seconds {
                    routing = routing.ttl_seconds(t);
                }
                if let Some(c) = &r.s.channel {
                    routing = routing.channel(c.clone());
                }
                ApprovalRoute::Route(routing)
            }
            // Another policy asked: route to whom it named.
            None if areq.approvers.is_empty() => {
                ApprovalRoute::auto_reject("no approvers were named for this request")
            }
            None => ApprovalRoute::route(areq.approvers.iter().cloned()),
        }
    }
}

impl Approvals {
    fn rule_for(&self, req: &Request) -> Option<&Rule> {
        self.rules.iter().find(|r| r.applies(req))
    }
}

impl Rule {
    fn applies(&self, req: &Request) -> bool {
        let s = &self.s;
        let id = &req.identity;
        if !s.databases.is_empty() && !s.databases.contains(&req.database) {
            return false;
        }
        let named = s.users.is_empty() && s.groups.is_empty()
            || s.users.contains(&id.user)
            || id.in_any_group(&s.groups);
        if !named || (!s.principal_kinds.is_empty() && !s.principal_kinds.contains(&id.kind)) {
            return false;
        }
        if s.except_users.contains(&id.user) || id.in_any_group(&s.except_groups) {
            return false;
        }
        let st = &req.statement;
        if s.kinds.contains(&st.kind) {
            return true;
        }
        !s.access.is_empty()
            && st
                .tables
                .iter()
                .any(|t| s.access.contains(&t.access) && self.tables.iter().any(|p| t.matches(p)))
    }
}

portcullis_sdk::export_policy!(Approvals, hooks: [authorize, approve]);

#[cfg(test)]
mod tests;
