//! One client connection from accept to close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::BytesMut;
use portcullis_wire::backend::{self, ErrorFields, Severity, TransactionStatus};
use portcullis_wire::frontend::Query;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

use super::login::{Login, LoginEvent};
use crate::audit::{AuditEvent, EventKind};
use crate::backend::{Upstream, UpstreamError, UpstreamTarget};
use crate::cancel::{CancelTarget, ClientKey, UpstreamKey};
use crate::identity::Identity;
use crate::pipeline::SessionInfo;
use crate::server::Shared;
use crate::session::{Relay, RelayDeps};
use crate::stream::Stream;

/// Client session parameters passed on to PostgreSQL; anything else a client sends in
/// its StartupMessage (notably `options`, which could set arbitrary settings without a
/// policy seeing them) is dropped.
const FORWARDED_PARAMS: &[&str] = &[
    "client_encoding",
    "datestyle",
    "timezone",
    "intervalstyle",
    "extra_float_digits",
    "search_path",
    "bytea_output",
    "lc_monetary",
    "lc_numeric",
    "lc_time",
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_session_timeout",
    "default_transaction_isolation",
    "default_transaction_read_only",
    "geqo",
];

/// Counts a connection as active for as long as it lives.
struct ActiveGuard(crate::metrics::Metrics);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.connections_active.dec();
    }
}

/// Serves one accepted socket until it closes. `permit` is `None` when the connection
/// limit is reached: the client is told so (SQLSTATE 53300) once it says hello.
pub async fn serve_connection(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    permit: Option<OwnedSemaphorePermit>,
) {
    let m = &shared.metrics;
    m.connections_total.inc();
    m.connections_active.inc();
    let _active = ActiveGuard(m.clone());
    let _ = socket.set_nodelay(true);
    let startup_timeout = Duration::from_millis(shared.config.server.startup_timeout_ms);
    let login = tokio::time::timeout(
        startup_timeout,
        login(Stream::Plain(socket), peer, &shared, permit.is_some()),
    )
    .await;
    let (mut client, identity, startup) = match login {
        Ok(Some(done)) => done,
        Ok(None) => return,
        Err(_) => {
            m.errors.with_label_values(&["timeout"]).inc();
            tracing::debug!(%peer, "startup timed out");
            return;
        }
    };
    if let Err(e) = session(&mut client, peer, &shared, identity, startup).await {
        tracing::debug!(%peer, error = %e, "session ended with error");
    }
    let _ = client.shutdown().await;
    drop(permit);
}

