//! Approvals end to end: statements held by the standard approvals policy (demo
//! settings: writes to `customers` by pipelines need a data owner or a DBA), reviewed
//! through the admin API, the CLI and the web page in headless Chromium, in hold and
//! defer mode, with the file store across a restart and the PostgreSQL store shared
//! by two gateway replicas, and webhooks delivered to a real local HTTP server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use portcullis_tests::pg::{Conn, message, sqlstate};
use portcullis_tests::policies::demo_approvals;
use portcullis_tests::tools::require_tool;
use portcullis_tests::{
    EnvOptions, Gateway, GatewayOptions, TestEnv, eventually, password_for, unique,
};
use serde_json::Value;
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, || EnvOptions {
        // 100 held sessions each keep an upstream connection.
        extra_conf: vec![("max_connections".into(), "250".into())],
        ..EnvOptions::default()
    })
    .await
}

const UPDATE: &str = "UPDATE customers SET name = name WHERE id = 1";

// ---------------------------------------------------------------------------
// A webhook receiver: a real local HTTP server recording what it gets.
// ---------------------------------------------------------------------------

#[derive(Clone, Default)]
struct Hooks {
    got: Arc<Mutex<Vec<(String, Value)>>>,
    addr: Option<SocketAddr>,
}

impl Hooks {
    async fn start() -> Hooks {
        use axum::extract::{Path as UrlPath, State};
        let mut hooks = Hooks::default();
        let app = axum::Router::new()
            .route(
                "/{name}",
                axum::routing::post(
                    |State(h): State<Hooks>, UrlPath(name): UrlPath<String>, body: String| async move {
                        let mut got = h.got.lock().unwrap();
                        // The first delivery to /flaky fails: the gateway retries it.
                        let first = !got.iter().any(|(n, _)| n == "flaky-failed");
                        if name == "flaky" && first {
                            got.push(("flaky-failed".into(), Value::Null));
                            return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                        }
                        got.push((name, serde_json::from_str(&body).unwrap_or(Value::Null)));
                        axum::http::StatusCode::OK
                    },
                ),
            )
            .with_state(hooks.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        hooks.addr = Some(listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        hooks
    }

    fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr.unwrap())
    }

