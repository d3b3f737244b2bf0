//! The error type of this crate.

use std::path::PathBuf;
use std::process::ExitStatus;

/// Everything that can go wrong while finding, starting, using or stopping a
/// throwaway PostgreSQL cluster.
///
/// Messages are meant to be read by a human in a failing test or in the output
/// of `portcullis demo`: they say what was tried and, where a server or tool
/// wrote a log, end with the tail of that log.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL server binaries (`initdb`, `pg_ctl`, `postgres`) were found.
    #[error(
        "PostgreSQL server binaries not found (need initdb, pg_ctl and postgres). Searched: {searched}. \
         Install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`) or set PG_BIN to the \
         directory that contains initdb, pg_ctl and postgres (e.g. /usr/lib/postgresql/15/bin)"
    )]
    PgBinNotFound {
        /// Human-readable list of the places that were searched.
        searched: String,
    },

    /// A directory was named explicitly (via `PG_BIN` or
    /// [`ClusterOptions::pg_bin`](crate::ClusterOptions::pg_bin)) but lacks
    /// required programs.
    #[error(
        "{source_name} points to {dir}, which is missing {missing}. Set it to the directory that \
         contains initdb, pg_ctl and postgres (e.g. /usr/lib/postgresql/15/bin), or unset it and \
         install PostgreSQL (Debian/Ubuntu: `apt-get install postgresql`)"
    )]
    PgBinIncomplete {
        /// Where the directory came from (`PG_BIN` or `ClusterOptions::pg_bin`).
        source_name: String,
        /// The directory that was given.
        dir: PathBuf,
        /// Comma-separated names of the missing programs.
        missing: String,
    },

    /// The `psql` client was not found next to the server binaries nor on `PATH`.
    #[error(
        "psql not found in {bin_dir} nor on PATH. Install the PostgreSQL client \
         (Debian/Ubuntu: `apt-get install postgresql-client`)"
    )]
    PsqlNotFound {
        /// The server binary directory that was searched first.
        bin_dir: PathBuf,
    },

    /// We run as root, and there is no unprivileged user to run the server as
    /// (PostgreSQL refuses to run as root).
    #[error(
        "running as root, but cannot run PostgreSQL as an unprivileged user: {reason}. \
         initdb and postgres refuse to run as root; create the `postgres` OS user \
         (`apt-get install postgresql` does) or run as a normal user"
    )]
    NoUnprivilegedUser {
        /// What exactly failed.
        reason: String,
    },

    /// An option was invalid (for example a password containing a newline).
    #[error("invalid cluster option: {0}")]
    InvalidOption(String),

    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// `initdb` failed.
    #[error("initdb failed ({status}) for {data_dir}; output tail:\n{log_tail}")]
    Initdb {
        /// Exit status of initdb.
        status: ExitStatus,
        /// The data directory that was being initialised.
        data_dir: PathBuf,
        /// Last lines of initdb's stdout and stderr.
        log_tail: String,
    },

    /// The server did not start (or did not accept connections in time).
    #[error(
        "PostgreSQL failed to start on 127.0.0.1:{port} ({reason}); server log {log_file} tail:\n{log_tail}"
    )]
    Start {
        /// The port the server was asked to listen on.
        port: u16,
        /// Short description of the failure (pg_ctl output or timeout).
        reason: String,
        /// The server log file.
        log_file: PathBuf,
        /// Last lines of the server log.
        log_tail: String,
    },

    /// A helper command (`pg_ctl stop`, ...) failed.
    #[error("{command} failed ({status}): {output}")]
    Command {
        /// The command line that was run.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr (or stdout when stderr was empty), trimmed.
        output: String,
    },

    /// `psql` exited with an error.
    #[error("psql failed ({status}) on {target}: {stderr}")]
    Psql {
        /// Its exit status.
        status: ExitStatus,
        /// Where it connected to (connection string without password).
        target: String,
        /// Its stderr, trimmed.
        stderr: String,
    },

    /// The operation needs a running server.
    #[error("the cluster is not running")]
    NotRunning,

    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Pki(#[from] rcgen::Error),
}

impl ClusterError {
    /// Wraps an I/O error with a description of what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ClusterError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for `Result<T, ClusterError>`.
pub type Result<T, E = ClusterError> = std::result::Result<T, E>;
