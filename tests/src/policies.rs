//! Policies for gateways under test: the standard components built by
//! `bash policies-rs/build.sh` (a missing one fails the test with instructions).

use std::path::PathBuf;

use portcullis::config::PolicyConfig;

/// The directory of the built policy components (`target/policies`, or
/// `PORTCULLIS_TEST_POLICIES`).
pub fn policies_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_POLICIES") {
        return PathBuf::from(dir);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("policies");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/policies")
}

/// A built component; panics with instructions when it is missing.
pub fn component(name: &str) -> PathBuf {
    let path = policies_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash policies-rs/build.sh` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The standard guardrails policy with the demo settings, as `portcullis demo` loads it.
pub fn demo_guardrails() -> PolicyConfig {
    portcullis::demo::demo_policy(Some(&policies_dir()))
        .unwrap_or_else(|e| panic!("the demo policy cannot be loaded: {e:#}"))
}

/// The standard approvals policy with the demo settings.
pub fn demo_approvals() -> PolicyConfig {
    portcullis::demo::demo_approvals_policy(Some(&policies_dir()))
        .unwrap_or_else(|e| panic!("the demo approvals policy cannot be loaded: {e:#}"))
}

/// The hostile test component with `settings` (a TOML table body, e.g.
/// `behaviour = "loop"`).
pub fn hostile(settings: &str) -> PolicyConfig {
    let mut p = PolicyConfig::new("hostile", component("hostile"));
    p.settings = toml::from_str(settings).expect("hostile settings are TOML");
    p.deadline_ms = 20;
    p
}

/// The deadline test gateways give a policy left at the default
/// ([`portcullis::config::DEFAULT_POLICY_DEADLINE_MS`]): the tests check decisions,
/// not how fast a debug build on a loaded machine makes them, so a slow first call
/// must not fail closed there. Tests of deadlines set their own (`hostile`: 20 ms).
pub const TEST_POLICY_DEADLINE_MS: u64 = 2_000;

/// `[[policies]]` entries for a gateway configuration (a default deadline becomes
/// [`TEST_POLICY_DEADLINE_MS`]).
pub fn policies_toml(policies: &[PolicyConfig]) -> String {
    let mut out = String::new();
    for p in policies {
        let mut entry = toml::Table::new();
        entry.insert("id".into(), p.id.clone().into());
        entry.insert("path".into(), p.path.display().to_string().into());
        if let Some(sha) = &p.sha256 {
            entry.insert("sha256".into(), sha.clone().into());
        }
        let deadline = match p.deadline_ms {
            portcullis::config::DEFAULT_POLICY_DEADLINE_MS => TEST_POLICY_DEADLINE_MS,
            ms => ms,
        };
        entry.insert("deadline_ms".into(), (deadline as i64).into());
        entry.insert("memory_mb".into(), (p.memory_mb as i64).into());
        entry.insert(
            "max_calls_per_instance".into(),
            (p.max_calls_per_instance as i64).into(),
        );
        entry.insert("mode".into(), p.mode.as_str().into());
        if let Some(m) = p.approval_mode {
            entry.insert("approval_mode".into(), m.as_str().into());
        }
        if p.decision_cache {
            entry.insert("decision_cache".into(), true.into());
        }
        entry.insert("settings".into(), toml::Value::Table(p.settings.clone()));
        let mut doc = toml::Table::new();
        doc.insert(
            "policies".into(),
            toml::Value::Array(vec![toml::Value::Table(entry)]),
        );
        out.push('\n');
        out.push_str(&toml::to_string(&doc).expect("a policy entry serialises"));
    }
    out
}

/// The example policies of `policies-examples/` built by
/// `bash policies-examples/build.sh` (`<policies dir>/examples`).
pub fn examples_dir() -> PathBuf {
    policies_dir().join("examples")
}

/// A built example component (`rust`, `python`, `js`, `python-hostile`,
/// `js-hostile`); panics with instructions when it is missing (never skips).
pub fn example(name: &str) -> PathBuf {
    let path = examples_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `bash policies-examples/build.sh` first (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The repository's `policies-examples/` directory (sources, fixtures, settings).
pub fn examples_source_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies-examples")
}

/// One compile cache shared by every test that loads the large Python and
/// JavaScript components (the same directory the policy harness uses), so each is
/// compiled once per machine, not once per test.
pub fn shared_cache_dir() -> PathBuf {
    std::env::temp_dir().join("portcullis-harness-cache")
}

/// The call deadline of the example policies in tests. The default (50 ms) is a wall-clock
/// deadline, and CI runs tests in parallel on 2 cores beside component builds: a
/// Python call that takes half a millisecond can then wait longer than 50 ms for a
/// core and time out. Tests that need a deadline to fire (a looping guest) still
/// reach this one within seconds.
pub const BUSY_MACHINE_DEADLINE_MS: u64 = 2_000;

/// The example policy in `lang` with the shared settings
/// (`policies-examples/settings.json`), id `shop-<lang>`, and the busy-machine deadline.
pub fn example_policy(lang: &str) -> PolicyConfig {
    let mut p = PolicyConfig::new(format!("shop-{lang}"), example(lang));
    p.deadline_ms = BUSY_MACHINE_DEADLINE_MS;
    let path = examples_source_dir().join("settings.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let json: serde_json::Value = serde_json::from_str(&text).expect("settings.json is JSON");
    p.settings = toml::Table::try_from(json).expect("settings.json is a table");
    p
}

/// A hostile example (`python-hostile`, `js-hostile`) with `settings` (a TOML
/// table body, e.g. `behaviour = "loop"`) and the busy-machine deadline.
pub fn example_hostile(name: &str, settings: &str) -> PolicyConfig {
    let mut p = PolicyConfig::new(name, example(name));
    p.deadline_ms = BUSY_MACHINE_DEADLINE_MS;
    p.settings = toml::from_str(settings).expect("hostile settings are TOML");
    p
}
