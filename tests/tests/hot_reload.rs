//! Hot reload of a policy directory: swaps under load without a failed statement,
//! every kind of bad change refused while the old set keeps serving, signatures, and
//! rollback. The policy is the probe test component (authorize only), so the two
//! versions differ in exactly one observable way: whether `SELECT 1 /*probe*/` is
//! denied.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_tests::admin;
use portcullis_tests::pg::{Conn, sqlstate};
use portcullis_tests::policies::component;
use portcullis_tests::tools::{clean_command, require_tool, run_async};
use portcullis_tests::{EnvOptions, Gateway, GatewayOptions, TestEnv, eventually, password_for};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

const TOKEN: &str = "reload-test-token";

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A policy directory under the test's scratch space.
struct PolicyDir {
    path: PathBuf,
}

impl PolicyDir {
    fn new(env: &TestEnv, name: &str) -> PolicyDir {
        let path = env.scratch_dir().join(portcullis_tests::unique(name));
        std::fs::create_dir_all(&path).unwrap();
        std::fs::copy(component("probe"), path.join("probe.wasm")).unwrap();
        PolicyDir { path }
    }

    fn artifact_sha(&self) -> String {
        sha256_hex(&std::fs::read(self.path.join("probe.wasm")).unwrap())
    }

    /// Writes the manifest atomically (write + rename), as a sync tool would.
    fn write_manifest(&self, version: &str, settings: &str, extra: &str) {
        let text = format!(
            "version = \"{version}\"\n\n[[policies]]\nid = \"probe\"\nartifact = \"probe.wasm\"\nversion = \"0.1.0\"\nsha256 = \"{}\"\ndeadline_ms = 50\n{extra}\n[policies.settings]\n{settings}\n",
            self.artifact_sha()
        );
        let tmp = self.path.join(".policies.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path.join("policies.toml")).unwrap();
    }

    fn denying(&self, version: &str) {
        self.write_manifest(version, "behaviour = \"deny\"", "");
    }

    fn allowing(&self, version: &str) {
        self.write_manifest(version, "behaviour = \"allow\"", "");
    }

    fn toml(&self, watch: bool, signing: Option<&Path>) -> String {
        let mut t = format!(
            "[policy_dir]\npath = {:?}\nwatch = {watch}\ndebounce_ms = 50\n",
            self.path.display().to_string()
        );
        if let Some(key) = signing {
            t.push_str(&format!(
                "require_signatures = true\ntrusted_keys = [{:?}]\n",
                key.display().to_string()
            ));
        }
        t
    }
}

async fn gateway(env: &TestEnv, dir: &PolicyDir, watch: bool, key: Option<&Path>) -> Gateway {
    env.start_gateway(GatewayOptions {
        extra_toml: dir.toml(watch, key),
        admin_control_token: Some(TOKEN.into()),
        ..GatewayOptions::default()
    })
    .await
    .expect("gateway with a policy directory")
}

/// Whether the probe statement is denied now.
async fn probe_denied(c: &Conn) -> bool {
    match c.simple_query("SELECT 1 /*probe*/").await {
        Ok(_) => false,
        Err(e) => {
            assert_eq!(sqlstate(&e).as_deref(), Some("42501"), "{e:?}");
            true
        }
    }
}

async fn status(gw: &Gateway) -> serde_json::Value {
    admin::get_json(gw.admin_addr().unwrap(), "/policies").await
}

async fn reload(gw: &Gateway) -> admin::HttpResponse {
    admin::post(gw.admin_addr().unwrap(), "/policies/reload", Some(TOKEN))
        .await
        .unwrap()
}

#[tokio::test]
async fn twenty_swaps_under_load_fail_no_statement() {
    let env = env().await;
    let dir = PolicyDir::new(env, "swap");
    dir.allowing("v0");
    let gw = gateway(env, &dir, true, None).await;
    env.admin_sql(
        "demo",
        "create table if not exists reload_load(id int primary key, v text); \
         insert into reload_load select g, 'x' from generate_series(1, 100) g on conflict do nothing",
    );
    let interactive = gw.connect("alice", "demo").await.unwrap();
    assert!(!probe_denied(&interactive).await);

    // pgbench through the gateway while the set is swapped.
    let script = env.scratch_dir().join("reload_load.sql");
    std::fs::write(
        &script,
        "\\set id random(1, 100)\nSELECT v FROM reload_load WHERE id = :id;\n",
    )
    .unwrap();
    let mut cmd = clean_command(require_tool("pgbench"));
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", gw.port().to_string())
        .env("PGUSER", "bob")
        .env("PGPASSWORD", password_for("bob"))
        .env("PGDATABASE", "demo")
        .env("PGSSLMODE", "disable")
        .args(["-n", "-c", "4", "-j", "2", "-T", "25", "-f"])
        .arg(&script);
    let load = tokio::spawn(run_async(cmd, None));

    let mut visible_ms = Vec::new();
    for i in 1..=20 {
        let deny = i % 2 == 1;
        let changed = Instant::now();
        if deny {
            dir.denying(&format!("v{i}"));
        } else {
            dir.allowing(&format!("v{i}"));
        }
        eventually(Duration::from_secs(20), "the new set serves", || async {
            if probe_denied(&interactive).await == deny {
                Ok(())
            } else {
                anyhow::bail!("still the old behaviour")
            }
        })
        .await
        .unwrap();
        visible_ms.push(changed.elapsed().as_millis());
        assert_eq!(status(&gw).await["version"], format!("v{i}"));
    }
    visible_ms.sort();
    eprintln!(
        "reload visible after (ms): median {} max {} (all: {visible_ms:?})",
        visible_ms[visible_ms.len() / 2],
        visible_ms[visible_ms.len() - 1]
    );
    let out = load.await.unwrap();
    out.assert_success("pgbench during the swaps");
    assert!(
        out.stdout.contains("number of failed transactions: 0"),
        "{}",
        out.stdout
    );
    // The interactive session held open throughout still works.
    let v: i32 = interactive.query_one("SELECT 7", &[]).await.unwrap().get(0);
    assert_eq!(v, 7);
    gw.shutdown().await;
}

#[tokio::test]
async fn bad_changes_leave_the_old_set_serving_and_are_reported() {
    let env = env().await;
    let dir = PolicyDir::new(env, "bad");
    dir.denying("good");
    let gw = gateway(env, &dir, false, None).await;
    let c = gw.connect("alice", "demo").await.unwrap();
    assert!(probe_denied(&c).await);

    let sha = dir.artifact_sha();
    let manifest = |artifact: &str, sha: &str, settings: &str, extra: &str| {
        format!(
            "version = \"bad\"\n[[policies]]\nid = \"probe\"\nartifact = \"{artifact}\"\nversion = \"0.1.0\"\nsha256 = \"{sha}\"\n{extra}\n[policies.settings]\n{settings}\n"
        )
    };
    let garbage = b"\0asm not really a component".to_vec();
    std::fs::write(dir.path.join("corrupt.wasm"), &garbage).unwrap();
    let half = std::fs::read(dir.path.join("probe.wasm")).unwrap();
    std::fs::write(dir.path.join("half.wasm"), &half[..half.len() / 2]).unwrap();
    std::fs::write(
        dir.path.join("failing.fixtures.toml"),
        "[[case]]\nuser = \"alice\"\nsql = \"SELECT 1\"\nexpect = \"deny\"\n",
    )
    .unwrap();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "corrupt artifact",
            Some(manifest(
                "corrupt.wasm",
                &sha256_hex(&garbage),
                "behaviour = \"allow\"",
                "",
            )),
            "not a loadable policy component",
        ),
        (
            "digest mismatch",
            Some(manifest(
                "probe.wasm",
                &"0".repeat(64),
                "behaviour = \"allow\"",
                "",
            )),
            "but the manifest pins",
        ),
        (
            "half-written file",
            Some(manifest("half.wasm", &sha, "behaviour = \"allow\"", "")),
            "but the manifest pins",
        ),
        (
            "settings the policy rejects",
            Some(manifest(
                "probe.wasm",
                &sha,
                "behaviour = \"reject-settings\"",
                "",
            )),
            "rejected its settings",
        ),
        (
            "fixtures that fail",
            Some(manifest(
                "probe.wasm",
                &sha,
                "behaviour = \"allow\"",
                "fixtures = \"failing.fixtures.toml\"",
            )),
            "expected Deny, got Allow",
        ),
        (
            "a policy that traps on its fixtures",
            Some(manifest(
                "probe.wasm",
                &sha,
                "behaviour = \"panic\"\ntrigger = \"SELECT\"",
                "fixtures = \"failing.fixtures.toml\"",
            )),
            "failed: wasm trap",
        ),
        (
            "unparsable manifest",
            Some("version = [".to_owned()),
            "policies.toml",
        ),
        ("deleted manifest", None, "cannot read"),
    ];
    for (what, text, expected) in cases {
        match text {
            Some(t) => std::fs::write(dir.path.join("policies.toml"), t).unwrap(),
            None => std::fs::remove_file(dir.path.join("policies.toml")).unwrap(),
        }
        let r = reload(&gw).await;
        assert_eq!(r.status, 409, "{what}: {}", r.body);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let error = body["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(expected), "{what}: {error}");
        let s = status(&gw).await;
        assert_eq!(s["version"], "good", "{what}: the old set serves");
        assert!(
            s["last_error"]["error"].as_str().is_some(),
            "{what}: /policies shows the failure: {s}"
        );
        assert!(probe_denied(&c).await, "{what}: old behaviour kept");
    }
    let metrics = admin::get(gw.admin_addr().unwrap(), "/metrics")
        .await
        .unwrap()
        .body;
    assert!(
        metrics.contains("portcullis_policy_reloads_total{result=\"error\"} 8"),
        "{metrics}"
    );
    // A good change afterwards goes live and clears the error.
    dir.allowing("fixed");
    let r = reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!probe_denied(&c).await);
    assert!(status(&gw).await["last_error"].is_null());
    gw.shutdown().await;
}

