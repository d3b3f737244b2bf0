//! Recorded traffic, replay, shadow mode: the demo traffic (alice, bob, etl-agent
//! through tokio-postgres and psql) is recorded by a real gateway enforcing the demo
//! policy set (guardrails + pii-mask), then replayed offline with
//! `portcullis policy replay` against the unchanged set (no difference, exit 0) and
//! against a deliberately changed one (exactly the expected differences, non-zero
//! exit unless declared expected). The audit trail of the same traffic replays too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis::config::PolicyConfig;
use portcullis_tests::policies::{demo_guardrails, policies_dir};
use portcullis_tests::{EnvOptions, Gateway, GatewayOptions, TestEnv, admin, eventually, psql_c};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

fn demo_mask() -> PolicyConfig {
    portcullis::demo::demo_mask_policy(Some(&policies_dir())).expect("pii-mask component")
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `portcullis` binary (built by `cargo build -p portcullis`).
fn portcullis_bin() -> PathBuf {
    let p = std::env::var("CARGO_BIN_EXE_portcullis")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/portcullis")
        });
    assert!(
        p.is_file(),
        "{} is missing: cargo build -p portcullis",
        p.display()
    );
    p
}

/// A policy directory holding `policies` (artifacts copied, digests and versions
/// pinned), as CI would publish it.
fn policy_dir(env: &TestEnv, name: &str, policies: &[PolicyConfig]) -> PathBuf {
    let dir = env.scratch_dir().join(portcullis_tests::unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    write_policy_dir(&dir, name, policies);
    dir
}

/// (Re)writes the policy directory `dir` as version `version` of `policies`; the
/// manifest is replaced last, in one rename.
fn write_policy_dir(dir: &Path, version: &str, policies: &[PolicyConfig]) {
    let mut manifest = toml::Table::new();
    manifest.insert("version".into(), version.into());
    let mut entries = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        let bytes = std::fs::read(&p.path).unwrap();
        let artifact = format!("{}.wasm", p.id);
        std::fs::write(dir.join(&artifact), &bytes).unwrap();
        let settings = p.settings_json().unwrap();
        let h =
            portcullis::policy::harness::Harness::load(std::slice::from_ref(&p.path), &[&settings])
                .expect("policy loads");
        let version = h.chain().policies()[0].metadata().version.clone();
        let mut e = toml::Table::new();
        e.insert("id".into(), p.id.clone().into());
        e.insert("artifact".into(), artifact.into());
        e.insert("version".into(), version.into());
        e.insert("sha256".into(), sha256_hex(&bytes).into());
        e.insert("order".into(), (i as i64 * 10).into());
        e.insert("settings".into(), toml::Value::Table(p.settings.clone()));
        entries.push(toml::Value::Table(e));
    }
    manifest.insert("policies".into(), toml::Value::Array(entries));
    let tmp = dir.join(".policies.toml.tmp");
    std::fs::write(&tmp, toml::to_string(&manifest).unwrap()).unwrap();
    std::fs::rename(&tmp, dir.join("policies.toml")).unwrap();
}

/// The demo guardrails with one more rule: agents may not read `orders`.
fn stricter_guardrails() -> PolicyConfig {
    let mut g = demo_guardrails();
    let rule: toml::Table = toml::from_str(
        "description = \"agents do not read orders\"\nprincipal_kinds = [\"agent\"]\ntables = [\"orders\"]\ndeny_access = [\"read\"]\n",
    )
    .unwrap();
    g.settings
        .get_mut("rules")
        .and_then(|r| r.as_array_mut())
        .expect("demo guardrails have rules")
        .push(toml::Value::Table(rule));
    g
}

/// The demo pii-mask with phone numbers redacted instead of showing 4 digits.
fn stricter_mask() -> PolicyConfig {
    let mut m = demo_mask();
    m.settings
        .get_mut("columns")
        .and_then(|c| c.as_table_mut())
        .expect("pii-mask has columns")
        .insert("customers.phone".into(), "redact(***)".into());
    m
}

