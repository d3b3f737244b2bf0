//! The relay's bookkeeping, seen through its two seams (`Gate` and
//! `ResultFilter`, via `portcullis::server::start_with`).
//!
//! A pass-through gateway cannot show whether the relay attributes each result
//! set and each error to the right request: nothing depends on it. These tests
//! plug in a gate that denies statements marked `/*deny*/`, statements that
//! touch the table `secrets` (as the analyzer sees them), and every
//! FunctionCall, and a result filter that replaces every cell with
//! `<leading keyword>:<first table>` of the statement the relay believes
//! produced the rows (`unknown` when it does not know). Then they drive
//! protocol flows that make the server skip or merge responses (errors in the
//! extended protocol, COPY in the extended protocol, portals) and check that
//! rows and denials still land on the right statement.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, TryStreamExt, pin_mut};
use portcullis::pipeline::{
    Decision, Denial, Gate, ResultContext, ResultFilter, RowRewriter, SessionInfo, StatementContext,
};
use portcullis::server::Plugins;
use portcullis_tests::pg::{Conn, sqlstate};
use portcullis_tests::raw::{self, RawConn, describe_all, first_error};
use portcullis_tests::{EnvOptions, Gateway, GatewayOptions, TestEnv, unique};
use portcullis_wire::backend::{DataRowCells, data_row};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

const DENIAL_MESSAGE: &str = "denied by the test gate";
const SECRETS_DENIAL: &str = "secrets are denied by the test gate";

struct MarkerGate;

impl Gate for MarkerGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        if ctx.statement.touches_table("secrets") {
            return Decision::Deny(Denial {
                sqlstate: "42501".into(),
                message: SECRETS_DENIAL.into(),
                policy: "test".into(),
            });
        }
        if ctx.sql.contains("/*deny*/") {
            Decision::Deny(Denial {
                sqlstate: "42501".into(),
                message: DENIAL_MESSAGE.into(),
                policy: "test".into(),
            })
        } else {
            Decision::Allow
        }
    }

    fn decide_function_call(&self, _session: &SessionInfo, _function_oid: u32) -> Decision {
        Decision::Deny(Denial {
            sqlstate: "42501".into(),
            message: "function calls denied by the test gate".into(),
            policy: "test".into(),
        })
    }
}

/// Rewrites every cell to the statement the relay attributed the rows to.
struct AttributingFilter;

struct Label(Vec<u8>);

impl RowRewriter for Label {
    fn rewrite(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
        let cells: Vec<Option<&[u8]>> = DataRowCells::new(body)?
            .map(|c| c.map(|v| v.map(|_| self.0.as_slice())))
            .collect::<Result<_, _>>()?;
        data_row(out, &cells);
        Ok(())
    }
}

impl ResultFilter for AttributingFilter {
    fn begin(&self, ctx: &ResultContext<'_>) -> Option<Box<dyn RowRewriter>> {
        let label = match ctx.statement {
            Some(s) => format!(
                "{}:{}",
                s.leading_keyword,
                s.tables.first().map(|t| t.name.as_str()).unwrap_or("-")
            ),
            None => "unknown".to_owned(),
        };
        Some(Box::new(Label(label.into_bytes())))
    }
}

async fn gateway() -> Gateway {
    env()
        .await
        .start_gateway_with(
            GatewayOptions::default(),
            Plugins {
                gate: Arc::new(MarkerGate),
                filter: Arc::new(AttributingFilter),
            },
        )
        .await
        .expect("gateway with test plugins")
}

/// The label the filter put on `select name from customers where id = 1`.
async fn customers_label(c: &Conn) -> String {
    let simple = portcullis_tests::pg::simple(&c.client, "select name from customers where id = 1")
        .await
        .expect("simple query");
    let extended: String = c
        .query_one("select name from customers where id = $1", &[&1i64])
        .await
        .expect("extended query")
        .get(0);
    let simple = simple[0].rows[0][0].clone().unwrap_or_default();
    assert_eq!(simple, extended, "simple and extended protocol disagree");
    simple
}

