//! Byte-level tests of the relay: client bytes in, upstream bytes out, and back.

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use portcullis_sql::{Analyzer, StatementKind};
use portcullis_wire::backend::{self, ErrorFields, Severity, TransactionStatus};
use portcullis_wire::frontend::{self, Bind, Execute, Parse, Query};
use portcullis_wire::{Frame, FrameDecoder, Limits};

use super::{Relay, RelayDeps, RelayError};
use crate::config::PrincipalKind;
use crate::identity::{AuthMethod, Identity};
use crate::metrics::Metrics;
use crate::pipeline::{Decision, Denial, Gate, NoMasking, SessionInfo, StatementContext};

/// Denies DROP and anything touching `secrets`; holds anything touching `held`.
struct TestGate;

impl Gate for TestGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        let s = ctx.statement;
        if s.tables.iter().any(|t| t.name == "held") {
            return Decision::Hold(crate::pipeline::ApprovalNeed {
                reason: "held for review".into(),
                approvers: vec!["group:dba".into()],
                policy: "test".into(),
                mode: None,
            });
        }
        if s.kind == StatementKind::Drop || s.tables.iter().any(|t| t.name == "secrets") {
            return Decision::Deny(Denial {
                sqlstate: "42501".into(),
                message: "not allowed".into(),
                policy: "test".into(),
            });
        }
        Decision::Allow
    }

    fn decide_function_call(&self, _: &SessionInfo, _: u32) -> Decision {
        Decision::Allow
    }
}

fn relay() -> Relay {
    relay_with(Limits::default())
}

fn relay_with(limits: Limits) -> Relay {
    let session = Arc::new(SessionInfo {
        session_id: 1,
        identity: Arc::new(Identity {
            name: "alice".into(),
            kind: PrincipalKind::Person,
            groups: vec!["analysts".into()],
            auth_method: AuthMethod::ScramSha256,
            role: None,
            acting_for: None,
            acting_for_groups: Vec::new(),
            expires_at: None,
        }),
        database: "demo".into(),
        client_addr: "127.0.0.1:1".parse().unwrap(),
        application_name: "test".into(),
    });
    let deps = RelayDeps {
        analyzer: Arc::new(Analyzer::new(100)),
        gate: Arc::new(TestGate),
        filter: Arc::new(NoMasking),
        metrics: Metrics::new(),
        limits,
        audit: None,
        approvals: true,
    };
    Relay::new(session, deps)
}

fn audited_relay(dir: &std::path::Path) -> (Relay, crate::audit::AuditLog) {
    let mut cfg = crate::config::AuditConfig::new(dir);
    cfg.statement_text = crate::config::StatementText::Full;
    let log = crate::audit::AuditLog::open(&cfg, None).unwrap();
    let mut r = relay();
    r.deps.audit = Some(Arc::new(crate::audit::AuditContext::new(
        log.clone(),
        &cfg,
        Vec::new(),
    )));
    r.audit_session = Some(Arc::new(crate::audit::SessionRecord::from_info(&r.session)));
    (r, log)
}

#[test]
fn a_write_holds_its_command_complete_and_a_read_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, log) = audited_relay(dir.path());
    let mut q = BytesMut::new();
    Query::encode("insert into t values (1)", &mut q);
    client(&mut r, q);
    assert!(r.take_audit().events.is_empty());
    let mut resp = BytesMut::new();
    backend::command_complete(&mut resp, "INSERT 0 1");
    ready(&mut resp, TransactionStatus::Idle);
    let mut to_client = BytesMut::from(&b"earlier"[..]);
    r.server_input(&mut resp, &mut to_client, Instant::now())
        .unwrap();
    let out = r.take_audit();
    assert_eq!(out.hold_from, Some(7), "hold from the CommandComplete on");
    assert_eq!(out.events.len(), 1);
    let e = &out.events[0];
    let s = e.statement.as_ref().unwrap();
    assert_eq!(s.kind, "insert");
    assert!(s.writes);
    assert_eq!(s.text.as_deref(), Some("insert into t values (1)"));
    assert_eq!(e.outcome.as_ref().unwrap().rows, Some(1));
    assert_eq!(e.session.as_ref().unwrap().user, "alice");

    let mut q = BytesMut::new();
    Query::encode("select 1", &mut q);
    client(&mut r, q);
    let mut resp = BytesMut::new();
    backend::data_row(&mut resp, &[Some(b"1")]);
    backend::command_complete(&mut resp, "SELECT 1");
    ready(&mut resp, TransactionStatus::Idle);
    server(&mut r, resp);
    let out = r.take_audit();
    assert_eq!(out.hold_from, None);
    assert_eq!(out.events[0].outcome.as_ref().unwrap().rows, Some(1));
    log.close();
}

