//! Statement analysis for Portcullis.
//!
//! Every statement a client sends is summarised once — kind, relations with
//! their access mode, columns, functions called, WHERE presence, COPY target —
//! so that no policy needs its own SQL parser. Summaries are cached by a
//! literal-free form of the query string: statements that differ only in
//! literal values share one parse, which makes simple-protocol traffic (new
//! literals every time) as cheap as prepared statements.
//!
//! # How a query string is analysed
//!
//! 1. A lexer that follows PostgreSQL's own scanner (`scan.l`: `E''` escapes,
//!    dollar quotes, nested comments, `--` ending at `\r` as well as `\n`,
//!    `U&""` identifiers with `UESCAPE`, newline string continuation, ...)
//!    renders the string into a canonical *key*: literals become `''` / `0`,
//!    comments and whitespace one space, unquoted identifiers lowercase.
//! 2. The key is looked up in the cache. On a miss, the key (never the original
//!    text) is split into statements at top-level `;`, each statement is parsed
//!    by `sqlparser` (PostgreSQL dialect) and its AST walked.
//!
//! Because `sqlparser` only ever sees text in which literals and comments have
//! been neutralised by a lexer that agrees with PostgreSQL, it cannot be
//! tricked into a different idea of where a string or comment ends, and the
//! analysis is by construction a function of the key alone — which is what
//! makes the cache sound. See [`fingerprint`] for the public, `?`-based form.
//!
//! # Fail-closed behaviour
//!
//! Anything that is not understood is reported as [`StatementKind::Unparsed`]
//! with a `parse_error` (and a best-effort `leading_keyword`): parse errors,
//! unterminated literals, invalid `U&""` escapes, statements too large to
//! analyse, and forms where `sqlparser` is known to misread PostgreSQL (a
//! reserved keyword as a relation name or table alias, `TABLE name`).
//! Policies should deny `Unparsed` unless they mean otherwise.
//!
//! # Known approximations
//!
//! * The lexer assumes `standard_conforming_strings = on` and a UTF-8 client
//!   encoding. A session that turns the former off (`SET`, `set_config`,
//!   connection options) makes PostgreSQL read `'...\'...'` differently from
//!   this crate; the gateway must prevent or track that.
//! * Functions are what the SQL names; calls hidden in operators, casts,
//!   triggers, views, rules, defaults of existing tables or the bodies of
//!   `CREATE FUNCTION` / `DO` are not visible. Table names passed as strings
//!   (`'t'::regclass`, `query_to_xml('select ...')`, `dblink`) are not resolved:
//!   gate such functions by name.
//! * `EXECUTE name` reports nothing about the prepared statement it runs; the
//!   gateway must remember what `PREPARE` / Parse analysed.
//! * Views are reported as relations; resolving them to base tables is left to
//!   the caller.

#![warn(missing_docs)]

mod analyze;
mod cache;
mod canon;
mod kind;
mod lexer;
mod lineage;
mod names;
mod split;
mod summary;
mod walk;

#[cfg(test)]
mod proptests;

pub use cache::{Analyzer, CacheStats, MAX_CACHED_SQL_BYTES};
pub use kind::{Access, StatementKind};
pub use lineage::{CursorOp, Lineage, OutputItem, RelName, Source, query_lineage};
pub use split::split_statements;
pub use summary::{Analysis, ColumnRef, CopyInfo, CopyTarget, StatementSummary, TableRef};

/// The literal-free fingerprint of a query string.
///
/// String literals of every form (`'..'`, `E'..'`, `U&'..'`, `B'..'`, `X'..'`,
/// `N'..'`, dollar-quoted) and numeric literals become `?`; `$n` parameters
/// stay; comments are removed; whitespace collapses to one space; unquoted
/// identifiers and keywords are lowercased; quoted identifiers are kept
/// verbatim (a valid `U&"..."` identifier is written in its decoded
/// `"..."` form). `IN` lists are not collapsed.
///
/// ```
/// assert_eq!(
///     portcullis_sql::fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = 42"),
///     "select abalance from pgbench_accounts where aid = ?"
/// );
/// ```
pub fn fingerprint(sql: &str) -> String {
    canon::render(sql, canon::Style::Fingerprint)
}

/// Analyses a query string without the cache. [`Analyzer::analyze`] always
/// returns an equal result.
pub fn analyze_uncached(sql: &str) -> Analysis {
    analyze::analyze_key(&canon::render(sql, canon::Style::Key))
}

/// How a use of operator `symbol` is named among function calls
/// ([`Lineage::condition_calls`], masking's `opaque:` entries): `operator(###)`.
pub fn operator_call(symbol: &str) -> String {
    format!("operator({symbol})")
}

/// The operator symbol an explicit cast is listed under in
/// [`StatementSummary::operators`]: `::`, PostgreSQL's own cast token.
pub const CAST_SYMBOL: &str = "::";
