//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/audit/stream`
//! (server-sent events: one `audit` event per audit-trail line as it is written), and
//! with a policy directory `/policies` (GET), `/policies/reload` and
//! `/policies/rollback` (POST, with the control token as `Authorization: Bearer ...`);
//! with `[shadow]`, `/shadow` (the shadow set's version and counters).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;

use crate::policy::reload::watch::Action;
use tokio::net::TcpListener;

use crate::server::Shared;

/// Serves the admin endpoint until the gateway shuts down.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/policies", get(policies))
        .route(
            "/policies/reload",
            post(|s, h| control(s, h, Action::Reload)),
        )
        .route(
            "/policies/rollback",
            post(|s, h| control(s, h, Action::Rollback)),
        )
        .route("/audit/stream", get(audit_stream))
        .route("/shadow", get(crate::policy::shadow::admin_status))
        .merge(crate::approvals::http::routes())
        .with_state(shared);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "admin endpoint failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let stats = shared.analyzer.stats();
    let pc = &shared.metrics.parse_cache;
    for (label, value) in [("hit", stats.hits), ("miss", stats.misses)] {
        let c = pc.with_label_values(&[label]);
        let now = c.get();
        if value > now {
            c.inc_by(value - now);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        shared.metrics.render(),
    )
}

async fn ready(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    if *shared.shutdown.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn policies(State(shared): State<Arc<Shared>>) -> axum::response::Response {
    match &shared.policy_reload {
        Some(r) => axum::Json(r.sets().status()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "no [policy_dir] is configured (policies from [[policies]] load only at start)\n",
        )
            .into_response(),
    }
}

/// True when `headers` carry the configured control token.
fn authorised(shared: &Shared, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(token) = shared.config.admin.resolved_control_token() else {
        return Err((
            StatusCode::FORBIDDEN,
            "control endpoints are disabled: set [admin] control_token_env\n",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    use subtle::ConstantTimeEq as _;
    if given.len() == token.len() && bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "missing or wrong control token\n"))
    }
}

async fn control(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    action: Action,
) -> axum::response::Response {
    if let Err(e) = authorised(&shared, &headers) {
        return e.into_response();
    }
    let Some(r) = &shared.policy_reload else {
        return (StatusCode::NOT_FOUND, "no [policy_dir] is configured\n").into_response();
    };
    match r.run(action).await {
        Ok(status) => axum::Json(status).into_response(),
        Err(e) => (
            StatusCode::CONFLICT,
            axum::Json(serde_json::json!({ "error": e, "status": r.sets().status() })),
        )
            .into_response(),
    }
}

/// The live audit feed: every line written to the trail from now on, as an SSE event
/// named `audit` (`lagged` with a count when a slow reader missed lines). Ends when
/// the gateway shuts down.
async fn audit_stream(State(shared): State<Arc<Shared>>) -> Response {
    let Some(audit) = &shared.audit else {
        return (StatusCode::NOT_FOUND, "the audit trail is not enabled\n").into_response();
    };
    let rx = audit.log.subscribe();
    let mut shutdown = shared.shutdown.clone();
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        use tokio::sync::broadcast::error::RecvError;
        let event = match rx.recv().await {
            Ok(line) => Event::default().event("audit").data(&*line),
            Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, std::convert::Infallible>(event), rx))
    })
    .take_until(async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    });
    Sse::new(lines)
        .keep_alive(KeepAlive::default())
        .into_response()
}
