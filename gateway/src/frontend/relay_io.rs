//! The relay loop: moves bytes between a client and its upstream connection, with
//! backpressure in both directions and without ever blocking one direction on the other.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_wire::backend::{ErrorFields, Severity, TransactionStatus};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::audit::{AuditLog, Until};
use crate::backend::Upstream;
use crate::server::Shared;
use crate::session::{HoldOutcome, Relay, RelayError};
use crate::stream::Stream;

/// Stop reading from one side while this much is still queued for the other.
const HIGH_WATER: usize = 256 * 1024;
/// Read buffer size.
const READ_CHUNK: usize = 16 * 1024;

/// Client output that waits: for the audit trail, everything from the CommandComplete
/// of a statement that may have changed data on, until that statement's event is
/// durable; for the masking catalog, everything from the ReadyForQuery that ends a
/// transaction with DDL on, until the catalog is reloaded.
#[derive(Default)]
struct Held {
    bytes: BytesMut,
    /// The audit ticket to wait for, if any, and how far it must get.
    ticket: Option<(u64, Until)>,
    /// The catalog reload to wait for, if any.
    catalog: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl Held {
    /// True while client output is held back.
    fn active(&self) -> bool {
        self.ticket.is_some() || self.catalog.is_some()
    }

    /// Releases the held bytes once nothing is awaited any more.
    fn release_into(&mut self, to_client: &mut BytesMut) {
        if !self.active() {
            to_client.extend_from_slice(&self.bytes);
            self.bytes.clear();
        }
    }
}

/// Starts holding client output for a catalog reload if the relay asks for one (its
/// DDL committed): the client gets nothing more until the reload ends.
fn start_catalog_reload(
    relay: &mut Relay,
    shared: &Shared,
    to_client: &mut BytesMut,
    held: &mut Held,
) {
    let Some(at) = relay.take_catalog_refresh() else {
        return;
    };
    let Some(catalog) = shared.filter.catalog().cloned() else {
        return;
    };
    if held.catalog.is_some() {
        // A reload is awaited already; it may have read the catalog before this DDL.
        let database = relay.session().database.clone();
        let previous = held.catalog.take().expect("checked");
        held.catalog = Some(Box::pin(async move {
            previous.await;
            catalog.reload(&database).await;
        }));
        return;
    }
    if !held.active() {
        held.bytes = to_client.split_off(at.min(to_client.len()));
    }
    let database = relay.session().database.clone();
    held.catalog = Some(Box::pin(async move { catalog.reload(&database).await }));
}

/// Hands the relay's audit events to the log, and starts holding client output if one
/// of them must be durable first.
fn submit_audit(
    relay: &mut Relay,
    log: Option<&AuditLog>,
    to_client: &mut BytesMut,
    held: &mut Held,
) {
    let Some(log) = log else { return };
    let (events, hold) = relay.audit_pending();
    if events.is_empty() {
        return;
    }
    let ticket = log.submit_drain(events, hold.map(|(_, until)| until));
    if let Some((at, until)) = hold {
        if !held.active() {
            held.bytes = to_client.split_off(at.min(to_client.len()));
        }
        // Already holding: everything new went to the held buffer anyway.
        held.ticket = Some(
            held.ticket
                .map_or((ticket, until), |(t, u)| (t.max(ticket), u.max(until))),
        );
    }
}

/// The relay holds statements only when approvals are enabled; if it ever did
/// otherwise, refuse (fail closed).
fn unreachable_hold() -> HoldOutcome {
    HoldOutcome::Refuse(
        crate::pipeline::Denial {
            sqlstate: "42501".into(),
            message: "approval required, but approvals are not enabled on this gateway".into(),
            policy: "portcullis:approvals".into(),
        },
        crate::audit::ApprovalRecord {
            id: String::new(),
            status: "error".into(),
            reviewers: Vec::new(),
        },
    )
}

/// Time left until the session's token expires, when sessions end at expiry.
fn token_expiry(relay: &Relay, shared: &Shared) -> Option<Duration> {
    if shared.identities.on_expiry() != crate::config::OnExpiry::Disconnect {
        return None;
    }
    let at = relay.session().identity.expires_at?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// Relays until either side closes, the client terminates, or the gateway shuts down.
pub async fn run(
    client: &mut Stream,
    upstream: Upstream,
    mut relay: Relay,
    shared: &Shared,
    interrupts: tokio::sync::watch::Receiver<u64>,
) -> anyhow::Result<()> {
    let Upstream {
        stream: mut server,
        leftover,
        ..
    } = upstream;
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let (mut server_rd, mut server_wr) = tokio::io::split(&mut server);
    let mut from_client = BytesMut::with_capacity(READ_CHUNK);
    let mut from_server = leftover;
    let mut to_server = BytesMut::with_capacity(READ_CHUNK);
    let mut to_client = BytesMut::with_capacity(READ_CHUNK);
    let bytes_in = shared
        .metrics
        .bytes
        .with_label_values(&["client_to_server"]);
    let bytes_out = shared
        .metrics
        .bytes
        .with_label_values(&["server_to_client"]);
    let idle_timeout = Duration::from_millis(shared.config.server.idle_timeout_ms);
    let idle = tokio::time::sleep(if idle_timeout.is_zero() {
        Duration::from_secs(86_400 * 365)
    } else {
        idle_timeout
    });
    tokio::pin!(idle);
    // `[auth.jwt] on_expiry = "disconnect"`: the session ends when its token expires.
    let expiry = token_expiry(&relay, shared);
    let expires = tokio::time::sleep(expiry.unwrap_or(Duration::from_secs(86_400 * 365)));
    tokio::pin!(expires);
    let mut shutdown = shared.shutdown.clone();
    let mut draining = false;
    let mut server_open = true;
    let audit = shared.audit.as_ref().map(|a| &a.log);
    let mut durable = audit.map(|l| l.durability());
    let fail_open = shared.audit.as_ref().is_some_and(|a| a.fail_open);
    let mut held = Held::default();
    // The approval being resolved for a statement the relay holds.
    let mut approval: Option<Pin<Box<dyn Future<Output = HoldOutcome> + Send>>> = None;

    if !from_server.is_empty() {
        relay.server_input(&mut from_server, &mut to_client, Instant::now())?;
        submit_audit(&mut relay, audit, &mut to_client, &mut held);
        start_catalog_reload(&mut relay, shared, &mut to_client, &mut held);
    }
    let outcome: Result<(), RelayError> = loop {
        if approval.is_none()
            && let Some(ticket) = relay.take_hold()
        {
            approval = Some(match shared.approvals.as_ref() {
                Some(a) => {
                    let (a, rx) = (Arc::clone(a), interrupts.clone());
                    Box::pin(async move { a.resolve(ticket, rx).await })
                }
                None => Box::pin(std::future::ready(unreachable_hold())),
            });
        }
        if draining
            && !relay.holding()
            && relay.is_idle()
            && relay.transaction() == TransactionStatus::Idle
            && to_client.is_empty()
            && !held.active()
        {
            ErrorFields::new(Severity::Fatal, "57P01", "terminating connection due to administrator command (the Portcullis gateway is shutting down)")
                .encode_error(&mut to_client);
            let _ = client_wr.write_all(&to_client).await;
            let _ = client_wr.flush().await;
            break Ok(());
        }
        if relay.terminated() && to_server.is_empty() {
            break Ok(());
        }
        if !server_open && to_client.is_empty() && !held.active() {
            break Ok(());
        }
        tokio::select! {
            outcome = async { approval.as_mut().expect("guarded").await }, if approval.is_some() => {
                approval = None;
                if let Err(e) = relay.resume(outcome, &mut to_server, Instant::now()) {
                    break Err(e);
                }
                // Client messages that arrived while the statement was held.
                if let Err(e) = relay.client_input(&mut from_client, &mut to_server, Instant::now()) {
                    break Err(e);
                }
                submit_audit(&mut relay, audit, &mut to_client, &mut held);
            }
            r = client_rd.read_buf(&mut from_client), if to_server.len() < HIGH_WATER && !relay.terminated() && (!relay.holding() || from_client.len() < HIGH_WATER) => {
                let n = r?;
                if n == 0 {
                    break Ok(());
                }
                bytes_in.inc_by(n as u64);
                if !idle_timeout.is_zero() {
                    idle.as_mut().reset(tokio::time::Instant::now() + idle_timeout);
                }
                if let Err(e) = relay.client_input(&mut from_client, &mut to_server, Instant::now()) {
                    break Err(e);
                }
                submit_audit(&mut relay, audit, &mut to_client, &mut held);
                if from_client.capacity() < READ_CHUNK {
                    from_client.reserve(READ_CHUNK);
                }
            }
            r = server_rd.read_buf(&mut from_server), if server_open && to_client.len() + held.bytes.len() < HIGH_WATER => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::debug!(error = %e, "upstream read failed");
                        0
                    }
                };
                if n == 0 {
                    server_open = false;
                    if !relay.terminated() && !relay.is_idle() {
                        shared.metrics.errors.with_label_values(&["upstream"]).inc();
                        let out = if held.active() { &mut held.bytes } else { &mut to_client };
                        ErrorFields::new(Severity::Fatal, "08006", "the database server closed the connection unexpectedly")
                            .encode_error(out);
                    }
                    continue;
                }
                bytes_out.inc_by(n as u64);
                let out = if held.active() { &mut held.bytes } else { &mut to_client };
                if let Err(e) = relay.server_input(&mut from_server, out, Instant::now()) {
                    break Err(e);
                }
                submit_audit(&mut relay, audit, &mut to_client, &mut held);
                start_catalog_reload(&mut relay, shared, &mut to_client, &mut held);
                if from_server.capacity() < READ_CHUNK {
                    from_server.reserve(READ_CHUNK);
                }
            }
            r = server_wr.write_buf(&mut to_server), if !to_server.is_empty() => {
                r?;
                if to_server.is_empty() {
                    server_wr.flush().await?;
                }
            }
            r = client_wr.write_buf(&mut to_client), if !to_client.is_empty() => {
                r?;
                if to_client.is_empty() {
                    client_wr.flush().await?;
                }
            }
            _ = &mut idle, if !idle_timeout.is_zero() && !relay.holding() && relay.is_idle() && relay.transaction() == TransactionStatus::Idle && !held.active() => {
                ErrorFields::new(Severity::Fatal, "57P05", "terminating connection due to idle-session timeout")
                    .encode_error(&mut to_client);
                let _ = client_wr.write_all(&to_client).await;
                let _ = client_wr.flush().await;
                break Ok(());
            }
            _ = &mut expires, if expiry.is_some() => {
                ErrorFields::new(Severity::Fatal, "28000", format!("terminating connection because the identity token of \"{}\" expired", relay.session().identity.name))
                    .encode_error(&mut to_client);
                let _ = client_wr.write_all(&to_client).await;
                let _ = client_wr.flush().await;
                break Ok(());
            }
            r = async { durable.as_mut().expect("holding implies auditing").changed().await }, if held.ticket.is_some() => {
                let (ticket, until) = held.ticket.unwrap_or((0, Until::Synced));
                let state = match r {
                    Ok(()) => durable.as_mut().and_then(|d| d.borrow_and_update().state_of(ticket, until)),
                    Err(_) => Some(false),
                };
                match state {
                    Some(true) => {
                        held.ticket = None;
                        held.release_into(&mut to_client);
                    }
                    Some(false) if fail_open => {
                        // audit.fail_open: the statement goes on unaudited.
                        tracing::warn!("audit trail not written; releasing a result anyway (audit.fail_open)");
                        held.ticket = None;
                        held.release_into(&mut to_client);
                    }
                    Some(false) => {
                        // The statement ran but its event is not on disk: its result is
                        // never released (the client cannot take it as acknowledged).
                        shared.metrics.errors.with_label_values(&["audit"]).inc();
                        ErrorFields::new(Severity::Fatal, crate::audit::record::SINK_FAILED_SQLSTATE, "the audit trail could not record the last statement, so its result is withheld (it may have been applied); the connection is closed")
                            .encode_error(&mut to_client);
                        let _ = client_wr.write_all(&to_client).await;
                        let _ = client_wr.flush().await;
                        break Ok(());
                    }
                    None => {}
                }
            }
            () = async { held.catalog.as_mut().expect("guarded").await }, if held.catalog.is_some() => {
                held.catalog = None;
                held.release_into(&mut to_client);
            }
            _ = shutdown.changed(), if !draining => {
                draining = true;
            }
        }
    };
    if let Err(e) = outcome {
        let (code, kind) = match &e {
            RelayError::Client(w) => (w.sqlstate(), "protocol"),
            RelayError::Server(_) => ("08P01", "upstream"),
            RelayError::Filter(_) => ("XX000", "filter"),
        };
        shared.metrics.errors.with_label_values(&[kind]).inc();
        let mut out = BytesMut::new();
        ErrorFields::new(Severity::Fatal, code, e.to_string()).encode_error(&mut out);
        let _ = client_wr.write_all(&to_client).await;
        let _ = client_wr.write_all(&out).await;
        let _ = client_wr.flush().await;
    }
    // Tell the server goodbye if the client did not.
    if server_open && !relay.terminated() {
        let mut bye = BytesMut::new();
        portcullis_wire::frontend::terminate(&mut bye);
        let _ = server_wr.write_all(&bye).await;
    }
    let _ = server_wr.shutdown().await;
    Ok(())
}