#[tokio::test]
async fn rollback_restores_the_previous_set_and_control_needs_the_token() {
    let env = env().await;
    let dir = PolicyDir::new(env, "rollback");
    dir.denying("one");
    let gw = gateway(env, &dir, false, None).await;
    let c = gw.connect("alice", "demo").await.unwrap();
    let addr = gw.admin_addr().unwrap();
    assert_eq!(
        admin::post(addr, "/policies/reload", None)
            .await
            .unwrap()
            .status,
        401
    );
    assert_eq!(
        admin::post(addr, "/policies/reload", Some("wrong"))
            .await
            .unwrap()
            .status,
        401
    );
    dir.allowing("two");
    assert_eq!(reload(&gw).await.status, 200);
    assert!(!probe_denied(&c).await);
    let r = admin::post(addr, "/policies/rollback", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(probe_denied(&c).await, "rolled back to the denying set");
    let s = status(&gw).await;
    assert_eq!(s["version"], "one");
    assert_eq!(s["previous_version"], "two");
    gw.shutdown().await;
}

#[tokio::test]
async fn signatures_are_required_when_configured() {
    let env = env().await;
    let dir = PolicyDir::new(env, "signed");
    let keys = env.scratch_dir().join(portcullis_tests::unique("keys"));
    std::fs::create_dir_all(&keys).unwrap();
    let portcullis = std::env::var("CARGO_BIN_EXE_portcullis")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/portcullis")
        });
    assert!(
        portcullis.is_file(),
        "{} is missing: cargo build -p portcullis",
        portcullis.display()
    );
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(&portcullis)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "portcullis {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let key = keys.join("ci.key");
    let other = keys.join("other.key");
    cli(&["policy", "keygen", "--out", key.to_str().unwrap()]);
    cli(&["policy", "keygen", "--out", other.to_str().unwrap()]);
    let pubkey = keys.join("ci.key.pub");
    let manifest = dir.path.join("policies.toml");
    let artifact = dir.path.join("probe.wasm");
    let sign = |k: &Path| {
        cli(&[
            "policy",
            "sign",
            "--key",
            k.to_str().unwrap(),
            artifact.to_str().unwrap(),
            manifest.to_str().unwrap(),
        ])
    };
    dir.denying("signed-1");
    sign(&key);
    let ok = cli(&[
        "policy",
        "verify",
        "--key",
        pubkey.to_str().unwrap(),
        artifact.to_str().unwrap(),
        manifest.to_str().unwrap(),
    ]);
    assert!(ok.contains(": ok"), "{ok}");
    let inspect = cli(&["policy", "inspect", artifact.to_str().unwrap()]);
    for want in [
        "sha256:",
        "exports:",
        "authorize",
        "name:    portcullis-probe",
    ] {
        assert!(inspect.contains(want), "inspect shows {want}:\n{inspect}");
    }
    let gw = gateway(env, &dir, false, Some(&pubkey)).await;
    let c = gw.connect("alice", "demo").await.unwrap();
    assert!(probe_denied(&c).await);

    // A change signed with an untrusted key is refused.
    dir.allowing("signed-2");
    sign(&other);
    let r = reload(&gw).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body.contains("does not match any trusted key"),
        "{}",
        r.body
    );
    // Unsigned (the signature of an older manifest) is refused too.
    sign(&key);
    dir.allowing("signed-3");
    let r = reload(&gw).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(probe_denied(&c).await, "the signed set keeps serving");
    // Properly signed: goes live.
    sign(&key);
    let r = reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(!probe_denied(&c).await);
    gw.shutdown().await;
}

