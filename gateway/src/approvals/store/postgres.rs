//! The shared store: one PostgreSQL table, so several gateway replicas see the same
//! requests. Updates lock the row (`SELECT ... FOR UPDATE`), so two replicas never
//! both apply a review or both use one approval; a poller turns other replicas'
//! changes into local wake-ups.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::{Mutex, watch};
use tokio_postgres::{Client, NoTls};

use super::{UpdateRefused, Updated};
use crate::approvals::model::ApprovalRequest;

/// A PostgreSQL-backed store.
pub struct PgStore {
    /// The connection string (kept to reconnect).
    url: String,
    /// The table.
    table: String,
    /// The connection, replaced when it breaks.
    client: Arc<Mutex<Option<Client>>>,
    /// Bumped whenever the table's version moves.
    version: watch::Sender<u64>,
}

async fn connect(url: &str) -> anyhow::Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect to the approvals database")?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "approvals store connection ended");
        }
    });
    Ok(client)
}

impl PgStore {
    /// Connects, creates the table if missing, and starts the poller.
    pub async fn open(url: &str, table: &str, poll_ms: u64) -> anyhow::Result<PgStore> {
        let client = connect(url).await?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (
                id text PRIMARY KEY,
                status text NOT NULL,
                match_key text NOT NULL,
                created_at_ms bigint NOT NULL,
                expires_at_ms bigint NOT NULL,
                version bigint NOT NULL,
                body jsonb NOT NULL);
             CREATE SEQUENCE IF NOT EXISTS {table}_version;
             CREATE INDEX IF NOT EXISTS {table}_match ON {table} (match_key) WHERE status = 'approved';"
        );
        // Two replicas creating the table at once can collide; the second try sees it.
        if let Err(e) = client.batch_execute(&ddl).await {
            tracing::debug!(error = %e, "approvals table creation raced; retrying");
            tokio::time::sleep(Duration::from_millis(100)).await;
            client
                .batch_execute(&ddl)
                .await
                .context("cannot create the approvals table")?;
        }
        let store = PgStore {
            url: url.to_owned(),
            table: table.to_owned(),
            client: Arc::new(Mutex::new(Some(client))),
            version: watch::Sender::new(0),
        };
        store.spawn_poller(Duration::from_millis(poll_ms));
        Ok(store)
    }

    fn spawn_poller(&self, every: Duration) {
        let client = Arc::downgrade(&self.client);
        let url = self.url.clone();
        let sql = format!("SELECT coalesce(max(version), 0) FROM {}", self.table);
        let version = self.version.clone();
        tokio::spawn(async move {
            let mut last = 0i64;
            loop {
                tokio::time::sleep(every).await;
                // The store is gone: stop polling.
                let Some(client) = client.upgrade() else {
                    return;
                };
                let v = {
                    let mut guard = client.lock().await;
                    match with_client(&mut guard, &url).await {
                        Ok(c) => c.query_one(&sql, &[]).await.map(|r| r.get::<_, i64>(0)),
                        Err(e) => {
                            tracing::warn!(error = %e, "approvals store unreachable");
                            continue;
                        }
                    }
                };
                match v {
                    Ok(v) if v != last => {
                        last = v;
                        version.send_modify(|x| *x += 1);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "approvals store poll failed");
                        *client.lock().await = None;
                    }
                }
            }
        });
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    async fn run<T, F>(&self, f: F) -> anyhow::Result<T>
    where
        F: AsyncFnOnce(&mut Client) -> Result<T, tokio_postgres::Error>,
    {
        let mut guard = self.client.lock().await;
        let client = with_client(&mut guard, &self.url).await?;
        match f(client).await {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_closed() {
                    *guard = None;
                }
                Err(anyhow::Error::new(e).context("approvals store query failed"))
            }
        }
    }

    /// Adds a request.
    pub async fn insert(&self, r: &ApprovalRequest) -> anyhow::Result<()> {
        let body = serde_json::to_string(r)?;
        let sql = format!(
            "INSERT INTO {t} (id, status, match_key, created_at_ms, expires_at_ms, version, body)
             VALUES ($1, $2, $3, $4, $5, nextval('{t}_version'), $6::text::jsonb)",
            t = self.table
        );
        let (id, status, key) = (r.id.clone(), r.status.as_str(), r.match_key.clone());
        let (created, expires) = (r.created_at_ms as i64, r.expires_at_ms as i64);
        self.run(async |c| {
            c.execute(&sql, &[&id, &status, &key, &created, &expires, &body])
                .await
        })
        .await?;
        self.changed();
        Ok(())
    }

    /// One request.
    pub async fn get(&self, id: &str) -> anyhow::Result<Option<ApprovalRequest>> {
        let sql = format!("SELECT body::text FROM {} WHERE id = $1", self.table);
        let id = id.to_owned();
        let row = self.run(async |c| c.query_opt(&sql, &[&id]).await).await?;
        row.map(|r| parse(&r.get::<_, String>(0))).transpose()
    }

    /// Requests, newest first.
    pub async fn list(&self, open: bool, limit: usize) -> anyhow::Result<Vec<ApprovalRequest>> {
        let filter = if open {
            "WHERE status IN ('pending', 'approved')"
        } else {
            ""
        };
        let sql = format!(
            "SELECT body::text FROM {} {filter} ORDER BY created_at_ms DESC LIMIT {}",
            self.table,
            limit.min(10_000)
        );
        let rows = self.run(async |c| c.query(&sql, &[]).await).await?;
        let now = crate::approvals::model::now_ms();
        rows.iter()
            .map(|r| {
                let mut a = parse(&r.get::<_, String>(0))?;
                a.expire_if_due(now);
                Ok(a)
            })
            .filter(|a| {
                !open
                    || a.as_ref().map_or(true, |a| {
                        matches!(
                            a.status,
                            crate::approvals::model::Status::Pending
                                | crate::approvals::model::Status::Approved
                        )
                    })
            })
            .collect()
    }

    /// Read-modify-write of one request, under a row lock.
    pub async fn update<F>(&self, id: &str, f: F) -> anyhow::Result<Updated>
    where
        F: FnOnce(&mut ApprovalRequest) -> Result<(), String> + Send,
    {
        let select = format!(
            "SELECT body::text FROM {} WHERE id = $1 FOR UPDATE",
            self.table
        );
        let outcome = self
            .locked_update(&select, &[&id.to_owned()], |r| f(r))
            .await?;
        Ok(match outcome {
            None => Err(UpdateRefused::NotFound(id.to_owned())),
            Some(u) => u.map_err(UpdateRefused::Refused),
        })
    }

    /// Uses an approval for a deferred re-run.
    pub async fn consume_match(
        &self,
        key: &str,
        now: u64,
    ) -> anyhow::Result<Option<ApprovalRequest>> {
        let select = format!(
            "SELECT body::text FROM {} WHERE match_key = $1 AND status = 'approved'
             AND expires_at_ms > $2 ORDER BY created_at_ms LIMIT 1 FOR UPDATE SKIP LOCKED",
            self.table
        );
        let outcome = self
            .locked_update(&select, &[&key.to_owned(), &(now as i64)], |r| {
                r.status = crate::approvals::model::Status::Consumed;
                r.updated_at_ms = now;
                Ok(())
            })
            .await?;
        Ok(outcome.and_then(Result::ok))
    }

    /// Selects one row `FOR UPDATE`, applies `f`, writes it back, in one transaction.
    async fn locked_update<F>(
        &self,
        select: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
        f: F,
    ) -> anyhow::Result<Option<Result<ApprovalRequest, String>>>
    where
        F: FnOnce(&mut ApprovalRequest) -> Result<(), String>,
    {
        let write = format!(
            "UPDATE {t} SET status = $2, expires_at_ms = $3, version = nextval('{t}_version'),
             body = $4::text::jsonb WHERE id = $1",
            t = self.table
        );
        let mut guard = self.client.lock().await;
        let client = with_client(&mut guard, &self.url).await?;
        let result: Result<Option<Result<ApprovalRequest, String>>, anyhow::Error> = async {
            let tx = client.transaction().await?;
            let Some(row) = tx.query_opt(select, params).await? else {
                return Ok(None);
            };
            let mut r = parse(&row.get::<_, String>(0))?;
            if let Err(m) = f(&mut r) {
                return Ok(Some(Err(m)));
            }
            let body = serde_json::to_string(&r)?;
            tx.execute(
                &write,
                &[&r.id, &r.status.as_str(), &(r.expires_at_ms as i64), &body],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(Ok(r)))
        }
        .await;
        if let Err(e) = &result
            && e.downcast_ref::<tokio_postgres::Error>()
                .is_some_and(|e| e.is_closed())
        {
            *guard = None;
        }
        drop(guard);
        if matches!(result, Ok(Some(Ok(_)))) {
            self.changed();
        }
        result
    }

    /// Changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}

async fn with_client<'a>(
    slot: &'a mut Option<Client>,
    url: &str,
) -> anyhow::Result<&'a mut Client> {
    if slot.as_ref().is_none_or(|c| c.is_closed()) {
        *slot = Some(connect(url).await?);
    }
    Ok(slot.as_mut().expect("just connected"))
}

fn parse(text: &str) -> anyhow::Result<ApprovalRequest> {
    serde_json::from_str(text).context("corrupt approval request in the store")
}
