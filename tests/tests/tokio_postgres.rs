//! tokio-postgres through the gateway (extended protocol, binary formats,
//! pipelining, COPY, cancel, notifications, portals), compared with the same
//! client straight against PostgreSQL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt, TryStreamExt, pin_mut};
use portcullis_tests::pg::{self, Conn, Numeric, Raw, raw_rows, simple, sqlstate};
use portcullis_tests::{EnvOptions, TestEnv, unique};
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

async fn gw(user: &str) -> Conn {
    env()
        .await
        .connect_gateway(user, "demo")
        .await
        .expect("gateway connection")
}

async fn direct() -> Conn {
    env()
        .await
        .connect_direct("demo")
        .await
        .expect("direct connection")
}

#[track_caller]
fn err_state(r: Result<impl std::fmt::Debug, tokio_postgres::Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => sqlstate(&e).unwrap_or_else(|| panic!("error without SQLSTATE: {e:?}")),
    }
}

#[tokio::test]
async fn simple_query_multi_statement_matches_direct() {
    let sql = "select 1 as one, 'two' as two; \
               create temp table t(id int, v text); \
               insert into t select g, 'v' || g from generate_series(1, 5) g; \
               update t set v = null where id = 3; \
               select * from t order by id; \
               delete from t where id > 3; \
               select count(*) as n, string_agg(coalesce(v, 'NULL'), ',' order by id) from t";
    let g = simple(&gw("alice").await.client, sql)
        .await
        .expect("gateway");
    let d = simple(&direct().await.client, sql).await.expect("direct");
    assert_eq!(g, d);
    assert_eq!(g.len(), 7);
    assert_eq!(
        g[0].rows,
        vec![vec![Some("1".to_owned()), Some("two".to_owned())]]
    );
    assert_eq!(g[2].count, 5);
    assert_eq!(g[3].count, 1);
    assert_eq!(g[4].rows.len(), 5);
    assert_eq!(g[4].rows[2], vec![Some("3".to_owned()), None]);
    assert_eq!(g[5].count, 2);
    assert_eq!(
        g[6].rows,
        vec![vec![Some("3".to_owned()), Some("v1,v2,NULL".to_owned())]]
    );
}

#[tokio::test]
async fn simple_query_error_mid_string_rolls_back_and_connection_survives() {
    let c = gw("bob").await;
    c.batch_execute("create temp table t(x int)").await.unwrap();
    let e = c
        .simple_query("insert into t values (1); select 1/0; insert into t values (2)")
        .await;
    assert_eq!(err_state(e), "22012");
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "the implicit transaction of the failed string must roll back"
    );
}

