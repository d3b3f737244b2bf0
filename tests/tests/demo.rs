//! `portcullis demo` as a newcomer meets it: a throwaway seeded cluster, the gateway
//! with the standard guardrails policy, and the printed URIs for each identity.

use portcullis_tests::pg::{self, sqlstate};
use portcullis_tests::policies::policies_dir;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_enforces_the_standard_policies_for_its_identities() {
    portcullis_tests::require_tool("psql");
    let demo = portcullis::demo::start(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
        Some(&policies_dir()),
    )
    .await
    .expect("the demo starts");
    let banner = portcullis::demo::banner(&demo);
    let addr = demo.gateway.addr();
    let uri = |user: &str| {
        let (_, pw) = demo
            .passwords
            .iter()
            .find(|(n, _)| n == user)
            .expect("a demo identity");
        format!(
            "postgresql://{user}:{pw}@{}:{}/demo",
            addr.ip(),
            addr.port()
        )
    };
    for user in ["alice", "bob", "etl-agent"] {
        assert!(
            banner.contains(&uri(user)),
            "the banner prints {user}'s URI:\n{banner}"
        );
    }

    let alice = pg::connect(&uri("alice")).await.unwrap();
    let bob = pg::connect(&uri("bob")).await.unwrap();
    let agent = pg::connect(&uri("etl-agent")).await.unwrap();
    for (who, c, sql) in [
        ("alice", &alice, "DROP TABLE customers"),
        ("alice", &alice, "DELETE FROM orders"),
        ("bob", &bob, "DELETE FROM orders"),
        ("alice", &alice, "SELECT * FROM secrets"),
        ("etl-agent", &agent, "SELECT * FROM secrets"),
        ("bob", &bob, "DO $$ BEGIN PERFORM 1; END $$"),
    ] {
        let e = c
            .simple_query(sql)
            .await
            .expect_err(&format!("{who}: {sql} is denied"));
        assert_eq!(
            sqlstate(&e).as_deref(),
            Some("42501"),
            "{who}: {sql}: {e:?}"
        );
    }
    let n = bob
        .query("SELECT * FROM secrets", &[])
        .await
        .expect("bob reads secrets")
        .len();
    assert!(n > 0);
    let customers: i64 = alice
        .query_one("SELECT count(*) FROM customers", &[])
        .await
        .expect("alice reads customers")
        .get(0);
    assert!(customers > 0);
    // psql, as the banner suggests.
    let out =
        portcullis_tests::psql_c(&uri("alice"), "SELECT name, email FROM customers LIMIT 3").await;
    out.assert_success("psql through the demo");
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout);
    // etl-agent acting for alice, with the demo's delegation token over TLS, as the
    // banner suggests: it reads, and its writes need approval.
    assert!(banner.contains(&demo.delegation_token), "{banner}");
    let delegated = format!(
        "postgresql://etl-agent:{}@{}:{}/demo?sslmode=require",
        demo.delegation_token,
        addr.ip(),
        addr.port()
    );
    let out = portcullis_tests::psql_c(&delegated, "SHOW portcullis.identity").await;
    out.assert_success("psql with the delegation token");
    assert!(
        out.stdout
            .starts_with("etl-agent|agent|pipelines|token|alice|"),
        "{}",
        out.stdout
    );
    let out = portcullis_tests::psql_c(
        &delegated,
        "INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'pending')",
    )
    .await;
    assert_ne!(out.code(), 0, "the delegated write ran: {}", out.stdout);
    assert!(out.stderr.contains("approval required"), "{}", out.stderr);
    drop((alice, bob, agent));
    let portcullis::demo::Demo {
        gateway, cluster, ..
    } = demo;
    gateway.shutdown().await;
    drop(cluster);
}
