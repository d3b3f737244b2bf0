//! The standard guardrails policy (demo settings) enforced on live traffic, through
//! real clients: tokio-postgres (simple, extended, pipelined), psql and psycopg.
//!
//! Every denial must carry the policy's SQLSTATE and name, leave the connection
//! usable, and never reach PostgreSQL; the same statements from an identity the
//! rules allow must run. Bypass attempts (case, comments, quoting, schema
//! qualification, multi-statement strings, transactions, SQL-level PREPARE) must be
//! denied all the same. A hostile policy that loops, allocates or panics on one
//! statement denies that statement and leaves the session and other sessions working.

use futures_util::future::join_all;
use portcullis_tests::pg::{Conn, message, sqlstate};
use portcullis_tests::policies::{demo_guardrails, hostile};
use portcullis_tests::tools::{clean_command, require_psycopg, run_async};
use portcullis_tests::{EnvOptions, GatewayOptions, TestEnv, psql_c, unique};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

fn options() -> EnvOptions {
    EnvOptions {
        gateway: GatewayOptions {
            policies: vec![demo_guardrails()],
            ..GatewayOptions::default()
        },
        ..EnvOptions::default()
    }
}

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, options).await
}

async fn conn(user: &str) -> Conn {
    env()
        .await
        .connect_gateway(user, "demo")
        .await
        .expect("connect through the gateway")
}

/// Asserts that `e` is a policy denial: 42501 with the guardrails policy named.
#[track_caller]
fn assert_policy_denial(e: &tokio_postgres::Error, what: &str) {
    assert_eq!(sqlstate(e).as_deref(), Some("42501"), "{what}: {e:?}");
    let msg = full_message(e);
    assert!(msg.contains("policy \"guardrails\""), "{what}: {msg:?}");
}

/// The server's message and detail (the detail names the deciding policy).
fn full_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} / {}", db.message(), db.detail().unwrap_or("")),
        None => message(e),
    }
}

/// A simple-protocol statement that must be denied, then the connection still works.
async fn denied_simple(c: &Conn, sql: &str) {
    let e = c
        .simple_query(sql)
        .await
        .expect_err(&format!("simple {sql:?} must be denied"));
    assert_policy_denial(&e, sql);
    still_usable(c).await;
}

/// An extended-protocol statement (Parse/Bind/Execute) that must be denied.
async fn denied_extended(c: &Conn, sql: &str) {
    let e = c
        .query(sql, &[])
        .await
        .expect_err(&format!("extended {sql:?} must be denied"));
    assert_policy_denial(&e, sql);
    // A Parse alone (prepare) is decided too.
    let e = c
        .prepare(sql)
        .await
        .expect_err(&format!("prepare {sql:?} must be denied"));
    assert_policy_denial(&e, sql);
    still_usable(c).await;
}

async fn still_usable(c: &Conn) {
    let row = c
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .expect("the connection stays usable after a denial");
    assert!(row.get::<_, i64>(0) > 0);
}

/// The statements the demo settings deny for alice.
const ALICE_DENIED: &[&str] = &[
    "DROP TABLE customers",
    "DELETE FROM orders",
    "SELECT * FROM secrets",
    "DO $$ BEGIN PERFORM 1; END $$",
    "SELECT pg_read_file('/etc/passwd')",
    "COPY orders TO '/tmp/orders.csv'",
];

#[tokio::test]
async fn denials_in_the_simple_protocol() {
    let c = conn("alice").await;
    for sql in ALICE_DENIED {
        denied_simple(&c, sql).await;
    }
}

#[tokio::test]
async fn denials_in_the_extended_protocol() {
    let c = conn("alice").await;
    for sql in ALICE_DENIED {
        if sql.starts_with("DO") {
            continue; // DO cannot be prepared by PostgreSQL either; covered in simple.
        }
        denied_extended(&c, sql).await;
    }
    // A parameterised statement is decided on its text, with the parameter bound.
    let e = c
        .query("SELECT value FROM secrets WHERE id = $1", &[&1i32])
        .await
        .expect_err("a parameterised read of secrets is denied");
    assert_policy_denial(&e, "parameterised");
}

