//! Rough timings, printed and never asserted. Meaningful in release mode:
//! `cargo test -p portcullis-sql --release --test bench -- --nocapture`.

use std::hint::black_box;
use std::time::Instant;

use portcullis_sql::{Analyzer, analyze_uncached, fingerprint};

fn per_op(n: u32, mut f: impl FnMut(u32)) -> f64 {
    let start = Instant::now();
    for i in 0..n {
        f(i);
    }
    start.elapsed().as_nanos() as f64 / f64::from(n)
}

#[test]
fn print_costs() {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let queries: Vec<String> = (0..1000)
        .map(|i| format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i}"))
        .collect();
    let n = if cfg!(debug_assertions) {
        20_000
    } else {
        500_000
    };
    let fp = per_op(n, |i| {
        black_box(fingerprint(black_box(&queries[(i % 1000) as usize])));
    });
    let an = Analyzer::new(1000);
    an.analyze(&queries[0]);
    let hit = per_op(n, |i| {
        black_box(an.analyze(black_box(&queries[(i % 1000) as usize])));
    });
    let miss_n = if cfg!(debug_assertions) { 200 } else { 5_000 };
    let miss = per_op(miss_n, |i| {
        black_box(analyze_uncached(black_box(&queries[(i % 1000) as usize])));
    });
    let update = "UPDATE pgbench_accounts SET abalance = abalance + -4242 WHERE aid = 77777;";
    let miss_update = per_op(miss_n, |_| {
        black_box(analyze_uncached(black_box(update)));
    });
    println!(
        "[{profile}] {}-byte query: fingerprint {fp:.0} ns, cache hit {hit:.0} ns, \
         miss (uncached analysis) {miss:.0} ns; pgbench UPDATE miss {miss_update:.0} ns",
        queries[500].len()
    );
    let wide = format!(
        "SELECT {} FROM {}",
        (0..20_000)
            .map(|i| format!("c{i}"))
            .collect::<Vec<_>>()
            .join(", "),
        (0..2_000)
            .map(|i| format!("f{i}(t{i})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let start = Instant::now();
    black_box(analyze_uncached(&wide));
    println!(
        "[{profile}] {}-byte statement with 20k columns and 2k table functions: {:?}",
        wide.len(),
        start.elapsed()
    );
    let big = format!("SELECT {}1", "1+".repeat(20_000));
    let start = Instant::now();
    black_box(analyze_uncached(&big));
    println!(
        "[{profile}] {}-byte operator chain: {:?}",
        big.len(),
        start.elapsed()
    );
}
