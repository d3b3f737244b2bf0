//! From a cache key to an [`Analysis`]: split, parse, walk.
//!
//! Everything here works on the canonical key text (see [`crate::canon`]),
//! never on the original SQL, so the result is a function of the key alone.

use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use sqlparser::ast::Visit;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::canon::{self, Style};
use crate::kind::{self, StatementKind};
use crate::lexer::{Lexer, TokenKind, Unterminated};
use crate::split;
use crate::summary::{Analysis, StatementSummary};
use crate::walk::Walk;

/// Statements with more tokens than this are refused (reported unparsed).
const MAX_PARSE_TOKENS: usize = 200_000;
/// Statements with more tokens than this are parsed on a dedicated thread
/// with a stack sized for them: `sqlparser` builds left-deep trees for long
/// operator chains (`1+1+...`, `UNION` chains) without a recursion limit, and
/// visiting or dropping such a tree recurses once per level. Measured cost is
/// at most ~120 bytes of stack per level and every level takes at least two
/// tokens, so 2,000 tokens stay well under 256 KiB of stack inline.
const INLINE_PARSE_TOKENS: usize = 2_000;
/// Stack bytes reserved per token for out-of-line parses (about 8x the
/// measured need).
const STACK_PER_TOKEN: usize = 512;
/// Minimum stack for out-of-line parses.
const MIN_THREAD_STACK: usize = 8 * 1024 * 1024;

/// Analyses a cache key (canonical text produced with [`Style::Key`]).
pub(crate) fn analyze_key(key: &str) -> Analysis {
    let mut statements = Vec::new();
    let mut results = Vec::new();
    for piece in split::pieces(key, true) {
        let Some(text) = key.get(piece.range) else {
            continue;
        };
        results.push(statements.len());
        let summary = summarize(text);
        if piece.inner_semicolon && summary.kind == StatementKind::Unparsed {
            // The statement kept a `;` inside parentheses or a BEGIN ... END
            // block and did not parse as one statement: fail closed by
            // analysing every `;`-separated part on its own, so nothing after
            // such a semicolon escapes the analysis.
            for sub in split::pieces(text, false) {
                if let Some(t) = text.get(sub.range) {
                    statements.push(summarize(t));
                }
            }
        } else {
            statements.push(summary);
        }
    }
    Analysis {
        statements,
        results,
        fingerprint: canon::render(key, Style::Fingerprint),
    }
}

/// Summarises one statement of canonical text.
fn summarize(text: &str) -> StatementSummary {
    let fingerprint = canon::render(text, Style::Fingerprint);
    let mut leading_keyword = String::new();
    let mut parse_text = String::with_capacity(text.len());
    let mut tokens = 0usize;
    // The previous two significant tokens' text.
    let mut prev: &str = "";
    let mut prev2: &str = "";
    for tok in Lexer::new(text) {
        let t = text.get(tok.start..tok.end).unwrap_or("");
        match tok.kind {
            TokenKind::Unterminated(u) => {
                let what = match u {
                    Unterminated::String => "unterminated quoted string",
                    Unterminated::Dollar => "unterminated dollar-quoted string",
                    Unterminated::Ident => "unterminated quoted identifier",
                    Unterminated::Comment => "unterminated /* comment",
                };
                return StatementSummary::unparsed(leading_keyword, fingerprint, what.to_owned());
            }
            TokenKind::UnicodeIdent { .. } => {
                return StatementSummary::unparsed(
                    leading_keyword,
                    fingerprint,
                    "invalid Unicode escape in U&\"...\" identifier".to_owned(),
                );
            }
            TokenKind::Space => {
                parse_text.push_str(t);
                continue;
            }
            _ => tokens += 1,
        }
        if tok.kind == TokenKind::Word {
            if leading_keyword.is_empty() {
                leading_keyword = t.to_ascii_lowercase();
            }
            if t.eq_ignore_ascii_case("only") && is_inheritance_only(prev) {
                parse_text.push(' ');
                prev2 = prev;
                prev = t;
                continue;
            }
            if t.eq_ignore_ascii_case("table") && starts_query(prev, prev2) {
                // `TABLE name` is `SELECT * FROM name`; sqlparser's own reading of
                // the shorthand drops quoting and swallows the tokens after it.
                parse_text.push_str("SELECT * FROM");
                prev2 = prev;
                prev = t;
                continue;
            }
        }
        prev2 = prev;
        prev = t;
        parse_text.push_str(t);
    }
    if tokens > MAX_PARSE_TOKENS {
        return StatementSummary::unparsed(
            leading_keyword,
            fingerprint,
            format!("statement too large to analyse ({tokens} tokens)"),
        );
    }
    match parse_guarded(&parse_text, tokens) {
        Ok(mut s) => {
            s.leading_keyword = leading_keyword;
            s.fingerprint = fingerprint;
            s
        }
        Err(e) => StatementSummary::unparsed(leading_keyword, fingerprint, e),
    }
}

