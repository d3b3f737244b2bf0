//! Conversions between the SDK's types and the component-model bindings. Values move
//! (no string is copied); only the enums are mapped case by case.

use crate::__bindings::portcullis::policy::types as w;
use crate::types::*;

/// Maps fieldless enums one way or both ways, case by case (same case names).
macro_rules! map_enum {
    ($sdk:ident <=> $wit:ident { $($case:ident),+ $(,)? }) => {
        map_enum!($sdk => $wit { $($case),+ });
        map_enum!($wit => $sdk { $($case),+ });
    };
    ($from:ident => $to:ident { $($case:ident),+ $(,)? }) => {
        impl From<$from> for $to {
            fn from(v: $from) -> Self {
                match v {
                    $($from::$case => $to::$case,)+
                }
            }
        }
    };
}

// The wit-bindgen enums are re-declared locally under other names so the macro can take
// plain identifiers.
type WPrincipalKind = w::PrincipalKind;
type WAuthMethod = w::AuthMethod;
type WAccess = w::Access;
type WStatementKind = w::StatementKind;
type WCopyTarget = w::CopyTarget;
type WProtocol = w::Protocol;
type WTransactionState = w::TransactionState;
type WValueFormat = w::ValueFormat;
type WDatePart = w::DatePart;
type WHook = w::Hook;
type WLogLevel = w::LogLevel;

map_enum!(WPrincipalKind => PrincipalKind { Person, Service, Agent });
map_enum!(WAuthMethod => AuthMethod { Scram, Token, Certificate });
map_enum!(Access <=> WAccess { Read, Write, Ddl });
map_enum!(WStatementKind => StatementKind {
    Select, Insert, Update, Delete, Merge, Copy, CreateTable, CreateView, CreateIndex,
    CreateOther, Alter, Drop, Truncate, Grant, Revoke, Begin, Commit, Rollback, Savepoint,
    Set, Show, Reset, Prepare, Execute, Deallocate, Explain, Declare, Fetch, Close, Listen,
    Notify, Unlisten, Call, Discard, Lock, Vacuum, Analyze, Comment, Do, Other, Unparsed,
});
map_enum!(WCopyTarget => CopyTarget { Client, ServerFile, Program });
map_enum!(WProtocol => Protocol { Simple, Extended });
map_enum!(WTransactionState => TransactionState { Idle, InTransaction, Failed });
map_enum!(WValueFormat => ValueFormat { Text, Binary });
map_enum!(DatePart => WDatePart { Year, Month });
map_enum!(Hook => WHook { Authorize, Mask, Approve });
map_enum!(LogLevel => WLogLevel { Debug, Info, Warn, Error });

impl From<w::Identity> for Identity {
    fn from(v: w::Identity) -> Self {
        let acting_for_groups = match &v.acting_for {
            Some(_) => delegator_groups(),
            None => Vec::new(),
        };
        Identity {
            user: v.user,
            groups: v.groups,
            kind: v.kind.into(),
            auth_method: v.auth_method.into(),
            acting_for: v.acting_for,
            acting_for_groups,
            client_addr: v.client_addr,
            application_name: v.application_name,
        }
    }
}

/// The groups of the person the identity of the call in progress acts for.
#[cfg(target_arch = "wasm32")]
fn delegator_groups() -> Vec<String> {
    crate::__bindings::portcullis::policy::context::acting_for()
        .map(|d| d.groups)
        .unwrap_or_default()
}

#[cfg(not(target_arch = "wasm32"))]
fn delegator_groups() -> Vec<String> {
    Vec::new()
}

impl From<w::TableRef> for TableRef {
    fn from(v: w::TableRef) -> Self {
        TableRef {
            schema: v.schema,
            name: v.name,
            access: v.access.into(),
        }
    }
}

impl From<w::Statement> for Statement {
    fn from(v: w::Statement) -> Self {
        Statement {
            kind: v.kind.into(),
            leading_keyword: v.leading_keyword,
            fingerprint: v.fingerprint,
            sql: v.sql,
            tables: v.tables.into_iter().map(Into::into).collect(),
            columns: v.columns,
            functions: v.functions,
            has_where: v.has_where,
            copy: v.copy.map(|c| CopyInfo {
                to: c.to,
                target: c.target.into(),
            }),
            parse_error: v.parse_error,
            multi_statement: v.multi_statement,
            index: v.index,
        }
    }
}

impl From<w::ParamValue> for ParamValue {
    fn from(v: w::ParamValue) -> Self {
        match v {
            w::ParamValue::Null => ParamValue::Null,
            w::ParamValue::Text(s) => ParamValue::Text(s),
            w::ParamValue::Binary(b) => ParamValue::Binary(b),
        }
    }
}