#[tokio::test]
async fn extended_params_of_many_types_round_trip() {
    let c = gw("alice").await;
    let d = direct().await;
    let ts = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
    let json = serde_json::json!({"a": [1, 2, {"b": null}], "s": "é\"\\"});
    let bytea: Vec<u8> = (0..=255u8).collect();
    let ints = vec![1i32, -2, 3];
    let texts = vec![Some("a".to_owned()), None, Some("c,d".to_owned())];
    let none_i32: Option<i32> = None;
    let none_text: Option<&str> = None;
    let numeric = Numeric("-12345678901234567890.000123".into());
    let sql = "select $1::int2, $2::int4, $3::int8, $4::float4, $5::float8, $6::bool, $7::text, $8::varchar, \
               $9::numeric, $10::timestamptz, $11::bytea, $12::int4[], $13::text[], $14::json, $15::jsonb, \
               $16::int4, $17::text, $18::\"char\", $19::oid, $20::name";
    let name = "a_name".to_owned();
    let params: Vec<&(dyn ToSql + Sync)> = vec![
        &i16::MIN,
        &i32::MAX,
        &i64::MIN,
        &1.5f32,
        &-2.25e300f64,
        &true,
        &"héllo\tworld",
        &"varchar",
        &numeric,
        &ts,
        &bytea,
        &ints,
        &texts,
        &json,
        &json,
        &none_i32,
        &none_text,
        &(b'x' as i8),
        &42u32,
        &name,
    ];
    let row = c
        .query_one(sql, &params)
        .await
        .expect("query with many parameter types");
    assert_eq!(row.get::<_, i16>(0), i16::MIN);
    assert_eq!(row.get::<_, i32>(1), i32::MAX);
    assert_eq!(row.get::<_, i64>(2), i64::MIN);
    assert_eq!(row.get::<_, f32>(3), 1.5);
    assert_eq!(row.get::<_, f64>(4), -2.25e300);
    assert!(row.get::<_, bool>(5));
    assert_eq!(row.get::<_, String>(6), "héllo\tworld");
    assert_eq!(row.get::<_, String>(7), "varchar");
    assert_eq!(row.get::<_, SystemTime>(9), ts);
    assert_eq!(row.get::<_, Vec<u8>>(10), bytea);
    assert_eq!(row.get::<_, Vec<i32>>(11), ints);
    assert_eq!(row.get::<_, Vec<Option<String>>>(12), texts);
    assert_eq!(row.get::<_, serde_json::Value>(13), json);
    assert_eq!(row.get::<_, serde_json::Value>(14), json);
    assert_eq!(row.get::<_, Option<i32>>(15), None);
    assert_eq!(row.get::<_, Option<String>>(16), None);
    assert_eq!(row.get::<_, i8>(17), b'x' as i8);
    assert_eq!(row.get::<_, u32>(18), 42);
    assert_eq!(row.get::<_, String>(19), "a_name");
    let numeric_text: String = c
        .query_one("select ($1::numeric)::text", &[&numeric])
        .await
        .unwrap()
        .get(0);
    assert_eq!(numeric_text, "-12345678901234567890.000123");

    // Byte-for-byte the same binary results as PostgreSQL gives directly.
    let g = raw_rows(&c, sql, &params).await.unwrap();
    let dr = raw_rows(&d, sql, &params).await.unwrap();
    assert_eq!(g, dr);
}

#[tokio::test]
async fn binary_results_of_many_types_match_direct() {
    let sql = "select 1::int2 a, 2::int4 b, 3::int8 c, 1.25::float4 d, 'NaN'::float8 e, 12.3400::numeric f, \
               'NaN'::numeric g, true h, 'x'::text i, 'y'::char(3) j, '\\xdeadbeef'::bytea k, \
               '2024-02-29'::date l, '23:59:59.999999'::time m, '2024-02-29 12:00:00+05:30'::timestamptz n, \
               '2024-02-29 12:00:00'::timestamp o, '1 year 2 mons 3 days 04:05:06.7'::interval p, \
               'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid q, '192.168.0.1/24'::inet r, '10.0.0.0/8'::cidr s, \
               '08:00:2b:01:02:03'::macaddr t, '(1,2)'::point u, '{\"k\": [1, 2.5]}'::jsonb v, '12.34'::money w, \
               array[[1,2],[3,4]]::int4[] x, array['a', null]::text[] y, '[1,10)'::int4range z, \
               row(1, 'x') aa, 'infinity'::timestamptz ab, B'1011'::bit(4) ac, 'a & b'::tsquery ad, \
               null::int4 ae, '<x/>'::xml af";
    let g = raw_rows(&gw("bob").await.client, sql, &[])
        .await
        .expect("gateway");
    let d = raw_rows(&direct().await.client, sql, &[])
        .await
        .expect("direct");
    assert_eq!(g, d);
    assert_eq!(g.columns.len(), 32);
    assert_eq!(g.rows[0][30], Raw(None));
}

