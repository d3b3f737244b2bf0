//! Policies in any Wasm language: the example policy (shop-rules) written in Rust,
//! Python (componentize-py) and JavaScript (componentize-js), built from
//! `policies-examples/` by `bash policies-examples/build.sh`, run through the real
//! policy host and through the gateway with psql.
//!
//! - the shared fixture suite (`policies-examples/fixtures.toml`) passes for each
//!   language, and the three give identical decisions, SQLSTATEs and messages;
//! - bad settings are rejected at load time, with the same message in each language;
//! - `plan-masks` gives the same plan in each language;
//! - the Python and JavaScript guests load through the precompiled cache (the second
//!   load is a cache hit) and are served by warm instances (a per-instance counter
//!   inside the guest keeps counting across calls);
//! - a Python or JavaScript guest that loops or allocates without bound, or returns a
//!   decision that cannot be read, is stopped: the statement is denied (fail closed),
//!   the next one works;
//! - end to end, psql through a gateway enforcing the Python and the JavaScript
//!   policy sees the same allows and denials;
//! - the JavaScript component imports no `wasi:http`/`wasi:sockets` (built without
//!   the http/fetch-event features);
//! - the JavaScript components export `authorize-json` (world `policy-json`), the
//!   gateway calls it, and the policy gets the very objects `authorize` gives it;
//! - scaffolded Python and JavaScript projects build and pass their fixtures.
//!
//! A missing component or tool fails the test; nothing is skipped.

use std::path::PathBuf;

use portcullis::config::{PolicyConfig, PrincipalKind};
use portcullis::pipeline::Decision;
use portcullis::policy::bindings::portcullis::policy::types as wit;
use portcullis::policy::harness::{Harness, Who};
use portcullis::policy::reload::manifest::{Expect, Fixtures};
use portcullis::policy::reload::run_fixtures;
use portcullis::policy::{
    CacheOutcome, CallContext, PolicyChain, PolicyError, PolicyMetrics, PolicyRuntime,
    load_chain_with,
};
use portcullis_tests::policies::{
    example, example_hostile, example_policy, examples_source_dir, shared_cache_dir,
};
use portcullis_tests::{EnvOptions, GatewayOptions, TestEnv, psql_c};
use tokio::sync::OnceCell;

const LANGS: [&str; 3] = ["rust", "python", "js"];

fn fixtures_path() -> PathBuf {
    examples_source_dir().join("fixtures.toml")
}

fn runtime() -> PolicyRuntime {
    PolicyRuntime::new(Some(shared_cache_dir()), PolicyMetrics::unregistered())
        .expect("the policy runtime starts")
}

fn load(runtime: &PolicyRuntime, config: PolicyConfig) -> Result<PolicyChain, PolicyError> {
    load_chain_with(runtime, &[config], false)
}

/// `(sqlstate, message)` of a denial; `None` for allow.
fn outcome(d: &Decision) -> Option<(String, String)> {
    match d {
        Decision::Allow => None,
        Decision::Deny(d) => Some((d.sqlstate.clone(), d.message.clone())),
        Decision::Hold(h) => Some(("hold".into(), h.reason.clone())),
    }
}

