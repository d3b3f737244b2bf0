//! Dynamic data masking end to end: the gateway with the standard `guardrails` and
//! `pii-mask` policies and their demo settings, against a real PostgreSQL, through
//! tokio-postgres (simple protocol = text, extended = binary), psql and psycopg (text
//! and binary cursors).
//!
//! The heart of it: every byte the gateway sends to alice (a masked identity) is
//! captured by a TCP tap between client and gateway, and no plain sensitive value
//! (taken straight from PostgreSQL) may appear in it, whatever the evasion (an
//! expression, a cast, a whole-row reference, an aggregate, a subquery, a CTE, a view,
//! a UNION, RETURNING, a cursor, COPY). Non-sensitive columns and row counts are
//! compared with the direct result.
//!
//! Needs the policy components: `bash policies-rs/build.sh` (a missing component fails
//! the tests).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::config::PolicyConfig;
use portcullis_tests::pg::{self, Conn, sqlstate};
use portcullis_tests::tap::{Tap, assert_no_leak};
use portcullis_tests::tools::{crate_dir, psql_c, require_psycopg, run_script};
use portcullis_tests::{EnvOptions, GatewayOptions, TestEnv, password_for};
use tokio::sync::OnceCell;
use tokio_postgres::SimpleQueryMessage;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

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

fn demo_policies() -> Vec<PolicyConfig> {
    let dir = policies_dir();
    vec![
        portcullis::demo::demo_policy(Some(&dir)).expect("guardrails component"),
        portcullis::demo::demo_mask_policy(Some(&dir)).expect("pii-mask component"),
    ]
}

/// The default gateway runs pii-mask alone (so that masked identities may also write,
/// for RETURNING); the demo's full policy set is checked on its own gateway.
async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, || EnvOptions {
        gateway: GatewayOptions {
            policies: demo_policies().split_off(1),
            ..GatewayOptions::default()
        },
        ..EnvOptions::default()
    })
    .await
}

// ---------------------------------------------------------------------------
// Sensitive values, straight from PostgreSQL.
// ---------------------------------------------------------------------------

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
            let digits: String = v.chars().filter(char::is_ascii_digit).collect();
            if i >= 2 {
                out.push(digits);
            }
        }
    }
    out
}

async fn connect(uri: &str) -> Conn {
    pg::connect(uri).await.expect("connect")
}

/// Simple-protocol rows as text.
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

// ---------------------------------------------------------------------------
// The demo: alice masked, bob plain, etl-agent pseudonyms.
// ---------------------------------------------------------------------------

const SELECT_ALL: &str = "SELECT * FROM customers ORDER BY id";