#[tokio::test]
async fn denials_in_a_pipeline_hit_only_the_denied_statement() {
    let c = conn("alice").await;
    // tokio-postgres pipelines queries issued concurrently on one connection.
    let sqls = [
        "SELECT 1::int4",
        "SELECT * FROM secrets",
        "SELECT 2::int4",
        "DELETE FROM orders",
        "SELECT 3::int4",
    ];
    let results = join_all(sqls.iter().map(|s| c.query(*s, &[]))).await;
    for (sql, res) in sqls.iter().zip(&results) {
        match res {
            Ok(rows) => {
                assert!(
                    sql.starts_with("SELECT") && !sql.contains("secrets"),
                    "{sql}"
                );
                assert_eq!(rows.len(), 1, "{sql}");
            }
            Err(e) => {
                assert!(
                    sql.contains("secrets") || sql.starts_with("DELETE"),
                    "{sql}"
                );
                assert_policy_denial(e, sql);
            }
        }
    }
    let got: Vec<i32> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|rows| rows[0].get(0))
        .collect();
    assert_eq!(got, vec![1, 2, 3]);
    still_usable(&c).await;
}

#[tokio::test]
async fn allowed_identities_run_the_same_statements() {
    let bob = conn("bob").await;
    // bob may read secrets.
    let rows = bob
        .query("SELECT * FROM secrets", &[])
        .await
        .expect("bob reads secrets");
    assert_eq!(rows.len(), 5);
    let direct = env().await.connect_direct("demo").await.unwrap();
    let direct_rows = direct.query("SELECT * FROM secrets", &[]).await.unwrap();
    assert_eq!(rows.len(), direct_rows.len());
    // bob (dba) may drop; use a table of his own.
    let t = unique("scratch");
    bob.batch_execute(&format!("CREATE TABLE {t} (a int); DROP TABLE {t}"))
        .await
        .expect("bob creates and drops a table");
    // A bounded DELETE is fine for anyone allowed to write (in a rolled-back txn).
    bob.batch_execute("BEGIN; DELETE FROM orders WHERE id = -1; ROLLBACK")
        .await
        .expect("a DELETE with WHERE runs");
    // alice reads what analysts may read.
    let alice = conn("alice").await;
    let n: i64 = alice
        .query_one(
            "SELECT count(*) FROM orders WHERE amount > $1::int4",
            &[&0i32],
        )
        .await
        .map(|r| r.get(0))
        .expect("alice reads orders");
    assert!(n > 0);
}

#[tokio::test]
async fn bypass_attempts_are_denied() {
    let alice = conn("alice").await;
    let attempts = [
        "dRoP   TaBlE customers",
        "DROP\n\tTABLE\n customers",
        "DROP /* harmless */ TABLE customers",
        "-- comment\nDROP TABLE customers",
        "DROP TABLE \"customers\"",
        "DROP TABLE public.customers",
        "DROP TABLE IF EXISTS customers CASCADE",
        "select 1; drop table customers",
        "SELECT * FROM public.secrets",
        "SELECT * FROM \"secrets\"",
        "SELECT * FROM (SELECT * FROM secrets) s",
        "WITH s AS (SELECT * FROM secrets) SELECT * FROM s",
        "SELECT (SELECT value FROM secrets LIMIT 1)",
        "SELECT 1 UNION SELECT id FROM secrets",
        "PREPARE p AS SELECT * FROM secrets",
        "PREPARE d AS DELETE FROM orders",
        "EXPLAIN ANALYZE DELETE FROM orders",
        "CREATE VIEW v AS SELECT * FROM secrets",
        "DELETE FROM orders WHERE true OR id = 1; DROP TABLE customers",
    ];
    for sql in attempts {
        denied_simple(&alice, sql).await;
    }
    // Extended-protocol forms of the same.
    for sql in ["DROP TABLE \"customers\"", "SELECT * FROM public.secrets"] {
        denied_extended(&alice, sql).await;
    }
    // Inside a transaction: the denial fails the statement like any error.
    alice.batch_execute("BEGIN").await.unwrap();
    let e = alice
        .simple_query("DROP TABLE customers")
        .await
        .expect_err("denied inside a transaction");
    assert_policy_denial(&e, "in a transaction");
    let e = alice
        .simple_query("SELECT 1")
        .await
        .expect_err("the transaction is aborted, as after any error");
    assert_eq!(sqlstate(&e).as_deref(), Some("25P02"));
    alice.batch_execute("ROLLBACK").await.unwrap();
    still_usable(&alice).await;
    // Nothing was dropped or deleted.
    let direct = env().await.connect_direct("demo").await.unwrap();
    let n: i64 = direct
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0, "orders still has its rows");
}

#[tokio::test]
async fn execute_of_a_prepared_statement_cannot_escape_the_decision() {
    // A SQL-level PREPARE of an allowed statement, then EXECUTE: runs.
    let alice = conn("alice").await;
    alice
        .batch_execute("PREPARE ok AS SELECT count(*) FROM customers")
        .await
        .expect("PREPARE of an allowed statement");
    let r = alice.simple_query("EXECUTE ok").await.expect("EXECUTE ok");
    assert!(!r.is_empty());
    // A denied one can never be prepared, so EXECUTE finds nothing.
    denied_simple(&alice, "PREPARE bad AS SELECT * FROM secrets").await;
    let e = alice
        .simple_query("EXECUTE bad")
        .await
        .expect_err("no such statement");
    assert_eq!(sqlstate(&e).as_deref(), Some("26000"));
}