#[tokio::test]
async fn demo_queries_match_direct() {
    let queries = [
        "select * from customers order by id",
        "select * from orders order by id",
        "select c.name, count(o.id), sum(o.amount), min(o.created_at), max(o.created_at) \
         from customers c join orders o on o.customer_id = c.id group by c.name order by c.name",
        "select status, avg(amount), stddev(amount) from orders group by rollup(status) order by status nulls last",
        "select * from customer_contacts where email like '%example.net' order by name, email",
        "select id, name, length(value) from secrets order by id",
        "select relname, relkind from pg_class where relnamespace = 'public'::regnamespace order by relname",
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 100) select sum(n), array_agg(n) from r",
    ];
    let g = gw("alice").await;
    let d = direct().await;
    for q in queries {
        let a = raw_rows(&g, q, &[])
            .await
            .unwrap_or_else(|e| panic!("gateway: {q}: {e}"));
        let b = raw_rows(&d, q, &[])
            .await
            .unwrap_or_else(|e| panic!("direct: {q}: {e}"));
        assert_eq!(a, b, "{q}");
        assert!(!a.rows.is_empty(), "{q}");
    }
    let n: i64 = g
        .query_one("select count(*) from customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
}

#[tokio::test]
async fn prepared_statements_are_reused() {
    let c = gw("etl-agent").await;
    let by_id = c
        .prepare("select id, email from customers where id = $1")
        .await
        .unwrap();
    let count = c
        .prepare(
            "select count(*) from orders where customer_id = $1 and amount > $2::float8::numeric",
        )
        .await
        .unwrap();
    assert_eq!(by_id.params(), &[tokio_postgres::types::Type::INT8]);
    for id in 1..=200i64 {
        let row = c.query_one(&by_id, &[&id]).await.unwrap();
        assert_eq!(row.get::<_, i64>(0), id);
        let n: i64 = c.query_one(&count, &[&id, &0.0f64]).await.unwrap().get(0);
        assert_eq!(n, 5, "customer {id} has 5 orders");
    }
    // Many statements alive at once, then all used again.
    let mut stmts = Vec::new();
    for i in 0..150 {
        stmts.push((
            i,
            c.prepare(&format!("select {i}::int4 + $1::int4"))
                .await
                .unwrap(),
        ));
    }
    for (i, s) in &stmts {
        let v: i32 = c.query_one(s, &[&1i32]).await.unwrap().get(0);
        assert_eq!(v, i + 1);
    }
    drop(stmts); // sends Close for each
    let v: i32 = c.query_one("select 5", &[]).await.unwrap().get(0);
    assert_eq!(v, 5);
    // Server-side prepared statements via SQL too.
    c.batch_execute("prepare p(int) as select $1 * 2")
        .await
        .unwrap();
    let r = simple(&c, "execute p(21)").await.unwrap();
    assert_eq!(r[0].rows, vec![vec![Some("42".to_owned())]]);
    let e = c.query("prepare p(int) as select 1", &[]).await;
    assert_eq!(err_state(e), "42P05");
}

