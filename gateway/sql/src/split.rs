//! Splitting a query string into statements at top-level semicolons.
//!
//! A `;` ends a statement unless it is inside a literal, quoted identifier or
//! comment (the [`Lexer`] takes care of those), inside parentheses (as in
//! `CREATE RULE ... DO (stmt; stmt)`), or inside a `BEGIN ... END` block of a
//! `CREATE [OR REPLACE] FUNCTION|PROCEDURE` (SQL-standard function bodies);
//! the last two follow psql's own heuristics so that what is split here
//! matches what clients send.

use std::ops::Range;

use crate::lexer::{Lexer, TokenKind};

/// One statement found by the splitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Byte range of the statement, from its first to its last non-space token.
    pub range: Range<usize>,
    /// Whether the statement contains a `;` that did not split it (inside
    /// parentheses or a `BEGIN ATOMIC` block).
    pub inner_semicolon: bool,
}

/// psql's CREATE FUNCTION/PROCEDURE detection (`psqlscan.l`).
#[derive(Default)]
struct AtomicTracker {
    count: usize,
    ids: [u8; 4],
    begin_depth: u32,
}

impl AtomicTracker {
    fn word(&mut self, w: &str, paren_depth: u32) {
        if self.count == 0 {
            self.ids = [0; 4];
        }
        let lw = |s: &str| w.eq_ignore_ascii_case(s);
        if (lw("create") || lw("function") || lw("procedure") || lw("or") || lw("replace"))
            && self.count < self.ids.len()
        {
            self.ids[self.count] = w.as_bytes().first().map_or(0, u8::to_ascii_lowercase);
        }
        self.count = self.count.saturating_add(1);
        let ids = self.ids;
        let in_routine = ids[0] == b'c'
            && (ids[1] == b'f'
                || ids[1] == b'p'
                || (ids[1] == b'o' && ids[2] == b'r' && (ids[3] == b'f' || ids[3] == b'p')));
        if in_routine && paren_depth == 0 {
            if lw("begin") {
                self.begin_depth = self.begin_depth.saturating_add(1);
            } else if lw("case") {
                if self.begin_depth >= 1 {
                    self.begin_depth = self.begin_depth.saturating_add(1);
                }
            } else if lw("end") && self.begin_depth > 0 {
                self.begin_depth -= 1;
            }
        }
    }
}

/// Splits `sql` into statements. With `respect_nesting == false` every `;`
/// token splits (used as a fail-closed fallback).
pub(crate) fn pieces(sql: &str, respect_nesting: bool) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut first: Option<usize> = None;
    let mut last_end = 0usize;
    let mut paren_depth = 0u32;
    let mut atomic = AtomicTracker::default();
    let mut inner = false;
    for tok in Lexer::new(sql) {
        match tok.kind {
            TokenKind::Space => continue,
            TokenKind::Punct(b';') => {
                if !respect_nesting || (paren_depth == 0 && atomic.begin_depth == 0) {
                    if let Some(f) = first.take() {
                        out.push(Piece {
                            range: f..last_end,
                            inner_semicolon: inner,
                        });
                    }
                    paren_depth = 0;
                    atomic = AtomicTracker::default();
                    inner = false;
                    continue;
                }
                inner = true;
            }
            TokenKind::Punct(b'(') => paren_depth = paren_depth.saturating_add(1),
            TokenKind::Punct(b')') => paren_depth = paren_depth.saturating_sub(1),
            TokenKind::Word => {
                if let Some(w) = sql.get(tok.start..tok.end) {
                    atomic.word(w, paren_depth);
                }
            }
            _ => {}
        }
        first.get_or_insert(tok.start);
        last_end = tok.end;
    }
    if let Some(f) = first {
        out.push(Piece {
            range: f..last_end,
            inner_semicolon: inner,
        });
    }
    out
}

/// Splits a query string into its statements, as slices of the input.
///
/// Statements are separated by top-level `;` (see the module docs for what
/// "top-level" means). Each slice runs from the statement's first token to its
/// last (leading/trailing whitespace and comments are excluded, comments
/// inside are kept); empty statements (`;;`, only comments) are omitted.
///
/// ```
/// let parts = portcullis_sql::split_statements("select 1; /* x */ drop table t;;");
/// assert_eq!(parts, vec!["select 1", "drop table t"]);
/// ```
pub fn split_statements(sql: &str) -> Vec<&str> {
    pieces(sql, true)
        .into_iter()
        .filter_map(|p| sql.get(p.range))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level() {
        assert_eq!(
            split_statements("select 1; drop table customers"),
            vec!["select 1", "drop table customers"]
        );
        assert_eq!(
            split_statements("select ';'; select \";\"; select $x$;$x$"),
            vec!["select ';'", "select \";\"", "select $x$;$x$"]
        );
        assert_eq!(
            split_statements("select 1 -- ; drop\n; select /* ; /* ; */ ; */ 2"),
            vec!["select 1", "select /* ; /* ; */ ; */ 2"]
        );
        assert_eq!(
            split_statements("select E'\\';' ; x"),
            vec!["select E'\\';'", "x"]
        );
        assert_eq!(split_statements(";;  ; -- c\n"), Vec::<&str>::new());
        assert_eq!(
            split_statements("select 1; DO $$ begin end $$;"),
            vec!["select 1", "DO $$ begin end $$"]
        );
    }

    #[test]
    fn parens_and_atomic() {
        let p = pieces(
            "create rule r as on insert to t do (insert into a values (1); delete from b); select 1",
            true,
        );
        assert_eq!(p.len(), 2);
        assert!(p[0].inner_semicolon);
        let sql = "create function f() returns int language sql begin atomic select 1; select case when true then 1 end; end; select 2";
        let p = pieces(sql, true);
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(&sql[p[1].range.clone()], "select 2");
        assert_eq!(pieces(sql, false).len(), 4);
        // A stray ')' does not make the depth negative.
        assert_eq!(
            split_statements("select 1); drop table t"),
            vec!["select 1)", "drop table t"]
        );
        // An unterminated string swallows the rest, as in PostgreSQL.
        assert_eq!(
            split_statements("select 'a; drop table t"),
            vec!["select 'a; drop table t"]
        );
    }
}
