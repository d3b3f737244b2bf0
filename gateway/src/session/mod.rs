//! The per-connection relay, socket-free.
//!
//! After login, a [`Relay`] sits between one client and its upstream connection. The
//! I/O layer hands it the bytes it read from either side; the relay cuts them into
//! messages, sends every statement through the [`Gate`], every
//! result row through the [`ResultFilter`], and appends
//! what must be written to each side into output buffers. It owns no socket and reads
//! no clock (the caller passes `now`), so the whole protocol is tested byte-in/bytes-out.
//!
//! Denials keep the protocol in step with PostgreSQL: the denied message is replaced by
//! a "poison" message that is sure to fail upstream, and the server's error for it is
//! replaced by the denial. PostgreSQL therefore aborts the implicit or explicit
//! transaction and discards until Sync exactly as it would for its own errors, and a
//! poison that PostgreSQL skips (because an earlier message already failed) produces
//! no second error, as PostgreSQL itself would.

mod audit;
mod client;
mod hold;
mod pending;
mod server;
#[cfg(test)]
mod tests;
mod tracked;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use portcullis_sql::{Analysis, Analyzer};
use portcullis_wire::backend::{RowDescription, TransactionStatus};
use portcullis_wire::{FrameDecoder, Limits, WireError};

use crate::audit::{AuditContext, AuditEvent, Queued, SessionRecord, Until};
use crate::metrics::Metrics;
use crate::pipeline::{Gate, ResultFilter, RowRewriter, SessionInfo};
use pending::Pending;

pub use hold::{HoldOutcome, HoldTicket};

/// Why a relay gave up on a connection.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The client broke the protocol; it gets a FATAL with this SQLSTATE.
    #[error("{0}")]
    Client(WireError),
    /// The server sent something unreadable.
    #[error("upstream protocol error: {0}")]
    Server(WireError),
    /// A row rewriter failed; the connection cannot continue safely.
    #[error("result filter failed: {0}")]
    Filter(anyhow::Error),
}

/// What the relay knows about a prepared statement (extended protocol).
#[derive(Debug, Clone)]
struct StatementInfo {
    analysis: Arc<Analysis>,
    columns: Option<Arc<RowDescription>>,
    /// The SQL as sent, kept only when the audit trail records it.
    sql: Option<Arc<str>>,
    /// Each policy's verdict (when auditing).
    verdicts: crate::pipeline::Verdicts,
    /// The SQL as sent, kept when the gate allowed it and observes Binds
    /// ([`Gate::observes_binds`]): each executed Bind is reported to
    /// [`Gate::bound`].
    bound_sql: Option<Arc<str>>,
}

/// What the relay knows about a portal.
#[derive(Debug, Clone)]
struct PortalInfo {
    statement: Option<StatementInfo>,
    /// Result-column format codes from the Bind.
    result_formats: Vec<i16>,
    /// Bound parameters, kept when the audit trail records them or the gate
    /// observes Binds.
    params: Option<Arc<[Option<String>]>>,
    /// The approval its statement runs under, if it was held.
    approval: Option<crate::audit::ApprovalRecord>,
}

/// The shared, per-gateway parts a relay uses.
#[derive(Clone)]
pub struct RelayDeps {
    /// Statement analysis and its cache.
    pub analyzer: Arc<Analyzer>,
    /// The decision point.
    pub gate: Arc<dyn Gate>,
    /// The row-rewriting point.
    pub filter: Arc<dyn ResultFilter>,
    /// Metrics.
    pub metrics: Metrics,
    /// Message size caps.
    pub limits: Limits,
    /// The audit trail, if enabled.
    pub audit: Option<Arc<AuditContext>>,
    /// Whether held statements wait for approval (`[approvals]` is configured); if
    /// not, a statement that needs approval is denied.
    pub approvals: bool,
}

/// Audit events the relay produced since the last [`Relay::take_audit`], as owned
/// records.
#[derive(Debug, Default)]
pub struct AuditOutput {
    /// The events, in order.
    pub events: Vec<AuditEvent>,
    /// Offset in the client output buffer (as passed to the input call just made)
    /// from which bytes must wait until these events are durable: set when one of
    /// them records a statement that may have changed data.
    pub hold_from: Option<usize>,
    /// How far the events must get before those bytes go out (meaningful with
    /// `hold_from`).
    pub until: Until,
}

/// Audit events the relay produced, as queued for the writer.
#[derive(Debug, Default)]
struct AuditQueue {
    /// The events, in order.
    events: Vec<Queued>,
    /// See [`AuditOutput::hold_from`].
    hold_from: Option<usize>,
    /// See [`AuditOutput::until`].
    until: Until,
}

