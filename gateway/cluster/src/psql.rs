//! Running SQL through the `psql` binary.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{ClusterError, Result};
use crate::util::scrub_env;

/// Runs `sql` with `psql -X -q -A -t -v ON_ERROR_STOP=1` against `conninfo`.
///
/// The SQL is fed on stdin (so scripts with several statements, `CREATE
/// DATABASE` and psql meta-commands all work). The password, if any, is passed
/// in `PGPASSWORD`; `~/.pgpass` and inherited `PG*` variables are ignored.
/// Returns stdout without its final newline.
pub(crate) fn run_psql(
    psql: &Path,
    conninfo: &str,
    password: Option<&str>,
    sql: &str,
) -> Result<String> {
    let mut cmd = Command::new(psql);
    scrub_env(&mut cmd);
    cmd.env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "portcullis-cluster")
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-f",
            "-",
            "-d",
        ])
        .arg(conninfo)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(pw) = password {
        cmd.env("PGPASSWORD", pw);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ClusterError::io(format!("running {}", psql.display()), e))?;

    // Feed stdin from a thread so a large script cannot deadlock against a
    // large result filling the stdout pipe.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let script = sql.to_owned();
    let writer = std::thread::spawn(move || {
        // psql may exit early (ON_ERROR_STOP); a broken pipe is then expected
        // and the real error is reported from its stderr.
        let _ = stdin.write_all(script.as_bytes());
    });
    let out = child
        .wait_with_output()
        .map_err(|e| ClusterError::io(format!("waiting for {}", psql.display()), e))?;
    let _ = writer.join();

    if !out.status.success() {
        return Err(ClusterError::Psql {
            status: out.status,
            target: conninfo.to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    let mut stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.ends_with('\n') {
        stdout.pop();
    }
    Ok(stdout)
}
