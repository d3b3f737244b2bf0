//! `server.session_threads`: sessions spread over single-threaded runtimes, each with
//! its own `SO_REUSEPORT` listener, behave like on the shared runtime: queries, the
//! extended protocol, cancel requests routed across threads, and a graceful stop.

use std::time::Duration;

use portcullis_tests::pg::sqlstate;
use portcullis_tests::{EnvOptions, GatewayOptions, TestEnv};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

#[tokio::test]
async fn sessions_on_per_thread_runtimes_work_like_on_the_shared_one() {
    let env = env().await;
    let gw = env
        .start_gateway(GatewayOptions {
            session_threads: 2,
            ..GatewayOptions::default()
        })
        .await
        .unwrap();
    let mut clients = Vec::new();
    for i in 0..12i64 {
        let c = gw
            .connect(["alice", "bob", "etl-agent"][i as usize % 3], "demo")
            .await
            .unwrap();
        let n: i64 = c
            .query_one("SELECT $1::bigint + 1", &[&i])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, i + 1);
        clients.push(c);
    }
    assert!(
        gw.wait_active_connections(12, Duration::from_secs(10))
            .await
            .is_ok()
    );
    // A cancel request reaches the session whichever thread accepted either connection.
    let slow = gw.connect("bob", "demo").await.unwrap();
    let token = slow.cancel_token();
    let task =
        tokio::spawn(async move { slow.simple_query("SELECT pg_sleep(30)").await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    let e = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .unwrap()
        .unwrap()
        .expect_err("canceled");
    assert_eq!(sqlstate(&e).as_deref(), Some("57014"));
    drop(clients);
    gw.shutdown().await;
}
