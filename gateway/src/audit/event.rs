//! The audit event: one JSON object per line of the trail.

use std::borrow::Cow;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::pipeline::SessionInfo;

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The gateway opened the trail (first event of a run).
    Start,
    /// The gateway closed the trail cleanly (last event of a run).
    Stop,
    /// The last event of a file; the chain continues in the next file.
    Rotate,
    /// A signed checkpoint over the chain so far.
    Checkpoint,
    /// A policy set was loaded (at start, or on reload).
    PolicyLoad,
    /// A client session started (authenticated, upstream connected).
    Connect,
    /// A login was refused (bad password, unknown user, TLS required, ...).
    AuthFailure,
    /// A client session ended.
    Disconnect,
    /// One statement: decided, and (unless denied) run.
    Statement,
    /// A fast-path FunctionCall.
    FunctionCall,
    /// Events were lost (the sink could not keep up while failing).
    Lost,
}

impl EventKind {
    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Stop => "stop",
            EventKind::Rotate => "rotate",
            EventKind::Checkpoint => "checkpoint",
            EventKind::PolicyLoad => "policy_load",
            EventKind::Connect => "connect",
            EventKind::AuthFailure => "auth_failure",
            EventKind::Disconnect => "disconnect",
            EventKind::Statement => "statement",
            EventKind::FunctionCall => "function_call",
            EventKind::Lost => "lost",
        }
    }
}

/// Who and where: the session part of every session event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The person an agent acts for, when the gateway knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_for: Option<String>,
    /// The groups of the person in `acting_for`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acting_for_groups: Vec<String>,
    /// The client's `application_name`.
    pub application: String,
    /// How the identity authenticated.
    pub auth: String,
    /// The client's address.
    pub client_addr: String,
    /// The database the client asked for.
    pub database: String,
    /// The identity's groups.
    pub groups: Vec<String>,
    /// Gateway-wide session number (unique within one gateway run).
    pub id: u64,
    /// `person`, `service` or `agent`.
    pub principal: String,
    /// The upstream role the session runs as, when mapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The verified user name.
    pub user: String,
}

impl SessionRecord {
    /// The record of a session.
    pub fn from_info(s: &SessionInfo) -> Self {
        SessionRecord {
            id: s.session_id,
            user: s.identity.name.clone(),
            groups: s.identity.groups.clone(),
            principal: s.identity.kind.as_str().to_owned(),
            auth: s.identity.auth_method.as_str().to_owned(),
            acting_for: s.identity.acting_for.clone(),
            acting_for_groups: s.identity.acting_for_groups.clone(),
            role: s.identity.role.clone(),
            client_addr: s.client_addr.to_string(),
            application: s.application_name.clone(),
            database: s.database.clone(),
        }
    }
}

/// A table a statement touches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableAccess {
    /// `read`, `write` or `ddl`.
    pub access: Cow<'static, str>,
    /// `schema.name` or `name`.
    pub name: String,
}

/// The statement of a statement event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementRecord {
    /// Literal-free fingerprint of this statement.
    pub fingerprint: String,
    /// Position of the statement in its query string (0-based).
    pub index: usize,
    /// Statement kind (`select`, `insert`, ...).
    pub kind: Cow<'static, str>,
    /// Bound parameters (text format as UTF-8, binary as `\x` hex), with
    /// `statement_text = "full"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Arc<[Option<String>]>>,
    /// `simple`, `extended` or `function_call`.
    pub protocol: Cow<'static, str>,
    /// Relations touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tables: Vec<TableAccess>,
    /// The text, as configured (`statement_text`): the SQL as sent, or with literals
    /// replaced by `?`; absent with `fingerprint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// True when `text` was cut to the size cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub text_truncated: bool,
    /// True when the gateway considers that the statement may change data (its event
    /// was on disk before the client saw the result).
    pub writes: bool,
}

/// The gateway's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// The approval request the statement waited for, if it was held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalRecord>,
    /// The denial message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The policy (or gateway rule) that denied it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The denial SQLSTATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// `allow` or `deny`.
    pub verdict: Cow<'static, str>,
    /// Each called policy's verdict, in chain order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::pipeline::PolicyVerdictRecord>,
}

