//! The audit trail end to end: statements through a real gateway in front of a real
//! PostgreSQL produce events with the right identity, decision and row counts; a sink
//! that cannot write makes the gateway fail closed while sessions stay usable; and,
//! cross-checked against PostgreSQL's own `log_statement = 'all'`, every statement
//! that reached PostgreSQL through the gateway is in the trail and no denied one
//! reached PostgreSQL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis::audit::verify::{VerifyOptions, verify_files};
use portcullis::audit::writer::{file_name, trail_files};
use portcullis::audit::{AuditEvent, EventKind};
use portcullis::pipeline::{Decision, Denial, Gate, NoMasking, SessionInfo, StatementContext};
use portcullis::server::Plugins;
use portcullis_tests::pg::sqlstate;
use portcullis_tests::{EnvOptions, Gateway, GatewayOptions, TestEnv, eventually, unique};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

fn options() -> EnvOptions {
    EnvOptions {
        extra_conf: vec![
            ("log_statement".into(), "all".into()),
            ("log_line_prefix".into(), "%m [%p] app=[%a] ".into()),
        ],
        ..EnvOptions::default()
    }
}

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, options).await
}

/// Denies statements marked `/*deny*/` and any touching `secrets`.
struct TestGate;

impl Gate for TestGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        if ctx.sql.contains("/*deny*/") || ctx.statement.touches_table("secrets") {
            return Decision::Deny(Denial {
                sqlstate: "42501".into(),
                message: "denied by the audit test gate".into(),
                policy: "audit-test-gate".into(),
            });
        }
        Decision::Allow
    }

    fn decide_function_call(&self, _: &SessionInfo, _: u32) -> Decision {
        Decision::Allow
    }
}

/// A gateway with the test gate and `[audit]` writing to `dir` (plus `extra` keys).
async fn audited_gateway(env: &TestEnv, dir: &Path, extra: &str) -> Gateway {
    let mut text = env.gateway_config(&GatewayOptions::default());
    text.push_str(&format!(
        "\n[audit]\ndir = {:?}\nstatement_text = \"full\"\n{extra}\n",
        dir.display().to_string()
    ));
    let plugins = Plugins {
        gate: Arc::new(TestGate),
        filter: Arc::new(NoMasking),
    };
    Gateway::start_with(
        &env.scratch_dir()
            .join(format!("{}.toml", unique("audit_gw"))),
        &text,
        &env.pki().ca_cert,
        Some(plugins),
    )
    .await
    .expect("starting the audited gateway")
}