impl From<w::Request> for Request {
    fn from(v: w::Request) -> Self {
        Request {
            identity: v.identity.into(),
            database: v.database,
            statement: v.statement.into(),
            params: v.params.map(|p| p.into_iter().map(Into::into).collect()),
            protocol: v.protocol.into(),
            transaction: v.transaction.into(),
            session_id: v.session_id,
        }
    }
}

impl From<Denial> for w::Denial {
    fn from(v: Denial) -> Self {
        w::Denial {
            message: v.message,
            sqlstate: v.sqlstate,
        }
    }
}

impl From<Decision> for w::Decision {
    fn from(v: Decision) -> Self {
        match v {
            Decision::Allow => w::Decision::Allow,
            Decision::Deny(d) => w::Decision::Deny(d.into()),
            Decision::RequireApproval(a) => w::Decision::RequireApproval(w::ApprovalRequirement {
                reason: a.reason,
                approvers: a.approvers,
            }),
        }
    }
}

impl From<w::ColumnSource> for ColumnSource {
    fn from(v: w::ColumnSource) -> Self {
        ColumnSource {
            schema: v.schema,
            table: v.table,
            column: v.column,
        }
    }
}

impl From<w::Provenance> for Provenance {
    fn from(v: w::Provenance) -> Self {
        match v {
            w::Provenance::Direct(s) => Provenance::Direct(s.into()),
            w::Provenance::Derived(v) => {
                Provenance::Derived(v.into_iter().map(Into::into).collect())
            }
            w::Provenance::Constant => Provenance::Constant,
            w::Provenance::Unknown(t) => {
                Provenance::Unknown(t.into_iter().map(Into::into).collect())
            }
        }
    }
}

impl From<w::ResultColumn> for ResultColumn {
    fn from(v: w::ResultColumn) -> Self {
        ResultColumn {
            index: v.index,
            name: v.name,
            type_oid: v.type_oid,
            format: v.format.into(),
            provenance: v.provenance.into(),
        }
    }
}

impl From<w::ResultContext> for ResultContext {
    fn from(v: w::ResultContext) -> Self {
        ResultContext {
            identity: v.identity.into(),
            database: v.database,
            statement: v.statement.map(Into::into),
            columns: v.columns.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<MaskFunction> for w::MaskFunction {
    fn from(v: MaskFunction) -> Self {
        match v {
            MaskFunction::Redact(s) => w::MaskFunction::Redact(s),
            MaskFunction::Null => w::MaskFunction::Null,
            MaskFunction::Partial(p) => w::MaskFunction::Partial(w::PartialMask {
                keep_first: p.keep_first,
                keep_last: p.keep_last,
                fill: p.fill,
            }),
            MaskFunction::Email => w::MaskFunction::Email,
            MaskFunction::Pseudonym => w::MaskFunction::Pseudonym,
            MaskFunction::Digits(n) => w::MaskFunction::Digits(n),
            MaskFunction::Date(d) => w::MaskFunction::Date(d.into()),
            MaskFunction::Round(step) => w::MaskFunction::Round(step),
            MaskFunction::Custom => w::MaskFunction::Custom,
        }
    }
}

impl From<MaskPlan> for w::MaskPlan {
    fn from(v: MaskPlan) -> Self {
        w::MaskPlan {
            columns: v
                .columns
                .into_iter()
                .map(|c| w::ColumnMask {
                    index: c.index,
                    mask: c.mask.into(),
                })
                .collect(),
            refuse: v.refuse.map(Into::into),
        }
    }
}

impl From<w::ApprovalRequest> for ApprovalRequest {
    fn from(v: w::ApprovalRequest) -> Self {
        ApprovalRequest {
            id: v.id,
            request: v.request.into(),
            reason: v.reason,
            approvers: v.approvers,
            requested_at_ms: v.requested_at_ms,
        }
    }
}

impl From<ApprovalRoute> for w::ApprovalRoute {
    fn from(v: ApprovalRoute) -> Self {
        match v {
            ApprovalRoute::Route(r) => w::ApprovalRoute::Route(w::ApprovalRouting {
                approvers: r.approvers,
                required_approvals: r.required_approvals,
                ttl_seconds: r.ttl_seconds,
                channel: r.channel,
            }),
            ApprovalRoute::AutoApprove(s) => w::ApprovalRoute::AutoApprove(s),
            ApprovalRoute::AutoReject(s) => w::ApprovalRoute::AutoReject(s),
        }
    }
}

impl From<Metadata> for w::Metadata {
    fn from(v: Metadata) -> Self {
        w::Metadata {
            name: v.name,
            version: v.version,
            hooks: v.hooks.into_iter().map(Into::into).collect(),
        }
    }
}
