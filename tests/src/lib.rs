//! Test support: throwaway PostgreSQL clusters, the gateway under test, and client helpers.
//!
//! A [`TestEnv`] is one throwaway PostgreSQL cluster (SCRAM authentication, the
//! demo database seeded) plus one Portcullis gateway started in-process in front
//! of it, configured with three identities:
//!
//! | identity    | kind   | groups                | password   |
//! |-------------|--------|-----------------------|------------|
//! | `alice`     | person | `analysts`            | `alice-pw` |
//! | `bob`       | person | `dba`, `pii-readers`  | `bob-pw`   |
//! | `etl-agent` | agent  | `pipelines`           | `etl-pw`   |
//!
//! Each test binary shares one environment through [`shared`]; tests that need
//! a differently configured gateway start one more with
//! [`TestEnv::start_gateway`], and tests that break the cluster (kill it) start
//! their own environment with [`TestEnv::start`].
//!
//! Gateways run on a dedicated background tokio runtime, so they outlive the
//! per-test runtimes of `#[tokio::test]`. Clusters held by shared (static)
//! environments are stopped at process exit.

pub mod admin;
pub mod idp;
pub mod pg;
pub mod policies;
pub mod raw;
pub mod tap;
pub mod tls;
pub mod tools;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Once, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use portcullis_cluster::{Cluster, ClusterOptions, TestPki};
use tempfile::TempDir;

pub use pg::{Conn, sqlstate};
pub use tools::{CmdOutput, psql, psql_c, require_tool};

/// The identities every gateway is configured with: (name, kind, groups, password).
pub const IDENTITIES: [(&str, &str, &[&str], &str); 3] = [
    ("alice", "person", &["analysts"], "alice-pw"),
    ("bob", "person", &["dba", "pii-readers"], "bob-pw"),
    ("etl-agent", "agent", &["pipelines"], "etl-pw"),
];

/// The password of a configured identity; for any other name a password that
/// certainly does not match anything.
pub fn password_for(user: &str) -> &'static str {
    IDENTITIES
        .iter()
        .find(|(name, ..)| *name == user)
        .map(|(.., pw)| *pw)
        .unwrap_or("not-a-configured-password")
}

/// The superuser password of every test cluster (the clusters only listen on
/// 127.0.0.1 and live for one test run).
pub const SUPERUSER_PASSWORD: &str = "portcullis-test-superuser-pw";

// ---------------------------------------------------------------------------
// Options
// ---------------------------------------------------------------------------

/// Client-facing TLS of a gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTls {
    /// No `[server.tls]`: SSLRequest is declined.
    Off,
    /// TLS offered, plaintext still accepted.
    Optional,
    /// TLS required (`required = true`).
    Required,
}

/// How to configure one gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// `server.max_connections`.
    pub max_connections: usize,
    /// `server.max_message_bytes`.
    pub max_message_bytes: usize,
    /// `server.startup_timeout_ms`.
    pub startup_timeout_ms: u64,
    /// `server.idle_timeout_ms`.
    pub idle_timeout_ms: u64,
    /// `[server.tls]`.
    pub client_tls: ClientTls,
    /// Verify PostgreSQL's certificate (`upstream.tls = "verify-full"`); needs
    /// an environment started with [`EnvOptions::upstream_tls`].
    pub upstream_verify_full: bool,
    /// Extra `[databases.*]` entries besides `demo` and `postgres`.
    pub databases: Vec<String>,
    /// Policies to load (`[[policies]]`), in chain order.
    pub policies: Vec<portcullis::config::PolicyConfig>,
    /// Extra configuration text appended as is (e.g. a `[policy_dir]` table).
    pub extra_toml: String,
    /// `[admin] control_token`, enabling the reload/rollback endpoints.
    pub admin_control_token: Option<String>,
    /// `server.session_threads`.
    pub session_threads: usize,
    /// `masking.catalog_refresh_ms` (with policies); `None`: the default.
    pub catalog_refresh_ms: Option<u64>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            max_connections: 10_000,
            max_message_bytes: 268_435_456,
            startup_timeout_ms: 10_000,
            idle_timeout_ms: 0,
            client_tls: ClientTls::Off,
            upstream_verify_full: false,
            databases: Vec::new(),
            policies: Vec::new(),
            extra_toml: String::new(),
            admin_control_token: None,
            session_threads: 0,
            catalog_refresh_ms: None,
        }
    }
}