#[tokio::test]
async fn psql_sees_the_sqlstate_and_the_connection_goes_on() {
    let uri = env().await.gateway_uri("alice", "demo");
    let out = psql_c(&uri, "DROP TABLE customers").await;
    assert_eq!(out.code(), 1, "psql exits 1 on the error: {out:?}");
    assert!(out.stderr.contains("guardrails"), "{}", out.stderr);
    // A script: the denied statement fails, the rest runs (no ON_ERROR_STOP here).
    let mut cmd = clean_command(portcullis_tests::require_tool("psql"));
    cmd.args([
        "-X",
        "-A",
        "-t",
        "-v",
        "VERBOSITY=verbose",
        "-f",
        "-",
        "-d",
        &uri,
    ]);
    let out = run_async(
        cmd,
        Some(
            b"SELECT 1;\nDELETE FROM orders;\nSELECT 2;\nSELECT * FROM secrets;\nSELECT 3;\n"
                .to_vec(),
        ),
    )
    .await;
    assert_eq!(out.stdout.trim(), "1\n2\n3", "{out:?}");
    assert_eq!(out.stderr.matches("42501").count(), 2, "{}", out.stderr);
}

#[tokio::test]
async fn psycopg_sees_the_sqlstate_in_both_protocols() {
    let python = require_psycopg();
    let uri = env().await.gateway_uri("alice", "demo");
    let script = r#"
import sys, psycopg
from psycopg import errors
uri = sys.argv[1]
out = []
with psycopg.connect(uri, autocommit=True) as conn:
    for prepare in (False, True):
        for sql in ("DROP TABLE customers", "SELECT * FROM secrets", "DELETE FROM orders"):
            try:
                conn.execute(sql, prepare=prepare)
                out.append("allowed " + sql)
            except errors.InsufficientPrivilege as e:
                out.append("42501" if "guardrails" in (e.diag.message_detail or "") else "unnamed " + str(e))
        out.append(str(conn.execute("SELECT count(*) > 0 FROM customers").fetchone()[0]))
    try:
        with conn.pipeline():
            conn.execute("SELECT 1")
            conn.execute("SELECT * FROM secrets")
            conn.execute("SELECT 2")
    except errors.InsufficientPrivilege:
        out.append("pipeline-denied")
    out.append(str(conn.execute("SELECT 3").fetchone()[0]))
print(" ".join(out))
"#;
    let mut cmd = clean_command(&python);
    cmd.args(["-c", script, &uri]);
    let out = run_async(cmd, None).await;
    out.assert_success("psycopg policy script");
    assert_eq!(
        out.stdout.trim(),
        "42501 42501 42501 True 42501 42501 42501 True pipeline-denied 3",
        "{out:?}"
    );
}

#[tokio::test]
async fn hostile_policies_deny_one_statement_and_the_gateway_keeps_serving() {
    let env = env().await;
    let only = std::env::var("HOSTILE_ONLY").ok();
    for behaviour in [
        "loop",
        "alloc",
        "recursion",
        "panic",
        "huge-return",
        "print",
    ] {
        if only.as_deref().is_some_and(|o| o != behaviour) {
            continue;
        }
        let gw = env
            .start_gateway(GatewayOptions {
                policies: vec![hostile(&format!(
                    "behaviour = \"{behaviour}\"\ntrigger = \"/*boom*/\""
                ))],
                ..GatewayOptions::default()
            })
            .await
            .expect("a gateway with the hostile policy");
        let victim = gw.connect("alice", "demo").await.unwrap();
        let bystander = gw.connect("bob", "demo").await.unwrap();
        let e = victim
            .simple_query("SELECT 1 /*boom*/")
            .await
            .expect_err(&format!("{behaviour}: the statement is denied"));
        let code = sqlstate(&e);
        assert!(
            code.is_some() && code.as_deref() != Some("00000"),
            "{behaviour}: {e:?}"
        );
        let msg = full_message(&e);
        assert!(msg.contains("hostile"), "{behaviour}: {msg}");
        // The same connection and another session go on.
        for c in [&victim, &bystander] {
            let v: i32 = c
                .query_one("SELECT 41 + 1", &[])
                .await
                .unwrap_or_else(|e| panic!("{behaviour}: session unusable: {e:?}"))
                .get(0);
            assert_eq!(v, 42);
        }
        drop((victim, bystander));
        gw.shutdown().await;
    }
}