#[tokio::test]
async fn identities_see_masked_plain_or_pseudonymous_customers() {
    let env = env().await;
    let direct = env.connect_direct("demo").await.unwrap();
    let plain = simple_rows(&direct, SELECT_ALL).await.unwrap();
    assert_eq!(plain.len(), 200);

    let alice = env.connect_gateway("alice", "demo").await.unwrap();
    let masked = simple_rows(&alice, SELECT_ALL).await.unwrap();
    assert_eq!(masked.len(), plain.len());
    for (m, p) in masked.iter().zip(&plain) {
        // id, name, created_at: untouched.
        assert_eq!((&m[0], &m[1], &m[6]), (&p[0], &p[1], &p[6]));
        let (email, phone, ssn, card) = (
            m[2].as_deref().unwrap(),
            m[3].as_deref().unwrap(),
            m[4].as_deref().unwrap(),
            m[5].as_deref().unwrap(),
        );
        let p_email = p[2].as_deref().unwrap();
        let domain = &p_email[p_email.find('@').unwrap()..];
        assert_eq!(email, format!("****{domain}"));
        let p_ssn = p[4].as_deref().unwrap();
        assert_eq!(ssn, format!("*******{}", &p_ssn[7..]));
        let p_phone = p[3].as_deref().unwrap();
        assert!(phone.ends_with(&p_phone[p_phone.len() - 4..]), "{phone}");
        assert!(!phone.contains("555"), "{phone}");
        let p_card = p[5].as_deref().unwrap();
        assert!(card.ends_with(&p_card[p_card.len() - 4..]), "{card}");
        assert_eq!(card.matches('*').count(), 12, "{card}");
    }

    // The same through the extended protocol, binary format.
    let rows = alice.query(SELECT_ALL, &[]).await.unwrap();
    assert_eq!(rows.len(), 200);
    for (r, p) in rows.iter().zip(&plain) {
        let id: i64 = r.get(0);
        assert_eq!(id.to_string(), p[0].clone().unwrap());
        let email: String = r.get("email");
        assert!(email.starts_with("****@"), "{email}");
        let _created: std::time::SystemTime = r.get("created_at");
    }

    let bob = env.connect_gateway("bob", "demo").await.unwrap();
    assert_eq!(simple_rows(&bob, SELECT_ALL).await.unwrap(), plain);

    let etl = env.connect_gateway("etl-agent", "demo").await.unwrap();
    let pseudo = simple_rows(&etl, SELECT_ALL).await.unwrap();
    let again = simple_rows(
        &env.connect_gateway("etl-agent", "demo").await.unwrap(),
        SELECT_ALL,
    )
    .await
    .unwrap();
    assert_eq!(
        pseudo, again,
        "pseudonyms are deterministic across sessions"
    );
    let tokens: HashSet<&str> = pseudo.iter().map(|r| r[2].as_deref().unwrap()).collect();
    assert_eq!(
        tokens.len(),
        200,
        "distinct emails keep distinct pseudonyms"
    );
    for (m, p) in pseudo.iter().zip(&plain) {
        assert_eq!((&m[0], &m[1]), (&p[0], &p[1]));
        for (mv, pv) in m[2..6].iter().zip(&p[2..6]) {
            assert!(mv.as_deref().unwrap().starts_with("pseu_"), "{mv:?}");
            assert_ne!(mv, pv);
        }
    }
    // Pseudonyms still join: the token of customer 7's email in another query and in
    // binary format is the same.
    let one: String = etl
        .query_one("SELECT email FROM customers WHERE id = 7", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(Some(one.as_str()), pseudo[6][2].as_deref());
}

#[tokio::test]
async fn the_demo_policy_set_masks_and_guards() {
    let env = env().await;
    let gw = env
        .start_gateway(GatewayOptions {
            policies: demo_policies(),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let alice = pg::connect(&gw.uri("alice", "demo")).await.unwrap();
    let rows = simple_rows(
        &alice,
        "SELECT email, ssn FROM customers ORDER BY id LIMIT 1",
    )
    .await
    .unwrap();
    assert!(rows[0][0].as_deref().unwrap().starts_with("****@"));
    assert!(rows[0][1].as_deref().unwrap().starts_with("*******"));
    let e = alice
        .simple_query("DROP TABLE customers")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let bob = pg::connect(&gw.uri("bob", "demo")).await.unwrap();
    let rows = simple_rows(&bob, "SELECT email FROM customers WHERE id = 1")
        .await
        .unwrap();
    assert!(!rows[0][0].as_deref().unwrap().starts_with("****"));
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Evasions.
// ---------------------------------------------------------------------------

/// Statements alice may run: each must be answered (masked) or denied, never leak.
const EVASIONS: &[&str] = &[
    "SELECT id, upper(email) FROM customers ORDER BY id",
    "SELECT id, email || '' FROM customers ORDER BY id",
    "SELECT id, substr(ssn, 1, 3) FROM customers ORDER BY id",
    "SELECT id, coalesce(card_number, 'none') FROM customers ORDER BY id",
    "SELECT id, ssn::varchar(20), phone::text FROM customers ORDER BY id",
    "SELECT id, CAST(email AS bytea) FROM customers ORDER BY id",
    "SELECT row_to_json(c) FROM customers c ORDER BY id",
    "SELECT to_jsonb(c.*) FROM customers c ORDER BY id",
    "SELECT id, c::text FROM customers c ORDER BY id",
    "SELECT string_agg(email, ',') FROM customers",
    "SELECT array_agg(ssn) FROM customers",
    "SELECT length(ssn), id FROM customers ORDER BY id",
    "SELECT id, (SELECT max(ssn) FROM customers) FROM orders ORDER BY id LIMIT 5",
    "SELECT id, e FROM (SELECT id, email AS e FROM customers) s ORDER BY id",
    "SELECT id, lower(e) FROM (SELECT id, email AS e FROM customers) s ORDER BY id",
    "WITH x AS (SELECT id, ssn FROM customers) SELECT id, ssn || '!' FROM x ORDER BY id",
    "WITH x AS (SELECT id, ssn FROM customers) SELECT * FROM x ORDER BY id",
    "SELECT * FROM customer_contacts ORDER BY name",
    "SELECT upper(email) FROM customer_contacts ORDER BY 1",
    "SELECT name FROM customers UNION ALL SELECT email FROM customers",
    "SELECT phone FROM customers UNION SELECT 'x'",
    "SELECT CASE WHEN ssn LIKE '1%' THEN 'yes' ELSE ssn END FROM customers",
    "SELECT id, format('%s', card_number) FROM customers ORDER BY id",
    "SELECT id, ssn FROM customers WHERE ssn LIKE '1%'",
    "SELECT id FROM customers WHERE substr(email, 1, 1) = 'a'",
    "SELECT name FROM customer_contacts WHERE email LIKE 'a%'",
    "SELECT id FROM customers ORDER BY id LIMIT 3",
    "SELECT ssn::int FROM customers",
    "SELECT email::jsonb FROM customers",
    "SELECT pg_notify('leak', ssn) FROM customers",
    "SELECT set_config('leak.v', ssn, false) FROM customers LIMIT 1",
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$",
];

/// Statements that fail in PostgreSQL itself, with the value in the message (which the
/// gateway withholds).
const VALUE_ERRORS: &[&str] = &[
    "SELECT ssn::int FROM customers",
    "SELECT email::jsonb FROM customers",
];

/// The SQLSTATE a statement must fail with, if it must fail.
fn expected_error(sql: &str) -> Option<&'static str> {
    if DENIED.contains(&sql) {
        Some("42501")
    } else if VALUE_ERRORS.contains(&sql) {
        Some("22P02")
    } else {
        None
    }
}

/// Statements alice must be denied (42501).
const DENIED: &[&str] = &[
    "SELECT id, ssn FROM customers WHERE ssn LIKE '1%'",
    "SELECT id FROM customers WHERE substr(email, 1, 1) = 'a'",
    "SELECT name FROM customer_contacts WHERE email LIKE 'a%'",
    "SELECT pg_notify('leak', ssn) FROM customers",
    "SELECT set_config('leak.v', ssn, false) FROM customers LIMIT 1",
    "DO $$ BEGIN RAISE NOTICE '%', (SELECT ssn FROM customers LIMIT 1); END $$",
];

async fn check_rows_against_direct(sql: &str, got: &[Vec<Option<String>>]) {
    let direct = env().await.connect_direct("demo").await.unwrap();
    let want = simple_rows(&direct, sql).await.unwrap();
    assert_eq!(got.len(), want.len(), "{sql}: row count");
    // A leading `id` column is not sensitive: identical.
    if sql.starts_with("SELECT id,") || sql.starts_with("WITH x AS (SELECT id") {
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g[0], w[0], "{sql}: id column");
        }
    }
}

#[tokio::test]
async fn evasions_through_tokio_postgres_never_leak() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    for sql in EVASIONS {
        // Simple protocol (text).
        match simple_rows(&alice, sql).await {
            Ok(rows) => {
                assert_eq!(expected_error(sql), None, "{sql} should fail");
                check_rows_against_direct(sql, &rows).await;
            }
            Err(code) => assert_eq!(Some(code.as_str()), expected_error(sql), "{sql}"),
        }
        // Extended protocol (binary): every value must decode as its type.
        match alice.query(*sql, &[]).await {
            Ok(rows) => {
                assert_eq!(expected_error(sql), None, "{sql} should fail");
                for r in &rows {
                    for i in 0..r.len() {
                        let _ = r.get::<_, pg::Raw>(i);
                    }
                }
            }
            Err(e) => assert_eq!(sqlstate(&e).as_deref(), expected_error(sql), "{sql}: {e}"),
        }
        // The session stays usable after each.
        assert_eq!(simple_rows(&alice, "SELECT 1").await.unwrap().len(), 1);
    }
    // Computed values are redacted whole, not masked like their source.
    for sql in [
        "SELECT id, substr(ssn, 1, 3) FROM customers ORDER BY id",
        "SELECT id, upper(email) FROM customers ORDER BY id",
        "SELECT id, lower(e) FROM (SELECT id, email AS e FROM customers) s ORDER BY id",
        "WITH x AS (SELECT id, ssn FROM customers) SELECT id, ssn || '!' FROM x ORDER BY id",
        "SELECT id, c::text FROM customers c ORDER BY id",
    ] {
        for r in simple_rows(&alice, sql).await.unwrap() {
            assert_eq!(r[1].as_deref(), Some("***"), "{sql}");
        }
    }
    for r in simple_rows(&alice, "SELECT * FROM customer_contacts")
        .await
        .unwrap()
    {
        assert_ne!(r[0].as_deref(), Some("***"), "name is not sensitive");
        assert_eq!(
            (r[1].as_deref(), r[2].as_deref()),
            (Some("***"), Some("***"))
        );
    }
    // Derived values have no valid masked form for integers: NULL, still an int4.
    let rows = alice
        .query(
            "SELECT length(ssn), id FROM customers ORDER BY id LIMIT 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, Option<i32>>(0), None);
    assert_eq!(rows[0].get::<_, i64>(1), 1);
    let json = alice
        .query_one(
            "SELECT row_to_json(c) FROM customers c ORDER BY id LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(json.get::<_, Option<serde_json::Value>>(0), None);
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "tokio-postgres");
}

#[tokio::test]
async fn evasions_through_psql_never_leak() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let uri = tap.uri("alice");
    for sql in EVASIONS {
        let out = psql_c(&uri, sql).await;
        if DENIED.contains(sql) {
            assert_ne!(out.code(), 0, "{sql} should be denied");
            assert!(out.stderr.contains("for alice"), "{sql}: {}", out.stderr);
        } else if expected_error(sql).is_some() {
            assert_ne!(out.code(), 0, "{sql} should fail");
            assert!(
                out.stderr.contains("withheld") || out.stderr.contains('…'),
                "{sql}: {}",
                out.stderr
            );
        } else {
            out.assert_success(sql);
        }
    }
    // Several statements in one Query; a refusal or denial anywhere stops the rest.
    let out = psql_c(
        &uri,
        "SELECT email FROM customers LIMIT 2; SELECT upper(ssn) FROM customers LIMIT 2",
    )
    .await;
    out.assert_success("multi-statement");
    assert!(out.stdout.contains("****@"), "{}", out.stdout);
    assert!(out.stdout.contains("***"), "{}", out.stdout);
    assert_no_leak(&tap.bytes(), &needles, "psql");
}

