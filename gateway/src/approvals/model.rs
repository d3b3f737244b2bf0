//! Approval requests as the store keeps them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::ApprovalMode;

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Waiting for reviewers.
    Pending,
    /// Approved; in defer mode, not yet used by a re-run.
    Approved,
    /// Rejected by a reviewer or by the routing policy.
    Rejected,
    /// Its TTL passed before it was decided (or used).
    Expired,
    /// The requester gave up: cancel, disconnect, or hold timeout.
    Withdrawn,
    /// Approved, and the statement ran under it (defer mode: used once).
    Consumed,
}

impl Status {
    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Withdrawn => "withdrawn",
            Status::Consumed => "consumed",
        }
    }

    /// True once nothing can change it any more.
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Pending | Status::Approved)
    }
}

/// Who asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    /// User name.
    pub user: String,
    /// `person`, `service` or `agent`.
    pub kind: String,
    /// Groups.
    pub groups: Vec<String>,
    /// For an agent acting for a person: that person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_for: Option<String>,
    /// Client address.
    pub client_addr: String,
    /// `application_name`.
    pub application: String,
    /// Gateway session id.
    pub session_id: u64,
}

/// One reviewer's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    /// The verified reviewer.
    pub reviewer: String,
    /// True for approve, false for reject.
    pub approve: bool,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Why.
    pub reason: String,
}

/// An approval request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// `apr-` and 16 hex digits.
    pub id: String,
    /// Where it stands.
    pub status: Status,
    /// Hold or defer.
    pub mode: ApprovalMode,
    /// When it was made (ms since the Unix epoch).
    pub created_at_ms: u64,
    /// When it (and an approval) stops being valid.
    pub expires_at_ms: u64,
    /// Last change.
    pub updated_at_ms: u64,
    /// Who asked.
    pub requester: Requester,
    /// Target database.
    pub database: String,
    /// The SQL as sent.
    pub sql: String,
    /// Literal-free fingerprint of the held statement.
    pub fingerprint: String,
    /// Bound parameters (extended protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Option<String>>,
    /// Statement kind.
    pub statement_kind: String,
    /// Tables touched, with access (`public.customers:write`).
    pub tables: Vec<String>,
    /// Why approval is needed.
    pub reason: String,
    /// The policies that asked.
    pub policy: String,
    /// Who may approve (`group:dba`, `user:bob`).
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required: u32,
    /// Notification channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Reviews so far.
    #[serde(default)]
    pub reviews: Vec<Review>,
    /// Routing outcome note (auto-approved/-rejected reason, withdrawal cause).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What a re-run must match (defer mode): digest of identity, database, SQL text
    /// and parameters.
    pub match_key: String,
    /// The gateway replica that created it.
    pub gateway: String,
}

impl ApprovalRequest {
    /// A fresh request id.
    pub fn new_id() -> String {
        format!("apr-{:016x}", rand::random::<u64>())
    }

    /// The key a deferred re-run must match: same user (and principal it acts for),
    /// same database, same SQL text, same parameters.
    pub fn match_key(user: &str, database: &str, sql: &str, params: &[Option<String>]) -> String {
        let mut h = Sha256::new();
        for part in [user, database, sql] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.update((params.len() as u64).to_le_bytes());
        for p in params {
            match p {
                None => h.update([0u8]),
                Some(v) => {
                    h.update([1u8]);
                    h.update((v.len() as u64).to_le_bytes());
                    h.update(v.as_bytes());
                }
            }
        }
        hex::encode(h.finalize())
    }

    /// Reviewers who approved.
    pub fn approvals(&self) -> impl Iterator<Item = &Review> {
        self.reviews.iter().filter(|r| r.approve)
    }

    /// Treats a pending or approved request past its TTL as expired.
    pub fn expire_if_due(&mut self, now_ms: u64) -> bool {
        if matches!(self.status, Status::Pending | Status::Approved) && now_ms >= self.expires_at_ms
        {
            self.status = Status::Expired;
            self.updated_at_ms = now_ms;
            return true;
        }
        false
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn match_keys_separate_fields() {
        let a = ApprovalRequest::match_key("ab", "c", "SELECT 1", &[]);
        let b = ApprovalRequest::match_key("a", "bc", "SELECT 1", &[]);
        assert_ne!(a, b);
        let p1 = ApprovalRequest::match_key("a", "b", "q", &[None]);
        let p2 = ApprovalRequest::match_key("a", "b", "q", &[Some(String::new())]);
        assert_ne!(p1, p2);
        assert_eq!(p1, ApprovalRequest::match_key("a", "b", "q", &[None]));
    }
}