fn trail_dir(env: &TestEnv) -> PathBuf {
    let d = env.scratch_dir().join(unique("trail"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every event of the trail in `dir`, after checking that the chain verifies and ends
/// with a clean stop.
fn verified_events(dir: &Path) -> Vec<AuditEvent> {
    let files = trail_files(dir).unwrap();
    let report = verify_files(
        &files,
        &VerifyOptions {
            require_sealed: true,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(
        report.ok(),
        "the trail does not verify: {:#?}",
        report.problems
    );
    let mut events = Vec::new();
    portcullis::audit::search::read_events(&files, |_, e| events.push(e)).unwrap();
    events
}

fn statements<'a>(events: &'a [AuditEvent], needle: &str) -> Vec<&'a AuditEvent> {
    events
        .iter()
        .filter(|e| {
            e.kind == EventKind::Statement
                && e.statement
                    .as_ref()
                    .and_then(|s| s.text.as_deref())
                    .is_some_and(|t| t.contains(needle))
        })
        .collect()
}

#[tokio::test]
async fn statements_produce_events_with_identity_decision_and_rows() {
    let env = env().await;
    let table = unique("audit_t");
    env.admin_sql(
        "demo",
        &format!("create table {table} (id int primary key, v text)"),
    );
    let dir = trail_dir(env);
    let gw = audited_gateway(env, &dir, "").await;

    let alice = gw.connect("alice", "demo").await.unwrap();
    alice
        .simple_query(&format!(
            "insert into {table} values (1, 'a'), (2, 'b'), (3, 'c')"
        ))
        .await
        .unwrap();
    let rows = alice
        .query(&format!("select id from {table} where id >= $1"), &[&1i32])
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let n = alice
        .execute(&format!("update {table} set v = $1 where id = 2"), &[&"zz"])
        .await
        .unwrap();
    assert_eq!(n, 1);
    let err = alice
        .simple_query("select * from secrets")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"));
    // The session goes on after the denial.
    alice.simple_query("select 1").await.unwrap();

    let bob = gw.connect("bob", "demo").await.unwrap();
    bob.simple_query(&format!("delete from {table} where id = 3"))
        .await
        .unwrap();
    let bad = portcullis_tests::pg::try_connect(&gw.uri_with(
        "alice",
        "wrong-password",
        "demo",
        "sslmode=disable",
    ))
    .await;
    assert!(bad.is_err());
    drop(alice);
    drop(bob);
    gw.wait_active_connections(0, Duration::from_secs(10))
        .await
        .unwrap();
    gw.shutdown().await;

    let events = verified_events(&dir);
    let insert = statements(&events, "insert into");
    let insert = insert
        .iter()
        .find(|e| {
            e.statement
                .as_ref()
                .unwrap()
                .text
                .as_deref()
                .unwrap()
                .contains(&table)
        })
        .expect("the insert is in the trail");
    let s = insert.session.as_ref().unwrap();
    assert_eq!(s.user, "alice");
    assert_eq!(s.groups, vec!["analysts".to_owned()]);
    assert_eq!(s.principal, "person");
    assert_eq!(s.database, "demo");
    let st = insert.statement.as_ref().unwrap();
    assert_eq!(st.kind, "insert");
    assert!(st.writes);
    assert!(
        st.tables
            .iter()
            .any(|t| t.name == table && t.access == "write")
    );
    assert_eq!(insert.decision.as_ref().unwrap().verdict, "allow");
    assert_eq!(insert.outcome.as_ref().unwrap().rows, Some(3));
    assert_eq!(
        insert.outcome.as_ref().unwrap().command.as_deref(),
        Some("INSERT 0 3")
    );

    let select = statements(&events, &format!("select id from {table}"));
    assert_eq!(select.len(), 1, "one event per execution");
    let select = select[0];
    assert_eq!(select.statement.as_ref().unwrap().protocol, "extended");
    assert!(!select.statement.as_ref().unwrap().writes);
    assert_eq!(select.outcome.as_ref().unwrap().rows, Some(3));

    let update = statements(&events, &format!("update {table}"))[0];
    // tokio-postgres binds in binary format: recorded as hex.
    assert_eq!(
        update.statement.as_ref().unwrap().params.as_deref(),
        Some(&[Some("\\x7a7a".to_owned())][..])
    );
    assert_eq!(update.outcome.as_ref().unwrap().rows, Some(1));

    let denied = statements(&events, "select * from secrets")[0];
    let d = denied.decision.as_ref().unwrap();
    assert_eq!(d.verdict, "deny");
    assert_eq!(d.policy.as_deref(), Some("audit-test-gate"));
    assert_eq!(denied.outcome.as_ref().unwrap().status, "denied");

    let delete = statements(&events, &format!("delete from {table}"))[0];
    let s = delete.session.as_ref().unwrap();
    assert_eq!(s.user, "bob");
    assert!(s.groups.contains(&"dba".to_owned()));
    assert_eq!(delete.outcome.as_ref().unwrap().rows, Some(1));

    let kinds: Vec<(EventKind, Option<&str>)> = events
        .iter()
        .map(|e| (e.kind, e.session.as_ref().map(|s| s.user.as_str())))
        .collect();
    for user in ["alice", "bob"] {
        assert!(
            kinds.contains(&(EventKind::Connect, Some(user))),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&(EventKind::Disconnect, Some(user))),
            "{kinds:?}"
        );
    }
    let failure = events
        .iter()
        .find(|e| e.kind == EventKind::AuthFailure)
        .expect("the failed login is in the trail");
    assert_eq!(failure.detail.as_ref().unwrap()["user"], "alice");
    assert_eq!(failure.detail.as_ref().unwrap()["sqlstate"], "28P01");
}

#[tokio::test]
async fn an_unwritable_sink_fails_closed_and_the_session_stays_usable() {
    let env = env().await;
    let table = unique("audit_full");
    env.admin_sql("demo", &format!("create table {table} (id int)"));
    let dir = trail_dir(env);
    // Every write to /dev/full fails with ENOSPC, like a full disk.
    std::os::unix::fs::symlink("/dev/full", dir.join(file_name(0))).unwrap();
    let gw = audited_gateway(env, &dir, "").await;
    let alice = gw.connect("alice", "demo").await.unwrap();
    // The writer finds out on its first write (its start event).
    eventually(
        Duration::from_secs(20),
        "the gateway refuses statements",
        || async {
            match alice.simple_query("select 1").await {
                Err(e) if sqlstate(&e).as_deref() == Some("58030") => Ok(()),
                other => anyhow::bail!("select 1 gave {other:?}"),
            }
        },
    )
    .await
    .unwrap();

    let err = alice
        .simple_query(&format!("insert into {table} values (1)"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("58030"));
    let db = err.as_db_error().unwrap();
    assert!(
        db.message().contains("audit trail cannot be written"),
        "{}",
        db.message()
    );
    // Same session: transaction control still works, writes are still refused.
    alice.simple_query("begin").await.unwrap();
    let err = alice
        .execute(&format!("insert into {table} values ($1)"), &[&2i32])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("58030"));
    alice.simple_query("rollback").await.unwrap();
    assert!(!alice.is_closed());
    assert_eq!(
        env.admin_sql("demo", &format!("select count(*) from {table}")),
        "0",
        "nothing reached PostgreSQL"
    );
    drop(alice);
    gw.shutdown().await;
}

/// `(statement text, user)` of every statement PostgreSQL logged that contains
/// `marker` (`LOG:  statement: ...` and `LOG:  execute <name>: ...`).
fn logged_statements(log: &Path, marker: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.contains(marker)) {
        let Some(rest) = line
            .split_once("LOG:  statement: ")
            .map(|(_, r)| r)
            .or_else(|| {
                line.split_once("LOG:  execute ")
                    .and_then(|(_, r)| r.split_once(": "))
                    .map(|(_, r)| r)
            })
        else {
            continue;
        };
        let user = line
            .split_once("via portcullis:")
            .and_then(|(_, r)| r.split_once(']'))
            .map(|(u, _)| u.to_owned())
            .unwrap_or_default();
        out.push((rest.to_owned(), user));
    }
    out
}

#[tokio::test]
async fn every_statement_postgres_ran_is_in_the_trail_and_no_denied_one_reached_it() {
    let env = env().await;
    let marker = unique("xcheck");
    let table = unique("audit_x");
    env.admin_sql("demo", &format!("create table {table} (v text)"));
    let dir = trail_dir(env);
    let gw = audited_gateway(env, &dir, "").await;

    let alice = gw.connect("alice", "demo").await.unwrap();
    let agent = gw.connect("etl-agent", "demo").await.unwrap();
    alice
        .simple_query(&format!("select '{marker}-1'"))
        .await
        .unwrap();
    alice
        .simple_query(&format!("insert into {table} values ('{marker}-2')"))
        .await
        .unwrap();
    alice
        .query(&format!("select $1::text, '{marker}-3'"), &[&"p"])
        .await
        .unwrap();
    agent
        .simple_query(&format!("select '{marker}-4a'; select '{marker}-4b'"))
        .await
        .unwrap();
    agent.simple_query("begin").await.unwrap();
    agent
        .execute(
            &format!("insert into {table} values ('{marker}-5' || $1)"),
            &[&"x"],
        )
        .await
        .unwrap();
    agent.simple_query("commit").await.unwrap();
    // A statement PostgreSQL rejects still reached it, and is in the trail.
    let err = alice
        .simple_query(&format!("select '{marker}-6'::int"))
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("22P02"));

    // Denied: simple, extended, in a multi-statement string, and by table.
    for sql in [
        format!("select '{marker}-D1' /*deny*/"),
        format!("select '{marker}-D3'; select '{marker}-D4' /*deny*/"),
        format!("select * from secrets where note = '{marker}-D5'"),
    ] {
        let err = alice.simple_query(&sql).await.unwrap_err();
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{sql}");
    }
    let err = agent
        .query(&format!("select $1::text, '{marker}-D2' /*deny*/"), &[&"p"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"));
    drop(alice);
    drop(agent);
    gw.wait_active_connections(0, Duration::from_secs(10))
        .await
        .unwrap();
    gw.shutdown().await;

    let events = verified_events(&dir);
    let logged = logged_statements(env.pg_log_file(), &marker);
    assert_eq!(logged.len(), 6, "PostgreSQL logged: {logged:#?}");
    for (sql, user) in &logged {
        let matching: Vec<&AuditEvent> = events
            .iter()
            .filter(|e| {
                e.statement
                    .as_ref()
                    .and_then(|s| s.text.as_deref())
                    .is_some_and(|t| t == sql)
            })
            .collect();
        assert!(
            !matching.is_empty(),
            "PostgreSQL ran {sql:?} but the trail does not have it"
        );
        for e in &matching {
            assert_eq!(
                &e.session.as_ref().unwrap().user,
                user,
                "identity of {sql:?}"
            );
            assert_eq!(e.decision.as_ref().unwrap().verdict, "allow");
        }
        assert!(
            !sql.contains("-D"),
            "a denied statement reached PostgreSQL: {sql}"
        );
    }
    for d in ["-D1", "-D2", "-D3", "-D4", "-D5"] {
        let needle = format!("{marker}{d}");
        assert!(
            !std::fs::read_to_string(env.pg_log_file())
                .unwrap()
                .contains(&needle),
            "{needle} reached PostgreSQL"
        );
        let ev = statements(&events, &needle);
        assert!(
            ev.iter()
                .any(|e| e.decision.as_ref().unwrap().verdict == "deny"),
            "the denial of {needle} is not in the trail"
        );
    }
    // The error PostgreSQL raised is recorded with its SQLSTATE.
    let failed = statements(&events, &format!("{marker}-6"))[0];
    assert_eq!(
        failed.outcome.as_ref().unwrap().sqlstate.as_deref(),
        Some("22P02")
    );
}

#[tokio::test]
async fn the_admin_port_streams_events_as_they_are_written() {
    let env = env().await;
    let dir = trail_dir(env);
    let gw = audited_gateway(env, &dir, "").await;
    let admin = gw.admin_addr().unwrap();
    let marker = unique("sse");
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET /audit/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // Headers first, so the subscription exists before the statement runs.
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the stream closed");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("text/event-stream"));
    let c = gw.connect("bob", "demo").await.unwrap();
    c.simple_query(&format!("select '{marker}'")).await.unwrap();
    let text = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the stream closed");
            got.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&got).into_owned();
            if text.contains(&marker) {
                return text;
            }
        }
    })
    .await
    .expect("the statement's event was streamed");
    let line = text.lines().find(|l| l.contains(&marker)).unwrap();
    let data = line.strip_prefix("data: ").expect("an SSE data line");
    let e: AuditEvent = serde_json::from_str(data).unwrap();
    assert_eq!(e.session.unwrap().user, "bob");
    drop(c);
    drop(stream);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_writes_event_is_on_disk_before_its_result_reaches_the_client() {
    let env = env().await;
    let table = unique("audit_hold");
    env.admin_sql("demo", &format!("create table {table} (id int)"));
    let dir = trail_dir(env);
    // Events no client waits for are written once a minute at most; a write's event
    // must not wait for that.
    let gw = audited_gateway(env, &dir, "batch_interval_ms = 60000\nfsync = \"always\"").await;
    let alice = gw.connect("alice", "demo").await.unwrap();
    for i in 0..5 {
        let sql = format!("insert into {table} values ({i})");
        alice.simple_query(&sql).await.unwrap();
        let on_disk: String = trail_files(&dir)
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert!(
            on_disk.contains(&sql),
            "{sql:?} was acknowledged before its event was written"
        );
        let sql = format!("update {table} set id = $1 where id = {i}");
        alice.execute(&sql, &[&(i + 100)]).await.unwrap();
        let on_disk: String = trail_files(&dir)
            .unwrap()
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap())
            .collect();
        assert!(
            on_disk.contains(&sql),
            "{sql:?} was acknowledged before its event was written"
        );
    }
    drop(alice);
    gw.shutdown().await;
    verified_events(&dir);
}