#[tokio::test]
async fn pipelined_queries_complete_in_order() {
    let c = gw("alice").await;
    let s1 = c.prepare("select $1::int4 * 10").await.unwrap();
    let (a, b, cc, d, e, f) = futures_util::join!(
        c.query_one(&s1, &[&1i32]),
        c.query_one(&s1, &[&2i32]),
        c.query("select g from generate_series(1, 1000) g", &[]),
        c.query_one("select count(*) from customers", &[]),
        c.query_one(&s1, &[&3i32]),
        c.simple_query("select 'simple in the pipeline'"),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 10);
    assert_eq!(b.unwrap().get::<_, i32>(0), 20);
    assert_eq!(cc.unwrap().len(), 1000);
    assert_eq!(d.unwrap().get::<_, i64>(0), 200);
    assert_eq!(e.unwrap().get::<_, i32>(0), 30);
    let f = f.unwrap();
    assert!(
        matches!(&f[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("simple in the pipeline"))
    );

    // A deep pipeline: 500 queries in flight at once.
    let futs: Vec<_> = (0..500i32)
        .map(|i| {
            let c = &c;
            let s1 = &s1;
            async move { c.query_one(s1, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
        })
        .collect();
    let results = futures_util::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32 * 10);
    }
}

#[tokio::test]
async fn error_mid_pipeline_leaves_connection_usable() {
    let c = gw("bob").await;
    let (a, b, cc, d) = futures_util::join!(
        c.query_one("select 1", &[]),
        c.query_one("select 1/0", &[]),
        c.query_one("select 'after the error'", &[]),
        c.query_one("select * from no_such_table", &[]),
    );
    assert_eq!(a.unwrap().get::<_, i32>(0), 1);
    assert_eq!(err_state(b), "22012");
    assert_eq!(cc.unwrap().get::<_, &str>(0), "after the error");
    assert_eq!(err_state(d), "42P01");
    // Parse error of a prepared statement in the middle.
    let (a, b, cc) = futures_util::join!(
        c.prepare("select $1::int4"),
        c.prepare("selec oops"),
        c.query_one("select 2", &[])
    );
    assert!(a.is_ok());
    assert_eq!(err_state(b), "42601");
    assert_eq!(cc.unwrap().get::<_, i32>(0), 2);
    let n: i64 = c
        .query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

#[tokio::test]
async fn error_fields_match_direct() {
    let g = gw("alice").await;
    let d = direct().await;
    for c in [&g, &d] {
        c.batch_execute("create temp table u(id int primary key, v text check (v <> 'bad'))")
            .await
            .unwrap();
        c.batch_execute("insert into u values (1, 'ok')")
            .await
            .unwrap();
    }
    let cases = [
        "select nosuch from customers",
        "insert into u values (1, 'dup')",
        "insert into u values (2, 'bad')",
        "select 'abc'::int",
        "select * from customers where id = 'x'",
        "do $$ begin raise exception 'boom' using detail = 'the detail', hint = 'the hint', errcode = 'P0099'; end $$",
    ];
    for q in cases {
        let eg = g.execute(q, &[]).await.expect_err(q);
        let ed = d.execute(q, &[]).await.expect_err(q);
        let (eg, ed) = (
            eg.as_db_error().expect("db error"),
            ed.as_db_error().expect("db error"),
        );
        assert_eq!(
            (
                eg.code(),
                eg.severity(),
                eg.message(),
                eg.detail(),
                eg.hint(),
                eg.position(),
                eg.constraint(),
                eg.table()
            ),
            (
                ed.code(),
                ed.severity(),
                ed.message(),
                ed.detail(),
                ed.hint(),
                ed.position(),
                ed.constraint(),
                ed.table()
            ),
            "{q}"
        );
    }
    let e = g
        .execute("insert into u values (1, 'dup')", &[])
        .await
        .unwrap_err();
    let db = e.as_db_error().unwrap();
    assert_eq!(db.code().code(), "23505");
    assert_eq!(db.detail(), Some("Key (id)=(1) already exists."));
    assert_eq!(db.constraint(), Some("u_pkey"));
}

#[tokio::test]
async fn transactions_savepoints_and_rollback() {
    let mut c = gw("alice").await;
    c.batch_execute("create temp table t(x int)").await.unwrap();
    {
        let mut tx = c.transaction().await.unwrap();
        tx.execute("insert into t values (1)", &[]).await.unwrap();
        {
            let sp = tx.transaction().await.unwrap(); // SAVEPOINT
            sp.execute("insert into t values (2)", &[]).await.unwrap();
            sp.rollback().await.unwrap(); // ROLLBACK TO SAVEPOINT
        }
        {
            let sp = tx.savepoint("named_sp").await.unwrap();
            sp.execute("insert into t values (3)", &[]).await.unwrap();
            sp.commit().await.unwrap(); // RELEASE
        }
        tx.commit().await.unwrap();
    }
    let v: Vec<i32> = c
        .query("select x from t order by x", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(v, vec![1, 3]);

    {
        let tx = c.transaction().await.unwrap();
        tx.execute("insert into t values (4)", &[]).await.unwrap();
        tx.rollback().await.unwrap();
    }
    {
        // Dropped without commit: rolled back.
        let tx = c.transaction().await.unwrap();
        tx.execute("insert into t values (5)", &[]).await.unwrap();
    }
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 2);

    // An error aborts the transaction until rollback.
    c.batch_execute("begin").await.unwrap();
    assert_eq!(err_state(c.query("select 1/0", &[]).await), "22012");
    assert_eq!(err_state(c.query("select 1", &[]).await), "25P02");
    c.batch_execute("rollback").await.unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );

    // Recover inside the transaction with a savepoint.
    c.batch_execute("begin; insert into t values (6); savepoint s; select 1/0;")
        .await
        .unwrap_err();
    c.batch_execute("rollback to savepoint s; insert into t values (7); commit")
        .await
        .unwrap();
    let v: Vec<i32> = c
        .query("select x from t order by x", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(v, vec![1, 3, 6, 7]);

    // Isolation levels and read-only transactions pass through.
    let tx = c
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::Serializable)
        .read_only(true)
        .start()
        .await
        .unwrap();
    let iso: String = tx
        .query_one("show transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(iso, "serializable");
    assert_eq!(
        // (temporary tables are writable in read-only transactions; real ones are not)
        err_state(
            tx.execute(
                "insert into orders (customer_id, amount, status) values (1, 1, 'paid')",
                &[]
            )
            .await
        ),
        "25006"
    );
}

#[tokio::test]
async fn session_state_persists_on_the_one_upstream_connection() {
    let c = gw("bob").await;
    c.batch_execute("set timezone = 'Asia/Tokyo'; set search_path = pg_catalog, public; set application_name = 'changed'").await.unwrap();
    let tz: String = c.query_one("show timezone", &[]).await.unwrap().get(0);
    assert_eq!(tz, "Asia/Tokyo");
    let s: String = c
        .query_one(
            "select to_char(timestamptz '2024-01-01 00:00:00+00', 'HH24:MI TZ')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(s, "09:00 JST");
    let pid1: i32 = c
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    for _ in 0..20 {
        let pid: i32 = c
            .query_one("select pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(
            pid, pid1,
            "one upstream backend per client for the whole session"
        );
    }
    c.batch_execute("create temp table only_mine(x int); insert into only_mine values (1)")
        .await
        .unwrap();
    let other = gw("bob").await;
    assert_eq!(
        err_state(other.query("select * from only_mine", &[]).await),
        "42P01"
    );
}

#[tokio::test]
async fn copy_in_and_out_text_match_direct() {
    let env = env().await;
    let c = gw("etl-agent").await;
    let schema = unique("tp_copy");
    c.batch_execute(&format!("create schema {schema}; create table {schema}.t(id int, name text, score numeric, at timestamptz)"))
        .await
        .unwrap();
    let sink = c
        .copy_in(&format!("copy {schema}.t from stdin"))
        .await
        .unwrap();
    pin_mut!(sink);
    let mut expected = String::new();
    for chunk in 0..20 {
        let mut buf = String::new();
        for i in chunk * 1000..(chunk + 1) * 1000 {
            let name = if i % 7 == 0 {
                "\\N".to_owned()
            } else {
                format!("name\\t{i}")
            };
            buf.push_str(&format!(
                "{i}\t{name}\t{}.{}\t2024-01-01 00:00:{:02}+00\n",
                i,
                i % 100,
                i % 60
            ));
        }
        expected.push_str(&buf);
        sink.send(Bytes::from(buf)).await.unwrap();
    }
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 20_000);

    let copy_out = |conn: Conn, q: String| async move {
        let stream = conn.copy_out(&q).await.unwrap();
        let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
        chunks.concat()
    };
    let q = format!("copy (select * from {schema}.t order by id) to stdout");
    let via_gw = copy_out(gw("alice").await, q.clone()).await;
    let via_direct = copy_out(env.connect_direct("demo").await.unwrap(), q).await;
    assert_eq!(via_gw, via_direct);
    assert_eq!(via_gw.iter().filter(|&&b| b == b'\n').count(), 20_000);
    let first =
        String::from_utf8(via_gw[..via_gw.iter().position(|&b| b == b'\n').unwrap()].to_vec())
            .unwrap();
    assert_eq!(first, "0\t\\N\t0.0\t2024-01-01 00:00:00+00");

    // CSV with a header through the gateway.
    let csv = copy_out(gw("bob").await, format!("copy (select id, name from {schema}.t where id < 3 order by id) to stdout with (format csv, header)")).await;
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "id,name\n0,\n1,name\t1\n2,name\t2\n"
    );
}

#[tokio::test]
async fn copy_binary_round_trip_matches_direct() {
    let env = env().await;
    let c = gw("etl-agent").await;
    let schema = unique("tp_copybin");
    c.batch_execute(&format!(
        "create schema {schema}; create table {schema}.src as select * from orders; \
         create table {schema}.dst (like {schema}.src)"
    ))
    .await
    .unwrap();
    let out = |conn: Conn, q: String| async move {
        let chunks: Vec<Bytes> = conn
            .copy_out(&q)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        chunks.concat()
    };
    let q = format!("copy (select * from {schema}.src order by id) to stdout (format binary)");
    let bin = out(gw("alice").await, q.clone()).await;
    let bin_direct = out(env.connect_direct("demo").await.unwrap(), q).await;
    assert_eq!(bin, bin_direct);
    assert!(
        bin.starts_with(b"PGCOPY\n\xff\r\n\0"),
        "binary COPY signature"
    );

    // Feed it back in, in odd-sized chunks.
    let sink = c
        .copy_in(&format!("copy {schema}.dst from stdin (format binary)"))
        .await
        .unwrap();
    pin_mut!(sink);
    for chunk in bin.chunks(997) {
        sink.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    assert_eq!(sink.finish().await.unwrap(), 1000);
    let same: bool = c
        .query_one(
            &format!("select not exists (select * from {schema}.src except all select * from {schema}.dst)"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(same);
}

#[tokio::test]
async fn copy_in_error_and_abort_leave_connection_usable() {
    let c = gw("alice").await;
    c.batch_execute("create temp table t(x int)").await.unwrap();
    // Bad data: the server rejects the COPY.
    let sink = c.copy_in("copy t from stdin").await.unwrap();
    pin_mut!(sink);
    sink.send(Bytes::from_static(b"1\n2\nnot-an-int\n"))
        .await
        .unwrap();
    let e = sink.finish().await;
    assert_eq!(err_state(e), "22P02");
    // Client-side abort: dropping the sink sends CopyFail.
    {
        let sink = c.copy_in::<_, Bytes>("copy t from stdin").await.unwrap();
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"5\n")).await.unwrap();
    }
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // COPY TO from a query that fails mid-way.
    let stream = c
        .copy_out("copy (select 1 / (g - 5000) from generate_series(1, 10000) g) to stdout")
        .await;
    let e = match stream {
        Ok(s) => s.try_collect::<Vec<Bytes>>().await.map(|_| ()),
        Err(e) => Err(e),
    };
    assert_eq!(err_state(e), "22012");
    assert_eq!(
        c.query_one("select 3", &[]).await.unwrap().get::<_, i32>(0),
        3
    );
}

#[tokio::test]
async fn cancel_a_running_query() {
    let env = env().await;
    let app = unique("cancel");
    let uri = env.gw.uri_with(
        "alice",
        "alice-pw",
        "demo",
        &format!("sslmode=disable&application_name={app}"),
    );
    let c = pg::connect(&uri).await.unwrap();
    let token = c.cancel_token();
    let query = tokio::spawn(async move {
        let r = c.query("select pg_sleep(30)", &[]).await.map(|_| ());
        (r, c)
    });
    // Wait until PostgreSQL is really running it.
    let d = direct().await;
    portcullis_tests::eventually(
        Duration::from_secs(20),
        "pg_sleep running upstream",
        || async {
            let b = pg::backends_with_app(&d, &app).await?;
            anyhow::ensure!(b.iter().any(|(_, _, state)| state == "active"), "{b:?}");
            Ok(())
        },
    )
    .await
    .unwrap();
    token
        .cancel_query(NoTls)
        .await
        .expect("sending the cancel request");
    let (r, c) = tokio::time::timeout(Duration::from_secs(20), query)
        .await
        .expect("query still running 20 s after cancel")
        .unwrap();
    let e = r.expect_err("pg_sleep(30) should have been cancelled");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{e:?}");
    assert_eq!(pg::message(&e), "canceling statement due to user request");
    assert_eq!(
        c.query_one("select 'still usable'", &[])
            .await
            .unwrap()
            .get::<_, &str>(0),
        "still usable"
    );
}

#[tokio::test]
async fn cancel_of_an_idle_session_is_harmless() {
    let c = gw("bob").await;
    c.cancel_token()
        .cancel_query(NoTls)
        .await
        .expect("cancel request");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn listen_notify_through_async_messages() {
    let env = env().await;
    let channel = unique("tp_chan");
    let mut listener = gw("alice").await;
    listener
        .batch_execute(&format!("listen {channel}"))
        .await
        .unwrap();

    let sender = gw("bob").await;
    sender
        .execute("select pg_notify($1, $2)", &[&channel, &"first"])
        .await
        .unwrap();
    sender
        .batch_execute(&format!("notify {channel}, 'second'"))
        .await
        .unwrap();
    // A notification from a direct PostgreSQL session reaches the gateway client too.
    let d = env.connect_direct("demo").await.unwrap();
    d.batch_execute(&format!("notify {channel}, 'from direct'"))
        .await
        .unwrap();
    // Transactional: nothing until commit, dropped on rollback.
    sender
        .batch_execute(&format!("begin; notify {channel}, 'rolled back'; rollback"))
        .await
        .unwrap();
    sender
        .batch_execute(&format!("begin; notify {channel}, 'committed'; commit"))
        .await
        .unwrap();

    let mut got = Vec::new();
    for _ in 0..4 {
        let n = tokio::time::timeout(Duration::from_secs(20), listener.next_notification())
            .await
            .unwrap_or_else(|_| panic!("notification missing after {got:?}"))
            .expect("connection closed");
        assert_eq!(n.channel(), channel);
        got.push(n.payload().to_owned());
    }
    assert_eq!(got, ["first", "second", "from direct", "committed"]);

    // While idle, notifications still arrive (no query needed to flush them).
    sender
        .batch_execute(&format!("notify {channel}, 'idle'"))
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(20), listener.next_notification())
        .await
        .expect("idle notification")
        .unwrap();
    assert_eq!(n.payload(), "idle");
    listener.batch_execute("unlisten *").await.unwrap();
}

#[tokio::test]
async fn notices_arrive_as_async_messages() {
    let mut c = gw("alice").await;
    c.batch_execute("do $$ begin raise notice 'note %', 1; raise warning 'warn %', 2; end $$")
        .await
        .unwrap();
    let n1 = tokio::time::timeout(Duration::from_secs(10), c.next_notice())
        .await
        .unwrap()
        .unwrap();
    let n2 = tokio::time::timeout(Duration::from_secs(10), c.next_notice())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (n1.severity(), n1.message(), n1.code().code()),
        ("NOTICE", "note 1", "00000")
    );
    assert_eq!(
        (n2.severity(), n2.message(), n2.code().code()),
        ("WARNING", "warn 2", "01000")
    );
}

#[tokio::test]
async fn portal_with_row_limit() {
    let mut c = gw("bob").await;
    let tx = c.transaction().await.unwrap();
    let stmt = tx
        .prepare("select g, 'row ' || g from generate_series(1, $1::int4) g")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[&25i32]).await.unwrap();
    let mut sizes = Vec::new();
    let mut all = Vec::new();
    loop {
        let rows = tx.query_portal(&portal, 10).await.unwrap();
        sizes.push(rows.len());
        all.extend(rows.iter().map(|r| r.get::<_, i32>(0)));
        if rows.len() < 10 {
            break;
        }
    }
    assert_eq!(sizes, vec![10, 10, 5]);
    assert_eq!(all, (1..=25).collect::<Vec<_>>());
    // Two portals interleaved.
    let p1 = tx
        .bind("select g from generate_series(1, 6) g", &[])
        .await
        .unwrap();
    let p2 = tx
        .bind("select g from generate_series(101, 106) g", &[])
        .await
        .unwrap();
    let mut seq = Vec::new();
    for _ in 0..3 {
        seq.extend(
            tx.query_portal(&p1, 2)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0)),
        );
        seq.extend(
            tx.query_portal(&p2, 2)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<_, i32>(0)),
        );
    }
    assert_eq!(seq, vec![1, 2, 101, 102, 3, 4, 103, 104, 5, 6, 105, 106]);
    tx.commit().await.unwrap();

    // SQL cursors too.
    let r = simple(&c, "begin; declare cur cursor for select g from generate_series(1, 7) g; fetch 3 from cur; fetch all from cur; commit").await.unwrap();
    assert_eq!(r[2].rows.len(), 3);
    assert_eq!(r[3].rows.len(), 4);
}