/// `portcullis policy replay ... --json [extra]`: (exit code, report, stderr).
fn replay_cli(recording: &Path, dir: &Path, extra: &[&str]) -> (i32, serde_json::Value, String) {
    let out = std::process::Command::new(portcullis_bin())
        .args(["policy", "replay", "--recording"])
        .arg(recording)
        .arg("--policies")
        .arg(dir)
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("replay printed no JSON report ({e}): {stdout}\n{stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// Lines of `path` with `"type":"statement"` / `"type":"result"`.
fn lines_of(path: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == kind)
        .collect()
}

/// Waits until the recording holds `n` statement lines.
async fn wait_statements(path: &Path, n: usize) {
    eventually(Duration::from_secs(10), "recorded statements", || async {
        let got = lines_of(path, "statement").len();
        anyhow::ensure!(got >= n, "{got} of {n} statements recorded");
        Ok(())
    })
    .await
    .unwrap();
}

/// The demo traffic; returns the number of statements the gates decided.
async fn demo_traffic(gw: &Gateway) -> usize {
    let alice = gw.connect("alice", "demo").await.unwrap();
    let rows = alice
        .simple_query("SELECT id, email, phone FROM customers ORDER BY id LIMIT 3")
        .await
        .unwrap();
    assert!(!rows.is_empty());
    assert!(alice.simple_query("DROP TABLE customers").await.is_err());
    alice
        .simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    let bob = gw.connect("bob", "demo").await.unwrap();
    bob.simple_query("SELECT email FROM customers ORDER BY id LIMIT 2")
        .await
        .unwrap();
    bob.simple_query("SELECT * FROM secrets").await.unwrap();
    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    for _ in 0..3 {
        let r = etl
            .query(
                "SELECT id, customer_id FROM orders ORDER BY id LIMIT $1",
                &[&5i64],
            )
            .await
            .unwrap();
        assert_eq!(r.len(), 5);
    }
    assert!(etl.simple_query("DELETE FROM orders").await.is_err());
    let out = psql_c(
        &gw.uri("alice", "demo"),
        "SELECT name FROM customers ORDER BY id LIMIT 1",
    )
    .await;
    out.assert_success("psql as alice");
    10
}

struct Recorded {
    recording: PathBuf,
    audit_dir: PathBuf,
    unchanged: PathBuf,
}

static RECORDED: OnceCell<Recorded> = OnceCell::const_new();

/// Records the demo traffic once (recording + full-text audit trail).
async fn recorded() -> &'static Recorded {
    RECORDED
        .get_or_init(|| async {
            let env = env().await;
            let recording = env.scratch_dir().join(portcullis_tests::unique("demo")).join("traffic.jsonl");
            let audit_dir = env.scratch_dir().join(portcullis_tests::unique("audit"));
            let gw = env
                .start_gateway(GatewayOptions {
                    policies: vec![demo_guardrails(), demo_mask()],
                    extra_toml: format!(
                        "[recording]\npath = {:?}\nsample_rows = 2\n\n[audit]\ndir = {:?}\nstatement_text = \"full\"\n",
                        recording.display().to_string(),
                        audit_dir.display().to_string()
                    ),
                    ..GatewayOptions::default()
                })
                .await
                .expect("recording gateway");
            let n = demo_traffic(&gw).await;
            wait_statements(&recording, n).await;
            gw.shutdown().await;
            let unchanged = policy_dir(env, "unchanged", &[demo_guardrails(), demo_mask()]);
            Recorded {
                recording,
                audit_dir,
                unchanged,
            }
        })
        .await
}

#[tokio::test]
async fn the_recording_holds_what_the_policies_saw_and_the_client_got() {
    let r = recorded().await;
    let text = std::fs::read_to_string(&r.recording).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["format"], "portcullis-recording");
    assert_eq!(header["version"], 2);
    let statements = lines_of(&r.recording, "statement");
    assert_eq!(statements.len(), 10, "{statements:#?}");
    let drop = statements
        .iter()
        .find(|s| s["sql"] == "DROP TABLE customers")
        .expect("the DROP is recorded");
    assert_eq!(drop["identity"]["user"], "alice");
    assert_eq!(drop["identity"]["kind"], "person");
    assert_eq!(drop["identity"]["groups"], serde_json::json!(["analysts"]));
    assert_eq!(drop["database"], "demo");
    assert_eq!(drop["decision"]["outcome"], "deny");
    assert_eq!(drop["decision"]["policy"], "guardrails");
    assert_eq!(drop["statement"]["kind"], "drop");
    let etl: Vec<_> = statements
        .iter()
        .filter(|s| s["identity"]["user"] == "etl-agent" && s["statement"]["kind"] == "select")
        .collect();
    assert_eq!(etl.len(), 3);
    assert!(etl.iter().all(|s| s["protocol"] == "extended"));
    assert!(
        etl.iter()
            .all(|s| s["params"] == serde_json::json!(["\\x0000000000000005"])),
        "each execution with its (binary) LIMIT parameter: {etl:#?}"
    );
    assert!(
        etl[0]["statement"]["columns"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "orders.customer_id"),
        "{:?}",
        etl[0]
    );

    let results = lines_of(&r.recording, "result");
    let alice = results
        .iter()
        .find(|r| r["identity"]["user"] == "alice" && r["columns"].as_array().unwrap().len() == 3)
        .expect("alice's customers result is recorded");
    assert_eq!(alice["columns"][1]["name"], "email");
    assert_eq!(alice["columns"][1]["provenance"]["kind"], "direct");
    assert_eq!(
        alice["columns"][1]["provenance"]["source"]["column"],
        "email"
    );
    let masked: Vec<&str> = alice["masks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mask"].as_str().unwrap())
        .collect();
    assert_eq!(masked, ["email", "digits:4"], "{alice}");
    let rows = alice["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "sample_rows = 2");
    let email = rows[0][1].as_str().unwrap();
    assert!(
        email.starts_with('*'),
        "the sample is masked as alice saw it: {email}"
    );
    let bob = results
        .iter()
        .find(|r| r["identity"]["user"] == "bob" && r["columns"][0]["name"] == "email")
        .expect("bob's result is recorded");
    assert_eq!(bob["masks"], serde_json::json!([]));
    assert!(bob["rows"][0][0].as_str().unwrap().contains('@'));
}

