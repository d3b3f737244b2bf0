//! Masking cannot be bypassed: the attacker's routes around the row masks, each run
//! as alice (a masked identity) through a TCP tap that records every byte the gateway
//! sends her, with the gateway running the standard `pii-mask` policy alone (its demo
//! settings; no guardrails), against a real PostgreSQL.
//!
//! Routes: user-defined functions (SQL, PL/pgSQL, `SECURITY DEFINER`, set-returning in
//! `FROM`, inside a view, on a sensitive argument, schema-qualified or not, shadowing a
//! built-in by overloading or by `search_path`, created through the gateway after the
//! catalog was loaded), built-ins that run a query given as text, whole-row
//! references, arrays and JSON, RETURNING, CTEs, UNION, subqueries, LATERAL, VALUES,
//! COPY, DO, notices and errors raised with values, prepared statements and cursors.
//! Each is answered masked, or denied; bob (exempt) sees the values, and harmless
//! built-ins on non-sensitive columns stay unmasked.
//!
//! Needs the policy components: `bash policies-rs/build.sh`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::config::PolicyConfig;
use portcullis_tests::pg::{self, Conn, sqlstate};
use portcullis_tests::tap::{Tap, assert_no_leak};
use portcullis_tests::{EnvOptions, GatewayOptions, TestEnv, password_for};
use tokio::sync::OnceCell;
use tokio_postgres::SimpleQueryMessage;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();
static SETUP: OnceCell<()> = OnceCell::const_new();

/// The directory of the built policies (`PORTCULLIS_TEST_POLICIES` overrides it).
fn policies_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_POLICIES") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target tmp dir has a parent")
        .join("policies")
}

fn mask_only() -> Vec<PolicyConfig> {
    vec![portcullis::demo::demo_mask_policy(Some(&policies_dir())).expect("pii-mask component")]
}

/// The functions and views a DBA created before the gateway's first session (so the
/// gateway's first catalog load sees them).
const SETUP_SQL: &str = r#"
CREATE FUNCTION public.lookup_ssn(int) RETURNS text LANGUAGE sql
    AS 'SELECT ssn FROM customers WHERE id = $1';
CREATE FUNCTION public.lookup_ssn_pl(int) RETURNS text LANGUAGE plpgsql
    AS $$ BEGIN RETURN (SELECT ssn FROM customers WHERE id = $1); END $$;
CREATE FUNCTION public.lookup_ssn_definer(int) RETURNS text LANGUAGE sql SECURITY DEFINER
    AS 'SELECT ssn FROM customers WHERE id = $1';
CREATE FUNCTION public.all_customers() RETURNS SETOF customers LANGUAGE sql
    AS 'SELECT * FROM customers ORDER BY id';
CREATE FUNCTION public.all_ssns() RETURNS TABLE (cid bigint, s text) LANGUAGE sql
    AS 'SELECT id, ssn FROM customers ORDER BY id';
CREATE FUNCTION public.echo(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
CREATE FUNCTION public.lower(int) RETURNS text LANGUAGE sql
    AS 'SELECT email FROM customers WHERE id = $1';
CREATE SCHEMA sneaky;
CREATE FUNCTION sneaky.upper(text) RETURNS text LANGUAGE sql
    AS 'SELECT ssn FROM customers ORDER BY id LIMIT 1';
CREATE VIEW public.v_lookup AS SELECT id, lookup_ssn(id::int) AS s FROM customers;
CREATE FUNCTION public.noisy(int) RETURNS int LANGUAGE plpgsql AS $$
    BEGIN RAISE NOTICE 'ssn %', (SELECT ssn FROM customers WHERE id = $1); RETURN 1; END $$;
CREATE FUNCTION public.warner(int) RETURNS int LANGUAGE plpgsql AS $$
    BEGIN RAISE WARNING '%', (SELECT email FROM customers WHERE id = $1); RETURN 1; END $$;
CREATE FUNCTION public.raiser(int) RETURNS int LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION USING ERRCODE = '42P01',
        MESSAGE = (SELECT ssn FROM customers WHERE id = $1); END $$;
CREATE TABLE public.notes (t text);
CREATE FUNCTION public.ssn_of(int, int) RETURNS text LANGUAGE sql
    AS 'SELECT ssn FROM customers WHERE id = $1';
CREATE OPERATOR public.### (LEFTARG = int, RIGHTARG = int, FUNCTION = ssn_of);
"#;

async fn env() -> &'static TestEnv {
    let env = portcullis_tests::shared(&ENV, || EnvOptions {
        gateway: GatewayOptions {
            policies: mask_only(),
            ..GatewayOptions::default()
        },
        ..EnvOptions::default()
    })
    .await;
    SETUP
        .get_or_init(|| async {
            env.connect_direct("demo")
                .await
                .unwrap()
                .batch_execute(SETUP_SQL)
                .await
                .expect("setup");
        })
        .await;
    env
}

