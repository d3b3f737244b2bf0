//! Building statement events from what the relay knows.

use std::sync::Arc;

use portcullis_sql::{Access, Analysis, StatementKind, StatementSummary};

use super::event::{DecisionRecord, PolicyRef, SessionRecord};
use super::queued::{StatementEvent, StatementOutcome, TextSource};
use super::writer::AuditLog;
use crate::config::{AuditConfig, StatementText};
use crate::pipeline::Denial;

/// Longest statement text kept in an event, in bytes (longer text is cut).
pub const MAX_TEXT_BYTES: usize = 64 * 1024;
/// Longest parameter value kept, in bytes.
pub const MAX_PARAM_BYTES: usize = 1024;
/// Most parameters kept per statement.
pub const MAX_PARAMS: usize = 256;
/// SQLSTATE of statements denied because the trail cannot be written (`io_error`).
pub const SINK_FAILED_SQLSTATE: &str = "58030";

/// What relays need to record statements: the log, the text setting, the policy set.
pub struct AuditContext {
    /// Where events go.
    pub log: AuditLog,
    /// How much statement text to keep.
    pub statement_text: StatementText,
    /// Let statements run while the trail cannot be written.
    pub fail_open: bool,
    /// The loaded policies, recorded with every decision; swapped on a policy reload.
    policies: arc_swap::ArcSwap<Arc<[PolicyRef]>>,
}

impl AuditContext {
    /// A context for `log` configured by `config`.
    pub fn new(log: AuditLog, config: &AuditConfig, policies: Vec<PolicyRef>) -> Self {
        AuditContext {
            log,
            statement_text: config.statement_text,
            fail_open: config.fail_open,
            policies: arc_swap::ArcSwap::from_pointee(policies.into()),
        }
    }

    /// The policies in force now.
    pub fn policies(&self) -> Arc<[PolicyRef]> {
        Arc::clone(&*self.policies.load())
    }

    /// The policies in force now, unless there are none (then nothing is cloned: this
    /// runs for every event).
    pub fn policies_if_any(&self) -> Option<Arc<[PolicyRef]>> {
        let set = self.policies.load();
        (!set.is_empty()).then(|| Arc::clone(&**set))
    }

    /// A new policy set went live (hot reload or rollback): later events name it, and a
    /// `policy_load` event records the swap.
    pub fn policies_swapped(&self, policies: Vec<PolicyRef>, detail: serde_json::Value) {
        let refs: Arc<[PolicyRef]> = policies.into();
        self.policies.store(Arc::new(Arc::clone(&refs)));
        self.log.policy_loaded(&refs, detail);
    }

    /// True when bound parameters are recorded.
    pub fn wants_params(&self) -> bool {
        self.statement_text == StatementText::Full
    }

    /// True when the raw SQL text is recorded.
    pub fn wants_sql(&self) -> bool {
        self.statement_text == StatementText::Full
    }

    /// The denial of a statement while the trail cannot be written (fail closed), if
    /// any. Transaction control is never denied, so a client can always end a
    /// transaction.
    pub fn sink_denial(&self, s: &StatementSummary) -> Option<Denial> {
        if self.fail_open || self.log.healthy() || is_transaction_control(s.kind) {
            return None;
        }
        Some(Denial {
            sqlstate: SINK_FAILED_SQLSTATE.into(),
            message: "the audit trail cannot be written, so the gateway refuses statements until it can (audit.fail_open = false)".into(),
            policy: "portcullis:audit".into(),
        })
    }

    /// The denial of a request that carries no statement (a fast-path FunctionCall)
    /// while the trail cannot be written.
    pub fn sink_denial_any(&self) -> Option<Denial> {
        if self.fail_open || self.log.healthy() {
            return None;
        }
        Some(Denial {
            sqlstate: SINK_FAILED_SQLSTATE.into(),
            message: "the audit trail cannot be written, so the gateway refuses statements until it can (audit.fail_open = false)".into(),
            policy: "portcullis:audit".into(),
        })
    }

    /// A statement event, as queued: the writer builds its record (so the session
    /// allocates nothing for its fingerprint, text or tables).
    pub fn statement_event(
        &self,
        session: &Arc<SessionRecord>,
        s: StatementFacts<'_>,
    ) -> StatementEvent {
        let text = match (self.statement_text, s.sql) {
            (StatementText::Full, Some(sql)) => TextSource::Sql(Arc::clone(sql)),
            (StatementText::Full | StatementText::Redacted, _) => TextSource::Fingerprint,
            (StatementText::Fingerprint, _) => TextSource::Omitted,
        };
        StatementEvent {
            session: Arc::clone(session),
            policies: self.policies_if_any(),
            analysis: Arc::clone(s.analysis),
            index: s.index,
            protocol: s.protocol,
            text,
            params: if self.wants_params() {
                s.params.cloned()
            } else {
                None
            },
            decision: s.decision,
            outcome: s.outcome,
            masked: Vec::new(),
        }
    }
}

