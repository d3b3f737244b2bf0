//! Replay throughput: `cargo run --release -p portcullis --example replay_bench [N [THREADS]]`.
//!
//! Writes a recording of N (default 100,000) statements of demo traffic — alice,
//! bob and etl-agent running a mix of 8 statements, each decided by the demo policy
//! set (guardrails + pii-mask, built by `bash policies-rs/build.sh`), plus one result
//! set with provenance and masks per SELECT of customers — then replays it 3 times
//! against the same set in a policy directory and prints the median throughput.
//! Target (issue 5): ≥ 50,000 statements/s.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use portcullis::config::PrincipalKind;
use portcullis::identity::{AuthMethod, Identity};
use portcullis::pipeline::{Protocol, SessionInfo, StatementContext};
use portcullis::policy::CallContext;
use portcullis::policy::bindings::portcullis::policy::types as wit;
use portcullis::recording::format::{
    ColumnRec, IdentityRec, Line, MaskRec, ResultLine, StatementLine, SummaryRec, mask_name,
};
use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;
use sha2::Digest as _;

const MIX: [&str; 8] = [
    "SELECT id, email, phone FROM customers WHERE id = 17",
    "SELECT count(*) FROM orders WHERE customer_id = 42",
    "SELECT o.id, o.amount FROM orders o JOIN customers c ON c.id = o.customer_id WHERE c.id = 3",
    "UPDATE orders SET status = 'shipped' WHERE id = 99",
    "DELETE FROM orders",
    "DROP TABLE customers",
    "SELECT * FROM secrets",
    "INSERT INTO orders (customer_id, amount) VALUES (1, 9.5)",
];

fn session(user: &str, kind: PrincipalKind, groups: &[&str], id: u64) -> SessionInfo {
    SessionInfo {
        session_id: id,
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
        client_addr: SocketAddr::from(([127, 0, 0, 1], 5000)),
        application_name: "bench".into(),
    }
}

