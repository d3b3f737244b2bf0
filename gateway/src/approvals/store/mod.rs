//! The approvals store: an embedded file (default) or a PostgreSQL table shared by
//! gateway replicas. Every change bumps a version watchers can wait on.

mod file;
mod postgres;

use tokio::sync::watch;

pub use file::FileStore;
pub use postgres::PgStore;

use super::model::ApprovalRequest;
use crate::config::{ApprovalStoreKind, ApprovalsConfig};

/// What a read-modify-write decided: the new request, or why it was refused.
pub type Updated = Result<ApprovalRequest, UpdateRefused>;

/// Why an update was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateRefused {
    /// No request has that id.
    #[error("no approval request {0}")]
    NotFound(String),
    /// The change is not allowed (self-approval, not pending, ...).
    #[error("{0}")]
    Refused(String),
}

/// A store of approval requests.
pub enum Store {
    /// A single local file.
    File(FileStore),
    /// A PostgreSQL table.
    Postgres(PgStore),
}

impl Store {
    /// Opens the store the config names (creating the file or table if missing).
    pub async fn open(config: &ApprovalsConfig) -> anyhow::Result<Store> {
        match config.store {
            ApprovalStoreKind::File => Ok(Store::File(FileStore::open(&config.path)?)),
            ApprovalStoreKind::Postgres => {
                let url = config
                    .resolved_postgres_url()
                    .ok_or_else(|| anyhow::anyhow!("approvals.postgres_url is not set"))?;
                Ok(Store::Postgres(
                    PgStore::open(&url, &config.table, config.poll_ms).await?,
                ))
            }
        }
    }

    /// Adds a new request.
    pub async fn insert(&self, r: &ApprovalRequest) -> anyhow::Result<()> {
        match self {
            Store::File(s) => s.insert(r),
            Store::Postgres(s) => s.insert(r).await,
        }
    }

    /// One request.
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<ApprovalRequest>> {
        match self {
            Store::File(s) => Ok(s.get(id)),
            Store::Postgres(s) => s.get(id).await,
        }
    }

    /// Requests, newest first: only pending (and approved, unused) ones when `open`.
    pub async fn list(&self, open: bool, limit: usize) -> anyhow::Result<Vec<ApprovalRequest>> {
        match self {
            Store::File(s) => Ok(s.list(open, limit)),
            Store::Postgres(s) => s.list(open, limit).await,
        }
    }

    /// Applies `f` to request `id` atomically (across replicas for PostgreSQL).
    pub async fn update<F>(&self, id: &str, f: F) -> anyhow::Result<Updated>
    where
        F: FnOnce(&mut ApprovalRequest) -> Result<(), String> + Send,
    {
        match self {
            Store::File(s) => s.update(id, f),
            Store::Postgres(s) => s.update(id, f).await,
        }
    }

    /// Marks the oldest approved, unexpired request with `match_key` consumed and
    /// returns it: a deferred statement re-run under its approval (once).
    pub async fn consume_match(
        &self,
        match_key: &str,
        now_ms: u64,
    ) -> anyhow::Result<Option<ApprovalRequest>> {
        match self {
            Store::File(s) => s.consume_match(match_key, now_ms),
            Store::Postgres(s) => s.consume_match(match_key, now_ms).await,
        }
    }

    /// A receiver that changes whenever any request changes (for PostgreSQL, seen by
    /// polling, including changes made by other replicas).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        match self {
            Store::File(s) => s.subscribe(),
            Store::Postgres(s) => s.subscribe(),
        }
    }
}