/// Runs the login. Returns the stream, identity and startup message on success; `None`
/// when the connection is finished (refused, cancel request, client gone).
async fn login(
    mut stream: Stream,
    peer: SocketAddr,
    shared: &Shared,
    have_slot: bool,
) -> Option<(Stream, Arc<Identity>, portcullis_wire::StartupMessage)> {
    let tls_cfg = shared.config.server.tls.as_ref();
    let mut login = Login::new(
        Arc::clone(&shared.identities),
        shared.limits,
        shared.tls_acceptor.is_some(),
        tls_cfg.is_some_and(|t| t.required),
    );
    let mut input = BytesMut::with_capacity(1024);
    let mut out = BytesMut::new();
    let mut next: Option<LoginEvent> = None;
    loop {
        let event = match next.take() {
            Some(e) => Some(e),
            None => login.input(&mut input, &mut out),
        };
        if !out.is_empty() {
            stream.write_all(&out).await.ok()?;
            stream.flush().await.ok()?;
            out.clear();
        }
        match event {
            None => {
                if stream.read_buf(&mut input).await.ok()? == 0 {
                    return None;
                }
            }
            Some(LoginEvent::StartTls) => {
                let Stream::Plain(tcp) = stream else {
                    return None;
                };
                let acceptor = shared.tls_acceptor.as_ref()?;
                match acceptor.accept(tcp).await {
                    Ok(tls) => {
                        login.set_certificate_user(certificate_user(&tls, shared));
                        stream = Stream::ServerTls(Box::new(tls));
                    }
                    Err(e) => {
                        tracing::info!(%peer, error = %e, "client TLS handshake failed");
                        return None;
                    }
                }
                login.tls_started();
            }
            Some(LoginEvent::VerifyPassword { user, token }) => {
                let result = shared.identities.verify_password(&user, &token).await;
                next = Some(login.password_verified(result, &mut out));
            }
            Some(LoginEvent::Cancel(key)) => {
                if let Some(target) = shared.cancels.lookup(ClientKey(key)) {
                    // A statement held for approval is canceled at the gateway.
                    target.interrupt.send_modify(|n| *n += 1);
                    if let Err(e) =
                        crate::backend::send_cancel(&target.host, target.port, target.key.0).await
                    {
                        tracing::warn!(error = %e, "forwarding cancel request failed");
                    }
                }
                return None;
            }
            Some(LoginEvent::Refused { sqlstate, user }) => {
                if sqlstate == "28P01" {
                    shared.metrics.auth_failures.inc();
                }
                if let Some(a) = &shared.audit
                    && sqlstate.starts_with("28")
                {
                    let mut e = AuditEvent::new(EventKind::AuthFailure);
                    e.detail = Some(serde_json::json!({
                        "user": user,
                        "client_addr": peer.to_string(),
                        "sqlstate": sqlstate,
                    }));
                    a.log.record(e);
                }
                tracing::info!(%peer, %sqlstate, "login refused");
                return None;
            }
            Some(LoginEvent::Authenticated { identity, startup }) => {
                if !have_slot {
                    shared
                        .metrics
                        .connections_refused
                        .with_label_values(&["max_connections"])
                        .inc();
                    fatal(&mut stream, "53300", "sorry, too many clients already").await;
                    return None;
                }
                if !input.is_empty() {
                    // Pipelined bytes after the password are kept by nobody: refuse rather
                    // than guess.
                    fatal(&mut stream, "08P01", "unexpected data after authentication").await;
                    return None;
                }
                return Some((stream, identity, startup));
            }
        }
    }
}

/// The user name a verified client certificate maps to (`[auth.mtls]`).
fn certificate_user(
    tls: &tokio_rustls::server::TlsStream<TcpStream>,
    shared: &Shared,
) -> Option<String> {
    let mapper = shared.identities.mtls()?;
    let cert = tls.get_ref().1.peer_certificates()?.first()?;
    mapper.user_of(cert.as_ref())
}

async fn fatal(stream: &mut Stream, code: &str, message: &str) {
    let mut out = BytesMut::new();
    ErrorFields::new(Severity::Fatal, code, message).encode_error(&mut out);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
}

