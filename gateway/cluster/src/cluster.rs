//! Starting, using and stopping one throwaway cluster.

use std::fs;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bin::{check_bin_dir, find_pg_bin, find_psql};
use crate::error::{ClusterError, Result};
use crate::port::PortReservation;
use crate::psql::run_psql;
use crate::reap;
use crate::runas::Launcher;
use crate::util::{
    file_tail, percent_encode, quote_conf_value, quote_conninfo_value, quote_ident, quote_literal,
    random_token, scrub_env, tail,
};

/// The only address the server listens on.
pub const HOST: &str = "127.0.0.1";

/// Default `pg_hba.conf`: password (SCRAM) authentication everywhere.
pub const DEFAULT_HBA: &str = "\
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   127.0.0.1/32  scram-sha-256
host    all       all   ::1/128       scram-sha-256
local   all       all                 scram-sha-256
";

/// How many lines of a log go into error messages.
const LOG_TAIL_LINES: usize = 40;

/// How many random ports to try when the server cannot bind.
const PORT_ATTEMPTS: usize = 8;

/// Longest unix socket directory path that still leaves room for
/// `/.s.PGSQL.65535` within `sun_path` (108 bytes on Linux, 104 on BSDs).
const MAX_SOCKET_DIR_LEN: usize = 80;

/// Server certificate and key for `ssl = on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate (chain) presented by the server.
    pub cert_pem: PathBuf,
    /// PEM private key of that certificate.
    pub key_pem: PathBuf,
}

/// How to create a [`Cluster`]. Start from [`ClusterOptions::default()`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Name of the bootstrap superuser. Default `postgres`.
    pub superuser: String,
    /// Password of the superuser (stored as SCRAM-SHA-256). Default: random.
    pub superuser_password: String,
    /// When set, `ssl = on` with these files (copied into the data directory,
    /// mode 0600, owned by the server user).
    pub tls: Option<TlsFiles>,
    /// When set (and [`tls`](Self::tls) is set), this PEM CA bundle is copied
    /// into the data directory and used as `ssl_ca_file`, so `cert`
    /// authentication / `clientcert=verify-full` can be configured in
    /// [`hba`](Self::hba).
    pub tls_client_ca: Option<PathBuf>,
    /// Extra `postgresql.conf` settings, applied after (so overriding) the
    /// crate's own, e.g. `("log_statement", "all")`. Values are quoted for you.
    pub extra_conf: Vec<(String, String)>,
    /// Full `pg_hba.conf` contents. Default: [`DEFAULT_HBA`]. Keep a rule that
    /// lets the superuser in over TCP from 127.0.0.1 with its password:
    /// [`Cluster::psql`], `create_role` etc. connect that way.
    pub hba: Option<String>,
    /// TCP port. Default: a free random port (retried if the bind fails).
    pub port: Option<u16>,
    /// Directory holding `initdb`, `pg_ctl` and `postgres`. Default:
    /// [`find_pg_bin`].
    pub pg_bin: Option<PathBuf>,
    /// OS user to run the server as when this process is root. Default:
    /// `postgres`, else `nobody`. Ignored when not root.
    pub os_user: Option<String>,
    /// Directory in which the cluster's temporary directory is created.
    /// Default: the system temp dir. When root, the server user must be able
    /// to traverse it.
    pub base_dir: Option<PathBuf>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            superuser: "postgres".to_owned(),
            superuser_password: random_token(),
            tls: None,
            tls_client_ca: None,
            extra_conf: Vec::new(),
            hba: None,
            port: None,
            pg_bin: None,
            os_user: None,
            base_dir: None,
        }
    }
}

impl ClusterOptions {
    /// Adds one `postgresql.conf` setting (builder style).
    pub fn conf(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra_conf.push((key.into(), value.into()));
        self
    }

    /// Enables TLS with the given files (builder style).
    pub fn with_tls(mut self, tls: TlsFiles) -> Self {
        self.tls = Some(tls);
        self
    }

