//! Cost of audit statement events: `cargo run --release -p portcullis --example audit_bench [N]`.
//!
//! Records N (default 200,000) pgbench select-only statements (one cached analysis, the
//! default `statement_text = "redacted"`, no policies) into a trail in a temporary
//! directory, one submit per statement as a session does, and prints per event:
//!
//! - *session*: building the event and submitting it (what a session task spends);
//! - *to disk*: from the first submit until every event is written and synced, divided
//!   by N (the writer thread's throughput while sessions submit).
//!
//! Each is measured for events queued as sessions queue them (`queued`) and for the
//! same events built as owned records first (`owned`: what sessions built before, plus
//! one box per event), 5 rounds each, interleaved; medians are printed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis::audit::queued::{CommandTag, StatementOutcome};
use portcullis::audit::{
    AuditContext, AuditLog, DecisionRecord, Queued, SessionRecord, StatementFacts,
};
use portcullis::config::AuditConfig;
use portcullis_sql::Analyzer;

fn session() -> Arc<SessionRecord> {
    Arc::new(SessionRecord {
        id: 17,
        user: "bench".into(),
        groups: vec!["analysts".into(), "readers".into()],
        principal: "person".into(),
        auth: "scram-sha-256".into(),
        acting_for: None,
        acting_for_groups: Vec::new(),
        role: None,
        client_addr: "127.0.0.1:54321".into(),
        application: "pgbench".into(),
        database: "bench".into(),
    })
}

/// One round: (session ns per event, to-disk ns per event).
fn round(n: usize, owned: bool, rt: &tokio::runtime::Runtime) -> (f64, f64) {
    static ROUND: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "portcullis-audit-bench-{}-{}",
        std::process::id(),
        ROUND.fetch_add(1, Ordering::Relaxed)
    ));
    let cfg = AuditConfig::new(&dir);
    let log = AuditLog::open(&cfg, None).expect("opens the trail");
    let ctx = AuditContext::new(log.clone(), &cfg, Vec::new());
    let analyzer = Analyzer::new(100);
    let s = session();
    let sqls: Vec<String> = (0..1000)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 97 + 1
            )
        })
        .collect();
    // The parse cache hands every literal variant the same analysis.
    let analyses: Vec<_> = sqls.iter().map(|q| analyzer.analyze(q)).collect();
    let mut buf: Vec<Queued> = Vec::new();
    let mut session_time = Duration::ZERO;
    let start = Instant::now();
    for i in 0..n {
        let analysis = &analyses[i % analyses.len()];
        let t = Instant::now();
        let e = ctx.statement_event(
            &s,
            StatementFacts {
                protocol: "simple",
                analysis,
                index: 0,
                sql: None,
                params: None,
                decision: DecisionRecord::allow(),
                outcome: StatementOutcome {
                    status: "ok".into(),
                    command: CommandTag::new(b"SELECT 1"),
                    sqlstate: None,
                    error: None,
                    duration_us: 150,
                },
            },
        );
        buf.push(if owned { e.event().into() } else { e.into() });
        log.submit_drain(&mut buf, None);
        session_time += t.elapsed();
    }
    rt.block_on(log.sync()).expect("the trail is written");
    let total = start.elapsed();
    log.close();
    let _ = std::fs::remove_dir_all(&dir);
    (
        session_time.as_nanos() as f64 / n as f64,
        total.as_nanos() as f64 / n as f64,
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    round(n / 10, false, &rt);
    let (mut qs, mut qd, mut os, mut od) = (vec![], vec![], vec![], vec![]);
    for _ in 0..5 {
        let (s, d) = round(n, false, &rt);
        qs.push(s);
        qd.push(d);
        let (s, d) = round(n, true, &rt);
        os.push(s);
        od.push(d);
    }
    println!("audit_bench: {n} select-only statement events per round, 5 rounds, medians");
    println!("| events | session ns/event | to disk ns/event |");
    println!("|---|---:|---:|");
    println!("| queued | {:.0} | {:.0} |", median(qs), median(qd));
    println!("| owned | {:.0} | {:.0} |", median(os), median(od));
}
