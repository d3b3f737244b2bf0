//! Approvals: a statement the policies hold runs only once an entitled reviewer says
//! yes.
//!
//! The relay parks the held statement and hands the I/O layer a
//! [`HoldTicket`]; [`Approvals::resolve`] turns it into a
//! request in the [`store`], asks the policies' `approve-hook` how to route it,
//! notifies webhooks, and (in `hold` mode) waits for a decision, the timeout, or the
//! client's cancel. In `defer` mode the client is told the request id at once, and the
//! same identity re-running the same statement (text and parameters) within the TTL
//! runs it once. Reviewers decide through the admin API ([`http`]), its web page, or
//! the CLI ([`cli`]); the store makes every rule (no self-approval, only routed
//! approvers, one use per approval) hold across gateway replicas.

pub mod cli;
pub mod http;
pub mod model;
mod notify;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::audit::ApprovalRecord;
use crate::config::{ApprovalMode, ApprovalsConfig};
use crate::identity::Identity;
use crate::pipeline::{ApprovalAsk, ApprovalRoute, Denial, Gate};
use crate::session::{HoldOutcome, HoldTicket};
use model::{ApprovalRequest, Requester, Review, Status, now_ms};
use notify::Notifier;
use store::{Store, UpdateRefused};

/// SQLSTATE of a statement whose approval was refused, or that waits for one (defer).
pub const NOT_APPROVED_SQLSTATE: &str = "42501";
/// SQLSTATE of a held statement that timed out or was canceled (as `statement_timeout`
/// and a cancel request give in PostgreSQL).
pub const CANCELED_SQLSTATE: &str = "57014";
/// SQLSTATE when the approvals store cannot be written (fail closed).
pub const STORE_FAILED_SQLSTATE: &str = "58030";

/// Name of the gate rule in denials and audit records.
const POLICY: &str = "portcullis:approvals";

/// Why a review was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// No such request.
    #[error("no approval request {0}")]
    NotFound(String),
    /// The reviewer may not decide this request.
    #[error("{0}")]
    Forbidden(String),
    /// The request is no longer pending.
    #[error("{0}")]
    Conflict(String),
    /// The store failed.
    #[error("approvals store: {0:#}")]
    Store(anyhow::Error),
}

/// The approvals service of one gateway.
pub struct Approvals {
    /// `[approvals]`.
    config: ApprovalsConfig,
    /// Where requests live.
    store: Store,
    /// Routes requests (`approve-hook` of the live policies).
    gate: Arc<dyn Gate>,
    /// Webhooks.
    notifier: Notifier,
    /// This replica's name in the requests it creates.
    gateway_id: String,
    /// Counters.
    metrics: crate::metrics::Metrics,
}