/// Sends `sql`, answers it with `tag` and a ReadyForQuery in `status`, and returns
/// where the relay holds client output from (if it does).
fn round_trip(r: &mut Relay, sql: &str, tag: &str, status: TransactionStatus) -> Option<usize> {
    round_trip_output(r, sql, &[tag], status).hold_from
}

/// Sends `sql`, answers it with `tags` and a ReadyForQuery in `status`, and returns
/// the audit output.
fn round_trip_output(
    r: &mut Relay,
    sql: &str,
    tags: &[&str],
    status: TransactionStatus,
) -> super::AuditOutput {
    let mut q = BytesMut::new();
    Query::encode(sql, &mut q);
    client(r, q);
    let mut resp = BytesMut::new();
    for tag in tags {
        backend::command_complete(&mut resp, tag);
    }
    ready(&mut resp, status);
    server(r, resp);
    r.take_audit()
}

#[test]
fn a_commit_after_writes_holds_like_the_writes_and_a_read_only_one_does_not() {
    use TransactionStatus::{Idle, InTransaction};
    let dir = tempfile::tempdir().unwrap();
    let (mut r, log) = audited_relay(dir.path());
    assert_eq!(round_trip(&mut r, "BEGIN", "BEGIN", InTransaction), None);
    assert!(round_trip(&mut r, "update t set a = 1", "UPDATE 1", InTransaction).is_some());
    assert_eq!(
        round_trip(&mut r, "select 1", "SELECT 1", InTransaction),
        None
    );
    assert!(
        round_trip(&mut r, "END", "COMMIT", Idle).is_some(),
        "the commit of a write waits for its event"
    );
    assert_eq!(round_trip(&mut r, "BEGIN", "BEGIN", InTransaction), None);
    assert_eq!(
        round_trip(&mut r, "select 1", "SELECT 1", InTransaction),
        None
    );
    assert_eq!(round_trip(&mut r, "COMMIT", "COMMIT", Idle), None);
    // An autocommit write does not make a later read-only transaction's commit wait.
    assert!(round_trip(&mut r, "delete from t where a = 1", "DELETE 1", Idle).is_some());
    assert_eq!(round_trip(&mut r, "BEGIN", "BEGIN", InTransaction), None);
    assert_eq!(round_trip(&mut r, "COMMIT", "COMMIT", Idle), None);
    log.close();
}

/// [`round_trip_output`]: how far the held events must get (if the relay holds
/// client output).
fn round_trip_until(
    r: &mut Relay,
    sql: &str,
    tags: &[&str],
    status: TransactionStatus,
) -> Option<crate::audit::Until> {
    let out = round_trip_output(r, sql, tags, status);
    out.hold_from.map(|_| out.until)
}

#[test]
fn writes_in_a_block_wait_to_be_written_and_its_commit_to_be_synced() {
    use crate::audit::Until::{Synced, Written};
    use TransactionStatus::{Idle, InTransaction};
    let dir = tempfile::tempdir().unwrap();
    let (mut r, log) = audited_relay(dir.path());
    let steps: &[(
        &str,
        &[&str],
        TransactionStatus,
        Option<crate::audit::Until>,
    )] = &[
        // An autocommit write is synced before its result goes out.
        ("update t set a = 1", &["UPDATE 1"], Idle, Some(Synced)),
        ("BEGIN", &["BEGIN"], InTransaction, None),
        (
            "update t set a = 2",
            &["UPDATE 1"],
            InTransaction,
            Some(Written),
        ),
        (
            "insert into t values (3)",
            &["INSERT 0 1"],
            InTransaction,
            Some(Written),
        ),
        // The commit waits for the sync of the block's writes.
        ("COMMIT", &["COMMIT"], Idle, Some(Synced)),
        // A block ended inside one query string: what follows runs outside it.
        ("BEGIN", &["BEGIN"], InTransaction, None),
        (
            "COMMIT; update t set a = 4",
            &["COMMIT", "UPDATE 1"],
            Idle,
            Some(Synced),
        ),
        ("BEGIN", &["BEGIN"], InTransaction, None),
        (
            "ROLLBACK; update t set a = 5",
            &["ROLLBACK", "UPDATE 1"],
            Idle,
            Some(Synced),
        ),
        // PREPARE TRANSACTION makes the block durable in PostgreSQL: synced.
        ("BEGIN", &["BEGIN"], InTransaction, None),
        ("delete from t", &["DELETE 3"], InTransaction, Some(Written)),
        (
            "PREPARE TRANSACTION 'x'",
            &["PREPARE TRANSACTION"],
            Idle,
            Some(Synced),
        ),
    ];
    for (sql, tags, status, until) in steps {
        assert_eq!(
            round_trip_until(&mut r, sql, tags, *status),
            *until,
            "{sql}"
        );
    }
    log.close();
}

