//! The relay's side of the audit trail: which statement a response belongs to, and
//! the events recorded when statements are denied, complete or fail.

use std::sync::Arc;
use std::time::Instant;

use portcullis_sql::{Analysis, StatementKind};
use portcullis_wire::Frame;
use portcullis_wire::backend::{ErrorFields, TransactionStatus};

use super::Relay;
use super::hold::HoldTicket;
use super::pending::Pending;
use crate::audit::queued::{CommandTag, StatementOutcome};
use crate::audit::record::{StatementFacts, changes_data, denied};
use crate::audit::{
    ApprovalRecord, AuditEvent, DecisionRecord, EventKind, OutcomeRecord, Queued, StatementEvent,
    StatementRecord, Until,
};
use crate::pipeline::Denial;

/// The statement a response answers.
struct Current<'a> {
    protocol: &'static str,
    analysis: &'a Arc<Analysis>,
    index: usize,
    sql: Option<&'a Arc<str>>,
    params: Option<&'a Arc<[Option<String>]>>,
    sent_at: Instant,
    approval: Option<&'a ApprovalRecord>,
    verdicts: &'a [crate::pipeline::PolicyVerdictRecord],
}

/// The verdicts of statement `index`, if recorded.
fn verdicts_at(
    v: &crate::pipeline::Verdicts,
    index: usize,
) -> &[crate::pipeline::PolicyVerdictRecord] {
    v.as_ref()
        .and_then(|v| v.get(index))
        .map_or(&[], |v| v.as_slice())
}

/// Whether a statement of this kind, run inside a transaction block, leaves the block
/// open (PostgreSQL refuses transaction control in functions, procedures and `DO`
/// blocks called inside one). Anything else may end it.
fn keeps_a_block_open(kind: StatementKind) -> bool {
    use StatementKind::*;
    matches!(
        kind,
        Select
            | Insert
            | Update
            | Delete
            | Merge
            | Copy
            | CreateTable
            | CreateView
            | CreateIndex
            | CreateOther
            | Alter
            | Drop
            | Truncate
            | Grant
            | Revoke
            | Savepoint
            | Set
            | Show
            | Reset
            | Prepare
            | Execute
            | Deallocate
            | Explain
            | Declare
            | Fetch
            | Close
            | Listen
            | Notify
            | Unlisten
            | Call
            | Lock
            | Comment
    )
}

fn micros(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_micros() as u64
}

impl Relay {
    /// The SQL text to keep for the audit trail (only with `statement_text = "full"`).
    pub(super) fn audit_sql(&self, sql: &str) -> Option<Arc<str>> {
        self.deps
            .audit
            .as_ref()
            .filter(|a| a.wants_sql())
            .map(|_| Arc::from(sql))
    }

    /// Queues `event`; `hold` = where its statement's result starts in the client
    /// output, and how far the event must get before that result goes out.
    fn push_audit(&mut self, event: impl Into<Queued>, hold: Option<(usize, Until)>) {
        if let Some((at, until)) = hold {
            let q = &mut self.audit_out;
            q.hold_from.get_or_insert(at);
            q.until = q.until.max(until);
        }
        self.audit_out.events.push(event.into());
    }

    /// True while the session is inside an explicit transaction block: the last
    /// ReadyForQuery said so, and no statement that could end the block completed
    /// since. A write there waits only for its event to be written: if this machine
    /// crashes, PostgreSQL rolls the block back, and the COMMIT that makes the write
    /// stick waits for the sync.
    fn in_transaction_block(&self) -> bool {
        self.transaction == TransactionStatus::InTransaction && !self.block_may_have_ended
    }

    /// Records a held statement that was not approved.
    pub(super) fn audit_denied_approval(
        &mut self,
        protocol: &'static str,
        ticket: &HoldTicket,
        sql: Option<&Arc<str>>,
        params: Option<&Arc<[Option<String>]>>,
        d: &Denial,
        approval: ApprovalRecord,
    ) {
        self.audit_denied_with(
            protocol,
            &ticket.analysis,
            ticket.index,
            sql,
            params,
            d,
            Some(approval),
        );
    }

    /// Records a statement denied before it reached the server.
    pub(super) fn audit_denied(
        &mut self,
        protocol: &'static str,
        analysis: &Arc<Analysis>,
        index: usize,
        sql: Option<&Arc<str>>,
        params: Option<&Arc<[Option<String>]>>,
        d: &Denial,
    ) {
        self.audit_denied_with(protocol, analysis, index, sql, params, d, None);
    }

    #[allow(clippy::too_many_arguments)]
    fn audit_denied_with(
        &mut self,
        protocol: &'static str,
        analysis: &Arc<Analysis>,
        index: usize,
        sql: Option<&Arc<str>>,
        params: Option<&Arc<[Option<String>]>>,
        d: &Denial,
        approval: Option<ApprovalRecord>,
    ) {
        let (Some(a), Some(s)) = (&self.deps.audit, &self.audit_session) else {
            return;
        };
        let event = a.statement_event(
            s,
            StatementFacts {
                protocol,
                analysis,
                index,
                sql,
                params,
                decision: DecisionRecord {
                    approval,
                    verdicts: verdicts_at(&self.last_verdicts, index).to_vec(),
                    ..denied(d)
                },
                outcome: StatementOutcome {
                    status: "denied".into(),
                    command: CommandTag::None,
                    sqlstate: Some(d.sqlstate.clone()),
                    error: None,
                    duration_us: 0,
                },
            },
        );
        self.push_audit(event, None);
    }