async fn session(
    client: &mut Stream,
    peer: SocketAddr,
    shared: &Arc<Shared>,
    identity: Arc<Identity>,
    startup: portcullis_wire::StartupMessage,
) -> anyhow::Result<()> {
    let config = &shared.config;
    let database = startup
        .get("database")
        .filter(|d| !d.is_empty())
        .unwrap_or(&identity.name)
        .to_owned();
    let Some(db) = config
        .databases
        .get(&database)
        .or_else(|| config.databases.get("*"))
    else {
        fatal(
            client,
            "3D000",
            &format!("database \"{database}\" does not exist"),
        )
        .await;
        return Ok(());
    };
    let client_app = startup.get("application_name").unwrap_or("").to_owned();
    let mut params: Vec<(String, String)> = startup
        .params
        .iter()
        .filter(|(k, _)| FORWARDED_PARAMS.contains(&k.to_ascii_lowercase().as_str()))
        .cloned()
        .collect();
    let app = if client_app.is_empty() {
        format!("via portcullis:{}", identity.name)
    } else {
        format!("{client_app} via portcullis:{}", identity.name)
    };
    params.push(("application_name".into(), app));
    let target = UpstreamTarget {
        host: db
            .host
            .clone()
            .unwrap_or_else(|| config.upstream.host.clone()),
        port: db.port.unwrap_or(config.upstream.port),
        dbname: db.dbname.clone().unwrap_or_else(|| database.clone()),
        user: config.upstream.user.clone(),
        password: config.upstream.resolved_password(),
        tls: shared.upstream_tls.clone(),
        timeout: Duration::from_millis(config.upstream.connect_timeout_ms),
    };
    let mut upstream = match crate::backend::connect(&target, params).await {
        Ok(u) => u,
        Err(UpstreamError::Server(fields)) => {
            let mut out = BytesMut::new();
            fields.encode_error(&mut out);
            client.write_all(&out).await?;
            client.flush().await?;
            return Ok(());
        }
        Err(e) => {
            shared.metrics.errors.with_label_values(&["upstream"]).inc();
            tracing::warn!(%peer, error = %e, "upstream connection failed");
            fatal(
                client,
                "08006",
                &format!("the Portcullis gateway could not reach the database: {e}"),
            )
            .await;
            return Ok(());
        }
    };
    if let Some(catalog) = shared.filter.catalog() {
        // Masking needs the catalog of this database (loaded over this connection
        // when missing or due, before the client gets it).
        catalog
            .prepare_session(&database, &mut upstream, &target)
            .await;
    }
    if let Some(role) = &identity.role
        && let Err(e) = set_role(&mut upstream, role).await
    {
        fatal(
            client,
            "28000",
            &format!("cannot assume role \"{role}\" for {}: {e}", identity.name),
        )
        .await;
        return Ok(());
    }
    let cancel = shared.cancels.register(CancelTarget {
        host: target.host.clone(),
        port: target.port,
        key: UpstreamKey(upstream.key),
        interrupt: Arc::new(tokio::sync::watch::Sender::new(0)),
    });
    let mut hello = BytesMut::new();
    for (k, v) in &upstream.parameters {
        let v = if k == "application_name" {
            client_app.as_str()
        } else {
            v.as_str()
        };
        backend::parameter_status(&mut hello, k, v);
    }
    backend::backend_key_data(&mut hello, cancel.key().0);
    backend::ready_for_query(&mut hello, TransactionStatus::Idle);
    client.write_all(&hello).await?;
    client.flush().await?;

    let info = Arc::new(SessionInfo {
        session_id: shared.next_session.fetch_add(1, Ordering::Relaxed),
        identity,
        database,
        client_addr: peer,
        application_name: client_app,
    });
    tracing::info!(session = info.session_id, user = %info.identity.name, db = %info.database, %peer, "session started");
    let deps = RelayDeps {
        analyzer: Arc::clone(&shared.analyzer),
        gate: Arc::clone(&shared.gate),
        filter: Arc::clone(&shared.filter),
        metrics: shared.metrics.clone(),
        limits: shared.limits,
        audit: shared.audit.clone(),
        approvals: shared.approvals.is_some(),
    };
    let relay = Relay::new(info, deps);
    let started = std::time::Instant::now();
    if let (Some(a), Some(s)) = (&shared.audit, relay.audit_session()) {
        a.log.record(AuditEvent::for_session(EventKind::Connect, s));
    }
    let audit_session = relay.audit_session().cloned();
    let result = super::relay_io::run(client, upstream, relay, shared, cancel.interrupts()).await;
    if let (Some(a), Some(s)) = (&shared.audit, audit_session) {
        let mut e = AuditEvent::for_session(EventKind::Disconnect, &s);
        e.detail = Some(serde_json::json!({
            "duration_us": started.elapsed().as_micros() as u64,
            "error": result.as_ref().err().map(|e| e.to_string()),
        }));
        a.log.record(e);
    }
    drop(cancel);
    result
}

/// Runs `SET ROLE` upstream before the client gets the session.
async fn set_role(upstream: &mut Upstream, role: &str) -> anyhow::Result<()> {
    let mut out = BytesMut::new();
    Query::encode(
        &format!("SET ROLE \"{}\"", role.replace('"', "\"\"")),
        &mut out,
    );
    upstream.stream.write_all(&out).await?;
    upstream.stream.flush().await?;
    let decoder = portcullis_wire::FrameDecoder::new(portcullis_wire::Limits::default());
    let mut error = None;
    loop {
        while let Some(f) = decoder.decode(&mut upstream.leftover)? {
            match f.tag() {
                backend::tag::ERROR_RESPONSE => {
                    let e = ErrorFields::decode(f.tag(), f.body())?;
                    error = Some(e.message().unwrap_or("error").to_owned());
                }
                backend::tag::READY_FOR_QUERY => {
                    return match error {
                        Some(e) => Err(anyhow::anyhow!(e)),
                        None => Ok(()),
                    };
                }
                _ => {}
            }
        }
        if upstream.stream.read_buf(&mut upstream.leftover).await? == 0 {
            anyhow::bail!("upstream closed the connection");
        }
    }
}
