//! Statement kinds and table access modes.

use sqlparser::ast::{SetExpr, Statement};

/// What kind of statement this is. [`StatementKind::as_str`] gives the stable
/// snake_case name used in audit logs and policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// `SELECT`, `VALUES`, `WITH ... SELECT`.
    Select,
    /// `INSERT` (also `WITH ... INSERT`).
    Insert,
    /// `UPDATE`.
    Update,
    /// `DELETE`.
    Delete,
    /// `MERGE`.
    Merge,
    /// `COPY`.
    Copy,
    /// `CREATE TABLE`, `CREATE TABLE AS` and `SELECT ... INTO`.
    CreateTable,
    /// `CREATE [MATERIALIZED] VIEW`.
    CreateView,
    /// `CREATE INDEX`.
    CreateIndex,
    /// Any other `CREATE` (function, role, schema, extension, trigger, ...).
    CreateOther,
    /// Any `ALTER` (and `RENAME TABLE`).
    Alter,
    /// Any `DROP`.
    Drop,
    /// `TRUNCATE`.
    Truncate,
    /// `GRANT`.
    Grant,
    /// `REVOKE`.
    Revoke,
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT` (including `ROLLBACK TO SAVEPOINT`).
    Rollback,
    /// `SAVEPOINT` / `RELEASE SAVEPOINT`.
    Savepoint,
    /// `SET` (including `SET ROLE`, `SET SESSION AUTHORIZATION`, `SET TRANSACTION`).
    Set,
    /// `SHOW`.
    Show,
    /// `RESET`.
    Reset,
    /// `PREPARE name AS <statement>`.
    Prepare,
    /// `EXECUTE name`.
    Execute,
    /// `DEALLOCATE`.
    Deallocate,
    /// `EXPLAIN` (with or without `ANALYZE`).
    Explain,
    /// `DECLARE cursor`.
    Declare,
    /// `FETCH`.
    Fetch,
    /// `CLOSE`.
    Close,
    /// `LISTEN`.
    Listen,
    /// `NOTIFY`.
    Notify,
    /// `UNLISTEN`.
    Unlisten,
    /// `CALL`.
    Call,
    /// `DISCARD`.
    Discard,
    /// `LOCK`.
    Lock,
    /// `VACUUM`.
    Vacuum,
    /// `ANALYZE`.
    Analyze,
    /// `COMMENT ON`.
    Comment,
    /// `DO` (never produced by the parser today: `DO` blocks are
    /// [`StatementKind::Unparsed`] with `leading_keyword == "do"`).
    Do,
    /// A parsed statement of no other kind (e.g. `LOAD`).
    Other,
    /// The statement could not be parsed; see `parse_error` and `leading_keyword`.
    Unparsed,
}

impl StatementKind {
    /// Stable snake_case name (e.g. `"create_table"`).
    pub fn as_str(self) -> &'static str {
        use StatementKind::*;
        match self {
            Select => "select",
            Insert => "insert",
            Update => "update",
            Delete => "delete",
            Merge => "merge",
            Copy => "copy",
            CreateTable => "create_table",
            CreateView => "create_view",
            CreateIndex => "create_index",
            CreateOther => "create_other",
            Alter => "alter",
            Drop => "drop",
            Truncate => "truncate",
            Grant => "grant",
            Revoke => "revoke",
            Begin => "begin",
            Commit => "commit",
            Rollback => "rollback",
            Savepoint => "savepoint",
            Set => "set",
            Show => "show",
            Reset => "reset",
            Prepare => "prepare",
            Execute => "execute",
            Deallocate => "deallocate",
            Explain => "explain",
            Declare => "declare",
            Fetch => "fetch",
            Close => "close",
            Listen => "listen",
            Notify => "notify",
            Unlisten => "unlisten",
            Call => "call",
            Discard => "discard",
            Lock => "lock",
            Vacuum => "vacuum",
            Analyze => "analyze",
            Comment => "comment",
            Do => "do",
            Other => "other",
            Unparsed => "unparsed",
        }
    }

    /// All kinds, in declaration order (handy for policy validation).
    pub const ALL: [StatementKind; 41] = {
        use StatementKind::*;
        [
            Select,
            Insert,
            Update,
            Delete,
            Merge,
            Copy,
            CreateTable,
            CreateView,
            CreateIndex,
            CreateOther,
            Alter,
            Drop,
            Truncate,
            Grant,
            Revoke,
            Begin,
            Commit,
            Rollback,
            Savepoint,
            Set,
            Show,
            Reset,
            Prepare,
            Execute,
            Deallocate,
            Explain,
            Declare,
            Fetch,
            Close,
            Listen,
            Notify,
            Unlisten,
            Call,
            Discard,
            Lock,
            Vacuum,
            Analyze,
            Comment,
            Do,
            Other,
            Unparsed,
        ]
    };

    /// Parses a name produced by [`StatementKind::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl std::fmt::Display for StatementKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a statement touches a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Access {
    /// Rows are read (SELECT, subqueries, sources of DML, `COPY ... TO`).
    Read,
    /// Rows are written (INSERT/UPDATE/DELETE/MERGE targets, `COPY ... FROM`).
    Write,
    /// The relation itself is created, altered, dropped, truncated, locked,
    /// granted on, commented on, vacuumed or analysed.
    Ddl,
}