#[test]
fn denials_and_server_errors_are_recorded_with_params() {
    let dir = tempfile::tempdir().unwrap();
    let (mut r, log) = audited_relay(dir.path());
    let mut q = BytesMut::new();
    Query::encode("drop table customers", &mut q);
    client(&mut r, q);
    let out = r.take_audit();
    let d = out.events[0].decision.as_ref().unwrap();
    assert_eq!(d.verdict, "deny");
    assert_eq!(d.policy.as_deref(), Some("test"));
    let mut resp = server_error("42601", "syntax error");
    ready(&mut resp, TransactionStatus::Idle);
    server(&mut r, resp);
    assert!(
        r.take_audit().events.is_empty(),
        "the poison's error is not a statement"
    );

    let mut c = BytesMut::new();
    Parse::encode("", "update t set a = $1", &[], &mut c);
    Bind::encode("", "", &[Some(b"42")], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    client(&mut r, c);
    let mut s = BytesMut::new();
    portcullis_wire::put_message(&mut s, b'1', |_| {});
    portcullis_wire::put_message(&mut s, b'2', |_| {});
    s.extend_from_slice(&server_error("23505", "duplicate key"));
    ready(&mut s, TransactionStatus::Idle);
    server(&mut r, s);
    let out = r.take_audit();
    assert_eq!(out.hold_from, None, "a failed statement changed nothing");
    let e = &out.events[0];
    assert_eq!(
        e.outcome.as_ref().unwrap().sqlstate.as_deref(),
        Some("23505")
    );
    let st = e.statement.as_ref().unwrap();
    assert_eq!(st.protocol, "extended");
    assert_eq!(st.params.as_deref(), Some(&[Some("42".to_owned())][..]));
    log.close();
}

fn frames(mut bytes: BytesMut) -> Vec<Frame> {
    let d = FrameDecoder::new(Limits::default());
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut bytes).unwrap() {
        out.push(f);
    }
    assert!(bytes.is_empty(), "trailing bytes");
    out
}

fn tags(bytes: &BytesMut) -> String {
    frames(bytes.clone())
        .iter()
        .map(|f| f.tag() as char)
        .collect()
}

fn client(r: &mut Relay, input: BytesMut) -> BytesMut {
    let mut input = input;
    let mut out = BytesMut::new();
    r.client_input(&mut input, &mut out, Instant::now())
        .unwrap();
    assert!(input.is_empty());
    out
}

fn server(r: &mut Relay, input: BytesMut) -> BytesMut {
    let mut input = input;
    let mut out = BytesMut::new();
    r.server_input(&mut input, &mut out, Instant::now())
        .unwrap();
    out
}

fn server_error(code: &str, msg: &str) -> BytesMut {
    let mut b = BytesMut::new();
    ErrorFields::new(Severity::Error, code, msg).encode_error(&mut b);
    b
}

fn ready(b: &mut BytesMut, s: TransactionStatus) {
    backend::ready_for_query(b, s);
}

#[test]
fn allowed_simple_query_is_forwarded_byte_for_byte() {
    let mut r = relay();
    let mut q = BytesMut::new();
    Query::encode("select 1", &mut q);
    assert_eq!(client(&mut r, q.clone()), q);
    let mut resp = BytesMut::new();
    backend::data_row(&mut resp, &[Some(b"1")]);
    backend::command_complete(&mut resp, "SELECT 1");
    ready(&mut resp, TransactionStatus::Idle);
    assert_eq!(server(&mut r, resp.clone()), resp);
    assert!(r.is_idle());
}

#[test]
fn denied_simple_query_is_poisoned_and_the_error_replaced() {
    let mut r = relay();
    let mut q = BytesMut::new();
    Query::encode("select 1; DROP TABLE customers", &mut q);
    let up = client(&mut r, q);
    let sent = frames(up);
    assert_eq!(sent.len(), 1);
    let sql = Query::decode(sent[0].body()).unwrap().sql.to_owned();
    assert!(sql.starts_with("portcullis_denied_"), "{sql}");
    assert!(!sql.to_lowercase().contains("drop"));

    let mut resp = server_error("42601", &format!("syntax error at or near \"{sql}\""));
    ready(&mut resp, TransactionStatus::Idle);
    let to_client = server(&mut r, resp);
    let got = frames(to_client);
    assert_eq!(
        got.iter().map(|f| f.tag() as char).collect::<String>(),
        "EZ"
    );
    let e = ErrorFields::decode(b'E', got[0].body()).unwrap();
    assert_eq!(e.code(), Some("42501"));
    assert_eq!(e.message(), Some("not allowed"));
    assert!(e.get(b'D').unwrap().contains("\"test\""));
}

