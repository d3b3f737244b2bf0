//! Events as sessions queue them.
//!
//! A statement event is queued as a [`StatementEvent`]: what it shares with other
//! events (the session, the policy set, the parse cache's analysis) by reference
//! count, so a session allocates nothing for the statement's fingerprint, text or
//! tables. The writer serialises it straight from the analysis, to the bytes the
//! owned [`AuditEvent`] ([`StatementEvent::event`]) serialises to; debug builds check
//! that on every event.

use std::borrow::Cow;
use std::sync::Arc;

use portcullis_sql::{Analysis, StatementSummary, TableRef};
use serde::{Serialize, Serializer};

use super::event::{
    AuditEvent, DecisionRecord, EventKind, OutcomeRecord, PolicyRef, SessionRecord,
    StatementRecord, TableAccess,
};
use super::record::{MAX_TEXT_BYTES, changes_data, rows_from_tag};
use crate::pipeline::MaskedColumn;

/// An event on its way to the writer.
// Statement events are nearly every event: boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Queued {
    /// Built in full by whoever recorded it (boxed: these are rare, and the queue's
    /// items stay the size of a statement event).
    Event(Box<AuditEvent>),
    /// A statement event, built by the writer.
    Statement(StatementEvent),
}

impl From<AuditEvent> for Queued {
    fn from(e: AuditEvent) -> Self {
        Queued::Event(Box::new(e))
    }
}

impl From<StatementEvent> for Queued {
    fn from(e: StatementEvent) -> Self {
        Queued::Statement(e)
    }
}

impl Queued {
    /// The event as its owned record.
    pub fn into_event(self) -> AuditEvent {
        match self {
            Queued::Event(e) => *e,
            Queued::Statement(s) => s.event(),
        }
    }
}

/// Where a statement event's `text` comes from (`statement_text`, resolved).
#[derive(Debug, Clone)]
pub enum TextSource {
    /// No text (`fingerprint`).
    Omitted,
    /// The SQL as sent (`full`).
    Sql(Arc<str>),
    /// The literal-free fingerprint of the whole string (`redacted`, or `full` without
    /// the SQL).
    Fingerprint,
}

/// A statement event before it is numbered and chained.
#[derive(Debug, Clone)]
pub struct StatementEvent {
    /// The session.
    pub session: Arc<SessionRecord>,
    /// The policy set in force, if any.
    pub policies: Option<Arc<[PolicyRef]>>,
    /// The analysis of the string the statement came in.
    pub analysis: Arc<Analysis>,
    /// Which statement of the string.
    pub index: usize,
    /// `simple` or `extended`.
    pub protocol: &'static str,
    /// Where its text comes from.
    pub text: TextSource,
    /// Bound parameters, when recorded.
    pub params: Option<Arc<[Option<String>]>>,
    /// The decision.
    pub decision: DecisionRecord,
    /// What happened.
    pub outcome: StatementOutcome,
    /// Result columns the gateway masked.
    pub masked: Vec<MaskedColumn>,
}

impl StatementEvent {
    fn summary(&self) -> Option<&StatementSummary> {
        self.analysis.statements.get(self.index)
    }

    /// The text as recorded, and whether it was cut to [`MAX_TEXT_BYTES`].
    fn text(&self) -> (Option<&str>, bool) {
        let full = match &self.text {
            TextSource::Omitted => return (None, false),
            TextSource::Sql(sql) => &**sql,
            TextSource::Fingerprint => &self.analysis.fingerprint,
        };
        if full.len() <= MAX_TEXT_BYTES {
            return (Some(full), false);
        }
        let mut end = MAX_TEXT_BYTES;
        while !full.is_char_boundary(end) {
            end -= 1;
        }
        (Some(&full[..end]), true)
    }