/// Every plain sensitive value of the demo data, in the forms a leak could take.
async fn forbidden() -> Vec<String> {
    let direct = env().await.connect_direct("demo").await.unwrap();
    let rows = direct
        .query("SELECT email, phone, ssn, card_number FROM customers", &[])
        .await
        .unwrap();
    let mut out = Vec::new();
    for r in rows {
        for i in 0..4 {
            let v: String = r.get(i);
            out.push(v.clone());
            if i >= 2 {
                out.push(v.chars().filter(char::is_ascii_digit).collect());
            }
        }
    }
    out
}

async fn connect(uri: &str) -> Conn {
    pg::connect(uri).await.expect("connect")
}

/// Simple-protocol rows as text, or the SQLSTATE.
async fn simple_rows(c: &Conn, sql: &str) -> Result<Vec<Vec<Option<String>>>, String> {
    match c.simple_query(sql).await {
        Ok(msgs) => Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(r) => {
                    Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                }
                _ => None,
            })
            .collect()),
        Err(e) => Err(sqlstate(&e).unwrap_or_else(|| e.to_string())),
    }
}

/// A masked cell: the derived mask (`***`) or NULL (types that cannot hold it).
fn masked(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(|s| s == "***")
}

/// Statements whose every column is computed through an opaque function: each must
/// come back with every cell masked.
const OPAQUE_QUERIES: &[&str] = &[
    "SELECT lookup_ssn(1)",
    "SELECT public.lookup_ssn(1)",
    "SELECT lookup_ssn_pl(1), lookup_ssn_definer(2)",
    "SELECT lookup_ssn(id::int) FROM customers ORDER BY id",
    "SELECT echo(ssn) FROM customers ORDER BY id",
    "SELECT lower(3)",
    "SELECT public.lower(3)",
    "SELECT s FROM all_ssns()",
    "SELECT * FROM all_ssns()",
    "SELECT c.ssn, c.email FROM all_customers() c",
    "SELECT s FROM v_lookup ORDER BY id",
    "SELECT upper(s) FROM v_lookup ORDER BY id",
    "SELECT x FROM (SELECT lookup_ssn(1) AS x) s",
    "WITH x AS (SELECT lookup_ssn(1) AS s) SELECT s FROM x",
    "SELECT lookup_ssn(1) UNION SELECT 'a'",
    "SELECT (SELECT lookup_ssn(1))",
    "SELECT l.s FROM customers c, LATERAL (SELECT lookup_ssn(c.id::int) AS s) l",
    "VALUES (lookup_ssn(1))",
    "SELECT row_to_json(t) FROM all_ssns() t",
    "SELECT query_to_xml('SELECT ssn FROM customers', true, false, '')",
    "SELECT table_to_xml('customers', true, false, '')",
    "SELECT pg_catalog.query_to_xml('SELECT email FROM customers', true, false, '')",
    // A DBA's operator over a function reading customers.
    "SELECT id::int ### 0 FROM customers ORDER BY id",
    "SELECT id::int OPERATOR(public.###) 0 FROM customers ORDER BY id",
];