#[track_caller]
fn assert_denied(r: Result<impl std::fmt::Debug, tokio_postgres::Error>) {
    match r {
        Ok(v) => panic!("expected the test gate's denial, got {v:?}"),
        Err(e) => {
            let msg = portcullis_tests::pg::message(&e);
            assert_eq!(
                (sqlstate(&e).as_deref(), msg.as_str()),
                (Some("42501"), DENIAL_MESSAGE),
                "{e:?}"
            );
        }
    }
}

#[tokio::test]
async fn rows_are_attributed_to_their_statement() {
    let gw = gateway().await;
    let c = gw.connect("alice", "demo").await.unwrap();
    assert_eq!(customers_label(&c).await, "select:customers");
    let r = portcullis_tests::pg::simple(
        &c.client,
        "select name from customers where id = 1; select status from orders where id = 1; select 'x'",
    )
    .await
    .unwrap();
    let labels: Vec<_> = r.iter().map(|x| x.rows[0][0].clone().unwrap()).collect();
    assert_eq!(labels, ["select:customers", "select:orders", "select:-"]);
}

#[tokio::test]
async fn denials_in_simple_and_extended_protocol() {
    let gw = gateway().await;
    let c = gw.connect("bob", "demo").await.unwrap();
    assert_denied(c.simple_query("select /*deny*/ 1").await);
    assert_denied(c.prepare("select /*deny*/ 1").await);
    assert_denied(c.query("select /*deny*/ $1::int4", &[&1i32]).await);
    // A denied statement in a multi-statement string stops all of them.
    let schema = unique("seam_deny");
    env().await.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(x int)"),
    );
    assert_denied(
        c.simple_query(&format!(
            "insert into {schema}.t values (1); select /*deny*/ 1"
        ))
        .await,
    );
    // (Counted directly: the test filter rewrites every value the gateway returns.)
    assert_eq!(
        env()
            .await
            .admin_sql("demo", &format!("select count(*) from {schema}.t")),
        "0"
    );
    assert_eq!(customers_label(&c).await, "select:customers");
}

#[tokio::test]
async fn attribution_survives_errors_mid_pipeline() {
    let gw = gateway().await;
    let c = gw.connect("alice", "demo").await.unwrap();
    let (a, b, d, e) = futures_util::join!(
        c.query_one("select name from customers where id = 1", &[]),
        c.query_one("select 1/0", &[]),
        c.prepare("selec broken"),
        c.query_one("select status from orders where id = 1", &[]),
    );
    assert_eq!(a.unwrap().get::<_, String>(0), "select:customers");
    assert_eq!(sqlstate(&b.unwrap_err()).as_deref(), Some("22012"));
    assert_eq!(sqlstate(&d.unwrap_err()).as_deref(), Some("42601"));
    assert_eq!(e.unwrap().get::<_, String>(0), "select:orders");
    assert_eq!(customers_label(&c).await, "select:customers");
    assert_denied(c.simple_query("select /*deny*/ 1").await);
}

// COPY FROM STDIN over the extended protocol, as tokio-postgres and libpq
// (PQexecParams) run it: Bind/Execute/Sync, then CopyData..., CopyDone/Sync.
// PostgreSQL ignores the Sync that arrives during copy-in mode and answers
// both Syncs with a single ReadyForQuery; the relay must not wait for a
// second one.

#[tokio::test]
async fn attribution_and_denials_after_copy_in_with_a_prepared_statement() {
    let env = env().await;
    let gw = gateway().await;
    let c = gw.connect("etl-agent", "demo").await.unwrap();
    let schema = unique("seam_copy");
    env.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(x int)"),
    );
    // Kept alive, so no Close/Sync follows the COPY.
    let copy = c
        .prepare(&format!("copy {schema}.t from stdin"))
        .await
        .unwrap();
    let sink = c.copy_in(&copy).await.unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\n2\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);

    assert_eq!(
        customers_label(&c).await,
        "select:customers",
        "first query after COPY IN"
    );
    assert_denied(c.simple_query("select /*deny*/ 1").await);
    assert_eq!(customers_label(&c).await, "select:customers");
}

