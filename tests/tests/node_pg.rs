//! node-postgres (`pg` from npm) through the gateway, compared with the same
//! client straight against PostgreSQL. The scenarios live in
//! `tests/node/client.mjs`; `npm install --prefix tests/node` installs `pg`.

use portcullis_tests::tools::{crate_dir, require_node_pg, run_script};
use portcullis_tests::{EnvOptions, TestEnv};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

async fn run(uri: &str, scenario: &str) -> Value {
    let node = require_node_pg();
    let script = crate_dir().join("node").join("client.mjs");
    let out = run_script(&node, &script, &[scenario], &[("PORTCULLIS_URI", uri)]).await;
    out.assert_success(&format!("node-postgres scenario {scenario}"));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "scenario {scenario} printed invalid JSON ({e}):\n{}",
            out.stdout
        )
    })
}

async fn differential(scenario: &str, user: &str) -> Value {
    let env = env().await;
    let gw = run(&env.gateway_uri(user, "demo"), scenario).await;
    let direct = run(&env.direct_uri("demo"), scenario).await;
    assert_eq!(
        gw,
        direct,
        "node-postgres scenario {scenario}: gateway (left) and direct (right) differ\n--- gateway ---\n{}\n--- direct ---\n{}",
        serde_json::to_string_pretty(&gw).unwrap(),
        serde_json::to_string_pretty(&direct).unwrap()
    );
    gw
}

#[tokio::test]
async fn simple_queries() {
    let r = differential("simple", "alice").await;
    assert_eq!(r["one"]["rows"], json!([{"one": 1, "x": "x", "n": null}]));
    assert_eq!(r["multi"].as_array().unwrap().len(), 3);
    assert_eq!(r["multi"][1]["rowCount"], 2);
    assert_eq!(
        r["multi"][2]["rows"],
        json!([{"id": 1, "v": "a"}, {"id": 2, "v": null}])
    );
    assert_eq!(r["customers"]["rowCount"], 25);
    assert_eq!(
        r["customers"]["rows"][0]["email"],
        "alice.anderson@example.org"
    );
    assert_eq!(r["rowMode"], json!([[1, 2]]));
    assert_eq!(r["big"], 100000);
}

#[tokio::test]
async fn parameterised_queries() {
    let r = differential("params", "bob").await;
    let row = &r["many"]["rows"][0];
    assert_eq!(row["i"], 42);
    assert_eq!(row["l"], "9007199254740993");
    assert_eq!(row["n"], "-12345678901234567890.000123");
    assert_eq!(row["t"], "héllo\tworld 'q'");
    assert_eq!(row["b"], json!({"bytes": "0001feff"}));
    assert_eq!(row["ts"], json!({"date": "2024-02-29T12:34:56.789Z"}));
    assert_eq!(row["ia"], json!([1, 2, 3]));
    assert_eq!(row["ta"], json!(["a", null, "c,d"]));
    assert_eq!(row["j"], json!({"a": [1, 2, {"b": null}]}));
    assert_eq!(row["nul"], Value::Null);
    assert_eq!(r["any"]["rowCount"], 3);
    assert_eq!(r["badParam"]["code"], "22P02");
    assert_eq!(r["tooFew"]["code"], "08P01");
    assert_eq!(r["after"]["rows"], json!([{"s": "ab"}]));
}

#[tokio::test]
async fn prepared_named_queries() {
    let r = differential("prepared", "etl-agent").await;
    assert_eq!(r["byId"].as_array().unwrap().len(), 30);
    assert_eq!(r["counts"], json!([5, 5, 5, 5, 5, 5, 5, 5, 5, 5]));
    assert_eq!(
        r["serverSide"]["rows"],
        json!([
            {"name": "order_by_id", "parameter_types": "{bigint}"},
            {"name": "orders_of", "parameter_types": "{bigint}"}
        ])
    );
    assert_eq!(r["badPrepared"]["code"], "42P01");
    assert_eq!(r["afterBad"]["rowCount"], 1);
}

#[tokio::test]
async fn errors() {
    let r = differential("errors", "alice").await;
    assert_eq!(r["syntax"]["code"], "42601");
    assert_eq!(r["undefinedTable"]["code"], "42P01");
    assert_eq!(r["undefinedColumn"]["code"], "42703");
    assert_eq!(r["divZero"]["code"], "22012");
    assert_eq!(r["unique"]["code"], "23505");
    assert_eq!(r["unique"]["detail"], "Key (id)=(1) already exists.");
    assert_eq!(r["raise"]["code"], "P0042");
    assert_eq!(r["multiError"]["code"], "22012");
    assert_eq!(r["stillUsable"]["rows"], json!([{"n": 200}]));
    assert_eq!(r["notices"], json!([["NOTICE", "hello 7"]]));
}

#[tokio::test]
async fn transactions() {
    let r = differential("transactions", "bob").await;
    assert_eq!(r["afterCommit"], json!([1, 3]));
    assert_eq!(r["afterRollback"], 2);
    assert_eq!(r["inFailed"]["code"], "22012");
    assert_eq!(r["aborted"]["code"], "25P02");
    assert_eq!(r["readOnly"]["code"], "25006");
    assert_eq!(r["final"], json!([1, 3]));
}

#[tokio::test]
async fn many_queued_queries() {
    let r = differential("concurrent", "etl-agent").await;
    assert_eq!(
        r["values"],
        json!((0..200).map(|i| i * 2).collect::<Vec<_>>())
    );
}
