//! The reviewers' admin API and web page.
//!
//! - `GET /approvals[?all=true]`: pending (and approved, unused) requests, newest first;
//! - `GET /approvals/{id}`: one request;
//! - `POST /approvals/{id}/approve`, `POST /approvals/{id}/reject`: body
//!   `{"reason": "..."}`;
//! - `GET /approvals/ui`: the web page (it signs in with the same credentials).
//!
//! Every API call needs a verified reviewer: HTTP Basic with a gateway identity and its
//! password, checked against the identity's SCRAM verifier. 401 without or with wrong
//! credentials, 403 for a reviewer who may not decide (the requester, or someone the
//! request was not routed to), 404 for an unknown id, 409 for a request no longer
//! pending.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;

use super::{Approvals, ReviewError};
use crate::identity::{Identity, IdentityStore};
use crate::server::Shared;

/// Longest review reason accepted.
const MAX_REASON: usize = 4096;

/// The approval routes, to merge into the admin router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/approvals", get(list))
        .route("/approvals/ui", get(page))
        .route("/approvals/{id}", get(show))
        .route(
            "/approvals/{id}/approve",
            post(|s, h, p, b| review(s, h, p, b, true)),
        )
        .route(
            "/approvals/{id}/reject",
            post(|s, h, p, b| review(s, h, p, b, false)),
        )
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

/// The verified reviewer behind `Authorization: Basic ...`: a gateway identity with
/// its password, or (where tokens are configured) an identity-provider token as the
/// password.
#[allow(clippy::result_large_err)] // the error is the ready response
pub async fn reviewer(
    identities: &IdentityStore,
    headers: &HeaderMap,
) -> Result<Arc<Identity>, Response> {
    let unauthorized = |m: &str| {
        let mut r = error(StatusCode::UNAUTHORIZED, m);
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"portcullis approvals\""),
        );
        r
    };
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return Err(unauthorized("sign in as a gateway identity (HTTP Basic)"));
    };
    if value.len() > 4096 {
        return Err(unauthorized("credentials too long"));
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
        return Err(unauthorized("malformed Basic credentials"));
    };
    match identities.verify_password(user, password).await {
        Ok(id) => Ok(id),
        Err(_) => Err(unauthorized("wrong user name, password or token")),
    }
}

#[allow(clippy::result_large_err)]
fn service(shared: &Shared) -> Result<&Arc<Approvals>, Response> {
    shared.approvals.as_ref().ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            "approvals are not enabled on this gateway (no [approvals] section)",
        )
    })
}

/// The approvals service and the verified reviewer making the request, or the
/// response refusing it.
async fn reviewed<'a>(
    shared: &'a Shared,
    headers: &HeaderMap,
) -> Result<(&'a Arc<Approvals>, Arc<Identity>), Response> {
    let a = service(shared)?;
    let who = reviewer(&shared.identities, headers).await?;
    Ok((a, who))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
    #[serde(default)]
    limit: Option<usize>,
}

async fn list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let a = match reviewed(&shared, &headers).await {
        Ok((a, _)) => a,
        Err(r) => return r,
    };
    match a
        .store()
        .list(!q.all, q.limit.unwrap_or(200).min(10_000))
        .await
    {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

async fn show(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let a = match reviewed(&shared, &headers).await {
        Ok((a, _)) => a,
        Err(r) => return r,
    };
    match a.store().get(&id).await {
        Ok(Some(mut r)) => {
            r.expire_if_due(super::model::now_ms());
            Json(r).into_response()
        }
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no approval request {id}")),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    }
}

#[derive(Deserialize, Default)]
struct ReviewBody {
    #[serde(default)]
    reason: String,
}

async fn review(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Option<Json<ReviewBody>>,
    approve: bool,
) -> Response {
    let (a, who) = match reviewed(&shared, &headers).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let reason = body.map(|b| b.0.reason).unwrap_or_default();
    if reason.len() > MAX_REASON {
        return error(
            StatusCode::BAD_REQUEST,
            format!("reason longer than {MAX_REASON} bytes"),
        );
    }
    match a.review(&id, &who, approve, &reason).await {
        Ok(r) => Json(r).into_response(),
        Err(e @ ReviewError::NotFound(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ ReviewError::Forbidden(_)) => error(StatusCode::FORBIDDEN, e.to_string()),
        Err(e @ ReviewError::Conflict(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ ReviewError::Store(_)) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn page() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Html(include_str!("page.html")),
    )
}
