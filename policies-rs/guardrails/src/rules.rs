//! Compiled rules: validation at configure time, matching per statement, messages.

use portcullis_sdk::{
    Access, CopyInfo, CopyTarget, Decision, Denial, PrincipalKind, Request, Statement,
    StatementKind, TablePattern, TableRef, function_matches,
};

use crate::{Action, RuleSettings};

/// Longest denial message (the gateway refuses messages over 8 KiB).
pub(crate) const MAX_MESSAGE_BYTES: usize = 2048;

/// A validated rule, ready to match.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    /// `rule: <description>` or `rule 3`, for messages.
    label: String,
    databases: Vec<String>,
    users: Vec<String>,
    groups: Vec<String>,
    principal_kinds: Vec<PrincipalKind>,
    except_users: Vec<String>,
    except_groups: Vec<String>,
    except_principal_kinds: Vec<PrincipalKind>,
    tables: Vec<TablePattern>,
    deny_kinds: Vec<StatementKind>,
    deny_access: Vec<Access>,
    deny_unbounded_writes: bool,
    deny_functions: Vec<String>,
    deny_copy_targets: Vec<CopyTarget>,
    deny_statements_matching: Vec<String>,
    sqlstate: String,
    message: Option<String>,
    acting_for: Vec<String>,
    acting_for_groups: Vec<String>,
    except_acting_for_groups: Vec<String>,
    action: Action,
    approvers: Vec<String>,
}