    /// The statement record, owned.
    pub fn record(&self) -> StatementRecord {
        let summary = self.summary();
        let (text, text_truncated) = self.text();
        StatementRecord {
            protocol: self.protocol.into(),
            kind: summary.map_or("unknown", |x| x.kind.as_str()).into(),
            fingerprint: summary.map(|x| x.fingerprint.clone()).unwrap_or_default(),
            index: self.index,
            text: text.map(str::to_owned),
            text_truncated,
            params: self.params.clone(),
            tables: summary
                .map(|x| {
                    x.tables
                        .iter()
                        .map(|t| TableAccess {
                            name: t.qualified_name(),
                            access: t.access.as_str().into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            writes: summary.is_none_or(changes_data),
        }
    }

    /// The owned event (unnumbered), as [`super::AuditContext::statement_event`] built
    /// it before events were queued like this.
    pub fn event(&self) -> AuditEvent {
        let mut e = AuditEvent::for_session(EventKind::Statement, &self.session);
        e.statement = Some(self.record());
        e.decision = Some(self.decision.clone());
        e.outcome = Some(self.outcome.record());
        e.policies = self.policies.clone();
        e.masked = self.masked.clone();
        e
    }

    /// The event numbered `seq` after `prev`, at `time`, as serialised for hashing
    /// (its canonical JSON without `hash`).
    pub fn view<'a>(&'a self, seq: u64, prev: &'a str, time: &'a str) -> impl Serialize + 'a {
        let summary = self.summary();
        let (text, text_truncated) = self.text();
        EventView {
            decision: &self.decision,
            kind: EventKind::Statement,
            masked: &self.masked,
            outcome: self.outcome.view(),
            policies: self.policies.as_deref(),
            prev,
            seq,
            session: &self.session,
            statement: StatementView {
                fingerprint: summary.map_or("", |x| x.fingerprint.as_str()),
                index: self.index,
                kind: summary.map_or("unknown", |x| x.kind.as_str()),
                params: self.params.as_deref(),
                protocol: self.protocol,
                tables: Tables(summary.map_or(&[], |x| x.tables.as_slice())),
                text,
                text_truncated,
                writes: summary.is_none_or(changes_data),
            },
            time,
        }
    }
}

/// What happened to a statement: [`OutcomeRecord`] with the command tag kept inline and
/// the row count read from it when the record is written.
#[derive(Debug, Clone)]
pub struct StatementOutcome {
    /// `ok`, `error`, `denied` or `suspended`.
    pub status: Cow<'static, str>,
    /// The command tag (`INSERT 0 3`); the row count comes from it.
    pub command: CommandTag,
    /// SQLSTATE of the error.
    pub sqlstate: Option<String>,
    /// The error message.
    pub error: Option<String>,
    /// Microseconds from the request to its completion.
    pub duration_us: u64,
}

impl StatementOutcome {
    /// The owned record.
    pub fn record(&self) -> OutcomeRecord {
        let command = self.command.as_str();
        OutcomeRecord {
            command: command.map(str::to_owned),
            duration_us: self.duration_us,
            error: self.error.clone(),
            rows: command.and_then(rows_from_tag),
            sqlstate: self.sqlstate.clone(),
            status: self.status.clone(),
        }
    }

    fn view(&self) -> OutcomeView<'_> {
        let command = self.command.as_str();
        OutcomeView {
            command,
            duration_us: self.duration_us,
            error: self.error.as_deref(),
            rows: command.and_then(rows_from_tag),
            sqlstate: self.sqlstate.as_deref(),
            status: &self.status,
        }
    }
}

/// Bytes of a command tag kept inline.
const TAG_INLINE: usize = 30;

/// A command tag. Tags are short (`SELECT 1`, `INSERT 0 1`), so one is kept inline and
/// a statement event allocates nothing for it.
#[derive(Debug, Clone)]
pub enum CommandTag {
    /// No tag (an error, a denial, a suspended portal).
    None,
    /// A tag of up to `TAG_INLINE` (30) bytes of UTF-8.
    Inline {
        /// Its length.
        len: u8,
        /// Its bytes, then zeros.
        bytes: [u8; TAG_INLINE],
    },
    /// A longer tag, or one that is not UTF-8 (made valid, lossily).
    Heap(String),
}

impl CommandTag {
    /// The tag of a CommandComplete's text.
    pub fn new(tag: &[u8]) -> Self {
        if tag.len() <= TAG_INLINE && std::str::from_utf8(tag).is_ok() {
            let mut bytes = [0u8; TAG_INLINE];
            bytes[..tag.len()].copy_from_slice(tag);
            return CommandTag::Inline {
                len: tag.len() as u8,
                bytes,
            };
        }
        CommandTag::Heap(String::from_utf8_lossy(tag).into_owned())
    }