/// What the relay knows about one statement when it records it.
pub struct StatementFacts<'a> {
    /// `simple` or `extended`.
    pub protocol: &'static str,
    /// The analysis of the string the statement came in.
    pub analysis: &'a Arc<Analysis>,
    /// Which statement of the string.
    pub index: usize,
    /// The SQL as sent, when kept (`statement_text = "full"`).
    pub sql: Option<&'a Arc<str>>,
    /// Bound parameters, when kept.
    pub params: Option<&'a Arc<[Option<String>]>>,
    /// The decision.
    pub decision: DecisionRecord,
    /// What happened.
    pub outcome: StatementOutcome,
}

/// The decision record of a denial.
pub fn denied(d: &Denial) -> DecisionRecord {
    DecisionRecord {
        verdict: "deny".into(),
        policy: Some(d.policy.clone()),
        message: Some(d.message.clone()),
        sqlstate: Some(d.sqlstate.clone()),
        approval: None,
        verdicts: Vec::new(),
    }
}

/// Transaction control: never denied for a failing sink, never waits for the disk.
pub fn is_transaction_control(kind: StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::Begin
            | StatementKind::Commit
            | StatementKind::Rollback
            | StatementKind::Savepoint
    )
}

/// Functions a read-only statement may call without being treated as a write.
const READ_ONLY_FUNCTIONS: &[&str] = &[
    "count",
    "sum",
    "avg",
    "min",
    "max",
    "coalesce",
    "lower",
    "upper",
    "length",
    "now",
    "current_timestamp",
    "abs",
    "round",
    "substr",
    "substring",
    "concat",
    "version",
    "current_database",
    "current_user",
    "session_user",
    "array_agg",
    "string_agg",
    "nullif",
    "greatest",
    "least",
    "date_trunc",
    "extract",
    "to_char",
    "trim",
];

/// Whether a statement may change data, so its event must be on disk before the
/// client sees its result. Unknown is a write.
pub fn changes_data(s: &StatementSummary) -> bool {
    use StatementKind::*;
    let reads_only = s.tables.iter().all(|t| t.access == Access::Read);
    let safe_functions = s.functions.iter().all(|f| {
        let base = f.rsplit('.').next().unwrap_or(f);
        READ_ONLY_FUNCTIONS.contains(&base)
    });
    match s.kind {
        Select | Explain | Show | Declare | Fetch => !(reads_only && safe_functions),
        Begin | Commit | Rollback | Savepoint | Set | Reset | Deallocate | Close | Listen
        | Unlisten | Discard | Prepare => false,
        _ => true,
    }
}

/// Rows returned or affected, from a command tag (`INSERT 0 3`, `SELECT 5`, ...).
pub fn rows_from_tag(tag: &str) -> Option<u64> {
    let mut words = tag.split(' ');
    let verb = words.next()?;
    if !matches!(
        verb,
        "INSERT" | "UPDATE" | "DELETE" | "SELECT" | "MERGE" | "COPY" | "FETCH" | "MOVE"
    ) {
        return None;
    }
    tag.rsplit(' ').next()?.parse().ok()
}

/// Whether parameter `i` of a Bind with these format codes is in binary format (no
/// codes: all text; one code: all of that format; else one code per parameter).
pub fn param_is_binary(formats: &[i16], i: usize) -> bool {
    match formats.len() {
        0 => false,
        1 => formats[0] == 1,
        _ => formats.get(i) == Some(&1),
    }
}

/// Bound parameters as recorded: text format as UTF-8 (lossy), binary as `\x` hex,
/// each cut to [`MAX_PARAM_BYTES`].
pub fn params_record(formats: &[i16], params: &[Option<&[u8]>]) -> Arc<[Option<String>]> {
    params
        .iter()
        .take(MAX_PARAMS)
        .enumerate()
        .map(|(i, p)| {
            p.map(|bytes| {
                let binary = param_is_binary(formats, i);
                let cut = &bytes[..bytes.len().min(MAX_PARAM_BYTES)];
                if binary {
                    format!("\\x{}", hex::encode(cut))
                } else {
                    String::from_utf8_lossy(cut).into_owned()
                }
            })
        })
        .collect()
}
