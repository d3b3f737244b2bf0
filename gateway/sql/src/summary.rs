//! The result types: [`Analysis`] and [`StatementSummary`].

use crate::kind::{Access, StatementKind};
use crate::lineage::Lineage;

/// The analysis of one query string (a simple-protocol `Query` message, which
/// may hold several statements, or one extended-protocol `Parse` text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    /// One summary per statement, in order. Empty for an empty string or one
    /// holding only whitespace, comments and semicolons.
    pub statements: Vec<StatementSummary>,
    /// Literal-free fingerprint of the whole string (see [`crate::fingerprint`]).
    pub fingerprint: String,
    /// For each statement PostgreSQL runs (each top-level `;`-separated piece), the
    /// index in `statements` of its summary. A piece that did not parse as one
    /// statement is analysed in parts (fail closed); its first part stands for it.
    pub results: Vec<usize>,
}

impl Analysis {
    /// The summary of the `i`-th statement PostgreSQL runs for this string, which
    /// produces the `i`-th result (CommandComplete) of a simple Query.
    pub fn result_statement(&self, i: usize) -> Option<&StatementSummary> {
        self.results.get(i).and_then(|&j| self.statements.get(j))
    }

    /// True if any statement could not be parsed ([`StatementKind::Unparsed`]).
    pub fn has_unparsed(&self) -> bool {
        self.statements
            .iter()
            .any(|s| s.kind == StatementKind::Unparsed)
    }

    /// Iterates over every table reference of every statement.
    pub fn tables(&self) -> impl Iterator<Item = &TableRef> {
        self.statements.iter().flat_map(|s| s.tables.iter())
    }
}

/// What one statement does, as far as governance is concerned.
///
/// Nothing here depends on literal values or byte offsets: a cached summary
/// is shared by every query string with the same literal-free form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementSummary {
    /// The statement kind; [`StatementKind::Unparsed`] iff `parse_error` is set.
    pub kind: StatementKind,
    /// The first keyword of the statement, lowercased (`"select"`, `"do"`,
    /// `"vacuum"`, `"with"`, ...); empty if the statement starts with no word.
    /// Set for every statement, parsed or not, so policies can still reason
    /// about statements the parser does not understand.
    pub leading_keyword: String,
    /// Literal-free fingerprint of this statement alone.
    pub fingerprint: String,
    /// Every relation touched, deduplicated on (schema, name, access), in
    /// first-seen order. CTE references are excluded; a relation read and
    /// written appears once per access mode.
    pub tables: Vec<TableRef>,
    /// Columns referenced where known (best effort): the table is the
    /// qualifier as written (possibly an alias), `*` stands for a wildcard.
    pub columns: Vec<ColumnRef>,
    /// Every function or procedure called, as written (schema-qualified if it
    /// was), unquoted parts lowercased: `"pg_catalog.pg_read_file"`.
    pub functions: Vec<String>,
    /// Every operator used, by its symbol (`=`, `->`, `###`; `OPERATOR(s.###)` as
    /// `###`), deduplicated: a user-defined operator runs a function too. An explicit
    /// cast (`x::t`, `CAST(x AS t)`) is [`crate::CAST_SYMBOL`]: a user-defined cast
    /// runs one as well.
    pub operators: Vec<String>,
    /// `Some(all_have_where)` when the statement contains an `UPDATE` or
    /// `DELETE` anywhere (including inside a CTE, `PREPARE` or `EXPLAIN`),
    /// `None` otherwise. `Some(false)` means at least one of them has no `WHERE`.
    pub has_where: Option<bool>,
    /// Why the statement could not be analysed; `Some` iff `kind` is `Unparsed`.
    pub parse_error: Option<String>,
    /// For `COPY`: direction and target kind.
    pub copy: Option<CopyInfo>,
    /// Column lineage: where each output column comes from, every column
    /// referenced (resolved through aliases, subqueries and CTEs) and the columns
    /// compared with literals in conditions. Empty for unparsed statements.
    pub lineage: Lineage,
}

impl StatementSummary {
    /// Whether the statement calls a function named `name` (lowercase,
    /// unqualified), whether or not the call was schema-qualified:
    /// `calls_function("pg_read_file")` matches `pg_catalog.pg_read_file(...)`.
    pub fn calls_function(&self, name: &str) -> bool {
        self.functions
            .iter()
            .any(|f| f == name || f.rsplit('.').next() == Some(name))
    }

    /// Whether the statement touches relation `name` (in any schema) with any access.
    pub fn touches_table(&self, name: &str) -> bool {
        self.tables.iter().any(|t| t.name == name)
    }

    pub(crate) fn unparsed(leading_keyword: String, fingerprint: String, error: String) -> Self {
        StatementSummary {
            kind: StatementKind::Unparsed,
            leading_keyword,
            fingerprint,
            tables: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            operators: Vec::new(),
            has_where: None,
            parse_error: Some(error),
            copy: None,
            lineage: Lineage::default(),
        }
    }
}

/// A relation (table, view, materialized view, sequence, index, foreign table)
/// touched by a statement. Names are normalised the PostgreSQL way: unquoted
/// identifiers lowercased, quoted ones kept, truncated to 63 bytes; a
/// database qualifier (three-part name) is dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Schema, if the name was qualified.
    pub schema: Option<String>,
    /// Relation name. `*` for `GRANT/REVOKE ... ON ALL TABLES IN SCHEMA s`.
    pub name: String,
    /// How the relation is touched.
    pub access: Access,
}

impl TableRef {
    /// `schema.name` or `name` (unquoted, for display).
    pub fn qualified_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A column reference (best effort).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnRef {
    /// The qualifier as written (table name or alias), if any.
    pub table: Option<String>,
    /// Column name, or `*` for a wildcard.
    pub name: String,
}

/// Where `COPY` reads from or writes to. The file name or command itself is a
/// literal and is deliberately not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CopyTarget {
    /// The client connection (`FROM STDIN` / `TO STDOUT`).
    Client,
    /// A file on the database server (`TO '/path'`, `FROM '/path'`).
    ServerFile,
    /// A shell command run on the database server (`TO PROGRAM 'cmd'`).
    Program,
}

impl CopyTarget {
    /// `"client"`, `"server_file"` or `"program"`.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyTarget::Client => "client",
            CopyTarget::ServerFile => "server_file",
            CopyTarget::Program => "program",
        }
    }
}

/// `COPY` details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CopyInfo {
    /// `true` for `COPY ... TO` (data leaves the database: `STDOUT`, a file or
    /// a program), `false` for `COPY ... FROM` (data enters it).
    pub to: bool,
    /// Client stream, server file or server program.
    pub target: CopyTarget,
}

impl CopyInfo {
    /// `"to"` or `"from"`.
    pub fn direction(&self) -> &'static str {
        if self.to { "to" } else { "from" }
    }
}
