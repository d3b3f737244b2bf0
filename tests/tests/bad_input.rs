//! Hostile and broken input at the byte level, dying upstreams, and floods.
//!
//! Each test that looks at `active_connections()` uses a gateway of its own,
//! so the counts are not disturbed by other tests running in parallel.

use std::time::Duration;

use portcullis_tests::pg::{self, sqlstate};
use portcullis_tests::raw::{self, Msg, RawConn, describe_all, first_error};
use portcullis_tests::{EnvOptions, Gateway, GatewayOptions, SUPERUSER_PASSWORD, TestEnv, unique};
use tokio::io::AsyncWriteExt;
use tokio::sync::OnceCell;

static ENV: OnceCell<TestEnv> = OnceCell::const_new();

async fn env() -> &'static TestEnv {
    portcullis_tests::shared(&ENV, EnvOptions::default).await
}

const CLOSE_WITHIN: Duration = Duration::from_secs(20);
const SETTLE_WITHIN: Duration = Duration::from_secs(10);

/// A gateway of this test's own; startup timeout long enough that "closed
/// quickly" cannot be the startup timeout.
async fn own_gateway(opts: GatewayOptions) -> Gateway {
    env()
        .await
        .start_gateway(opts)
        .await
        .expect("starting a gateway for this test")
}

fn slow_startup() -> GatewayOptions {
    GatewayOptions {
        startup_timeout_ms: 120_000,
        ..GatewayOptions::default()
    }
}

/// Asserts that the gateway still answers a StartupMessage with an
/// authentication request (for gateways whose startup timeout is too short
/// for a full login by a debug-build client on a busy machine).
async fn assert_still_answers(gw: &Gateway) {
    let mut c = RawConn::connect(gw.addr())
        .await
        .expect("gateway no longer accepts connections");
    c.send(&raw::startup(&[("user", "alice"), ("database", "demo")]))
        .await
        .unwrap();
    let m = c
        .expect_msg(CLOSE_WITHIN)
        .await
        .expect("no answer to a StartupMessage");
    assert_eq!(
        m.tag,
        b'R',
        "expected an authentication request, got {}",
        m.describe()
    );
}

/// Asserts that the gateway still serves a normal client.
async fn assert_still_serving(gw: &Gateway) {
    let c = gw
        .connect("alice", "demo")
        .await
        .expect("gateway no longer accepts logins");
    let n: i64 = c
        .query_one("select count(*) from customers", &[])
        .await
        .expect("query after bad input")
        .get(0);
    assert_eq!(n, 200);
}

async fn assert_settles_to_zero(gw: &Gateway) {
    if let Err(n) = gw.wait_active_connections(0, SETTLE_WITHIN).await {
        panic!("active_connections() is still {n} after {SETTLE_WITHIN:?}; a connection leaked");
    }
}

/// Asserts that what the server sent before closing is nothing, or exactly one
/// FATAL ErrorResponse; returns its SQLSTATE.
#[track_caller]
fn assert_clean_refusal(what: &str, msgs: &[Msg]) -> Option<String> {
    match msgs {
        [] => None,
        [m] if m.tag == b'E' => {
            assert_eq!(
                m.field(b'S').as_deref(),
                Some("FATAL"),
                "{what}: severity of {}",
                m.describe()
            );
            Some(
                m.sqlstate()
                    .unwrap_or_else(|| panic!("{what}: ErrorResponse without SQLSTATE")),
            )
        }
        _ => panic!(
            "{what}: expected a close or one FATAL, got {:?}",
            describe_all(msgs)
        ),
    }
}

async fn send_and_expect_close(gw: &Gateway, what: &str, bytes: &[u8]) -> Option<String> {
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    // The gateway may close before reading everything: a write error is fine.
    let _ = c.send(bytes).await;
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert_clean_refusal(what, &msgs)
}