/// The relay state of one session.
pub struct Relay {
    /// Who, where and which database: what every decision sees.
    session: Arc<SessionInfo>,
    /// Analyzer, gate, filter, metrics.
    deps: RelayDeps,
    /// Cuts client and server bytes into messages under the size caps.
    decoder: FrameDecoder,
    /// Responses the server still owes, in order, so each one can be matched to the
    /// request that caused it (needed for denials and for masking context).
    pending: VecDeque<Pending>,
    /// Prepared statements confirmed by the server (ParseComplete), by name.
    statements: HashMap<String, StatementInfo>,
    /// Portals confirmed by the server (BindComplete), by name.
    portals: HashMap<String, PortalInfo>,
    /// Transaction status from the last ReadyForQuery.
    transaction: TransactionStatus,
    /// The rewriter of the result set streaming now, if the filter asked for one.
    rewriter: Option<Box<dyn RowRewriter>>,
    /// Whether the current result set has been offered to the filter.
    result_started: bool,
    /// Which statement of a multi-statement Query the server is answering.
    query_statement: usize,
    /// A statement name nobody can guess; binding it is sure to fail upstream.
    poison_name: String,
    /// Number of the last client message forwarded (see [`Pending`]).
    client_seq: u64,
    /// Numbers of CopyDone/CopyFail messages forwarded while no COPY IN was known to
    /// be running: each ends the COPY IN the server starts next.
    copy_ends: VecDeque<u64>,
    /// The server is in COPY IN and the client has not ended it yet: Syncs sent now
    /// are ignored by the server and get no ReadyForQuery.
    copy_in_open: bool,
    /// The client sent Terminate.
    terminated: bool,
    /// Skip result tracking entirely when the filter never rewrites rows.
    track_results: bool,
    /// A result was refused: drop the server's responses up to ReadyForQuery.
    discarding: bool,
    /// The session as the audit trail records it (when auditing).
    audit_session: Option<Arc<SessionRecord>>,
    /// Audit events not yet taken by the I/O layer.
    audit_out: AuditQueue,
    /// Each policy's verdict per statement of the last string decided (when auditing).
    last_verdicts: crate::pipeline::Verdicts,
    /// Columns masked in the result set streaming now (for its audit event).
    result_masks: Vec<crate::pipeline::MaskedColumn>,
    /// A statement that may have changed data completed in the open transaction, so
    /// the COMMIT that makes it stick waits for its own event too (when auditing).
    wrote_in_transaction: bool,
    /// A statement that may end a transaction block completed since the last
    /// ReadyForQuery, so the status it reported may be stale (see
    /// [`Relay::in_transaction_block`]).
    block_may_have_ended: bool,
    /// The client message held for approval; no client message is read meanwhile.
    parked: Option<hold::Parked>,
    /// Prepared statements (by name, in client order) whose Parse the gate held:
    /// binding one parks the Bind.
    awaiting: HashMap<String, hold::Awaiting>,
    /// The queries of the cursors this session declared, by name (see [`tracked`]).
    cursors: HashMap<String, tracked::CursorQuery>,
    /// A statement that may change the masking catalog completed in the transaction
    /// running now.
    catalog_changed: bool,
    /// Where client output must wait for a catalog reload (see
    /// [`Relay::take_catalog_refresh`]).
    catalog_refresh: Option<usize>,
}

impl Relay {
    /// A relay for one authenticated session.
    pub fn new(session: Arc<SessionInfo>, deps: RelayDeps) -> Self {
        let track_results = !deps.filter.is_passthrough();
        let audit_session = deps
            .audit
            .as_ref()
            .map(|_| Arc::new(SessionRecord::from_info(&session)));
        Relay {
            audit_session,
            audit_out: AuditQueue::default(),
            session,
            decoder: FrameDecoder::new(deps.limits),
            deps,
            pending: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            transaction: TransactionStatus::Idle,
            rewriter: None,
            result_started: false,
            query_statement: 0,
            poison_name: format!("portcullis_denied_{:032x}", rand::random::<u128>()),
            client_seq: 0,
            copy_ends: VecDeque::new(),
            copy_in_open: false,
            terminated: false,
            track_results,
            discarding: false,
            parked: None,
            awaiting: HashMap::new(),
            cursors: HashMap::new(),
            catalog_changed: false,
            catalog_refresh: None,
            result_masks: Vec::new(),
            wrote_in_transaction: false,
            block_may_have_ended: false,
            last_verdicts: None,
        }
    }

    /// The session this relay serves.
    pub fn session(&self) -> &Arc<SessionInfo> {
        &self.session
    }

    /// The transaction status reported by the last ReadyForQuery.
    pub fn transaction(&self) -> TransactionStatus {
        self.transaction
    }

    /// True once the client sent Terminate.
    pub fn terminated(&self) -> bool {
        self.terminated
    }

    /// The audit events produced by the last input calls. Call it after every
    /// [`Relay::client_input`] / [`Relay::server_input`], before touching the client
    /// output buffer: [`AuditOutput::hold_from`] is an offset into it.
    pub fn take_audit(&mut self) -> AuditOutput {
        let AuditQueue {
            events,
            hold_from,
            until,
        } = std::mem::take(&mut self.audit_out);
        AuditOutput {
            events: events.into_iter().map(Queued::into_event).collect(),
            hold_from,
            until,
        }
    }

    /// [`Relay::take_audit`] without giving up the events' buffer: the caller drains
    /// the events (the relay reuses the vector's capacity for the next ones); the
    /// hold is [`AuditOutput::hold_from`] with [`AuditOutput::until`], taken.
    pub fn audit_pending(&mut self) -> (&mut Vec<Queued>, Option<(usize, Until)>) {
        let hold = self
            .audit_out
            .hold_from
            .take()
            .map(|at| (at, std::mem::take(&mut self.audit_out.until)));
        (&mut self.audit_out.events, hold)
    }

    /// The session as the audit trail records it, when auditing.
    pub fn audit_session(&self) -> Option<&Arc<SessionRecord>> {
        self.audit_session.as_ref()
    }

    /// True when the server owes no response: the session is idle between requests.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty()
    }
}