#[tokio::test]
async fn evasions_through_psycopg_never_leak() {
    let env = env().await;
    let python = require_psycopg();
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let script = crate_dir().join("python").join("masking_client.py");
    let statements = serde_json::to_string(EVASIONS).unwrap();
    let out = run_script(
        &python,
        &script,
        &[&statements],
        &[("PORTCULLIS_URI", &tap.uri("alice"))],
    )
    .await;
    out.assert_success("psycopg masking client");
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    for sql in EVASIONS {
        for format in ["text", "binary"] {
            let r = &doc[*sql][format];
            if let Some(code) = expected_error(sql) {
                assert_eq!(r["error"], code, "{sql} ({format}): {r}");
            } else {
                let rows = r["rows"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{sql} ({format}): {r}"));
                let got: Vec<Vec<Option<String>>> = rows
                    .iter()
                    .map(|row| {
                        row.as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .collect();
                check_rows_against_direct(sql, &got).await;
            }
        }
    }
    assert_no_leak(&tap.bytes(), &needles, "psycopg");
}

/// The tap and the leak check themselves: bob's plain values are caught.
#[tokio::test]
async fn the_leak_check_catches_plain_values() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let bob = connect(&tap.uri("bob")).await;
    simple_rows(&bob, "SELECT upper(email), ssn FROM customers")
        .await
        .unwrap();
    drop(bob);
    let bytes = tap.bytes();
    let caught = std::panic::catch_unwind(|| assert_no_leak(&bytes, &needles, "bob"));
    assert!(caught.is_err(), "bob's plain ssn went unnoticed");
}

// ---------------------------------------------------------------------------
// RETURNING, cursors, prepared statements, COPY, inference.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn returning_cursors_and_prepared_statements_are_masked() {
    let env = env().await;
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    let rows = simple_rows(
        &alice,
        "BEGIN; UPDATE customers SET name = name WHERE id < 4 RETURNING id, email, upper(ssn); ROLLBACK",
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert!(r[1].as_deref().unwrap().starts_with("****@"), "{r:?}");
        assert_eq!(r[2].as_deref(), Some("***"));
    }
    // DDL on a table with masked columns is denied (a rename would escape the settings).
    let e = alice
        .simple_query("ALTER TABLE customers RENAME COLUMN ssn TO x")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    // A write copying a sensitive value is denied.
    let e = alice
        .simple_query("UPDATE customers SET name = ssn WHERE id = 1")
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));

    let rows = simple_rows(
        &alice,
        "BEGIN; DECLARE c CURSOR FOR SELECT id, email, upper(ssn), phone FROM customers ORDER BY id; \
         FETCH 5 FROM c; FETCH 5 FROM c; CLOSE c; COMMIT",
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 10);
    for r in &rows {
        assert!(r[1].as_deref().unwrap().starts_with("****@"), "{r:?}");
        assert_eq!(
            r[2].as_deref(),
            Some("***"),
            "FETCH of an expression: derived from ssn, as in the declared query"
        );
    }
    let rows = simple_rows(
        &alice,
        "PREPARE p AS SELECT id, upper(email), ssn FROM customers ORDER BY id LIMIT 3; EXECUTE p; DEALLOCATE p",
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        assert_eq!(r[1].as_deref(), Some("***"));
        assert!(r[2].as_deref().unwrap().starts_with("*******"));
    }
    // A prepared statement (extended protocol) reused with binary results.
    let stmt = alice
        .prepare("SELECT id, email, ssn FROM customers WHERE id = $1")
        .await
        .unwrap();
    for id in [1i64, 2, 3] {
        let r = alice.query_one(&stmt, &[&id]).await.unwrap();
        let email: String = r.get(1);
        assert!(email.starts_with("****@"), "{email}");
    }
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "returning/cursors");
}