#[test]
fn denial_inside_a_pipeline_stops_at_that_point_and_resumes_after_sync() {
    let mut r = relay();
    let mut c = BytesMut::new();
    Parse::encode("", "select $1::int", &[], &mut c);
    Bind::encode("", "", &[Some(b"7")], &mut c);
    Execute::encode("", 0, &mut c);
    Parse::encode("s2", "select * from secrets", &[], &mut c);
    Bind::encode("", "s2", &[], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    let up = client(&mut r, c);
    // The denied Parse became a Bind of a statement that cannot exist.
    assert_eq!(tags(&up), "PBEBBES");
    let poison = &frames(up)[3];
    assert!(
        Bind::decode(poison.body())
            .unwrap()
            .statement
            .starts_with("portcullis_denied_")
    );

    let mut s = BytesMut::new();
    portcullis_wire::put_message(&mut s, b'1', |_| {});
    portcullis_wire::put_message(&mut s, b'2', |_| {});
    backend::data_row(&mut s, &[Some(b"7")]);
    backend::command_complete(&mut s, "SELECT 1");
    s.extend_from_slice(&server_error("26000", "prepared statement does not exist"));
    ready(&mut s, TransactionStatus::Idle);
    let to_client = server(&mut r, s);
    assert_eq!(tags(&to_client), "12DCEZ");
    let e = frames(to_client)[4].clone();
    assert_eq!(
        ErrorFields::decode(b'E', e.body()).unwrap().code(),
        Some("42501")
    );
    assert!(r.is_idle());
}

#[test]
fn an_earlier_server_error_swallows_the_poison_like_postgres_would() {
    let mut r = relay();
    let mut c = BytesMut::new();
    Parse::encode("", "select 1/0", &[], &mut c);
    Bind::encode("", "", &[], &mut c);
    Execute::encode("", 0, &mut c);
    Parse::encode("", "drop table customers", &[], &mut c);
    frontend::sync(&mut c);
    client(&mut r, c);
    let mut s = BytesMut::new();
    portcullis_wire::put_message(&mut s, b'1', |_| {});
    portcullis_wire::put_message(&mut s, b'2', |_| {});
    s.extend_from_slice(&server_error("22012", "division by zero"));
    ready(&mut s, TransactionStatus::Idle);
    let to_client = server(&mut r, s);
    assert_eq!(tags(&to_client), "12EZ");
    assert_eq!(
        ErrorFields::decode(b'E', frames(to_client)[2].body())
            .unwrap()
            .code(),
        Some("22012")
    );
    assert!(r.is_idle());
}

#[test]
fn statements_split_across_reads_are_reassembled() {
    let mut r = relay();
    let mut q = BytesMut::new();
    Query::encode("select 42", &mut q);
    let mut out = BytesMut::new();
    for chunk in q.chunks(3) {
        let mut input = BytesMut::from(chunk);
        let mut pending = BytesMut::new();
        std::mem::swap(&mut pending, &mut out);
        pending.extend_from_slice(&input.split());
        let mut to_server = BytesMut::new();
        r.client_input(&mut pending, &mut to_server, Instant::now())
            .unwrap();
        out = pending;
        if !to_server.is_empty() {
            assert_eq!(to_server, q);
        }
    }
}

#[test]
fn oversized_and_unknown_client_messages_are_errors() {
    let mut r = relay_with(Limits {
        max_message: 64,
        max_startup: 64,
    });
    let mut q = BytesMut::new();
    Query::encode(&"x".repeat(100), &mut q);
    let mut out = BytesMut::new();
    let err = r
        .client_input(&mut q.split_to(5), &mut out, Instant::now())
        .unwrap_err();
    assert!(matches!(
        err,
        RelayError::Client(portcullis_wire::WireError::TooLarge { .. })
    ));

    let mut r = relay();
    let mut junk = BytesMut::new();
    portcullis_wire::put_message(&mut junk, b'?', |_| {});
    assert!(r.client_input(&mut junk, &mut out, Instant::now()).is_err());
}

#[test]
fn random_frames_from_either_side_never_panic() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let client_tags = b"QPBDECSHFdcfXp?";
    let server_tags = b"DTnCIs123tEZGHWVNAS?";
    for round in 0..2_000 {
        let mut r = relay();
        let mut to_server = BytesMut::new();
        let mut to_client = BytesMut::new();
        for _ in 0..8 {
            let tags: &[u8] = if next() % 2 == 0 {
                client_tags
            } else {
                server_tags
            };
            let tag = tags[(next() as usize) % tags.len()];
            let len = (next() % 24) as usize;
            let body: Vec<u8> = (0..len).map(|_| next() as u8 % 4).collect();
            let mut msg = BytesMut::new();
            portcullis_wire::put_message(&mut msg, tag, |b| b.extend_from_slice(&body));
            let result = if std::ptr::eq(tags, client_tags.as_slice()) {
                r.client_input(&mut msg, &mut to_server, Instant::now())
            } else {
                r.server_input(&mut msg, &mut to_client, Instant::now())
            };
            if result.is_err() {
                break;
            }
        }
        let _ = round;
    }
}