/// How to build a [`TestEnv`].
#[derive(Debug, Clone, Default)]
pub struct EnvOptions {
    /// Run PostgreSQL with `ssl = on` (certificate from the test PKI).
    pub upstream_tls: bool,
    /// Extra `postgresql.conf` settings.
    pub extra_conf: Vec<(String, String)>,
    /// Databases to create (empty) besides `demo`; they are also declared in
    /// the default gateway's `[databases]`.
    pub databases: Vec<String>,
    /// The default gateway.
    pub gateway: GatewayOptions,
}

// ---------------------------------------------------------------------------
// The gateway runtime and process-exit cleanup
// ---------------------------------------------------------------------------

/// The runtime gateways run on: it lives as long as the test process, unlike
/// the runtime of any single `#[tokio::test]`.
static GATEWAY_RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("gateway-under-test")
        .enable_all()
        .build()
        .expect("building the gateway runtime")
});

/// What must be torn down when an environment goes away (or the process exits).
#[derive(Default)]
struct Resources {
    cluster: Option<Cluster>,
    dir: Option<TempDir>,
}

type SharedResources = Arc<Mutex<Resources>>;

static LIVE: Mutex<Vec<Weak<Mutex<Resources>>>> = Mutex::new(Vec::new());

extern "C" fn cleanup_at_exit() {
    let live = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for weak in live {
        if let Some(res) = weak.upgrade() {
            let mut res = res.lock().unwrap_or_else(|e| e.into_inner());
            drop(res.cluster.take());
            drop(res.dir.take());
        }
    }
}

fn register_for_cleanup(res: &SharedResources) {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        // SAFETY: registering a plain extern "C" fn with atexit is sound.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
    });
    let mut live = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    live.retain(|w| w.strong_count() > 0);
    live.push(Arc::downgrade(res));
}

// ---------------------------------------------------------------------------
// Gateway
// ---------------------------------------------------------------------------

/// A running gateway under test.
pub struct Gateway {
    handle: Mutex<Option<portcullis::server::GatewayHandle>>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    /// The configuration text it was started with.
    pub config_text: String,
    /// The test CA (for `sslmode=verify-full`).
    pub ca_cert: PathBuf,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Parses `config_text` and starts a gateway on the gateway runtime.
    pub async fn start(config_path: &Path, config_text: &str, ca_cert: &Path) -> Result<Gateway> {
        Gateway::start_with(config_path, config_text, ca_cert, None).await
    }

