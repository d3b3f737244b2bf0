//! The PostgreSQL audit sink: every line of the trail, as written to the file, also
//! goes to a table (one per organisation, shared by gateway replicas, possibly in
//! another database than the governed one), keyed by gateway and sequence number.
//! The file stays the chain's primary copy; with `[audit.postgres]`, an event counts
//! as durable only once both have it, so an unreachable table fails statements
//! closed exactly like a full disk. `portcullis audit verify --postgres` rebuilds the
//! files from the table and verifies the chain.

use std::path::Path;

use anyhow::Context as _;
use tokio_postgres::{Client, NoTls};

use crate::config::AuditPostgresConfig;

/// Lines waiting for the table, at most (beyond, the sink fails like a full disk).
const MAX_PENDING_LINES: usize = 1_000_000;

/// One line for the table.
#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) seq: i64,
    pub(super) file: String,
    pub(super) line: String,
}

/// The sink, driven from the writer thread (blocking, on its own small runtime).
pub(super) struct PgSink {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    url: String,
    table: String,
    gateway: String,
    /// Written to the file, not yet to the table.
    pub(super) pending: Vec<Row>,
}

impl PgSink {
    /// Connects and creates the table if missing.
    pub(super) fn open(cfg: &AuditPostgresConfig) -> anyhow::Result<PgSink> {
        let url = cfg
            .resolved_url()
            .context("[audit.postgres] needs url (or url_env set in the environment)")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut s = PgSink {
            rt,
            client: None,
            url,
            table: cfg.table.clone(),
            gateway: cfg.resolved_gateway(),
            pending: Vec::new(),
        };
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {t} (
                gateway text NOT NULL,
                seq bigint NOT NULL,
                file text NOT NULL,
                line text NOT NULL,
                event jsonb NOT NULL,
                PRIMARY KEY (gateway, seq))",
            t = s.table
        );
        s.with_client(|rt, c| rt.block_on(c.batch_execute(&ddl)))
            .with_context(|| format!("cannot create the audit table {}", s.table))?;
        Ok(s)
    }

    /// This gateway's name in the table.
    pub(super) fn gateway(&self) -> &str {
        &self.gateway
    }

    fn with_client<T>(
        &mut self,
        f: impl FnOnce(&tokio::runtime::Runtime, &Client) -> Result<T, tokio_postgres::Error>,
    ) -> anyhow::Result<T> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            let (client, conn) = self
                .rt
                .block_on(tokio_postgres::connect(&self.url, NoTls))
                .context("cannot connect to the audit database")?;
            self.rt.spawn(async move {
                let _ = conn.await;
            });
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("just connected");
        match f(&self.rt, client) {
            Ok(v) => Ok(v),
            Err(e) => {
                if e.is_closed() {
                    self.client = None;
                }
                Err(e.into())
            }
        }
    }

    /// Queues a line; false when the queue is full.
    pub(super) fn push(&mut self, row: Row) -> bool {
        if self.pending.len() >= MAX_PENDING_LINES {
            return false;
        }
        self.pending.push(row);
        true
    }

    /// Writes the queued lines in one transaction; on failure they stay queued (a
    /// retry after a lost commit reply inserts nothing twice).
    pub(super) fn flush(&mut self) -> anyhow::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} (gateway, seq, file, line, event)
             SELECT $1, s, f, l, l::jsonb FROM unnest($2::bigint[], $3::text[], $4::text[]) AS u(s, f, l)
             ON CONFLICT (gateway, seq) DO NOTHING",
            self.table
        );
        let gateway = self.gateway.clone();
        let pending = std::mem::take(&mut self.pending);
        let seqs: Vec<i64> = pending.iter().map(|r| r.seq).collect();
        let files: Vec<&str> = pending.iter().map(|r| r.file.as_str()).collect();
        let lines: Vec<&str> = pending.iter().map(|r| r.line.as_str()).collect();
        let result = self
            .with_client(|rt, c| rt.block_on(c.execute(&sql, &[&gateway, &seqs, &files, &lines])));
        if let Err(e) = result {
            self.pending = pending;
            return Err(e.context("cannot write to the audit table"));
        }
        Ok(())
    }
}

/// Rebuilds the trail files of `gateway` from the table into `dir` (same names and
/// lines as written), for [`super::verify::verify_files`]. Returns the file count.
pub async fn export(url: &str, table: &str, gateway: &str, dir: &Path) -> anyhow::Result<usize> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .context("cannot connect to the audit database")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    if !table
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        anyhow::bail!("{table}: not a plain table name");
    }
    let rows = client
        .query(
            &format!("SELECT file, line FROM {table} WHERE gateway = $1 ORDER BY seq"),
            &[&gateway],
        )
        .await
        .with_context(|| format!("cannot read {table}"))?;
    let mut files: Vec<(String, String)> = Vec::new();
    for r in rows {
        let (file, line): (String, String) = (r.get(0), r.get(1));
        if Path::new(&file).file_name().and_then(|n| n.to_str()) != Some(file.as_str()) {
            anyhow::bail!("{table}: a row names the file {file:?}, which is not a plain file name");
        }
        match files.last_mut() {
            Some((f, text)) if *f == file => {
                text.push_str(&line);
                text.push('\n');
            }
            _ => files.push((file, format!("{line}\n"))),
        }
    }
    for (f, text) in &files {
        // Appended: a file named twice (rows moved) shows up as out-of-order lines.
        use std::io::Write as _;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(f))?
            .write_all(text.as_bytes())?;
    }
    Ok(files.len())
}
