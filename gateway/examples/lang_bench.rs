//! `authorize` latency per policy language:
//! `cargo run --release -p portcullis --example lang_bench`.
//!
//! Loads the example policy (shop-rules) in Rust, Python and JavaScript, built by
//! `bash policies-examples/build.sh` into `target/policies/examples/`, with the shared
//! settings (`policies-examples/settings.json`), and measures one `authorize` call on a
//! warm instance (request prepared in advance, through `LoadedPolicy::authorize`: pool,
//! deadline, call, result checks, metrics) for an allowed, a denied and an
//! approval-needing statement. Also reports each component's size, its load time
//! from the compile cache, and the first call into a fresh instance; and, for Python
//! and JavaScript, the floor: a guest that allows without looking at the request.
//!
//! Then the ratios to Rust measured the way a noisy machine hits every language alike:
//! `LANG_BENCH_ROUNDS` (default 9) rounds of 2,000 calls per request and language,
//! made in blocks of 50 per language in turn; a p50 per round, the ratio to Rust per
//! round, and the median ratio.
//!
//! Target (from the languages issue): Python and JavaScript p50 within 20x of Rust,
//! judged on the interleaved median ratios, for each of the three requests.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::{PolicyConfig, PrincipalKind};
use portcullis::identity::{AuthMethod, Identity};
use portcullis::pipeline::{Protocol, SessionInfo, StatementContext};
use portcullis::policy::bindings::portcullis::policy::types as wit;
use portcullis::policy::{CallContext, PolicyMetrics, PolicyRuntime, load_chain_with, request};
use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;

const WARMUP: usize = 2_000;
const SAMPLES: usize = 20_000;
const LANGS: [&str; 3] = ["rust", "python", "js"];

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn measure(mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    samples
}