/// The built guardrails component (`bash policies-rs/build.sh`); a missing one fails
/// the test.
fn guardrails_wasm() -> PathBuf {
    let dir = std::env::var_os("PORTCULLIS_TEST_POLICIES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join("policies")
        });
    let path = dir.join("guardrails.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run `bash policies-rs/build.sh` first",
        path.display()
    );
    path
}

#[tokio::test]
async fn decisions_name_the_policy_and_record_the_loaded_set() {
    let env = env().await;
    let wasm = guardrails_wasm();
    let digest = {
        use sha2::Digest;
        hex_string(&sha2::Sha256::digest(std::fs::read(&wasm).unwrap()))
    };
    let dir = trail_dir(env);
    let mut text = env.gateway_config(&GatewayOptions::default());
    text.push_str(&format!(
        "\n[audit]\ndir = {:?}\nstatement_text = \"redacted\"\n\n[[policies]]\nid = \"guardrails\"\npath = {:?}\n\
         [[policies.settings.rules]]\ndescription = \"secrets only for bob\"\ntables = [\"secrets\"]\n\
         deny_access = [\"read\", \"write\", \"ddl\"]\nexcept_users = [\"bob\"]\n",
        dir.display().to_string(),
        wasm.display().to_string()
    ));
    let gw = Gateway::start(
        &env.scratch_dir()
            .join(format!("{}.toml", unique("audit_policy"))),
        &text,
        &env.pki().ca_cert,
    )
    .await
    .unwrap();
    let alice = gw.connect("alice", "demo").await.unwrap();
    let err = alice
        .simple_query("select * from secrets where id = 42")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"));
    alice
        .simple_query("select count(*) from customers")
        .await
        .unwrap();
    drop(alice);
    gw.wait_active_connections(0, Duration::from_secs(10))
        .await
        .unwrap();
    gw.shutdown().await;

    let events = verified_events(&dir);
    let load = events
        .iter()
        .find(|e| e.kind == EventKind::PolicyLoad)
        .expect("a policy_load event");
    let set = load.policies.as_ref().unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(set[0].id, "guardrails");
    assert_eq!(set[0].sha256, digest);
    assert!(!set[0].version.is_empty());
    // Literals are redacted.
    let denied = statements(&events, "select * from secrets where id = ?");
    assert_eq!(denied.len(), 1, "{events:#?}");
    let d = denied[0].decision.as_ref().unwrap();
    assert_eq!(d.verdict, "deny");
    assert_eq!(d.policy.as_deref(), Some("guardrails"));
    assert_eq!(denied[0].policies.as_ref().unwrap()[..], set[..]);
    // Every called policy's verdict, in chain order.
    let verdicts: Vec<(&str, &str)> = d
        .verdicts
        .iter()
        .map(|v| (v.policy.as_str(), v.verdict.as_str()))
        .collect();
    assert_eq!(verdicts, [("guardrails", "deny")]);
    let allowed = statements(&events, "select count(*) from customers")[0];
    assert_eq!(allowed.decision.as_ref().unwrap().verdict, "allow");
    let verdicts: Vec<(&str, &str)> = allowed
        .decision
        .as_ref()
        .unwrap()
        .verdicts
        .iter()
        .map(|v| (v.policy.as_str(), v.verdict.as_str()))
        .collect();
    assert_eq!(verdicts, [("guardrails", "allow")]);
    assert_eq!(allowed.policies.as_ref().unwrap()[0].sha256, digest);
    assert!(!events.iter().any(|e| {
        e.statement
            .as_ref()
            .and_then(|s| s.text.as_deref())
            .is_some_and(|t| t.contains("42"))
    }));
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `[audit.postgres]`: every line also lands in a PostgreSQL table, which rebuilds
/// into a trail that verifies; a table that cannot be written fails statements closed
/// (58030) until it can; a modified row is caught.
#[tokio::test]
async fn the_postgres_sink_holds_the_chain_and_fails_closed() {
    let env = env().await;
    let dir = trail_dir(env);
    let table = unique("audit").replace('-', "_");
    let url = format!(
        "host=127.0.0.1 port={} user=postgres password={} dbname=postgres",
        env.pg_port(),
        portcullis_tests::SUPERUSER_PASSWORD
    );
    let gw = audited_gateway(
        env,
        &dir,
        &format!("\n[audit.postgres]\nurl = {url:?}\ntable = {table:?}\ngateway = \"gw-a\"\n"),
    )
    .await;
    let c = gw.connect("alice", "demo").await.unwrap();
    c.simple_query("SELECT 1 /*pg sink*/").await.unwrap();
    c.simple_query("CREATE TEMP TABLE pg_sink_t (a int)")
        .await
        .unwrap();
    c.simple_query("INSERT INTO pg_sink_t VALUES (1)")
        .await
        .unwrap();

    // The table goes away: a write's result is withheld, new statements are refused.
    env.admin_sql(
        "postgres",
        &format!("ALTER TABLE {table} RENAME TO {table}_away"),
    );
    let r = c.simple_query("INSERT INTO pg_sink_t VALUES (2)").await;
    let e = r.expect_err("a write whose event cannot be stored is not acknowledged");
    assert_eq!(sqlstate(&e).as_deref(), Some("58030"), "{e:?}");
    let c2 = gw.connect("alice", "demo").await.unwrap();
    let refused = eventually(Duration::from_secs(10), "statements refused", || async {
        match c2.simple_query("SELECT 2 /*pg sink*/").await {
            Err(e) if sqlstate(&e).as_deref() == Some("58030") => Ok(()),
            other => anyhow::bail!("{other:?}"),
        }
    })
    .await;
    refused.unwrap();
    // It comes back: statements run again and nothing queued is lost.
    env.admin_sql(
        "postgres",
        &format!("ALTER TABLE {table}_away RENAME TO {table}"),
    );
    eventually(Duration::from_secs(20), "statements run again", || async {
        c2.simple_query("SELECT 3 /*pg sink*/")
            .await
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    })
    .await
    .unwrap();
    drop((c, c2));
    gw.shutdown().await;

    let file_events = verified_events(&dir);
    let rebuilt = env.scratch_dir().join(unique("rebuilt"));
    std::fs::create_dir_all(&rebuilt).unwrap();
    portcullis::audit::pg_sink::export(&url, &table, "gw-a", &rebuilt)
        .await
        .unwrap();
    let table_events = verified_events(&rebuilt);
    assert_eq!(
        table_events.len(),
        file_events.len(),
        "the table has every event"
    );
    assert!(!statements(&table_events, "SELECT 3 /*pg sink*/").is_empty());

    // A modified row breaks the chain.
    env.admin_sql(
        "postgres",
        &format!("UPDATE {table} SET line = replace(line, 'SELECT 1 /*pg sink*/', 'SELECT 9 /*pg sink*/')"),
    );
    let tampered = env.scratch_dir().join(unique("tampered"));
    std::fs::create_dir_all(&tampered).unwrap();
    portcullis::audit::pg_sink::export(&url, &table, "gw-a", &tampered)
        .await
        .unwrap();
    let report = verify_files(&trail_files(&tampered).unwrap(), &VerifyOptions::default()).unwrap();
    assert!(!report.ok(), "a modified row must be reported");
}