/// `sqlparser` reads `FROM ONLY t` as table `only` aliased `t`, so the
/// inheritance marker is removed before parsing (it does not change *which*
/// relation is touched). `ONLY` is fully reserved in PostgreSQL: besides that
/// marker it only appears in `ROW(S) ONLY`, `READ ONLY`, and as a column
/// label after `AS` or `.`, which are kept.
fn is_inheritance_only(prev: &str) -> bool {
    !(prev == "."
        || ["as", "row", "rows", "read"]
            .iter()
            .any(|k| prev.eq_ignore_ascii_case(k)))
}

/// Whether a `TABLE` keyword after `prev2 prev` starts a query (the `TABLE name`
/// shorthand) rather than naming an object type (`DROP TABLE`, `LOCK TABLE`, ...).
/// Contexts not listed keep `TABLE`, which the walker then refuses (unparsed).
fn starts_query(prev: &str, prev2: &str) -> bool {
    let is = |w: &str, k: &str| w.eq_ignore_ascii_case(k);
    prev.is_empty()
        || prev == "("
        || prev == ")"
        || [
            "union",
            "intersect",
            "except",
            "all",
            "distinct",
            "as",
            "explain",
            "analyze",
            "analyse",
            "verbose",
        ]
        .iter()
        .any(|k| is(prev, k))
        || (is(prev, "for") && (is(prev2, "cursor") || is(prev2, "hold")))
}

/// Runs [`parse_and_walk`] with enough stack for `tokens`, catching panics.
fn parse_guarded(text: &str, tokens: usize) -> Result<StatementSummary, String> {
    let run = || {
        catch_unwind(AssertUnwindSafe(|| parse_and_walk(text)))
            .unwrap_or_else(|_| Err("internal analyser error".to_owned()))
    };
    if tokens <= INLINE_PARSE_TOKENS {
        return run();
    }
    let stack = tokens.saturating_mul(STACK_PER_TOKEN).max(MIN_THREAD_STACK);
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("portcullis-sql-parse".to_owned())
            .stack_size(stack)
            .spawn_scoped(scope, run)
            .map_err(|e| format!("cannot start analysis thread: {e}"))
            .and_then(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("internal analyser error".to_owned()))
            })
    })
}

/// Parses one statement and walks it. The AST is dropped before returning
/// (dropping a deep tree recurses too).
fn parse_and_walk(text: &str) -> Result<StatementSummary, String> {
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| e.to_string())?;
    let [stmt] = parsed.as_slice() else {
        return Err(format!("expected one statement, found {}", parsed.len()));
    };
    let mut walk = Walk::default();
    if let ControlFlow::Break(()) = stmt.visit(&mut walk) {
        return Err("analysis interrupted".to_owned());
    }
    if let Some(why) = walk.reject {
        return Err(why);
    }
    let kind = kind::classify(stmt);
    if matches!(
        kind,
        StatementKind::Set | StatementKind::Show | StatementKind::Reset
    ) {
        // Setting values (`SET search_path = public`) are not column references.
        walk.columns.clear();
    }
    Ok(StatementSummary {
        kind,
        leading_keyword: String::new(),
        fingerprint: String::new(),
        tables: walk.tables,
        columns: walk.columns,
        functions: walk.functions,
        operators: walk.operators,
        has_where: if walk.where_flags.is_empty() {
            None
        } else {
            Some(walk.where_flags.iter().all(|w| *w))
        },
        parse_error: None,
        copy: walk.copy,
        lineage: crate::lineage::statement(stmt),
    })
}
