//! Authentication, database admission, TLS and upstream identity propagation.

use std::time::Duration;

use portcullis_tests::pg::{self, sqlstate};
use portcullis_tests::tls::MakeRustls;
use portcullis_tests::{
    ClientTls, EnvOptions, GatewayOptions, IDENTITIES, TestEnv, psql_c, unique,
};
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

fn options() -> EnvOptions {
    EnvOptions {
        // PostgreSQL itself speaks TLS too, so a gateway can verify it.
        upstream_tls: true,
        gateway: GatewayOptions {
            client_tls: ClientTls::Optional,
            ..GatewayOptions::default()
        },
        ..EnvOptions::default()
    }
}

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, options).await
}

fn login_error(r: Result<pg::Conn, tokio_postgres::Error>) -> tokio_postgres::Error {
    match r {
        Ok(_) => panic!("login unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn every_identity_logs_in_with_its_password() {
    let env = env().await;
    for (name, ..) in IDENTITIES {
        let c = env
            .connect_gateway(name, "demo")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let row = c
            .query_one(
                "select current_database()::text, count(*) from customers",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(row.get::<_, String>(0), "demo", "{name}");
        assert_eq!(row.get::<_, i64>(1), 200, "{name}");
    }
}

#[tokio::test]
async fn every_identity_logs_in_with_psql() {
    let env = env().await;
    for (name, ..) in IDENTITIES {
        let out = psql_c(
            &env.gateway_uri(name, "postgres"),
            "select 'hello from ' || current_database()",
        )
        .await;
        out.assert_success(name);
        assert_eq!(out.stdout, "hello from postgres\n", "{name}");
    }
}

#[tokio::test]
async fn wrong_password_is_28p01() {
    let env = env().await;
    let uri = env
        .gw
        .uri_with("alice", "bob-pw", "demo", "sslmode=disable");
    let e = login_error(pg::try_connect(&uri).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
    assert_eq!(
        pg::message(&e),
        "password authentication failed for user \"alice\""
    );

    // The same through libpq.
    let out = psql_c(&uri, "select 1").await;
    assert_eq!(out.code(), 2, "psql exit code; stderr: {}", out.stderr);
    assert!(
        out.stderr
            .contains("password authentication failed for user \"alice\""),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test]
async fn empty_password_is_28p01() {
    let env = env().await;
    let uri = env.gw.uri_with("bob", "", "demo", "sslmode=disable");
    let e = login_error(pg::try_connect(&uri).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
}

#[tokio::test]
async fn unknown_user_is_28p01_like_a_wrong_password() {
    let env = env().await;
    let uri = env
        .gw
        .uri_with("mallory", "alice-pw", "demo", "sslmode=disable");
    let e = login_error(pg::try_connect(&uri).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
    // Same message shape as a wrong password: no user enumeration.
    assert_eq!(
        pg::message(&e),
        "password authentication failed for user \"mallory\""
    );

    // The upstream superuser name is not an identity either.
    let uri = env.gw.uri_with(
        "postgres",
        portcullis_tests::SUPERUSER_PASSWORD,
        "demo",
        "sslmode=disable",
    );
    let e = login_error(pg::try_connect(&uri).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
}

#[tokio::test]
async fn unknown_database_is_3d000() {
    let env = env().await;
    let e = login_error(pg::try_connect(&env.gateway_uri("alice", "nosuchdb")).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e:?}");
    assert_eq!(pg::message(&e), "database \"nosuchdb\" does not exist");

    let out = psql_c(&env.gateway_uri("alice", "nosuchdb"), "select 1").await;
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("database \"nosuchdb\" does not exist"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test]
async fn database_that_exists_upstream_but_is_not_declared_is_3d000() {
    let env = env().await;
    let db = unique("undeclared");
    env.admin_sql("postgres", &format!("create database {db}"));
    // Reachable directly...
    let direct = env
        .connect_direct(&db)
        .await
        .expect("direct connection to the undeclared database");
    assert_eq!(
        direct
            .query_one("select 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    // ...but not through the gateway.
    let e = login_error(pg::try_connect(&env.gateway_uri("bob", &db)).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e:?}");
    assert_eq!(pg::message(&e), format!("database \"{db}\" does not exist"));
}

#[tokio::test]
async fn declared_database_missing_upstream_relays_postgres_3d000() {
    // `nosuchdb_upstream` is declared in the gateway but does not exist in
    // PostgreSQL: the upstream's own FATAL must reach the client.
    let env = env().await;
    let gw = env
        .start_gateway(GatewayOptions {
            databases: vec!["nosuchdb_upstream".into()],
            ..GatewayOptions::default()
        })
        .await
        .expect("extra gateway");
    let e = login_error(pg::try_connect(&gw.uri("alice", "nosuchdb_upstream")).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("3D000"), "{e:?}");
    assert_eq!(
        pg::message(&e),
        "database \"nosuchdb_upstream\" does not exist"
    );
}

#[tokio::test]
async fn psql_sslmode_require() {
    let env = env().await;
    let uri = env
        .gw
        .uri_with("alice", "alice-pw", "demo", "sslmode=require");
    let out = psql_c(&uri, "\\conninfo").await;
    out.assert_success("psql sslmode=require");
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1."),
        "stdout: {}",
        out.stdout
    );
    let out = psql_c(&uri, "select count(*) from orders").await;
    out.assert_success("psql sslmode=require query");
    assert_eq!(out.stdout, "1000\n");
}

#[tokio::test]
async fn psql_sslmode_verify_full_with_test_ca() {
    let env = env().await;
    let uri = env.gw.uri_verify_full("bob", "demo");
    let out = psql_c(&uri, "\\conninfo").await;
    out.assert_success("psql sslmode=verify-full");
    assert!(
        out.stdout.contains("SSL connection (protocol: TLSv1."),
        "stdout: {}",
        out.stdout
    );
    let out = psql_c(&uri, "select name from secrets where id = 2").await;
    out.assert_success("psql sslmode=verify-full query");
    assert_eq!(out.stdout, "aws_access_key_id\n");
}

#[tokio::test]
async fn psql_verify_full_against_another_ca_fails() {
    let env = env().await;
    let other =
        portcullis_cluster::generate_test_pki(&env.scratch_dir().join("other-pki"), &["127.0.0.1"])
            .expect("second PKI");
    let uri = env.gw.uri_with(
        "bob",
        "bob-pw",
        "demo",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            other.ca_cert.display()
        ),
    );
    let out = psql_c(&uri, "select 1").await;
    assert_eq!(
        out.code(),
        2,
        "psql must refuse a server certificate from another CA; stdout {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("certificate verify failed"),
        "stderr: {}",
        out.stderr
    );
}

#[tokio::test]
async fn tokio_postgres_tls_require() {
    let env = env().await;
    let uri = env
        .gw
        .uri_with("etl-agent", "etl-pw", "demo", "sslmode=require");
    let c = pg::connect_tls(&uri, MakeRustls::no_verify())
        .await
        .expect("TLS connection");
    let n: i64 = c
        .query_one("select count(*) from customers where id <= $1", &[&10i64])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 10);
}

#[tokio::test]
async fn tokio_postgres_tls_verify_full() {
    let env = env().await;
    // The connector verifies the chain and the host name (127.0.0.1 is in the SANs).
    let uri = env
        .gw
        .uri_with("alice", "alice-pw", "demo", "sslmode=require");
    let tls = MakeRustls::verify_full(&env.pki().ca_cert).expect("TLS config");
    let c = pg::connect_tls(&uri, tls)
        .await
        .expect("verified TLS connection");
    let s: String = c
        .query_one("select email from customers where id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(s, "alice.anderson@example.org");
}

#[tokio::test]
async fn tokio_postgres_tls_wrong_password_is_28p01() {
    let env = env().await;
    let uri = env.gw.uri_with("alice", "wrong", "demo", "sslmode=require");
    let e = login_error(pg::connect_tls(&uri, MakeRustls::no_verify()).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("28P01"), "{e:?}");
}

#[tokio::test]
async fn plaintext_client_refused_when_tls_required() {
    let env = env().await;
    let gw = env
        .start_gateway(GatewayOptions {
            client_tls: ClientTls::Required,
            ..GatewayOptions::default()
        })
        .await
        .expect("TLS-required gateway");

    let e = login_error(pg::try_connect(&gw.uri("alice", "demo")).await);
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e:?}");

    let out = psql_c(&gw.uri("alice", "demo"), "select 1").await;
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);

    // TLS clients are served.
    let out = psql_c(
        &gw.uri_verify_full("alice", "demo"),
        "select count(*) from secrets",
    )
    .await;
    out.assert_success("psql verify-full to a TLS-required gateway");
    assert_eq!(out.stdout, "5\n");
    let c = pg::connect_tls(
        &gw.uri_with("bob", "bob-pw", "demo", "sslmode=require"),
        MakeRustls::no_verify(),
    )
    .await
    .expect("tokio-postgres TLS to a TLS-required gateway");
    assert_eq!(
        c.query_one("select 7", &[]).await.unwrap().get::<_, i32>(0),
        7
    );
}

#[tokio::test]
async fn sslmode_require_against_gateway_without_tls_fails() {
    let env = env().await;
    let gw = env
        .start_gateway(GatewayOptions::default())
        .await
        .expect("gateway without TLS");
    let out = psql_c(
        &gw.uri_with("alice", "alice-pw", "demo", "sslmode=require"),
        "select 1",
    )
    .await;
    assert_eq!(out.code(), 2, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("server does not support SSL"),
        "stderr: {}",
        out.stderr
    );
    // sslmode=prefer falls back to plaintext and works.
    let out = psql_c(
        &gw.uri_with("alice", "alice-pw", "demo", "sslmode=prefer"),
        "select 1",
    )
    .await;
    out.assert_success("sslmode=prefer");
    assert_eq!(out.stdout, "1\n");
}

#[tokio::test]
async fn application_name_upstream_names_the_identity() {
    let env = env().await;
    let app = unique("authtest");
    let uri = env.gw.uri_with(
        "alice",
        "alice-pw",
        "demo",
        &format!("sslmode=disable&application_name={app}"),
    );
    let c = pg::connect(&uri).await.unwrap();
    let seen: String = c
        .query_one(
            "select application_name from pg_stat_activity where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(seen, format!("{app} via portcullis:alice"));
    // As the client sees it (ParameterStatus / SHOW): the upstream value.
    let shown: String = c
        .query_one("show application_name", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(shown, format!("{app} via portcullis:alice"));

    // PostgreSQL sees exactly one such backend.
    let direct = env.connect_direct("demo").await.unwrap();
    let backends = pg::backends_with_app(&direct, &app).await.unwrap();
    assert_eq!(backends.len(), 1, "{backends:?}");
    assert_eq!(backends[0].1, format!("{app} via portcullis:alice"));

    // Other identities are named too; the database user upstream is the gateway's.
    let app2 = unique("authtest");
    let uri = env.gw.uri_with(
        "etl-agent",
        "etl-pw",
        "demo",
        &format!("sslmode=disable&application_name={app2}"),
    );
    let c2 = pg::connect(&uri).await.unwrap();
    let row = c2
        .query_one("select application_name, usename::text from pg_stat_activity where pid = pg_backend_pid()", &[])
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(0),
        format!("{app2} via portcullis:etl-agent")
    );
    assert_eq!(row.get::<_, String>(1), "postgres");
    drop(c);
    drop(c2);
    portcullis_tests::eventually(
        Duration::from_secs(10),
        "upstream backends closed",
        || async {
            let n = pg::backends_with_app(&direct, &app).await?.len()
                + pg::backends_with_app(&direct, &app2).await?.len();
            anyhow::ensure!(n == 0, "{n} backends left");
            Ok(())
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn application_name_set_via_psql_env() {
    let env = env().await;
    let app = unique("psqlapp");
    let mut cmd = portcullis_tests::tools::psql_command(
        &env.gateway_uri("bob", "demo"),
        &[
            "-At",
            "-c",
            "select application_name from pg_stat_activity where pid = pg_backend_pid()",
        ],
    );
    cmd.env("PGAPPNAME", &app);
    let out = portcullis_tests::tools::run_async(cmd, None).await;
    out.assert_success("psql");
    assert_eq!(out.stdout, format!("{app} via portcullis:bob\n"));
}

#[tokio::test]
async fn upstream_tls_verify_full() {
    let env = env().await;
    // The default gateway talks plaintext to PostgreSQL...
    let c = env.connect_gateway("alice", "demo").await.unwrap();
    let ssl: bool = c
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!ssl, "default gateway should not use TLS upstream");

    // ...and one configured with verify-full uses TLS.
    let gw = env
        .start_gateway(GatewayOptions {
            upstream_verify_full: true,
            ..GatewayOptions::default()
        })
        .await
        .expect("gateway with upstream verify-full");
    let c = gw
        .connect("alice", "demo")
        .await
        .expect("login through a verify-full upstream");
    let ssl: bool = c
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "upstream connection should be TLS");
    let n: i64 = c
        .query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
}

#[tokio::test]
async fn admin_endpoints() {
    let env = env().await;
    let admin = env.gw.admin_addr().expect("admin endpoint is configured");
    let r = portcullis_tests::admin::get(admin, "/healthz")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = portcullis_tests::admin::get(admin, "/readyz")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = portcullis_tests::admin::get(admin, "/metrics")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        portcullis_tests::admin::metric_value(&r.body, "portcullis_connections_active").is_some(),
        "no portcullis_connections_active sample in:\n{}",
        r.body
    );
}