#[test]
fn the_fixture_suite_passes_identically_in_every_language() {
    let text = std::fs::read_to_string(fixtures_path()).expect("fixtures.toml");
    let fixtures: Fixtures = toml::from_str(&text).expect("fixtures.toml parses");
    assert!(fixtures.cases.len() >= 15, "a real suite");
    let rt = runtime();
    let mut per_lang = Vec::new();
    for lang in LANGS {
        // The policy directory's fixture runner: every case as expected, no failures.
        let chain = load(&rt, example_policy(lang)).unwrap_or_else(|e| panic!("{lang}: {e}"));
        let n = run_fixtures(&chain, &fixtures_path()).unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert_eq!(n, fixtures.cases.len());
        let meta = chain.policies()[0].metadata();
        assert_eq!(
            (meta.name.as_str(), meta.version.as_str()),
            ("shop-rules", "0.1.0")
        );
        assert!(
            meta.authorize && meta.mask && meta.approve,
            "{lang}: {meta:?}"
        );
        // The exact decisions, for the cross-language comparison.
        let h = Harness::from_configs(&[example_policy(lang)]).expect("harness loads");
        let got: Vec<Option<(String, String)>> = fixtures
            .cases
            .iter()
            .map(|c| {
                let groups: Vec<&str> = c.groups.iter().map(String::as_str).collect();
                let who = Who {
                    acting_for: c.acting_for.clone(),
                    acting_for_groups: c.acting_for_groups.clone(),
                    ..Who::new(&c.user, c.kind, &groups)
                };
                let d = h.decide(&who, &c.database, &c.sql);
                let got = match d {
                    Decision::Allow => Expect::Allow,
                    Decision::Deny(_) => Expect::Deny,
                    Decision::Hold(_) => Expect::RequireApproval,
                };
                assert_eq!(got, c.expect, "{lang}: {} as {}: {d:?}", c.sql, c.user);
                outcome(&d)
            })
            .collect();
        per_lang.push((lang, got));
    }
    let (_, rust) = &per_lang[0];
    for (lang, got) in &per_lang[1..] {
        for (i, (r, g)) in rust.iter().zip(got).enumerate() {
            assert_eq!(
                r,
                g,
                "case {} ({}): rust and {lang} differ",
                i + 1,
                fixtures.cases[i].sql
            );
        }
    }
    // Spot-check the messages themselves (they are part of the policy's behaviour).
    let messages: Vec<&str> = rust.iter().flatten().map(|(_, m)| m.as_str()).collect();
    for want in [
        "table secrets is restricted to members of: pii-readers",
        "agents may not write to table customers",
        "agents may not run statements the gateway cannot parse",
        "agents may write only for members of: shop-staff",
        "DELETE on orders needs approval",
    ] {
        assert!(messages.contains(&want), "{want:?} not among {messages:#?}");
    }
    assert!(
        rust.iter()
            .flatten()
            .all(|(s, _)| s == "42501" || s == "hold")
    );
}