    /// The tag, if any.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            CommandTag::None => None,
            CommandTag::Inline { len, bytes } => {
                Some(std::str::from_utf8(&bytes[..usize::from(*len)]).expect("checked UTF-8"))
            }
            CommandTag::Heap(s) => Some(s),
        }
    }
}

fn is_empty<T>(s: &&[T]) -> bool {
    s.is_empty()
}

/// [`AuditEvent`]'s fields a statement event has, in the same (byte) order.
#[derive(Serialize)]
struct EventView<'a> {
    decision: &'a DecisionRecord,
    kind: EventKind,
    #[serde(skip_serializing_if = "is_empty")]
    masked: &'a [MaskedColumn],
    outcome: OutcomeView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policies: Option<&'a [PolicyRef]>,
    prev: &'a str,
    seq: u64,
    session: &'a SessionRecord,
    statement: StatementView<'a>,
    time: &'a str,
}

/// [`OutcomeRecord`], borrowed.
#[derive(Serialize)]
struct OutcomeView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
    duration_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sqlstate: Option<&'a str>,
    status: &'a str,
}

/// [`StatementRecord`], borrowed from the analysis.
#[derive(Serialize)]
struct StatementView<'a> {
    fingerprint: &'a str,
    index: usize,
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    params: Option<&'a [Option<String>]>,
    protocol: &'static str,
    #[serde(skip_serializing_if = "Tables::is_empty")]
    tables: Tables<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    text_truncated: bool,
    writes: bool,
}

/// The tables of a statement, serialised as [`TableAccess`] records.
struct Tables<'a>(&'a [TableRef]);

impl Tables<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Tables<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|t| TableView {
            access: t.access.as_str(),
            name: QualifiedName(t),
        }))
    }
}

/// [`TableAccess`], borrowed.
#[derive(Serialize)]
struct TableView<'a> {
    access: &'static str,
    name: QualifiedName<'a>,
}

/// [`TableRef::qualified_name`], written without building the string.
struct QualifiedName<'a>(&'a TableRef);