impl Access {
    /// Stable name: `"read"`, `"write"` or `"ddl"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Ddl => "ddl",
        }
    }
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Kind of a query body (`WITH ... INSERT` is an insert, `SELECT INTO` creates a table).
fn query_body_kind(body: &SetExpr) -> StatementKind {
    match body {
        SetExpr::Select(s) if s.into.is_some() => StatementKind::CreateTable,
        SetExpr::Query(q) => query_body_kind(&q.body),
        SetExpr::Insert(_) => StatementKind::Insert,
        SetExpr::Update(_) => StatementKind::Update,
        SetExpr::Delete(_) => StatementKind::Delete,
        SetExpr::Merge(_) => StatementKind::Merge,
        _ => StatementKind::Select,
    }
}

/// Classifies a parsed statement.
pub(crate) fn classify(stmt: &Statement) -> StatementKind {
    use StatementKind as K;
    match stmt {
        Statement::Query(q) => query_body_kind(&q.body),
        Statement::Insert(_) => K::Insert,
        Statement::Update(_) => K::Update,
        Statement::Delete(_) => K::Delete,
        Statement::Merge(_) => K::Merge,
        Statement::Copy { .. } | Statement::CopyIntoSnowflake { .. } => K::Copy,
        Statement::CreateTable(_) | Statement::CreateVirtualTable { .. } => K::CreateTable,
        Statement::CreateView(_) => K::CreateView,
        Statement::CreateIndex(_) => K::CreateIndex,
        Statement::CreateRole(_)
        | Statement::CreateSecret { .. }
        | Statement::CreateServer(_)
        | Statement::CreatePolicy(_)
        | Statement::CreateConnector(_)
        | Statement::CreateOperator(_)
        | Statement::CreateOperatorFamily(_)
        | Statement::CreateOperatorClass(_)
        | Statement::CreateTextSearch(_)
        | Statement::CreateExtension(_)
        | Statement::CreateCollation(_)
        | Statement::CreateSchema { .. }
        | Statement::CreateDatabase { .. }
        | Statement::CreateFunction(_)
        | Statement::CreateTrigger(_)
        | Statement::CreateProcedure { .. }
        | Statement::CreateMacro { .. }
        | Statement::CreateStage { .. }
        | Statement::CreateFileFormat { .. }
        | Statement::CreateWarehouse(_)
        | Statement::CreateSequence { .. }
        | Statement::CreateDomain(_)
        | Statement::CreateType { .. }
        | Statement::CreateUser(_) => K::CreateOther,
        Statement::AlterTable(_)
        | Statement::AlterSchema(_)
        | Statement::AlterIndex { .. }
        | Statement::AlterView { .. }
        | Statement::AlterFunction(_)
        | Statement::AlterType(_)
        | Statement::AlterCollation(_)
        | Statement::AlterOperator(_)
        | Statement::AlterOperatorFamily(_)
        | Statement::AlterOperatorClass(_)
        | Statement::AlterTextSearch(_)
        | Statement::AlterRole { .. }
        | Statement::AlterPolicy(_)
        | Statement::AlterConnector { .. }
        | Statement::AlterSession { .. }
        | Statement::AlterUser(_)
        | Statement::RenameTable(_) => K::Alter,
        Statement::Drop { .. }
        | Statement::DropFunction(_)
        | Statement::DropDomain(_)
        | Statement::DropProcedure { .. }
        | Statement::DropSecret { .. }
        | Statement::DropPolicy(_)
        | Statement::DropConnector { .. }
        | Statement::DropExtension(_)
        | Statement::DropOperator(_)
        | Statement::DropOperatorFamily(_)
        | Statement::DropOperatorClass(_)
        | Statement::DropTrigger(_) => K::Drop,
        Statement::Truncate(_) => K::Truncate,
        Statement::Grant(_) => K::Grant,
        Statement::Revoke(_) => K::Revoke,
        Statement::StartTransaction { .. } => K::Begin,
        Statement::Commit { .. } => K::Commit,
        Statement::Rollback { .. } => K::Rollback,
        Statement::Savepoint { .. } | Statement::ReleaseSavepoint { .. } => K::Savepoint,
        Statement::Set(_) => K::Set,
        Statement::ShowFunctions { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowCreate { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::ShowDatabases { .. }
        | Statement::ShowProcessList { .. }
        | Statement::ShowSchemas { .. }
        | Statement::ShowCharset(_)
        | Statement::ShowObjects(_)
        | Statement::ShowTables { .. }
        | Statement::ShowViews { .. }
        | Statement::ShowCollation { .. } => K::Show,
        Statement::Reset(_) => K::Reset,
        Statement::Prepare { .. } => K::Prepare,
        Statement::Execute { .. } => K::Execute,
        Statement::Deallocate { .. } => K::Deallocate,
        Statement::Explain { .. } | Statement::ExplainTable { .. } => K::Explain,
        Statement::Declare { .. } => K::Declare,
        Statement::Fetch { .. } => K::Fetch,
        Statement::Close { .. } => K::Close,
        Statement::LISTEN { .. } => K::Listen,
        Statement::NOTIFY { .. } => K::Notify,
        Statement::UNLISTEN { .. } => K::Unlisten,
        Statement::Call(_) => K::Call,
        Statement::Discard { .. } => K::Discard,
        Statement::Lock(_) | Statement::LockTables { .. } => K::Lock,
        Statement::Vacuum(_) => K::Vacuum,
        Statement::Analyze(_) => K::Analyze,
        Statement::Comment { .. } => K::Comment,
        _ => K::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for k in StatementKind::ALL {
            assert!(seen.insert(k.as_str()), "duplicate {k}");
            assert_eq!(StatementKind::from_name(k.as_str()), Some(k));
            assert!(
                k.as_str()
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_')
            );
        }
        assert_eq!(Access::Ddl.as_str(), "ddl");
    }
}
