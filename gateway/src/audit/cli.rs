//! `portcullis audit ...`: verify, search, tail, keygen.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;

use super::chain::{CheckpointSigner, read_hex_key, verifying_key};
use super::search::{self, Filter};
use super::verify::{VerifyOptions, verify_files};

/// `portcullis audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a trail's hash chain, rotation seals and checkpoint signatures; exits
    /// non-zero and says where if anything was modified, deleted, inserted, reordered
    /// or truncated.
    Verify {
        /// Trail files in order, or directories (their `audit-*.jsonl` files).
        #[arg(required_unless_present = "postgres")]
        paths: Vec<PathBuf>,
        /// Verify the copy in a PostgreSQL table instead (libpq connection string).
        #[arg(long)]
        postgres: Option<String>,
        /// The table of `--postgres`.
        #[arg(long, default_value = "portcullis_audit")]
        table: String,
        /// The gateway whose trail to verify (its `[audit.postgres] gateway`).
        #[arg(long, requires = "postgres")]
        gateway: Option<String>,
        /// Public key file (64 hex digits) to check checkpoint signatures with.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Require the trail to end with a clean `stop` event.
        #[arg(long)]
        sealed: bool,
        /// Accept a trail that starts in the middle of the chain (older files archived).
        #[arg(long)]
        partial: bool,
    },
    /// Find events by identity, table, decision, kind and time.
    Search {
        /// Trail files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print matching events as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the last events of a trail, and with --follow every new one as it is written.
    Tail {
        /// The trail directory.
        dir: PathBuf,
        /// How many past events to print first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing new events (across rotations) until interrupted.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        filter: FilterArgs,
        /// JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Make an Ed25519 key pair for signed checkpoints: writes the secret key to FILE
    /// (mode 0600) and the public key to FILE.pub, and prints the public key.
    Keygen {
        /// Where to write the secret key.
        out: PathBuf,
    },
}

/// Event filters shared by `search` and `tail`.
#[derive(Debug, Clone, clap::Args)]
pub struct FilterArgs {
    /// Only this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only statements touching this table (`name` or `schema.name`).
    #[arg(long)]
    pub table: Option<String>,
    /// Only statements with this verdict.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub decision: Option<String>,
    /// Only events of this kind (statement, connect, disconnect, auth_failure, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only events at or after this time (RFC 3339, or an age like 15m).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events before this time (RFC 3339, or an age like 15m).
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterArgs {
    /// The filter these arguments describe.
    pub fn to_filter(&self) -> anyhow::Result<Filter> {
        Ok(Filter {
            user: self.user.clone(),
            table: self.table.clone(),
            decision: self.decision.clone(),
            kind: self.kind.clone(),
            since: self.since.as_deref().map(search::parse_time).transpose()?,
            until: self.until.as_deref().map(search::parse_time).transpose()?,
        })
    }
}

/// Runs an audit subcommand.
pub fn run(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            paths,
            postgres,
            table,
            gateway,
            public_key,
            sealed,
            partial,
        } => {
            // A table's copy is rebuilt into files (same names, same lines) first.
            let exported = match &postgres {
                Some(url) => {
                    let dir = tempfile::tempdir()?;
                    let gateway = gateway.ok_or_else(|| {
                        anyhow::anyhow!(
                            "--postgres needs --gateway (the trail's [audit.postgres] gateway name)"
                        )
                    })?;
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    let n =
                        rt.block_on(super::pg_sink::export(url, &table, &gateway, dir.path()))?;
                    println!("{table}: gateway {gateway}: {n} files");
                    Some(dir)
                }
                None => None,
            };
            let paths = match &exported {
                Some(d) => vec![d.path().to_owned()],
                None => paths,
            };
            let files = search::expand(&paths)?;
            if files.is_empty() {
                bail!("no audit files found in the given paths");
            }
            let public_key = public_key
                .as_deref()
                .map(|p| read_hex_key(p).and_then(verifying_key))
                .transpose()?;
            let opts = VerifyOptions {
                public_key,
                require_sealed: sealed,
                partial,
            };
            let r = verify_files(&files, &opts).context("cannot read the trail")?;
            for p in &r.problems {
                println!("{p}");
            }
            if r.more_problems > 0 {
                println!("... and {} more problems", r.more_problems);
            }
            let range = match (r.first_seq, r.last_seq) {
                (Some(a), Some(b)) => format!("seq {a}..={b}"),
                _ => "no events".into(),
            };
            println!(
                "{} files, {} events ({range}), {} checkpoints ({} signatures verified, {} events after the last checkpoint), {}",
                r.files,
                r.events,
                r.checkpoints,
                r.signatures_verified,
                r.unsigned_tail,
                if r.sealed {
                    "ends with a clean stop"
                } else {
                    "not sealed (gateway running, or stopped uncleanly)"
                }
            );
            if r.ok() {
                println!("ok");
                Ok(())
            } else {
                bail!(
                    "the audit trail does not verify: {} problems",
                    r.problems.len() + r.more_problems
                )
            }
        }
        AuditCommand::Search {
            paths,
            filter,
            json,
        } => {
            let filter = filter.to_filter()?;
            let files = search::expand(&paths)?;
            let out = std::io::stdout();
            let mut out = out.lock();
            if !json {
                writeln!(out, "{}", search::table_header())?;
            }
            let mut n = 0u64;
            search::read_events(&files, |line, e| {
                if filter.matches(&e) {
                    n += 1;
                    let _ = if json {
                        writeln!(out, "{line}")
                    } else {
                        writeln!(out, "{}", search::table_row(&e))
                    };
                }
            })?;
            if !json {
                writeln!(out, "({n} events)")?;
            }
            Ok(())
        }
        AuditCommand::Tail {
            dir,
            lines,
            follow,
            filter,
            json,
        } => search::tail(&dir, lines, follow, json, &filter.to_filter()?),
        AuditCommand::Keygen { out } => {
            let secret: [u8; 32] = rand::random();
            let signer = CheckpointSigner::new(secret);
            write_private(&out, &hex::encode(secret))?;
            let public = out.with_extension("pub");
            std::fs::write(&public, format!("{}\n", signer.public_key_hex()))
                .with_context(|| format!("cannot write {}", public.display()))?;
            println!("{}", signer.public_key_hex());
            Ok(())
        }
    }
}

fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}