impl Serialize for QualifiedName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.schema {
            Some(schema) => s.collect_str(&format_args!("{schema}.{}", self.0.name)),
            None => s.serialize_str(&self.0.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{seal, seal_serialized};
    use crate::audit::event::ApprovalRecord;

    fn event(sql: &str, index: usize, text: TextSource) -> StatementEvent {
        StatementEvent {
            session: Arc::new(SessionRecord {
                id: 7,
                user: "alice".into(),
                groups: vec!["analysts".into()],
                principal: "person".into(),
                auth: "scram-sha-256".into(),
                acting_for: None,
                acting_for_groups: Vec::new(),
                role: None,
                client_addr: "127.0.0.1:5000".into(),
                application: "test".into(),
                database: "demo".into(),
            }),
            policies: None,
            analysis: Arc::new(portcullis_sql::analyze_uncached(sql)),
            index,
            protocol: "simple",
            text,
            params: None,
            decision: DecisionRecord::allow(),
            outcome: StatementOutcome {
                status: Cow::Borrowed("ok"),
                command: CommandTag::new(b"SELECT 1"),
                sqlstate: None,
                error: None,
                duration_us: 5,
            },
            masked: Vec::new(),
        }
    }

    /// The writer's line of `s` is the owned event's, and so is its hash.
    fn check(s: &StatementEvent) {
        let prev = "ab".repeat(32);
        let time = "2026-12-01T00:00:00.000000Z";
        let mut owned = s.event();
        owned.seq = 3;
        owned.prev = prev.clone();
        owned.time = time.into();
        let want = seal(&mut owned);
        let mut line = Vec::new();
        let hash = seal_serialized(&s.view(3, &prev, time), &mut Vec::new(), &mut line);
        assert_eq!(String::from_utf8(line).unwrap(), want);
        assert_eq!(std::str::from_utf8(&hash).unwrap(), owned.hash);
    }

    #[test]
    fn a_queued_statement_event_seals_to_the_line_of_its_owned_event() {
        // Tables with and without a schema, a name that needs escaping, several
        // statements, an index past the last one (no summary), every text source.
        let sqls = [
            r#"select a from public.t join u on true where t.x = 1"#,
            r#"insert into s."we""ird\x" values (1); select 2 from pg_catalog.pg_class"#,
            "update t set a = 1 where b = 'é'",
        ];
        for sql in sqls {
            for index in 0..3 {
                for text in [
                    TextSource::Omitted,
                    TextSource::Sql(Arc::from(sql)),
                    TextSource::Fingerprint,
                ] {
                    check(&event(sql, index, text));
                }
            }
        }
        // Every optional field set.
        let mut e = event(sqls[1], 0, TextSource::Fingerprint);
        e.protocol = "extended";
        e.params = Some(Arc::from(vec![Some("x\"y".to_owned()), None]));
        e.policies = Some(Arc::from(vec![PolicyRef {
            id: "guardrails".into(),
            name: "guardrails".into(),
            version: "0.1.0".into(),
            sha256: "cd".repeat(32),
            mode: "enforce".into(),
        }]));
        e.masked = vec![MaskedColumn {
            column: "customers.email".into(),
            mask: "email".into(),
            policy: "pii-mask".into(),
        }];
        e.decision = DecisionRecord {
            verdict: Cow::Borrowed("deny"),
            policy: Some("approvals".into()),
            message: Some("needs a DBA".into()),
            sqlstate: Some("42501".into()),
            approval: Some(ApprovalRecord {
                id: "r-1".into(),
                status: "rejected".into(),
                reviewers: vec!["bob".into()],
            }),
            verdicts: vec![crate::pipeline::PolicyVerdictRecord {
                policy: "guardrails".into(),
                verdict: "allow".into(),
                mode: Some("monitor".into()),
                micros: 3,
            }],
        };
        e.outcome = StatementOutcome {
            status: Cow::Borrowed("error"),
            command: CommandTag::None,
            sqlstate: Some("23505".into()),
            error: Some("duplicate key".into()),
            duration_us: 12,
        };
        check(&e);
        // Tags: inline, long, not UTF-8, without a row count.
        for tag in [
            &b"INSERT 0 3"[..],
            b"UPDATE 123456789012345678901234567890",
            b"SELECT \xff 1",
            b"CREATE TABLE",
        ] {
            e.outcome.command = CommandTag::new(tag);
            check(&e);
        }
        // Text over the cap is cut at a character boundary, the same way.
        let long = format!("select 'x{}'", "é".repeat(MAX_TEXT_BYTES / 2));
        let e = event(&long, 0, TextSource::Sql(Arc::from(long.as_str())));
        assert!(e.record().text_truncated);
        check(&e);
        let columns = format!("select {}", vec![r#""é""#; 15_000].join(", "));
        let e = event(&columns, 0, TextSource::Fingerprint);
        assert!(e.record().text_truncated);
        check(&e);
    }
}