#[test]
fn bad_settings_are_rejected_with_the_same_message_in_every_language() {
    let rt = runtime();
    let cases: [(&str, &str); 5] = [
        (r#"{"nope": 1}"#, "unknown setting \"nope\""),
        (
            r#"{"approvers": "group:dba"}"#,
            "setting \"approvers\" must be a list of strings",
        ),
        (
            r#"{"secret_readers": [1]}"#,
            "setting \"secret_readers\" must be a list of strings",
        ),
        (
            r#"{"approvers": ["dba"]}"#,
            "approver \"dba\" must start with \"group:\" or \"user:\"",
        ),
        (
            r#"{"approvers": []}"#,
            "approvers must not be empty when approval_tables is set",
        ),
    ];
    for lang in LANGS {
        for (json, want) in cases {
            let mut config = PolicyConfig::new(format!("shop-{lang}"), example(lang));
            let value: serde_json::Value = serde_json::from_str(json).unwrap();
            config.settings = toml::Table::try_from(value).unwrap();
            match load(&rt, config) {
                Err(PolicyError::Settings { message, .. }) => {
                    assert_eq!(message, want, "{lang} with {json}")
                }
                Err(e) => panic!("{lang} with {json}: not a settings error: {e}"),
                Ok(_) => panic!("{lang} accepted {json}"),
            }
        }
        // No settings at all is fine (every key has a default).
        load(&rt, PolicyConfig::new(lang, example(lang)))
            .unwrap_or_else(|e| panic!("{lang} without settings: {e}"));
    }
}

fn column(index: u32, name: &str, provenance: wit::Provenance) -> wit::ResultColumn {
    wit::ResultColumn {
        index,
        name: name.into(),
        type_oid: 25,
        format: wit::ValueFormat::Text,
        provenance,
    }
}

fn source(column: &str) -> wit::ColumnSource {
    wit::ColumnSource {
        schema: "public".into(),
        table: "customers".into(),
        column: column.into(),
    }
}

fn result_context(groups: &[&str]) -> wit::ResultContext {
    wit::ResultContext {
        identity: wit::Identity {
            user: "alice".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            kind: wit::PrincipalKind::Person,
            auth_method: wit::AuthMethod::Scram,
            acting_for: None,
            client_addr: "127.0.0.1:1".into(),
            application_name: "test".into(),
        },
        database: "demo".into(),
        statement: None,
        columns: vec![
            column(0, "id", wit::Provenance::Direct(source("id"))),
            column(1, "email", wit::Provenance::Direct(source("email"))),
            column(
                2,
                "contact",
                wit::Provenance::Derived(vec![source("email")]),
            ),
            column(3, "one", wit::Provenance::Constant),
        ],
    }
}

#[test]
fn plan_masks_agrees_in_every_language() {
    let rt = runtime();
    let mut plans = Vec::new();
    for lang in LANGS {
        let chain = load(&rt, example_policy(lang)).expect("loads");
        let pool = chain.policies()[0].pool();
        let analyst = pool
            .call(
                &CallContext::default(),
                |p, store| p.call_plan_masks(store, &result_context(&["analysts"])),
                |_| Ok(()),
            )
            .unwrap_or_else(|f| panic!("{lang}: {f}"));
        let dba = pool
            .call(
                &CallContext::default(),
                |p, store| p.call_plan_masks(store, &result_context(&["dba"])),
                |_| Ok(()),
            )
            .unwrap_or_else(|f| panic!("{lang}: {f}"));
        let masked: Vec<u32> = analyst.columns.iter().map(|c| c.index).collect();
        assert_eq!(masked, [1, 2], "{lang}: {analyst:?}");
        assert!(
            analyst
                .columns
                .iter()
                .all(|c| matches!(c.mask, wit::MaskFunction::Email)),
            "{lang}: {analyst:?}"
        );
        assert!(
            analyst.refuse.is_none() && dba.columns.is_empty() && dba.refuse.is_none(),
            "{lang}"
        );
        plans.push(format!("{analyst:?} / {dba:?}"));
    }
    assert!(plans.windows(2).all(|w| w[0] == w[1]), "{plans:#?}");
}

#[test]
fn python_and_js_load_from_the_compile_cache_and_reuse_warm_instances() {
    for name in ["python", "js"] {
        // Whatever the first load finds, it leaves a valid entry: a fresh runtime
        // (a restarted gateway) on the same cache directory must hit it.
        load(&runtime(), example_policy(name)).expect("first load");
        let chain = load(&runtime(), example_policy(name)).expect("second load");
        assert_eq!(
            chain.policies()[0].cache_outcome(),
            CacheOutcome::Hit,
            "{name}: the second load compiled again"
        );
        // Warm instances: the guest counts its own authorize calls; a fresh instance
        // per call would answer "call 1" every time.
        let hostile = format!("{name}-hostile");
        let h = Harness::from_configs(&[example_hostile(&hostile, r#"behaviour = "count""#)])
            .expect("counting variant loads");
        let who = Who::person("alice", &["analysts"]);
        for n in 1..=5 {
            let d = h.decide(&who, "demo", "SELECT 1");
            assert_eq!(
                d.denial().map(|d| d.message.as_str()),
                Some(format!("call {n}").as_str()),
                "{hostile}: {d:?}"
            );
        }
        assert_eq!(h.chain().policies()[0].pool().idle_instances(), 1);
    }
}

#[test]
fn the_js_component_has_no_network_imports() {
    let rt = runtime();
    let wasm = std::fs::read(example("js")).expect("js.wasm");
    let sha = portcullis::policy::cache::sha256_hex(&wasm);
    let (component, _, _) = rt
        .cache()
        .load_or_compile(rt.engine(), &wasm, &sha)
        .expect("compiles");
    let imports: Vec<String> = component
        .component_type()
        .imports(rt.engine())
        .map(|(name, _)| name.to_owned())
        .collect();
    assert!(imports.iter().any(|i| i == "log"), "{imports:?}");
    assert!(
        imports
            .iter()
            .all(|i| !i.starts_with("wasi:http") && !i.starts_with("wasi:sockets")),
        "built without http/fetch-event, the JS policy imports no network: {imports:?}"
    );
}

/// The request a JavaScript policy sees, described by the hostile variant's
/// `describe` behaviour, through `authorize` (`json = false`) or `authorize-json`.
fn described(h: &Harness, req: &wit::Request, json: bool) -> String {
    let pool = h.chain().policies()[0].pool();
    let d = pool
        .call(
            &CallContext::default(),
            |p, store| {
                if json {
                    p.authorize(store, req)
                } else {
                    p.call_authorize(store, req).map(Ok)
                }
            },
            |_| Ok(()),
        )
        .unwrap_or_else(|f| panic!("json={json}: {f:?}"));
    match d {
        Ok(wit::Decision::Deny(d)) => d.message,
        other => panic!("describe answers with a denial: {other:?}"),
    }
}

#[test]
fn js_policies_get_the_same_request_through_authorize_json() {
    let describe = example_hostile("js-hostile", r#"behaviour = "describe""#);
    for config in [example_policy("js"), describe.clone()] {
        let h = Harness::from_configs(std::slice::from_ref(&config))
            .unwrap_or_else(|e| panic!("{}: {e}", config.id));
        assert!(
            h.chain().policies()[0].pool().authorizes_with_json(),
            "{}: built by build.mjs, the component exports authorize-json",
            config.id
        );
    }
    let h = Harness::from_configs(&[describe]).expect("the describing variant loads");
    let agent = Who::agent_for("etl-agent", "alice", &["pipelines"]);
    let person = Who::person("al\"ice\n", &["analysts", "é-group", ""]);
    let sqls = [
        "SELECT id, name, email FROM customers WHERE id = 42",
        "SELECT c.email FROM public.customers c JOIN orders o ON o.customer_id = c.id ORDER BY 1",
        "UPDATE orders SET status = 'x' WHERE id = 1; DELETE FROM orders",
        "INSERT INTO archive SELECT * FROM secrets",
        "COPY customers TO '/tmp/x'",
        "COPY customers FROM STDIN",
        "COPY (SELECT 1) TO PROGRAM 'cat'",
        "CREATE TABLE t (a int)",
        "DROP TABLE t",
        "BEGIN",
        "SET search_path = x",
        "DO $$ BEGIN END $$",
        "SELEC broken",
        "SELECT upper(name), my_fn(ssn) FROM customers",
        "",
    ];
    let mut n = 0;
    for (i, sql) in sqls.iter().enumerate() {
        for who in [&agent, &person] {
            for mut req in h.requests(who, "demo", sql) {
                // The fields a simple query outside a block does not set.
                match i % 3 {
                    0 => {}
                    1 => {
                        req.params = Some(vec![
                            wit::ParamValue::Null,
                            wit::ParamValue::Text("t\u{1}\"x".into()),
                            wit::ParamValue::Binary(vec![0, 1, 255]),
                            wit::ParamValue::Binary(Vec::new()),
                        ]);
                        req.protocol = wit::Protocol::Extended;
                        req.transaction = wit::TransactionState::InTransaction;
                    }
                    _ => {
                        req.params = Some(Vec::new());
                        req.transaction = wit::TransactionState::Failed;
                        req.session_id = u64::MAX;
                    }
                }
                let record = described(&h, &req, false);
                let json = described(&h, &req, true);
                assert_eq!(record, json, "{sql:?}");
                assert!(record.contains("sessionId=bigint:"), "{record}");
                n += 1;
            }
        }
    }
    assert!(n >= 30, "{n} requests compared");
    // The spot checks that the description is the request's.
    let mut req = h.requests(&agent, "demo", "COPY customers TO '/tmp/x'")[0].clone();
    req.params = Some(vec![wit::ParamValue::Binary(vec![0, 1, 255])]);
    req.session_id = 1 << 60;
    let d = described(&h, &req, true);
    for want in [
        r#"actingFor="alice""#,
        r#"kind="agent""#,
        r#"copy={target="server-file",to=boolean:true}"#,
        r#"params=[{tag="binary",val=Uint8Array:[0,1,255]}]"#,
        "sessionId=bigint:1152921504606846976",
    ] {
        assert!(d.contains(want), "{want} in {d}");
    }
}

/// Loads a hostile variant with `behaviour` triggered by `boom` (with the busy-machine
/// deadline, which a loop still reaches within seconds).
fn hostile(name: &str, behaviour: &str) -> Harness {
    let settings = format!("behaviour = \"{behaviour}\"\ntrigger = \"boom\"\n");
    Harness::from_configs(&[example_hostile(name, &settings)])
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn python_and_js_loops_and_allocations_are_stopped_fail_closed() {
    let who = Who::new("etl-agent", PrincipalKind::Agent, &["pipelines"]);
    let cases = [
        ("python-hostile", "loop"),
        ("python-hostile", "alloc"),
        ("js-hostile", "loop"),
        ("js-hostile", "alloc"),
        // Through `authorize-json`: an answer the gateway cannot read as a decision.
        ("js-hostile", "bad-decision"),
    ];
    for (name, behaviour) in cases {
        let h = hostile(name, behaviour);
        assert_eq!(h.decide(&who, "demo", "SELECT 1"), Decision::Allow);
        for _ in 0..2 {
            let d = h.decide(&who, "demo", "SELECT 'boom'");
            let denial = d
                .denial()
                .unwrap_or_else(|| panic!("{name} {behaviour}: allowed"));
            assert_eq!(denial.sqlstate, "42501");
            assert!(
                denial.message.contains("failed") && denial.message.contains(name),
                "{name} {behaviour}: {denial:?}"
            );
            if behaviour == "bad-decision" {
                assert!(denial.message.contains("invalid"), "{denial:?}");
            }
            // The trapped instance was discarded; a fresh one serves the next.
            assert_eq!(
                h.decide(&who, "demo", "SELECT 2"),
                Decision::Allow,
                "{name} {behaviour}: the next statement"
            );
        }
    }
}

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

/// A gateway enforcing `policies`, compiling into the shared cache.
fn gateway_options(policies: Vec<PolicyConfig>) -> GatewayOptions {
    GatewayOptions {
        policies,
        extra_toml: format!(
            "\n[policy_runtime]\ncache_dir = {:?}\n",
            shared_cache_dir().display().to_string()
        ),
        ..GatewayOptions::default()
    }
}

fn env_options() -> EnvOptions {
    EnvOptions {
        gateway: gateway_options(vec![
            example_policy("python"),
            example_hostile("python-hostile", "behaviour = \"loop\"\ntrigger = \"boom\""),
        ]),
        ..EnvOptions::default()
    }
}

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, env_options).await
}

/// The example's rules through psql against the gateway at `uri_for(user)`.
async fn check_end_to_end(lang: &str, uri_for: impl Fn(&str) -> String) {
    let ok = |out: &portcullis_tests::CmdOutput, what: &str| {
        assert_eq!(out.code(), 0, "{lang}: {what}: {out:?}");
    };
    let denied = |out: &portcullis_tests::CmdOutput, what: &str, message: &str| {
        assert_eq!(out.code(), 1, "{lang}: {what} must be denied: {out:?}");
        assert!(
            out.stderr.contains(message),
            "{lang}: {what}: {}",
            out.stderr
        );
    };
    let alice = uri_for("alice");
    let out = psql_c(&alice, "SELECT count(*) > 0 FROM customers").await;
    ok(&out, "alice reads customers");
    assert_eq!(out.stdout.trim(), "t");
    denied(
        &psql_c(&alice, "SELECT * FROM secrets").await,
        "alice reads secrets",
        "table secrets is restricted to members of: pii-readers",
    );
    ok(&psql_c(&alice, "SELECT 1").await, "alice after a denial");
    let bob = uri_for("bob");
    ok(
        &psql_c(&bob, "SELECT count(*) FROM secrets").await,
        "bob reads secrets",
    );
    denied(
        &psql_c(&bob, "DELETE FROM orders WHERE id = -1").await,
        "bob deletes orders",
        "approval required: DELETE on orders needs approval",
    );
    let agent = uri_for("etl-agent");
    denied(
        &psql_c(&agent, "UPDATE customers SET name = name WHERE id = -1").await,
        "the agent updates customers",
        "agents may not write to table customers",
    );
    let out = psql_c(
        &agent,
        "INSERT INTO orders (customer_id, amount, status) SELECT id, 1, 'x' FROM customers WHERE false",
    )
    .await;
    ok(&out, "the agent writes orders");
    // The hostile variant in the chain spins on this one: denied fail closed, and the
    // connection's next statement (a new psql here) works.
    denied(
        &psql_c(&alice, "SELECT 'boom'").await,
        "a statement the hostile policy spins on",
        "failed",
    );
    ok(&psql_c(&alice, "SELECT 'after'").await, "after the trap");
}

#[tokio::test]
async fn psql_through_a_gateway_enforcing_the_python_policy() {
    let env = env().await;
    check_end_to_end("python", |user| env.gateway_uri(user, "demo")).await;
}

#[tokio::test]
async fn psql_through_a_gateway_enforcing_the_js_policy() {
    let env = env().await;
    let gw = env
        .start_gateway(gateway_options(vec![
            example_policy("js"),
            example_hostile("js-hostile", "behaviour = \"alloc\"\ntrigger = \"boom\""),
        ]))
        .await
        .expect("a gateway with the JavaScript policy starts");
    check_end_to_end("js", |user| gw.uri(user, "demo")).await;
}

#[test]
fn scaffolded_python_and_js_projects_build_and_pass_their_fixtures() {
    use portcullis::policy::scaffold::{Lang, create, default_sdk_path};
    let dir = tempfile::tempdir().expect("a temp dir");
    for (lang, name) in [(Lang::Python, "no-drops-py"), (Lang::Js, "no-drops-js")] {
        let project = dir.path().join(name);
        create(lang, name, &project, &default_sdk_path()).expect("scaffolds");
        if lang == Lang::Js {
            // The toolchain policies-examples/build.sh installed (no second download).
            std::os::unix::fs::symlink(
                examples_source_dir().join("js/node_modules"),
                project.join("node_modules"),
            )
            .expect("links node_modules");
        }
        // The project's own build script; its fixture step runs below, in process
        // (`portcullis policy test` is the same function).
        let out = std::process::Command::new("bash")
            .arg(project.join("build.sh"))
            .env("PORTCULLIS", "true")
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{name}: build.sh failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        portcullis::policy::reload::cli::test_fixtures(
            &project.join(format!("{name}.wasm")),
            &project.join("fixtures.toml"),
            Some(&project.join("settings.json")),
        )
        .unwrap_or_else(|e| panic!("{name}: fixtures: {e:#}"));
    }
}
