//! pgbench through the gateway: initialisation (COPY and server-side
//! generation) and the simple, extended and prepared query modes.

use portcullis_tests::tools::{CmdOutput, clean_command, require_tool, run_async};
use portcullis_tests::{EnvOptions, TestEnv, password_for};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

/// One database per test, so tests can run in parallel.
const DATABASES: [&str; 7] = [
    "bench_init",
    "bench_server_side",
    "bench_simple",
    "bench_extended",
    "bench_prepared",
    "bench_concurrent",
    "bench_connect",
];

fn options() -> EnvOptions {
    EnvOptions {
        databases: DATABASES.iter().map(|s| s.to_string()).collect(),
        ..EnvOptions::default()
    }
}

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, options).await
}

async fn pgbench(env: &TestEnv, user: &str, db: &str, args: &[&str]) -> CmdOutput {
    let mut cmd = clean_command(require_tool("pgbench"));
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", env.gw.port().to_string())
        .env("PGUSER", user)
        .env("PGPASSWORD", password_for(user))
        .env("PGDATABASE", db)
        .env("PGSSLMODE", "disable")
        .args(args);
    run_async(cmd, None).await
}

async fn init(env: &TestEnv, db: &str, extra: &[&str]) {
    let mut args = vec!["-i", "-s", "1", "-q"];
    args.extend_from_slice(extra);
    let out = pgbench(env, "etl-agent", db, &args).await;
    out.assert_success("pgbench -i");
    assert!(
        out.stderr.contains("done in"),
        "pgbench -i stderr:\n{}",
        out.stderr
    );
    let counts = env.admin_sql(
        db,
        "select (select count(*) from pgbench_accounts), (select count(*) from pgbench_branches), \
         (select count(*) from pgbench_tellers), (select count(*) from pgbench_history), \
         (select sum(abalance) from pgbench_accounts)",
    );
    assert_eq!(counts, "100000|1|10|0|0", "tables after pgbench -i in {db}");
}

#[track_caller]
fn assert_processed(out: &CmdOutput, expected: u32) {
    out.assert_success("pgbench run");
    let line = format!("number of transactions actually processed: {expected}/{expected}");
    assert!(
        out.stdout.contains(&line),
        "expected {line:?} in pgbench output:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        out.stdout
            .contains("number of failed transactions: 0 (0.000%)"),
        "pgbench reported failures:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn init_with_client_side_copy() {
    let env = env().await;
    init(env, "bench_init", &[]).await;
    // Re-initialising drops and recreates the tables through the gateway.
    init(env, "bench_init", &[]).await;
}

#[tokio::test]
async fn init_with_server_side_generation() {
    let env = env().await;
    init(env, "bench_server_side", &["-I", "dtGvp"]).await;
}

#[tokio::test]
async fn select_only_simple_protocol() {
    let env = env().await;
    init(env, "bench_simple", &[]).await;
    let out = pgbench(
        env,
        "alice",
        "bench_simple",
        &["-S", "-M", "simple", "-t", "300"],
    )
    .await;
    assert_processed(&out, 300);
    assert!(out.stdout.contains("query mode: simple"), "{}", out.stdout);
}

#[tokio::test]
async fn select_only_extended_protocol() {
    let env = env().await;
    init(env, "bench_extended", &[]).await;
    let out = pgbench(
        env,
        "bob",
        "bench_extended",
        &["-S", "-M", "extended", "-t", "300"],
    )
    .await;
    assert_processed(&out, 300);
    assert!(
        out.stdout.contains("query mode: extended"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn select_only_prepared_statements() {
    let env = env().await;
    init(env, "bench_prepared", &[]).await;
    let out = pgbench(
        env,
        "alice",
        "bench_prepared",
        &["-S", "-M", "prepared", "-t", "300"],
    )
    .await;
    assert_processed(&out, 300);
    assert!(
        out.stdout.contains("query mode: prepared"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn tpcb_four_clients_in_each_mode() {
    let env = env().await;
    init(env, "bench_concurrent", &[]).await;
    let mut total_delta: i64 = 0;
    for mode in ["simple", "extended", "prepared"] {
        let out = pgbench(
            env,
            "etl-agent",
            "bench_concurrent",
            &["-M", mode, "-c", "4", "-j", "2", "-t", "200"],
        )
        .await;
        assert_processed(&out, 800);
        assert!(
            out.stdout.contains(&format!("query mode: {mode}")),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains("number of clients: 4"),
            "{}",
            out.stdout
        );
        // pgbench truncates pgbench_history before each run: every TPC-B
        // transaction of this run inserted exactly one history row, and the
        // balances of the three tables moved by the same total.
        let check = env.admin_sql(
            "bench_concurrent",
            "select (select count(*) from pgbench_history), (select sum(delta) from pgbench_history), \
             (select sum(abalance) from pgbench_accounts), (select sum(bbalance) from pgbench_branches), \
             (select sum(tbalance) from pgbench_tellers)",
        );
        let v: Vec<&str> = check.split('|').collect();
        assert_eq!(v[0], "800", "history rows after -M {mode}: {check}");
        total_delta += v[1].parse::<i64>().unwrap();
        let expected = total_delta.to_string();
        assert_eq!(
            v[2..],
            [expected.as_str(); 3],
            "balances after -M {mode}: {check}"
        );
    }
}

#[tokio::test]
async fn connection_per_transaction() {
    // -C opens a new connection for every transaction: 100 logins through the gateway.
    let env = env().await;
    init(env, "bench_connect", &[]).await;
    let out = pgbench(
        env,
        "bob",
        "bench_connect",
        &["-S", "-C", "-c", "2", "-t", "50"],
    )
    .await;
    assert_processed(&out, 100);
}