    /// [`Gateway::start`] with caller-chosen plugins (gate and result filter),
    /// through `portcullis::server::start_with`.
    pub async fn start_with(
        config_path: &Path,
        config_text: &str,
        ca_cert: &Path,
        plugins: Option<portcullis::server::Plugins>,
    ) -> Result<Gateway> {
        init_test_logging();
        let config = portcullis::config::parse(config_path, config_text)
            .map_err(|e| anyhow!("gateway config rejected: {e}\n--- config ---\n{config_text}"))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let res = GATEWAY_RT.block_on(async move {
                match plugins {
                    None => portcullis::server::start(config).await,
                    Some(p) => portcullis::server::start_with(config, p).await,
                }
            });
            let _ = tx.send(res);
        });
        let handle = rx
            .await
            .context("gateway start thread died")?
            .context("portcullis::server::start failed")?;
        Ok(Gateway {
            addr: handle.addr(),
            admin_addr: handle.admin_addr(),
            handle: Mutex::new(Some(handle)),
            config_text: config_text.to_owned(),
            ca_cert: ca_cert.to_owned(),
        })
    }

    /// The client-facing address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The client-facing port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The admin HTTP address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// `GatewayHandle::active_connections()` (0 once shut down).
    pub fn active_connections(&self) -> usize {
        self.lock()
            .as_ref()
            .map(|h| h.active_connections())
            .unwrap_or(0)
    }

    fn lock(&self) -> MutexGuard<'_, Option<portcullis::server::GatewayHandle>> {
        self.handle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (up to `within`) until `active_connections()` equals `n`;
    /// returns the last value seen as the error otherwise.
    pub async fn wait_active_connections(&self, n: usize, within: Duration) -> Result<(), usize> {
        let deadline = Instant::now() + within;
        loop {
            let now = self.active_connections();
            if now == n {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(now);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Shuts the gateway down (idempotent).
    pub async fn shutdown(&self) {
        let handle = self.lock().take();
        if let Some(handle) = handle {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                GATEWAY_RT.block_on(handle.shutdown());
                let _ = tx.send(());
            });
            let _ = rx.await;
        }
    }

    /// `postgresql://user:pw@127.0.0.1:port/db?sslmode=disable` with the
    /// identity's configured password.
    pub fn uri(&self, user: &str, db: &str) -> String {
        self.uri_with(user, password_for(user), db, "sslmode=disable")
    }

    /// A URI with an explicit password and query string (`params`, without `?`).
    pub fn uri_with(&self, user: &str, password: &str, db: &str, params: &str) -> String {
        build_uri(user, password, "127.0.0.1", self.port(), db, params)
    }

    /// A URI with `sslmode=verify-full` against the test CA.
    pub fn uri_verify_full(&self, user: &str, db: &str) -> String {
        self.uri_with(
            user,
            password_for(user),
            db,
            &format!("sslmode=verify-full&sslrootcert={}", self.ca_cert.display()),
        )
    }

    /// Connects with tokio-postgres (no TLS) as `user` to `db`.
    pub async fn connect(&self, user: &str, db: &str) -> Result<Conn> {
        pg::connect(&self.uri(user, db)).await
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        // Not waited for: the test's own client tasks may need this thread
        // to close their sessions before the shutdown grace period ends.
        let handle = self.lock().take();
        if let Some(handle) = handle {
            std::thread::spawn(move || GATEWAY_RT.block_on(handle.shutdown()));
        }
    }
}