    fn bodies(&self, name: &str) -> Vec<Value> {
        let got = self.got.lock().unwrap();
        got.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Gateways and the reviewers' API
// ---------------------------------------------------------------------------

/// `[approvals]` with a file store unique to this gateway.
fn approvals_toml(env: &TestEnv, mode: &str, hold_timeout_ms: u64, extra: &str) -> String {
    let store = env
        .scratch_dir()
        .join(unique("approvals"))
        .join("approvals.json");
    format!(
        "[approvals]\nmode = \"{mode}\"\nhold_timeout_ms = {hold_timeout_ms}\npath = {:?}\n{extra}\n",
        store.display().to_string()
    )
}

async fn gateway(env: &TestEnv, extra_toml: String) -> Gateway {
    env.start_gateway(GatewayOptions {
        policies: vec![demo_approvals()],
        extra_toml,
        ..GatewayOptions::default()
    })
    .await
    .expect("gateway starts")
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(gw: &Gateway) -> Api {
        Api {
            base: format!("http://{}", gw.admin_addr().expect("admin endpoint")),
            http: reqwest::Client::new(),
        }
    }

    async fn call(
        &self,
        user: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(user, Some(password_for(user)));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("admin API reachable");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// One request, as bob sees it: `(status, body)`.
    async fn show(&self, id: &str) -> (u16, Value) {
        self.call(
            "bob",
            reqwest::Method::GET,
            &format!("/approvals/{id}"),
            None,
        )
        .await
    }

    async fn list(&self, user: &str) -> Vec<Value> {
        let (status, v) = self
            .call(user, reqwest::Method::GET, "/approvals", None)
            .await;
        assert_eq!(status, 200, "{v}");
        v.as_array().cloned().unwrap_or_default()
    }

    async fn review(&self, user: &str, id: &str, verb: &str, reason: &str) -> (u16, Value) {
        self.call(
            user,
            reqwest::Method::POST,
            &format!("/approvals/{id}/{verb}"),
            Some(serde_json::json!({ "reason": reason })),
        )
        .await
    }

    /// Waits until `n` requests are pending and returns them.
    async fn pending(&self, n: usize) -> Vec<Value> {
        eventually(
            Duration::from_secs(30),
            "pending approval requests",
            || async {
                let list: Vec<Value> = self
                    .list("bob")
                    .await
                    .into_iter()
                    .filter(|r| r["status"] == "pending")
                    .collect();
                if list.len() >= n {
                    Ok(list)
                } else {
                    bail!("{} pending, want {n}", list.len())
                }
            },
        )
        .await
        .unwrap()
    }
}

/// Runs `sql` as etl-agent in the background; the handle yields the result.
async fn held(
    gw: &Gateway,
    sql: &'static str,
) -> tokio::task::JoinHandle<Result<u64, tokio_postgres::Error>> {
    let client: Conn = gw.connect("etl-agent", "demo").await.unwrap();
    tokio::spawn(async move { client.execute(sql, &[]).await })
}

// ---------------------------------------------------------------------------
// Hold mode
// ---------------------------------------------------------------------------

#[tokio::test]
async fn held_update_runs_once_a_data_owner_approves() {
    let env = env().await;
    let hooks = Hooks::start().await;
    let audit_dir = env.scratch_dir().join(unique("audit"));
    let extra = format!(
        "public_url = \"http://gateway.example:9187\"\n\
         [[approvals.webhooks]]\nname = \"generic\"\nurl = {:?}\n\
         [[approvals.webhooks]]\nname = \"slack\"\nurl = {:?}\nformat = \"slack\"\n\
         [[approvals.webhooks]]\nname = \"flaky\"\nurl = {:?}\nbackoff_ms = 20\n\
         [[approvals.webhooks]]\nname = \"dead\"\nurl = \"http://127.0.0.1:1/dead\"\nattempts = 2\nbackoff_ms = 10\n\
         \n[audit]\ndir = {:?}\nstatement_text = \"full\"\n",
        hooks.url("generic"),
        hooks.url("slack"),
        hooks.url("flaky"),
        audit_dir.display().to_string()
    );
    let gw = gateway(env, approvals_toml(env, "hold", 60_000, &extra)).await;
    let api = Api::new(&gw);
    let task = held(&gw, UPDATE).await;

    let pending = api.pending(1).await;
    let r = &pending[0];
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(r["requester"]["user"], "etl-agent");
    assert_eq!(r["requester"]["kind"], "agent");
    assert_eq!(r["database"], "demo");
    assert_eq!(r["sql"], UPDATE);
    assert!(r["reason"].as_str().unwrap().contains("data owner"), "{r}");
    assert_eq!(
        r["approvers"],
        serde_json::json!(["group:data-owners", "group:dba"])
    );
    assert!(r["tables"].to_string().contains("customers"), "{r}");

    // Meanwhile other sessions, and even the requester's other session, work.
    let alice = gw.connect("alice", "demo").await.unwrap();
    let rows = alice
        .simple_query("SELECT count(*) FROM customers")
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(!task.is_finished(), "the held statement must still wait");

    // The requester cannot approve; neither can someone it was not routed to.
    let (status, v) = api.review("etl-agent", &id, "approve", "me").await;
    assert_eq!(status, 403, "{v}");
    assert!(v["error"].as_str().unwrap().contains("own request"), "{v}");
    let (status, v) = api.review("alice", &id, "approve", "why not").await;
    assert_eq!(status, 403, "{v}");
    // A wrong password is not a reviewer.
    let (status, _) = api
        .http
        .post(format!("{}/approvals/{id}/approve", api.base))
        .basic_auth("bob", Some("wrong"))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 401);
    assert!(!task.is_finished());

    let (status, v) = api.review("bob", &id, "approve", "ticket OPS-1").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "approved");
    let affected = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the approved statement runs")
        .unwrap()
        .expect("the approved statement succeeds");
    assert_eq!(affected, 1);

    // Used once: a second approval attempt conflicts.
    let (status, _) = api.review("bob", &id, "approve", "again").await;
    assert_eq!(status, 409);
    let (_, shown) = api.show(&id).await;
    assert_eq!(shown["status"], "consumed", "{shown}");
    assert_eq!(shown["reviews"][0]["reviewer"], "bob");
    assert_eq!(shown["reviews"][0]["reason"], "ticket OPS-1");

    // The audit trail links the executed statement to its approval.
    let trail = read_dir_text(&audit_dir);
    let line = trail
        .lines()
        .find(|l| l.contains(&id) && l.contains("\"status\":\"ok\""))
        .unwrap_or_else(|| panic!("no executed event for {id} in the audit trail:\n{trail}"));
    let event: Value = serde_json::from_str(line).unwrap();
    assert_eq!(event["decision"]["approval"]["id"], id.as_str());
    assert_eq!(
        event["decision"]["approval"]["reviewers"],
        serde_json::json!(["bob"])
    );

    // Webhooks: generic JSON and Slack format; the flaky one got it on a retry; the
    // dead one changed nothing.
    let generic = eventually(Duration::from_secs(20), "generic webhook", || async {
        let b = hooks.bodies("generic");
        if b.iter().any(|v| v["event"] == "executed") {
            Ok(b)
        } else {
            bail!("{b:?}")
        }
    })
    .await
    .unwrap();
    let events: Vec<&str> = generic
        .iter()
        .map(|v| v["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["requested", "approved", "executed"]);
    assert_eq!(generic[0]["request"]["id"], id.as_str());
    assert!(
        generic[0]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://gateway.example:9187/approvals/ui#")
    );
    let slack = hooks.bodies("slack");
    assert!(
        slack[0]["text"].as_str().unwrap().contains("etl-agent"),
        "{slack:?}"
    );
    assert!(
        slack[0]["blocks"]
            .to_string()
            .contains(&format!("portcullis approvals approve {id}"))
    );
    eventually(Duration::from_secs(20), "flaky webhook retried", || async {
        if hooks.bodies("flaky").len() >= 3 {
            Ok(())
        } else {
            bail!("{:?}", hooks.bodies("flaky"))
        }
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "dead webhook given up", || async {
        let m = portcullis_tests::admin::get(gw.admin_addr().unwrap(), "/metrics").await?;
        let failed = portcullis_tests::admin::metric_value(
            &m.body,
            "portcullis_webhooks_total{outcome=\"failed\"}",
        );
        if failed.unwrap_or(0.0) >= 1.0 {
            Ok(())
        } else {
            bail!("{failed:?}")
        }
    })
    .await
    .unwrap();
    gw.shutdown().await;
}

fn read_dir_text(dir: &Path) -> String {
    let mut out = String::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            out.push_str(&std::fs::read_to_string(p).unwrap_or_default());
        }
    }
    out
}

#[tokio::test]
async fn rejected_statement_fails_with_the_reason_and_id() {
    let env = env().await;
    let gw = gateway(env, approvals_toml(env, "hold", 60_000, "")).await;
    let api = Api::new(&gw);
    let task = held(&gw, UPDATE).await;
    let id = api.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    let (status, v) = api
        .review("bob", &id, "reject", "not during the freeze")
        .await;
    assert_eq!(status, 200, "{v}");
    let e = task.await.unwrap().expect_err("a rejected statement fails");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let m = message(&e);
    assert!(
        m.contains(&id) && m.contains("not during the freeze") && m.contains("bob"),
        "{m}"
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn held_statement_times_out_and_is_withdrawn() {
    let env = env().await;
    let gw = gateway(env, approvals_toml(env, "hold", 1500, "")).await;
    let api = Api::new(&gw);
    let task = held(&gw, UPDATE).await;
    let e = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .expect_err("times out");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"), "{}", message(&e));
    let m = message(&e);
    assert!(m.contains("apr-") && m.contains("withdrawn"), "{m}");
    let (_, all) = api
        .call("bob", reqwest::Method::GET, "/approvals?all=true", None)
        .await;
    assert_eq!(all[0]["status"], "withdrawn", "{all}");
    gw.shutdown().await;
}

#[tokio::test]
async fn client_cancel_withdraws_the_request() {
    let env = env().await;
    let gw = gateway(env, approvals_toml(env, "hold", 60_000, "")).await;
    let api = Api::new(&gw);
    let client = gw.connect("etl-agent", "demo").await.unwrap();
    let token = client.cancel_token();
    let task = tokio::spawn(async move {
        let c = client;
        let r = c.execute(UPDATE, &[]).await;
        // The session stays usable after the cancel.
        let after = c.simple_query("SELECT 1").await.map(|_| ());
        (r, after)
    });
    let id = api.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let (r, after) = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
    let e = r.expect_err("canceled");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"));
    assert!(message(&e).contains("user request"), "{}", message(&e));
    after.expect("the session goes on");
    let (_, shown) = api.show(&id).await;
    assert_eq!(shown["status"], "withdrawn");
    // Approving a withdrawn request conflicts.
    assert_eq!(api.review("bob", &id, "approve", "late").await.0, 409);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_hundred_held_statements_exhaust_nothing() {
    let env = env().await;
    let gw = gateway(env, approvals_toml(env, "hold", 120_000, "")).await;
    let api = Api::new(&gw);
    let mut tasks = Vec::new();
    for i in 0..100i64 {
        let c = gw.connect("etl-agent", "demo").await.unwrap();
        tasks.push(tokio::spawn(async move {
            c.execute(
                "UPDATE customers SET name = name WHERE id = $1",
                &[&(i % 10 + 1)],
            )
            .await
        }));
    }
    let pending = api.pending(100).await;
    // The gateway keeps serving everyone else meanwhile.
    let bob = gw.connect("bob", "demo").await.unwrap();
    bob.simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    for r in &pending {
        let id = r["id"].as_str().unwrap();
        let (status, v) = api.review("bob", id, "approve", "bulk").await;
        assert_eq!(status, 200, "{v}");
    }
    for t in tasks {
        let n = tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
    }
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Defer mode and the file store
// ---------------------------------------------------------------------------

fn request_id(e: &tokio_postgres::Error) -> String {
    let m = message(e);
    let start = m
        .find("apr-")
        .unwrap_or_else(|| panic!("no request id in {m}"));
    m[start..start + 20].to_owned()
}

#[tokio::test]
async fn deferred_statement_runs_once_after_approval_even_across_a_restart() {
    let env = env().await;
    let gw = gateway(env, approvals_toml(env, "defer", 60_000, "")).await;
    let api = Api::new(&gw);
    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    let e = etl.execute(UPDATE, &[]).await.expect_err("deferred");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert!(
        message(&e).contains("run the same statement again"),
        "{}",
        message(&e)
    );
    let id = request_id(&e);

    // Restart the gateway: the pending request survives in the file store.
    let (path, text) = (
        env.scratch_dir().join(unique("restart.toml")),
        gw.config_text.clone(),
    );
    gw.shutdown().await;
    let gw = Gateway::start(&path, &text, &env.pki().ca_cert)
        .await
        .unwrap();
    let api2 = Api::new(&gw);
    let pending = api2.pending(1).await;
    assert_eq!(pending[0]["id"], id.as_str());
    drop(api);
    assert_eq!(api2.review("bob", &id, "approve", "ok").await.0, 200);

    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    // Another statement, or the same one with other text, is not covered.
    let other = etl
        .execute("UPDATE customers SET name = name WHERE id = 2", &[])
        .await
        .expect_err("not approved");
    assert_ne!(request_id(&other), id);
    // Another identity is not covered either.
    assert_eq!(
        etl.execute(UPDATE, &[])
            .await
            .expect("runs under the approval"),
        1
    );
    let again = etl
        .execute(UPDATE, &[])
        .await
        .expect_err("an approval is used once");
    assert_ne!(request_id(&again), id);

    // Extended protocol: the parameters are part of what was approved.
    let q = "UPDATE customers SET name = name WHERE id = $1";
    let e = etl.execute(q, &[&3i64]).await.expect_err("deferred");
    let pid = request_id(&e);
    let (_, shown) = api2.show(&pid).await;
    // tokio-postgres binds binary: reviewers see the bytes (an int8 3).
    assert_eq!(
        shown["params"],
        serde_json::json!(["\\x0000000000000003"]),
        "{shown}"
    );
    assert_eq!(api2.review("bob", &pid, "approve", "ok").await.0, 200);
    etl.execute(q, &[&4i64])
        .await
        .expect_err("other parameters are not approved");
    assert_eq!(etl.execute(q, &[&3i64]).await.unwrap(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_policy_entry_can_choose_defer_over_the_gateway_default() {
    let env = env().await;
    let mut policy = demo_approvals();
    policy.approval_mode = Some(portcullis::config::ApprovalMode::Defer);
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![policy],
            extra_toml: approvals_toml(env, "hold", 60_000, ""),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(30), etl.execute(UPDATE, &[]))
        .await
        .expect("defer answers at once")
        .expect_err("deferred");
    assert!(
        message(&e).contains("run the same statement again"),
        "{}",
        message(&e)
    );
    gw.shutdown().await;
}

#[tokio::test]
async fn without_approvals_configured_a_hold_is_a_denial() {
    let env = env().await;
    let gw = gateway(env, String::new()).await;
    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    let e = etl.execute(UPDATE, &[]).await.expect_err("denied");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    assert!(
        message(&e).contains("approvals are not enabled"),
        "{}",
        message(&e)
    );
    etl.simple_query("SELECT 1")
        .await
        .expect("the session goes on");
    gw.shutdown().await;
}

// ---------------------------------------------------------------------------
// Two replicas, one PostgreSQL store
// ---------------------------------------------------------------------------

#[tokio::test]
async fn replicas_share_the_postgres_store() {
    let env = env().await;
    let table = unique("approvals").replace('-', "_");
    let store = format!(
        "[approvals]\nmode = \"hold\"\nstore = \"postgres\"\npostgres_url = \"host=127.0.0.1 port={} user=postgres password={} dbname=postgres\"\ntable = \"{table}\"\npoll_ms = 100\n",
        env.pg_port(),
        portcullis_tests::SUPERUSER_PASSWORD
    );
    let a = gateway(env, store.clone()).await;
    let b = gateway(env, store).await;
    let task = held(&a, UPDATE).await;
    let api_b = Api::new(&b);
    let id = api_b.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(api_b.review("etl-agent", &id, "approve", "me").await.0, 403);
    assert_eq!(
        api_b.review("bob", &id, "approve", "via replica b").await.0,
        200
    );
    let n = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(n, 1);
    let (_, shown) = Api::new(&a).show(&id).await;
    assert_eq!(shown["status"], "consumed");
    a.shutdown().await;
    b.shutdown().await;
}

// ---------------------------------------------------------------------------
// Reviewers' tools: the CLI and the web page
// ---------------------------------------------------------------------------

fn portcullis_bin() -> PathBuf {
    let bin = std::env::var("CARGO_BIN_EXE_portcullis")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/portcullis")
        });
    assert!(
        bin.is_file(),
        "{} is missing: cargo build -p portcullis",
        bin.display()
    );
    bin
}

async fn cli(gw: &Gateway, user: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(portcullis_bin());
    cmd.arg("approvals")
        .args(args)
        .args([
            "--as",
            user,
            "--admin",
            &format!("http://{}", gw.admin_addr().unwrap()),
        ])
        .env("PORTCULLIS_PASSWORD", password_for(user))
        .stdin(std::process::Stdio::null());
    cmd.output().await.expect("portcullis runs")
}

#[tokio::test]
async fn cli_approves_and_refuses_self_approval() {
    let env = env().await;
    let gw = gateway(env, approvals_toml(env, "hold", 60_000, "")).await;
    let task = held(&gw, UPDATE).await;
    let list = eventually(Duration::from_secs(30), "cli list", || async {
        let out = cli(&gw, "bob", &["list"]).await;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() && text.contains("apr-") {
            Ok(text)
        } else {
            bail!("{text}")
        }
    })
    .await
    .unwrap();
    let id = list
        .split_whitespace()
        .find(|w| w.starts_with("apr-"))
        .unwrap()
        .to_owned();
    assert!(
        list.contains("etl-agent") && list.contains("pending"),
        "{list}"
    );

    let out = cli(&gw, "etl-agent", &["approve", &id, "--reason", "self"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("403") && err.contains("own request"), "{err}");
    assert!(!task.is_finished());

    let out = cli(&gw, "bob", &["approve", &id, "--reason", "looks fine"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("approved"));
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        1
    );
    let out = cli(&gw, "bob", &["show", &id]).await;
    let shown: Value = serde_json::from_slice(&out.stdout)
        .context("show prints JSON")
        .unwrap();
    assert_eq!(shown["status"], "consumed");
    gw.shutdown().await;
}

#[tokio::test]
async fn web_page_approves_in_headless_chromium() {
    let env = env().await;
    let node = require_tool("node");
    let chromium = require_tool("chromium");
    let script = portcullis_tests::tools::crate_dir()
        .join("node")
        .join("approve_page.mjs");
    assert!(
        portcullis_tests::tools::crate_dir()
            .join("node/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is missing: run `npm install --prefix tests/node` (scripts/setup.sh --tests does)"
    );
    let gw = gateway(env, approvals_toml(env, "hold", 60_000, "")).await;
    let api = Api::new(&gw);
    let task = held(&gw, UPDATE).await;
    let id = api.pending(1).await[0]["id"].as_str().unwrap().to_owned();
    let url = format!("http://{}/approvals/ui", gw.admin_addr().unwrap());
    let out = tokio::process::Command::new(node)
        .arg(&script)
        .args([&url, "bob", password_for("bob"), &id])
        .env("CHROMIUM", chromium)
        .current_dir(script.parent().unwrap())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "browser run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = shown["shown"].as_str().unwrap();
    assert!(
        row.contains("etl-agent") && row.contains(UPDATE) && row.contains("data owner"),
        "{row}"
    );
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
        1
    );
    gw.shutdown().await;
}
