//! tokio-postgres helpers: connecting, collecting results in comparable form,
//! and reading SQLSTATEs.

use std::error::Error as _;
use std::ops::{Deref, DerefMut};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type};
use tokio_postgres::{AsyncMessage, Client, NoTls, SimpleQueryMessage};

use crate::tls::MakeRustls;

/// A tokio-postgres client whose connection task runs in the background and
/// forwards notices and notifications to [`Conn::messages`].
pub struct Conn {
    /// The client.
    pub client: Client,
    /// Notices and notifications, in arrival order.
    pub messages: mpsc::UnboundedReceiver<AsyncMessage>,
    /// The connection task; finishes (with the connection's error, if any)
    /// when the connection closes.
    pub task: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
}

impl Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Conn {
    /// Waits for the next notification (skipping notices).
    pub async fn next_notification(&mut self) -> Option<tokio_postgres::Notification> {
        while let Some(m) = self.messages.recv().await {
            if let AsyncMessage::Notification(n) = m {
                return Some(n);
            }
        }
        None
    }

    /// Waits for the next notice (skipping notifications).
    pub async fn next_notice(&mut self) -> Option<tokio_postgres::error::DbError> {
        while let Some(m) = self.messages.recv().await {
            if let AsyncMessage::Notice(n) = m {
                return Some(n);
            }
        }
        None
    }
}

fn drive<S, T>(client: Client, mut connection: tokio_postgres::Connection<S, T>) -> Conn
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        let mut stream = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = stream.next().await {
            let _ = tx.send(m?);
        }
        Ok(())
    });
    Conn {
        client,
        messages: rx,
        task,
    }
}

/// Connects without TLS (`uri` may say `sslmode=disable` or `prefer`).
pub async fn connect(uri: &str) -> Result<Conn> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls)
        .await
        .map_err(|e| anyhow::Error::new(e).context(format!("connecting to {}", redact(uri))))?;
    Ok(drive(client, connection))
}

/// Connects with `tokio_postgres::connect` and returns the raw error (for
/// asserting SQLSTATEs of refused logins).
pub async fn try_connect(uri: &str) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, NoTls).await?;
    Ok(drive(client, connection))
}

/// Connects with rustls (`uri` should say `sslmode=require`).
pub async fn connect_tls(uri: &str, tls: MakeRustls) -> Result<Conn, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(uri, tls).await?;
    Ok(drive(client, connection))
}

/// Hides the password of a URI for messages.
pub fn redact(uri: &str) -> String {
    match (uri.find("://"), uri.find('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &uri[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &uri[..s + 3], &creds[..c], &uri[at..]),
                None => uri.to_owned(),
            }
        }
        _ => uri.to_owned(),
    }
}

/// The SQLSTATE of a tokio-postgres error, if the server sent one.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_owned())
}

/// The SQLSTATE of an `anyhow` error wrapping a tokio-postgres error.
pub fn sqlstate_any(e: &anyhow::Error) -> Option<String> {
    e.chain()
        .find_map(|c| c.downcast_ref::<tokio_postgres::Error>())
        .and_then(sqlstate)
}

/// The server's message of a tokio-postgres error (or its display).
pub fn message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db.message().to_owned(),
        None => match e.source() {
            Some(s) => format!("{e}: {s}"),
            None => e.to_string(),
        },
    }
}

/// One result of a simple query: column names, rows as text, and the
/// CommandComplete row count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleResult {
    /// Column names (empty for commands without rows).
    pub columns: Vec<String>,
    /// Rows, NULL as `None`.
    pub rows: Vec<Vec<Option<String>>>,
    /// Rows affected / returned as reported by CommandComplete.
    pub count: u64,
}

/// Runs a simple query (possibly several statements) and collects every
/// result in comparable form.
pub async fn simple(
    client: &Client,
    sql: &str,
) -> Result<Vec<SimpleResult>, tokio_postgres::Error> {
    let mut out = Vec::new();
    let mut cur = SimpleResult {
        columns: vec![],
        rows: vec![],
        count: 0,
    };
    for m in client.simple_query(sql).await? {
        match m {
            SimpleQueryMessage::RowDescription(cols) => {
                cur.columns = cols.iter().map(|c| c.name().to_owned()).collect();
            }
            SimpleQueryMessage::Row(row) => {
                if cur.columns.is_empty() {
                    cur.columns = row.columns().iter().map(|c| c.name().to_owned()).collect();
                }
                cur.rows.push(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_owned))
                        .collect(),
                );
            }
            SimpleQueryMessage::CommandComplete(n) => {
                cur.count = n;
                out.push(std::mem::replace(
                    &mut cur,
                    SimpleResult {
                        columns: vec![],
                        rows: vec![],
                        count: 0,
                    },
                ));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Any value in its binary wire form (for byte-exact differential comparison).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raw(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw.to_vec())))
    }
    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Rows with column names, types and every value in binary form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRows {
    /// (name, type name) per column.
    pub columns: Vec<(String, String)>,
    /// Values.
    pub rows: Vec<Vec<Raw>>,
}

/// Runs an extended query and returns everything in binary form.
pub async fn raw_rows(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<RawRows, tokio_postgres::Error> {
    let stmt = client.prepare(sql).await?;
    let rows = client.query(&stmt, params).await?;
    Ok(RawRows {
        columns: stmt
            .columns()
            .iter()
            .map(|c| (c.name().to_owned(), c.type_().name().to_owned()))
            .collect(),
        rows: rows
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<_, Raw>(i)).collect())
            .collect(),
    })
}

/// A `numeric` parameter given as decimal text (encoded to the binary form).
#[derive(Debug, Clone)]
pub struct Numeric(pub String);

impl ToSql for Numeric {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        let s = self.0.trim();
        let (neg, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || int.is_empty() {
            return Err(format!("not a decimal: {}", self.0).into());
        }
        let dscale = frac.len() as u16;
        // Left-pad the integer part and right-pad the fraction to groups of 4.
        let int_pad = (4 - int.len() % 4) % 4;
        let int_digits = format!("{}{}", "0".repeat(int_pad), int);
        let frac_pad = (4 - frac.len() % 4) % 4;
        let frac_digits = format!("{}{}", frac, "0".repeat(frac_pad));
        let mut groups: Vec<i16> = int_digits
            .as_bytes()
            .chunks(4)
            .chain(frac_digits.as_bytes().chunks(4))
            .map(|c| std::str::from_utf8(c).unwrap().parse().unwrap())
            .collect();
        let mut weight = (int_digits.len() / 4) as i16 - 1;
        while groups.first() == Some(&0) && weight >= 0 {
            groups.remove(0);
            weight -= 1;
        }
        while groups.last() == Some(&0) {
            groups.pop();
        }
        if groups.is_empty() {
            weight = 0;
        }
        out.put_i16(groups.len() as i16);
        out.put_i16(weight);
        out.put_u16(if neg && !groups.is_empty() { 0x4000 } else { 0 });
        out.put_u16(dscale);
        for g in groups {
            out.put_i16(g);
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }

    tokio_postgres::types::to_sql_checked!();
}

/// Lists the upstream backends whose `application_name` contains `needle`
/// (queried as the superuser straight on PostgreSQL).
pub async fn backends_with_app(
    direct: &Client,
    needle: &str,
) -> Result<Vec<(i32, String, String)>> {
    let rows = direct
        .query(
            "select pid, application_name, coalesce(state, '') from pg_stat_activity \
             where application_name like '%' || $1 || '%' and pid <> pg_backend_pid() order by pid",
            &[&needle],
        )
        .await
        .context("listing backends")?;
    Ok(rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect())
}
