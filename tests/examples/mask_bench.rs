//! Masking throughput: `SELECT` of 100k rows × 7 columns through the gateway, without
//! masking, with 4 columns masked by the native plan, and with 2 columns masked by a
//! `custom` (`mask-rows`) Rust policy; the same through the simple (text) and the
//! extended (binary) protocol.
//!
//! ```sh
//! bash policies-rs/build.sh
//! cargo run --release -p portcullis-tests --example mask_bench
//! ```
//!
//! Prints rows/s per variant and the ratios of time with masking / without (targets
//! from the masking issue: native ≤ 1.15, custom ≤ 1.5). Each measurement is the median
//! of `MASK_BENCH_ROUNDS` (default 7) runs, the variants interleaved.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis::config::PolicyConfig;
use portcullis_tests::{EnvOptions, Gateway, GatewayOptions, TestEnv};
use tokio_postgres::SimpleQueryMessage;

const ROWS: usize = 100_000;

fn policies_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PORTCULLIS_TEST_POLICIES") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("policies")
}

fn pii_mask(columns: &[(&str, &str)]) -> PolicyConfig {
    let mut p = PolicyConfig::new("pii-mask", policies_dir().join("pii-mask.wasm"));
    assert!(
        p.path.is_file(),
        "{} is missing: run `bash policies-rs/build.sh`",
        p.path.display()
    );
    let mut cols = toml::Table::new();
    for (c, m) in columns {
        cols.insert(format!("bench_pii.{c}"), (*m).into());
    }
    p.settings
        .insert("columns".into(), toml::Value::Table(cols));
    p
}

async fn time_simple(gw: &Gateway) -> Duration {
    let c = portcullis_tests::pg::connect(&gw.uri("alice", "demo"))
        .await
        .unwrap();
    let t = Instant::now();
    let msgs = c.simple_query("SELECT * FROM bench_pii").await.unwrap();
    let d = t.elapsed();
    let rows = msgs
        .iter()
        .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
        .count();
    assert_eq!(rows, ROWS);
    d
}

async fn time_binary(gw: &Gateway) -> Duration {
    let c = portcullis_tests::pg::connect(&gw.uri("alice", "demo"))
        .await
        .unwrap();
    let stmt = c.prepare("SELECT * FROM bench_pii").await.unwrap();
    let t = Instant::now();
    let rows = c.query(&stmt, &[]).await.unwrap();
    let d = t.elapsed();
    assert_eq!(rows.len(), ROWS);
    d
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("MASK_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let env = TestEnv::start(EnvOptions::default()).await.unwrap();
    let direct = env.connect_direct("demo").await.unwrap();
    direct
        .batch_execute(&format!(
            "CREATE TABLE bench_pii AS SELECT i::int8 AS id, 'Name ' || i AS name, \
             'user' || i || '@example.com' AS email, '+1-555-' || lpad((i % 10000)::text, 4, '0') AS phone, \
             lpad((i % 1000)::text, 3, '0') || '-' || lpad((i % 100)::text, 2, '0') || '-' || lpad((i % 10000)::text, 4, '0') AS ssn, \
             '4111 1111 ' || lpad((i % 10000)::text, 4, '0') || ' ' || lpad((i % 9999)::text, 4, '0') AS card, \
             timestamptz '2024-01-01' + i * interval '1 minute' AS created_at \
             FROM generate_series(1, {ROWS}) i; ANALYZE bench_pii"
        ))
        .await
        .unwrap();
    let plain = env.start_gateway(GatewayOptions::default()).await.unwrap();
    let native = env
        .start_gateway(GatewayOptions {
            policies: vec![pii_mask(&[
                ("email", "email"),
                ("phone", "digits(4)"),
                ("ssn", "partial(last 4)"),
                ("card", "digits(4)"),
            ])],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let custom = env
        .start_gateway(GatewayOptions {
            policies: vec![pii_mask(&[("name", "custom"), ("email", "custom")])],
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let variants = [
        ("no masking", &plain),
        ("native, 4 columns", &native),
        ("custom mask-rows, 2 columns", &custom),
    ];
    for (proto, binary) in [("simple (text)", false), ("extended (binary)", true)] {
        let mut times: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
        for round in 0..=rounds {
            for (i, (_, gw)) in variants.iter().enumerate() {
                let d = if binary {
                    time_binary(gw).await
                } else {
                    time_simple(gw).await
                };
                if round > 0 {
                    times[i].push(d); // round 0 warms up
                }
            }
        }
        let medians: Vec<Duration> = times.into_iter().map(median).collect();
        println!("\n{proto}: {ROWS} rows x 7 columns, median of {rounds}");
        for ((name, _), m) in variants.iter().zip(&medians) {
            println!(
                "  {name:<28} {:>8.1} ms  {:>10.0} rows/s  ratio {:.3}",
                m.as_secs_f64() * 1e3,
                ROWS as f64 / m.as_secs_f64(),
                m.as_secs_f64() / medians[0].as_secs_f64()
            );
        }
    }
    plain.shutdown().await;
    native.shutdown().await;
    custom.shutdown().await;
}
