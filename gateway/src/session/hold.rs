//! Statements held for approval.
//!
//! When the gate holds a statement, the relay parks the client message that would run
//! it (a simple Query, or the Bind of a prepared statement that needs approval, so the
//! parameters are known) and stops reading client messages: everything the client sent
//! after it waits behind it, as it would behind a slow statement in PostgreSQL. The
//! I/O layer takes the [`HoldTicket`], resolves the approval request asynchronously
//! and hands the [`HoldOutcome`] back with [`Relay::resume`]. Server output keeps
//! flowing meanwhile (responses to earlier pipelined messages).

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use portcullis_sql::Analysis;
use portcullis_wire::backend::TransactionStatus;
use portcullis_wire::frontend::Query;

use super::client::denial_fields;
use super::pending::Pending;
use super::{Relay, RelayError};
use crate::audit::ApprovalRecord;
use crate::pipeline::{ApprovalNeed, Denial, Protocol, SessionInfo, StatementContext};

/// Everything needed to open (or match) an approval request for a held statement.
#[derive(Debug, Clone)]
pub struct HoldTicket {
    /// The session that sent it.
    pub session: Arc<SessionInfo>,
    /// The analysis of the string the statement came in.
    pub analysis: Arc<Analysis>,
    /// Which statement of that string needs approval.
    pub index: usize,
    /// The SQL as sent.
    pub sql: Arc<str>,
    /// Simple or extended protocol.
    pub protocol: Protocol,
    /// The transaction state before it runs.
    pub transaction: TransactionStatus,
    /// Bound parameters (text; binary ones as `\x` hex); empty for simple queries.
    pub params: Vec<Option<String>>,
    /// Why, and who may approve.
    pub need: ApprovalNeed,
}

impl HoldTicket {
    /// The statement context the gate saw (for `approve-hook` routing).
    pub fn context(&self) -> StatementContext<'_> {
        StatementContext {
            session: &self.session,
            analysis: &self.analysis,
            statement: &self.analysis.statements[self.index],
            sql: &self.sql,
            protocol: self.protocol,
            transaction: self.transaction,
            verdicts: None,
        }
    }
}

/// How a held statement's request ended.
#[derive(Debug, Clone)]
pub enum HoldOutcome {
    /// Approved: the statement runs.
    Run(ApprovalRecord),
    /// Not approved (rejected, expired, withdrawn, deferred): the client gets this error.
    Refuse(Denial, ApprovalRecord),
}

/// A statement that needs approval, known from its Parse (extended protocol).
#[derive(Debug, Clone)]
pub(super) struct Awaiting {
    pub(super) need: ApprovalNeed,
    pub(super) analysis: Arc<Analysis>,
    pub(super) sql: Arc<str>,
    pub(super) audit_sql: Option<Arc<str>>,
}

/// The parked client message.
#[derive(Debug)]
pub(super) struct Parked {
    pub(super) raw: Bytes,
    pub(super) seq: u64,
    pub(super) ticket: HoldTicket,
    pub(super) taken: bool,
    pub(super) kind: ParkedKind,
}

/// What the parked message was.
#[derive(Debug)]
pub(super) enum ParkedKind {
    Query {
        audit_sql: Option<Arc<str>>,
    },
    Bind {
        portal: String,
        statement: String,
        result_formats: Vec<i16>,
        audit_params: Option<Arc<[Option<String>]>>,
        audit_sql: Option<Arc<str>>,
    },
}

impl Relay {
    /// The ticket of a statement just held, once: the I/O layer resolves it and calls
    /// [`Relay::resume`]. While a statement is held, [`Relay::client_input`] reads no
    /// further client messages.
    pub fn take_hold(&mut self) -> Option<HoldTicket> {
        let parked = self.parked.as_mut()?;
        if parked.taken {
            return None;
        }
        parked.taken = true;
        Some(parked.ticket.clone())
    }

    /// True while a statement waits for approval.
    pub fn holding(&self) -> bool {
        self.parked.is_some()
    }

    /// Ends the hold: forwards the parked message, or refuses it. Call
    /// [`Relay::client_input`] afterwards for client bytes that arrived meanwhile.
    pub fn resume(
        &mut self,
        outcome: HoldOutcome,
        to_server: &mut BytesMut,
        now: Instant,
    ) -> Result<(), RelayError> {
        let Some(parked) = self.parked.take() else {
            return Ok(());
        };
        let Parked {
            raw,
            seq,
            ticket,
            kind,
            ..
        } = parked;
        match (kind, outcome) {
            (ParkedKind::Query { audit_sql }, HoldOutcome::Run(approval)) => {
                to_server.extend_from_slice(&raw);
                self.pending.push_back(Pending::Query {
                    seq,
                    analysis: ticket.analysis,
                    denial: None,
                    sent_at: now,
                    sql: audit_sql,
                    approval: Some(approval),
                    verdicts: self.last_verdicts.clone(),
                });
            }
            (ParkedKind::Query { audit_sql }, HoldOutcome::Refuse(d, approval)) => {
                self.audit_denied_approval(
                    "simple",
                    &ticket,
                    audit_sql.as_ref(),
                    None,
                    &d,
                    approval,
                );
                Query::encode(&self.poison_name, to_server);
                self.pending.push_back(Pending::Query {
                    seq,
                    analysis: ticket.analysis,
                    denial: Some(denial_fields(&d)),
                    sent_at: now,
                    sql: audit_sql,
                    approval: None,
                    verdicts: None,
                });
            }
            (
                ParkedKind::Bind {
                    portal,
                    statement,
                    result_formats,
                    audit_params,
                    ..
                },
                HoldOutcome::Run(approval),
            ) => {
                to_server.extend_from_slice(&raw);
                self.pending.push_back(Pending::Bind {
                    portal,
                    statement,
                    result_formats,
                    params: audit_params,
                    param_formats: Vec::new(),
                    denial: None,
                    approval: Some(approval),
                });
            }
            (
                ParkedKind::Bind {
                    portal,
                    statement,
                    result_formats,
                    audit_params,
                    audit_sql,
                },
                HoldOutcome::Refuse(d, approval),
            ) => {
                self.audit_denied_approval(
                    "extended",
                    &ticket,
                    audit_sql.as_ref(),
                    audit_params.as_ref(),
                    &d,
                    approval,
                );
                self.poison_extended(to_server);
                self.pending.push_back(Pending::Bind {
                    portal,
                    statement,
                    result_formats,
                    params: audit_params,
                    param_formats: Vec::new(),
                    denial: Some(denial_fields(&d)),
                    approval: None,
                });
            }
        }
        Ok(())
    }
}