#[tokio::test]
async fn denial_right_after_copy_in_with_a_prepared_statement() {
    let env = env().await;
    let gw = gateway().await;
    let c = gw.connect("etl-agent", "demo").await.unwrap();
    let schema = unique("seam_copy_deny");
    env.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(x int)"),
    );
    let copy = c
        .prepare(&format!("copy {schema}.t from stdin"))
        .await
        .unwrap();
    let sink = c.copy_in(&copy).await.unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);
    // The very next request is denied: the client must see the denial.
    assert_denied(c.simple_query("select /*deny*/ 1").await);
    assert_eq!(customers_label(&c).await, "select:customers");
}

#[tokio::test]
async fn attribution_after_aborted_copy_in_with_a_prepared_statement() {
    let env = env().await;
    let gw = gateway().await;
    let c = gw.connect("etl-agent", "demo").await.unwrap();
    let schema = unique("seam_copy_abort");
    env.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(x int)"),
    );
    let copy = c
        .prepare(&format!("copy {schema}.t from stdin"))
        .await
        .unwrap();
    {
        // Dropped unfinished: CopyFail/Sync.
        let sink = c.copy_in::<_, Bytes>(&copy).await.unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"3\n")).await.unwrap();
    }
    assert_eq!(
        customers_label(&c).await,
        "select:customers",
        "first query after an aborted COPY IN"
    );
    assert_denied(c.query("select /*deny*/ 2", &[]).await);
}

#[tokio::test]
async fn attribution_after_copy_in_with_a_one_off_statement() {
    // With a statement string tokio-postgres prepares a statement and closes
    // it afterwards (Close/Sync).
    let env = env().await;
    let gw = gateway().await;
    let c = gw.connect("etl-agent", "demo").await.unwrap();
    let schema = unique("seam_copy_str");
    env.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(x int)"),
    );
    let sink = c
        .copy_in(&format!("copy {schema}.t from stdin"))
        .await
        .unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\n2\n")).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    assert_eq!(
        customers_label(&c).await,
        "select:customers",
        "after COPY IN"
    );
    assert_denied(c.simple_query("select /*deny*/ 1").await);
}

#[tokio::test]
async fn attribution_after_libpq_style_copy_in() {
    // Byte for byte what libpq sends for PQexecParams("COPY ... FROM STDIN")
    // followed by PQputCopyData / PQputCopyEnd.
    let env = env().await;
    let gw = gateway().await;
    let schema = unique("seam_copy_raw");
    env.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(x int)"),
    );
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login("alice", "alice-pw", "demo").await.unwrap();
    let sql = format!("copy {schema}.t from stdin");
    let mut parse = vec![0u8];
    parse.extend_from_slice(sql.as_bytes());
    parse.extend_from_slice(&[0, 0, 0]);
    let bind = [0u8, 0, 0, 0, 0, 0, 0, 0];
    let mut batch = raw::message(b'P', &parse);
    batch.extend(raw::message(b'B', &bind));
    batch.extend(raw::message(b'D', b"P\0"));
    batch.extend(raw::message(b'E', &[0, 0, 0, 0, 0]));
    batch.extend(raw::message(b'S', b""));
    c.send(&batch).await.unwrap();
    let t = std::time::Duration::from_secs(20);
    for expected in [b'1', b'2', b'n', b'G'] {
        let m = c.expect_msg(t).await.unwrap();
        assert_eq!(m.tag, expected, "{}", m.describe());
    }
    let mut end = raw::copy_data(b"7\n");
    end.extend(raw::message(b'c', b""));
    end.extend(raw::message(b'S', b""));
    c.send(&end).await.unwrap();
    let msgs = c.until_ready(t).await.unwrap();
    assert_eq!(describe_all(&msgs), ["C(7 bytes)", "Z(1 bytes)"]); // "COPY 1"

    let msgs = c
        .simple_query("select name from customers where id = 1")
        .await
        .unwrap();
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a DataRow");
    assert!(
        row.body.ends_with(b"select:customers"),
        "rows of the first query after COPY were attributed to {:?}",
        String::from_utf8_lossy(&row.body[6..])
    );
    let msgs = c.simple_query("select /*deny*/ 1").await.unwrap();
    let err = first_error(&msgs).expect("an error");
    assert_eq!(
        err.field(b'M').as_deref(),
        Some(DENIAL_MESSAGE),
        "{}",
        err.describe()
    );
}