#[tokio::test]
async fn garbage_startup_packets_are_refused_cleanly() {
    let gw = own_gateway(slow_startup()).await;
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec(),
        ),
        (
            "a TLS ClientHello without SSLRequest",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03,
            ],
        ),
        ("length below the minimum", vec![0, 0, 0, 3, 0]),
        ("length zero", vec![0, 0, 0, 0]),
        ("negative length", vec![0xff, 0xff, 0xff, 0xf0, 0, 3, 0, 0]),
        ("protocol 2.0", vec![0, 0, 0, 8, 0, 2, 0, 0]),
        ("protocol 4.0", vec![0, 0, 0, 8, 0, 4, 0, 0]),
        (
            "unknown request code",
            vec![0, 0, 0, 8, 0x04, 0xd2, 0x12, 0x34],
        ),
        (
            "parameters without terminators",
            [vec![0, 0, 0, 16, 0, 3, 0, 0], b"userxxxx".to_vec()].concat(),
        ),
        (
            "a parameter name without a value",
            [vec![0, 0, 0, 14, 0, 3, 0, 0], b"user\0\0".to_vec()].concat(),
        ),
    ];
    // All 256 byte values as a "startup packet".
    let mut noise: Vec<u8> = vec![0, 0, 1, 4, 0, 3, 0, 0];
    noise.extend((0..=255u8).rev());
    cases.push(("binary noise", noise));
    for (what, bytes) in &cases {
        let code = send_and_expect_close(&gw, what, bytes).await;
        if let Some(code) = code {
            assert!(
                code.starts_with("08") || code.starts_with("0A") || code.starts_with("28"),
                "{what}: unexpected SQLSTATE {code}"
            );
        }
    }
    assert_still_serving(&gw).await;
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn unsupported_protocol_version_is_0a000_like_postgres() {
    // Protocol 4.0 does not exist; PostgreSQL answers FATAL 0A000
    // ("unsupported frontend protocol"). (Protocol 2.0 is not compared: PostgreSQL
    // answers that in the old v2 error format.)
    let env = env().await;
    let bytes = [0, 0, 0, 8, 0, 4, 0, 0];
    let mut direct = RawConn::connect(([127, 0, 0, 1], env.pg_port()).into())
        .await
        .unwrap();
    direct.send(&bytes).await.unwrap();
    let direct_msgs = direct.until_closed(CLOSE_WITHIN).await.unwrap();
    assert_eq!(
        first_error(&direct_msgs).and_then(Msg::sqlstate).as_deref(),
        Some("0A000")
    );
    let gw_code = send_and_expect_close(&env.gw, "protocol 4.0", &bytes).await;
    assert_eq!(
        gw_code.as_deref(),
        Some("0A000"),
        "PostgreSQL answers 0A000 (unsupported frontend protocol)"
    );
}