/// Builds a `postgresql://` URI, percent-encoding user, password and database.
pub fn build_uri(
    user: &str,
    password: &str,
    host: &str,
    port: u16,
    db: &str,
    params: &str,
) -> String {
    let mut uri = format!(
        "postgresql://{}:{}@{host}:{port}/{}",
        percent_encode(user),
        percent_encode(password),
        percent_encode(db)
    );
    if !params.is_empty() {
        uri.push('?');
        uri.push_str(params);
    }
    uri
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// TestEnv
// ---------------------------------------------------------------------------

/// One cluster plus the default gateway in front of it.
pub struct TestEnv {
    res: SharedResources,
    /// The default gateway.
    pub gw: Gateway,
    /// The options the environment was built with.
    pub opts: EnvOptions,
    pg_port: u16,
    superuser: String,
    pki: TestPki,
    dir_path: PathBuf,
    log_file: PathBuf,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("pg_port", &self.pg_port)
            .field("gw", &self.gw)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// Starts a cluster, seeds `demo`, creates the extra databases and starts
    /// the default gateway.
    pub async fn start(opts: EnvOptions) -> Result<TestEnv> {
        tools::require_tool("psql");
        let dir = tempfile::Builder::new()
            .prefix("portcullis-tests-")
            .tempdir()
            .context("creating the test directory")?;
        let dir_path = dir.path().to_owned();
        let pki = portcullis_cluster::generate_test_pki(
            &dir_path.join("pki"),
            &["localhost", "127.0.0.1"],
        )
        .context("generating the test PKI")?;

        let mut cluster_opts = ClusterOptions {
            superuser: "postgres".into(),
            superuser_password: SUPERUSER_PASSWORD.into(),
            extra_conf: vec![
                ("max_connections".into(), "400".into()),
                ("log_connections".into(), "on".into()),
                ("log_disconnections".into(), "on".into()),
            ],
            ..ClusterOptions::default()
        };
        cluster_opts
            .extra_conf
            .extend(opts.extra_conf.iter().cloned());
        if opts.upstream_tls {
            cluster_opts.tls = Some(pki.server_tls());
        }
        let databases = opts.databases.clone();
        let cluster = tokio::task::spawn_blocking(move || -> Result<Cluster> {
            let cluster =
                Cluster::start(cluster_opts).context("starting the PostgreSQL cluster")?;
            portcullis_cluster::seed_demo(&cluster, "demo").context("seeding the demo database")?;
            for db in &databases {
                cluster
                    .create_database(db)
                    .with_context(|| format!("creating database {db}"))?;
            }
            Ok(cluster)
        })
        .await
        .context("cluster start task panicked")??;

        let pg_port = cluster.port();
        let superuser = cluster.superuser().to_owned();
        let log_file = cluster.log_file();
        let res: SharedResources = Arc::new(Mutex::new(Resources {
            cluster: Some(cluster),
            dir: Some(dir),
        }));
        register_for_cleanup(&res);

        let mut gw_opts = opts.gateway.clone();
        gw_opts.databases.extend(opts.databases.iter().cloned());
        let gw_text = gateway_config_text(pg_port, &superuser, &pki, &gw_opts);
        let gw = Gateway::start(&dir_path.join("portcullis.toml"), &gw_text, &pki.ca_cert).await?;
        Ok(TestEnv {
            res,
            gw,
            opts,
            pg_port,
            superuser,
            pki,
            dir_path,
            log_file,
        })
    }

    /// Starts one more gateway in front of this environment's cluster.
    pub async fn start_gateway(&self, opts: GatewayOptions) -> Result<Gateway> {
        let text = gateway_config_text(self.pg_port, &self.superuser, &self.pki, &opts);
        Gateway::start(
            &self.dir_path.join("extra-gateway.toml"),
            &text,
            &self.pki.ca_cert,
        )
        .await
    }

    /// Starts one more gateway with caller-chosen plugins (gate, result filter).
    pub async fn start_gateway_with(
        &self,
        opts: GatewayOptions,
        plugins: portcullis::server::Plugins,
    ) -> Result<Gateway> {
        let text = gateway_config_text(self.pg_port, &self.superuser, &self.pki, &opts);
        Gateway::start_with(
            &self.dir_path.join("plugin-gateway.toml"),
            &text,
            &self.pki.ca_cert,
            Some(plugins),
        )
        .await
    }

    /// The configuration text of a gateway in front of this cluster.
    pub fn gateway_config(&self, opts: &GatewayOptions) -> String {
        gateway_config_text(self.pg_port, &self.superuser, &self.pki, opts)
    }

    /// Runs `f` with the cluster (e.g. to `kill()` or `restart()` it).
    pub fn with_cluster<T>(&self, f: impl FnOnce(&mut Cluster) -> T) -> T {
        let mut res = self.res.lock().unwrap_or_else(|e| e.into_inner());
        f(res
            .cluster
            .as_mut()
            .expect("the cluster is gone (process exiting)"))
    }

    /// Runs SQL as the superuser straight against PostgreSQL with the
    /// cluster's psql helper (`-At`, ON_ERROR_STOP); panics on failure.
    pub fn admin_sql(&self, db: &str, sql: &str) -> String {
        self.with_cluster(|c| c.psql(db, sql))
            .unwrap_or_else(|e| panic!("admin SQL failed in {db}: {e}\nSQL: {sql}"))
    }

    /// PostgreSQL's port.
    pub fn pg_port(&self) -> u16 {
        self.pg_port
    }

    /// The server log of the cluster.
    pub fn pg_log_file(&self) -> &Path {
        &self.log_file
    }

    /// The last lines of the server log, for failure messages.
    pub fn pg_log_tail(&self, lines: usize) -> String {
        self.with_cluster(|c| c.log_tail(lines))
    }

    /// The test PKI.
    pub fn pki(&self) -> &TestPki {
        &self.pki
    }

    /// A scratch directory that lives as long as the environment.
    pub fn scratch_dir(&self) -> &Path {
        &self.dir_path
    }

    /// URI of the default gateway for `user` (with the configured password).
    pub fn gateway_uri(&self, user: &str, db: &str) -> String {
        self.gw.uri(user, db)
    }

    /// URI of PostgreSQL itself, as the superuser (for differential comparisons).
    pub fn direct_uri(&self, db: &str) -> String {
        build_uri(
            &self.superuser,
            SUPERUSER_PASSWORD,
            "127.0.0.1",
            self.pg_port,
            db,
            "sslmode=disable",
        )
    }

    /// tokio-postgres connection through the default gateway.
    pub async fn connect_gateway(&self, user: &str, db: &str) -> Result<Conn> {
        pg::connect(&self.gateway_uri(user, db)).await
    }

    /// tokio-postgres connection straight to PostgreSQL (superuser).
    pub async fn connect_direct(&self, db: &str) -> Result<Conn> {
        pg::connect(&self.direct_uri(db)).await
    }
}

/// The gateway configuration for a cluster on `pg_port`.
pub fn gateway_config_text(
    pg_port: u16,
    superuser: &str,
    pki: &TestPki,
    opts: &GatewayOptions,
) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nmax_connections = {}\nmax_message_bytes = {}\n\
         startup_timeout_ms = {}\nidle_timeout_ms = {}\nsession_threads = {}\n",
        opts.max_connections,
        opts.max_message_bytes,
        opts.startup_timeout_ms,
        opts.idle_timeout_ms,
        opts.session_threads
    ));
    if opts.client_tls != ClientTls::Off {
        t.push_str(&format!(
            "\n[server.tls]\ncert = {}\nkey = {}\nrequired = {}\n",
            toml_str(&pki.server_cert.display().to_string()),
            toml_str(&pki.server_key.display().to_string()),
            opts.client_tls == ClientTls::Required
        ));
    }
    t.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    if let Some(token) = &opts.admin_control_token {
        t.push_str(&format!("control_token = {}\n", toml_str(token)));
    }
    // A generous connect timeout: a hundred sessions logging in at once on a loaded
    // CI machine are slow, and no test here times the upstream's login.
    t.push_str(&format!(
        "\n[upstream]\nhost = \"127.0.0.1\"\nport = {pg_port}\nuser = {}\npassword = {}\nconnect_timeout_ms = 30000\n",
        toml_str(superuser),
        toml_str(SUPERUSER_PASSWORD)
    ));
    if opts.upstream_verify_full {
        t.push_str(&format!(
            "tls = \"verify-full\"\nca = {}\n",
            toml_str(&pki.ca_cert.display().to_string())
        ));
    } else {
        t.push_str("tls = \"disable\"\n");
    }
    let mut dbs = vec!["demo".to_owned(), "postgres".to_owned()];
    for db in &opts.databases {
        if !dbs.contains(db) {
            dbs.push(db.clone());
        }
    }
    for db in dbs {
        t.push_str(&format!("\n[databases.{}]\n", toml_str(&db)));
    }
    if !opts.policies.is_empty() {
        t.push('\n');
        t.push_str(&policies::policies_toml(&opts.policies));
        t.push_str("\n[masking]\npseudonym_key = \"portcullis-tests-pseudonym-key\"\n");
        if let Some(ms) = opts.catalog_refresh_ms {
            t.push_str(&format!("catalog_refresh_ms = {ms}\n"));
        }
    }
    for (name, kind, groups, password) in IDENTITIES {
        let groups: Vec<String> = groups.iter().map(|g| toml_str(g)).collect();
        t.push_str(&format!(
            "\n[[identities]]\nname = {}\nkind = \"{kind}\"\ngroups = [{}]\nscram = {}\n",
            toml_str(name),
            groups.join(", "),
            toml_str(&portcullis_auth::verifier_for(password))
        ));
    }
    if !opts.extra_toml.is_empty() {
        t.push('\n');
        t.push_str(&opts.extra_toml);
        t.push('\n');
    }
    t
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// With `PORTCULLIS_TEST_LOG=<filter>` (e.g. `debug`), gateways under test log to
/// stderr (shown for failing tests).
fn init_test_logging() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("PORTCULLIS_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The shared environment of one test binary: started on first use.
///
/// ```text
/// static ENV: tokio::sync::OnceCell<TestEnv> = tokio::sync::OnceCell::const_new();
/// async fn env() -> &'static TestEnv { portcullis_tests::shared(&ENV, EnvOptions::default).await }
/// ```
pub async fn shared(
    cell: &'static tokio::sync::OnceCell<TestEnv>,
    opts: fn() -> EnvOptions,
) -> &'static TestEnv {
    cell.get_or_init(|| async move {
        match TestEnv::start(opts()).await {
            Ok(env) => env,
            Err(e) => panic!("could not start the test environment: {e:#}"),
        }
    })
    .await
}

/// Polls `f` until it returns `Ok`, or fails with its last error after `within`.
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => {
                bail!("{what}: not true within {within:?}: {e:#}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A name unique within this process (for tables, schemas, channels, app names).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}
