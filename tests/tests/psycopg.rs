//! psycopg 3 (Python) through the gateway, compared with psycopg straight
//! against PostgreSQL. The scenarios live in `tests/python/psycopg_client.py`.

use portcullis_tests::tools::{crate_dir, require_psycopg, run_script};
use portcullis_tests::{EnvOptions, TestEnv, unique};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

async fn run(uri: &str, scenario: &str, tag: &str) -> Value {
    let python = require_psycopg();
    let script = crate_dir().join("python").join("psycopg_client.py");
    let out = run_script(
        &python,
        &script,
        &[scenario],
        &[("PORTCULLIS_URI", uri), ("PORTCULLIS_TAG", tag)],
    )
    .await;
    out.assert_success(&format!("psycopg scenario {scenario}"));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scenario {scenario} printed invalid JSON ({e}):\n{}",
            out.stdout
        )
    })
}

/// Runs `scenario` through the gateway (as `user`) and directly, asserts the
/// results are identical and returns the gateway's.
async fn differential(scenario: &str, user: &str) -> Value {
    let env = env().await;
    let tag = unique(scenario);
    let gw = run(
        &env.gateway_uri(user, "demo"),
        scenario,
        &format!("{tag}_gw"),
    )
    .await;
    let direct = run(&env.direct_uri("demo"), scenario, &format!("{tag}_direct")).await;
    assert_eq!(
        gw,
        direct,
        "psycopg scenario {scenario}: gateway (left) and direct (right) differ\n--- gateway ---\n{}\n--- direct ---\n{}",
        serde_json::to_string_pretty(&gw).unwrap(),
        serde_json::to_string_pretty(&direct).unwrap()
    );
    gw
}

#[tokio::test]
async fn simple_protocol() {
    let r = differential("simple", "alice").await;
    assert_eq!(
        r["multi"],
        json!([
            ["CREATE TABLE", null],
            ["INSERT 0 2", null],
            ["SELECT 2", [[1, "a"], [2, null]]]
        ])
    );
    assert_eq!(
        r["two"],
        json!([["SELECT 1", [[200]]], ["SELECT 1", [["second"]]]])
    );
    assert_eq!(
        r["client_cursor"],
        json!([["it's", 3, null, {"decimal": "1.10"}]])
    );
    assert_eq!(r["error"]["sqlstate"], "22012");
    assert_eq!(
        r["after_error"],
        json!([
            ["alice.anderson@example.org"],
            ["bob.brown@example.net"],
            ["carol.clark@example.com"]
        ])
    );
    assert_eq!(r["orders"].as_array().unwrap().len(), 20);
    assert_eq!(r["rowcount"], 20);
    assert_eq!(r["big_count"], 50000);
}

#[tokio::test]
async fn extended_protocol_with_parameters() {
    let r = differential("extended", "bob").await;
    let p = &r["params"][0];
    assert_eq!(p[0], 42);
    assert_eq!(p[3], json!({"decimal": "-12345678901234567890.000123"}));
    assert_eq!(p[4], "héllo\tworld 'quoted' \"dq\"");
    assert_eq!(p[5], json!({"bytes": "0001feff"}));
    assert_eq!(
        p[6],
        json!({"datetime": "2024-02-29T12:34:56.123456+00:00"})
    );
    assert_eq!(p[9], json!(["a", null, "c,d"]));
    assert_eq!(p[12], Value::Null);
    assert_eq!(r["named"], json!([[42]]));
    assert_eq!(
        r["executemany"],
        json!((0..10).map(|i| json!([i])).collect::<Vec<_>>())
    );
    assert_eq!(r["bad_param"]["sqlstate"], "22P02");
    assert_eq!(r["any"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn prepared_statements() {
    let r = differential("prepared", "etl-agent").await;
    assert_eq!(r["explicit"].as_array().unwrap().len(), 30);
    assert_eq!(
        r["auto"],
        json!((0..10).map(|_| json!([5])).collect::<Vec<_>>())
    );
    assert_eq!(r["after_deallocate"], json!([[1], [2], [3]]));
}

#[tokio::test]
async fn binary_format() {
    let r = differential("binary", "alice").await;
    assert_eq!(r["params"][0][0], 42);
    assert_eq!(r["customers"].as_array().unwrap().len(), 200);
    assert_eq!(
        r["binary_flag"],
        json!([[{"bytes": "0000000000000000000078"}, "text"]])
    );
}

#[tokio::test]
async fn copy() {
    let r = differential("copy", "etl-agent").await;
    assert_eq!(r["loaded"], json!([[5000, 4444, 12497500]]));
    assert_eq!(r["rows_out"].as_array().unwrap().len(), 50);
    assert!(
        r["csv_out"].as_str().unwrap().starts_with("0,\n1,n\t1\n"),
        "{}",
        r["csv_out"]
    );
    assert_eq!(r["binary_out"].as_array().unwrap().len(), 20);
    assert_eq!(r["binary_in"], json!([[1000, "bin 0", "bin 999"]]));
    assert_eq!(r["copy_error"]["sqlstate"], "22P02");
}

#[tokio::test]
async fn pipeline_mode() {
    let r = differential("pipeline", "bob").await;
    assert_eq!(r["inserted"], json!((0..20).collect::<Vec<_>>()));
    assert_eq!(r["count"], 20);
    assert_eq!(r["pipeline_error"]["sqlstate"], "23505");
    assert_eq!(r["usable_after"], 20);
    assert_eq!(
        r["prepared_in_pipeline"],
        json!((0..10).map(|i| format!("v{i}")).collect::<Vec<_>>())
    );
}

#[tokio::test]
async fn cancel() {
    let r = differential("cancel", "alice").await;
    for method in ["cancel", "cancel_safe"] {
        assert_eq!(r[format!("{method}_saw_running")], true, "{r}");
        assert_eq!(r[method]["sqlstate"], "57014", "{method}: {r}");
        assert_eq!(r[format!("{method}_under_20s")], true, "{r}");
        assert_eq!(r[format!("{method}_usable_after")], 1, "{r}");
    }
}

#[tokio::test]
async fn listen_notify() {
    let r = differential("notify", "bob").await;
    assert_eq!(
        r["notifications"],
        json!([[true, "one"], [true, "two"], [true, "three"]])
    );
}