#[tokio::test]
async fn startup_packet_declaring_2_gib_is_refused_without_waiting_for_it() {
    let gw = own_gateway(slow_startup()).await;
    for len in [0x7fff_ffffu32, 0x8000_0000, 0xffff_fff0, 64 * 1024 * 1024] {
        let mut c = RawConn::connect(gw.addr()).await.unwrap();
        // Length and protocol version, then nothing: a gateway that waited for
        // (or allocated) the declared body would sit here until the 120 s
        // startup timeout.
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0, 3, 0, 0]);
        c.send(&bytes).await.unwrap();
        let msgs = c
            .until_closed(CLOSE_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("startup packet declaring {len} bytes: {e:#}"));
        assert_clean_refusal(&format!("startup packet declaring {len} bytes"), &msgs);
    }
    assert_still_serving(&gw).await;
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn oversized_message_after_login_is_08p01() {
    let gw = own_gateway(GatewayOptions {
        max_message_bytes: 1024 * 1024,
        ..GatewayOptions::default()
    })
    .await;
    let app = unique("oversize");

    // Below the cap works.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login_with("alice", "alice-pw", "demo", &[("application_name", &app)])
        .await
        .unwrap();
    let sql = format!("select length('{}')", "z".repeat(900 * 1024));
    let msgs = c.simple_query(&sql).await.unwrap();
    assert!(first_error(&msgs).is_none(), "{:?}", describe_all(&msgs));
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a DataRow");
    assert!(row.body.ends_with(b"921600"), "{row:?}");

    // Above the cap: a header declaring 2 MiB is refused at once.
    c.send(&raw::header(b'Q', 2 * 1024 * 1024 + 4))
        .await
        .unwrap();
    c.send(b"select 1").await.ok();
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("the gateway must close the connection");
    let err = first_error(&msgs)
        .unwrap_or_else(|| panic!("no ErrorResponse before close: {:?}", describe_all(&msgs)));
    assert_eq!(
        err.sqlstate().as_deref(),
        Some("08P01"),
        "{}",
        err.describe()
    );

    // Same for a 2 GiB declaration.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login("bob", "bob-pw", "demo").await.unwrap();
    c.send(&raw::header(b'Q', 0x7fff_ffff)).await.unwrap();
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("the gateway must close the connection");
    assert_eq!(
        first_error(&msgs).and_then(Msg::sqlstate).as_deref(),
        Some("08P01"),
        "{:?}",
        describe_all(&msgs)
    );

    // A full oversized message (not just the header) too.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login("bob", "bob-pw", "demo").await.unwrap();
    let _ = c
        .send(&raw::query(&format!(
            "select '{}'",
            "q".repeat(1100 * 1024)
        )))
        .await;
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("the gateway must close the connection");
    assert_eq!(
        first_error(&msgs).and_then(Msg::sqlstate).as_deref(),
        Some("08P01"),
        "{:?}",
        describe_all(&msgs)
    );

    // The upstream sessions went away with the clients.
    let direct = env().await.connect_direct("demo").await.unwrap();
    portcullis_tests::eventually(SETTLE_WITHIN, "upstream session closed", || async {
        let b = pg::backends_with_app(&direct, &app).await?;
        anyhow::ensure!(b.is_empty(), "{b:?}");
        Ok(())
    })
    .await
    .unwrap();
    assert_still_serving(&gw).await;
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn unknown_message_types_after_login_are_08p01_like_postgres() {
    let env = env().await;
    let gw = own_gateway(GatewayOptions::default()).await;
    let direct_addr = ([127, 0, 0, 1], env.pg_port()).into();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown message type 'y'", raw::message(b'y', b"")),
        ("unknown message type 0xfe", raw::message(0xfe, b"abc")),
    ];
    for (what, bytes) in &cases {
        let mut g = RawConn::connect(gw.addr()).await.unwrap();
        g.login("alice", "alice-pw", "demo").await.unwrap();
        let _ = g.send(bytes).await;
        let gmsgs = g
            .until_closed(CLOSE_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("{what} (gateway): {e:#}"));

        let mut d = RawConn::connect(direct_addr).await.unwrap();
        d.login("postgres", SUPERUSER_PASSWORD, "demo")
            .await
            .unwrap();
        let _ = d.send(bytes).await;
        let dmsgs = d
            .until_closed(CLOSE_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("{what} (direct): {e:#}"));

        let gcode = first_error(&gmsgs).and_then(Msg::sqlstate);
        let dcode = first_error(&dmsgs).and_then(Msg::sqlstate);
        assert_eq!(
            dcode.as_deref(),
            Some("08P01"),
            "{what}: PostgreSQL said {:?}",
            describe_all(&dmsgs)
        );
        assert_eq!(
            gcode,
            dcode,
            "{what}: gateway said {:?}, PostgreSQL {:?}",
            describe_all(&gmsgs),
            describe_all(&dmsgs)
        );
    }
    assert_still_serving(&gw).await;
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn invalid_message_lengths_after_login_are_refused() {
    // PostgreSQL closes silently on these (COMMERROR); the gateway may close
    // or send one FATAL 08P01 first.
    let gw = own_gateway(GatewayOptions::default()).await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("length below 4", raw::header(b'Q', 2)),
        ("length zero", raw::header(b'P', 0)),
        ("negative length", raw::header(b'Q', 0xffff_fff0)),
    ];
    for (what, bytes) in &cases {
        let mut g = RawConn::connect(gw.addr()).await.unwrap();
        g.login("alice", "alice-pw", "demo").await.unwrap();
        let _ = g.send(bytes).await;
        let msgs = g
            .until_closed(CLOSE_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        if let Some(code) = assert_clean_refusal(what, &msgs) {
            assert_eq!(code, "08P01", "{what}");
        }
    }
    assert_still_serving(&gw).await;
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn truncated_messages_then_eof() {
    let gw = own_gateway(slow_startup()).await;
    // Truncated startup packet, then the client half-closes.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    let full = raw::startup(&[("user", "alice"), ("database", "demo")]);
    c.send(&full[..full.len() - 5]).await.unwrap();
    c.stream.shutdown().await.ok();
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("truncated startup: close");
    assert_clean_refusal("truncated startup", &msgs);

    // Truncated header (3 of 5 bytes) and truncated body after login.
    let app = unique("truncated");
    for (what, bytes) in [
        ("truncated header", vec![b'Q', 0, 0]),
        ("truncated body", {
            let q = raw::query("select 'this message is cut short'");
            q[..q.len() - 10].to_vec()
        }),
    ] {
        let mut c = RawConn::connect(gw.addr()).await.unwrap();
        c.login_with("alice", "alice-pw", "demo", &[("application_name", &app)])
            .await
            .unwrap();
        c.send(&bytes).await.unwrap();
        c.stream.shutdown().await.ok();
        let msgs = c
            .until_closed(CLOSE_WITHIN)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e:#}"));
        // Nothing is executed from a partial message.
        assert!(
            !msgs.iter().any(|m| m.tag == b'D' || m.tag == b'C'),
            "{what}: {:?}",
            describe_all(&msgs)
        );
    }
    let direct = env().await.connect_direct("demo").await.unwrap();
    portcullis_tests::eventually(SETTLE_WITHIN, "upstream sessions closed", || async {
        let b = pg::backends_with_app(&direct, &app).await?;
        anyhow::ensure!(b.is_empty(), "{b:?}");
        Ok(())
    })
    .await
    .unwrap();
    assert_still_serving(&gw).await;
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn ssl_and_gss_requests_without_tls_are_declined_and_login_continues() {
    let env = env().await;
    let mut c = RawConn::connect(env.gw.addr()).await.unwrap();
    // GSSENCRequest, then SSLRequest: each answered with a single 'N'.
    for (code_hi, code_lo) in [(0x04d2u16, 0x1630u16), (0x04d2, 0x162f)] {
        let mut req = vec![0, 0, 0, 8];
        req.extend_from_slice(&code_hi.to_be_bytes());
        req.extend_from_slice(&code_lo.to_be_bytes());
        c.send(&req).await.unwrap();
        let mut b = [0u8; 1];
        tokio::time::timeout(
            CLOSE_WITHIN,
            tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut b),
        )
        .await
        .expect("no answer to the request")
        .unwrap();
        assert_eq!(b[0], b'N');
    }
    c.login("etl-agent", "etl-pw", "demo")
        .await
        .expect("login after declined requests");
    let msgs = c.simple_query("select 40 + 2").await.unwrap();
    let row = msgs.iter().find(|m| m.tag == b'D').expect("a row");
    assert!(row.body.ends_with(b"42"));
    c.send(&raw::terminate()).await.unwrap();
    assert!(c.until_closed(CLOSE_WITHIN).await.unwrap().is_empty());
}

#[tokio::test]
async fn newer_protocol_minor_version_is_negotiated_like_postgres() {
    let env = env().await;
    let mut version_msgs = Vec::new();
    for (addr, user, pw) in [
        (env.gw.addr(), "alice", "alice-pw"),
        (
            ([127, 0, 0, 1], env.pg_port()).into(),
            "postgres",
            SUPERUSER_PASSWORD,
        ),
    ] {
        let mut c = RawConn::connect(addr).await.unwrap();
        let mut body = vec![0, 3, 0, 1]; // protocol 3.1
        for (k, v) in [
            ("user", user),
            ("database", "demo"),
            ("_pq_.no_such_option", "on"),
        ] {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut packet = ((body.len() + 4) as u32).to_be_bytes().to_vec();
        packet.extend_from_slice(&body);
        c.send(&packet).await.unwrap();
        let first = c.expect_msg(CLOSE_WITHIN).await.unwrap();
        assert_eq!(
            first.tag,
            b'v',
            "expected NegotiateProtocolVersion, got {}",
            first.describe()
        );
        version_msgs.push(first.body.clone());
        c.authenticate(pw)
            .await
            .expect("login after protocol negotiation");
        let msgs = c.simple_query("select 1").await.unwrap();
        assert!(first_error(&msgs).is_none());
    }
    assert_eq!(
        version_msgs[0], version_msgs[1],
        "NegotiateProtocolVersion differs from PostgreSQL's"
    );
}

#[tokio::test]
async fn bogus_cancel_request_is_ignored() {
    let gw = own_gateway(GatewayOptions::default()).await;
    let other = gw.connect("bob", "demo").await.unwrap();
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    let mut req = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    req.extend_from_slice(&0x1234_5678u32.to_be_bytes());
    req.extend_from_slice(&0x0bad_cafeu32.to_be_bytes());
    c.send(&req).await.unwrap();
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("cancel connection closed");
    assert!(
        msgs.is_empty(),
        "a CancelRequest gets no reply: {:?}",
        describe_all(&msgs)
    );
    let n: i64 = other
        .query_one("select count(*) from orders", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1000);
    drop(other);
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn silent_client_hits_the_startup_timeout() {
    let gw = own_gateway(GatewayOptions {
        startup_timeout_ms: 500,
        ..GatewayOptions::default()
    })
    .await;
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("a silent client must be disconnected");
    assert_clean_refusal("startup timeout", &msgs);
    // Half a startup packet, then silence.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    let full = raw::startup(&[("user", "alice"), ("database", "demo")]);
    c.send(&full[..10]).await.unwrap();
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("a stalled startup must be disconnected");
    assert_clean_refusal("stalled startup", &msgs);
    // Stalled in the middle of SCRAM.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.send(&full).await.unwrap();
    let auth = c.expect_msg(CLOSE_WITHIN).await.unwrap();
    assert_eq!(auth.tag, b'R');
    let msgs = c
        .until_closed(CLOSE_WITHIN)
        .await
        .expect("a stalled SCRAM exchange must be disconnected");
    assert_clean_refusal("stalled SCRAM", &msgs);
    assert_settles_to_zero(&gw).await;
    assert_still_answers(&gw).await;
}

#[tokio::test]
async fn terminate_closes_both_sides() {
    let gw = own_gateway(GatewayOptions::default()).await;
    let app = unique("terminate");
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login_with("alice", "alice-pw", "demo", &[("application_name", &app)])
        .await
        .unwrap();
    let direct = env().await.connect_direct("demo").await.unwrap();
    assert_eq!(pg::backends_with_app(&direct, &app).await.unwrap().len(), 1);
    assert_eq!(gw.active_connections(), 1);
    c.send(&raw::terminate()).await.unwrap();
    let msgs = c.until_closed(CLOSE_WITHIN).await.unwrap();
    assert!(msgs.is_empty(), "{:?}", describe_all(&msgs));
    portcullis_tests::eventually(SETTLE_WITHIN, "upstream session closed", || async {
        let b = pg::backends_with_app(&direct, &app).await?;
        anyhow::ensure!(b.is_empty(), "{b:?}");
        Ok(())
    })
    .await
    .unwrap();
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn client_disconnecting_mid_copy_in() {
    let env = env().await;
    let gw = own_gateway(GatewayOptions::default()).await;
    let schema = unique("midcopy");
    let app = unique("midcopy_app");
    env.admin_sql(
        "demo",
        &format!("create schema {schema}; create table {schema}.t(id int, v text)"),
    );

    // A bystander session that must not notice anything.
    let bystander = gw.connect("bob", "demo").await.unwrap();
    let before: i32 = bystander
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);

    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login_with("etl-agent", "etl-pw", "demo", &[("application_name", &app)])
        .await
        .unwrap();
    c.send(&raw::query(&format!("copy {schema}.t from stdin")))
        .await
        .unwrap();
    let m = c.expect_msg(CLOSE_WITHIN).await.unwrap();
    assert_eq!(m.tag, b'G', "expected CopyInResponse, got {}", m.describe());
    for i in 0..1000 {
        c.send(&raw::copy_data(format!("{i}\tvalue {i}\n").as_bytes()))
            .await
            .unwrap();
    }
    // Half a CopyData message, then the client vanishes.
    c.send(&raw::copy_data(b"1001\tcut")[..6]).await.unwrap();
    drop(c);

    let direct = env.connect_direct("demo").await.unwrap();
    portcullis_tests::eventually(SETTLE_WITHIN, "upstream COPY session ended", || async {
        let b = pg::backends_with_app(&direct, &app).await?;
        anyhow::ensure!(b.is_empty(), "{b:?}");
        Ok(())
    })
    .await
    .unwrap();
    // The COPY was rolled back and released its lock.
    let n: i64 = direct
        .query_one(&format!("select count(*) from {schema}.t"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    direct
        .batch_execute(&format!(
            "begin; lock table {schema}.t in access exclusive mode nowait; rollback"
        ))
        .await
        .expect("the table is still locked by the abandoned COPY");

    let after: i32 = bystander
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(before, after);
    // The same identity can COPY again right away.
    let c2 = gw.connect("etl-agent", "demo").await.unwrap();
    let sink = c2
        .copy_in::<_, bytes::Bytes>(&format!("copy {schema}.t from stdin"))
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    futures_util::SinkExt::send(&mut sink, bytes::Bytes::from_static(b"1\tone\n2\ttwo\n"))
        .await
        .unwrap();
    assert_eq!(sink.finish().await.unwrap(), 2);
    drop(c2);
    drop(bystander);
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn client_disconnecting_mid_query_and_mid_result() {
    let env = env().await;
    let gw = own_gateway(GatewayOptions::default()).await;
    let app = unique("midresult");
    // A huge result the client never reads, then it disconnects.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login_with("alice", "alice-pw", "demo", &[("application_name", &app)])
        .await
        .unwrap();
    c.send(&raw::query(
        "select g, repeat('x', 1000) from generate_series(1, 5000000) g",
    ))
    .await
    .unwrap();
    let _ = c.read(Duration::from_millis(500)).await;
    drop(c);
    // A long query whose client disconnects.
    let mut c = RawConn::connect(gw.addr()).await.unwrap();
    c.login_with("alice", "alice-pw", "demo", &[("application_name", &app)])
        .await
        .unwrap();
    c.send(&raw::query("select pg_sleep(8)")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(c);
    let direct = env.connect_direct("demo").await.unwrap();
    // PostgreSQL only notices a dead client when it next writes (as it would
    // without the gateway), so allow for the 8 s sleep.
    portcullis_tests::eventually(
        Duration::from_secs(30),
        "upstream sessions ended",
        || async {
            let b = pg::backends_with_app(&direct, &app).await?;
            anyhow::ensure!(b.is_empty(), "{b:?}");
            Ok(())
        },
    )
    .await
    .unwrap();
    assert_settles_to_zero(&gw).await;
    assert_still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_flood_beyond_max_connections() {
    // 300 clients each compute a SCRAM proof (4096 PBKDF2 rounds, slow in a
    // debug build), so give logins far more than the default 10 s.
    let gw = own_gateway(GatewayOptions {
        max_connections: 50,
        startup_timeout_ms: 300_000,
        ..GatewayOptions::default()
    })
    .await;
    let uri = gw.uri("alice", "demo");
    let attempts: Vec<_> = (0..300)
        .map(|_| {
            let uri = uri.clone();
            tokio::spawn(async move { pg::try_connect(&uri).await })
        })
        .collect();
    let mut ok = Vec::new();
    let mut refused = 0;
    let mut other = Vec::new();
    for a in attempts {
        match a.await.unwrap() {
            Ok(c) => ok.push(c),
            Err(e) if sqlstate(&e).as_deref() == Some("53300") => {
                assert_eq!(pg::message(&e), "sorry, too many clients already");
                refused += 1;
            }
            Err(e) => other.push(format!("{e:?}")),
        }
    }
    assert!(
        other.is_empty(),
        "{} connections failed otherwise: {:?}",
        other.len(),
        &other[..other.len().min(5)]
    );
    assert_eq!((ok.len(), refused), (50, 250), "accepted / refused");
    if let Err(n) = gw.wait_active_connections(50, SETTLE_WITHIN).await {
        panic!("active_connections() is {n} with 50 admitted clients");
    }
    // Every admitted client works, concurrently.
    let results = futures_util::future::join_all(ok.iter().enumerate().map(|(i, c)| async move {
        c.query_one("select $1::int4 + 1", &[&(i as i32)])
            .await
            .map(|r| r.get::<_, i32>(0))
    }))
    .await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32 + 1);
    }
    // Still full: one more is refused.
    let e = pg::try_connect(&uri)
        .await
        .err()
        .expect("the 51st connection must be refused");
    assert_eq!(sqlstate(&e).as_deref(), Some("53300"));

    drop(ok);
    assert_settles_to_zero(&gw).await;
    let metrics = portcullis_tests::admin::get(gw.admin_addr().unwrap(), "/metrics")
        .await
        .unwrap();
    assert_eq!(
        portcullis_tests::admin::metric_value(&metrics.body, "portcullis_connections_active"),
        Some(0.0),
        "{}",
        metrics.body
    );
    // Room again.
    let c = gw
        .connect("bob", "demo")
        .await
        .expect("a connection after the flood");
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
}

#[tokio::test]
async fn upstream_dies_mid_query_and_comes_back() {
    // Killing PostgreSQL would disturb every other test: this one has its own cluster.
    let env = TestEnv::start(EnvOptions::default())
        .await
        .expect("own environment");
    let app = unique("dying");
    let uri = env.gw.uri_with(
        "alice",
        "alice-pw",
        "demo",
        &format!("sslmode=disable&application_name={app}"),
    );
    let busy = pg::connect(&uri).await.unwrap();
    let idle = pg::connect(&uri).await.unwrap();
    let query =
        tokio::spawn(async move { busy.query("select pg_sleep(10)", &[]).await.map(|_| ()) });
    let direct = env.connect_direct("demo").await.unwrap();
    portcullis_tests::eventually(Duration::from_secs(20), "pg_sleep running", || async {
        let b = pg::backends_with_app(&direct, &app).await?;
        anyhow::ensure!(b.iter().any(|(_, _, s)| s == "active"), "{b:?}");
        Ok(())
    })
    .await
    .unwrap();
    drop(direct);

    env.with_cluster(|c| c.kill()).expect("killing PostgreSQL");
    let r = tokio::time::timeout(CLOSE_WITHIN, query)
        .await
        .expect("the query neither failed nor finished")
        .unwrap();
    let e = r.expect_err("the query must fail when PostgreSQL dies");
    let code = sqlstate(&e);
    assert!(
        code.is_none()
            || matches!(
                code.as_deref(),
                Some("57P01" | "57P02" | "57P03" | "08006" | "08003" | "08000")
            ),
        "unexpected error for a dead upstream: {e:?}"
    );
    // The idle session fails on its next use instead of hanging.
    let r = tokio::time::timeout(CLOSE_WITHIN, idle.query_one("select 1", &[]))
        .await
        .expect("idle session hangs");
    assert!(
        r.is_err(),
        "a query on a session whose upstream died must fail"
    );
    drop(idle);

    // While PostgreSQL is down, logins fail cleanly.
    match tokio::time::timeout(
        CLOSE_WITHIN,
        pg::try_connect(&env.gateway_uri("bob", "demo")),
    )
    .await
    {
        Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("login succeeded with PostgreSQL down"),
        Err(_) => panic!("login hangs with PostgreSQL down"),
    }

    env.with_cluster(|c| c.restart())
        .expect("restarting PostgreSQL");
    let c =
        portcullis_tests::eventually(Duration::from_secs(30), "login after restart", || async {
            env.connect_gateway("bob", "demo").await
        })
        .await
        .unwrap();
    let n: i64 = c
        .query_one("select count(*) from customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
    drop(c);
    if let Err(n) = env.gw.wait_active_connections(0, SETTLE_WITHIN).await {
        panic!("active_connections() is {n} after the upstream crash; sessions leaked");
    }
}

#[tokio::test]
async fn idle_timeout_closes_idle_sessions_but_not_open_transactions() {
    let gw = own_gateway(GatewayOptions {
        idle_timeout_ms: 1000,
        ..GatewayOptions::default()
    })
    .await;
    let idle = gw.connect("alice", "demo").await.unwrap();
    let in_tx = gw.connect("bob", "demo").await.unwrap();
    in_tx.batch_execute("begin").await.unwrap();
    // The idle session is closed by the gateway, eventually.
    portcullis_tests::eventually(Duration::from_secs(20), "idle session closed", || async {
        anyhow::ensure!(idle.is_closed(), "still open");
        Ok(())
    })
    .await
    .unwrap();
    // Three timeouts later, the session inside a transaction is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !in_tx.is_closed(),
        "a session inside a transaction was closed by the idle timeout"
    );
    let n: i64 = in_tx
        .query_one("select count(*) from customers", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 200);
    in_tx.batch_execute("commit").await.unwrap();
    drop(idle);
    portcullis_tests::eventually(
        Duration::from_secs(20),
        "session closed after its transaction",
        || async {
            anyhow::ensure!(in_tx.is_closed(), "still open");
            Ok(())
        },
    )
    .await
    .unwrap();
    drop(in_tx);
    assert_settles_to_zero(&gw).await;
}

#[tokio::test]
async fn shutdown_closes_sessions_and_stops_listening() {
    let gw = own_gateway(GatewayOptions::default()).await;
    let addr = gw.addr();
    let c = gw.connect("alice", "demo").await.unwrap();
    assert_eq!(
        c.query_one("select 1", &[]).await.unwrap().get::<_, i32>(0),
        1
    );
    tokio::time::timeout(Duration::from_secs(60), gw.shutdown())
        .await
        .expect("shutdown did not finish within 60 s (grace period is 10 s)");
    portcullis_tests::eventually(
        Duration::from_secs(20),
        "client closed by shutdown",
        || async {
            anyhow::ensure!(c.is_closed(), "still open");
            Ok(())
        },
    )
    .await
    .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the gateway still accepts connections after shutdown"
    );
}
