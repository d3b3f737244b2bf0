//! Webhook notifications of new requests and decisions: a generic JSON body or a
//! Slack-compatible message, retried with exponential backoff off the statement path, in order per webhook.
//! A webhook that fails never blocks or loses a request (the store has it); the
//! failure is logged and counted.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::model::ApprovalRequest;
use crate::config::{ApprovalsConfig, WebhookConfig, WebhookFormat};

/// Notifications waiting to be sent, at most.
const QUEUE: usize = 10_000;

/// Sends notifications in the background.
pub(super) struct Notifier {
    /// Notifications for the sender task; `None` without webhooks.
    tx: Option<mpsc::Sender<(String, ApprovalRequest)>>,
}

impl Notifier {
    /// Starts the sender task (nothing without webhooks).
    pub(super) fn start(config: &ApprovalsConfig, metrics: crate::metrics::Metrics) -> Notifier {
        if config.webhooks.is_empty() {
            return Notifier { tx: None };
        }
        let (tx, mut rx) = mpsc::channel::<(String, ApprovalRequest)>(QUEUE);
        let hooks = config.webhooks.clone();
        let public = config
            .public_url
            .clone()
            .unwrap_or_else(|| "http://127.0.0.1:9187".into());
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client with default TLS settings builds");
        // One sender per webhook, delivering in order: a reviewer's tool sees
        // "requested" before "approved", and a dead endpoint delays only its own queue.
        let senders: Vec<(WebhookConfig, mpsc::Sender<serde_json::Value>)> = hooks
            .into_iter()
            .map(|hook| {
                let (htx, mut hrx) = mpsc::channel::<serde_json::Value>(QUEUE);
                let (client, h, metrics) = (client.clone(), hook.clone(), metrics.clone());
                tokio::spawn(async move {
                    while let Some(body) = hrx.recv().await {
                        deliver(&client, &h, body, &metrics).await;
                    }
                });
                (hook, htx)
            })
            .collect();
        tokio::spawn(async move {
            while let Some((event, req)) = rx.recv().await {
                for (hook, htx) in senders.iter().filter(|(h, _)| wants(h, &req)) {
                    if htx
                        .try_send(body(hook.format, &event, &req, &public))
                        .is_err()
                    {
                        tracing::warn!(webhook = %hook.name, id = %req.id, event, "webhook queue full; notification dropped");
                    }
                }
            }
        });
        Notifier { tx: Some(tx) }
    }

    /// Queues a notification; never waits.
    pub(super) fn send(&self, event: &str, req: &ApprovalRequest) {
        if let Some(tx) = &self.tx
            && tx.try_send((event.to_owned(), req.clone())).is_err()
        {
            tracing::warn!(id = %req.id, event, "webhook queue full; notification dropped");
        }
    }
}

fn wants(hook: &WebhookConfig, req: &ApprovalRequest) -> bool {
    match &req.channel {
        Some(c) => *c == hook.name,
        None => hook.default,
    }
}

async fn deliver(
    client: &reqwest::Client,
    hook: &WebhookConfig,
    body: serde_json::Value,
    metrics: &crate::metrics::Metrics,
) {
    let mut delay = Duration::from_millis(hook.backoff_ms.max(1));
    for attempt in 1..=hook.attempts.max(1) {
        match client.post(&hook.url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {
                metrics.webhooks.with_label_values(&["delivered"]).inc();
                return;
            }
            Ok(r) => {
                tracing::warn!(webhook = %hook.name, status = %r.status(), attempt, "webhook refused a notification")
            }
            Err(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, attempt, "webhook unreachable")
            }
        }
        metrics.webhooks.with_label_values(&["retried"]).inc();
        if attempt < hook.attempts {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(60));
        }
    }
    metrics.webhooks.with_label_values(&["failed"]).inc();
    tracing::error!(webhook = %hook.name, "notification given up after {} attempts", hook.attempts);
}

/// The body for one notification.
pub(super) fn body(
    format: WebhookFormat,
    event: &str,
    req: &ApprovalRequest,
    public_url: &str,
) -> serde_json::Value {
    let page = format!(
        "{}/approvals/ui#{}",
        public_url.trim_end_matches('/'),
        req.id
    );
    match format {
        WebhookFormat::Generic => json!({
            "event": event,
            "request": req,
            "url": page,
            "approve_command": format!("portcullis approvals approve {} --reason '...'", req.id),
        }),
        WebhookFormat::Slack => {
            let who = match &req.requester.acting_for {
                Some(p) => format!("{} (acting for {p})", req.requester.user),
                None => req.requester.user.clone(),
            };
            let headline = match event {
                "requested" => format!(
                    "Approval needed: *{who}* wants to run a {} on `{}`",
                    req.statement_kind, req.database
                ),
                "approved" => format!("Approved: request {} by {who}", req.id),
                "rejected" => format!("Rejected: request {} by {who}", req.id),
                other => format!("Request {} {other}", req.id),
            };
            let sql: String = req.sql.chars().take(2000).collect();
            let text = format!(
                "{headline}\n>{}\n```{sql}```\nApprovers: {}",
                req.reason,
                req.approvers.join(", ")
            );
            json!({
                "text": text,
                "blocks": [
                    {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": format!("<{page}|Open in Portcullis> · `portcullis approvals approve {} --reason ...`", req.id)}
                    ]}
                ]
            })
        }
    }
}