impl Rule {
    /// Validates rule number `number` (from 1). Errors name the rule.
    pub(crate) fn compile(number: usize, s: RuleSettings) -> Result<Rule, String> {
        let description = s.description.filter(|d| !d.trim().is_empty());
        let name = match &description {
            Some(d) => format!("rule {number} ({d:?})"),
            None => format!("rule {number}"),
        };
        let err = |what: String| Err(format!("{name}: {what}"));

        let denies = !s.deny_kinds.is_empty()
            || !s.deny_access.is_empty()
            || s.deny_unbounded_writes
            || !s.deny_functions.is_empty()
            || !s.deny_copy_targets.is_empty()
            || !s.deny_statements_matching.is_empty();
        if !denies {
            return err(
                "denies nothing: set deny_kinds, deny_access, deny_unbounded_writes, \
                 deny_functions, deny_copy_targets or deny_statements_matching"
                    .into(),
            );
        }
        if !s.approvers.is_empty() && s.action != Action::RequireApproval {
            return err(r#"approvers needs action = "require-approval""#.into());
        }
        if !s.deny_access.is_empty() && s.tables.is_empty() {
            return err(r#"deny_access needs tables (use tables = ["*"] for every table)"#.into());
        }
        for (key, list) in [
            ("databases", &s.databases),
            ("users", &s.users),
            ("groups", &s.groups),
            ("except_users", &s.except_users),
            ("except_groups", &s.except_groups),
            ("acting_for", &s.acting_for),
            ("acting_for_groups", &s.acting_for_groups),
            ("except_acting_for_groups", &s.except_acting_for_groups),
            ("approvers", &s.approvers),
        ] {
            if list.iter().any(|v| v.is_empty()) {
                return err(format!("{key} holds an empty name"));
            }
        }
        let mut tables = Vec::with_capacity(s.tables.len());
        for t in &s.tables {
            match TablePattern::parse(t) {
                Ok(p) => tables.push(p),
                Err(e) => return err(format!("tables: {t:?}: {e}")),
            }
        }
        let mut deny_functions = Vec::with_capacity(s.deny_functions.len());
        for f in &s.deny_functions {
            let parts: Vec<&str> = f.split('.').collect();
            if parts.len() > 2 || parts.iter().any(|p| p.trim().is_empty()) {
                return err(format!(
                    "deny_functions: {f:?} is not a function name (`name` or `schema.name`)"
                ));
            }
            if f.contains(['(', ')', ' ']) {
                return err(format!(
                    "deny_functions: {f:?}: give the name only, without arguments"
                ));
            }
            deny_functions.push(f.to_ascii_lowercase());
        }
        let mut deny_statements_matching = Vec::with_capacity(s.deny_statements_matching.len());
        for p in &s.deny_statements_matching {
            let norm = normalise(p);
            if norm.is_empty() {
                return err("deny_statements_matching holds an empty prefix".into());
            }
            deny_statements_matching.push(norm);
        }
        let sqlstate = s.sqlstate.unwrap_or_else(|| "42501".to_string());
        if !Denial::is_valid_sqlstate(&sqlstate) {
            return err(format!(
                "sqlstate {sqlstate:?} is not an error SQLSTATE (five characters 0-9/A-Z, \
                 not class 00, 01 or 02)"
            ));
        }
        if let Some(m) = &s.message {
            if m.trim().is_empty() {
                return err("message is empty".into());
            }
            if m.len() > MAX_MESSAGE_BYTES {
                return err(format!("message is longer than {MAX_MESSAGE_BYTES} bytes"));
            }
        }
        Ok(Rule {
            label: match description {
                Some(d) => format!("rule: {d}"),
                None => format!("rule {number}"),
            },
            databases: s.databases,
            users: s.users,
            groups: s.groups,
            principal_kinds: s.principal_kinds,
            except_users: s.except_users,
            except_groups: s.except_groups,
            except_principal_kinds: s.except_principal_kinds,
            tables,
            deny_kinds: s.deny_kinds,
            deny_access: s.deny_access,
            deny_unbounded_writes: s.deny_unbounded_writes,
            deny_functions,
            deny_copy_targets: s.deny_copy_targets,
            deny_statements_matching,
            sqlstate,
            message: s.message,
            acting_for: s.acting_for,
            acting_for_groups: s.acting_for_groups,
            except_acting_for_groups: s.except_acting_for_groups,
            action: s.action,
            approvers: s.approvers,
        })
    }

    /// The decision this rule makes for `req` (a denial or an approval requirement),
    /// if it matches.
    pub(crate) fn check(&self, req: &Request) -> Option<Decision> {
        if !self.applies_to(req) {
            return None;
        }
        let what = self.violation(&req.statement)?;
        let message = match &self.message {
            Some(m) => m.clone(),
            None => {
                let db = if self.databases.is_empty() {
                    String::new()
                } else {
                    format!(" in database {}", quote(&req.database))
                };
                crate::truncate(
                    &format!("{what} is not allowed{db} ({})", self.label),
                    MAX_MESSAGE_BYTES,
                )
            }
        };
        Some(match self.action {
            Action::Deny => Decision::Deny(Denial::with_sqlstate(self.sqlstate.clone(), message)),
            Action::RequireApproval => {
                let reason = match &self.message {
                    Some(m) => m.clone(),
                    None => what_needs_approval(&what, req, &self.label),
                };
                Decision::require_approval(reason, self.approvers.iter().cloned())
            }
        })
    }

    /// Database and identity scope, minus the exemptions.
    fn applies_to(&self, req: &Request) -> bool {
        let id = &req.identity;
        if !self.databases.is_empty() && !self.databases.contains(&req.database) {
            return false;
        }
        let named = self.users.contains(&id.user) || id.in_any_group(&self.groups);
        let anyone = self.users.is_empty() && self.groups.is_empty();
        if !(anyone || named) {
            return false;
        }
        if !self.principal_kinds.is_empty() && !self.principal_kinds.contains(&id.kind) {
            return false;
        }
        if !self.acting_for.is_empty() {
            let Some(person) = &id.acting_for else {
                return false;
            };
            if !self.acting_for.iter().any(|p| p == "*" || p == person) {
                return false;
            }
        }
        if !self.acting_for_groups.is_empty() && !id.acting_for_any_group(&self.acting_for_groups) {
            return false;
        }
        let exempt = self.except_users.contains(&id.user)
            || id.in_any_group(&self.except_groups)
            || self.except_principal_kinds.contains(&id.kind)
            || id.acting_for_any_group(&self.except_acting_for_groups);
        !exempt
    }

    /// The first thing this rule denies in `s`, described for the message.
    fn violation(&self, s: &Statement) -> Option<String> {
        // With `tables`, the rule is about those tables only.
        let scoped: Vec<&TableRef> = if self.tables.is_empty() {
            s.tables.iter().collect()
        } else {
            s.tables
                .iter()
                .filter(|t| self.tables.iter().any(|p| t.matches(p)))
                .collect()
        };
        let in_scope = self.tables.is_empty() || !scoped.is_empty();

        if in_scope && self.deny_kinds.contains(&s.kind) {
            return Some(format!("{}{}", kind_phrase(s), on_tables(&scoped)));
        }
        for t in &scoped {
            if !self.tables.is_empty() && self.deny_access.contains(&t.access) {
                let how = match t.access {
                    Access::Read => "read access to",
                    Access::Write => "write access to",
                    Access::Ddl => "DDL on",
                };
                return Some(format!("{how} {}", quoted(t)));
            }
        }
        if self.deny_unbounded_writes && s.has_where == Some(false) {
            let written: Vec<&TableRef> = scoped
                .iter()
                .copied()
                .filter(|t| t.access == Access::Write)
                .collect();
            if self.tables.is_empty() || !written.is_empty() {
                let what = match s.kind {
                    StatementKind::Update => "UPDATE",
                    StatementKind::Delete => "DELETE",
                    _ => "UPDATE or DELETE",
                };
                return Some(format!(
                    "{what} without a WHERE clause{}",
                    on_tables(&written)
                ));
            }
        }
        if in_scope {
            for f in &s.functions {
                if self.deny_functions.iter().any(|p| function_matches(f, p)) {
                    return Some(format!("calling {f}()"));
                }
            }
            if let Some(copy) = s.copy
                && self.deny_copy_targets.contains(&copy.target)
            {
                return Some(copy_phrase(copy));
            }
            if !self.deny_statements_matching.is_empty() {
                let text = if s.fingerprint.trim().is_empty() && !s.multi_statement {
                    normalise(&s.sql)
                } else {
                    normalise(&s.fingerprint)
                };
                if let Some(p) = self
                    .deny_statements_matching
                    .iter()
                    .find(|p| has_prefix(&text, p))
                {
                    return Some(p.to_ascii_uppercase());
                }
            }
        }
        None
    }
}

/// The reason of an approval requirement.
fn what_needs_approval(what: &str, req: &Request, label: &str) -> String {
    let who = match &req.identity.acting_for {
        Some(p) => format!("{} acting for {}", req.identity.user, p),
        None => req.identity.user.clone(),
    };
    crate::truncate(
        &format!("{what} by {who} needs approval ({label})"),
        MAX_MESSAGE_BYTES,
    )
}

/// Lower-cases, drops double quotes (so `SET "role"` reads as `set role`), collapses
/// whitespace.
pub(crate) fn normalise(s: &str) -> String {
    s.split_whitespace()
        .map(|w| w.replace('"', "").to_ascii_lowercase())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `text` starts with `prefix` at a word boundary (`set role` matches
/// `set role admin` and `set role=?`, not `set roles`).
fn has_prefix(text: &str, prefix: &str) -> bool {
    text.strip_prefix(prefix).is_some_and(|rest| {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
    })
}

fn kind_phrase(s: &Statement) -> String {
    match s.kind {
        StatementKind::Unparsed => "a statement the gateway cannot analyse".into(),
        StatementKind::Other => "this statement".into(),
        k => k.sql_words(),
    }
}

fn quoted(t: &TableRef) -> String {
    quote(&t.qualified_name())
}

/// `"name"`, with inner double quotes doubled as in SQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// ` on "a", "b"`: at most [`MAX_LISTED_TABLES`] names, then `and N more`.
fn on_tables(tables: &[&TableRef]) -> String {
    let mut names: Vec<String> = tables.iter().map(|t| quoted(t)).collect();
    names.dedup();
    if names.is_empty() {
        return String::new();
    }
    let more = names.len().saturating_sub(MAX_LISTED_TABLES);
    names.truncate(MAX_LISTED_TABLES);
    let mut out = format!(" on {}", names.join(", "));
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

/// Tables named in one message.
const MAX_LISTED_TABLES: usize = 5;

fn copy_phrase(c: CopyInfo) -> String {
    let dir = if c.to { "TO" } else { "FROM" };
    let target = match c.target {
        CopyTarget::Client => "the client",
        CopyTarget::ServerFile => "a server file",
        CopyTarget::Program => "a server program",
    };
    format!("COPY {dir} {target}")
}
