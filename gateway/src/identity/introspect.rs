//! `SHOW portcullis.identity`: the verified identity as policies see it.
//!
//! The gateway answers it itself: the statement never reaches PostgreSQL as sent and no
//! policy decides it. The relay replaces it with a `SELECT` of literals the gateway
//! computed, so PostgreSQL only echoes the values back in order with every other
//! response — the protocol (pipelining, extended-protocol Parse/Bind/Describe/Execute,
//! transaction state, discard-until-Sync after an error) stays in step with no extra
//! bookkeeping in the relay.

use std::time::UNIX_EPOCH;

use super::Identity;

/// True for `SHOW portcullis.identity` (any case, spacing, trailing semicolons).
pub fn is_introspection(sql: &str) -> bool {
    let s = sql
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let mut words = s.split_whitespace();
    matches!(
        (words.next(), words.next(), words.next()),
        (Some(a), Some(b), None)
            if a.eq_ignore_ascii_case("show") && b.eq_ignore_ascii_case("portcullis.identity")
    )
}

/// A string literal that means the same whatever `standard_conforming_strings` is.
fn lit(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 3);
    out.push_str("E'");
    for c in v.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => {}
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fn opt(v: Option<&str>) -> String {
    v.map(lit).unwrap_or_else(|| "NULL".into())
}

/// The statement that answers `sql` when it is `SHOW portcullis.identity`: one row with
/// `user`, `kind`, `groups`, `auth_method`, `acting_for`, `acting_for_groups`, `role`
/// and `expires_at` (Unix seconds), all text.
pub fn answer(sql: &str, id: &Identity) -> Option<String> {
    if !is_introspection(sql) {
        return None;
    }
    let expires = id
        .expires_at
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs().to_string());
    Some(format!(
        "SELECT {} AS \"user\", {} AS kind, {} AS groups, {} AS auth_method, {}::text AS acting_for, {} AS acting_for_groups, {}::text AS role, {}::text AS expires_at",
        lit(&id.name),
        lit(id.kind.as_str()),
        lit(&id.groups.join(",")),
        lit(id.auth_method.as_str()),
        opt(id.acting_for.as_deref()),
        lit(&id.acting_for_groups.join(",")),
        opt(id.role.as_deref()),
        opt(expires.as_deref()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_the_statement() {
        assert!(is_introspection("show portcullis.identity"));
        assert!(is_introspection("  SHOW   Portcullis.Identity ;; "));
        assert!(!is_introspection("show portcullis.identity; select 1"));
        assert!(!is_introspection("show search_path"));
    }

    #[test]
    fn literals_cannot_escape() {
        assert_eq!(lit("a'b\\"), "E'a''b\\\\'");
    }
}
