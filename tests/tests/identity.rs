//! Identity beyond passwords, end to end: identity-provider tokens (a test provider made
//! here: RSA, ECDSA and Ed25519 keys, a JWKS file and a local HTTP server serving it),
//! client certificates (a test CA), agents acting for people, the groups directory,
//! role mapping and `SHOW portcullis.identity`, against a real PostgreSQL with real
//! clients (tokio-postgres, psql).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_tests::idp::{self, JwksServer, SigningKey};
use portcullis_tests::tls::MakeRustls;
use portcullis_tests::{
    ClientTls, Conn, EnvOptions, Gateway, GatewayOptions, TestEnv, build_uri, pg, psql_c, sqlstate,
};
use serde_json::{Value, json};

const ISS: &str = "https://idp.portcullis.test";
const AUD: &str = "portcullis";

static ENV: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

/// The test identity provider's keys (generated once per test binary).
struct Keys {
    rsa: SigningKey,
    ec: SigningKey,
    ed: SigningKey,
    /// Not in any JWKS: signs "bad signature" tokens and rotation tests.
    rogue: SigningKey,
    rotated: SigningKey,
}

static KEYS: std::sync::OnceLock<Keys> = std::sync::OnceLock::new();

fn keys(dir: &Path) -> &'static Keys {
    KEYS.get_or_init(|| Keys {
        rsa: SigningKey::rsa("rsa-1", dir).expect("RSA key"),
        ec: SigningKey::ec("ec-1").expect("EC key"),
        ed: SigningKey::ed25519("ed-1").expect("Ed25519 key"),
        rogue: SigningKey::ec("rogue").expect("EC key"),
        rotated: SigningKey::ec("ec-2").expect("EC key"),
    })
}

