//! The per-call cost of policy components side by side, for a guest language's floor:
//! `cargo run --release -p portcullis --example guest_floor -- COMPONENT[::SETTINGS]...`.
//!
//! Loads each COMPONENT (a `.wasm` path; settings `behaviour = "allow"`, the allow-all
//! hostile variants' setting, unless `::TOML` or `::@FILE.json` follows the path),
//! then calls `authorize` on a warm instance through `LoadedPolicy::authorize`, as
//! `lang_bench` does, with two requests: *bench* (the `lang_bench` allow request, an
//! analyst's `SELECT id, name, email FROM customers WHERE id = 42`) and *tiny* (every
//! string and list empty). The components are measured in interleaved rounds (2,000
//! calls each; `--rounds R`, default 15) so that a noisy machine hits them alike;
//! prints the median over rounds of each round's p50 and p99. With `--calls N` it
//! instead makes N untimed calls into the first component (the bench request, or the
//! tiny one with `--tiny`), for `perf record`: set `PORTCULLIS_WASM_PERFMAP=1` to have
//! wasmtime write `/tmp/perf-PID.map`, which names the guest's functions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::{PolicyConfig, PrincipalKind};
use portcullis::identity::{AuthMethod, Identity};
use portcullis::pipeline::{Protocol, SessionInfo, StatementContext};
use portcullis::policy::bindings::portcullis::policy::types as wit;
use portcullis::policy::{
    CallContext, LoadedPolicy, PolicyMetrics, PolicyRuntime, load_chain_with, request,
};
use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;

const WARMUP: usize = 2_000;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn bench_request() -> wit::Request {
    let sql = "SELECT id, name, email FROM customers WHERE id = 42";
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

fn tiny_request() -> wit::Request {
    wit::Request {
        identity: wit::Identity {
            user: String::new(),
            groups: Vec::new(),
            kind: wit::PrincipalKind::Person,
            auth_method: wit::AuthMethod::Scram,
            acting_for: None,
            client_addr: String::new(),
            application_name: String::new(),
        },
        database: String::new(),
        statement: wit::Statement {
            kind: wit::StatementKind::Select,
            leading_keyword: String::new(),
            fingerprint: String::new(),
            sql: String::new(),
            tables: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            has_where: None,
            copy: None,
            parse_error: None,
            multi_statement: false,
            index: 0,
        },
        params: None,
        protocol: wit::Protocol::Simple,
        transaction: wit::TransactionState::Idle,
        session_id: 1,
    }
}

/// One component under test: `PATH` (settings `behaviour = "allow"`), `PATH::TOML`
/// (inline settings) or `PATH::@FILE` (settings from a JSON file).
fn load(runtime: &PolicyRuntime, spec: &str) -> anyhow::Result<Arc<LoadedPolicy>> {
    let (path, settings) = spec.split_once("::").unwrap_or((spec, ""));
    let mut config = PolicyConfig::new("floor", path);
    config.settings = if let Some(file) = settings.strip_prefix('@') {
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
        toml::Table::try_from(json)?
    } else if settings.is_empty() {
        toml::from_str("behaviour = \"allow\"")?
    } else {
        toml::from_str(settings)?
    };
    let chain = load_chain_with(runtime, std::slice::from_ref(&config), false)?;
    Ok(Arc::clone(&chain.policies()[0]))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: guest_floor [--calls N] [--tiny] [--rounds R] COMPONENT[::SETTINGS]...";
    let mut flag = |name: &str| -> anyhow::Result<Option<String>> {
        match args.iter().position(|a| a == name) {
            Some(i) if i + 1 < args.len() => {
                let v = args.remove(i + 1);
                args.remove(i);
                Ok(Some(v))
            }
            Some(_) => anyhow::bail!(usage),
            None => Ok(None),
        }
    };
    let calls: Option<u64> = flag("--calls")?.map(|s| s.parse()).transpose()?;
    let rounds: usize = flag("--rounds")?
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(15);
    let tiny_only = if let Some(i) = args.iter().position(|a| a == "--tiny") {
        args.remove(i);
        true
    } else {
        false
    };
    anyhow::ensure!(!args.is_empty(), usage);
    let cache = std::env::temp_dir().join("portcullis-harness-cache");
    let runtime = PolicyRuntime::new(Some(cache), PolicyMetrics::unregistered())?;
    let policies = args
        .iter()
        .map(|spec| load(&runtime, spec))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let none = CallContext::default();
    let bench = bench_request();
    let tiny = tiny_request();
    if let Some(n) = calls {
        // Untimed, for `perf record`.
        let req = if tiny_only { &tiny } else { &bench };
        for _ in 0..n {
            std::hint::black_box(policies[0].authorize(req, &none));
        }
        println!("{n} calls");
        return Ok(());
    }
    for (name, req) in [("bench", &bench), ("tiny", &tiny)] {
        // Rounds interleave the components, so that load from other processes hits
        // them alike; each round's p50 over ROUND calls, then the median of rounds.
        const ROUND: usize = 2_000;
        let mut p50s = vec![Vec::new(); policies.len()];
        let mut p99s = vec![Vec::new(); policies.len()];
        for p in &policies {
            for _ in 0..WARMUP {
                std::hint::black_box(p.authorize(req, &none));
            }
        }
        for _ in 0..rounds {
            for (i, p) in policies.iter().enumerate() {
                let mut s: Vec<Duration> = (0..ROUND)
                    .map(|_| {
                        let t = Instant::now();
                        std::hint::black_box(p.authorize(req, &none));
                        t.elapsed()
                    })
                    .collect();
                s.sort_unstable();
                p50s[i].push(pct(&s, 0.5));
                p99s[i].push(pct(&s, 0.99));
            }
        }
        for (i, spec) in args.iter().enumerate() {
            println!(
                "{name:<5} p50 {:>8.2} µs  p99 {:>8.2} µs  {spec}",
                median(&mut p50s[i]),
                median(&mut p99s[i])
            );
        }
    }
    println!(
        "(median over {rounds} interleaved rounds of {} calls each)",
        2_000
    );
    Ok(())
}
