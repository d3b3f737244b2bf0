use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_sql::{Analysis, StatementSummary};
use portcullis_wire::backend::TransactionStatus;

use crate::identity::Identity;

/// Facts about a session that every decision can see.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Gateway-wide unique session number.
    pub session_id: u64,
    /// The verified identity.
    pub identity: Arc<Identity>,
    /// The database name the client asked for.
    pub database: String,
    /// The client's address.
    pub client_addr: SocketAddr,
    /// The client's `application_name`.
    pub application_name: String,
}

/// Which protocol carried a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// A simple-protocol Query.
    Simple,
    /// An extended-protocol Parse (parameters not bound yet).
    ExtendedParse,
}

/// One policy's verdict on a statement, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolicyVerdictRecord {
    /// Time of the call, in microseconds.
    pub micros: u64,
    /// `monitor` for a policy whose verdict is logged, not enforced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The policy id.
    pub policy: String,
    /// `allow`, `deny`, `require_approval` or `error`.
    pub verdict: String,
}

/// Where a gate writes each policy's verdict (only when the audit trail wants them).
pub type VerdictSink = std::cell::RefCell<Vec<PolicyVerdictRecord>>;

/// Per statement of a string, every policy's verdict (when auditing).
pub type Verdicts = Option<std::sync::Arc<[Vec<PolicyVerdictRecord>]>>;

/// One statement up for decision.
#[derive(Debug, Clone, Copy)]
pub struct StatementContext<'a> {
    /// The session.
    pub session: &'a SessionInfo,
    /// The analysis of the whole string the statement came in (shared, so a memo can
    /// recognise it again).
    pub analysis: &'a Arc<Analysis>,
    /// The statement being decided.
    pub statement: &'a StatementSummary,
    /// The raw SQL string it came in.
    pub sql: &'a str,
    /// Which protocol carried it.
    pub protocol: Protocol,
    /// The transaction state before it runs.
    pub transaction: TransactionStatus,
    /// Collects each policy's verdict, when set.
    pub verdicts: Option<&'a VerdictSink>,
}

/// Why a statement was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// SQLSTATE sent to the client.
    pub sqlstate: String,
    /// Message sent to the client.
    pub message: String,
    /// The policy (or gateway rule) that refused it.
    pub policy: String,
}

/// Why a statement must wait for a reviewer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalNeed {
    /// The reasons the policies gave, joined.
    pub reason: String,
    /// Who may approve, as the policies suggested (`group:dba`, `user:bob`).
    pub approvers: Vec<String>,
    /// The policies that asked, comma-separated.
    pub policy: String,
    /// Hold or defer, as the (first) asking policy's entry says; `None`: the
    /// gateway's `[approvals] mode`.
    pub mode: Option<crate::config::ApprovalMode>,
}

/// The outcome of a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Forward the statement.
    Allow,
    /// Refuse it with an error; the session goes on.
    Deny(Denial),
    /// Run it only once a reviewer approves (see [`crate::approvals`]).
    Hold(ApprovalNeed),
}

impl Decision {
    /// True for [`Decision::Deny`].
    pub fn is_deny(&self) -> bool {
        matches!(self, Decision::Deny(_))
    }

    /// The denial, if this is one.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Deny(d) => Some(d),
            Decision::Allow | Decision::Hold(_) => None,
        }
    }
}

/// How an approval request is routed (what `approve-hook` decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRoute {
    /// Wait for reviewers.
    Route {
        /// Groups (`group:x`) or users (`user:y`) who may approve.
        approvers: Vec<String>,
        /// Approvals needed (at least 1).
        required: u32,
        /// Seconds the request and its approval stay valid; the gateway default when
        /// `None`.
        ttl_seconds: Option<u32>,
        /// Notification channel name from the gateway config.
        channel: Option<String>,
    },
    /// Approved at once, with the reason.
    AutoApprove(String),
    /// Rejected at once, with the reason.
    AutoReject(String),
}

impl ApprovalRoute {
    /// The routing used when no policy implements `approve-hook`: the approvers
    /// `authorize` suggested, one approval, the default TTL.
    pub fn default_for(need: &ApprovalNeed) -> Self {
        ApprovalRoute::Route {
            approvers: need.approvers.clone(),
            required: 1,
            ttl_seconds: None,
            channel: None,
        }
    }
}

/// What `approve-hook` is told about a request, besides the statement itself.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalAsk<'a> {
    /// The request id.
    pub id: &'a str,
    /// What `authorize` said.
    pub need: &'a ApprovalNeed,
    /// When the request was made, in milliseconds since the Unix epoch.
    pub requested_at_ms: u64,
}

/// Decides statements before they run.
pub trait Gate: Send + Sync {
    /// Decides one statement. Called once per statement of a multi-statement string.
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision;

    /// Decides a FunctionCall (the fast-path interface), which names a function by OID
    /// and carries no SQL a policy could inspect.
    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision;

    /// Routes an approval request for a statement this gate held. The default routes
    /// to the approvers `authorize` suggested.
    fn route_approval(&self, _ctx: &StatementContext<'_>, ask: &ApprovalAsk<'_>) -> ApprovalRoute {
        ApprovalRoute::default_for(ask.need)
    }

    /// True when this gate (or one it wraps) wants [`Gate::bound`] calls; the relay
    /// only keeps what they need when one does. The default is false.
    fn observes_binds(&self) -> bool {
        false
    }

    /// Observes a Bind the server accepted (BindComplete) for an extended-protocol
    /// statement this gate allowed at Parse, once per statement of it, with its
    /// parameters as the audit trail renders them (text as text, binary as `\x` hex,
    /// see [`crate::audit::record::params_record`]) and their format codes as sent.
    /// Nothing is decided here (the decision was made at Parse); observers such as
    /// the traffic recording use it. Called only when [`Gate::observes_binds`] is
    /// true; the default does nothing.
    fn bound(&self, _ctx: &StatementContext<'_>, _params: &BoundParams<'_>) {}
}

/// The parameters of an executed Bind, for [`Gate::bound`].
#[derive(Debug, Clone, Copy)]
pub struct BoundParams<'a> {
    /// The values as the audit trail renders them; `None` is NULL.
    pub values: &'a [Option<String>],
    /// The Bind's parameter format codes as sent (none: all text; one: all of that
    /// format; else one per parameter).
    pub formats: &'a [i16],
}

/// Allows everything. The gateway core's default until policies are loaded.
#[derive(Debug, Default, Clone, Copy)]
pub struct PassThrough;

impl Gate for PassThrough {
    fn decide(&self, _ctx: &StatementContext<'_>) -> Decision {
        Decision::Allow
    }

    fn decide_function_call(&self, _session: &SessionInfo, _function_oid: u32) -> Decision {
        Decision::Allow
    }
}