#[tokio::test]
async fn query_raw_streams_large_results() {
    let c = gw("etl-agent").await;
    let stream = c
        .query_raw(
            "select g, md5(g::text) from generate_series(1, $1::int4) g",
            [300_000i32],
        )
        .await
        .unwrap();
    pin_mut!(stream);
    let mut n = 0u64;
    let mut sum = 0i64;
    while let Some(row) = stream.next().await {
        let row = row.unwrap();
        n += 1;
        sum += row.get::<_, i32>(0) as i64;
    }
    assert_eq!(n, 300_000);
    assert_eq!(sum, 300_000 * 300_001 / 2);
    assert_eq!(stream.rows_affected(), Some(300_000));
}

#[tokio::test]
async fn large_values_both_ways() {
    let c = gw("alice").await;
    let big: Vec<u8> = (0..16 * 1024 * 1024)
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let row = c
        .query_one(
            "select $1::bytea, length($1::bytea), md5($1::bytea)",
            &[&big],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), big);
    assert_eq!(row.get::<_, i32>(1), 16 * 1024 * 1024);
    let text: String = c
        .query_one("select repeat('abcdefgh', 4 * 1024 * 1024)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(text.len(), 32 * 1024 * 1024);
    // A 4 MiB statement text.
    let long_sql = format!("select length('{}')", "y".repeat(4 * 1024 * 1024));
    let v: i32 = c.query_one(long_sql.as_str(), &[]).await.unwrap().get(0);
    assert_eq!(v, 4 * 1024 * 1024);
    let v: Vec<tokio_postgres::SimpleQueryMessage> = c.simple_query(&long_sql).await.unwrap();
    assert!(
        matches!(&v[1], tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("4194304"))
    );
}