#[tokio::test]
async fn attribution_after_copy_out_and_portals() {
    let gw = gateway().await;
    let mut c = gw.connect("bob", "demo").await.unwrap();
    let out: Vec<Bytes> = c
        .copy_out("copy (select id from orders where id <= 3 order by id) to stdout")
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(out.concat(), b"1\n2\n3\n");
    assert_eq!(customers_label(&c).await, "select:customers");
    {
        let tx = c.transaction().await.unwrap();
        let p = tx
            .bind("select name from customers order by id", &[])
            .await
            .unwrap();
        for _ in 0..3 {
            let rows = tx.query_portal(&p, 2).await.unwrap();
            assert_eq!(rows.len(), 2);
            for r in rows {
                assert_eq!(r.get::<_, String>(0), "select:customers");
            }
        }
        tx.commit().await.unwrap();
    }
    assert_eq!(customers_label(&c).await, "select:customers");
}

#[tokio::test]
async fn function_calls_are_decided_too() {
    let gw = gateway().await;
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login("alice", "alice-pw", "demo").await.unwrap();
    // FunctionCall: int4pl (oid 177), two binary int4 arguments, binary result.
    let mut body = Vec::new();
    body.extend_from_slice(&177u32.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&2i16.to_be_bytes());
    for v in [40i32, 2] {
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&v.to_be_bytes());
    }
    body.extend_from_slice(&1i16.to_be_bytes());
    c.send(&raw::message(b'F', &body)).await.unwrap();
    let msgs = c
        .until_ready(std::time::Duration::from_secs(20))
        .await
        .unwrap();
    let err = first_error(&msgs)
        .unwrap_or_else(|| panic!("FunctionCall not denied: {:?}", describe_all(&msgs)));
    assert_eq!(err.sqlstate().as_deref(), Some("42501"));
    assert_eq!(
        err.field(b'M').as_deref(),
        Some("function calls denied by the test gate")
    );
    // The session goes on, and its rows are still attributed correctly.
    let msgs = c
        .simple_query("select name from customers where id = 1")
        .await
        .unwrap();
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a DataRow");
    assert!(
        row.body.ends_with(b"select:customers"),
        "{:?}",
        describe_all(&msgs)
    );
}

