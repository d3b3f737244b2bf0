//! `kill -9` of the real `portcullis` binary under write load: every write whose
//! result a client received is in the audit trail, the chain verifies, and a restart
//! continues it.
//!
//! Needs PostgreSQL's server binaries (as every cluster test does); a missing one
//! fails the test.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis::audit::search::read_events;
use portcullis::audit::verify::{VerifyOptions, verify_files};
use portcullis::audit::writer::trail_files;
use portcullis::audit::{AuditEvent, EventKind};
use portcullis_cluster::{Cluster, ClusterOptions};

const PASSWORD: &str = "writer-pw";

/// The gateway process; killed if the test fails half-way.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(config: &Path, log: &Path) -> Gateway {
    let stderr = std::fs::File::create(log).unwrap();
    Gateway(
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["serve", "-c"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("starting the portcullis binary"),
    )
}

/// The gateway configuration of these tests: one service identity, audit with full text.
fn write_config(dir: &Path, cluster: &Cluster, port: u16, admin: u16, trail: &Path) -> PathBuf {
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n\
             [upstream]\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\npassword = \"{}\"\n\n\
             [databases.demo]\n\n[[identities]]\nname = \"writer\"\nkind = \"service\"\nscram = \"{}\"\n\n\
             [audit]\ndir = {:?}\nstatement_text = \"full\"\n",
            cluster.port(),
            cluster.superuser(),
            cluster.superuser_password(),
            portcullis_auth::verifier_for(PASSWORD),
            trail.display().to_string(),
        ),
    )
    .unwrap();
    config
}