#[tokio::test]
async fn many_concurrent_clients() {
    let env = env().await;
    let mut tasks = Vec::new();
    for i in 0..24i64 {
        let user = ["alice", "bob", "etl-agent"][i as usize % 3];
        let uri = env.gateway_uri(user, "demo");
        tasks.push(tokio::spawn(async move {
            let c = pg::connect(&uri).await?;
            for j in 0..40i64 {
                let id = 1 + (i * 40 + j) % 200;
                let got: i64 = c
                    .query_one("select id from customers where id = $1", &[&id])
                    .await?
                    .get(0);
                anyhow::ensure!(got == id, "client {i} asked for {id}, got {got}");
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn describe_statement_metadata_matches_direct() {
    let sql = "select c.id, c.email, o.amount, o.created_at from customers c join orders o on o.customer_id = c.id \
               where c.id = $1 and o.amount > $2 and o.status = any($3)";
    let g = gw("alice").await.prepare(sql).await.unwrap();
    let d = direct().await.prepare(sql).await.unwrap();
    assert_eq!(g.params(), d.params());
    let cols = |s: &tokio_postgres::Statement| {
        s.columns()
            .iter()
            .map(|c| {
                (
                    c.name().to_owned(),
                    c.type_().clone(),
                    c.table_oid(),
                    c.column_id(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(cols(&g), cols(&d));
    assert_eq!(g.params().len(), 3);
    assert_eq!(g.params()[2], tokio_postgres::types::Type::TEXT_ARRAY);
}