#[tokio::test]
async fn user_defined_functions_are_masked_as_unknown() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    for sql in OPAQUE_QUERIES {
        let rows = simple_rows(&alice, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "{sql}: no rows");
        for r in &rows {
            assert!(r.iter().all(masked), "{sql}: {r:?}");
        }
        // Extended protocol (binary): masked as well, and valid for the type.
        let rows = alice.query(*sql, &[]).await.unwrap();
        for r in &rows {
            for i in 0..r.len() {
                let _ = r.get::<_, pg::Raw>(i);
            }
        }
    }
    // A set-returning function over a whole table: every column (the table OID is
    // not in the RowDescription of a function scan) is masked.
    for r in simple_rows(&alice, "SELECT * FROM all_customers()")
        .await
        .unwrap()
    {
        assert!(r.iter().all(masked), "{r:?}");
    }
    // `search_path` putting another schema before pg_catalog: `upper` is sneaky.upper.
    let rows = simple_rows(
        &alice,
        "SET search_path = sneaky, pg_catalog, public; \
         SELECT upper(name) FROM customers ORDER BY id LIMIT 3; RESET search_path",
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|r| masked(&r[0])), "{rows:?}");
    // Parameters and binary results through the extended protocol.
    let row = alice
        .query_one("SELECT lookup_ssn($1), $2::text", &[&4i32, &"x"])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Option<String>>(0).as_deref(), Some("***"));
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "user-defined functions");
}

#[tokio::test]
async fn harmless_builtins_stay_unmasked_and_bob_sees_values() {
    let env = env().await;
    let direct = env.connect_direct("demo").await.unwrap();
    let alice = env.connect_gateway("alice", "demo").await.unwrap();
    for sql in [
        "SELECT id, length(name), coalesce(name, 'x'), nullif(name, ''), greatest(id, 2), \
         substr(name, 1, 3), now() IS NOT NULL, reverse(name), format('%s!', name), \
         md5(name), btrim(name), trim(name), left(name, 2) FROM customers ORDER BY id",
        "SELECT count(*), max(id), string_agg(name, ',' ORDER BY id) FROM customers",
        "SELECT current_date = current_date, extract(year FROM created_at) > 2000, \
         CAST(id AS text), id::text FROM customers ORDER BY id",
        "SELECT name FROM customers ORDER BY id",
    ] {
        let got = simple_rows(&alice, sql).await.unwrap();
        let want = simple_rows(&direct, sql).await.unwrap();
        assert_eq!(got, want, "{sql}");
    }
    // `lower` and `upper` share their names with user-defined functions
    // (public.lower(int), sneaky.upper(text)): overloading or `search_path` could pick
    // those, so every call of them is opaque, masked, even on a harmless column;
    // qualified with pg_catalog they are the built-ins again.
    for sql in [
        "SELECT lower(name) FROM customers ORDER BY id",
        "SELECT upper(name) FROM customers ORDER BY id",
    ] {
        let got = simple_rows(&alice, sql).await.unwrap();
        assert!(got.iter().all(|r| masked(&r[0])), "{sql}");
    }
    let sql = "SELECT pg_catalog.lower(name), pg_catalog.upper(name) FROM customers ORDER BY id";
    assert_eq!(
        simple_rows(&alice, sql).await.unwrap(),
        simple_rows(&direct, sql).await.unwrap()
    );
    // A column PostgreSQL names by table keeps its provenance next to a UDF call.
    let rows = simple_rows(
        &alice,
        "SELECT name, lookup_ssn(id::int) FROM customers ORDER BY id LIMIT 2",
    )
    .await
    .unwrap();
    let want = simple_rows(&direct, "SELECT name FROM customers ORDER BY id LIMIT 2")
        .await
        .unwrap();
    assert_eq!(rows[0][0], want[0][0]);
    assert!(masked(&rows[0][1]));
    // bob (pii-readers) sees every value whole.
    let bob = env.connect_gateway("bob", "demo").await.unwrap();
    for sql in OPAQUE_QUERIES {
        let got = simple_rows(&bob, sql).await.unwrap();
        let want = simple_rows(&direct, sql).await.unwrap();
        assert_eq!(got, want, "bob: {sql}");
    }
}

