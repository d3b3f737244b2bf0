//! The `portcullis` command line.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Portcullis: a governance gateway for PostgreSQL.
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file.
        #[arg(
            long,
            short,
            default_value = "portcullis.toml",
            env = "PORTCULLIS_CONFIG"
        )]
        config: PathBuf,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Check a configuration file and exit.
    CheckConfig {
        /// Configuration file.
        #[arg(long, short, default_value = "portcullis.toml")]
        config: PathBuf,
    },
    /// Print a SCRAM-SHA-256 verifier for a password (read from the terminal or stdin),
    /// to paste into an identity's `scram` key.
    Passwd {
        /// Read the password from the first line of stdin without prompting.
        #[arg(long)]
        stdin: bool,
    },
    /// Read, check and follow the audit trail.
    Audit {
        /// What to do with the trail.
        #[command(subcommand)]
        command: crate::audit::cli::AuditCommand,
    },
    /// Start a throwaway PostgreSQL with demo data and the gateway in front of it.
    Demo {
        /// Client listener.
        #[arg(long, default_value = "127.0.0.1:6432")]
        listen: std::net::SocketAddr,
        /// Admin HTTP listener.
        #[arg(long, default_value = "127.0.0.1:9187")]
        admin_listen: std::net::SocketAddr,
        /// Exit after printing the connection details (for smoke tests).
        #[arg(long)]
        exit_after_start: bool,
        /// Directory holding the built policies (`guardrails.wasm`); default
        /// `target/policies`, built by `bash policies-rs/build.sh`.
        #[arg(long)]
        policies: Option<PathBuf>,
    },
    /// Review statements held for approval (through a gateway's admin API).
    Approvals {
        /// What to do.
        #[command(subcommand)]
        command: crate::approvals::cli::ApprovalsCommand,
    },
    /// Policy artifacts: keys, signatures, inspection, reload and rollback.
    Policy {
        /// What to do.
        #[command(subcommand)]
        action: PolicyCommand,
    },
}

/// `portcullis policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Write a new Ed25519 signing key to FILE (secret) and FILE.pub (to trust).
    Keygen {
        /// Where to write the secret key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign artifacts and manifests: writes FILE.sig next to each FILE.
    Sign {
        /// Secret key file (from `keygen`).
        #[arg(long)]
        key: PathBuf,
        /// Files to sign (components, policies.toml).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Verify FILE.sig for each FILE against a public key.
    Verify {
        /// Public key file (`KEY.pub`).
        #[arg(long)]
        key: PathBuf,
        /// Files to verify.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show a component's metadata, exports, imports, digest and size.
    Inspect {
        /// The component.
        file: PathBuf,
        /// Settings (JSON) to configure it with for the metadata call.
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    /// Scaffold a policy project (policy, settings, fixtures, build script) in DIR
    /// (default: ./NAME).
    New {
        /// The language.
        #[arg(long, value_enum)]
        lang: crate::policy::scaffold::Lang,
        /// The policy's name (lower-case letters, digits, '-').
        name: String,
        /// Where to create it (must not exist).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Path of `portcullis-sdk` for a Rust project (default: this build's sdk/).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Run a fixture file against a built component through the real policy host.
    Test {
        /// The component.
        file: PathBuf,
        /// The fixture file (`[[case]] user, groups, kind, database, sql, expect`).
        #[arg(long)]
        fixtures: PathBuf,
        /// A JSON file with the settings to configure the policy with (default `{}`).
        #[arg(long)]
        settings: Option<PathBuf>,
    },
    /// Evaluate a candidate policy directory against recorded traffic (a recording
    /// or an audit file) and report the differences; fails when some are not
    /// declared expected.
    Replay {
        /// The recording (`[recording]`) or an audit trail file.
        #[arg(long)]
        recording: PathBuf,
        /// The candidate policy directory (policies.toml + artifacts).
        #[arg(long)]
        policies: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Differences the change is expected to make (TOML `[[accept]]` entries).
        #[arg(long)]
        expect: Option<PathBuf>,
        /// Worker threads (default: the available cores, at most 8).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Per-policy latency (p50/p99) and instance cost of a policy directory over a
    /// recording.
    Bench {
        /// The recording (or an audit trail file).
        #[arg(long)]
        recording: PathBuf,
        /// The policy directory.
        #[arg(long)]
        policies: PathBuf,
        /// Passes over the recording.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running gateway to reload its policy directory.
    Reload {
        /// The gateway's admin address.
        #[arg(long, default_value = "127.0.0.1:9187")]
        admin: std::net::SocketAddr,
        /// Environment variable holding the admin control token.
        #[arg(long, default_value = "PORTCULLIS_ADMIN_TOKEN")]
        token_env: String,
    },
    /// Ask a running gateway to restore its previous policy set.
    Rollback {
        /// The gateway's admin address.
        #[arg(long, default_value = "127.0.0.1:9187")]
        admin: std::net::SocketAddr,
        /// Environment variable holding the admin control token.
        #[arg(long, default_value = "PORTCULLIS_ADMIN_TOKEN")]
        token_env: String,
    },
}

/// Reads a password for `portcullis passwd`.
pub fn read_password(from_stdin: bool) -> anyhow::Result<String> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let pw = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!pw.is_empty(), "empty password on stdin");
        return Ok(pw);
    }
    let pw = rpassword::prompt_password("Password: ")?;
    let again = rpassword::prompt_password("Again: ")?;
    anyhow::ensure!(pw == again, "passwords do not match");
    anyhow::ensure!(!pw.is_empty(), "empty password");
    Ok(pw)
}
