use std::sync::Arc;
use std::time::Instant;

use portcullis_sql::Analysis;
use portcullis_wire::backend::ErrorFields;
use portcullis_wire::frontend::Target;

use super::StatementInfo;
use crate::audit::ApprovalRecord;

/// A response the server owes for a request already forwarded. `seq` numbers the
/// client's messages in order, so the relay can tell which Syncs arrived at the server
/// during a COPY IN (the server ignores those).
#[derive(Debug)]
pub(super) enum Pending {
    /// A simple Query: everything up to ReadyForQuery.
    Query {
        seq: u64,
        analysis: Arc<Analysis>,
        denial: Option<ErrorFields>,
        sent_at: Instant,
        /// The SQL as sent, kept only when the audit trail records it.
        sql: Option<Arc<str>>,
        /// The approval it ran under, if it was held.
        approval: Option<ApprovalRecord>,
        /// Each policy's verdict, per statement (when auditing).
        verdicts: crate::pipeline::Verdicts,
    },
    /// A Parse: ParseComplete.
    Parse {
        name: String,
        statement: StatementInfo,
        denial: Option<ErrorFields>,
        sent_at: Instant,
    },
    /// A Bind: BindComplete.
    Bind {
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
        /// Bound parameters, kept when the audit trail records them or the gate
        /// observes Binds.
        params: Option<Arc<[Option<String>]>>,
        /// Their format codes as sent (kept when the gate observes Binds).
        param_formats: Vec<i16>,
        /// Set when the Bind was refused (a held statement not approved).
        denial: Option<ErrorFields>,
        /// The approval it runs under, if it was held.
        approval: Option<ApprovalRecord>,
    },
    /// A Describe: ParameterDescription and RowDescription/NoData.
    Describe { target: Target, name: String },
    /// An Execute: rows, then CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute {
        seq: u64,
        portal: String,
        sent_at: Instant,
    },
    /// A Close: CloseComplete.
    Close { target: Target, name: String },
    /// A Sync: ReadyForQuery.
    Sync { seq: u64, sent_at: Instant },
    /// A FunctionCall: FunctionCallResponse and ReadyForQuery.
    FunctionCall {
        denial: Option<ErrorFields>,
        sent_at: Instant,
        function_oid: u32,
    },
}

impl Pending {
    /// True for requests answered by ReadyForQuery.
    pub(super) fn ends_with_ready(&self) -> bool {
        matches!(
            self,
            Pending::Query { .. } | Pending::Sync { .. } | Pending::FunctionCall { .. }
        )
    }

    /// The denial to show instead of the server's error, if this request was poisoned.
    pub(super) fn denial(&self) -> Option<&ErrorFields> {
        match self {
            Pending::Query { denial, .. }
            | Pending::Parse { denial, .. }
            | Pending::Bind { denial, .. }
            | Pending::FunctionCall { denial, .. } => denial.as_ref(),
            _ => None,
        }
    }
}