/// Statements alice must be denied (42501) with pii-mask alone.
const DENIED: &[&str] = &[
    "COPY customers TO STDOUT",
    "COPY (SELECT ssn FROM customers) TO STDOUT",
    "COPY (SELECT lookup_ssn(1)) TO STDOUT",
    "COPY (SELECT s FROM v_lookup) TO STDOUT",
    "COPY (SELECT * FROM all_customers()) TO STDOUT",
    "COPY (SELECT query_to_xml('SELECT ssn FROM customers', true, false, '')) TO STDOUT",
    "CREATE TABLE leak AS SELECT lookup_ssn(1)",
    "SELECT lookup_ssn(1) INTO leak2",
    "INSERT INTO notes SELECT lookup_ssn(1)",
    "INSERT INTO notes VALUES (lookup_ssn_pl(1))",
    "UPDATE notes SET t = echo(t)",
    "CREATE VIEW leak_v AS SELECT s FROM v_lookup",
    "SELECT pg_notify('leak', lookup_ssn(1))",
    "CREATE FUNCTION alice_f() RETURNS text LANGUAGE sql AS 'SELECT ssn FROM customers LIMIT 1'",
    "CREATE OR REPLACE FUNCTION public.echo(text) RETURNS text LANGUAGE sql AS 'SELECT $1'",
    "CREATE TRIGGER t BEFORE INSERT ON notes FOR EACH ROW EXECUTE FUNCTION noisy()",
    "ALTER FUNCTION public.echo(text) SECURITY DEFINER",
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$",
];

#[tokio::test]
async fn copy_writes_and_code_definitions_through_opaque_calls_are_denied() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    for sql in DENIED {
        let e = alice
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql}: should be denied"));
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // Harmless COPY and writes still work.
    assert!(
        !copy_out(&alice, "COPY (SELECT id, status FROM orders) TO STDOUT")
            .await
            .is_empty()
    );
    alice
        .simple_query("INSERT INTO notes VALUES (btrim(' x '))")
        .await
        .unwrap();
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "copy and writes");
    // bob may.
    let bob = env.connect_gateway("bob", "demo").await.unwrap();
    let data = copy_out(&bob, "COPY (SELECT lookup_ssn(1)) TO STDOUT").await;
    assert!(data.contains('-'), "{data}");
}

/// Conditions testing the value of an opaque call (or of a view calling one): each
/// row they keep says something about a masked value (`lookup_ssn(id) LIKE '1%'`
/// finds the SSNs starting with 1, one character at a time). Denied like a condition
/// on a masked column.
const OPAQUE_CONDITIONS: &[&str] = &[
    "SELECT id FROM customers WHERE lookup_ssn(id::int) LIKE '1%'",
    "SELECT id FROM customers WHERE public.lookup_ssn(id::int) = '123-45-6789'",
    "SELECT count(*) FROM customers WHERE lookup_ssn_pl(id::int) > '5'",
    "SELECT id FROM customers c WHERE (SELECT lookup_ssn(c.id::int)) LIKE '1%'",
    "SELECT id FROM orders WHERE customer_id IN \
     (SELECT id FROM customers WHERE lookup_ssn(id::int) LIKE '1%')",
    "SELECT id FROM customers WHERE starts_with(lookup_ssn(id::int), '1')",
    "SELECT c.id FROM customers c JOIN orders o ON o.customer_id = c.id \
     AND lookup_ssn(c.id::int) LIKE '1%'",
    "SELECT name FROM customers GROUP BY name HAVING max(lookup_ssn(id::int)) > '5'",
    "SELECT id FROM v_lookup WHERE s LIKE '1%'",
    "SELECT id FROM customers WHERE lookup_ssn(id::int) LIKE $1",
    "SELECT id FROM customers WHERE (id::int ### 0) LIKE '1%'",
    // The value reaching the condition through an alias.
    "SELECT count(*) FROM (SELECT lookup_ssn(id::int) AS s FROM customers) x WHERE s LIKE '1%'",
    "WITH x AS (SELECT lookup_ssn(id::int) AS s FROM customers) SELECT count(*) FROM x \
     WHERE s LIKE '1%'",
    "SELECT count(*) FROM all_ssns() t WHERE t.s LIKE '1%'",
    "SELECT id FROM customers LIMIT (SELECT length(lookup_ssn(1)))",
    "SELECT (SELECT count(*) FROM (SELECT lookup_ssn(id::int) AS s FROM customers) x \
     WHERE s LIKE '1%')",
    "SELECT count(*) FROM customers c, LATERAL (SELECT lookup_ssn(c.id::int) AS s) l \
     WHERE l.s LIKE '1%'",
    "SELECT id FROM customers WHERE (id::int OPERATOR(public.###) 0) = '123-45-6789'",
    "UPDATE notes SET t = t WHERE lookup_ssn(1) LIKE '1%'",
    "DELETE FROM notes WHERE lookup_ssn(1) LIKE '1%'",
];

