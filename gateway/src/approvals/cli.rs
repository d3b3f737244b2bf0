//! `portcullis approvals list|show|approve|reject`: reviewers' command line, a client
//! of the admin API (so the same checks apply: verified reviewer, no self-approval,
//! only routed approvers).

use clap::{Args, Subcommand};
use serde_json::Value;

/// Where the admin API is and who is asking.
#[derive(Debug, Args)]
pub struct Connection {
    /// Admin endpoint of a gateway.
    #[arg(
        long,
        env = "PORTCULLIS_ADMIN_URL",
        default_value = "http://127.0.0.1:9187"
    )]
    pub admin: String,
    /// The reviewer: a gateway identity.
    #[arg(long = "as", env = "PORTCULLIS_USER")]
    pub user: String,
    /// Environment variable holding the reviewer's password (otherwise prompted, or
    /// read from stdin when it is not a terminal).
    #[arg(long, default_value = "PORTCULLIS_PASSWORD")]
    pub password_env: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `portcullis approvals ...`.
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Requests waiting for a decision (with `--all`, every recent request).
    List {
        /// Include decided and expired requests.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: Connection,
    },
    /// One request in full.
    Show {
        /// Request id (`apr-...`).
        id: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Approve a request.
    Approve {
        /// Request id.
        id: String,
        /// Why (recorded with the decision).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        conn: Connection,
    },
    /// Reject a request.
    Reject {
        /// Request id.
        id: String,
        /// Why (recorded with the decision, shown to the requester).
        #[arg(long, default_value = "")]
        reason: String,
        #[command(flatten)]
        conn: Connection,
    },
}

fn password(conn: &Connection) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var(&conn.password_env) {
        return Ok(p);
    }
    use std::io::IsTerminal as _;
    if std::io::stdin().is_terminal() {
        Ok(rpassword::prompt_password(format!(
            "password for {}: ",
            conn.user
        ))?)
    } else {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }
}

/// Runs one command.
pub fn run(cmd: ApprovalsCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cmd))
}

async fn call(
    conn: &Connection,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let url = format!("{}{path}", conn.admin.trim_end_matches('/'));
    let client = reqwest::Client::new();
    let mut req = client
        .request(method, &url)
        .basic_auth(&conn.user, Some(password(conn)?));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach the admin endpoint {url}: {e}"))?;
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = value
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        anyhow::bail!("{status}: {msg}");
    }
    Ok(value)
}

async fn run_async(cmd: ApprovalsCommand) -> anyhow::Result<()> {
    match cmd {
        ApprovalsCommand::List { all, conn } => {
            let v = call(
                &conn,
                reqwest::Method::GET,
                &format!("/approvals?all={all}"),
                None,
            )
            .await?;
            if conn.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(());
            }
            let list = v.as_array().cloned().unwrap_or_default();
            if list.is_empty() {
                println!("no requests");
            }
            println!(
                "{:<20} {:<10} {:<16} {:<10} {:<24} SQL",
                "ID", "STATUS", "WHO", "DATABASE", "APPROVERS"
            );
            for r in list {
                println!(
                    "{:<20} {:<10} {:<16} {:<10} {:<24} {}",
                    r["id"].as_str().unwrap_or(""),
                    r["status"].as_str().unwrap_or(""),
                    r["requester"]["user"].as_str().unwrap_or(""),
                    r["database"].as_str().unwrap_or(""),
                    join(&r["approvers"]),
                    one_line(r["sql"].as_str().unwrap_or(""), 60),
                );
            }
        }
        ApprovalsCommand::Show { id, conn } => {
            let v = call(
                &conn,
                reqwest::Method::GET,
                &format!("/approvals/{id}"),
                None,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ApprovalsCommand::Approve { id, reason, conn } => {
            decide(&conn, &id, "approve", reason).await?
        }
        ApprovalsCommand::Reject { id, reason, conn } => {
            decide(&conn, &id, "reject", reason).await?
        }
    }
    Ok(())
}

async fn decide(conn: &Connection, id: &str, verb: &str, reason: String) -> anyhow::Result<()> {
    let v = call(
        conn,
        reqwest::Method::POST,
        &format!("/approvals/{id}/{verb}"),
        Some(serde_json::json!({ "reason": reason })),
    )
    .await?;
    if conn.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "{id}: {} (by {}; {} of {} approvals)",
            v["status"].as_str().unwrap_or("?"),
            conn.user,
            v["reviews"]
                .as_array()
                .map_or(0, |r| r.iter().filter(|x| x["approve"] == true).count()),
            v["required"].as_u64().unwrap_or(1)
        );
    }
    Ok(())
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn one_line(s: &str, max: usize) -> String {
    let flat: String = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}