    fn validate(&self) -> Result<()> {
        let bad = |v: &str| v.is_empty() || v.contains(['\n', '\r', '\0']);
        if bad(&self.superuser) {
            return Err(ClusterError::InvalidOption(
                "superuser must be non-empty and contain no newline or NUL".to_owned(),
            ));
        }
        if bad(&self.superuser_password) {
            return Err(ClusterError::InvalidOption(
                "superuser_password must be non-empty and contain no newline or NUL".to_owned(),
            ));
        }
        for (key, value) in &self.extra_conf {
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            {
                return Err(ClusterError::InvalidOption(format!(
                    "extra_conf key {key:?} is not a valid setting name"
                )));
            }
            if value.contains(['\n', '\r', '\0']) {
                return Err(ClusterError::InvalidOption(format!(
                    "extra_conf value for {key} contains a newline or NUL"
                )));
            }
        }
        if self.tls_client_ca.is_some() && self.tls.is_none() {
            return Err(ClusterError::InvalidOption(
                "tls_client_ca needs tls (server certificate and key) too".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A running (or stopped) throwaway PostgreSQL cluster.
///
/// Owns a temporary directory holding the data directory, the unix socket and
/// the server log. Dropping it stops the server (`pg_ctl stop -m immediate`)
/// and removes the directory; dropping never panics.
#[derive(Debug)]
pub struct Cluster {
    bin_dir: PathBuf,
    psql_bin: PathBuf,
    launcher: Launcher,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_file: PathBuf,
    superuser: String,
    password: String,
    tls: bool,
    running: bool,
    port: PortReservation,
    // Dropped after `Drop::drop` has stopped the server.
    _socket_tmp: Option<TempDir>,
    root: TempDir,
}

impl Cluster {
    /// Creates and starts a cluster.
    ///
    /// Runs `initdb` (SCRAM auth, UTF8, C locale, no fsync), writes the
    /// configuration (listen on 127.0.0.1 only, socket inside the temporary
    /// directory, `fsync = off`, `timezone = UTC`, TLS if asked), starts the
    /// server with `pg_ctl -w` and waits until it accepts TCP connections.
    /// When root, the server runs as an unprivileged OS user.
    pub fn start(opts: ClusterOptions) -> Result<Cluster> {
        let first_port = match opts.port {
            Some(p) => PortReservation::fixed(p),
            None => PortReservation::random()?,
        };
        Self::start_on(opts, first_port)
    }

    /// [`start`](Self::start) with the first port to try already chosen; when
    /// `opts.port` is `None`, bind failures move on to random ports.
    fn start_on(opts: ClusterOptions, first_port: PortReservation) -> Result<Cluster> {
        opts.validate()?;
        let bin_dir = match &opts.pg_bin {
            Some(dir) => check_bin_dir(dir, "ClusterOptions::pg_bin")?,
            None => find_pg_bin()?,
        };
        let psql_bin = find_psql(&bin_dir)?;
        let launcher = Launcher::detect(opts.os_user.as_deref())?;

        let base = opts.base_dir.clone().unwrap_or_else(std::env::temp_dir);
        reap::reap_stale(&base, &bin_dir, &launcher);
        let root = tempfile::Builder::new()
            .prefix(reap::DIR_PREFIX)
            .tempdir_in(&base)
            .map_err(|e| {
                ClusterError::io(format!("creating a temp dir in {}", base.display()), e)
            })?;
        reap::mark_owned(root.path()).map_err(|e| {
            ClusterError::io(
                format!("writing owner file in {}", root.path().display()),
                e,
            )
        })?;
        set_mode(root.path(), 0o700)?;
        launcher.chown(root.path())?;

        let (socket_dir, socket_tmp) = if root.path().as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            (root.path().to_path_buf(), None)
        } else {
            let short = tempfile::Builder::new()
                .prefix("pgsock-")
                .tempdir_in("/tmp")
                .map_err(|e| ClusterError::io("creating a socket dir in /tmp", e))?;
            set_mode(short.path(), 0o700)?;
            launcher.chown(short.path())?;
            (short.path().to_path_buf(), Some(short))
        };

        let mut cluster = Cluster {
            bin_dir,
            psql_bin,
            launcher,
            data_dir: root.path().join("data"),
            socket_dir,
            log_file: root.path().join("server.log"),
            superuser: opts.superuser.clone(),
            password: opts.superuser_password.clone(),
            tls: opts.tls.is_some(),
            running: false,
            port: first_port,
            _socket_tmp: socket_tmp,
            root,
        };
        cluster.initdb()?;
        cluster.configure(&opts)?;

        let mut attempt = 1;
        loop {
            match cluster.start_server() {
                Ok(()) => return Ok(cluster),
                Err(err)
                    if opts.port.is_none() && attempt < PORT_ATTEMPTS && is_bind_error(&err) =>
                {
                    attempt += 1;
                    cluster.port = PortReservation::random()?;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port.port()
    }

    /// Host the server listens on: always `"127.0.0.1"`.
    pub fn host(&self) -> &str {
        HOST
    }

    /// Name of the bootstrap superuser.
    pub fn superuser(&self) -> &str {
        &self.superuser
    }

    /// Password of the bootstrap superuser.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Directory holding the server's unix socket (`.s.PGSQL.<port>`).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Directory holding `initdb`, `pg_ctl` and `postgres`.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server log (written by `pg_ctl -l`; `logging_collector` is off).
    pub fn log_file(&self) -> PathBuf {
        self.log_file.clone()
    }

    /// The last `lines` lines of the server log, for test failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.log_file, 0, lines)
    }

    /// Whether the server was started with `ssl = on`.
    pub fn tls_enabled(&self) -> bool {
        self.tls
    }

    /// Whether the server is running (as far as this handle knows).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// PID of the postmaster, read from `postmaster.pid`, if it is running.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// `postgresql://user:password@127.0.0.1:port/db` (components percent-encoded).
    pub fn connection_uri(&self, db: &str) -> String {
        format!(
            "postgresql://{}:{}@{HOST}:{}/{}",
            percent_encode(&self.superuser),
            percent_encode(&self.password),
            self.port(),
            percent_encode(db)
        )
    }

    /// libpq key/value connection string for `db` as the superuser, including
    /// the password (`host=127.0.0.1 port=... user=... password=... dbname=...`).
    pub fn conninfo(&self, db: &str) -> String {
        format!(
            "{} password={}",
            self.conninfo_without_password(db),
            quote_conninfo_value(&self.password)
        )
    }

    fn conninfo_without_password(&self, db: &str) -> String {
        format!(
            "host={HOST} port={} user={} dbname={}",
            self.port(),
            quote_conninfo_value(&self.superuser),
            quote_conninfo_value(db)
        )
    }

    /// Runs `sql` in database `db` as the superuser with the `psql` binary
    /// (`-X -q -At -v ON_ERROR_STOP=1`, SQL on stdin, password in
    /// `PGPASSWORD`) and returns stdout without its final newline. Errors
    /// include psql's stderr.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        run_psql(
            &self.psql_bin,
            &self.conninfo_without_password(db),
            Some(&self.password),
            sql,
        )
    }

    /// Like [`psql`](Self::psql) but with an arbitrary libpq connection string
    /// (e.g. with `sslmode=verify-full`, another user, or the gateway's port)
    /// and password.
    pub fn psql_conninfo(
        &self,
        conninfo: &str,
        password: Option<&str>,
        sql: &str,
    ) -> Result<String> {
        run_psql(&self.psql_bin, conninfo, password, sql)
    }

    /// `CREATE DATABASE name` (fails if it exists).
    pub fn create_database(&self, name: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!("CREATE DATABASE {};", quote_ident(name)),
        )
        .map(drop)
    }

    /// `CREATE ROLE name LOGIN PASSWORD 'password' <extra>`; `extra` is raw
    /// SQL such as `"SUPERUSER"`, `"CREATEDB"` or `""`. The password is stored
    /// as a SCRAM-SHA-256 verifier.
    pub fn create_role(&self, name: &str, password: &str, extra: &str) -> Result<()> {
        self.psql(
            "postgres",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD {} {extra};",
                quote_ident(name),
                quote_literal(password)
            ),
        )
        .map(drop)
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`). No-op if stopped.
    pub fn stop(&mut self) -> Result<()> {
        self.pg_ctl_stop("fast")
    }

    /// Stops the server abruptly (`pg_ctl stop -m immediate`: no checkpoint,
    /// connections cut), as when the upstream crashes. No-op if stopped.
    pub fn kill(&mut self) -> Result<()> {
        self.pg_ctl_stop("immediate")
    }

    /// Starts the server again on the same port (stopping it first if it is
    /// running). After [`kill`](Self::kill) this performs crash recovery.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start_server()
    }

    // ----- internals -------------------------------------------------------

    /// A command running `program` from the bin dir as the server user, with
    /// a scrubbed environment, in the cluster directory.
    fn server_command(&self, program: &str) -> Command {
        let mut cmd = self.launcher.command(&self.bin_dir.join(program));
        scrub_env(&mut cmd);
        cmd.current_dir(self.root.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn initdb(&self) -> Result<()> {
        let pwfile = self.root.path().join("pwfile");
        write_private(&pwfile, format!("{}\n", self.password).as_bytes())?;
        self.launcher.chown(&pwfile)?;

        let out = self
            .server_command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-U")
            .arg(&self.superuser)
            .arg(format!("--pwfile={}", pwfile.display()))
            .args([
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output();
        let _ = fs::remove_file(&pwfile);
        let out = out.map_err(|e| ClusterError::io("running initdb", e))?;
        if !out.status.success() {
            let mut hint = String::new();
            let denied = String::from_utf8_lossy(&out.stderr).contains("Permission denied");
            if denied && matches!(self.launcher, Launcher::As { .. }) {
                hint = format!(
                    "\n(initdb ran as {}; it must be able to traverse every parent of {})",
                    self.launcher.describe(),
                    self.root.path().display()
                );
            }
            return Err(ClusterError::Initdb {
                status: out.status,
                data_dir: self.data_dir.clone(),
                log_tail: format!("{}{hint}", output_tail(&out)),
            });
        }
        Ok(())
    }

    fn configure(&self, opts: &ClusterOptions) -> Result<()> {
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", HOST.to_owned()),
            (
                "unix_socket_directories",
                self.socket_dir.display().to_string(),
            ),
            ("fsync", "off".to_owned()),
            ("synchronous_commit", "off".to_owned()),
            ("full_page_writes", "off".to_owned()),
            ("password_encryption", "scram-sha-256".to_owned()),
            ("logging_collector", "off".to_owned()),
            ("lc_messages", "C".to_owned()),
            ("timezone", "UTC".to_owned()),
            ("log_timezone", "UTC".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();

        if let Some(tls) = &opts.tls {
            self.install_private_file(&tls.cert_pem, "server.crt")?;
            self.install_private_file(&tls.key_pem, "server.key")?;
            settings.push(("ssl".into(), "on".into()));
            settings.push(("ssl_cert_file".into(), "server.crt".into()));
            settings.push(("ssl_key_file".into(), "server.key".into()));
            if let Some(ca) = &opts.tls_client_ca {
                self.install_private_file(ca, "root.crt")?;
                settings.push(("ssl_ca_file".into(), "root.crt".into()));
            }
        }
        settings.extend(opts.extra_conf.iter().cloned());

        let mut conf = String::from("\n# ---- added by portcullis-cluster ----\n");
        for (k, v) in &settings {
            conf.push_str(&format!("{k} = {}\n", quote_conf_value(v)));
        }
        let conf_path = self.data_dir.join("postgresql.conf");
        fs::OpenOptions::new()
            .append(true)
            .open(&conf_path)
            .and_then(|mut f| f.write_all(conf.as_bytes()))
            .map_err(|e| ClusterError::io(format!("appending to {}", conf_path.display()), e))?;

        let hba_path = self.data_dir.join("pg_hba.conf");
        fs::write(&hba_path, opts.hba.as_deref().unwrap_or(DEFAULT_HBA))
            .map_err(|e| ClusterError::io(format!("writing {}", hba_path.display()), e))?;
        Ok(())
    }

    /// Copies `src` into the data directory as `name`, mode 0600, owned by
    /// the server user.
    fn install_private_file(&self, src: &Path, name: &str) -> Result<()> {
        let bytes =
            fs::read(src).map_err(|e| ClusterError::io(format!("reading {}", src.display()), e))?;
        let dst = self.data_dir.join(name);
        write_private(&dst, &bytes)?;
        self.launcher.chown(&dst)
    }

    /// `pg_ctl start -w` on the current port, then waits for TCP accepts.
    fn start_server(&mut self) -> Result<()> {
        let port = self.port();
        let log_offset = fs::metadata(&self.log_file).map(|m| m.len()).unwrap_or(0);
        let start_err = |reason: String, this: &Self| ClusterError::Start {
            port,
            reason,
            log_file: this.log_file.clone(),
            log_tail: file_tail(&this.log_file, log_offset, LOG_TAIL_LINES),
        };

        let out = self
            .server_command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-s", "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(format!("-p {port}"))
            .output()
            .map_err(|e| ClusterError::io("running pg_ctl start", e))?;
        if !out.status.success() {
            // On a timeout the postmaster may still be coming up: make sure
            // Drop stops it.
            self.running = self.postmaster_pid().is_some();
            return Err(start_err(
                format!("pg_ctl start {}: {}", out.status, output_tail(&out)),
                self,
            ));
        }
        self.running = true;

        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(start_err(
                    "pg_ctl reported success but 127.0.0.1 does not accept connections".into(),
                    self,
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pg_ctl_stop(&mut self, mode: &str) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let out = self
            .server_command("pg_ctl")
            .args(["stop", "-w", "-t", "60", "-s", "-m", mode, "-D"])
            .arg(&self.data_dir)
            .output()
            .map_err(|e| ClusterError::io("running pg_ctl stop", e))?;
        if !out.status.success() && self.postmaster_pid().is_some() {
            return Err(ClusterError::Command {
                command: format!("pg_ctl stop -m {mode}"),
                status: out.status,
                output: output_tail(&out),
            });
        }
        self.running = false;
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if !self.running {
            return;
        }
        if self.pg_ctl_stop("immediate").is_err() {
            // Last resort: SIGQUIT is PostgreSQL's immediate shutdown.
            if let Some(pid) = self.postmaster_pid().and_then(|p| i32::try_from(p).ok())
                && pid > 0
            {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(pid, libc::SIGQUIT);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

/// Whether a start failure was caused by the port being taken.
fn is_bind_error(err: &ClusterError) -> bool {
    match err {
        ClusterError::Start { log_tail, .. } => {
            log_tail.contains("could not bind")
                || log_tail.contains("Address already in use")
                || log_tail.contains("could not create any TCP/IP sockets")
        }
        _ => false,
    }
}

/// Tail of a command's stdout and stderr.
fn output_tail(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let t = tail(text.trim(), LOG_TAIL_LINES);
    if t.is_empty() {
        "(no output)".into()
    } else {
        t
    }
}

/// Writes a file only its owner can read (mode 0600).
fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let _ = fs::remove_file(path);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| ClusterError::io(format!("writing {}", path.display()), e))
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| ClusterError::io(format!("chmod {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random port that turns out to be taken is replaced by another one.
    #[test]
    fn bind_failure_on_random_port_retries() {
        let squatter = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let taken = squatter.local_addr().unwrap().port();
        let c = Cluster::start_on(ClusterOptions::default(), PortReservation::fixed(taken))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(c.port(), taken);
        assert_eq!(c.psql("postgres", "select 1").unwrap(), "1");
        let log = std::fs::read_to_string(c.log_file()).unwrap();
        assert!(log.contains("could not bind"), "{log}");
    }
}