#[tokio::test]
async fn conditions_on_opaque_calls_are_denied_like_masked_columns() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    for sql in OPAQUE_CONDITIONS {
        let simple = sql.replace("$1", "'1%'");
        let e = alice
            .simple_query(&simple)
            .await
            .expect_err(&format!("{simple}: should be denied"));
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{simple}: {e}");
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = if sql.contains("$1") {
            vec![&"1%"]
        } else {
            Vec::new()
        };
        let e = alice
            .query(*sql, &params)
            .await
            .expect_err(&format!("{sql}: should be denied (extended)"));
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    let e = alice
        .simple_query("SELECT id FROM customers WHERE lookup_ssn(id::int) LIKE '1%'")
        .await
        .unwrap_err();
    let reason = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(
        reason.contains("a condition on lookup_ssn()"),
        "the reason names the call: {reason}"
    );
    // Conditions on keys and harmless built-ins stay; opaque calls in the output are
    // masked, not denied.
    let direct = env.connect_direct("demo").await.unwrap();
    for sql in [
        "SELECT id, name FROM customers WHERE id < 3 AND pg_catalog.length(name) > 1 ORDER BY id",
        "SELECT id FROM customers WHERE starts_with(name, 'A') ORDER BY id",
    ] {
        assert_eq!(
            simple_rows(&alice, sql).await.unwrap(),
            simple_rows(&direct, sql).await.unwrap(),
            "{sql}"
        );
    }
    let rows = simple_rows(
        &alice,
        "SELECT lookup_ssn(id::int) FROM customers WHERE id = 1",
    )
    .await
    .unwrap();
    assert!(rows.iter().all(|r| masked(&r[0])), "{rows:?}");
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "conditions on opaque calls");
    // bob (exempt) runs them, with PostgreSQL's answers.
    let bob = env.connect_gateway("bob", "demo").await.unwrap();
    for sql in OPAQUE_CONDITIONS.iter().filter(|s| s.starts_with("SELECT")) {
        let sql = sql.replace("$1", "'1%'");
        assert_eq!(
            simple_rows(&bob, &sql).await.unwrap(),
            simple_rows(&direct, &sql).await.unwrap(),
            "bob: {sql}"
        );
    }
}

