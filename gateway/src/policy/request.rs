//! Converting what the gateway knows about a statement into the WIT `request`.

use portcullis_sql::{Access, CopyTarget, StatementKind, StatementSummary};
use portcullis_wire::backend::TransactionStatus;

use super::bindings::portcullis::policy::types as wit;
use crate::config::PrincipalKind;
use crate::identity::AuthMethod;
use crate::pipeline::{Protocol, SessionInfo, StatementContext};

/// The `request` for one statement.
pub fn request(ctx: &StatementContext<'_>) -> wit::Request {
    let statements = &ctx.analysis.statements;
    let index = statements
        .iter()
        .position(|s| std::ptr::eq(s, ctx.statement))
        .unwrap_or(0);
    wit::Request {
        identity: identity(ctx.session),
        database: ctx.session.database.clone(),
        statement: statement(ctx.statement, ctx.sql, statements.len() > 1, index),
        params: None,
        protocol: match ctx.protocol {
            Protocol::Simple => wit::Protocol::Simple,
            Protocol::ExtendedParse => wit::Protocol::Extended,
        },
        transaction: match ctx.transaction {
            TransactionStatus::Idle => wit::TransactionState::Idle,
            TransactionStatus::InTransaction => wit::TransactionState::InTransaction,
            TransactionStatus::Failed => wit::TransactionState::Failed,
        },
        session_id: ctx.session.session_id,
    }
}

/// The `identity` of a session.
pub fn identity(session: &SessionInfo) -> wit::Identity {
    let id = &session.identity;
    wit::Identity {
        user: id.name.clone(),
        groups: id.groups.clone(),
        kind: match id.kind {
            PrincipalKind::Person => wit::PrincipalKind::Person,
            PrincipalKind::Service => wit::PrincipalKind::Service,
            PrincipalKind::Agent => wit::PrincipalKind::Agent,
        },
        auth_method: match id.auth_method {
            AuthMethod::ScramSha256 => wit::AuthMethod::Scram,
            AuthMethod::Token => wit::AuthMethod::Token,
            AuthMethod::Certificate => wit::AuthMethod::Certificate,
        },
        acting_for: id.acting_for.clone(),
        client_addr: session.client_addr.to_string(),
        application_name: session.application_name.clone(),
    }
}

/// The `statement` record. `sql` is the whole string the statement came in.
pub fn statement(s: &StatementSummary, sql: &str, multi: bool, index: usize) -> wit::Statement {
    wit::Statement {
        kind: kind(s.kind),
        leading_keyword: s.leading_keyword.clone(),
        fingerprint: s.fingerprint.clone(),
        sql: sql.to_owned(),
        tables: s
            .tables
            .iter()
            .map(|t| wit::TableRef {
                schema: t.schema.clone(),
                name: t.name.clone(),
                access: match t.access {
                    Access::Read => wit::Access::Read,
                    Access::Write => wit::Access::Write,
                    Access::Ddl => wit::Access::Ddl,
                },
            })
            .collect(),
        columns: columns(s),
        functions: s.functions.clone(),
        has_where: s.has_where,
        copy: s.copy.map(|c| wit::CopyInfo {
            to: c.to,
            target: match c.target {
                CopyTarget::Client => wit::CopyTarget::Client,
                CopyTarget::ServerFile => wit::CopyTarget::ServerFile,
                CopyTarget::Program => wit::CopyTarget::Program,
            },
        }),
        parse_error: s.parse_error.clone(),
        multi_statement: multi,
        index: u32::try_from(index).unwrap_or(u32::MAX),
    }
}

/// The `columns` of a statement: every column referenced, resolved through aliases,
/// subqueries and CTEs to the relation named in the statement (`table.column`,
/// `schema.table.column` when qualified, `table.*` for a whole-row reference), then
/// one `predicate:table.column` entry per column a WHERE / HAVING / JOIN condition
/// compares with a literal or parameter (e.g. `WHERE ssn LIKE '1%'`), then one
/// `written:table.column` entry per column whose values flow into stored data
/// (INSERT ... SELECT, UPDATE ... SET, CREATE TABLE AS, SELECT INTO, CREATE VIEW), then
/// one `ordered:table.column` entry per column a result is sorted or grouped by, then
/// one `compared:table.column` entry per column a condition compares with another
/// column or a subquery (`JOIN s ON s.ssn = c.ssn`, `USING (ssn)`, `NATURAL JOIN`:
/// `compared:table.*`).
pub fn columns(s: &StatementSummary) -> Vec<String> {
    use portcullis_sql::Source;
    fn name(src: &Source) -> Option<String> {
        let rel = |t: &portcullis_sql::RelName| match &t.schema {
            Some(sc) => format!("{sc}.{}", t.name),
            None => t.name.clone(),
        };
        match src {
            Source::Column { table, column } => Some(format!("{}.{column}", rel(table))),
            Source::WholeRow(t) => Some(format!("{}.*", rel(t))),
            Source::Unknown => None,
        }
    }
    let mut out: Vec<String> = s.lineage.referenced.iter().filter_map(name).collect();
    out.extend(
        s.lineage
            .literal_predicates
            .iter()
            .filter_map(name)
            .map(|n| format!("predicate:{n}")),
    );
    out.extend(
        s.lineage
            .written_from
            .iter()
            .filter_map(name)
            .map(|n| format!("written:{n}")),
    );
    out.extend(
        s.lineage
            .ordered
            .iter()
            .filter_map(name)
            .map(|n| format!("ordered:{n}")),
    );
    out.extend(
        s.lineage
            .compared
            .iter()
            .filter_map(name)
            .map(|n| format!("compared:{n}")),
    );
    out
}

/// The WIT statement kind (one case per [`StatementKind`]).
pub fn kind(k: StatementKind) -> wit::StatementKind {
    use StatementKind as S;
    use wit::StatementKind as W;
    match k {
        S::Select => W::Select,
        S::Insert => W::Insert,
        S::Update => W::Update,
        S::Delete => W::Delete,
        S::Merge => W::Merge,
        S::Copy => W::Copy,
        S::CreateTable => W::CreateTable,
        S::CreateView => W::CreateView,
        S::CreateIndex => W::CreateIndex,
        S::CreateOther => W::CreateOther,
        S::Alter => W::Alter,
        S::Drop => W::Drop,
        S::Truncate => W::Truncate,
        S::Grant => W::Grant,
        S::Revoke => W::Revoke,
        S::Begin => W::Begin,
        S::Commit => W::Commit,
        S::Rollback => W::Rollback,
        S::Savepoint => W::Savepoint,
        S::Set => W::Set,
        S::Show => W::Show,
        S::Reset => W::Reset,
        S::Prepare => W::Prepare,
        S::Execute => W::Execute,
        S::Deallocate => W::Deallocate,
        S::Explain => W::Explain,
        S::Declare => W::Declare,
        S::Fetch => W::Fetch,
        S::Close => W::Close,
        S::Listen => W::Listen,
        S::Notify => W::Notify,
        S::Unlisten => W::Unlisten,
        S::Call => W::Call,
        S::Discard => W::Discard,
        S::Lock => W::Lock,
        S::Vacuum => W::Vacuum,
        S::Analyze => W::Analyze,
        S::Comment => W::Comment,
        S::Do => W::Do,
        S::Other => W::Other,
        S::Unparsed => W::Unparsed,
    }
}
