//! Policy runtime latency: `cargo run --release -p portcullis --example policy_bench`.
//!
//! Measures, with the standard guardrails policy and its demo settings (built by
//! `bash policies-rs/build.sh` into `target/policies/`):
//! (a) one `authorize` call on a warm instance (request prepared in advance);
//! (b) the host cost per statement: parse-cache lookup (new literals each time, so the
//!     fingerprint is recomputed) + request conversion + policy chain + decision,
//!     through `Analyzer::analyze` and `Gate::decide`, on a mix of realistic
//!     statements;
//! (b') the same with the policy's decision cache on (`decision_cache = true`, as the
//!     demo runs it): one call per literal-free shape, then lookups;
//! and for reference the analysis alone and the request conversion alone.
//!
//! Targets (from the policy-runtime issue): (a) p50 <= 5 us, (b) p50 <= 10 us.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::config::PrincipalKind;
use portcullis::identity::{AuthMethod, Identity};
use portcullis::pipeline::{Decision, Gate, Protocol, SessionInfo, StatementContext};
use portcullis::policy::{CallContext, PolicyMetrics, PolicyRuntime, load_chain_with, request};
use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;

const WARMUP: usize = 20_000;
const SAMPLES: usize = 200_000;

/// Statement templates; `{}` gets a fresh literal every time.
const STATEMENTS: &[&str] = &[
    "SELECT id, name, email FROM customers WHERE id = {}",
    "SELECT o.id, o.total FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = {} ORDER BY o.id LIMIT 20",
    "UPDATE orders SET status = 'shipped' WHERE id = {}",
    "INSERT INTO orders (customer_id, total, status) VALUES ({}, 19.99, 'new')",
    "DELETE FROM orders WHERE id = {}",
    "SELECT count(*) FROM orders WHERE total > {}",
    "BEGIN",
    "COMMIT",
];

struct Stats {
    name: &'static str,
    samples: Vec<Duration>,
}

impl Stats {
    fn pct(&self, p: f64) -> f64 {
        let i = ((self.samples.len() as f64 - 1.0) * p).round() as usize;
        self.samples[i].as_secs_f64() * 1e6
    }
}

fn measure(name: &'static str, mut f: impl FnMut(usize)) -> Stats {
    for i in 0..WARMUP {
        f(i);
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    for i in 0..SAMPLES {
        let t = Instant::now();
        f(WARMUP + i);
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    Stats { name, samples }
}

fn main() -> anyhow::Result<()> {
    let cached_policy = portcullis::demo::demo_policy(None)?;
    let mut policy = cached_policy.clone();
    policy.decision_cache = false;
    let metrics = PolicyMetrics::unregistered();
    let runtime = PolicyRuntime::new(None, metrics)?;
    let started = Instant::now();
    let chain = load_chain_with(&runtime, std::slice::from_ref(&policy), false)?;
    let cached = load_chain_with(&runtime, std::slice::from_ref(&cached_policy), false)?;
    let guardrails = Arc::clone(&chain.policies()[0]);
    println!(
        "guardrails {} ({}): loaded in {:?} ({:?})",
        guardrails.metadata().version,
        policy.path.display(),
        started.elapsed(),
        guardrails.cache_outcome()
    );

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
    let analyzer = Analyzer::new(10_000);
    // Literal variants, generated before measuring.
    let sqls: Vec<String> = (0..4096)
        .flat_map(|i| {
            STATEMENTS
                .iter()
                .map(move |t| t.replace("{}", &i.to_string()))
        })
        .collect();
    let ctx_request = |sql: &str| {
        let analysis = analyzer.analyze(sql);
        let ctx = StatementContext {
            session: &session,
            analysis: &analysis,
            statement: &analysis.statements[0],
            sql,
            protocol: Protocol::Simple,
            transaction: TransactionStatus::Idle,
            verdicts: None,
        };
        request::request(&ctx)
    };
    let select_req = ctx_request(&sqls[0]);
    let none = CallContext::default();
    let mut denied = 0usize;

    let a = measure("(a) authorize, warm instance", |_| {
        std::hint::black_box(guardrails.authorize(&select_req, &none));
    });
    // The same call into a policy that allows without looking: the host's share
    // (passing the request in, the decision out, pool and metrics).
    let mut baseline = policy.clone();
    baseline.id = "baseline".into();
    baseline.path = policy.path.with_file_name("hostile.wasm");
    baseline.settings = toml::Table::new();
    let baseline = load_chain_with(&runtime, &[baseline], false)?;
    let null_policy = Arc::clone(&baseline.policies()[0]);
    let null = measure("    authorize, allow-all policy", |_| {
        std::hint::black_box(null_policy.authorize(&select_req, &none));
    });
    let analysis_only = measure("    analyze (parse-cache hit)", |i| {
        std::hint::black_box(analyzer.analyze(&sqls[i % sqls.len()]));
    });
    let convert_only = measure("    analyze + request conversion", |i| {
        std::hint::black_box(ctx_request(&sqls[i % sqls.len()]));
    });
    let decide = |chain: &portcullis::policy::PolicyChain, i: usize| -> bool {
        let sql = &sqls[i % sqls.len()];
        let analysis = analyzer.analyze(sql);
        for statement in &analysis.statements {
            let ctx = StatementContext {
                session: &session,
                analysis: &analysis,
                statement,
                sql,
                protocol: Protocol::Simple,
                transaction: TransactionStatus::Idle,
                verdicts: None,
            };
            if let Decision::Deny(_) = chain.decide(&ctx) {
                return true;
            }
        }
        false
    };
    let b = measure("(b) analyze + chain + decision", |i| {
        denied += usize::from(decide(&chain, i));
    });
    let b_cached = measure("(b') the same, decision cache on", |i| {
        std::hint::black_box(decide(&cached, i));
    });

    println!(
        "\n{:<36} {:>9} {:>9} {:>9}",
        "per statement", "p50 µs", "p99 µs", "max µs"
    );
    for s in [&a, &null, &analysis_only, &convert_only, &b, &b_cached] {
        println!(
            "{:<36} {:>9.2} {:>9.2} {:>9.1}",
            s.name,
            s.pct(0.50),
            s.pct(0.99),
            s.pct(1.0)
        );
    }
    let stats = analyzer.stats();
    println!(
        "\n{SAMPLES} samples after {WARMUP} warm-up calls; parse cache: {} hits, {} misses; (b) denied {} of {} strings",
        stats.hits,
        stats.misses,
        denied,
        WARMUP + SAMPLES
    );
    println!(
        "targets: (a) p50 <= 5 µs: {}; (b) p50 <= 10 µs: {}",
        verdict(a.pct(0.5) <= 5.0),
        verdict(b.pct(0.5) <= 10.0)
    );
    Ok(())
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}