#[tokio::test]
async fn copy_out_of_sensitive_data_is_denied_and_inference_is_refused() {
    let env = env().await;
    let alice = env.connect_gateway("alice", "demo").await.unwrap();
    for sql in [
        "COPY customers TO STDOUT",
        "COPY (SELECT upper(email) FROM customers) TO STDOUT",
        "COPY (SELECT email FROM customer_contacts) TO STDOUT",
        "COPY (SELECT * FROM customer_contacts) TO STDOUT",
    ] {
        let e = match alice.copy_out(sql).await {
            Ok(_) => panic!("{sql} was allowed"),
            Err(e) => e,
        };
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{sql}: {e}");
    }
    // Not sensitive: allowed.
    let stream = alice.copy_out("COPY orders TO STDOUT").await.unwrap();
    futures_util::pin_mut!(stream);
    use futures_util::TryStreamExt;
    let mut n = 0;
    while let Some(chunk) = stream.try_next().await.unwrap() {
        n += chunk.iter().filter(|b| **b == b'\n').count();
    }
    assert_eq!(n, 1000);

    // Probing a masked column with a parameter: denied at Parse.
    let e = alice
        .query("SELECT id FROM customers WHERE ssn = $1", &[&"123-45-6789"])
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    // bob may.
    let bob = env.connect_gateway("bob", "demo").await.unwrap();
    bob.query("SELECT id FROM customers WHERE ssn LIKE '1%'", &[])
        .await
        .unwrap();
    let stream = bob.copy_out("COPY customers TO STDOUT").await.unwrap();
    drop(stream);
    // alice's session is still usable.
    assert_eq!(simple_rows(&alice, "SELECT 1").await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// Fail closed: a masking policy that traps or times out refuses the result.
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_failing_mask_policy_refuses_results_and_the_session_goes_on() {
    let env = env().await;
    for behaviour in ["panic", "loop"] {
        let mut hostile = PolicyConfig::new("hostile", policies_dir().join("hostile.wasm"));
        assert!(
            hostile.path.is_file(),
            "run `bash policies-rs/build.sh` first"
        );
        hostile
            .settings
            .insert("behaviour".into(), behaviour.into());
        hostile.settings.insert("mask_only".into(), true.into());
        hostile.deadline_ms = 40;
        let gw = env
            .start_gateway(GatewayOptions {
                policies: vec![hostile],
                ..GatewayOptions::default()
            })
            .await
            .unwrap();
        let c = pg::connect(&gw.uri("alice", "demo")).await.unwrap();
        let started = std::time::Instant::now();
        let e = c
            .simple_query("SELECT email FROM customers")
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e}");
        assert!(
            pg::message(&e).contains("hostile"),
            "{behaviour}: {}",
            pg::message(&e)
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let e = c.query("SELECT 1", &[]).await.unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
        // Statements without rows still run; the session is in step.
        c.simple_query("SET application_name = 'still-here'")
            .await
            .unwrap();
        c.batch_execute("BEGIN; COMMIT").await.unwrap();
        gw.shutdown().await;
    }
}

// ---------------------------------------------------------------------------
// Property: random queries over the demo schema never leak.
// ---------------------------------------------------------------------------

/// A small deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const TEXT_COLUMNS: &[&str] = &["name", "email", "phone", "ssn", "card_number"];

/// A text expression over the relation aliased `c`.
fn gen_expr(r: &mut Rng, depth: usize) -> String {
    if depth == 0 || r.below(4) == 0 {
        return match r.below(6) {
            0 => "c.id::text".to_owned(),
            _ => format!("c.{}", r.pick(TEXT_COLUMNS)),
        };
    }
    let e = gen_expr(r, depth - 1);
    match r.below(14) {
        0 => format!("upper({e})"),
        1 => format!("lower({e})"),
        2 => format!("{e} || 'x'"),
        3 => format!("substr({e}, 1, {})", 1 + r.below(12)),
        4 => format!("coalesce({e}, 'z')"),
        5 => format!("({e})::varchar"),
        6 => format!("concat({e}, {})", gen_expr(r, depth - 1)),
        7 => format!("reverse({e})"),
        8 => format!(
            "(SELECT {} FROM customers c2 WHERE c2.id = c.id)",
            gen_expr(r, depth - 1).replace("c.", "c2.")
        ),
        9 => format!(
            "CASE WHEN c.id > 5 THEN {e} ELSE {} END",
            gen_expr(r, depth - 1)
        ),
        10 => format!("left({e}, {})", 1 + r.below(8)),
        11 => format!("replace({e}, '-', '')"),
        12 => format!("translate({e}, ' ', '')"),
        _ => format!("trim({e})"),
    }
}

fn gen_source(r: &mut Rng) -> (String, String) {
    match r.below(4) {
        0 => (String::new(), "customers c".to_owned()),
        1 => (String::new(), "(SELECT * FROM customers) c".to_owned()),
        2 => (
            String::new(),
            "(SELECT id, name, email AS email, phone, ssn, card_number FROM customers WHERE id > 0) c"
                .to_owned(),
        ),
        _ => (
            "WITH c0 AS (SELECT * FROM customers) ".to_owned(),
            "c0 c".to_owned(),
        ),
    }
}

fn gen_query(r: &mut Rng) -> String {
    let (with, from) = gen_source(r);
    let filter = if r.below(2) == 0 {
        format!(" WHERE c.id < {}", 1 + r.below(200))
    } else {
        String::new()
    };
    match r.below(5) {
        0 => format!(
            "{with}SELECT string_agg({}, ',') FROM {from}{filter}",
            gen_expr(r, 3)
        ),
        1 => format!("{with}SELECT row_to_json(c) FROM {from}{filter}"),
        2 => {
            let (with2, from2) = gen_source(r);
            let with = if with.is_empty() { with2 } else { with };
            format!(
                "{with}SELECT {} FROM {from}{filter} UNION ALL SELECT {} FROM {from2}",
                gen_expr(r, 2),
                gen_expr(r, 2)
            )
        }
        _ => {
            let n = 1 + r.below(3);
            let items: Vec<String> = (0..n).map(|_| gen_expr(r, 3)).collect();
            format!("{with}SELECT {} FROM {from}{filter}", items.join(", "))
        }
    }
}

#[tokio::test]
async fn random_queries_never_leak() {
    let env = env().await;
    let seed: u64 = std::env::var("MASK_PROPTEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_1234_abcd_0042);
    let cases: usize = std::env::var("MASK_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80);
    let needles = forbidden().await;
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    let mut rng = Rng(seed);
    let mut answered = 0;
    let mut queries = Vec::new();
    for _ in 0..cases {
        let sql = gen_query(&mut rng);
        let simple = simple_rows(&alice, &sql).await;
        let extended = alice.query(sql.as_str(), &[]).await;
        if simple.is_ok() && extended.is_ok() {
            answered += 1;
        }
        queries.push(sql);
    }
    drop(alice);
    let bytes = tap.bytes();
    let leak = std::panic::catch_unwind(|| assert_no_leak(&bytes, &needles, "random queries"));
    assert!(
        leak.is_ok(),
        "a random query leaked (seed {seed:#x}); queries:\n{}",
        queries.join("\n")
    );
    assert!(
        answered * 2 >= cases,
        "only {answered} of {cases} random queries were answered: the grammar is off\n{}",
        queries.join("\n")
    );
}

/// `detect_values`: text columns nobody listed are scanned, and what looks like an
/// email, a Luhn-valid card number or an SSN is masked in place, in the simple and
/// the extended protocol (binary too); exempt identities see the value whole.
#[tokio::test]
async fn values_that_look_sensitive_are_detected_in_unlisted_columns() {
    let env = env().await;
    let table = portcullis_tests::unique("notes").replace('-', "_");
    let body = "customer ada.l@example.com paid with 4111 1111 1111 1111, ssn 123-45-6789";
    env.admin_sql(
        "demo",
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, body text, tag varchar(40));
             INSERT INTO {table} VALUES (1, '{body}', 'order 12345 ok')"
        ),
    );
    let mut policy = portcullis::demo::demo_mask_policy(Some(&policies_dir())).unwrap();
    policy.settings.insert(
        "detect_values".into(),
        toml::Value::Array(vec!["email".into(), "card".into(), "ssn".into()]),
    );
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![policy],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let masked = "customer ***@example.com paid with **** **** **** 1111, ssn ***-**-6789";
    let sql = format!("SELECT body, tag FROM {table} WHERE id = 1");
    let alice = gw.connect("alice", "demo").await.unwrap();
    let rows = simple_rows(&alice, &sql).await.unwrap();
    assert_eq!(
        rows,
        vec![vec![
            Some(masked.to_owned()),
            Some("order 12345 ok".to_owned())
        ]]
    );
    let row = alice.query_one(sql.as_str(), &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), masked, "binary format too");
    assert_eq!(row.get::<_, String>(1), "order 12345 ok");
    let bob = gw.connect("bob", "demo").await.unwrap();
    let row = bob.query_one(sql.as_str(), &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), body, "pii-readers see it whole");
    gw.shutdown().await;
}