#[test]
fn syncs_sent_during_copy_in_expect_no_ready_for_query() {
    // libpq / tokio-postgres: Parse/Bind/Execute/Sync, then CopyData, CopyDone, Sync.
    // PostgreSQL ignores the first Sync (it arrives in COPY IN mode) and answers both
    // with one ReadyForQuery; the next request must then be matched to its own answer.
    let mut r = relay();
    let mut c = BytesMut::new();
    Parse::encode("", "copy t from stdin", &[], &mut c);
    Bind::encode("", "", &[], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    client(&mut r, c);
    let mut s = BytesMut::new();
    portcullis_wire::put_message(&mut s, b'1', |_| {});
    portcullis_wire::put_message(&mut s, b'2', |_| {});
    portcullis_wire::put_message(&mut s, b'G', |b| b.extend_from_slice(&[0, 0, 0]));
    assert_eq!(tags(&server(&mut r, s)), "12G");

    let mut c = BytesMut::new();
    portcullis_wire::put_message(&mut c, b'd', |b| b.extend_from_slice(b"1\n"));
    portcullis_wire::put_message(&mut c, b'c', |_| {});
    frontend::sync(&mut c);
    client(&mut r, c);
    let mut s = BytesMut::new();
    backend::command_complete(&mut s, "COPY 1");
    ready(&mut s, TransactionStatus::Idle);
    assert_eq!(tags(&server(&mut r, s)), "CZ");
    assert!(r.is_idle(), "no second ReadyForQuery is owed");

    // The next request is denied: the client sees the denial, not the poison's error.
    let mut q = BytesMut::new();
    Query::encode("select * from secrets", &mut q);
    client(&mut r, q);
    let mut s = server_error("42601", "syntax error at or near poison");
    ready(&mut s, TransactionStatus::Idle);
    let to_client = server(&mut r, s);
    let e = frames(to_client)[0].clone();
    assert_eq!(
        ErrorFields::decode(b'E', e.body()).unwrap().code(),
        Some("42501")
    );
    assert!(r.is_idle());
}

/// A filter whose rewriter fails on the second row of every result set (after holding
/// the first one back), or refuses results of statements marked `refuse`.
struct FailingFilter;

struct FailOnSecond {
    seen: usize,
    held: Vec<Vec<u8>>,
}

impl crate::pipeline::RowRewriter for FailOnSecond {
    fn rewrite(&mut self, body: &[u8], _out: &mut BytesMut) -> anyhow::Result<()> {
        self.seen += 1;
        if self.seen == 2 {
            anyhow::bail!("second row");
        }
        self.held.push(body.to_vec());
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        for _ in self.held.drain(..) {
            backend::data_row(out, &[Some(b"masked")]);
        }
        Ok(())
    }
}

struct RefuseAll;

impl crate::pipeline::RowRewriter for RefuseAll {
    fn rewrite(&mut self, _: &[u8], _: &mut BytesMut) -> anyhow::Result<()> {
        unreachable!("refused before any row")
    }

    fn refusal(&self) -> Option<crate::pipeline::Refusal> {
        Some(crate::pipeline::Refusal {
            sqlstate: "42501".into(),
            message: "refused by test".into(),
            policy: "test-mask".into(),
        })
    }
}

impl crate::pipeline::ResultFilter for FailingFilter {
    fn begin(
        &self,
        ctx: &crate::pipeline::ResultContext<'_>,
    ) -> Option<Box<dyn crate::pipeline::RowRewriter>> {
        if ctx
            .statement
            .is_some_and(|s| s.fingerprint.contains("refuse"))
        {
            return Some(Box::new(RefuseAll));
        }
        Some(Box::new(FailOnSecond {
            seen: 0,
            held: Vec::new(),
        }))
    }
}

fn masking_relay() -> Relay {
    let mut r = relay();
    r.deps.filter = Arc::new(FailingFilter);
    r.track_results = true;
    r
}

fn one_column_result(rows: usize) -> BytesMut {
    let mut b = BytesMut::new();
    one_column_rows(&mut b, rows);
    backend::command_complete(&mut b, &format!("SELECT {rows}"));
    b
}

/// A RowDescription of one text column of unknown origin, then `rows` DataRows.
fn one_column_rows(b: &mut BytesMut, rows: usize) {
    backend::row_description(
        b,
        &[backend::FieldDescription {
            name: "x".into(),
            table_oid: 0,
            column_attr: 0,
            type_oid: 25,
            type_len: -1,
            type_mod: -1,
            format: 0,
        }],
    );
    for _ in 0..rows {
        backend::data_row(b, &[Some(b"plain")]);
    }
}

#[test]
fn held_rows_are_flushed_before_command_complete() {
    let mut r = masking_relay();
    let mut q = BytesMut::new();
    Query::encode("select x from t", &mut q);
    client(&mut r, q);
    let mut resp = one_column_result(1);
    ready(&mut resp, TransactionStatus::Idle);
    let out = server(&mut r, resp);
    assert_eq!(tags(&out), "TDCZ");
    assert!(!out.windows(5).any(|w| w == b"plain"));
}

#[test]
fn a_failing_rewriter_refuses_the_result_and_skips_to_ready() {
    let mut r = masking_relay();
    let mut q = BytesMut::new();
    Query::encode("select x from t; select x from t", &mut q);
    client(&mut r, q);
    // Two statements: the first fails on its second row; the second's result and the
    // server's CommandCompletes are dropped; ReadyForQuery goes through.
    let mut resp = one_column_result(3);
    resp.extend_from_slice(&one_column_result(2));
    ready(&mut resp, TransactionStatus::Idle);
    let out = server(&mut r, resp);
    assert_eq!(tags(&out), "TEZ");
    assert!(!out.windows(5).any(|w| w == b"plain"));
    let f = frames(out);
    let e = ErrorFields::decode(f[1].tag(), f[1].body()).unwrap();
    assert_eq!(e.code(), Some("42501"));
    // The session is in step: the next query's rows are rewritten again.
    let mut q = BytesMut::new();
    Query::encode("select x from t", &mut q);
    client(&mut r, q);
    let mut resp = one_column_result(1);
    ready(&mut resp, TransactionStatus::Idle);
    assert_eq!(tags(&server(&mut r, resp)), "TDCZ");
    assert!(r.is_idle());
}

#[test]
fn a_refused_result_in_the_extended_protocol_errors_until_sync() {
    let mut r = masking_relay();
    let mut m = BytesMut::new();
    Parse::encode("", "select x from refuse", &[], &mut m);
    Bind::encode("", "", &[], &mut m);
    frontend::Describe::encode(frontend::Target::Portal, "", &mut m);
    Execute::encode("", 0, &mut m);
    Parse::encode("", "select 1", &[], &mut m);
    Bind::encode("", "", &[], &mut m);
    Execute::encode("", 0, &mut m);
    frontend::sync(&mut m);
    client(&mut r, m);
    let mut resp = BytesMut::new();
    portcullis_wire::put_message(&mut resp, b'1', |_| {});
    portcullis_wire::put_message(&mut resp, b'2', |_| {});
    resp.extend_from_slice(&one_column_result(2));
    portcullis_wire::put_message(&mut resp, b'1', |_| {});
    portcullis_wire::put_message(&mut resp, b'2', |_| {});
    resp.extend_from_slice(&one_column_result(1));
    ready(&mut resp, TransactionStatus::Idle);
    let out = server(&mut r, resp);
    // ParseComplete, BindComplete, RowDescription (the Describe's), then the refusal
    // instead of rows; nothing more until ReadyForQuery.
    assert_eq!(tags(&out), "12TEZ");
    assert!(r.is_idle());
}

fn refused() -> super::HoldOutcome {
    super::HoldOutcome::Refuse(
        Denial {
            sqlstate: "42501".into(),
            message: "request apr-1 was rejected".into(),
            policy: "test".into(),
        },
        crate::audit::ApprovalRecord {
            id: "apr-1".into(),
            status: "rejected".into(),
            reviewers: vec!["bob".into()],
        },
    )
}

fn approved() -> super::HoldOutcome {
    super::HoldOutcome::Run(crate::audit::ApprovalRecord {
        id: "apr-1".into(),
        status: "approved".into(),
        reviewers: vec!["bob".into()],
    })
}

#[test]
fn a_held_query_parks_everything_after_it_until_resumed() {
    let mut r = relay();
    let mut c = BytesMut::new();
    Query::encode("update held set a = 1", &mut c);
    Query::encode("select 2", &mut c);
    let mut to_server = BytesMut::new();
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    assert!(
        to_server.is_empty(),
        "nothing reaches the server while held"
    );
    assert!(r.holding());
    assert!(!c.is_empty(), "later messages wait unread");
    let ticket = r.take_hold().expect("a ticket");
    assert_eq!(ticket.need.reason, "held for review");
    assert_eq!(&*ticket.sql, "update held set a = 1");
    assert!(r.take_hold().is_none(), "the ticket is handed out once");
    // More input changes nothing while held.
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    assert!(to_server.is_empty());

    r.resume(approved(), &mut to_server, Instant::now())
        .unwrap();
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    let mut expected = BytesMut::new();
    Query::encode("update held set a = 1", &mut expected);
    Query::encode("select 2", &mut expected);
    assert_eq!(to_server, expected, "forwarded in order, byte for byte");
    assert!(!r.holding());
}

#[test]
fn a_refused_hold_gets_the_denial_in_place_of_the_poison_error() {
    let mut r = relay();
    let mut c = BytesMut::new();
    Query::encode("delete from held", &mut c);
    let mut to_server = BytesMut::new();
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    r.take_hold().unwrap();
    r.resume(refused(), &mut to_server, Instant::now()).unwrap();
    assert!(
        frames(to_server.clone())[0]
            .body()
            .starts_with(b"portcullis_denied_")
    );
    let mut resp = server_error("26000", "prepared statement does not exist");
    ready(&mut resp, TransactionStatus::Idle);
    let out = server(&mut r, resp);
    let f = frames(out);
    let e = ErrorFields::decode(f[0].tag(), f[0].body()).unwrap();
    assert_eq!(e.code(), Some("42501"));
    assert!(e.message().unwrap().contains("apr-1"));
    assert_eq!(f[1].tag(), b'Z');
}

#[test]
fn an_extended_statement_is_held_at_its_bind_with_the_parameters() {
    let mut r = relay();
    let mut c = BytesMut::new();
    Parse::encode("s1", "update held set a = $1", &[], &mut c);
    Bind::encode("", "s1", &[Some(b"7")], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    let mut to_server = BytesMut::new();
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    assert_eq!(tags(&to_server), "P", "the Parse runs nothing and goes on");
    let ticket = r.take_hold().unwrap();
    assert_eq!(ticket.params, vec![Some("7".to_owned())]);
    r.resume(refused(), &mut to_server, Instant::now()).unwrap();
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    assert_eq!(tags(&to_server), "PBES");
    // ParseComplete, then the poisoned Bind's error becomes the denial.
    let mut resp = BytesMut::new();
    portcullis_wire::put_message(&mut resp, b'1', |_| {});
    resp.extend_from_slice(&server_error("26000", "prepared statement does not exist"));
    ready(&mut resp, TransactionStatus::Idle);
    let f = frames(server(&mut r, resp));
    assert_eq!(f[0].tag(), b'1');
    let e = ErrorFields::decode(f[1].tag(), f[1].body()).unwrap();
    assert_eq!(e.code(), Some("42501"));
    assert_eq!(f[2].tag(), b'Z');

    // Closing the statement forgets that it needs approval; a new Parse decides anew.
    let mut c = BytesMut::new();
    Parse::encode("s1", "select 1", &[], &mut c);
    Bind::encode("", "s1", &[], &mut c);
    frontend::sync(&mut c);
    let mut to_server = BytesMut::new();
    r.client_input(&mut c, &mut to_server, Instant::now())
        .unwrap();
    assert_eq!(tags(&to_server), "PBS");
    assert!(!r.holding());
}

#[test]
fn show_portcullis_identity_is_answered_from_the_gateway_in_both_protocols() {
    let mut r = relay();
    // Pipelined with another query: responses stay in order.
    let mut c = BytesMut::new();
    Query::encode("SHOW portcullis.identity;", &mut c);
    Query::encode("select 1", &mut c);
    let sent = frames(client(&mut r, c));
    let sql = Query::decode(sent[0].body()).unwrap().sql.to_owned();
    assert!(sql.starts_with("SELECT E'alice' AS \"user\""), "{sql}");
    assert!(sql.contains("E'analysts' AS groups"), "{sql}");
    assert_eq!(Query::decode(sent[1].body()).unwrap().sql, "select 1");
    let mut resp = BytesMut::new();
    backend::data_row(&mut resp, &[Some(b"alice")]);
    backend::command_complete(&mut resp, "SELECT 1");
    ready(&mut resp, TransactionStatus::Idle);
    assert_eq!(tags(&server(&mut r, resp)), "DCZ");
    assert!(!r.is_idle(), "the second query is still owed");

    let mut c = BytesMut::new();
    Parse::encode("who", "show portcullis.identity", &[], &mut c);
    Bind::encode("", "who", &[], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    let sent = frames(client(&mut r, c));
    let p = Parse::decode(sent[0].body()).unwrap();
    assert_eq!(p.name, "who");
    assert!(
        p.sql.contains("E'scram-sha-256' AS auth_method"),
        "{}",
        p.sql
    );
    assert_eq!(sent.len(), 4);
}

/// The test gate, also keeping every executed Bind it is told about.
#[derive(Default)]
struct ObservingGate(std::sync::Mutex<Vec<(String, Vec<Option<String>>)>>);

impl Gate for ObservingGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        TestGate.decide(ctx)
    }

    fn decide_function_call(&self, _: &SessionInfo, _: u32) -> Decision {
        Decision::Allow
    }

    fn observes_binds(&self) -> bool {
        true
    }

    fn bound(&self, ctx: &StatementContext<'_>, params: &crate::pipeline::BoundParams<'_>) {
        self.0
            .lock()
            .unwrap()
            .push((ctx.sql.to_owned(), params.values.to_vec()));
    }
}

#[test]
fn each_executed_bind_of_an_allowed_parse_is_reported_with_its_params() {
    let gate = Arc::new(ObservingGate::default());
    let mut r = relay();
    r.deps.gate = gate.clone();
    let mut c = BytesMut::new();
    Parse::encode("s1", "select $1", &[], &mut c);
    Bind::encode("", "s1", &[Some(b"7")], &mut c);
    Execute::encode("", 0, &mut c);
    Bind::encode("", "s1", &[None], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    client(&mut r, c);
    assert!(
        gate.0.lock().unwrap().is_empty(),
        "nothing before BindComplete"
    );
    let mut s = BytesMut::new();
    portcullis_wire::put_message(&mut s, b'1', |_| {});
    for _ in 0..2 {
        portcullis_wire::put_message(&mut s, b'2', |_| {});
        backend::command_complete(&mut s, "SELECT 1");
    }
    ready(&mut s, TransactionStatus::Idle);
    server(&mut r, s);
    assert_eq!(
        *gate.0.lock().unwrap(),
        [
            ("select $1".to_owned(), vec![Some("7".to_owned())]),
            ("select $1".to_owned(), vec![None]),
        ]
    );

    // A denied Parse is poisoned: its Bind fails upstream and is never reported;
    // neither is a Bind the server refused.
    let mut c = BytesMut::new();
    Parse::encode("", "drop table t", &[], &mut c);
    Bind::encode("", "", &[Some(b"1")], &mut c);
    Execute::encode("", 0, &mut c);
    frontend::sync(&mut c);
    client(&mut r, c);
    let mut s = server_error("26000", "prepared statement does not exist");
    ready(&mut s, TransactionStatus::Idle);
    server(&mut r, s);
    assert_eq!(gate.0.lock().unwrap().len(), 2);
}

/// Records what each result's statement tells about its output lineage.
#[derive(Default)]
struct LineageFilter {
    seen: std::sync::Mutex<Vec<(Option<usize>, Vec<String>)>>,
}

impl crate::pipeline::ResultFilter for LineageFilter {
    fn begin(
        &self,
        ctx: &crate::pipeline::ResultContext<'_>,
    ) -> Option<Box<dyn crate::pipeline::RowRewriter>> {
        let s = ctx.statement.expect("a statement");
        self.seen.lock().unwrap().push((
            s.lineage.output.as_ref().map(Vec::len),
            s.tables.iter().map(|t| t.name.clone()).collect(),
        ));
        None
    }
}

fn lineage_relay() -> (Relay, Arc<LineageFilter>) {
    let mut r = relay();
    let f = Arc::new(LineageFilter::default());
    r.deps.filter = f.clone();
    r.track_results = true;
    (r, f)
}

/// Sends `sql` and answers it with `tags` (a one-column result for a `FETCH` tag),
/// then ReadyForQuery with `status`.
fn exchange(r: &mut Relay, sql: &str, tags: &[&str], status: TransactionStatus) -> BytesMut {
    let mut q = BytesMut::new();
    Query::encode(sql, &mut q);
    client(r, q);
    let mut resp = BytesMut::new();
    for t in tags {
        if t.starts_with("FETCH") {
            one_column_rows(&mut resp, 1);
        }
        backend::command_complete(&mut resp, t);
    }
    ready(&mut resp, status);
    server(r, resp)
}

#[test]
fn fetch_from_a_declared_cursor_has_the_lineage_of_its_query() {
    let (mut r, f) = lineage_relay();
    let t = TransactionStatus::InTransaction;
    exchange(
        &mut r,
        "begin; declare c cursor for select upper(name) from customers",
        &["BEGIN", "DECLARE CURSOR"],
        t,
    );
    exchange(&mut r, "fetch 1 from c", &["FETCH 1"], t);
    exchange(&mut r, "close c", &["CLOSE CURSOR"], t);
    exchange(&mut r, "fetch 1 from c", &["FETCH 1"], t);
    exchange(
        &mut r,
        "declare d cursor for select upper(name) from customers; commit; fetch 1 from d",
        &["DECLARE CURSOR", "COMMIT", "FETCH 1"],
        TransactionStatus::Idle,
    );
    let seen = f.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            (Some(1), vec!["customers".to_owned()]),
            (None, vec![]),
            (None, vec![]),
        ],
        "declared, then closed, then ended with the transaction"
    );
}

#[test]
fn the_catalog_is_reloaded_once_ddl_has_committed() {
    let (mut r, _) = lineage_relay();
    exchange(&mut r, "select 1", &["SELECT 1"], TransactionStatus::Idle);
    assert_eq!(r.take_catalog_refresh(), None);
    let out = exchange(
        &mut r,
        "create view v as select 1",
        &["CREATE VIEW"],
        TransactionStatus::Idle,
    );
    assert_eq!(
        r.take_catalog_refresh(),
        Some(out.len() - 6),
        "from the ReadyForQuery on"
    );
    assert_eq!(r.take_catalog_refresh(), None, "once");
    exchange(
        &mut r,
        "begin; alter table t add column c int",
        &["BEGIN", "ALTER TABLE"],
        TransactionStatus::InTransaction,
    );
    assert_eq!(r.take_catalog_refresh(), None, "not before it commits");
    exchange(&mut r, "commit", &["COMMIT"], TransactionStatus::Idle);
    assert!(r.take_catalog_refresh().is_some());
}