#[tokio::test]
async fn the_audit_trail_records_each_swap_and_names_the_live_set() {
    let env = env().await;
    let dir = PolicyDir::new(env, "audited");
    dir.denying("audited-1");
    let audit_dir = env
        .scratch_dir()
        .join(portcullis_tests::unique("reload-audit"));
    let gw = env
        .start_gateway(GatewayOptions {
            extra_toml: format!(
                "{}\n[audit]\ndir = {:?}\nfsync = \"always\"\n",
                dir.toml(false, None),
                audit_dir.display().to_string()
            ),
            admin_control_token: Some(TOKEN.into()),
            ..GatewayOptions::default()
        })
        .await
        .expect("gateway with a policy directory and an audit trail");
    let c = gw.connect("alice", "demo").await.unwrap();
    assert!(probe_denied(&c).await);
    dir.allowing("audited-2");
    assert_eq!(reload(&gw).await.status, 200);
    assert!(!probe_denied(&c).await);
    let r = admin::post(gw.admin_addr().unwrap(), "/policies/rollback", Some(TOKEN))
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(probe_denied(&c).await);
    gw.shutdown().await;
    let mut events = Vec::new();
    for entry in std::fs::read_dir(&audit_dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            events.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
        }
    }
    let loads: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "policy_load")
        .map(|e| e["detail"]["reason"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(loads, ["start", "reload", "rollback"], "{events:#?}");
    let reload_event = events
        .iter()
        .find(|e| e["kind"] == "policy_load" && e["detail"]["reason"] == "reload")
        .unwrap();
    assert_eq!(reload_event["detail"]["set_version"], "audited-2");
    assert_eq!(
        reload_event["policies"][0]["sha256"].as_str().unwrap(),
        dir.artifact_sha()
    );
}

/// A masking policy in a policy directory is hot-reloaded like any other: adding it,
/// changing its settings and removing it each apply to open connections from the next
/// result set.
#[tokio::test]
async fn masking_policies_hot_reload_on_open_connections() {
    let env = env().await;
    let dir = PolicyDir::new(env, "masking");
    std::fs::copy(component("pii-mask"), dir.path.join("pii-mask.wasm")).unwrap();
    let mask_sha = sha256_hex(&std::fs::read(dir.path.join("pii-mask.wasm")).unwrap());
    dir.allowing("1");
    let gw = gateway(env, &dir, false, None).await;
    let alice = gw.connect("alice", "demo").await.unwrap();
    let bob = gw.connect("bob", "demo").await.unwrap();
    let email = |c: &'static Conn| async move {
        let row = c
            .query_one("SELECT email FROM customers ORDER BY id LIMIT 1", &[])
            .await
            .unwrap();
        row.get::<_, String>(0)
    };
    // 'static borrows for the closure: the connections live until the test ends.
    let alice: &'static Conn = Box::leak(Box::new(alice));
    let bob: &'static Conn = Box::leak(Box::new(bob));
    let real = email(bob).await;
    assert_eq!(email(alice).await, real, "no masking policy yet");

    let with_mask = |version: &str, mask: &str| {
        format!(
            "version = \"{version}\"\n\n[[policies]]\nid = \"probe\"\nartifact = \"probe.wasm\"\nversion = \"0.1.0\"\nsha256 = \"{}\"\n[policies.settings]\nbehaviour = \"allow\"\n\n[[policies]]\nid = \"pii-mask\"\nartifact = \"pii-mask.wasm\"\nversion = \"0.1.0\"\nsha256 = \"{mask_sha}\"\n[policies.settings]\nexempt_groups = [\"pii-readers\"]\n[policies.settings.columns]\n\"customers.email\" = \"{mask}\"\n",
            dir.artifact_sha()
        )
    };
    std::fs::write(dir.path.join("policies.toml"), with_mask("2", "email")).unwrap();
    let r = reload(&gw).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let masked = email(alice).await;
    assert_ne!(
        masked, real,
        "the new masking policy applies to the open session"
    );
    assert_eq!(
        masked.rsplit('@').next(),
        real.rsplit('@').next(),
        "the email mask keeps the domain: {masked}"
    );
    assert_eq!(email(bob).await, real, "pii-readers still see the value");

    std::fs::write(
        dir.path.join("policies.toml"),
        with_mask("3", "redact(hidden)"),
    )
    .unwrap();
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(email(alice).await, "hidden", "changed settings apply");

    dir.allowing("4");
    assert_eq!(reload(&gw).await.status, 200);
    assert_eq!(
        email(alice).await,
        real,
        "removing the policy removes the mask"
    );
    gw.shutdown().await;
}