impl DecisionRecord {
    /// An allow.
    pub fn allow() -> Self {
        DecisionRecord {
            verdict: "allow".into(),
            policy: None,
            message: None,
            sqlstate: None,
            approval: None,
            verdicts: Vec::new(),
        }
    }

    /// The same decision, linked to an approval request.
    pub fn with_approval(mut self, approval: Option<&ApprovalRecord>) -> Self {
        self.approval = approval.cloned();
        self
    }

    /// The same decision, with each policy's verdict.
    pub fn with_verdicts(mut self, verdicts: &[crate::pipeline::PolicyVerdictRecord]) -> Self {
        self.verdicts = verdicts.to_vec();
        self
    }
}

/// The approval request a held statement waited for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecord {
    /// Request id (`apr-...`).
    pub id: String,
    /// Who approved or rejected it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reviewers: Vec<String>,
    /// How it ended: `approved`, `auto-approved`, `rejected`, `expired`, `withdrawn`,
    /// or `pending` (defer mode: the client was told to come back).
    pub status: String,
}

/// What happened when the statement ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    /// The command tag (`INSERT 0 3`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Microseconds from the request to its completion.
    pub duration_us: u64,
    /// The error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Rows returned or affected, from the command tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// SQLSTATE of the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
    /// `ok`, `error`, `denied` or `suspended` (a portal stopped at its row limit).
    pub status: Cow<'static, str>,
}

/// A loaded policy, as recorded with every decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    /// The configured id.
    pub id: String,
    /// `enforce` or `monitor`.
    pub mode: String,
    /// The name the component reports.
    pub name: String,
    /// SHA-256 of the artifact.
    pub sha256: String,
    /// The version the component reports.
    pub version: String,
}

/// A signed checkpoint: an Ed25519 signature over the head of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Its hash.
    pub head_hash: String,
    /// Sequence number of the event signed over (the one before the checkpoint).
    pub head_seq: u64,
    /// The public key (hex) that verifies the signature.
    pub key: String,
    /// Ed25519 signature (hex) of [`super::chain::checkpoint_message`].
    pub signature: String,
}

/// One event of the audit trail.
///
/// `seq`, `prev`, `hash` and `time` are filled in by the writer; everything else by
/// whoever records the event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The signature, for checkpoint events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<CheckpointRecord>,
    /// The decision, for statement events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<DecisionRecord>,
    /// Free-form details of gateway events (start, rotate, auth failure, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    /// SHA-256 (hex) of this event's canonical JSON without `hash`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
    /// What the event records.
    pub kind: EventKind,
    /// Result columns the gateway masked, with the mask and the policy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masked: Vec<crate::pipeline::MaskedColumn>,
    /// What happened, for statement events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeRecord>,
    /// The loaded policy set, for statement and policy-load events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies: Option<Arc<[PolicyRef]>>,
    /// Hash of the previous event (64 zeros for the first).
    pub prev: String,
    /// Position in the chain, from 0, without gaps, across files and restarts.
    pub seq: u64,
    /// The session, for session events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Arc<SessionRecord>>,
    /// The statement, for statement events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<StatementRecord>,
    /// When the event was recorded (RFC 3339, UTC, microseconds).
    pub time: String,
}

impl AuditEvent {
    /// An event of `kind` with nothing filled in.
    pub fn new(kind: EventKind) -> Self {
        AuditEvent {
            seq: 0,
            prev: String::new(),
            hash: String::new(),
            time: String::new(),
            kind,
            session: None,
            statement: None,
            decision: None,
            policies: None,
            masked: Vec::new(),
            outcome: None,
            detail: None,
            checkpoint: None,
        }
    }

    /// An event of `kind` about `session`.
    pub fn for_session(kind: EventKind, session: &Arc<SessionRecord>) -> Self {
        let mut e = AuditEvent::new(kind);
        e.session = Some(Arc::clone(session));
        e
    }
}
