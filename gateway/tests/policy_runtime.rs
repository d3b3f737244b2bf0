//! The policy runtime with the real components from `target/policies/` (built by
//! `bash policies-rs/build.sh`): the standard guardrails policy with the demo settings,
//! and the hostile test components (loops, allocation bombs, deep recursion, huge
//! returns, panics, bad settings), all through the `Gate` API.
//!
//! A missing component fails the test (it is never skipped).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::{PolicyConfig, PolicyMode, PrincipalKind};
use portcullis::identity::{AuthMethod, Identity};
use portcullis::pipeline::{Decision, Gate, Protocol, SessionInfo, StatementContext};
use portcullis::policy::{
    CacheOutcome, PolicyChain, PolicyError, PolicyMetrics, PolicyRuntime, load_chain_with,
};
use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;

/// The directory of the built policies (`PORTCULLIS_TEST_POLICIES` overrides it).
fn policies_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_POLICIES") {
        return PathBuf::from(dir);
    }
    // `<target dir>/tmp` → `<target dir>/policies`, where build.sh puts them.
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target tmp dir has a parent")
        .join("policies")
}

/// A built component; panics with instructions when it is missing.
fn component(name: &str) -> PathBuf {
    let path = policies_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash policies-rs/build.sh` first",
        path.display()
    );
    path
}

/// A compile cache shared by the tests of this file (so each component compiles once).
fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("policy-cache")
}

fn runtime(cache: PathBuf) -> (PolicyRuntime, PolicyMetrics) {
    let metrics = PolicyMetrics::unregistered();
    let rt = PolicyRuntime::new(Some(cache), metrics.clone()).expect("runtime");
    (rt, metrics)
}

fn session(user: &str, kind: PrincipalKind, groups: &[&str]) -> SessionInfo {
    SessionInfo {
        session_id: 7,
        identity: Arc::new(Identity {
            name: user.into(),
            kind,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            auth_method: AuthMethod::ScramSha256,
            role: None,
            acting_for: None,
            acting_for_groups: Vec::new(),
            expires_at: None,
        }),
        database: "demo".into(),
        client_addr: SocketAddr::from(([127, 0, 0, 1], 50000)),
        application_name: "psql".into(),
    }
}

/// Decides every statement of `sql` like the relay does: the first denial wins.
fn decide(gate: &dyn Gate, session: &SessionInfo, sql: &str) -> Decision {
    let analyzer = Analyzer::new(16);
    let analysis = analyzer.analyze(sql);
    for statement in &analysis.statements {
        let ctx = StatementContext {
            session,
            analysis: &analysis,
            statement,
            sql,
            protocol: Protocol::Simple,
            transaction: TransactionStatus::Idle,
            verdicts: None,
        };
        if let d @ Decision::Deny(_) = gate.decide(&ctx) {
            return d;
        }
    }
    Decision::Allow
}

fn denial_message(d: &Decision) -> String {
    match d {
        Decision::Deny(d) => format!("[{}] {} ({})", d.sqlstate, d.message, d.policy),
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn hostile_config(behaviour: &str) -> PolicyConfig {
    let mut p = PolicyConfig::new("hostile", component("hostile"));
    p.settings.insert("behaviour".into(), behaviour.into());
    p
}

fn hostile_chain(behaviour: &str) -> (PolicyChain, PolicyMetrics) {
    hostile_chain_with(hostile_config(behaviour))
}

fn hostile_chain_with(config: PolicyConfig) -> (PolicyChain, PolicyMetrics) {
    let (rt, metrics) = runtime(shared_cache());
    let chain = load_chain_with(&rt, &[config], false)
        .unwrap_or_else(|e| panic!("hostile policy should load: {e}"));
    (chain, metrics)
}

fn alice() -> SessionInfo {
    session("alice", PrincipalKind::Person, &["analysts"])
}

/// Runs a misbehaving policy twice: each call must come back (well within a generous
/// bound), deny with a policy-failure message, count a failure of `kind`, and leave
/// the policy usable (the second call runs on a fresh instance and fails the same
/// way instead of hitting a dead instance).
fn assert_fails_closed(config: PolicyConfig, kind: &str, reason: &str) {
    let behaviour = config.settings["behaviour"].to_string();
    let (chain, metrics) = hostile_chain_with(config);
    let s = alice();
    for round in 1..=2u64 {
        let started = Instant::now();
        let d = decide(&chain, &s, "SELECT 1");
        let took = started.elapsed();
        let msg = denial_message(&d);
        println!("{behaviour} round {round}: {took:?}: {msg}");
        assert!(took < Duration::from_secs(5), "{behaviour} took {took:?}");
        assert!(
            msg.starts_with("[42501] policy \"hostile\" failed ("),
            "{behaviour}: {msg}"
        );
        assert!(
            msg.contains(reason),
            "{behaviour}: expected {reason:?} in {msg}"
        );
        assert!(msg.ends_with("; statement denied (hostile)"), "{msg}");
        assert!(!msg.contains("cannot enter component"), "{msg}");
        assert_eq!(metrics.trap_count("hostile", kind), round, "{behaviour}");
    }
    assert_eq!(chain.policies()[0].pool().idle_instances(), 0);
}

#[test]
fn hostile_loop_is_stopped_by_its_deadline() {
    assert_fails_closed(hostile_config("loop"), "timeout", "timeout after 50 ms");
}

#[test]
fn hostile_alloc_is_stopped_by_the_memory_cap() {
    // A generous deadline, so that on a slow machine the memory cap (not the clock)
    // is what stops it.
    let mut config = hostile_config("alloc");
    config.deadline_ms = 2_000;
    config.memory_mb = 32;
    assert_fails_closed(config, "memory", "out of memory: over the 32 MiB cap");
}

#[test]
fn hostile_recursion_traps() {
    let mut config = hostile_config("recursion");
    config.deadline_ms = 2_000;
    assert_fails_closed(config, "trap", "wasm trap: ");
}

#[test]
fn hostile_huge_return_is_refused() {
    // A generous deadline: building and copying 16 MiB on a busy machine can take
    // longer than 50 ms, and this test is about the size cap.
    let mut config = hostile_config("huge-return");
    config.deadline_ms = 2_000;
    let (chain, metrics) = hostile_chain_with(config);
    let d = decide(&chain, &alice(), "SELECT 1");
    let msg = denial_message(&d);
    println!("huge-return: {msg}");
    assert!(
        msg.starts_with("[42501] policy \"hostile\" failed ("),
        "{msg}"
    );
    // Either the result broke a size cap, or building it broke the memory cap.
    let oversized = metrics.trap_count("hostile", "oversized");
    let memory = metrics.trap_count("hostile", "memory");
    assert_eq!(oversized + memory, 1, "{msg}");
    assert!(msg.len() < 1024, "the huge value must not reach the client");
    let again = denial_message(&decide(&chain, &alice(), "SELECT 1"));
    assert!(!again.contains("cannot enter component"), "{again}");
}

#[test]
fn hostile_panic_traps() {
    assert_fails_closed(hostile_config("panic"), "trap", "wasm trap: ");
}

#[test]
fn hostile_trap_on_configure_fails_the_load() {
    let (rt, _) = runtime(shared_cache());
    let e = load_chain_with(&rt, &[hostile_config("trap-on-configure")], false)
        .err()
        .expect("must not load");
    let msg = e.to_string();
    println!("{msg}");
    assert!(matches!(e, PolicyError::Start { .. }), "{e:?}");
    assert!(msg.contains("policy \"hostile\""), "{msg}");
    assert!(msg.contains("policies[0].settings"), "{msg}");
    assert!(msg.contains("configure failed"), "{msg}");
}

#[test]
fn hostile_slow_configure_fails_the_load() {
    let (rt, metrics) = runtime(shared_cache());
    let started = Instant::now();
    let e = load_chain_with(&rt, &[hostile_config("slow-configure")], false)
        .err()
        .expect("must not load");
    let msg = e.to_string();
    println!("{:?}: {msg}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        msg.contains("policies[0].settings") && msg.contains("configure failed (timeout after"),
        "{msg}"
    );
    assert_eq!(
        metrics.trap_count("hostile", "timeout"),
        0,
        "load failures are not call failures"
    );
}

#[test]
fn hostile_reject_settings_fails_the_load() {
    let (rt, _) = runtime(shared_cache());
    let e = load_chain_with(&rt, &[hostile_config("reject-settings")], false)
        .err()
        .expect("must not load");
    let msg = e.to_string();
    println!("{msg}");
    assert!(matches!(e, PolicyError::Settings { .. }), "{e:?}");
    assert!(
        msg.starts_with("policy \"hostile\" rejected its settings (policies[0].settings): "),
        "{msg}"
    );
}

#[test]
fn hostile_allow_and_deny() {
    let (allow, _) = hostile_chain("allow");
    assert_eq!(
        decide(&allow, &alice(), "DROP TABLE customers"),
        Decision::Allow
    );
    let (deny, metrics) = hostile_chain("deny");
    let Decision::Deny(d) = decide(&deny, &alice(), "SELECT 1") else {
        panic!("deny expected")
    };
    assert_eq!(d.policy, "hostile");
    assert_eq!(
        metrics
            .decisions
            .with_label_values(&["hostile", "deny"])
            .get(),
        1
    );
}

#[test]
fn deny_wins_over_allow_and_monitor_is_not_enforced() {
    let (rt, _) = runtime(shared_cache());
    let mut allow = hostile_config("allow");
    allow.id = "first-allows".into();
    let mut watcher = hostile_config("loop");
    watcher.id = "monitor-loops".into();
    watcher.mode = PolicyMode::Monitor;
    let mut deny = hostile_config("deny");
    deny.id = "then-denies".into();
    let chain = load_chain_with(&rt, &[allow.clone(), watcher.clone()], false).unwrap();
    // A monitored policy that times out neither denies nor breaks the chain.
    assert_eq!(decide(&chain, &alice(), "SELECT 1"), Decision::Allow);
    let chain = load_chain_with(&rt, &[allow, watcher, deny], false).unwrap();
    let Decision::Deny(d) = decide(&chain, &alice(), "SELECT 1") else {
        panic!("deny expected")
    };
    assert_eq!(d.policy, "then-denies");
}

#[test]
fn function_calls_are_denied_while_policies_are_enforced() {
    let (rt, _) = runtime(shared_cache());
    let chain = load_chain_with(&rt, &[hostile_config("allow")], false).unwrap();
    let d = chain.decide_function_call(&alice(), 1234);
    let msg = denial_message(&d);
    assert!(msg.contains("OID 1234"), "{msg}");
    assert!(msg.contains("policy_runtime.allow_function_call"), "{msg}");
    let chain = load_chain_with(&rt, &[hostile_config("allow")], true).unwrap();
    assert_eq!(chain.decide_function_call(&alice(), 1234), Decision::Allow);
}

#[test]
fn pinned_digest_is_enforced() {
    let (rt, _) = runtime(shared_cache());
    let mut p = hostile_config("allow");
    p.sha256 = Some("0".repeat(64));
    let e = load_chain_with(&rt, &[p.clone()], false)
        .err()
        .expect("must not load");
    assert!(matches!(e, PolicyError::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("policies[0].sha256"), "{e}");
    let actual = portcullis::policy::cache::sha256_hex(&std::fs::read(&p.path).unwrap());
    p.sha256 = Some(actual.to_uppercase());
    load_chain_with(&rt, &[p], false).expect("the right digest loads");
}

#[test]
fn missing_or_invalid_component_fails_the_load() {
    let (rt, _) = runtime(shared_cache());
    let p = PolicyConfig::new("ghost", policies_dir().join("no-such-policy.wasm"));
    let e = load_chain_with(&rt, &[p], false).err().expect("must fail");
    assert!(matches!(e, PolicyError::Read { .. }), "{e}");
    assert!(e.to_string().contains("policies[0].path"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"\0asm not really").unwrap();
    let e = load_chain_with(&rt, &[PolicyConfig::new("junk", junk)], false)
        .err()
        .expect("must fail");
    assert!(matches!(e, PolicyError::Compile { .. }), "{e}");
}

#[test]
fn precompiled_cache_is_hit_on_the_second_load_and_corruption_is_recompiled() {
    let cache = tempfile::tempdir().unwrap();
    let config = [hostile_config("allow")];
    let (rt, _) = runtime(cache.path().to_owned());
    let first = load_chain_with(&rt, &config, false).unwrap();
    let p = &first.policies()[0];
    assert_eq!(p.cache_outcome(), CacheOutcome::Compiled);
    println!("first load (compiled): {:?}", p.load_time());
    let entry = rt.cache().entry_path(p.sha256());
    assert!(entry.is_file(), "{} should exist", entry.display());

    // A restart: a new runtime (new engine) over the same directory.
    let (rt2, _) = runtime(cache.path().to_owned());
    let second = load_chain_with(&rt2, &config, false).unwrap();
    assert_eq!(second.policies()[0].cache_outcome(), CacheOutcome::Hit);
    println!(
        "second load (cache hit): {:?}",
        second.policies()[0].load_time()
    );
    assert_eq!(rt2.cache().stats().hits, 1);
    assert_eq!(decide(&second, &alice(), "SELECT 1"), Decision::Allow);

    // A corrupt entry is detected, discarded and recompiled, never run.
    let mut bytes = std::fs::read(&entry).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    let (rt3, _) = runtime(cache.path().to_owned());
    let third = load_chain_with(&rt3, &config, false).unwrap();
    assert_eq!(third.policies()[0].cache_outcome(), CacheOutcome::Compiled);
    assert_eq!(rt3.cache().stats().invalid, 1);
    assert_eq!(decide(&third, &alice(), "SELECT 1"), Decision::Allow);
    // ... and rewritten: the next start hits again.
    let (rt4, _) = runtime(cache.path().to_owned());
    let fourth = load_chain_with(&rt4, &config, false).unwrap();
    assert_eq!(fourth.policies()[0].cache_outcome(), CacheOutcome::Hit);
}

#[test]
fn instances_are_recycled_after_max_calls() {
    let (rt, _) = runtime(shared_cache());
    let mut p = hostile_config("allow");
    p.max_calls_per_instance = 3;
    let chain = load_chain_with(&rt, &[p], false).unwrap();
    for _ in 0..10 {
        assert_eq!(decide(&chain, &alice(), "SELECT 1"), Decision::Allow);
    }
    assert!(chain.policies()[0].pool().idle_instances() <= 1);
}

/// The guardrails policy with the demo settings (`policies-rs/guardrails/demo-settings.toml`),
/// loaded the way `portcullis demo` loads it.
fn guardrails() -> PolicyChain {
    component("guardrails");
    let policy = portcullis::demo::demo_policy(Some(&policies_dir())).expect("demo policy");
    let (rt, _) = runtime(shared_cache());
    load_chain_with(&rt, &[policy], false).expect("guardrails loads with the demo settings")
}

fn bob() -> SessionInfo {
    session("bob", PrincipalKind::Person, &["dba", "pii-readers"])
}

fn agent() -> SessionInfo {
    session("etl-agent", PrincipalKind::Agent, &["pipelines"])
}

#[track_caller]
fn assert_denied(chain: &PolicyChain, s: &SessionInfo, sql: &str) {
    match decide(chain, s, sql) {
        Decision::Deny(d) => {
            println!(
                "{} denied: {sql:?}: [{}] {}",
                s.identity.name, d.sqlstate, d.message
            );
            assert_eq!(d.sqlstate, "42501", "{sql}");
            assert_eq!(d.policy, "guardrails", "{sql}");
        }
        other => panic!(
            "{} should be denied {sql:?}, got {other:?}",
            s.identity.name
        ),
    }
}

#[track_caller]
fn assert_allowed(chain: &PolicyChain, s: &SessionInfo, sql: &str) {
    assert_eq!(
        decide(chain, s, sql),
        Decision::Allow,
        "{} should be allowed {sql:?}",
        s.identity.name
    );
}

#[test]
fn guardrails_with_demo_settings() {
    let chain = guardrails();
    let meta = chain.policies()[0].metadata();
    assert!(meta.authorize, "{meta:?}");
    let (alice, bob, agent) = (alice(), bob(), agent());

    // DROP: only DBAs.
    assert_denied(&chain, &alice, "DROP TABLE customers");
    assert_allowed(&chain, &bob, "DROP TABLE customers");
    // DELETE/UPDATE without WHERE: nobody.
    assert_denied(&chain, &bob, "DELETE FROM orders");
    assert_denied(&chain, &bob, "UPDATE orders SET status = 'x'");
    assert_allowed(&chain, &bob, "DELETE FROM orders WHERE id = 1");
    // Secrets: only bob.
    assert_denied(&chain, &alice, "SELECT * FROM secrets");
    assert_denied(&chain, &agent, "SELECT * FROM secrets");
    assert_allowed(&chain, &bob, "SELECT * FROM secrets");
    // DO blocks (unparsed or not) are denied.
    assert_denied(&chain, &bob, "DO $$ BEGIN PERFORM 1; END $$");
    // Analysts read.
    assert_allowed(&chain, &alice, "SELECT name, email FROM customers LIMIT 3");
    assert_denied(
        &chain,
        &alice,
        "INSERT INTO orders (customer_id, total) VALUES (1, 2)",
    );
    // Agents change data but not definitions.
    assert_allowed(
        &chain,
        &agent,
        "INSERT INTO orders (customer_id, total) VALUES (1, 2)",
    );
    assert_denied(&chain, &agent, "CREATE TABLE scratch (a int)");
    // Server files, programs, role switches.
    assert_denied(&chain, &bob, "SELECT pg_read_file('/etc/passwd')");
    assert_denied(&chain, &bob, "COPY orders TO PROGRAM 'cat'");
    assert_denied(&chain, &bob, "SET ROLE postgres");
    // One bad statement in a multi-statement string denies the string.
    assert_denied(&chain, &alice, "SELECT 1; DROP TABLE customers");
    // Transaction control passes.
    assert_allowed(&chain, &alice, "BEGIN");
    assert_allowed(&chain, &alice, "COMMIT");
}

fn gateway_config(policy: &str, settings: &str) -> portcullis::config::Config {
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[upstream]\nuser = \"u\"\npassword = \"p\"\n[databases.demo]\n[policy_runtime]\ncache_dir = {cache:?}\n[[policies]]\nid = \"hostile\"\npath = {path:?}\n[policies.settings]\n{settings}\n",
        cache = shared_cache().display().to_string(),
        path = component(policy).display().to_string(),
    );
    portcullis::config::parse(Path::new("test.toml"), &text).expect("config")
}

#[tokio::test]
async fn the_gateway_starts_with_its_policies_or_not_at_all() {
    let handle = portcullis::server::start(gateway_config("hostile", "behaviour = \"deny\""))
        .await
        .expect("starts with a loadable policy");
    let metrics = handle.shared().metrics.render();
    assert!(
        metrics
            .contains("portcullis_policy_decisions_total{decision=\"deny\",policy=\"hostile\"} 0"),
        "{metrics}"
    );
    handle.shutdown().await;

    let e = portcullis::server::start(gateway_config("hostile", "behaviour = \"reject-settings\""))
        .await
        .err()
        .expect("a policy that does not load stops the start");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("policy \"hostile\" rejected its settings (policies[0].settings)"),
        "{msg}"
    );

    let e = portcullis::server::start_with(
        gateway_config("hostile", "behaviour = \"allow\""),
        portcullis::server::Plugins::default(),
    )
    .await
    .err()
    .expect("start_with must not silently drop configured policies");
    assert!(format!("{e:#}").contains("[[policies]]"), "{e:#}");
}

#[test]
fn the_harness_runs_a_built_component_in_the_real_host() {
    use portcullis::policy::harness::{Harness, Who};
    let settings = r#"{"deny_unparsed": true, "rules": [{"tables": ["secrets"], "deny_access": ["read"], "except_users": ["bob"]}]}"#;
    let h = Harness::load(&[component("guardrails")], &[settings]).expect("loads");
    let alice = Who::person("alice", &["analysts"]);
    let bob = Who::person("bob", &["dba"]);
    let d = h.decide(&alice, "demo", "SELECT * FROM secrets");
    assert_eq!(d.denial().map(|d| d.policy.as_str()), Some("guardrails"));
    assert!(!h.decide(&bob, "demo", "SELECT * FROM secrets").is_deny());
    assert!(h.decide(&bob, "demo", "DO $$ BEGIN END $$").is_deny());
    assert!(!h.decide(&alice, "demo", "SELECT 1").is_deny());
    assert!(Harness::load(&[component("guardrails")], &["not json"]).is_err());
}

#[test]
fn policies_see_the_groups_of_the_person_an_agent_acts_for() {
    use portcullis::policy::harness::{Harness, Who};
    // Asked through the `context` import of contract 0.2.0, inside the component.
    let settings = r#"{"rules": [{"principal_kinds": ["agent"], "acting_for": ["*"], "except_acting_for_groups": ["etl-owners"], "deny_kinds": ["insert"]}]}"#;
    let h = Harness::load(&[component("guardrails")], &[settings]).expect("loads");
    let owner = Who::agent_for("etl-agent", "alice", &["pipelines"])
        .with_person_groups(&["analysts", "etl-owners"]);
    let other =
        Who::agent_for("etl-agent", "carol", &["pipelines"]).with_person_groups(&["analysts"]);
    // The agent's own groups are not the person's.
    let own_groups = Who::agent_for("etl-agent", "carol", &["etl-owners"]);
    let insert = "INSERT INTO orders (amount) VALUES (1)";
    assert!(!h.decide(&owner, "demo", insert).is_deny());
    assert!(h.decide(&other, "demo", insert).is_deny());
    assert!(h.decide(&own_groups, "demo", insert).is_deny());
    assert!(!h.decide(&other, "demo", "SELECT 1").is_deny());
}

#[test]
fn a_policy_built_against_the_previous_minor_still_loads_and_decides() {
    use portcullis::policy::harness::{Harness, Who};
    let h = Harness::load(&[component("compat-v0-1")], &["{}"]).expect("a 0.1.0 policy loads");
    let agent = Who::agent_for("etl-agent", "alice", &["pipelines"]).with_person_groups(&["x"]);
    match h.decide(&agent, "demo", "SELECT 'compat-deny'") {
        Decision::Deny(d) => assert_eq!(
            d.message,
            "denied by the 0.1.0 policy for etl-agent acting for alice"
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(!h.decide(&agent, "demo", "SELECT 1").is_deny());
    // It sits in a chain with 0.2.0 policies.
    let both = Harness::load(
        &[component("compat-v0-1"), component("guardrails")],
        &["{}", r#"{"rules": [{"deny_kinds": ["drop"]}]}"#],
    )
    .expect("0.1.0 and 0.2.0 policies load together");
    assert!(both.decide(&agent, "demo", "DROP TABLE t").is_deny());
    assert!(
        both.decide(&agent, "demo", "SELECT 'compat-deny'")
            .is_deny()
    );
    assert!(!both.decide(&agent, "demo", "SELECT 2").is_deny());
}

#[test]
fn a_policy_built_against_0_2_still_loads_decides_and_asks_its_context() {
    use portcullis::policy::harness::{Harness, Who};
    let h = Harness::load(&[component("compat-v0-2")], &["{}"]).expect("a 0.2.0 policy loads");
    let p = &h.chain().policies()[0];
    assert!(!p.pool().packed(), "a 0.2.0 component has no mask-cells");
    assert!(p.metadata().mask);
    // `context@0.2.0` answers like the newest `context`.
    let agent =
        Who::agent_for("etl-agent", "alice", &["pipelines"]).with_person_groups(&["analysts", "x"]);
    match h.decide(&agent, "demo", "SELECT 'compat-deny'") {
        Decision::Deny(d) => assert_eq!(
            d.message,
            "denied by the 0.2.0 policy for etl-agent acting for alice (analysts,x)"
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
    // With 0.1.0, 0.3.0 and 0.4.0 policies in one chain.
    let all = Harness::load(
        &[
            component("compat-v0-1"),
            component("compat-v0-2"),
            component("compat-v0-3"),
            component("pii-mask"),
        ],
        &["{}", "{}", "{}", "{}"],
    )
    .expect("0.1.0, 0.2.0, 0.3.0 and 0.4.0 policies load together");
    let packed: Vec<bool> = all
        .chain()
        .policies()
        .iter()
        .map(|p| p.pool().packed())
        .collect();
    assert_eq!(packed, [false, false, true, true]);
    assert!(all.decide(&agent, "demo", "SELECT 'compat-deny'").is_deny());
    assert!(!all.decide(&agent, "demo", "SELECT 2").is_deny());
}

#[test]
fn a_policy_built_against_0_3_still_loads_decides_and_asks_its_context() {
    use portcullis::policy::harness::{Harness, Who};
    let h = Harness::load(&[component("compat-v0-3")], &["{}"]).expect("a 0.3.0 policy loads");
    let p = &h.chain().policies()[0];
    assert!(p.pool().packed(), "a 0.3.0 component has mask-cells");
    assert!(
        !p.pool().authorizes_with_json(),
        "a 0.3.0 component has no authorize-json"
    );
    // `context@0.3.0` answers like the newest `context`.
    let agent =
        Who::agent_for("etl-agent", "alice", &["pipelines"]).with_person_groups(&["analysts"]);
    match h.decide(&agent, "demo", "SELECT 'compat-deny'") {
        Decision::Deny(d) => assert_eq!(
            d.message,
            "denied by the 0.3.0 policy for etl-agent acting for alice (analysts)"
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
    assert!(!h.decide(&agent, "demo", "SELECT 2").is_deny());
}

#[test]
fn decision_cache_decides_each_literal_free_shape_once_per_identity() {
    component("guardrails");
    let policy = portcullis::demo::demo_policy(Some(&policies_dir())).expect("demo policy");
    assert!(
        policy.decision_cache,
        "the standard policies run with the cache"
    );
    let (rt, metrics) = runtime(shared_cache());
    let chain = load_chain_with(&rt, &[policy], false).expect("loads");
    let count = |outcome: &str| {
        metrics
            .decision_cache
            .with_label_values(&["guardrails", outcome])
            .get()
    };
    let (alice, bob) = (alice(), bob());
    for i in 0..5 {
        let read = format!("SELECT name FROM customers WHERE id = {i}");
        assert!(!decide(&chain, &alice, &read).is_deny());
        let write = format!("UPDATE orders SET amount = {i} WHERE id = {i}");
        assert!(
            decide(&chain, &alice, &write).is_deny(),
            "analysts only read"
        );
        assert!(!decide(&chain, &bob, &write).is_deny(), "bob writes");
    }
    // Three shapes for two identities, then hits.
    assert_eq!((count("miss"), count("hit")), (3, 12));
    // A hit counts as a decision like a call does.
    let denies = metrics
        .decisions
        .with_label_values(&["guardrails", "deny"])
        .get();
    assert_eq!(denies, 5);
    // A failed call is never remembered: each statement fails on its own.
    let mut config = hostile_config("panic");
    config.decision_cache = true;
    let (chain, metrics) = hostile_chain_with(config);
    for _ in 0..2 {
        assert!(decide(&chain, &alice, "SELECT 1").is_deny());
    }
    let traps = metrics.traps.with_label_values(&["hostile", "trap"]).get();
    assert_eq!(traps, 2);
}

/// Decides one statement of an analysis shared between calls (as the parse cache
/// shares it between literal variants), in `transaction`, collecting verdicts.
fn decide_shared(
    gate: &dyn Gate,
    session: &SessionInfo,
    analysis: &Arc<portcullis_sql::Analysis>,
    sql: &str,
    transaction: TransactionStatus,
) -> (Decision, Vec<portcullis::pipeline::PolicyVerdictRecord>) {
    let sink = portcullis::pipeline::VerdictSink::default();
    let ctx = StatementContext {
        session,
        analysis,
        statement: &analysis.statements[0],
        sql,
        protocol: Protocol::Simple,
        transaction,
        verdicts: Some(&sink),
    };
    let d = gate.decide(&ctx);
    (d, sink.take())
}

#[test]
fn the_chain_memo_keeps_identities_sessions_and_reloads_apart() {
    component("guardrails");
    let policy = portcullis::demo::demo_policy(Some(&policies_dir())).expect("demo policy");
    let (rt, metrics) = runtime(shared_cache());
    let chain = load_chain_with(&rt, std::slice::from_ref(&policy), false).expect("loads");
    let hits = || {
        metrics
            .decision_cache
            .with_label_values(&["guardrails", "hit"])
            .get()
    };
    let analyzer = Analyzer::new(16);
    // Same session id, address and application: only the identity differs.
    let (alice, bob) = (alice(), bob());
    assert_eq!(alice.session_id, bob.session_id);
    let write = "UPDATE orders SET amount = 1 WHERE id = 1";
    let analysis = analyzer.analyze(write);
    for round in 0..3 {
        for tx in [TransactionStatus::Idle, TransactionStatus::InTransaction] {
            let (d, v) = decide_shared(&chain, &bob, &analysis, write, tx);
            assert!(!d.is_deny(), "round {round}: bob writes");
            assert_eq!(v.len(), 1, "every decision records the policy's verdict");
            assert_eq!(v[0].verdict, "allow");
            let (d, v) = decide_shared(&chain, &alice, &analysis, write, tx);
            assert!(
                d.is_deny(),
                "round {round}: analysts only read, memo or not"
            );
            assert_eq!(v[0].verdict, "deny");
        }
    }
    let memo = chain
        .decision_memo()
        .expect("the demo policy caches: a memo");
    assert_eq!(memo.len(), 4, "two identities in two transaction states");
    // A literal variant shares the analysis (parse cache) and the remembered answers.
    let other = "UPDATE orders SET amount = 2 WHERE id = 9";
    let variant = analyzer.analyze(other);
    assert!(
        Arc::ptr_eq(&analysis, &variant),
        "the parse cache shares it"
    );
    let before = hits();
    let (d, _) = decide_shared(&chain, &alice, &variant, other, TransactionStatus::Idle);
    assert!(d.is_deny());
    assert_eq!(
        hits(),
        before + 1,
        "a remembered answer counts as a cache hit"
    );
    assert_eq!(memo.len(), 4, "answered from the memo");
    // A second identity object with the same name and groups (another session of
    // alice) is asked for on its own, with the same answer.
    let alice2 = session("alice", PrincipalKind::Person, &["analysts"]);
    let (d, _) = decide_shared(&chain, &alice2, &analysis, write, TransactionStatus::Idle);
    assert!(d.is_deny());
    assert_eq!(
        memo.len(),
        5,
        "another session's identity is remembered apart"
    );
    // A reloaded chain starts with nothing remembered: a policy that now allows alice
    // to write decides.
    let mut relaxed = policy.clone();
    relaxed
        .settings
        .insert("rules".into(), toml::Value::Array(Vec::new()));
    let reloaded = load_chain_with(&rt, &[relaxed], false).expect("loads");
    let (d, _) = decide_shared(&reloaded, &alice, &analysis, write, TransactionStatus::Idle);
    assert!(
        !d.is_deny(),
        "the new chain decided, not the old memo: {d:?}"
    );
}