fn policy_dir(dir: &Path) -> anyhow::Result<()> {
    let mut manifest = toml::Table::new();
    manifest.insert("version".into(), "bench".into());
    let mut entries = Vec::new();
    for (i, p) in [
        portcullis::demo::demo_policy(None)?,
        portcullis::demo::demo_mask_policy(None)?,
    ]
    .iter()
    .enumerate()
    {
        let bytes = std::fs::read(&p.path)?;
        std::fs::write(dir.join(format!("{}.wasm", p.id)), &bytes)?;
        let settings = p.settings_json().map_err(anyhow::Error::msg)?;
        let h = portcullis::policy::harness::Harness::load(
            std::slice::from_ref(&p.path),
            &[&settings],
        )?;
        let mut e = toml::Table::new();
        e.insert("id".into(), p.id.clone().into());
        e.insert("artifact".into(), format!("{}.wasm", p.id).into());
        e.insert(
            "version".into(),
            h.chain().policies()[0].metadata().version.clone().into(),
        );
        e.insert(
            "sha256".into(),
            hex::encode(sha2::Sha256::digest(&bytes)).into(),
        );
        e.insert("order".into(), (i as i64).into());
        e.insert("settings".into(), toml::Value::Table(p.settings.clone()));
        entries.push(toml::Value::Table(e));
    }
    manifest.insert("policies".into(), toml::Value::Array(entries));
    std::fs::write(dir.join("policies.toml"), toml::to_string(&manifest)?)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let threads: usize = std::env::args()
        .nth(2)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or_else(portcullis::policy::replay::default_threads);
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("policies");
    std::fs::create_dir_all(&dir)?;
    policy_dir(&dir)?;
    let runtime = portcullis::policy::candidate::offline_runtime().map_err(anyhow::Error::msg)?;
    let set = portcullis::policy::candidate::load_candidate(&dir, &runtime)
        .map_err(anyhow::Error::msg)?;
    let sessions = [
        session("alice", PrincipalKind::Person, &["analysts"], 1),
        session("bob", PrincipalKind::Person, &["dba", "pii-readers"], 2),
        session("etl-agent", PrincipalKind::Agent, &["pipelines"], 3),
    ];
    let analyzer = Analyzer::new(1024);
    let recording = tmp.path().join("bench.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&recording)?);
    use std::io::Write as _;
    writeln!(
        out,
        "{{\"format\":\"portcullis-recording\",\"version\":1,\"started\":\"-\",\"gateway\":\"bench\",\"sample_rows\":0}}"
    )?;
    let mut seq = 0;
    let mut results = 0;
    let mask_policies = set.chain.mask_policies();
    for i in 0..n {
        let s = &sessions[i % 3];
        let sql = MIX[(i / 3) % MIX.len()];
        let analysis = analyzer.analyze(sql);
        let ctx = StatementContext {
            session: s,
            analysis: &analysis,
            statement: &analysis.statements[0],
            sql,
            protocol: Protocol::Simple,
            transaction: TransactionStatus::Idle,
            verdicts: None,
        };
        let req = portcullis::recording::live_request(&ctx, None);
        let decision = set.chain.decide_request(&req, &CallContext::default());
        seq += 1;
        let line = Line::Statement(Box::new(StatementLine {
            seq,
            time: "-".into(),
            session: s.session_id,
            identity: IdentityRec::from_wit(&req.identity),
            database: "demo".into(),
            protocol: "simple".into(),
            transaction: "idle".into(),
            sql: sql.into(),
            statement: SummaryRec::from_wit(&req.statement),
            params: None,
            binary_params: Vec::new(),
            decision: portcullis::recording::decision_rec(&decision),
            verdicts: Vec::new(),
        }));
        serde_json::to_writer(&mut out, &line)?;
        out.write_all(b"\n")?;
        if sql.starts_with("SELECT id, email") && !decision.is_deny() {
            let col = |i: u32, name: &str, oid: u32| wit::ResultColumn {
                index: i,
                name: name.into(),
                type_oid: oid,
                format: wit::ValueFormat::Text,
                provenance: wit::Provenance::Direct(wit::ColumnSource {
                    schema: "public".into(),
                    table: "customers".into(),
                    column: name.into(),
                }),
            };
            let rctx = wit::ResultContext {
                identity: req.identity.clone(),
                database: "demo".into(),
                statement: Some(req.statement.clone()),
                columns: vec![col(0, "id", 20), col(1, "email", 25), col(2, "phone", 25)],
            };
            let mut masks = Vec::new();
            for p in &mask_policies {
                let plan = p
                    .plan_masks(&rctx, &CallContext::default())
                    .map_err(|f| anyhow::anyhow!("{f}"))?;
                masks.extend(plan.columns.iter().map(|c| MaskRec {
                    column: c.index,
                    policy: p.id().to_owned(),
                    mask: mask_name(&c.mask),
                }));
            }
            seq += 1;
            results += 1;
            let line = Line::Result(Box::new(ResultLine {
                seq,
                time: "-".into(),
                session: s.session_id,
                identity: IdentityRec::from_wit(&req.identity),
                database: "demo".into(),
                statement: Some(SummaryRec::from_wit(&req.statement)),
                columns: rctx.columns.iter().map(ColumnRec::from_wit).collect(),
                masks,
                refused: None,
                rows: Vec::new(),
            }));
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    drop(out);
    let size = std::fs::metadata(&recording)?.len();
    println!(
        "recording: {n} statements, {results} result sets, {:.1} MiB",
        size as f64 / (1 << 20) as f64
    );
    let mut rates = Vec::new();
    for round in 0..3 {
        let started = Instant::now();
        let report =
            portcullis::policy::replay::replay(&portcullis::policy::replay::ReplayOptions {
                recording: recording.clone(),
                policies: dir.clone(),
                expectations: Default::default(),
                progress: false,
                threads,
            })
            .map_err(anyhow::Error::msg)?;
        let total = started.elapsed().as_secs_f64();
        anyhow::ensure!(
            report.differences.is_empty(),
            "the unchanged set differs: {:?}",
            &report.differences[..report.differences.len().min(3)]
        );
        let rate = report.statements as f64 / (report.elapsed_ms / 1e3);
        println!(
            "round {round}: {} statements + {} results in {:.0} ms replay ({:.2} s with loading): {:.0} statements/s",
            report.statements, report.results, report.elapsed_ms, total, rate
        );
        if round == 2 {
            for l in &report.latency {
                println!(
                    "  {} {}: p50 {:.1} µs, p99 {:.1} µs",
                    l.policy, l.hook, l.p50_us, l.p99_us
                );
            }
        }
        rates.push(rate);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    println!(
        "median: {:.0} statements/s on {threads} thread(s) (target ≥ 50,000)",
        rates[1]
    );
    Ok(())
}