async fn connect(port: u16) -> anyhow::Result<tokio_postgres::Client> {
    let uri = format!("postgresql://writer:{PASSWORD}@127.0.0.1:{port}/demo?sslmode=disable");
    let (client, conn) = tokio_postgres::connect(&uri, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

async fn wait_ready(port: u16, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if connect(port).await.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the gateway did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn events(dir: &Path) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    read_events(&trail_files(dir).unwrap(), |_, e| out.push(e)).unwrap();
    out
}

/// Ids of `insert into kill_t values (ID, ...)` statements the trail records as done.
fn recorded_inserts(events: &[AuditEvent]) -> HashSet<i64> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Statement)
        .filter(|e| e.outcome.as_ref().is_some_and(|o| o.status == "ok"))
        .filter_map(|e| e.statement.as_ref()?.text.as_deref())
        .filter_map(|t| t.strip_prefix("insert into kill_t values ("))
        .filter_map(|t| t.split(',').next()?.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write_and_a_restart_continues_the_chain() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = Cluster::start(ClusterOptions::default()).expect("starting PostgreSQL");
        c.create_database("demo").unwrap();
        c.psql(
            "demo",
            "create table kill_t (id bigint primary key, client int)",
        )
        .unwrap();
        c
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("trail");
    let (port, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), &cluster, port, admin, &trail);
    let log = dir.path().join("gateway.log");
    let mut gw = spawn(&config, &log);
    wait_ready(port, &log).await;

    // Four clients insert as fast as they can; each remembers what was acknowledged.
    // Clients 2 and 3 insert inside one open transaction block, where a result waits
    // only for its event to be written, not synced: that still survives kill -9.
    let acked = Arc::new(Mutex::new(Vec::<i64>::new()));
    let mut writers = Vec::new();
    for client_no in 0..4i64 {
        let acked = Arc::clone(&acked);
        let c = connect(port).await.unwrap();
        if client_no >= 2 {
            c.simple_query("BEGIN").await.unwrap();
        }
        writers.push(tokio::spawn(async move {
            for i in 0..1_000_000i64 {
                let id = client_no * 1_000_000 + i;
                let sql = format!("insert into kill_t values ({id}, {client_no})");
                if c.simple_query(&sql).await.is_err() {
                    return;
                }
                acked.lock().unwrap().push(id);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let progress = |acked: &[i64]| {
        let in_block = acked.iter().filter(|id| **id >= 2_000_000).count();
        in_block.min(acked.len() - in_block)
    };
    while progress(&acked.lock().unwrap()) < 200 {
        assert!(Instant::now() < deadline, "the writers made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    gw.0.kill().unwrap(); // SIGKILL
    gw.0.wait().unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let acked: Vec<i64> = acked.lock().unwrap().clone();

    let evs = events(&trail);
    let recorded = recorded_inserts(&evs);
    let missing: Vec<&i64> = acked.iter().filter(|id| !recorded.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are not in the trail: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(20)]
    );
    let files = trail_files(&trail).unwrap();
    let report = verify_files(&files, &VerifyOptions::default()).unwrap();
    let torn = intact_but_for_a_torn_tail(&report, &files);
    assert!(!report.sealed, "a killed gateway wrote no stop event");

    // A restart continues the chain; a clean stop seals it.
    let gw2 = spawn(&config, &log);
    wait_ready(port, &log).await;
    let c = connect(port).await.unwrap();
    c.simple_query("insert into kill_t values (-1, -1)")
        .await
        .unwrap();
    drop(c);
    // SAFETY: sending SIGTERM to a child we own.
    unsafe {
        libc::kill(gw2.0.id() as i32, libc::SIGTERM);
    }
    let mut gw2 = gw2;
    let status = gw2.0.wait().unwrap();
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let files = trail_files(&trail).unwrap();
    let report = verify_files(
        &files,
        &VerifyOptions {
            require_sealed: true,
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
    let evs = events(&trail);
    let starts: Vec<&AuditEvent> = evs.iter().filter(|e| e.kind == EventKind::Start).collect();
    assert_eq!(starts.len(), 2);
    // The restart cut a torn last line off, and said so.
    assert_eq!(
        starts[1]
            .detail
            .as_ref()
            .unwrap()
            .get("torn_tail_bytes")
            .is_some(),
        torn,
        "{:?}",
        starts[1].detail
    );
    assert_eq!(
        starts[1].detail.as_ref().unwrap()["previous_run"],
        "unclean"
    );
    assert!(recorded_inserts(&evs).contains(&-1));
    drop(cluster);
}

/// `kill -9` under pgbench (TPC-B-like, 4 clients): every transaction pgbench logged
/// as completed (its `END` acknowledged) has its `END` in the trail, and the chain
/// verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_pgbench_keeps_every_acknowledged_transaction() {
    let cluster = tokio::task::spawn_blocking(|| {
        let c = Cluster::start(ClusterOptions::default()).expect("starting PostgreSQL");
        c.create_database("demo").unwrap();
        c
    })
    .await
    .unwrap();
    // The cluster's own pgbench when its bin directory has one, else the one on PATH.
    let pgbench = Some(cluster.bin_dir().join("pgbench"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| "pgbench".into());
    let dir = tempfile::tempdir().unwrap();
    let init = Command::new(&pgbench)
        .args(["-i", "-q", "-s", "1", "-h", "127.0.0.1", "-p"])
        .arg(cluster.port().to_string())
        .args(["-U", cluster.superuser(), "demo"])
        .env("PGPASSWORD", cluster.superuser_password())
        .env("PGSSLMODE", "disable")
        .output()
        .expect("pgbench is installed (scripts/setup.sh installs postgresql-contrib)");
    assert!(
        init.status.success(),
        "pgbench -i: {}",
        String::from_utf8_lossy(&init.stderr)
    );

    let trail = dir.path().join("trail");
    let (port, admin) = (free_port(), free_port());
    let config = write_config(dir.path(), &cluster, port, admin, &trail);
    let log = dir.path().join("gateway.log");
    let mut gw = spawn(&config, &log);
    wait_ready(port, &log).await;

    let prefix = dir.path().join("pgb");
    let bench = Command::new(&pgbench)
        .args([
            "-n",
            "-c",
            "4",
            "-j",
            "2",
            "-T",
            "120",
            "-l",
            "--log-prefix",
        ])
        .arg(&prefix)
        .args(["-h", "127.0.0.1", "-p"])
        .arg(port.to_string())
        .args(["-U", "writer", "demo"])
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let it commit a few hundred transactions, then kill the gateway.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ends = events(&trail).iter().filter(|e| is_end(e)).count();
        if ends >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "pgbench made no progress");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gw.0.kill().unwrap(); // SIGKILL
    gw.0.wait().unwrap();
    let out = tokio::task::spawn_blocking(move || bench.wait_with_output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);

    // pgbench logs one line per completed transaction, per thread file.
    let mut completed = 0usize;
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("pgb") {
            completed += std::fs::read_to_string(entry.path())
                .unwrap()
                .lines()
                .count();
        }
    }
    assert!(completed > 0, "pgbench completed nothing: {stderr}");
    let evs = events(&trail);
    let recorded = evs.iter().filter(|e| is_end(e)).count();
    assert!(
        recorded >= completed,
        "pgbench completed {completed} transactions, the trail records {recorded} ENDs"
    );
    let files = trail_files(&trail).unwrap();
    let report = verify_files(&files, &VerifyOptions::default()).unwrap();
    intact_but_for_a_torn_tail(&report, &files);
    drop(cluster);
}

/// A completed `END` of a pgbench transaction.
fn is_end(e: &AuditEvent) -> bool {
    e.kind == EventKind::Statement
        && e.outcome.as_ref().is_some_and(|o| o.status == "ok")
        && e.statement
            .as_ref()
            .and_then(|s| s.text.as_deref())
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("end;"))
}

/// Checks a trail right after a kill -9: intact, except that the last line of the last
/// file may be torn (SIGKILL can stop a write between pages; that event's statement was
/// never acknowledged, since results wait for their events). Returns whether it was.
fn intact_but_for_a_torn_tail(
    report: &portcullis::audit::verify::Report,
    files: &[std::path::PathBuf],
) -> bool {
    let last = files.last().expect("a trail file");
    let torn = |p: &portcullis::audit::verify::Problem| {
        p.file == *last && p.message.contains("ends in the middle of an event")
    };
    match report.problems.as_slice() {
        [] => false,
        [p] if torn(p) => true,
        problems => panic!("the trail is damaged beyond a torn last line: {problems:#?}"),
    }
}
