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
    // Approvals: etl-agent's UPDATE of customers waits; etl-agent cannot approve it
    // itself; bob approves it with the CLI, as the banner suggests, and it runs.
    assert!(banner.contains("portcullis approvals approve"), "{banner}");
    let admin = format!("http://{}", demo.gateway.admin_addr().unwrap());
    let cli = |user: &str, args: &[&str]| {
        let (_, pw) = demo.passwords.iter().find(|(n, _)| n == user).unwrap();
        let bin = std::env::var("CARGO_BIN_EXE_portcullis")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/portcullis")
            });
        assert!(
            bin.is_file(),
            "{} is missing: cargo build -p portcullis",
            bin.display()
        );
        let mut cmd = tokio::process::Command::new(bin);
        cmd.arg("approvals")
            .args(args)
            .args(["--as", user, "--admin", &admin])
            .env("PORTCULLIS_PASSWORD", pw)
            .stdin(std::process::Stdio::null());
        cmd
    };
    let held = tokio::spawn(async move {
        let r = agent
            .execute("UPDATE customers SET name = 'Ada' WHERE id = 1", &[])
            .await;
        (agent, r)
    });
    let id = portcullis_tests::eventually(
        std::time::Duration::from_secs(30),
        "the held request",
        || async {
            let out = cli("bob", &["list"]).output().await?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace()
                .find(|w| w.starts_with("apr-"))
                .map(str::to_owned)
                .ok_or_else(|| anyhow::anyhow!("no request yet: {text}"))
        },
    )
    .await
    .unwrap();
    let own = cli("etl-agent", &["approve", &id]).output().await.unwrap();
    assert!(!own.status.success(), "self-approval is refused");
    assert!(!held.is_finished());
    let ok = cli("bob", &["approve", &id, "--reason", "fix typo"])
        .output()
        .await
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let (agent, r) = held.await.unwrap();
    assert_eq!(r.expect("the approved UPDATE runs"), 1);
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
    let write = tokio::spawn(async move {
        portcullis_tests::psql_c(
            &delegated,
            "INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'pending')",
        )
        .await
    });
    // The write waits for approval; alice, whom the agent acts for, may not approve
    // it; bob rejects it.
    let id = portcullis_tests::eventually(
        std::time::Duration::from_secs(30),
        "the delegated write's request",
        || async {
            let out = cli("bob", &["list", "--json"]).output().await?;
            let list: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            list.as_array()
                .into_iter()
                .flatten()
                .find(|r| r["requester"]["acting_for"] == "alice" && r["status"] == "pending")
                .and_then(|r| r["id"].as_str().map(str::to_owned))
                .ok_or_else(|| anyhow::anyhow!("no request yet: {list}"))
        },
    )
    .await
    .unwrap();
    let alice_try = cli("alice", &["approve", &id]).output().await.unwrap();
    assert!(
        !alice_try.status.success(),
        "the person an agent acts for cannot approve"
    );
    let no = cli("bob", &["reject", &id, "--reason", "not today"])
        .output()
        .await
        .unwrap();
    assert!(
        no.status.success(),
        "{}",
        String::from_utf8_lossy(&no.stderr)
    );
    let out = write.await.unwrap();
    assert_ne!(out.code(), 0, "the rejected write ran: {}", out.stdout);
    assert!(
        out.stderr.contains("rejected") && out.stderr.contains(&id),
        "{}",
        out.stderr
    );
    drop((alice, bob, agent));
    let portcullis::demo::Demo {
        gateway, cluster, ..
    } = demo;
    gateway.shutdown().await;
    drop(cluster);
}