    /// Records a fast-path FunctionCall (denied, or completed at `now`).
    pub(super) fn audit_function_call(
        &mut self,
        oid: u32,
        denial: Option<&Denial>,
        sent_at: Instant,
        now: Instant,
        at: usize,
    ) {
        let (Some(a), Some(s)) = (&self.deps.audit, &self.audit_session) else {
            return;
        };
        let mut e = AuditEvent::for_session(EventKind::FunctionCall, s);
        e.statement = Some(StatementRecord {
            protocol: "function_call".into(),
            kind: "function_call".into(),
            fingerprint: format!("function oid {oid}"),
            index: 0,
            text: None,
            text_truncated: false,
            params: None,
            tables: Vec::new(),
            writes: true,
        });
        e.decision = Some(denial.map_or_else(DecisionRecord::allow, denied));
        e.outcome = Some(OutcomeRecord {
            status: if denial.is_some() { "denied" } else { "ok" }.into(),
            command: None,
            rows: None,
            sqlstate: denial.map(|d| d.sqlstate.clone()),
            error: None,
            duration_us: micros(sent_at, now),
        });
        e.policies = a.policies_if_any();
        let hold = denial.is_none().then_some((at, Until::Synced));
        self.push_audit(e, hold);
    }

    fn current(&self) -> Option<Current<'_>> {
        match self.pending.front()? {
            Pending::Query {
                analysis,
                denial: None,
                sent_at,
                sql,
                approval,
                verdicts,
                ..
            } => Some(Current {
                protocol: "simple",
                analysis,
                index: self.query_statement,
                sql: sql.as_ref(),
                params: None,
                sent_at: *sent_at,
                approval: approval.as_ref(),
                verdicts: verdicts_at(verdicts, self.query_statement),
            }),
            Pending::Execute {
                portal, sent_at, ..
            } => {
                let p = self.portals.get(portal)?;
                let s = p.statement.as_ref()?;
                Some(Current {
                    protocol: "extended",
                    analysis: &s.analysis,
                    index: 0,
                    sql: s.sql.as_ref(),
                    params: p.params.as_ref(),
                    sent_at: *sent_at,
                    approval: p.approval.as_ref(),
                    verdicts: verdicts_at(&s.verdicts, 0),
                })
            }
            Pending::Parse {
                statement,
                denial: None,
                sent_at,
                ..
            } => Some(Current {
                protocol: "extended",
                analysis: &statement.analysis,
                index: 0,
                sql: statement.sql.as_ref(),
                params: None,
                sent_at: *sent_at,
                approval: None,
                verdicts: verdicts_at(&statement.verdicts, 0),
            }),
            _ => None,
        }
    }

    /// Records the statement a CommandComplete (or PortalSuspended) finishes. Its
    /// bytes start at `at` in the client output; a statement that may have changed
    /// data holds them there until its event is durable.
    pub(super) fn audit_complete(
        &mut self,
        frame: &Frame,
        suspended: bool,
        at: usize,
        now: Instant,
    ) {
        if self.deps.audit.is_none() {
            return;
        }
        let Some(cur) = self.current() else { return };
        if matches!(self.pending.front(), Some(Pending::Parse { .. })) {
            return;
        }
        let command = if suspended {
            CommandTag::None
        } else {
            let body = frame.body();
            let end = body.iter().position(|b| *b == 0).unwrap_or(body.len());
            CommandTag::new(&body[..end])
        };
        let statement = cur.analysis.statements.get(cur.index);
        let mut writes = statement.is_none_or(changes_data);
        // A COMMIT makes the transaction's writes stick: its event is held like theirs,
        // so a client never sees a commit the trail could still lose.
        let commit = statement.is_some_and(|s| s.kind == StatementKind::Commit);
        let keeps_block = statement.is_some_and(|s| keeps_a_block_open(s.kind));
        let outcome = StatementOutcome {
            status: if suspended { "suspended" } else { "ok" }.into(),
            command,
            sqlstate: None,
            error: None,
            duration_us: micros(cur.sent_at, now),
        };
        let mut event = self.statement_event(&cur, DecisionRecord::allow(), outcome);
        event.masked = std::mem::take(&mut self.result_masks);
        let until = if keeps_block && self.in_transaction_block() {
            Until::Written
        } else {
            Until::Synced
        };
        if !keeps_block {
            self.block_may_have_ended = true;
        }
        if commit {
            writes |= std::mem::take(&mut self.wrote_in_transaction);
        } else if writes {
            self.wrote_in_transaction = true;
        }
        self.push_audit(event, writes.then_some((at, until)));
    }

    /// Records the statement an ErrorResponse answers (not a denial's).
    pub(super) fn audit_error(&mut self, frame: &Frame, now: Instant) {
        if self.deps.audit.is_none() {
            return;
        }
        let Some(cur) = self.current() else { return };
        let fields = ErrorFields::decode(frame.tag(), frame.body()).ok();
        let outcome = StatementOutcome {
            status: "error".into(),
            command: CommandTag::None,
            sqlstate: fields.as_ref().and_then(|f| f.code()).map(str::to_owned),
            error: fields.as_ref().and_then(|f| f.message()).map(str::to_owned),
            duration_us: micros(cur.sent_at, now),
        };
        let event = self.statement_event(&cur, DecisionRecord::allow(), outcome);
        self.push_audit(event, None);
    }

    fn statement_event(
        &self,
        cur: &Current<'_>,
        decision: DecisionRecord,
        outcome: StatementOutcome,
    ) -> StatementEvent {
        let (Some(a), Some(s)) = (&self.deps.audit, &self.audit_session) else {
            unreachable!("called only when auditing")
        };
        a.statement_event(
            s,
            StatementFacts {
                protocol: cur.protocol,
                analysis: cur.analysis,
                index: cur.index,
                sql: cur.sql,
                params: cur.params,
                decision: decision
                    .with_approval(cur.approval)
                    .with_verdicts(cur.verdicts),
                outcome,
            },
        )
    }
}