#[tokio::test]
async fn replaying_the_unchanged_set_finds_no_difference() {
    let r = recorded().await;
    let (code, report, stderr) = replay_cli(&r.recording, &r.unchanged, &[]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["statements"], 10);
    assert!(report["results"].as_u64().unwrap() >= 5, "{report:#}");
    assert_eq!(report["differences"], serde_json::json!([]), "{report:#}");
    let latency = report["latency"].as_array().unwrap();
    assert!(
        latency
            .iter()
            .any(|l| l["policy"] == "guardrails" && l["hook"] == "authorize")
    );
    assert!(
        latency
            .iter()
            .any(|l| l["policy"] == "pii-mask" && l["hook"] == "plan-masks")
    );
}

#[tokio::test]
async fn a_stricter_guardrail_shows_exactly_the_new_denials() {
    let env = env().await;
    let r = recorded().await;
    let dir = policy_dir(env, "stricter", &[stricter_guardrails(), demo_mask()]);
    let (code, report, _) = replay_cli(&r.recording, &dir, &[]);
    assert_ne!(
        code, 0,
        "undeclared differences fail the replay: {report:#}"
    );
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 3, "{report:#}");
    for d in diffs {
        assert_eq!(d["kind"], "allow_to_deny");
        assert_eq!(d["user"], "etl-agent");
        assert_eq!(d["policy"], "guardrails");
        assert_eq!(d["expected"], false);
        let verdicts: Vec<(&str, &str)> = d["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["policy"].as_str().unwrap(),
                    v["verdict"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [("guardrails", "deny"), ("pii-mask", "allow")],
            "{d}"
        );
    }
    assert_eq!(report["unexpected"], 3);

    let expect = env
        .scratch_dir()
        .join(portcullis_tests::unique("expect"))
        .with_extension("toml");
    std::fs::write(
        &expect,
        "[[accept]]\nkind = \"allow_to_deny\"\nuser = \"etl-agent\"\npolicy = \"guardrails\"\n",
    )
    .unwrap();
    let (code, report, stderr) =
        replay_cli(&r.recording, &dir, &["--expect", expect.to_str().unwrap()]);
    assert_eq!(code, 0, "declared differences pass: {report:#}\n{stderr}");
    assert_eq!(report["expected"], 3);

    // A budget smaller than the differences fails again.
    std::fs::write(&expect, "[[accept]]\nkind = \"allow_to_deny\"\nmax = 2\n").unwrap();
    let (code, report, _) = replay_cli(&r.recording, &dir, &["--expect", expect.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert_eq!(report["unexpected"], 1);
}

#[tokio::test]
async fn a_changed_mask_shows_per_column_differences() {
    let env = env().await;
    let r = recorded().await;
    let dir = policy_dir(env, "phone", &[demo_guardrails(), stricter_mask()]);
    let (code, report, _) = replay_cli(&r.recording, &dir, &[]);
    assert_ne!(code, 0);
    let diffs = report["differences"].as_array().unwrap();
    assert!(!diffs.is_empty(), "{report:#}");
    for d in diffs {
        assert_eq!(d["kind"], "mask_changed", "{d}");
        assert_eq!(d["column"], "phone", "{d}");
    }
    let alice = diffs
        .iter()
        .find(|d| d["user"] == "alice")
        .expect("alice's phone column");
    assert_eq!(alice["before"], "digits:4");
    assert_eq!(alice["after"], "redact:***");
}

#[tokio::test]
async fn the_audit_trail_replays_too() {
    let env = env().await;
    let r = recorded().await;
    let files: Vec<PathBuf> = std::fs::read_dir(&r.audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let (code, report, stderr) = replay_cli(&files[0], &r.unchanged, &[]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["statements"], 10, "{report:#}");
    assert_eq!(report["fidelity"]["audit_full"], 10, "{report:#}");
    let dir = policy_dir(env, "stricter-audit", &[stricter_guardrails(), demo_mask()]);
    let (code, report, _) = replay_cli(&files[0], &dir, &[]);
    assert_ne!(code, 0);
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 3, "{report:#}");
    assert!(
        diffs
            .iter()
            .all(|d| d["kind"] == "allow_to_deny" && d["user"] == "etl-agent")
    );
}

#[tokio::test]
async fn a_corrupt_or_truncated_recording_names_the_line() {
    let env = env().await;
    let r = recorded().await;
    let text = std::fs::read_to_string(&r.recording).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[2] = "{\"type\": \"statement\", garbage";
    let bad = env
        .scratch_dir()
        .join(portcullis_tests::unique("corrupt"))
        .with_extension("jsonl");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let opts = |rec: &Path| portcullis::policy::replay::ReplayOptions {
        recording: rec.to_owned(),
        policies: r.unchanged.clone(),
        expectations: Default::default(),
        progress: false,
        threads: 2,
    };
    let e = portcullis::policy::replay::replay(&opts(&bad)).unwrap_err();
    assert!(e.contains(&format!("{}:3:", bad.display())), "{e}");
    assert!(e.contains("not valid JSON"), "{e}");

    let last = text.trim_end().len();
    let truncated = env
        .scratch_dir()
        .join(portcullis_tests::unique("truncated"))
        .with_extension("jsonl");
    std::fs::write(&truncated, &text[..last - 20]).unwrap();
    let n = text.trim_end().lines().count();
    let e = portcullis::policy::replay::replay(&opts(&truncated)).unwrap_err();
    assert!(e.contains(&format!(":{n}: truncated line")), "{e}");

    let other = env
        .scratch_dir()
        .join(portcullis_tests::unique("other"))
        .with_extension("jsonl");
    std::fs::write(&other, "{\"hello\": 1}\n").unwrap();
    let e = portcullis::policy::replay::replay(&opts(&other)).unwrap_err();
    assert!(e.contains(":1: neither a recording"), "{e}");
}

#[tokio::test]
async fn recording_filters_select_identity_database_and_sample() {
    let env = env().await;
    let dir = env.scratch_dir().join(portcullis_tests::unique("filters"));
    let only_alice = dir.join("alice.jsonl");
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![demo_guardrails()],
            extra_toml: format!(
                "[recording]\npath = {:?}\nidentities = [\"alice\"]\ndatabases = [\"demo\"]\n",
                only_alice.display().to_string()
            ),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let a = gw.connect("alice", "demo").await.unwrap();
    a.simple_query("SELECT 1 AS recorded").await.unwrap();
    let a2 = gw.connect("alice", "postgres").await.unwrap();
    a2.simple_query("SELECT 2 AS other_database").await.unwrap();
    let b = gw.connect("bob", "demo").await.unwrap();
    b.simple_query("SELECT 3 AS other_identity").await.unwrap();
    a.simple_query("SELECT 4 AS recorded_too").await.unwrap();
    wait_statements(&only_alice, 2).await;
    gw.shutdown().await;
    let sql: Vec<String> = lines_of(&only_alice, "statement")
        .iter()
        .map(|s| s["sql"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sql, ["SELECT 1 AS recorded", "SELECT 4 AS recorded_too"]);

    let none = dir.join("none.jsonl");
    let gw = env
        .start_gateway(GatewayOptions {
            extra_toml: format!(
                "[recording]\npath = {:?}\nsample_rate = 0.0\n",
                none.display().to_string()
            ),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let c = gw.connect("alice", "demo").await.unwrap();
    for _ in 0..20 {
        c.simple_query("SELECT 5 AS sampled_out").await.unwrap();
    }
    // A statement recorded by a second gateway on the same file proves the writer is
    // not merely behind: sample_rate = 1 records, 0 never does.
    let all = env
        .start_gateway(GatewayOptions {
            extra_toml: format!("[recording]\npath = {:?}\n", none.display().to_string()),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let d = all.connect("alice", "demo").await.unwrap();
    d.simple_query("SELECT 6 AS sampled_in").await.unwrap();
    wait_statements(&none, 1).await;
    drop(c);
    gw.shutdown().await;
    all.shutdown().await;
    let sql: Vec<String> = lines_of(&none, "statement")
        .iter()
        .map(|s| s["sql"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(sql, ["SELECT 6 AS sampled_in"]);
    let err = env
        .start_gateway(GatewayOptions {
            extra_toml: format!(
                "[recording]\npath = {:?}\nsample_rate = 2\n",
                none.display().to_string()
            ),
            ..GatewayOptions::default()
        })
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("recording.sample_rate"),
        "{err:#}"
    );
}

#[tokio::test]
async fn shadow_mode_counts_differences_while_clients_get_live_decisions() {
    let env = env().await;
    let candidate = policy_dir(env, "shadow", &[stricter_guardrails()]);
    let toml = format!("[shadow]\npath = {:?}\n", candidate.display().to_string());
    let gw = gateway(env, vec![demo_guardrails()], toml).await;
    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    for _ in 0..4 {
        let rows = etl
            .query("SELECT id FROM orders ORDER BY id LIMIT 2", &[])
            .await
            .expect("the live set allows it; the shadow set's denial is not enforced");
        assert_eq!(rows.len(), 2);
    }
    let alice = gw.connect("alice", "demo").await.unwrap();
    alice
        .simple_query("SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert!(
        alice.simple_query("DROP TABLE customers").await.is_err(),
        "live denials stay"
    );
    let addr = gw.admin_addr().unwrap();
    eventually(Duration::from_secs(10), "shadow evaluations", || async {
        let m = admin::get(addr, "/metrics").await?.body;
        let evaluated =
            admin::metric_value(&m, "portcullis_shadow_evaluations_total").unwrap_or(0.0);
        anyhow::ensure!(evaluated >= 6.0, "{evaluated} evaluated");
        Ok(())
    })
    .await
    .unwrap();
    let m = admin::get(addr, "/metrics").await.unwrap().body;
    assert_eq!(
        admin::metric_value(
            &m,
            "portcullis_shadow_differences_total{kind=\"allow_to_deny\"}"
        ),
        Some(4.0),
        "{m}"
    );
    assert_eq!(
        admin::metric_value(&m, "portcullis_shadow_dropped_total"),
        Some(0.0)
    );
    assert!(
        !m.contains("shadow_differences_total{kind=\"deny_to_allow\"}"),
        "{m}"
    );
    let status = shadow_status(&gw).await;
    assert_eq!(status["version"], "shadow");
    assert_eq!(status["differences"]["allow_to_deny"], 4, "{status}");
    gw.shutdown().await;
}

#[tokio::test]
async fn bench_reports_latency_and_instance_cost_per_policy() {
    let r = recorded().await;
    let out = std::process::Command::new(portcullis_bin())
        .args(["policy", "bench", "--rounds", "2", "--json", "--recording"])
        .arg(&r.recording)
        .arg("--policies")
        .arg(&r.unchanged)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["statements"], 10);
    let latency = report["latency"].as_array().unwrap();
    let guardrails = latency
        .iter()
        .find(|l| l["policy"] == "guardrails" && l["hook"] == "authorize")
        .expect("guardrails latency");
    assert_eq!(guardrails["calls"], 20, "10 statements, 2 rounds");
    let instances = report["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 2, "{report:#}");
    for i in instances {
        assert!(i["memory_kib"].as_u64().unwrap() > 0, "{i}");
        assert!(i["artifact_bytes"].as_u64().unwrap() > 0, "{i}");
    }
}

#[tokio::test]
async fn a_trapping_shadow_candidate_is_only_counted() {
    let env = env().await;
    let candidate = policy_dir(
        env,
        "shadow-hostile",
        &[portcullis_tests::policies::hostile("behaviour = \"loop\"")],
    );
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![demo_guardrails()],
            extra_toml: format!("[shadow]\npath = {:?}\n", candidate.display().to_string()),
            ..GatewayOptions::default()
        })
        .await
        .expect("gateway with a hostile shadow set");
    let c = gw.connect("alice", "demo").await.unwrap();
    for i in 0..3 {
        let rows = c
            .simple_query(&format!("SELECT {i} AS live"))
            .await
            .expect("the client gets the live decision");
        assert!(!rows.is_empty());
    }
    let addr = gw.admin_addr().unwrap();
    eventually(Duration::from_secs(20), "shadow errors", || async {
        let m = admin::get(addr, "/metrics").await?.body;
        let errors = admin::metric_value(&m, "portcullis_shadow_differences_total{kind=\"error\"}")
            .unwrap_or(0.0);
        anyhow::ensure!(errors >= 3.0, "{errors} errors counted");
        Ok(())
    })
    .await
    .unwrap();
    gw.shutdown().await;
}

#[tokio::test]
async fn a_recording_stops_at_its_size_cap() {
    let env = env().await;
    let path = env
        .scratch_dir()
        .join(portcullis_tests::unique("capped"))
        .join("capped.jsonl");
    let gw = env
        .start_gateway(GatewayOptions {
            extra_toml: format!(
                "[recording]\npath = {:?}\nmax_file_bytes = 3000\n",
                path.display().to_string()
            ),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let c = gw.connect("alice", "demo").await.unwrap();
    for i in 0..30 {
        c.simple_query(&format!("SELECT {i} AS capped"))
            .await
            .unwrap();
    }
    let addr = gw.admin_addr().unwrap();
    eventually(
        Duration::from_secs(10),
        "lines written or dropped",
        || async {
            let m = admin::get(addr, "/metrics").await?.body;
            let written =
                admin::metric_value(&m, "portcullis_recording_lines_total").unwrap_or(0.0);
            let dropped =
                admin::metric_value(&m, "portcullis_recording_dropped_total").unwrap_or(0.0);
            anyhow::ensure!(
                written + dropped >= 30.0,
                "{written} written, {dropped} dropped"
            );
            anyhow::ensure!(dropped > 0.0, "nothing dropped");
            Ok(())
        },
    )
    .await
    .unwrap();
    gw.shutdown().await;
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size <= 3000, "{size} bytes");
    assert!(!lines_of(&path, "statement").is_empty());
}

#[tokio::test]
async fn a_redacted_audit_trail_replays_from_its_redacted_text() {
    let env = env().await;
    let r = recorded().await;
    let audit_dir = env.scratch_dir().join(portcullis_tests::unique("redacted"));
    let gw = env
        .start_gateway(GatewayOptions {
            policies: vec![demo_guardrails(), demo_mask()],
            extra_toml: format!(
                "[audit]\ndir = {:?}\nstatement_text = \"redacted\"\n",
                audit_dir.display().to_string()
            ),
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    demo_traffic(&gw).await;
    gw.shutdown().await;
    let file = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .expect("an audit file");
    let (code, report, stderr) = replay_cli(&file, &r.unchanged, &[]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    assert_eq!(report["statements"], 10, "{report:#}");
    // Redacted text without literals parses as is; the rest with NULL for each `?`.
    let f = &report["fidelity"];
    assert!(f["audit_redacted"].as_u64().unwrap_or(0) >= 3, "{report:#}");
    assert_eq!(
        f["audit_redacted"].as_u64().unwrap_or(0) + f["audit_full"].as_u64().unwrap_or(0),
        10,
        "{report:#}"
    );
}

#[tokio::test]
async fn a_rule_asking_for_approval_shows_newly_held_statements() {
    let env = env().await;
    let r = recorded().await;
    let mut g = demo_guardrails();
    let rule: toml::Table = toml::from_str(
        "description = \"agents reading orders need a DBA's approval\"\nprincipal_kinds = [\"agent\"]\ntables = [\"orders\"]\ndeny_access = [\"read\"]\naction = \"require-approval\"\napprovers = [\"group:dba\"]\n",
    )
    .unwrap();
    g.settings
        .get_mut("rules")
        .and_then(|r| r.as_array_mut())
        .unwrap()
        .push(toml::Value::Table(rule));
    let dir = policy_dir(env, "approval", &[g, demo_mask()]);
    let (code, report, _) = replay_cli(&r.recording, &dir, &[]);
    assert_ne!(code, 0);
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 3, "{report:#}");
    for d in diffs {
        assert_eq!(d["kind"], "allow_to_hold", "{d}");
        assert_eq!(d["user"], "etl-agent");
        assert_eq!(d["policy"], "guardrails");
    }
}

/// A parameter tokio-postgres sends in text format (its own types go in binary).
#[derive(Debug)]
struct TextParam(&'static str);

impl tokio_postgres::types::ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(_ty: &tokio_postgres::types::Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &tokio_postgres::types::Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    tokio_postgres::types::to_sql_checked!();
}

/// The probe test policy denying statements whose SQL or text parameters hold
/// `/*probe*/`.
fn denying_probe() -> PolicyConfig {
    let mut p = PolicyConfig::new("probe", portcullis_tests::policies::component("probe"));
    p.settings = toml::from_str("behaviour = \"deny\"").unwrap();
    p
}

#[tokio::test]
async fn bound_parameters_are_recorded_and_replayed_to_policies() {
    let env = env().await;
    let recording = env
        .scratch_dir()
        .join(portcullis_tests::unique("params"))
        .join("params.jsonl");
    let toml = format!(
        "[recording]\npath = {:?}\n",
        recording.display().to_string()
    );
    let gw = gateway(env, vec![demo_guardrails()], toml).await;
    let etl = gw.connect("etl-agent", "demo").await.unwrap();
    let rows = etl
        .query(
            "SELECT $1::text AS v, $2::int8 AS n",
            &[&TextParam("hello /*probe*/"), &7i64],
        )
        .await
        .unwrap();
    assert_eq!(rows[0].get::<_, String>(0), "hello /*probe*/");
    // A statement prepared once and executed twice is recorded at each execution.
    let st = etl.prepare("SELECT $1::int8 + 1 AS next").await.unwrap();
    for n in [1i64, 2] {
        etl.query(&st, &[&n]).await.unwrap();
    }
    etl.simple_query("SELECT 'no parameters' AS simple")
        .await
        .unwrap();
    wait_statements(&recording, 4).await;
    gw.shutdown().await;

    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&recording)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["version"], 2);
    let statements = lines_of(&recording, "statement");
    assert_eq!(statements.len(), 4, "{statements:#?}");
    let first = &statements[0];
    assert_eq!(first["protocol"], "extended");
    assert_eq!(
        first["params"],
        serde_json::json!(["hello /*probe*/", "\\x0000000000000007"]),
        "text as text, binary as hex: {first}"
    );
    assert_eq!(first["binary_params"], serde_json::json!([1]), "{first}");
    let nexts: Vec<&serde_json::Value> = statements[1..3].iter().map(|s| &s["params"]).collect();
    assert_eq!(
        nexts,
        [
            &serde_json::json!(["\\x0000000000000001"]),
            &serde_json::json!(["\\x0000000000000002"])
        ]
    );
    assert!(statements[3].get("params").is_none(), "{}", statements[3]);

    // The probe decides on the parameter: only the statement that bound it differs.
    let unchanged = policy_dir(env, "params-unchanged", &[demo_guardrails()]);
    let (code, report, stderr) = replay_cli(&recording, &unchanged, &[]);
    assert_eq!(code, 0, "{report:#}\n{stderr}");
    let probing = policy_dir(env, "params-probe", &[demo_guardrails(), denying_probe()]);
    let (code, report, _) = replay_cli(&recording, &probing, &[]);
    assert_ne!(code, 0);
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{report:#}");
    assert_eq!(diffs[0]["kind"], "allow_to_deny");
    assert_eq!(diffs[0]["policy"], "probe");
    assert_eq!(diffs[0]["seq"], first["seq"]);
}

/// `GET /shadow` as JSON.
async fn shadow_status(gw: &Gateway) -> serde_json::Value {
    admin::get_json(gw.admin_addr().unwrap(), "/shadow").await
}

/// A gateway enforcing `policies`, with `extra_toml` added to its configuration.
async fn gateway(env: &TestEnv, policies: Vec<PolicyConfig>, extra_toml: String) -> Gateway {
    env.start_gateway(GatewayOptions {
        policies,
        extra_toml,
        ..GatewayOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("gateway: {e:#}"))
}

#[tokio::test]
async fn shadow_mode_compares_mask_plans_per_column() {
    let env = env().await;
    let candidate = policy_dir(env, "shadow-mask", &[demo_guardrails(), stricter_mask()]);
    let toml = format!("[shadow]\npath = {:?}\n", candidate.display().to_string());
    let gw = gateway(env, vec![demo_guardrails(), demo_mask()], toml).await;
    let alice = gw.connect("alice", "demo").await.unwrap();
    for _ in 0..2 {
        let rows = alice
            .query(
                "SELECT id, email, phone FROM customers ORDER BY id LIMIT 2",
                &[],
            )
            .await
            .unwrap();
        let phone: String = rows[0].get(2);
        assert!(
            phone.chars().filter(|c| c.is_ascii_digit()).count() <= 4 && phone != "***",
            "the client gets the live mask (last 4 digits), not the candidate's: {phone}"
        );
    }
    // Same masks in both sets: no difference.
    alice
        .query("SELECT email FROM customers ORDER BY id LIMIT 1", &[])
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "shadow mask plans", || async {
        let s = shadow_status(&gw).await;
        anyhow::ensure!(s["results_evaluated"].as_u64() >= Some(3), "{s}");
        Ok(())
    })
    .await
    .unwrap();
    let status = shadow_status(&gw).await;
    assert_eq!(
        status["differences"],
        serde_json::json!({"mask_changed": 2}),
        "one per result set with a phone column, no decision difference: {status}"
    );
    let m = admin::get(gw.admin_addr().unwrap(), "/metrics")
        .await
        .unwrap()
        .body;
    assert_eq!(
        admin::metric_value(
            &m,
            "portcullis_shadow_differences_total{kind=\"mask_changed\"}"
        ),
        Some(2.0),
        "{m}"
    );
    gw.shutdown().await;
}

/// Runs the probe statement twice on `c` (the live set allows it) and waits until
/// the shadow set evaluated both; returns `GET /shadow` then.
async fn probe_twice(gw: &Gateway, c: &portcullis_tests::Conn) -> serde_json::Value {
    let before = shadow_status(gw).await["evaluated"].as_u64().unwrap();
    for _ in 0..2 {
        c.simple_query("SELECT 1 /*probe*/")
            .await
            .expect("the live set allows it");
    }
    eventually(Duration::from_secs(10), "shadow evaluations", || async {
        let s = shadow_status(gw).await;
        anyhow::ensure!(s["evaluated"].as_u64().unwrap() >= before + 2, "{s}");
        Ok(s)
    })
    .await
    .unwrap()
}

/// Waits until `GET /shadow` satisfies `ok`.
async fn shadow_until(
    gw: &Gateway,
    what: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(Duration::from_secs(20), what, || async {
        let s = shadow_status(gw).await;
        anyhow::ensure!(ok(&s), "{s}");
        Ok(s)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn the_shadow_candidate_is_reloaded_when_its_directory_changes() {
    let env = env().await;
    let probe = |behaviour: &str| {
        let mut p = denying_probe();
        p.settings = toml::from_str(&format!("behaviour = {behaviour:?}")).unwrap();
        p
    };
    let candidate = policy_dir(env, "shadow-reload", &[probe("deny")]);
    let toml = format!(
        "[shadow]\npath = {:?}\ndebounce_ms = 50\n",
        candidate.display().to_string()
    );
    let gw = gateway(env, vec![demo_guardrails()], toml).await;
    let c = gw.connect("alice", "demo").await.unwrap();
    let s = probe_twice(&gw, &c).await;
    assert_eq!(s["differences"]["allow_to_deny"], 2, "{s}");

    // The candidate now allows the probe statement: no new difference.
    write_policy_dir(&candidate, "v2", &[probe("allow")]);
    let s = shadow_until(&gw, "candidate v2", |s| s["version"] == "v2").await;
    assert!(s["reloads"]["ok"].as_u64() >= Some(1), "{s}");
    let s = probe_twice(&gw, &c).await;
    assert_eq!(s["differences"]["allow_to_deny"], 2, "{s}");

    // A candidate that does not load (an artifact that is not the pinned one) keeps
    // v2 evaluating, and says why.
    let manifest = candidate.join("policies.toml");
    let mut broken: toml::Table =
        toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    broken.insert("version".into(), "v3".into());
    broken["policies"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("sha256".into(), "00".repeat(32).into());
    std::fs::write(&manifest, toml::to_string(&broken).unwrap()).unwrap();
    let s = shadow_until(&gw, "a failed reload", |s| {
        s["reloads"]["error"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(s["version"], "v2", "{s}");
    assert!(s["last_error"].as_str().unwrap().contains("sha256"), "{s}");
    let s = probe_twice(&gw, &c).await;
    assert_eq!(s["differences"]["allow_to_deny"], 2, "v2 still allows: {s}");

    // Denying again: the differences count again, on the same connection.
    write_policy_dir(&candidate, "v4", &[probe("deny")]);
    let s = shadow_until(&gw, "candidate v4", |s| s["version"] == "v4").await;
    assert!(s["last_error"].is_null(), "{s}");
    let s = probe_twice(&gw, &c).await;
    assert_eq!(s["differences"]["allow_to_deny"], 4, "{s}");
    let m = admin::get(gw.admin_addr().unwrap(), "/metrics")
        .await
        .unwrap()
        .body;
    assert!(
        admin::metric_value(&m, "portcullis_shadow_reloads_total{result=\"error\"}") >= Some(1.0),
        "{m}"
    );
    gw.shutdown().await;
}