#[tokio::test]
async fn multi_statement_strings_are_split_like_postgres_splits_them() {
    // Each result set must be attributed to the statement that produced it,
    // so the gateway must cut a string into statements exactly where
    // PostgreSQL does (quotes, dollar quotes, nested comments, E'' strings,
    // standard_conforming_strings, BEGIN ATOMIC bodies, empty statements).
    let gw = gateway().await;
    let c = gw.connect("alice", "demo").await.unwrap();
    let cases: [(&str, &[&str]); 16] = [
        (
            "select 1 as a$b$ from customers where id = 1; select status from orders where id = 1; -- $b$",
            &["select:customers", "select:orders"],
        ),
        (
            "select '/*' from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select '--' from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select 'it''s; fine' from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select $a$ $b$ ; $b$ $a$ from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select E'\\\\', 1 from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select name from customers where id = 1;; ; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select ';' as a, name from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select 1 /* ; */ from customers where id = 1; -- a ; comment\nselect status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select 1 /* outer /* inner ; */ still a comment ; */ from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "do $$ begin perform 1; perform 2; end $$; select name from customers where id = 1",
            &["select:customers"],
        ),
        (
            "select $tag$ ; $$ ; $tag$ from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select E'\\';' from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "select 'a\\'; select status from orders where id = 1",
            &["select:-", "select:orders"],
        ),
        (
            "select 1 as \"a;b\" from customers where id = 1; select status from orders where id = 1",
            &["select:customers", "select:orders"],
        ),
        (
            "create function pg_temp.seam_f() returns int language sql begin atomic select 1; select 2; end; \
             select name from customers where id = 1",
            &["select:customers"],
        ),
    ];
    let mut failures = Vec::new();
    for (sql, expected) in cases {
        let r = match portcullis_tests::pg::simple(&c.client, sql).await {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{sql:?}: error {e}"));
                continue;
            }
        };
        let labels: Vec<String> = r
            .iter()
            .filter(|x| !x.rows.is_empty())
            .map(|x| x.rows[0][0].clone().unwrap_or_default())
            .collect();
        if labels != expected {
            failures.push(format!(
                "{sql:?}: results attributed to {labels:?}, expected {expected:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn statements_reading_secrets_are_seen_however_they_are_written() {
    // The test gate denies any statement that the analyzer says touches
    // `secrets`. Every string below reads that table in PostgreSQL, so every
    // one must be denied; one that gets through means the analysis (or the
    // statement splitting) missed it.
    let gw = gateway().await;
    let c = gw.connect("alice", "demo").await.unwrap();
    let cases = [
        "select * from secrets",
        "select 1; select * from secrets",
        "select * from public.secrets",
        "select * from \"secrets\"",
        "select * from SECRETS",
        "table secrets",
        "select (select value from secrets limit 1)",
        "with x as (select * from secrets) select * from x",
        "select * from customers where exists (select 1 from secrets)",
        "select * from customers c join secrets s on s.id = c.id",
        "explain analyze select * from secrets",
        "copy secrets to stdout",
        "copy (select * from secrets) to stdout",
        "select 1 as a$b$; select * from secrets; -- $b$",
        "/* ; */ select * from secrets",
        "select 1 /* nested /* ; */ comment */; select * from secrets",
        "select 'a\\'; select * from secrets",
        "select * from secrets; select 1",
        "prepare p_secrets as select * from secrets",
        "create temp view v_secrets as select * from secrets",
        "select * from only secrets",
        "select * from secrets for update",
        "delete from secrets where false",
        "update secrets set value = value where false",
    ];
    let mut leaked = Vec::new();
    for sql in cases {
        match c.simple_query(sql).await {
            Ok(_) => leaked.push(format!("{sql:?}: ran")),
            Err(e) => {
                let got = (sqlstate(&e), portcullis_tests::pg::message(&e));
                if got != (Some("42501".to_owned()), SECRETS_DENIAL.to_owned()) {
                    leaked.push(format!("{sql:?}: {got:?}"));
                }
            }
        }
    }
    // Through the extended protocol too.
    for sql in [
        "select * from secrets where id = $1",
        "select value from secrets, customers where customers.id = $1",
    ] {
        match c.query(sql, &[&1i64]).await {
            Ok(rows) => leaked.push(format!("extended {sql:?}: {} rows", rows.len())),
            Err(e) if portcullis_tests::pg::message(&e) == SECRETS_DENIAL => {}
            Err(e) => leaked.push(format!("extended {sql:?}: {e}")),
        }
    }
    assert!(leaked.is_empty(), "not denied:\n{}", leaked.join("\n"));
}