impl Approvals {
    /// Opens the store and starts the notifier.
    pub async fn start(
        config: ApprovalsConfig,
        gate: Arc<dyn Gate>,
        metrics: crate::metrics::Metrics,
    ) -> anyhow::Result<Arc<Approvals>> {
        let store = Store::open(&config).await?;
        let notifier = Notifier::start(&config, metrics.clone());
        Ok(Arc::new(Approvals {
            gateway_id: format!(
                "{}:{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "gateway".into()),
                std::process::id()
            ),
            config,
            store,
            gate,
            notifier,
            metrics,
        }))
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The configuration.
    pub fn config(&self) -> &ApprovalsConfig {
        &self.config
    }

    fn count(&self, what: &str) {
        self.metrics.approvals.with_label_values(&[what]).inc();
    }

    /// Decides what happens to a held statement. `cancel` changes when the client
    /// sends a CancelRequest. Dropping the future (the client went away) withdraws a
    /// pending request.
    pub async fn resolve(
        self: &Arc<Self>,
        ticket: HoldTicket,
        cancel: watch::Receiver<u64>,
    ) -> HoldOutcome {
        match self.resolve_inner(&ticket, cancel).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "approvals store failed; statement refused");
                self.count("store_error");
                HoldOutcome::Refuse(
                    Denial {
                        sqlstate: STORE_FAILED_SQLSTATE.into(),
                        message: format!(
                            "approval required ({}), but the approvals store failed ({e:#}); statement refused",
                            ticket.need.reason
                        ),
                        policy: POLICY.into(),
                    },
                    ApprovalRecord {
                        id: String::new(),
                        status: "error".into(),
                        reviewers: Vec::new(),
                    },
                )
            }
        }
    }

    async fn resolve_inner(
        self: &Arc<Self>,
        ticket: &HoldTicket,
        mut cancel: watch::Receiver<u64>,
    ) -> anyhow::Result<HoldOutcome> {
        cancel.borrow_and_update();
        let identity = &ticket.session.identity;
        let stmt = &ticket.analysis.statements[ticket.index];
        // An agent acting for someone is a different requester from the agent alone.
        let who = match &identity.acting_for {
            Some(p) => format!("{}\u{0}{p}", identity.name),
            None => identity.name.clone(),
        };
        let key =
            ApprovalRequest::match_key(&who, &ticket.session.database, &ticket.sql, &ticket.params);
        let now = now_ms();
        if let Some(r) = self.store.consume_match(&key, now).await? {
            self.count("reused");
            tracing::info!(id = %r.id, user = %identity.name, "deferred statement runs under its approval");
            self.notifier.send("executed", &r);
            return Ok(HoldOutcome::Run(record(&r, "approved")));
        }
        let id = ApprovalRequest::new_id();
        let ask = ApprovalAsk {
            id: &id,
            need: &ticket.need,
            requested_at_ms: now,
        };
        let route = self.gate.route_approval(&ticket.context(), &ask);
        let mode = ticket.need.mode.unwrap_or(self.config.mode);
        let mut req = ApprovalRequest {
            id: id.clone(),
            status: Status::Pending,
            mode,
            created_at_ms: now,
            expires_at_ms: now + u64::from(self.config.default_ttl_seconds) * 1000,
            updated_at_ms: now,
            requester: Requester {
                user: identity.name.clone(),
                kind: identity.kind.as_str().into(),
                groups: identity.groups.clone(),
                acting_for: identity.acting_for.clone(),
                client_addr: ticket.session.client_addr.to_string(),
                application: ticket.session.application_name.clone(),
                session_id: ticket.session.session_id,
            },
            database: ticket.session.database.clone(),
            sql: ticket.sql.to_string(),
            fingerprint: stmt.fingerprint.clone(),
            params: ticket.params.clone(),
            statement_kind: stmt.kind.as_str().into(),
            tables: stmt
                .tables
                .iter()
                .map(|t| format!("{}:{}", t.name, t.access.as_str()))
                .collect(),
            reason: ticket.need.reason.clone(),
            policy: ticket.need.policy.clone(),
            approvers: ticket.need.approvers.clone(),
            required: 1,
            channel: None,
            reviews: Vec::new(),
            note: None,
            match_key: key,
            gateway: self.gateway_id.clone(),
        };
        match route {
            ApprovalRoute::AutoApprove(reason) => {
                req.status = Status::Consumed;
                req.note = Some(reason);
                self.store.insert(&req).await?;
                self.count("auto_approved");
                self.notifier.send("auto-approved", &req);
                return Ok(HoldOutcome::Run(record(&req, "auto-approved")));
            }
            ApprovalRoute::AutoReject(reason) => {
                req.status = Status::Rejected;
                req.note = Some(reason.clone());
                self.store.insert(&req).await?;
                self.count("auto_rejected");
                self.notifier.send("auto-rejected", &req);
                return Ok(refuse(
                    &req,
                    NOT_APPROVED_SQLSTATE,
                    format!("approval request {id} was rejected: {reason}"),
                ));
            }
            ApprovalRoute::Route {
                approvers,
                required,
                ttl_seconds,
                channel,
            } => {
                req.approvers = approvers;
                req.required = required.max(1);
                if let Some(ttl) = ttl_seconds {
                    req.expires_at_ms = now + u64::from(ttl) * 1000;
                }
                req.channel = channel;
            }
        }
        self.store.insert(&req).await?;
        self.count("requested");
        tracing::info!(id = %id, user = %identity.name, approvers = ?req.approvers, mode = mode.as_str(), "approval requested");
        self.notifier.send("requested", &req);
        if mode == ApprovalMode::Defer {
            return Ok(refuse(
                &req,
                NOT_APPROVED_SQLSTATE,
                format!(
                    "approval required: {}. Request {id} is pending for {}; once approved (`portcullis approvals approve {id}`), run the same statement again within {}",
                    req.reason,
                    approvers_text(&req.approvers),
                    humantime::format_duration(Duration::from_millis(req.expires_at_ms - now)),
                ),
            ));
        }
        let mut guard = WithdrawOnDrop {
            approvals: Arc::clone(self),
            id: Some(id.clone()),
        };
        let outcome = self.wait(&req, &mut cancel).await;
        guard.id = None;
        outcome
    }

    /// Waits for a held request's decision, its timeout, or a cancel.
    async fn wait(
        &self,
        req: &ApprovalRequest,
        cancel: &mut watch::Receiver<u64>,
    ) -> anyhow::Result<HoldOutcome> {
        let id = &req.id;
        let timeout = Duration::from_millis(self.config.hold_timeout_ms);
        let ttl = Duration::from_millis(req.expires_at_ms.saturating_sub(now_ms()));
        let deadline = tokio::time::Instant::now() + timeout.min(ttl);
        let mut changes = self.store.subscribe();
        loop {
            changes.borrow_and_update();
            let current = self.store.get(id).await?;
            let Some(mut current) = current else {
                anyhow::bail!("request {id} vanished from the store");
            };
            current.expire_if_due(now_ms());
            match current.status {
                Status::Pending => {}
                Status::Approved => {
                    let used = self
                        .store
                        .update(id, |r| {
                            if r.status != Status::Approved {
                                return Err(format!("request is {}", r.status.as_str()));
                            }
                            r.status = Status::Consumed;
                            r.updated_at_ms = now_ms();
                            Ok(())
                        })
                        .await?;
                    if let Ok(r) = used {
                        self.count("executed");
                        self.notifier.send("executed", &r);
                        return Ok(HoldOutcome::Run(record(&r, "approved")));
                    }
                    continue;
                }
                Status::Rejected => {
                    let why = current
                        .reviews
                        .iter()
                        .find(|r| !r.approve)
                        .map(|r| format!(" by {}: {}", r.reviewer, r.reason))
                        .unwrap_or_default();
                    return Ok(refuse(
                        &current,
                        NOT_APPROVED_SQLSTATE,
                        format!("approval request {id} was rejected{why}"),
                    ));
                }
                Status::Expired | Status::Withdrawn | Status::Consumed => {
                    return Ok(refuse(
                        &current,
                        CANCELED_SQLSTATE,
                        format!("approval request {id} is {}", current.status.as_str()),
                    ));
                }
            }
            tokio::select! {
                r = changes.changed() => {
                    if r.is_err() {
                        anyhow::bail!("approvals store closed");
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    let r = self.withdraw(id, "timed out while held").await;
                    self.count("timed_out");
                    return Ok(refuse(
                        r.as_ref().unwrap_or(&current),
                        CANCELED_SQLSTATE,
                        format!(
                            "canceling statement: approval request {id} was not decided within {} (withdrawn)",
                            humantime::format_duration(timeout.min(ttl))
                        ),
                    ));
                }
                r = cancel.changed() => {
                    if r.is_ok() {
                        let r = self.withdraw(id, "canceled by the client").await;
                        self.count("canceled");
                        return Ok(refuse(
                            r.as_ref().unwrap_or(&current),
                            CANCELED_SQLSTATE,
                            format!("canceling statement due to user request (approval request {id} withdrawn)"),
                        ));
                    }
                }
            }
        }
    }

    /// Withdraws a pending request (cancel, timeout, client gone).
    async fn withdraw(&self, id: &str, why: &str) -> Option<ApprovalRequest> {
        let result = self
            .store
            .update(id, |r| {
                if r.status != Status::Pending {
                    return Err(format!("request is {}", r.status.as_str()));
                }
                r.status = Status::Withdrawn;
                r.note = Some(why.to_owned());
                r.updated_at_ms = now_ms();
                Ok(())
            })
            .await;
        match result {
            Ok(Ok(r)) => {
                tracing::info!(id, why, "approval request withdrawn");
                self.notifier.send("withdrawn", &r);
                Some(r)
            }
            Ok(Err(_)) => None,
            Err(e) => {
                tracing::warn!(id, error = %format!("{e:#}"), "cannot withdraw approval request");
                None
            }
        }
    }

    /// Applies a verified reviewer's decision.
    pub async fn review(
        &self,
        id: &str,
        reviewer: &Identity,
        approve: bool,
        reason: &str,
    ) -> Result<ApprovalRequest, ReviewError> {
        let current = self
            .store
            .get(id)
            .await
            .map_err(ReviewError::Store)?
            .ok_or_else(|| ReviewError::NotFound(id.to_owned()))?;
        may_review(&current, reviewer).map_err(ReviewError::Forbidden)?;
        let name = reviewer.name.clone();
        let reason = reason.to_owned();
        let updated = self
            .store
            .update(id, move |r| {
                r.expire_if_due(now_ms());
                if r.status != Status::Pending {
                    return Err(format!(
                        "request {} is {}, not pending",
                        r.id,
                        r.status.as_str()
                    ));
                }
                if r.reviews.iter().any(|v| v.reviewer == name) {
                    return Err(format!("{name} has already reviewed request {}", r.id));
                }
                let now = now_ms();
                r.reviews.push(Review {
                    reviewer: name,
                    approve,
                    at_ms: now,
                    reason,
                });
                r.updated_at_ms = now;
                if !approve {
                    r.status = Status::Rejected;
                } else if r.approvals().count() as u32 >= r.required {
                    r.status = Status::Approved;
                }
                Ok(())
            })
            .await
            .map_err(ReviewError::Store)?;
        let r = updated.map_err(|e| match e {
            UpdateRefused::NotFound(id) => ReviewError::NotFound(id),
            UpdateRefused::Refused(m) => ReviewError::Conflict(m),
        })?;
        let event = match (approve, r.status) {
            (false, _) => "rejected",
            (true, Status::Approved) => "approved",
            _ => "approval-recorded",
        };
        self.count(event);
        tracing::info!(id, reviewer = %reviewer.name, event, "approval review");
        self.notifier.send(event, &r);
        Ok(r)
    }
}