fn toml_path(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Writes the JWKS file (RSA, EC, Ed25519 keys) and returns its path.
fn jwks_file(env: &TestEnv) -> PathBuf {
    let k = keys(env.scratch_dir());
    let path = env.scratch_dir().join("jwks.json");
    if !path.exists() {
        std::fs::write(&path, idp::jwks(&[&k.rsa, &k.ec, &k.ed])).unwrap();
    }
    path
}

fn jwt_section(source: &str, extra: &str) -> String {
    format!(
        "[auth.jwt]\nissuer = {ISS:?}\naudience = [{AUD:?}]\n{source}\nleeway_secs = 5\ntokens_for_password_users = true\n{extra}\n"
    )
}

async fn gateway(env: &TestEnv, extra_toml: String) -> Gateway {
    gateway_with(env, extra_toml, Vec::new()).await
}

async fn gateway_with(
    env: &TestEnv,
    extra_toml: String,
    policies: Vec<portcullis::config::PolicyConfig>,
) -> Gateway {
    env.start_gateway(GatewayOptions {
        client_tls: ClientTls::Optional,
        extra_toml,
        policies,
        ..GatewayOptions::default()
    })
    .await
    .expect("starting the gateway")
}

async fn token_gateway(env: &TestEnv) -> Gateway {
    let file = jwks_file(env);
    gateway(
        env,
        jwt_section(&format!("jwks_file = {}", toml_path(&file)), ""),
    )
    .await
}

async fn login_tls(
    gw: &Gateway,
    user: &str,
    password: &str,
) -> Result<Conn, tokio_postgres::Error> {
    pg::connect_tls(
        &gw.uri_with(user, password, "demo", "sslmode=require"),
        MakeRustls::no_verify(),
    )
    .await
}

/// The SQLSTATE and message of a refused login.
#[track_caller]
fn refusal(r: Result<Conn, tokio_postgres::Error>) -> (String, String) {
    match r {
        Ok(_) => panic!("the login was accepted"),
        Err(e) => (
            sqlstate(&e).unwrap_or_else(|| panic!("no SQLSTATE in {e:?}")),
            e.as_db_error()
                .map(|d| d.message().to_owned())
                .unwrap_or_default(),
        ),
    }
}

/// `SHOW portcullis.identity` through the extended protocol, checked against the simple
/// protocol's answer.
async fn identity(c: &Conn) -> HashMap<String, String> {
    let rows = c
        .query("SHOW portcullis.identity", &[])
        .await
        .expect("SHOW (extended)");
    assert_eq!(rows.len(), 1);
    let mut out = HashMap::new();
    for (i, col) in rows[0].columns().iter().enumerate() {
        let v: Option<String> = rows[0].get(i);
        out.insert(col.name().to_owned(), v.unwrap_or_default());
    }
    let simple = c
        .simple_query("show PORTCULLIS.IDENTITY;")
        .await
        .expect("SHOW (simple)");
    let row = simple
        .iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .expect("a row");
    for (i, col) in row.columns().iter().enumerate() {
        assert_eq!(
            row.get(i).unwrap_or_default(),
            out[col.name()],
            "simple and extended answers differ for {}",
            col.name()
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_with_rs256_es256_and_eddsa_log_in() {
    let env = env().await;
    let gw = token_gateway(env).await;
    let k = keys(env.scratch_dir());
    for key in [&k.rsa, &k.ec, &k.ed] {
        let token = key.sign(&idp::claims(ISS, AUD, "carol", &["analysts", "readers"]));
        let c = login_tls(&gw, "carol", &token)
            .await
            .unwrap_or_else(|e| panic!("{:?} token refused: {e}", key.alg));
        let id = identity(&c).await;
        assert_eq!(id["user"], "carol");
        assert_eq!(id["kind"], "person");
        assert_eq!(id["auth_method"], "token");
        assert_eq!(id["groups"], "analysts,readers");
        assert_eq!(id["acting_for"], "");
        let n: i64 = c
            .query_one("SELECT count(*) FROM orders", &[])
            .await
            .unwrap()
            .get(0);
        assert!(n > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_28000_and_the_reason() {
    let env = env().await;
    let gw = token_gateway(env).await;
    let k = keys(env.scratch_dir());
    let t = idp::now();
    let good = || idp::claims(ISS, AUD, "carol", &["analysts"]);
    let with = |patch: Value| {
        let mut c = good();
        for (key, v) in patch.as_object().unwrap() {
            c[key] = v.clone();
        }
        c
    };
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let mut without_exp = good();
    without_exp.as_object_mut().unwrap().remove("exp");
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            k.ec.sign(&with(json!({"exp": t - 3600, "nbf": t - 7200}))),
            "expired",
        ),
        (
            "not yet valid",
            k.ec.sign(&with(json!({"nbf": t + 3600}))),
            "not valid yet",
        ),
        (
            "wrong audience",
            k.ec.sign(&with(json!({"aud": "someone-else"}))),
            "audience",
        ),
        (
            "wrong issuer",
            k.ec.sign(&with(json!({"iss": "https://evil.test"}))),
            "issuer",
        ),
        (
            "bad signature",
            k.rogue.sign_as(&good(), Some("ec-1")),
            "signature",
        ),
        ("alg none", idp::unsigned_token(&good()), "alg \"none\""),
        ("HS256 without a configured secret", hs256, "not accepted"),
        (
            "unknown key id",
            k.rogue.sign(&good()),
            "unknown signing key id \"rogue\"",
        ),
        ("no exp", k.ec.sign(&without_exp), "no \"exp\" claim"),
        (
            "another user's token",
            k.ec.sign(&idp::claims(ISS, AUD, "dave", &[])),
            "is for \"dave\"",
        ),
        (
            "not a JWT",
            "eyJhbGciOi.garbage.x".to_owned(),
            "not a valid JWT",
        ),
    ];
    for (what, token, reason) in cases {
        let (code, message) = refusal(login_tls(&gw, "carol", &token).await);
        assert_eq!(code, "28000", "{what}: {message}");
        assert!(
            message.contains(reason),
            "{what}: {message:?} should say {reason:?}"
        );
    }
    // The gateway keeps serving.
    let token = k.ec.sign(&good());
    login_tls(&gw, "carol", &token)
        .await
        .expect("a good token after bad ones");
    gw.wait_active_connections(0, Duration::from_secs(10))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_never_asked_for_over_cleartext() {
    let env = env().await;
    let gw = token_gateway(env).await;
    let k = keys(env.scratch_dir());
    let token = k.ec.sign(&idp::claims(ISS, AUD, "carol", &[]));
    let r = pg::try_connect(&gw.uri_with("carol", &token, "demo", "sslmode=disable")).await;
    let (code, message) = refusal(r);
    assert_eq!(code, "28000", "{message}");
    assert!(message.contains("requires TLS"), "{message}");
    // SCRAM identities still log in with SCRAM on a plain connection.
    let c = gw.connect("alice", "demo").await.expect("alice over SCRAM");
    assert_eq!(identity(&c).await["auth_method"], "scram-sha-256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_password_field_is_refused_before_it_is_read() {
    let env = env().await;
    let gw = token_gateway(env).await;
    let huge = format!("eyJ{}", "A".repeat(20_000));
    let (code, message) = refusal(login_tls(&gw, "carol", &huge).await);
    assert_eq!(code, "08P01", "{message}");
    assert!(message.contains("auth.max_password_bytes"), "{message}");
    let k = keys(env.scratch_dir());
    login_tls(
        &gw,
        "carol",
        &k.ed.sign(&idp::claims(ISS, AUD, "carol", &[])),
    )
    .await
    .expect("the gateway keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_key_id_refetches_the_jwks_so_rotated_keys_are_accepted() {
    let env = env().await;
    let k = keys(env.scratch_dir());
    let server = JwksServer::start(idp::jwks(&[&k.ec])).await.unwrap();
    let gw = gateway(
        env,
        jwt_section(
            &format!("jwks_url = {:?}\njwks_min_refresh_ms = 0", server.url()),
            "",
        ),
    )
    .await;
    let old = k.ec.sign(&idp::claims(ISS, AUD, "carol", &[]));
    login_tls(&gw, "carol", &old)
        .await
        .expect("a token of the served key");
    let new = k.rotated.sign(&idp::claims(ISS, AUD, "carol", &[]));
    let (code, message) = refusal(login_tls(&gw, "carol", &new).await);
    assert_eq!(code, "28000");
    assert!(
        message.contains("unknown signing key id \"ec-2\""),
        "{message}"
    );
    // The provider rotates: it now serves the new key (and still the old one).
    server.set(idp::jwks(&[&k.ec, &k.rotated]));
    let c = login_tls(&gw, "carol", &new)
        .await
        .expect("the rotated key is fetched");
    assert_eq!(identity(&c).await["user"], "carol");

    // With a refetch budget, made-up key ids do not hammer the provider.
    let limited = JwksServer::start(idp::jwks(&[&k.ec])).await.unwrap();
    let gw2 = gateway(
        env,
        jwt_section(
            &format!(
                "jwks_url = {:?}\njwks_min_refresh_ms = 3600000",
                limited.url()
            ),
            "",
        ),
    )
    .await;
    login_tls(&gw2, "carol", &old).await.expect("served key");
    let hits = limited.hits();
    for _ in 0..5 {
        refusal(login_tls(&gw2, "carol", &new).await);
    }
    assert!(
        limited.hits() <= hits + 1,
        "{} fetches for unknown key ids",
        limited.hits() - hits
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_over_https_from_a_provider_the_ca_vouches_for() {
    let env = env().await;
    let k = keys(env.scratch_dir());
    let pki = env.pki();
    let server = JwksServer::start_https(idp::jwks(&[&k.rsa]), &pki.server_cert, &pki.server_key)
        .await
        .unwrap();
    assert!(server.url().starts_with("https://127.0.0.1:"));
    let gw = gateway(
        env,
        jwt_section(
            &format!(
                "jwks_url = {:?}\njwks_ca = {}",
                server.url(),
                toml_path(&pki.ca_cert)
            ),
            "",
        ),
    )
    .await;
    let c = login_tls(
        &gw,
        "carol",
        &k.rsa.sign(&idp::claims(ISS, AUD, "carol", &[])),
    )
    .await
    .expect("a token verified with keys fetched over https");
    assert_eq!(identity(&c).await["auth_method"], "token");

    // Without the CA the provider is not trusted: no keys, no login.
    let untrusted = gateway(
        env,
        jwt_section(&format!("jwks_url = {:?}", server.url()), ""),
    )
    .await;
    let (code, message) = refusal(
        login_tls(
            &untrusted,
            "carol",
            &k.rsa.sign(&idp::claims(ISS, AUD, "carol", &[])),
        )
        .await,
    );
    assert_eq!(code, "28000");
    assert!(message.contains("keys"), "{message}");
}

fn psql_cert_uri(gw: &Gateway, user: &str, cert: &Path, key: &Path) -> String {
    build_uri(
        user,
        "",
        "127.0.0.1",
        gw.port(),
        "demo",
        &format!(
            "sslmode=require&sslcert={}&sslkey={}",
            cert.display(),
            key.display()
        ),
    )
    .replace(":@", "@")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_the_trusted_ca_log_in_others_are_refused() {
    let env = env().await;
    let pki = env.pki();
    let gw = gateway(
        env,
        format!("[auth.mtls]\nca = {}\n", toml_path(&pki.ca_cert)),
    )
    .await;
    // Good certificate: CN alice, no password asked.
    let out = psql_c(
        &psql_cert_uri(&gw, "alice", &pki.client_cert, &pki.client_key),
        "SHOW portcullis.identity",
    )
    .await;
    out.assert_success("psql with a client certificate");
    let fields: Vec<&str> = out.stdout.trim().split('|').collect();
    assert_eq!(
        &fields[..4],
        ["alice", "person", "analysts", "certificate"],
        "{}",
        out.stdout
    );

    // A certificate from another CA.
    let other =
        portcullis_cluster::generate_test_pki(&env.scratch_dir().join("other-pki"), &["localhost"])
            .unwrap();
    let out = psql_c(
        &psql_cert_uri(&gw, "alice", &other.client_cert, &other.client_key),
        "SELECT 1",
    )
    .await;
    assert_ne!(out.code(), 0, "a foreign CA's certificate was accepted");
    // The foreign test CA has the same name as the trusted one, so the handshake fails
    // on its signature ("decrypt error"); a CA of another name gives "unknown ca".
    let err = out.stderr.to_lowercase();
    assert!(
        err.contains("ssl error") && (err.contains("decrypt error") || err.contains("unknown ca")),
        "{}",
        out.stderr
    );

    // An expired certificate from the trusted CA.
    let (cert, key) = pki
        .issue_client_cert_valid("alice", "expired-alice", (2001, 1, 1), (2002, 1, 1))
        .unwrap();
    let out = psql_c(&psql_cert_uri(&gw, "alice", &cert, &key), "SELECT 1").await;
    assert_ne!(out.code(), 0, "an expired certificate was accepted");
    assert!(
        out.stderr.to_lowercase().contains("expired"),
        "{}",
        out.stderr
    );

    // A good certificate for another user does not log in as alice without a password.
    let (cert, key) = pki.issue_client_cert("bob", "bob-cert").unwrap();
    let out = psql_c(&psql_cert_uri(&gw, "alice", &cert, &key), "SELECT 1").await;
    assert_ne!(out.code(), 0, "bob's certificate logged in as alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_acting_for_alice_reads_but_its_writes_need_approval() {
    let env = env().await;
    let k = keys(env.scratch_dir());
    let file = jwks_file(env);
    let audit_dir = env.scratch_dir().join("identity-audit");
    let gw = gateway_with(
        env,
        format!(
            "{}\n[audit]\ndir = {}\nstatement_text = \"full\"\n",
            jwt_section(&format!("jwks_file = {}", toml_path(&file)), ""),
            toml_path(&audit_dir)
        ),
        vec![portcullis_tests::policies::demo_guardrails()],
    )
    .await;
    // The identity provider says alice owns a pipeline (the demo rules let agents write
    // only for pipeline owners, and then only with approval).
    let mut claims = idp::claims(ISS, AUD, "alice", &["etl-owners"]);
    claims["act"] = json!({"sub": "etl-agent"});
    let token = k.ed.sign(&claims);
    let c = login_tls(&gw, "etl-agent", &token)
        .await
        .expect("agent token");
    let id = identity(&c).await;
    assert_eq!(id["user"], "etl-agent");
    assert_eq!(id["kind"], "agent");
    assert_eq!(id["acting_for"], "alice");
    assert_eq!(id["acting_for_groups"], "analysts,etl-owners");
    let n: i64 = c
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    let e = c
        .execute(
            "INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'pending')",
            &[],
        )
        .await
        .expect_err("the agent's write ran without approval");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("approval required"), "{message}");
    assert!(message.contains("etl-agent acting for alice"), "{message}");

    // Acting for a person who owns no pipeline, the policies see that person's groups
    // and refuse the write outright; reads still work.
    let mut claims = idp::claims(ISS, AUD, "carol", &["analysts"]);
    claims["act"] = json!({"sub": "etl-agent"});
    let for_carol = login_tls(&gw, "etl-agent", &k.ed.sign(&claims))
        .await
        .expect("agent token for carol");
    assert_eq!(identity(&for_carol).await["acting_for_groups"], "analysts");
    let e = for_carol
        .execute(
            "INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'pending')",
            &[],
        )
        .await
        .expect_err("an agent wrote for a person who owns no pipeline");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));
    let message = e.as_db_error().unwrap().message().to_owned();
    assert!(message.contains("owners of a pipeline"), "{message}");
    for_carol
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("the agent reads for carol");

    // The agent on its own credentials (no delegation) writes as before.
    let own = login_tls(&gw, "etl-agent", "etl-pw")
        .await
        .expect("etl-agent's password");
    own.batch_execute(
        "BEGIN; INSERT INTO orders (customer_id, amount, status) VALUES (1, 10, 'pending'); ROLLBACK",
    )
    .await
    .expect("a write without delegation");

    // Both identities are in the audit trail.
    portcullis_tests::eventually(
        Duration::from_secs(20),
        "audit events with acting_for",
        || {
            let dir = audit_dir.clone();
            async move {
                let mut text = String::new();
                for f in std::fs::read_dir(&dir)? {
                    text.push_str(&std::fs::read_to_string(f?.path())?);
                }
                let hit = text.lines().any(|l| {
                    l.contains("\"acting_for\":\"alice\"")
                        && l.contains("\"user\":\"etl-agent\"")
                        && l.contains("INSERT")
                });
                anyhow::ensure!(hit, "no event with acting_for yet");
                Ok(())
            }
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_role_follows_the_identity_or_its_group() {
    let env = env().await;
    env.admin_sql(
        "postgres",
        "CREATE ROLE analyst_role NOLOGIN; CREATE ROLE carol NOLOGIN;",
    );
    let file = jwks_file(env);
    let gw = gateway(
        env,
        format!(
            "{}\n[auth.roles]\ntemplate = \"{{user}}\"\ngroups = {{ analysts = \"analyst_role\" }}\n",
            jwt_section(&format!("jwks_file = {}", toml_path(&file)), "")
        ),
    )
    .await;
    let alice = gw.connect("alice", "demo").await.unwrap();
    let who: String = alice
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "analyst_role");
    assert_eq!(identity(&alice).await["role"], "analyst_role");
    let e = alice
        .batch_execute("RESET ROLE")
        .await
        .expect_err("RESET ROLE allowed");
    assert_eq!(sqlstate(&e).as_deref(), Some("42501"));

    let k = keys(env.scratch_dir());
    let carol = login_tls(
        &gw,
        "carol",
        &k.ec.sign(&idp::claims(ISS, AUD, "carol", &["readers"])),
    )
    .await
    .unwrap();
    let who: String = carol
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(who, "carol");
    let app: String = carol
        .query_one(
            "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(app.ends_with("via portcullis:carol"), "{app}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_directory_changes_reach_new_sessions_without_disturbing_open_ones() {
    let env = env().await;
    let path = env.scratch_dir().join("groups.toml");
    std::fs::write(&path, "alice = [\"auditors\"]\n").unwrap();
    let gw = gateway(
        env,
        format!(
            "[auth.directory]\npath = {}\npoll_ms = 0\n",
            toml_path(&path)
        ),
    )
    .await;
    let first = gw.connect("alice", "demo").await.unwrap();
    assert_eq!(identity(&first).await["groups"], "analysts,auditors");
    std::fs::write(
        &path,
        "alice = [\"auditors\", \"approvers\"]\nbob = [\"oncall\"]\n",
    )
    .unwrap();
    let second = gw.connect("alice", "demo").await.unwrap();
    assert_eq!(
        identity(&second).await["groups"],
        "analysts,auditors,approvers"
    );
    let bob = gw.connect("bob", "demo").await.unwrap();
    assert_eq!(identity(&bob).await["groups"], "dba,pii-readers,oncall");
    // The open session goes on, with the groups it logged in with.
    first
        .simple_query("SELECT 1")
        .await
        .expect("the first session still works");
    assert_eq!(identity(&first).await["groups"], "analysts,auditors");
    // A broken file keeps the last good version.
    std::fs::write(&path, "alice = [").unwrap();
    let third = gw.connect("alice", "demo").await.unwrap();
    assert_eq!(
        identity(&third).await["groups"],
        "analysts,auditors,approvers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_can_end_when_its_token_expires() {
    let env = env().await;
    let file = jwks_file(env);
    let gw = gateway(
        env,
        jwt_section(
            &format!("jwks_file = {}", toml_path(&file)),
            "on_expiry = \"disconnect\"",
        )
        .replace("leeway_secs = 5", "leeway_secs = 0"),
    )
    .await;
    let k = keys(env.scratch_dir());
    let mut claims = idp::claims(ISS, AUD, "carol", &[]);
    claims["exp"] = json!(idp::now() + 3);
    let c = login_tls(&gw, "carol", &k.ec.sign(&claims))
        .await
        .expect("short-lived token");
    c.simple_query("SELECT 1")
        .await
        .expect("valid until expiry");
    let Conn { client, task, .. } = c;
    let ended = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the session did not end after its token expired")
        .unwrap();
    let e = ended.expect_err("the session ended without an error");
    assert_eq!(sqlstate(&e).as_deref(), Some("28000"), "{e}");
    let message = e
        .as_db_error()
        .map(|d| d.message().to_owned())
        .unwrap_or_default();
    assert!(message.contains("token of \"carol\" expired"), "{message}");
    drop(client);
}

/// Mapping rules read subject alternative names, and `required = true` refuses TLS
/// clients that bring no certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_email_san_maps_to_the_user_and_a_certificate_can_be_required() {
    let env = env().await;
    let pki = env.pki();
    let gw = gateway(
        env,
        format!(
            "[auth.mtls]\nca = {}\nrequired = true\n\n[[auth.mtls.map]]\nfrom = \"san-email\"\nmatch = \"*@example.com\"\nuser = \"{{local}}\"\n",
            toml_path(&pki.ca_cert)
        ),
    )
    .await;
    // The CN says nothing; the email SAN alice@example.com makes it alice.
    let (cert, key) = pki
        .issue_client_cert_with_email("laptop-42", "alice@example.com", "san-alice")
        .unwrap();
    let out = psql_c(
        &psql_cert_uri(&gw, "alice", &cert, &key),
        "SHOW portcullis.identity",
    )
    .await;
    out.assert_success("psql with an email SAN certificate");
    assert!(
        out.stdout.starts_with("alice|person|analysts|certificate"),
        "{}",
        out.stdout
    );
    // The same certificate does not log in as bob.
    let out = psql_c(&psql_cert_uri(&gw, "bob", &cert, &key), "SELECT 1").await;
    assert_ne!(out.code(), 0, "alice's certificate logged in as bob");
    // An email outside the pattern maps to nobody.
    let (cert, key) = pki
        .issue_client_cert_with_email("laptop-43", "alice@elsewhere.org", "san-other")
        .unwrap();
    let out = psql_c(&psql_cert_uri(&gw, "alice", &cert, &key), "SELECT 1").await;
    assert_ne!(out.code(), 0, "an unmapped certificate logged in");
    // required: a TLS client with a password but no certificate is refused.
    let uri = build_uri(
        "alice",
        portcullis_tests::password_for("alice"),
        "127.0.0.1",
        gw.port(),
        "demo",
        "sslmode=require",
    );
    let out = psql_c(&uri, "SELECT 1").await;
    assert_ne!(
        out.code(),
        0,
        "a TLS client without a certificate logged in: {}",
        out.stdout
    );
}
