//! Policy hot-reload cost: `cargo run --release -p portcullis --example reload_bench`.
//!
//! With the standard guardrails policy and its demo settings (built by
//! `bash policies-rs/build.sh` into `target/policies/`) in a temporary policy directory:
//! (a) time of one reload transaction (read, digest, compile or cache load, configure,
//!     swap) with a warm precompiled cache and with a cold one (fresh cache directory);
//! (b) statement decision latency (p50/p99/max) on a second thread while the set is
//!     swapped 50 times, against the same thread without swaps.
//!
//! Targets (from the hot-reload issue): (a) cold ≤ 1 s, warm ≤ 100 ms; (b) no spike
//! above 2× the p99 without swaps.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use portcullis::config::{PolicyDirConfig, PrincipalKind};
use portcullis::identity::{AuthMethod, Identity};
use portcullis::pipeline::{Gate, Protocol, SessionInfo, StatementContext};
use portcullis::policy::reload::{PolicySets, ReloadableGate};
use portcullis::policy::{PolicyMetrics, PolicyRuntime};
use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;

fn manifest(dir: &Path, version: &str, sha: &str, settings: &str) {
    let text = format!(
        "version = \"{version}\"\n[[policies]]\nid = \"guardrails\"\nartifact = \"guardrails.wasm\"\nversion = \"0.1.0\"\nsha256 = \"{sha}\"\n[policies.settings]\n{settings}"
    );
    std::fs::write(dir.join("policies.toml"), text).expect("write manifest");
}

fn settings_toml() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(portcullis::demo::DEMO_SETTINGS_FILE))
        .expect("demo settings");
    text.lines()
        .map(|l| {
            if l.trim() == "[[rules]]" {
                "[[policies.settings.rules]]"
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort_unstable();
    v[v.len() / 2].as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let policy = portcullis::demo::demo_policy(None)?;
    let dir = tempfile::tempdir()?;
    std::fs::copy(&policy.path, dir.path().join("guardrails.wasm"))?;
    let bytes = std::fs::read(dir.path().join("guardrails.wasm"))?;
    let sha = portcullis::policy::cache::sha256_hex(&bytes);
    let settings = settings_toml();
    manifest(dir.path(), "v0", &sha, &settings);
    let config = PolicyDirConfig {
        path: dir.path().to_owned(),
        watch: false,
        debounce_ms: 0,
        require_signatures: false,
        trusted_keys: vec![],
    };

    // (a) warm: the same engine and cache directory for every reload.
    let cache = tempfile::tempdir()?;
    let runtime = PolicyRuntime::new(Some(cache.path().to_owned()), PolicyMetrics::unregistered())?;
    let sets = Arc::new(PolicySets::load(
        config.clone(),
        runtime,
        false,
        &prometheus::Registry::new(),
    )?);
    let mut warm = Vec::new();
    for i in 1..=20 {
        manifest(dir.path(), &format!("v{i}"), &sha, &settings);
        let t = Instant::now();
        sets.reload().map_err(anyhow::Error::msg)?;
        warm.push(t.elapsed());
    }
    // Cold: a fresh cache directory (and engine) each time, so the component compiles.
    let mut cold = Vec::new();
    for _ in 0..5 {
        let fresh = tempfile::tempdir()?;
        let t = Instant::now();
        let rt = PolicyRuntime::new(Some(fresh.path().to_owned()), PolicyMetrics::unregistered())?;
        let _ = PolicySets::load(config.clone(), rt, false, &prometheus::Registry::new())?;
        cold.push(t.elapsed());
    }
    println!(
        "(a) reload transaction: warm cache median {:.1} ms (20 runs), cold cache median {:.1} ms (5 runs)",
        median_ms(warm),
        median_ms(cold)
    );

    // (b) decisions on another thread, with and without swaps.
    let gate = Arc::new(ReloadableGate(Arc::clone(&sets)));
    let session = SessionInfo {
        session_id: 1,
        identity: Arc::new(Identity {
            name: "alice".into(),
            kind: PrincipalKind::Person,
            groups: vec!["analysts".into()],
            auth_method: AuthMethod::ScramSha256,
            role: None,
            acting_for: None,
            acting_for_groups: Vec::new(),
            expires_at: None,
        }),
        database: "demo".into(),
        client_addr: SocketAddr::from(([127, 0, 0, 1], 50000)),
        application_name: "bench".into(),
    };
    let decide_for = |gate: Arc<ReloadableGate>, stop: Arc<AtomicBool>, session: SessionInfo| {
        std::thread::spawn(move || {
            let analyzer = Analyzer::new(10_000);
            let mut samples = Vec::with_capacity(500_000);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let sql = format!("SELECT id, name FROM customers WHERE id = {}", i % 1000);
                let t = Instant::now();
                let analysis = analyzer.analyze(&sql);
                let ctx = StatementContext {
                    session: &session,
                    analysis: &analysis,
                    statement: &analysis.statements[0],
                    sql: &sql,
                    protocol: Protocol::Simple,
                    transaction: TransactionStatus::Idle,
                    verdicts: None,
                };
                std::hint::black_box(gate.decide(&ctx));
                samples.push(t.elapsed());
            }
            samples.sort_unstable();
            samples
        })
    };
    let run = |swaps: bool| -> anyhow::Result<Vec<Duration>> {
        let stop = Arc::new(AtomicBool::new(false));
        let worker = decide_for(Arc::clone(&gate), Arc::clone(&stop), session.clone());
        std::thread::sleep(Duration::from_millis(300));
        for i in 0..50 {
            if swaps {
                manifest(dir.path(), &format!("s{i}"), &sha, &settings);
                sets.reload().map_err(anyhow::Error::msg)?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        Ok(worker.join().expect("worker"))
    };
    let quiet = run(false)?;
    let swapping = run(true)?;
    for (name, s) in [("without swaps", &quiet), ("during 50 swaps", &swapping)] {
        println!(
            "(b) decide {name}: {} decisions, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.0} µs",
            s.len(),
            pct(s, 0.5),
            pct(s, 0.99),
            pct(s, 0.999),
            s[s.len() - 1].as_secs_f64() * 1e6
        );
    }
    println!(
        "(b) p99 during swaps / p99 without: {:.2}",
        pct(&swapping, 0.99) / pct(&quiet, 0.99)
    );
    Ok(())
}