fn request_for(user: &str, kind: PrincipalKind, groups: &[&str], sql: &str) -> wit::Request {
    let session = SessionInfo {
        session_id: 1,
        identity: Arc::new(Identity {
            name: user.into(),
            kind,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
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
    let analysis = Analyzer::new(16).analyze(sql);
    request::request(&StatementContext {
        session: &session,
        analysis: &analysis,
        statement: &analysis.statements[0],
        sql,
        protocol: Protocol::Simple,
        transaction: TransactionStatus::Idle,
        verdicts: None,
    })
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let examples = target.join("policies/examples");
    let settings: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        root.join("policies-examples/settings.json"),
    )?)?;
    let cache = std::env::temp_dir().join("portcullis-harness-cache");

    let allow = request_for(
        "alice",
        PrincipalKind::Person,
        &["analysts"],
        "SELECT id, name, email FROM customers WHERE id = 42",
    );
    let deny = request_for(
        "alice",
        PrincipalKind::Person,
        &["analysts"],
        "SELECT * FROM secrets",
    );
    let approval = request_for(
        "bob",
        PrincipalKind::Person,
        &["dba", "pii-readers"],
        "DELETE FROM orders WHERE id = 7",
    );

    println!(
        "{:<7} {:>10} {:>10} {:>10} | {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8}",
        "lang",
        "size KiB",
        "load ms",
        "1st µs",
        "allow50",
        "allow99",
        "deny50",
        "deny99",
        "appr50",
        "appr99"
    );
    let mut p50s = Vec::new();
    let mut loaded = Vec::new();
    for lang in LANGS {
        let path = examples.join(format!("{lang}.wasm"));
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: run `bash policies-examples/build.sh`",
            path.display()
        );
        let size = std::fs::metadata(&path)?.len();
        let mut config = PolicyConfig::new(lang, &path);
        config.settings = toml::Table::try_from(settings.clone())?;
        // Once to fill the cache, then the measured load (a restart: cache hit).
        drop(load_chain_with(
            &PolicyRuntime::new(Some(cache.clone()), PolicyMetrics::unregistered())?,
            std::slice::from_ref(&config),
            false,
        )?);
        let runtime = PolicyRuntime::new(Some(cache.clone()), PolicyMetrics::unregistered())?;
        let started = Instant::now();
        let chain = load_chain_with(&runtime, std::slice::from_ref(&config), false)?;
        let load = started.elapsed();
        let policy = Arc::clone(&chain.policies()[0]);
        let none = CallContext::default();
        // The load primed one instance (configure + metadata); its first authorize:
        let t = Instant::now();
        std::hint::black_box(policy.authorize(&allow, &none));
        let first = t.elapsed();
        let a = measure(|| {
            std::hint::black_box(policy.authorize(&allow, &none));
        });
        let d = measure(|| {
            std::hint::black_box(policy.authorize(&deny, &none));
        });
        let r = measure(|| {
            std::hint::black_box(policy.authorize(&approval, &none));
        });
        println!(
            "{:<7} {:>10} {:>10.1} {:>10.0} | {:>8.2} {:>8.2} | {:>8.2} {:>8.2} | {:>8.2} {:>8.2}   ({:?})",
            lang,
            size / 1024,
            load.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e6,
            pct(&a, 0.5),
            pct(&a, 0.99),
            pct(&d, 0.5),
            pct(&d, 0.99),
            pct(&r, 0.5),
            pct(&r, 0.99),
            policy.cache_outcome()
        );
        p50s.push((lang, pct(&a, 0.5)));
        loaded.push((chain, policy));
    }
    // The floor per language: a guest that allows without looking at the request
    // (the hostile test variants, behaviour "allow"), i.e. the cost of lifting the
    // request into the guest's language and the decision back.
    for name in ["python-hostile", "js-hostile"] {
        let mut config = PolicyConfig::new(name, examples.join(format!("{name}.wasm")));
        config.settings = toml::from_str("behaviour = \"allow\"")?;
        let runtime = PolicyRuntime::new(Some(cache.clone()), PolicyMetrics::unregistered())?;
        let chain = load_chain_with(&runtime, std::slice::from_ref(&config), false)?;
        let policy = Arc::clone(&chain.policies()[0]);
        let none = CallContext::default();
        let a = measure(|| {
            std::hint::black_box(policy.authorize(&allow, &none));
        });
        println!(
            "{name:<15} allow-all floor: p50 {:.2} µs, p99 {:.2} µs",
            pct(&a, 0.5),
            pct(&a, 0.99)
        );
    }
    let rust = p50s[0].1;
    println!(
        "\n{SAMPLES} samples per column after {WARMUP} warm-up calls; µs per call unless noted"
    );
    for (lang, p50) in &p50s[1..] {
        println!(
            "{lang}: allow p50 {:.1}x Rust (the table above)",
            p50 / rust
        );
    }
    // Interleaved rounds: each round measures every language, so a slow stretch of a
    // shared machine hits them alike; the ratios are taken within each round.
    let rounds: usize = std::env::var("LANG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9)
        .max(1);
    let none = CallContext::default();
    let requests = [("allow", &allow), ("deny", &deny), ("approval", &approval)];
    // [request][language] -> per-round p50s.
    let mut p50 = vec![vec![Vec::with_capacity(rounds); LANGS.len()]; requests.len()];
    for _ in 0..rounds {
        for (r, (_, req)) in requests.iter().enumerate() {
            // Blocks of BLOCK_CALLS calls per language in turn, so that within a round
            // a slow stretch of the machine falls on every language alike.
            let mut samples = vec![Vec::with_capacity(ROUND_CALLS); loaded.len()];
            for _ in 0..ROUND_CALLS / BLOCK_CALLS {
                for (l, (_, policy)) in loaded.iter().enumerate() {
                    for _ in 0..BLOCK_CALLS {
                        let t = Instant::now();
                        std::hint::black_box(policy.authorize(req, &none));
                        samples[l].push(t.elapsed());
                    }
                }
            }
            for (l, mut s) in samples.into_iter().enumerate() {
                s.sort_unstable();
                p50[r][l].push(pct(&s, 0.5));
            }
        }
    }
    println!(
        "\ninterleaved: {rounds} rounds of {ROUND_CALLS} calls per request and language, in blocks of {BLOCK_CALLS}; p50 µs (median of rounds), ratio to Rust (median of the rounds' ratios)"
    );
    let mut worst = 0f64;
    for (r, (what, _)) in requests.iter().enumerate() {
        let rust = &p50[r][0];
        let mut line = format!("{what:<9} rust {:>7.2}", median(rust));
        for (l, lang) in LANGS.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = p50[r][l].iter().zip(rust).map(|(x, y)| x / y).collect();
            let ratio = median(&ratios);
            worst = worst.max(ratio);
            line += &format!(
                " | {lang} {:>7.2} {ratio:>5.1}x (rounds {:.1}..{:.1})",
                median(&p50[r][l]),
                ratios.iter().copied().fold(f64::INFINITY, f64::min),
                ratios.iter().copied().fold(0.0, f64::max)
            );
        }
        println!("{line}");
    }
    println!(
        "Python and JavaScript p50 within 20x of Rust (worst request, interleaved): {worst:.1}x, {}",
        if worst <= 20.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

/// The calls per request and language in one interleaved round.
const ROUND_CALLS: usize = 2_000;

/// The calls per language in one block of a round.
const BLOCK_CALLS: usize = 50;

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