/// Whether `reviewer` may decide `req`: never the requester (nor the person an agent
/// acts for), and only someone the routing named.
pub fn may_review(req: &ApprovalRequest, reviewer: &Identity) -> Result<(), String> {
    if reviewer.name == req.requester.user
        || req.requester.acting_for.as_deref() == Some(reviewer.name.as_str())
    {
        return Err(format!(
            "{} cannot review request {}: a requester never approves their own request",
            reviewer.name, req.id
        ));
    }
    let routed = req.approvers.iter().any(|a| {
        if let Some(u) = a.strip_prefix("user:") {
            u == reviewer.name
        } else if let Some(g) = a.strip_prefix("group:") {
            reviewer.in_group(g)
        } else {
            false
        }
    });
    if !routed {
        return Err(format!(
            "{} may not review request {}: it is routed to {}",
            reviewer.name,
            req.id,
            approvers_text(&req.approvers)
        ));
    }
    Ok(())
}

fn approvers_text(a: &[String]) -> String {
    if a.is_empty() {
        "nobody (no approvers were routed)".into()
    } else {
        a.join(", ")
    }
}

fn record(r: &ApprovalRequest, status: &str) -> ApprovalRecord {
    ApprovalRecord {
        id: r.id.clone(),
        status: status.into(),
        reviewers: r.reviews.iter().map(|v| v.reviewer.clone()).collect(),
    }
}

fn refuse(r: &ApprovalRequest, sqlstate: &str, message: String) -> HoldOutcome {
    let status = if r.status == Status::Pending && r.mode == ApprovalMode::Defer {
        "pending"
    } else {
        r.status.as_str()
    };
    HoldOutcome::Refuse(
        Denial {
            sqlstate: sqlstate.into(),
            message,
            policy: if r.policy.is_empty() {
                POLICY.into()
            } else {
                r.policy.clone()
            },
        },
        record(r, status),
    )
}

/// Withdraws a held request when its waiter goes away (the client disconnected).
struct WithdrawOnDrop {
    approvals: Arc<Approvals>,
    id: Option<String>,
}

impl Drop for WithdrawOnDrop {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let a = Arc::clone(&self.approvals);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    a.withdraw(&id, "the client disconnected").await;
                });
            }
        }
    }
}