/// The audit trail names the columns a result had masked, with mask and policy.
#[tokio::test]
async fn audit_events_name_the_masked_columns() {
    let env = env().await;
    let dir = env
        .scratch_dir()
        .join(portcullis_tests::unique("masked-audit"));
    let gw = env
        .start_gateway(GatewayOptions {
            policies: demo_policies().split_off(1),
            extra_toml: format!(
                "[audit]\ndir = {:?}\nstatement_text = \"full\"\n",
                dir.display().to_string()
            ),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let alice = gw.connect("alice", "demo").await.unwrap();
    alice
        .simple_query("SELECT name, email AS contact, ssn FROM customers LIMIT 2 /*masked audit*/")
        .await
        .unwrap();
    drop(alice);
    gw.shutdown().await;
    let mut events = Vec::new();
    let files = portcullis::audit::writer::trail_files(&dir).unwrap();
    portcullis::audit::search::read_events(&files, |_, e| events.push(e)).unwrap();
    let e = events
        .iter()
        .find(|e| {
            e.statement
                .as_ref()
                .and_then(|s| s.text.as_deref())
                .is_some_and(|t| t.contains("/*masked audit*/"))
        })
        .expect("the statement's event");
    let masked: Vec<(&str, &str)> = e
        .masked
        .iter()
        .map(|m| (m.column.as_str(), m.policy.as_str()))
        .collect();
    assert_eq!(
        masked,
        [("contact", "pii-mask"), ("ssn", "pii-mask")],
        "{:?}",
        e.masked
    );
    assert_eq!(e.masked[0].mask, "email");
}

/// Views created and dropped while a gateway starts (another team's migrations)
/// never cost it its catalog: `pg_get_viewdef` fails on a view dropped while the
/// catalog is read, which once left a new gateway's first session with no catalog at
/// all, so every column had unknown provenance and was redacted. Now only a view whose
/// definition cannot be read has unknown lineage; tables keep theirs.
#[tokio::test]
async fn views_dropped_while_the_catalog_loads_cost_no_session_its_catalog() {
    let env = env().await;
    let churn: Vec<_> = (0..2)
        .map(|_| {
            let uri = env.direct_uri("demo");
            tokio::spawn(async move {
                let c = pg::connect(&uri).await.unwrap();
                let view = portcullis_tests::unique("churn_v");
                loop {
                    // Two transactions: other sessions see the view come and go.
                    c.batch_execute(&format!(
                        "CREATE VIEW {view} AS SELECT id, upper(name) AS n FROM customers"
                    ))
                    .await
                    .unwrap();
                    c.batch_execute(&format!("DROP VIEW {view}")).await.unwrap();
                }
            })
        })
        .collect();
    for gateway in 0..12 {
        // A gateway of its own: its first session loads the catalog.
        let gw = env
            .start_gateway(GatewayOptions {
                policies: demo_policies().split_off(1),
                ..GatewayOptions::default()
            })
            .await
            .unwrap();
        let alice = pg::connect(&gw.uri("alice", "demo")).await.unwrap();
        let rows = simple_rows(&alice, "SELECT name, ssn FROM customers WHERE id = 1")
            .await
            .unwrap();
        assert!(
            !rows[0][0].as_deref().unwrap().starts_with("***"),
            "gateway {gateway}: name has its provenance: {rows:?}"
        );
        assert!(
            rows[0][1].as_deref().unwrap().starts_with("***"),
            "{rows:?}"
        );
        drop(alice);
        gw.shutdown().await;
    }
    for c in &churn {
        assert!(!c.is_finished(), "the view churn stopped: {c:?}");
        c.abort();
    }
}

// ---------------------------------------------------------------------------
// Inference by column comparison (`deny_column_comparisons`).
// ---------------------------------------------------------------------------

#[tokio::test]
async fn column_comparisons_of_masked_columns_are_denied_when_configured() {
    let env = env().await;
    let probes = [
        "SELECT c.id FROM customers c JOIN customers d ON d.ssn = c.ssn AND d.id <> c.id",
        "SELECT c.id FROM customers c JOIN (VALUES ('123-45-6789')) g(s) ON g.s = c.ssn",
        "SELECT id FROM customers WHERE email IN (SELECT email FROM customer_contacts)",
        "SELECT c.id FROM customers c JOIN customers d USING (email)",
        "SELECT c.id FROM customers c, orders o WHERE c.card_number = o.status",
    ];
    // Default settings: allowed (pseudonyms must still join), and masked as usual.
    let alice = env.connect_gateway("alice", "demo").await.unwrap();
    let etl = env.connect_gateway("etl-agent", "demo").await.unwrap();
    for sql in probes {
        simple_rows(&alice, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        simple_rows(&etl, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    let mut mask = demo_policies().remove(1);
    mask.settings
        .insert("deny_column_comparisons".into(), true.into());
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![mask],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    for user in ["alice", "etl-agent"] {
        let c = pg::connect(&gw.uri(user, "demo")).await.unwrap();
        for sql in probes {
            let e = c
                .simple_query(sql)
                .await
                .expect_err(&format!("{user}: {sql} was allowed"));
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{user}: {sql}: {e}");
            assert!(
                pg::message(&e).contains("another column"),
                "{user}: {sql}: {}",
                pg::message(&e)
            );
        }
        // The extended protocol is decided at Parse, the same way.
        let e = c
            .query(
                "SELECT c.id FROM customers c JOIN customers d ON d.ssn = c.ssn",
                &[],
            )
            .await
            .unwrap_err();
        assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
        // Joins on keys, and comparisons of unmasked columns, stay allowed.
        let rows = simple_rows(
            &c,
            "SELECT c.id, c.email FROM customers c JOIN orders o ON o.customer_id = c.id \
             WHERE c.name = c.name ORDER BY o.id LIMIT 3",
        )
        .await
        .unwrap();
        assert_eq!(rows.len(), 3);
        for r in &rows {
            let email = r[1].as_deref().unwrap();
            assert!(
                email.starts_with("****@") || email.starts_with("pseu_"),
                "{r:?}"
            );
        }
    }
    // Exempt identities may compare.
    let bob = pg::connect(&gw.uri("bob", "demo")).await.unwrap();
    for sql in probes {
        simple_rows(&bob, sql)
            .await
            .unwrap_or_else(|e| panic!("bob: {sql}: {e}"));
    }
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// DDL run after an approval refreshes the catalog at once.
// ---------------------------------------------------------------------------

/// pii-mask with the demo settings plus the approvals policy holding bob's DDL for
/// alice's approval, with a catalog refresh interval far longer than the test.
async fn approvals_gateway(env: &TestEnv) -> portcullis_tests::Gateway {
    let mut approvals = portcullis_tests::policies::demo_approvals();
    approvals.settings = toml::from_str(
        r#"
        [[rules]]
        description = "bob's DDL needs alice"
        users = ["bob"]
        tables = ["*"]
        access = ["ddl"]
        approvers = ["user:alice"]
        approvals = 1
        "#,
    )
    .unwrap();
    let store = env
        .scratch_dir()
        .join(portcullis_tests::unique("approvals"))
        .join("approvals.json");
    env.start_gateway(GatewayOptions {
        policies: vec![approvals, demo_policies().remove(1)],
        extra_toml: format!(
            "[approvals]\nmode = \"hold\"\nhold_timeout_ms = 60000\npath = {:?}\n",
            store.display().to_string()
        ),
        catalog_refresh_ms: Some(3_600_000),
        ..GatewayOptions::default()
    })
    .await
    .unwrap()
}

/// The pending approval requests of `gw`, as alice sees them, once there is one.
async fn pending_request(gw: &portcullis_tests::Gateway) -> String {
    let http = reqwest::Client::new();
    let url = format!("http://{}/approvals", gw.admin_addr().unwrap());
    portcullis_tests::eventually(Duration::from_secs(30), "a pending request", || async {
        let list: serde_json::Value = http
            .get(&url)
            .basic_auth("alice", Some(password_for("alice")))
            .send()
            .await?
            .json()
            .await?;
        list.as_array()
            .and_then(|l| l.iter().find(|r| r["status"] == "pending"))
            .and_then(|r| r["id"].as_str().map(str::to_owned))
            .ok_or_else(|| anyhow::anyhow!("none pending: {list}"))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_view_created_after_approval_is_masked_by_its_lineage_at_once() {
    let env = env().await;
    let gw = approvals_gateway(env).await;
    let view = portcullis_tests::unique("held_v");
    let direct = env.connect_direct("demo").await.unwrap();
    let plain = simple_rows(
        &direct,
        "SELECT id, name FROM customers ORDER BY id LIMIT 5",
    )
    .await
    .unwrap();
    // alice's session (and the catalog) exist before the view does.
    let alice = pg::connect(&gw.uri("alice", "demo")).await.unwrap();
    simple_rows(&alice, "SELECT id FROM customers LIMIT 1")
        .await
        .unwrap();

    let bob = pg::connect(&gw.uri("bob", "demo")).await.unwrap();
    let ddl = format!(
        "CREATE VIEW {view} AS SELECT id, name, upper(name) AS shout, email, ssn FROM customers"
    );
    let task = tokio::spawn(async move { bob.simple_query(&ddl).await.map(|_| bob) });
    let id = pending_request(&gw).await;
    assert!(!task.is_finished(), "the DDL waits for its approval");
    let resp = reqwest::Client::new()
        .post(format!(
            "http://{}/approvals/{id}/approve",
            gw.admin_addr().unwrap()
        ))
        .basic_auth("alice", Some(password_for("alice")))
        .json(&serde_json::json!({ "reason": "view for the report" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let bob = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the approved DDL runs")
        .unwrap()
        .expect("the approved DDL succeeds");

    // At once, on the first query: the view's columns have their lineage (a stale
    // catalog would make every column unknown: ids NULL, names "***").
    let rows = simple_rows(
        &alice,
        &format!("SELECT id, name, shout, email, ssn FROM {view} ORDER BY id LIMIT 5"),
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), plain.len());
    for (r, p) in rows.iter().zip(&plain) {
        assert_eq!((&r[0], &r[1]), (&p[0], &p[1]), "{r:?}");
        assert_eq!(
            r[2].as_deref(),
            p[1].as_deref().map(str::to_uppercase).as_deref()
        );
        assert_eq!(r[3].as_deref(), Some("***"), "a view's email is derived");
        assert_eq!(r[4].as_deref(), Some("***"), "a view's ssn is derived");
    }
    drop(bob);
    direct
        .batch_execute(&format!("DROP VIEW {view}"))
        .await
        .unwrap();
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// FETCH from a declared cursor: the provenance of the cursor's query.
// ---------------------------------------------------------------------------

const CURSOR_QUERY: &str = "SELECT id, name, email, ssn, upper(name) AS shout, 'tag' AS tag, \
     upper(ssn) AS s FROM customers ORDER BY id";

/// A function opening a cursor the session did not declare (its query reads ssn where
/// the declared one read name).
const OPEN_CURSOR_FN: &str = "CREATE OR REPLACE FUNCTION portcullis_open_cursor(cur refcursor) \
     RETURNS refcursor LANGUAGE plpgsql AS $$ BEGIN \
     OPEN cur FOR SELECT id, upper(ssn) AS shout FROM customers ORDER BY id; RETURN cur; END $$";

#[tokio::test]
async fn fetch_from_a_declared_cursor_is_masked_like_its_query() {
    let env = env().await;
    let needles = forbidden().await;
    env.connect_direct("demo")
        .await
        .unwrap()
        .batch_execute(OPEN_CURSOR_FN)
        .await
        .unwrap();
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    let direct = simple_rows(&alice, &format!("{CURSOR_QUERY} LIMIT 5"))
        .await
        .unwrap();
    assert!(direct[0][2].as_deref().unwrap().starts_with("****@"));
    assert!(direct[0][3].as_deref().unwrap().starts_with("*******"));
    assert_eq!(direct[0][5].as_deref(), Some("tag"), "a constant");
    assert_eq!(direct[0][6].as_deref(), Some("***"), "derived from ssn");
    assert_ne!(direct[0][4].as_deref(), Some("***"), "derived from name");

    // Simple protocol: FETCH gives exactly what the SELECT gave.
    let fetched = simple_rows(
        &alice,
        &format!(
            "BEGIN; DECLARE c CURSOR FOR {CURSOR_QUERY}; FETCH 2 FROM c; FETCH 3 FROM c; \
             CLOSE c; COMMIT"
        ),
    )
    .await
    .unwrap();
    assert_eq!(fetched, direct);

    // Extended protocol, binary results, and the cursor named with another case.
    alice
        .batch_execute(&format!("BEGIN; DECLARE \"Cur\" CURSOR FOR {CURSOR_QUERY}"))
        .await
        .unwrap();
    let rows = alice.query("FETCH 2 FROM \"Cur\"", &[]).await.unwrap();
    for (r, d) in rows.iter().zip(&direct) {
        let id: i64 = r.get(0);
        assert_eq!(Some(id.to_string()), d[0]);
        for (i, want) in d.iter().enumerate().skip(1) {
            let v: String = r.get(i);
            assert_eq!(Some(v), *want, "column {i}");
        }
    }
    alice.batch_execute("COMMIT").await.unwrap();

    // CLOSE forgets: a cursor reopened under the same name by a function has no known
    // lineage, and its computed column is masked (fail closed), never plain.
    let rows = simple_rows(
        &alice,
        "BEGIN; DECLARE c CURSOR FOR SELECT id, upper(name) AS shout FROM customers ORDER BY id; \
         FETCH 1 FROM c; CLOSE c; SELECT portcullis_open_cursor('c'); FETCH 2 FROM c; COMMIT",
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(
        rows[0][1], direct[0][4],
        "the declared cursor's own lineage"
    );
    // The value of a user-defined function is unknown to the gateway: masked.
    assert!(
        rows[1][0].as_deref().is_none_or(|v| v == "***"),
        "{:?}",
        rows[1]
    );
    for r in &rows[2..] {
        assert_eq!(r[1].as_deref(), Some("***"), "unknown cursor: {r:?}");
    }
    // The end of the transaction forgets too.
    let rows = simple_rows(
        &alice,
        "BEGIN; DECLARE k CURSOR FOR SELECT id, upper(name) AS shout FROM customers; COMMIT; \
         BEGIN; SELECT portcullis_open_cursor('k'); FETCH 2 FROM k; COMMIT",
    )
    .await
    .unwrap();
    for r in &rows[1..] {
        assert_eq!(r[1].as_deref(), Some("***"), "{r:?}");
    }
    drop(alice);
    assert_no_leak(&tap.bytes(), &needles, "cursors");
}

/// A session asking the same statement again may be answered from memory (the
/// policies cache their plans), but never across a change of what the statement
/// reads: a view redefined through the gateway (same columns, names and types, so the
/// same RowDescription) is masked by its new lineage from the next result on, in both
/// protocols.
#[tokio::test]
async fn a_remembered_unmasked_result_is_forgotten_when_its_view_changes() {
    let env = env().await;
    let needles = forbidden().await;
    let bob = env.gw.connect("bob", "demo").await.unwrap();
    bob.batch_execute(
        "DROP VIEW IF EXISTS memo_v; \
         CREATE VIEW memo_v AS SELECT id, name AS label FROM customers",
    )
    .await
    .unwrap();
    let tap = Tap::start(env.gw.addr()).await;
    let alice = connect(&tap.uri("alice")).await;
    let sql = "SELECT id, label FROM memo_v ORDER BY id LIMIT 3";
    let names = simple_rows(
        &env.connect_direct("demo").await.unwrap(),
        "SELECT id, name FROM customers ORDER BY id LIMIT 3",
    )
    .await
    .unwrap();
    let stmt = alice.prepare(sql).await.unwrap();
    for round in 0..3 {
        assert_eq!(
            simple_rows(&alice, sql).await.unwrap(),
            names,
            "round {round}"
        );
        let rows = alice.query(&stmt, &[]).await.unwrap();
        let labels: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
        let want: Vec<String> = names.iter().map(|r| r[1].clone().unwrap()).collect();
        assert_eq!(labels, want, "round {round}, extended");
    }
    bob.batch_execute("CREATE OR REPLACE VIEW memo_v AS SELECT id, ssn AS label FROM customers")
        .await
        .unwrap();
    for round in 0..2 {
        let rows = simple_rows(&alice, sql).await.unwrap();
        assert_eq!(rows.len(), 3);
        for (r, n) in rows.iter().zip(&names) {
            assert_ne!(r[1], n[1], "round {round}: now ssn, masked: {r:?}");
        }
        // The statement prepared before, and a new one: both masked.
        assert_eq!(alice.query(&stmt, &[]).await.unwrap().len(), 3);
        let fresh = alice.prepare(sql).await.unwrap();
        assert_eq!(alice.query(&fresh, &[]).await.unwrap().len(), 3);
    }
    drop(alice);
    bob.batch_execute("DROP VIEW memo_v").await.unwrap();
    assert_no_leak(&tap.bytes(), &needles, "redefined view");
}

// ---------------------------------------------------------------------------
// Custom masks through the packed batch (contract 0.3.0 `mask-cells`), and through
// `mask-rows` for a component built against 0.2.0.
// ---------------------------------------------------------------------------

/// Rows of a table with NULLs, empty strings and multi-byte UTF-8, more than one batch
/// long, its `name` masked by pii-mask's `custom` (initials) and `email` natively.
#[tokio::test]
async fn packed_custom_masks_keep_nulls_empty_strings_and_utf8_across_batches() {
    let env = env().await;
    let table = portcullis_tests::unique("people").replace('-', "_");
    env.admin_sql(
        "demo",
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, name text, email text, note text);
             INSERT INTO {table} VALUES
               (1, 'Łukasz Żółw', 'l@example.com', 'a'),
               (2, '', NULL, ''),
               (3, NULL, 'x@example.org', NULL),
               (4, '  Ada   Lovelace ', 'ada@example.net', 'ünïcödé');
             INSERT INTO {table} SELECT i, 'Name ' || i, 'u' || i || '@example.com', 'n' || i
               FROM generate_series(5, 2600) i"
        ),
    );
    let mut policy = PolicyConfig::new("pii-mask", policies_dir().join("pii-mask.wasm"));
    let mut cols = toml::Table::new();
    cols.insert(format!("{table}.name"), "custom".into());
    cols.insert(format!("{table}.email"), "email".into());
    policy
        .settings
        .insert("columns".into(), toml::Value::Table(cols));
    policy.settings.insert(
        "exempt_groups".into(),
        toml::Value::Array(vec!["pii-readers".into()]),
    );
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![policy],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let alice = gw.connect("alice", "demo").await.unwrap();
    let sql = format!("SELECT id, name, email, note FROM {table} ORDER BY id");
    let s = |v: &str| Some(v.to_owned());
    let first = [
        vec![s("1"), s("Ł. Ż."), s("****@example.com"), s("a")],
        vec![s("2"), s(""), None, s("")],
        vec![s("3"), None, s("****@example.org"), None],
        vec![s("4"), s("A. L."), s("****@example.net"), s("ünïcödé")],
    ];
    let rows = simple_rows(&alice, &sql).await.unwrap();
    assert_eq!(rows.len(), 2600);
    assert_eq!(rows[..4], first[..]);
    for (i, row) in rows.iter().enumerate().skip(4) {
        let id = i + 1;
        assert_eq!(row[0], Some(id.to_string()));
        assert_eq!(row[1], Some(format!("N. {}.", &id.to_string()[..1])));
        assert_eq!(row[2], Some("****@example.com".to_owned()));
        assert_eq!(row[3], Some(format!("n{id}")));
    }
    assert_eq!(rows[2599][1], s("N. 2."));
    // Binary format (extended protocol): the same values.
    let binary = alice.query(sql.as_str(), &[]).await.unwrap();
    assert_eq!(binary.len(), 2600);
    for (row, text) in binary.iter().zip(&rows) {
        assert_eq!(row.get::<_, i32>(0).to_string(), text[0].clone().unwrap());
        for (c, want) in text.iter().enumerate().take(4).skip(1) {
            assert_eq!(row.get::<_, Option<String>>(c), *want, "column {c}");
        }
    }
    // bob (pii-readers) sees the values whole.
    let bob = gw.connect("bob", "demo").await.unwrap();
    let plain = simple_rows(&bob, &sql).await.unwrap();
    assert_eq!(plain[0][1], s("Łukasz Żółw"));
    gw.shutdown().await;
}

/// A component answering `mask-cells` with a malformed batch refuses the result, names
/// the policy and what was wrong, and the session and the gateway go on.
#[tokio::test]
async fn malformed_packed_answers_fail_closed_and_the_gateway_keeps_serving() {
    let env = env().await;
    let cases = [
        ("cells-wrong-count", "cells for"),
        ("cells-wrong-columns", "columns for"),
        ("cells-out-of-bounds", "runs past the end"),
        ("cells-bad-utf8", "not valid UTF-8"),
    ];
    let hostile = |behaviour: &str| {
        let mut p = PolicyConfig::new("hostile", policies_dir().join("hostile.wasm"));
        assert!(p.path.is_file(), "run `bash policies-rs/build.sh` first");
        p.settings.insert("behaviour".into(), behaviour.into());
        p.settings.insert("mask_only".into(), true.into());
        p
    };
    let sql = "SELECT name, email FROM customers ORDER BY id";
    for (behaviour, why) in cases {
        let gw = env
            .start_gateway(GatewayOptions {
                policies: vec![hostile(behaviour)],
                ..GatewayOptions::default()
            })
            .await
            .unwrap();
        let c = gw.connect("alice", "demo").await.unwrap();
        for binary in [false, true] {
            let e = if binary {
                c.query(sql, &[]).await.unwrap_err()
            } else {
                c.simple_query(sql).await.unwrap_err()
            };
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{behaviour}: {e}");
            let m = pg::message(&e);
            assert!(
                m.contains("\"hostile\"") && m.contains("invalid result"),
                "{behaviour}: {m}"
            );
            assert!(m.contains(why), "{behaviour}: {m}");
        }
        // The session is in step, and the gateway serves new sessions.
        c.simple_query("SET application_name = 'still-here'")
            .await
            .unwrap();
        c.batch_execute("BEGIN; COMMIT").await.unwrap();
        let again = gw.connect("alice", "demo").await.unwrap();
        again
            .batch_execute("SET search_path = public")
            .await
            .unwrap();
        gw.shutdown().await;
    }
    // The well-behaved baseline of the same component passes every value through.
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![hostile("cells-echo")],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let c = gw.connect("alice", "demo").await.unwrap();
    let got = simple_rows(&c, sql).await.unwrap();
    let direct = simple_rows(&env.connect_direct("demo").await.unwrap(), sql)
        .await
        .unwrap();
    assert_eq!(got, direct);
    gw.shutdown().await;
}

/// A component built against contract 0.2.0 (no `mask-cells`) masks through
/// `mask-rows`, beside a 0.3.0 one and a 0.1.0 one.
#[tokio::test]
async fn a_policy_built_against_0_2_masks_through_mask_rows() {
    let env = env().await;
    let compat = |name: &str| {
        let p = PolicyConfig::new(name, policies_dir().join(format!("{name}.wasm")));
        assert!(p.path.is_file(), "run `bash policies-rs/build.sh` first");
        p
    };
    let mut policies = vec![compat("compat-v0-1"), compat("compat-v0-2")];
    policies.extend(demo_policies().split_off(1));
    let gw = env
        .start_gateway(GatewayOptions {
            policies,
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let alice = gw.connect("alice", "demo").await.unwrap();
    let sql = "SELECT 'żółw ada'::text AS compat_masked, 'x' AS other, NULL::text AS compat_masked, \
               '' AS compat_masked, email FROM customers WHERE id = 1";
    let s = |v: &str| Some(v.to_owned());
    let rows = simple_rows(&alice, sql).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][..4], [s("v2:ŻÓŁW ADA"), s("x"), None, s("v2:")]);
    assert!(
        rows[0][4].as_deref().unwrap().starts_with("****@"),
        "{rows:?}"
    );
    let row = alice.query_one(sql, &[]).await.unwrap();
    assert_eq!(row.get::<_, Option<String>>(0), s("v2:ŻÓŁW ADA"));
    assert_eq!(row.get::<_, Option<String>>(2), None);
    let e = alice
        .simple_query("SELECT 'compat-deny'")
        .await
        .unwrap_err();
    assert!(pg::message(&e).contains("0.1.0 policy"), "{e}");
    gw.shutdown().await;
}