/// A DBA's cast running SQL (`CREATE CAST (integer AS text) WITH FUNCTION ...` reading
/// customers): PostgreSQL applies it to `id::text`, to `CAST(id AS text)` and inside
/// built-ins (`id || ''`). In such a database every computed value is opaque: masked
/// in results, denied in conditions; plain columns keep their provenance. A database
/// of its own, so the other tests' casts stay harmless.
#[tokio::test]
async fn a_cast_running_sql_makes_every_computed_value_opaque() {
    let env = env().await;
    let db = "cast_demo";
    env.admin_sql("postgres", &format!("CREATE DATABASE {db}"));
    env.admin_sql(
        db,
        "CREATE TABLE customers (id int, name text, ssn text); \
         INSERT INTO customers VALUES (1, 'Ann', '123-45-6789'), (2, 'Bo', '987-65-4321'); \
         CREATE FUNCTION public.int_as_ssn(integer) RETURNS text LANGUAGE sql \
             AS 'SELECT ssn FROM customers WHERE id = $1'; \
         CREATE CAST (integer AS text) WITH FUNCTION public.int_as_ssn(integer)",
    );
    let computed = [
        "SELECT id::text FROM customers ORDER BY id",
        "SELECT CAST(id AS text) FROM customers ORDER BY id",
        "SELECT id || '' FROM customers ORDER BY id",
    ];
    // PostgreSQL really runs the cast.
    let direct = pg::connect(&env.direct_uri(db)).await.unwrap();
    for sql in computed {
        let rows = simple_rows(&direct, sql).await.unwrap();
        assert_eq!(rows[0][0].as_deref(), Some("123-45-6789"), "{sql}");
    }
    let gw = env
        .start_gateway(GatewayOptions {
            policies: mask_only(),
            databases: vec![db.to_owned()],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let tap = Tap::start(gw.addr()).await;
    let alice = connect(&tap.uri_db("alice", db)).await;
    for sql in computed {
        let rows = simple_rows(&alice, sql).await.unwrap();
        assert!(rows.iter().all(|r| masked(&r[0])), "{sql}: {rows:?}");
    }
    for sql in [
        "SELECT name FROM customers WHERE id::text LIKE '1%'",
        "SELECT name FROM customers WHERE id || '' LIKE '1%'",
    ] {
        let e = alice.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // Plain columns keep their provenance.
    let sql = "SELECT id, name FROM customers ORDER BY id";
    assert_eq!(
        simple_rows(&alice, sql).await.unwrap(),
        simple_rows(&direct, sql).await.unwrap()
    );
    drop(alice);
    let needles = ["123-45-6789".to_owned(), "987-65-4321".to_owned()];
    assert_no_leak(&tap.bytes(), &needles, "a cast running SQL");
    gw.shutdown().await;
}

/// A fast-path FunctionCall ('F') of `lookup_ssn(2)` by OID: its result is not a row,
/// so it is never masked. Denied to alice even where `allow_function_call` lets
/// others make such calls; bob gets the value; alice's session goes on.
#[tokio::test]
async fn fast_path_function_calls_are_denied_to_masked_identities() {
    use portcullis_tests::raw::{self, RawConn, first_error};
    let env = env().await;
    let oid: u32 = env
        .admin_sql("demo", "SELECT 'public.lookup_ssn(int)'::regprocedure::oid")
        .trim()
        .parse()
        .unwrap();
    let gw = env
        .start_gateway(GatewayOptions {
            policies: mask_only(),
            extra_toml: "[policy_runtime]\nallow_function_call = true\n".into(),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    // FunctionCall: one binary int4 argument (2), text result.
    let mut body = Vec::new();
    body.extend_from_slice(&oid.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&1i16.to_be_bytes());
    body.extend_from_slice(&4i32.to_be_bytes());
    body.extend_from_slice(&2i32.to_be_bytes());
    body.extend_from_slice(&0i16.to_be_bytes());
    let call = raw::message(b'F', &body);
    let within = Duration::from_secs(20);
    let ssn = env.admin_sql("demo", "SELECT ssn FROM customers WHERE id = 2");
    let ssn = ssn.trim();

    let mut bob = RawConn::connect(gw.addr()).await.unwrap();
    bob.login("bob", password_for("bob"), "demo").await.unwrap();
    bob.send(&call).await.unwrap();
    let msgs = bob.until_ready(within).await.unwrap();
    let result = msgs
        .iter()
        .find(|m| m.tag == b'V')
        .unwrap_or_else(|| panic!("no FunctionCallResponse: {:?}", raw::describe_all(&msgs)));
    assert!(
        result.body.ends_with(ssn.as_bytes()),
        "bob gets the value: {:?}",
        raw::describe_all(&msgs)
    );

    let mut alice = RawConn::connect(gw.addr()).await.unwrap();
    alice
        .login("alice", password_for("alice"), "demo")
        .await
        .unwrap();
    alice.send(&call).await.unwrap();
    let msgs = alice.until_ready(within).await.unwrap();
    let err = first_error(&msgs)
        .unwrap_or_else(|| panic!("FunctionCall not denied: {:?}", raw::describe_all(&msgs)));
    assert_eq!(err.sqlstate().as_deref(), Some("42501"));
    assert!(
        err.field(b'M')
            .unwrap_or_default()
            .contains("fast-path function calls"),
        "{:?}",
        err.describe()
    );
    assert!(
        !msgs
            .iter()
            .any(|m| m.body.windows(ssn.len()).any(|w| w == ssn.as_bytes())),
        "{:?}",
        raw::describe_all(&msgs)
    );
    // The session goes on.
    let msgs = alice.simple_query("SELECT 1").await.unwrap();
    assert!(
        msgs.iter().any(|m| m.tag == b'D'),
        "{:?}",
        raw::describe_all(&msgs)
    );
    gw.shutdown().await;
}

/// With `deny_ordering`, sorting or grouping by an opaque value is denied like sorting
/// by a masked column, directly or through an alias; sorting by a key stays.
#[tokio::test]
async fn ordering_by_opaque_values_is_denied_with_deny_ordering() {
    let env = env().await;
    let mut strict = mask_only();
    strict[0]
        .settings
        .insert("deny_ordering".into(), true.into());
    let gw = env
        .start_gateway(GatewayOptions {
            policies: strict,
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let alice = connect(&gw.uri("alice", "demo")).await;
    for sql in [
        "SELECT id FROM customers ORDER BY lookup_ssn(id::int)",
        "SELECT lookup_ssn(id::int) AS s FROM customers ORDER BY s",
        "SELECT s FROM (SELECT lookup_ssn(id::int) AS s FROM customers) x ORDER BY s",
        "SELECT count(*) FROM (SELECT lookup_ssn(id::int) AS s FROM customers) x GROUP BY s",
    ] {
        let e = alice.simple_query(sql).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    let rows = simple_rows(
        &alice,
        "SELECT lookup_ssn(id::int) FROM customers ORDER BY id",
    )
    .await
    .unwrap();
    assert!(
        !rows.is_empty() && rows.iter().all(|r| masked(&r[0])),
        "{rows:?}"
    );
    gw.shutdown().await;
}

/// The data of a `COPY ... TO STDOUT`.
async fn copy_out(c: &Conn, sql: &str) -> String {
    use futures_util::TryStreamExt;
    let stream = c.copy_out(sql).await.unwrap();
    futures_util::pin_mut!(stream);
    let mut out = Vec::new();
    while let Some(chunk) = stream.try_next().await.unwrap() {
        out.extend_from_slice(&chunk);
    }
    String::from_utf8(out).unwrap()
}

/// Whole rows, arrays, JSON and the statement shapes that wrap a sensitive column:
/// answered masked (or failing with the value withheld), never in clear.
const SHAPES: &[&str] = &[
    "SELECT c FROM customers c",
    "SELECT c.* FROM customers c",
    "SELECT row_to_json(c) FROM customers c",
    "SELECT to_jsonb(customers.*) FROM customers",
    "SELECT customers::text FROM customers",
    "SELECT (c).ssn FROM customers c",
    "SELECT ROW(ssn) FROM customers",
    "SELECT ARRAY[ssn, email] FROM customers",
    "SELECT ARRAY(SELECT ssn FROM customers)",
    "SELECT array_agg(ssn) FROM customers",
    "SELECT string_agg(card_number, ',') FROM customers",
    "SELECT jsonb_build_object('s', ssn) FROM customers",
    "SELECT json_agg(c) FROM customers c",
    "TABLE customers",
    "WITH x AS (SELECT ssn FROM customers) SELECT * FROM x",
    "SELECT ssn FROM customers UNION SELECT 'x'",
    "SELECT (SELECT ssn FROM customers ORDER BY id LIMIT 1)",
    "SELECT l.* FROM (VALUES (1)) v(x), LATERAL (SELECT ssn FROM customers LIMIT 3) l",
    "VALUES ((SELECT email FROM customers ORDER BY id LIMIT 1))",
    "UPDATE customers SET name = name WHERE id = 1 RETURNING ssn, email",
    "UPDATE customers SET name = name WHERE id = 2 RETURNING customers.*",
    "WITH u AS (UPDATE customers SET name = name WHERE id = 3 RETURNING ssn) SELECT * FROM u",
    "PREPARE q AS SELECT ssn, lookup_ssn(2) FROM customers; EXECUTE q; DEALLOCATE q",
    "BEGIN; DECLARE k CURSOR FOR SELECT lookup_ssn(id::int), name FROM customers; \
     FETCH 3 FROM k; COMMIT",
    "BEGIN; DECLARE k2 CURSOR FOR SELECT c FROM customers c; FETCH 2 FROM k2; COMMIT",
];

/// Statements failing in PostgreSQL with the value (quoted or not) in the message.
const VALUE_ERRORS: &[&str] = &[
    "SELECT ssn::int FROM customers",
    "SELECT ssn::regclass FROM customers",
    "SELECT lo_get(replace(ssn, '-', '')::oid) FROM customers",
    "SELECT to_date(email, 'YYYY-MM-DD') FROM customers",
    "SELECT lookup_ssn(1)::int",
    "SELECT raiser(1)",
];

#[tokio::test]
async fn whole_rows_statement_shapes_and_errors_never_leak() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    for sql in SHAPES {
        let rows = simple_rows(&alice, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!rows.is_empty(), "{sql}: no rows");
    }
    for sql in SHAPES.iter().filter(|s| !s.contains(';')) {
        alice.query(*sql, &[]).await.unwrap();
    }
    for sql in VALUE_ERRORS {
        let e = alice
            .simple_query(sql)
            .await
            .expect_err(&format!("{sql}: should fail"));
        let db = e.as_db_error().expect("a server error");
        assert!(
            db.detail().is_some_and(|d| d.contains("withheld")),
            "{sql}: {db:?}"
        );
        let e = alice.query(*sql, &[]).await.expect_err(sql);
        assert!(e.as_db_error().is_some(), "{sql}");
        assert_eq!(simple_rows(&alice, "SELECT 1").await.unwrap().len(), 1);
    }
    // The error of an ordinary mistake keeps its SQLSTATE and shape.
    let e = alice
        .simple_query("SELECT nope FROM customers")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42703"));
    assert_eq!(pg::message(&e), "column \"…\" does not exist");
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "whole rows and shapes");
}

#[tokio::test]
async fn notices_and_raised_errors_are_withheld_from_masked_identities() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let mut alice = connect(&tap.uri("alice")).await;
    let rows = simple_rows(&alice, "SELECT noisy(1), warner(2)")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].iter().all(masked), "{rows:?}");
    for _ in 0..2 {
        let n = alice.next_notice().await.expect("a notice");
        assert_eq!(
            n.message(),
            "message withheld by the Portcullis gateway (masking)"
        );
    }
    let e = alice.simple_query("SELECT raiser(1)").await.unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42P01"));
    assert_eq!(
        pg::message(&e),
        "message withheld by the Portcullis gateway (masking)"
    );
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "notices and raised errors");
    // bob sees them whole.
    let direct = env.connect_direct("demo").await.unwrap();
    let ssn: String = direct
        .query_one("SELECT ssn FROM customers WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    let mut bob = env.connect_gateway("bob", "demo").await.unwrap();
    bob.simple_query("SELECT noisy(1)").await.unwrap();
    let n = bob.next_notice().await.expect("a notice");
    assert_eq!(n.message(), format!("ssn {ssn}"));
    let e = bob.simple_query("SELECT raiser(1)").await.unwrap_err();
    assert_eq!(pg::message(&e), ssn);
}

#[tokio::test]
async fn a_function_created_through_the_gateway_is_opaque_from_the_next_statement() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    // Before: `initcap(1)` does not exist; `initcap(name)` is the built-in.
    assert!(simple_rows(&alice, "SELECT initcap(1)").await.is_err());
    let bob = env.connect_gateway("bob", "demo").await.unwrap();
    bob.simple_query(
        "CREATE FUNCTION public.initcap(int) RETURNS text LANGUAGE sql \
         AS 'SELECT card_number FROM customers WHERE id = $1'",
    )
    .await
    .unwrap();
    // After bob's DDL committed, the catalog knows `upper` is shared with a
    // user-defined function: every call of `initcap` is opaque.
    let rows = simple_rows(&alice, "SELECT initcap(1), initcap(2)")
        .await
        .unwrap();
    assert!(rows[0].iter().all(masked), "{rows:?}");
    let rows = simple_rows(&alice, "SELECT initcap(name) FROM customers LIMIT 2")
        .await
        .unwrap();
    assert!(rows.iter().all(|r| masked(&r[0])), "{rows:?}");
    bob.simple_query("DROP FUNCTION public.initcap(int)")
        .await
        .unwrap();
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "a function created later");
}
