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

/// The hostile test component with `settings` (a TOML table body, e.g.
/// `behaviour = "loop"`).
pub fn hostile(settings: &str) -> PolicyConfig {
    let mut p = PolicyConfig::new("hostile", component("hostile"));
    p.settings = toml::from_str(settings).expect("hostile settings are TOML");
    p.deadline_ms = 20;
    p
}

/// `[[policies]]` entries for a gateway configuration.
pub fn policies_toml(policies: &[PolicyConfig]) -> String {
    let mut out = String::new();
    for p in policies {
        let mut entry = toml::Table::new();
        entry.insert("id".into(), p.id.clone().into());
        entry.insert("path".into(), p.path.display().to_string().into());
        if let Some(sha) = &p.sha256 {
            entry.insert("sha256".into(), sha.clone().into());
        }
        entry.insert("deadline_ms".into(), (p.deadline_ms as i64).into());
        entry.insert("memory_mb".into(), (p.memory_mb as i64).into());
        entry.insert(
            "max_calls_per_instance".into(),
            (p.max_calls_per_instance as i64).into(),
        );
        entry.insert("mode".into(), p.mode.as_str().into());
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
