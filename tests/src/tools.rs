//! External programs: psql, pgbench, python3 (psycopg), node (pg).
//!
//! A missing tool fails the test with a message saying how to install it; no
//! test is ever skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// What a program printed and how it exited.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Exit status.
    pub status: ExitStatus,
}

impl CmdOutput {
    /// The exit code (-1 when killed by a signal).
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }

    /// Panics with both streams unless the program exited 0.
    #[track_caller]
    pub fn assert_success(&self, what: &str) -> &Self {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self
    }
}

/// How to install each external tool the suite uses.
fn install_hint(tool: &str) -> &'static str {
    match tool {
        "psql" | "pgbench" => {
            "install the PostgreSQL client tools (Debian/Ubuntu: apt-get install postgresql-client)"
        }
        "python3" => {
            "install Python 3 (Debian/Ubuntu: apt-get install python3) and then pip install 'psycopg[binary]'"
        }
        "node" | "npm" => {
            "install Node.js (Debian/Ubuntu: apt-get install nodejs npm) and then run npm install --prefix tests/node"
        }
        _ => "install it and make sure it is on PATH",
    }
}

/// Finds `tool` on `PATH`.
pub fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Returns the path of `tool`, failing the test if it is not on `PATH`.
#[track_caller]
pub fn require_tool(tool: &str) -> PathBuf {
    match which(tool) {
        Some(p) => p,
        None => panic!(
            "required external tool `{tool}` is not on PATH: {}",
            install_hint(tool)
        ),
    }
}

/// Fails the test unless `python3` can `import psycopg`.
#[track_caller]
pub fn require_psycopg() -> PathBuf {
    let python = require_tool("python3");
    let out = Command::new(&python)
        .args(["-c", "import psycopg; print(psycopg.__version__)"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    if !out.status.success() {
        panic!(
            "python3 cannot import psycopg: install psycopg: pip install 'psycopg[binary]'\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    python
}

/// The directory of this crate (`tests/`).
pub fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails the test unless `node` is installed and `tests/node/node_modules/pg`
/// is present (the README's test command runs `npm install --prefix tests/node`).
#[track_caller]
pub fn require_node_pg() -> PathBuf {
    let node = require_tool("node");
    let dir = crate_dir().join("node");
    let out = Command::new(&node)
        .current_dir(&dir)
        .args([
            "--input-type=module",
            "-e",
            "import pg from 'pg'; console.log(typeof pg.Client)",
        ])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", node.display()));
    if !out.status.success() {
        panic!(
            "node cannot load the `pg` package from {}: run `npm install --prefix tests/node` first\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    node
}

/// A command with `PG*` variables removed (so the developer's environment and
/// `~/.pgpass` cannot change what a test does) and a C locale.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            cmd.env_remove(&key);
        }
    }
    cmd.env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("LC_ALL", "C")
        .env("LANG", "C")
        .env_remove("PSQLRC");
    cmd
}

/// Runs `cmd`, feeding `stdin` (if any) from a thread, and collects its output.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> CmdOutput {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {desc}: {e}"));
    let writer = stdin.map(|data| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = pipe.write_all(&data);
        })
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {desc}: {e}"));
    if let Some(w) = writer {
        let _ = w.join();
    }
    CmdOutput {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        status: out.status,
    }
}

/// Runs `run` on a blocking thread (for use in async tests).
pub async fn run_async(cmd: Command, stdin: Option<Vec<u8>>) -> CmdOutput {
    tokio::task::spawn_blocking(move || run(cmd, stdin.as_deref()))
        .await
        .expect("command thread panicked")
}

/// `psql -X -v ON_ERROR_STOP=1 [args...] -d <uri>`, with a clean environment.
pub fn psql_command(uri: &str, args: &[&str]) -> Command {
    let mut cmd = clean_command(require_tool("psql"));
    cmd.arg("-X")
        .args(["-v", "ON_ERROR_STOP=1"])
        .args(args)
        .arg("-d")
        .arg(uri);
    cmd
}

/// Runs the SQL script `sql` through `psql -X -A -t -v ON_ERROR_STOP=1 -f -`
/// (psql splits it into statements, meta-commands work) against `uri`.
pub async fn psql(uri: &str, sql: &str) -> CmdOutput {
    run_async(
        psql_command(uri, &["-A", "-t", "-f", "-"]),
        Some(sql.as_bytes().to_vec()),
    )
    .await
}

/// Runs `sql` as a single `psql -c` (one simple-query message, possibly with
/// several statements) with `-A -t`.
pub async fn psql_c(uri: &str, sql: &str) -> CmdOutput {
    run_async(psql_command(uri, &["-A", "-t", "-c", sql]), None).await
}

/// Runs a script file of this crate (`tests/python/x.py`, `tests/node/x.mjs`)
/// with `interpreter`, passing `env`.
pub async fn run_script(
    interpreter: &Path,
    script: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> CmdOutput {
    let mut cmd = clean_command(interpreter);
    cmd.current_dir(script.parent().expect("script has a directory"))
        .arg(script)
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_async(cmd, None).await
}
