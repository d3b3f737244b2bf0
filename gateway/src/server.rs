//! Starting and stopping a gateway: listeners, shared state, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::Context;
use portcullis_sql::Analyzer;
use portcullis_wire::Limits;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::audit::{AuditContext, AuditLog, PolicyRef};
use crate::cancel::CancelRegistry;
use crate::config::Config;
use crate::identity::IdentityStore;
use crate::metrics::Metrics;
use crate::pipeline::{Gate, NoMasking, PassThrough, ResultFilter};
use crate::policy::reload::PolicySets;
use crate::policy::reload::watch::ReloadHandle;

/// Everything connections share. Built once, passed explicitly.
pub struct Shared {
    /// The configuration in force.
    pub config: Arc<Config>,
    /// Declared identities.
    pub identities: Arc<IdentityStore>,
    /// Statement analysis and its cache.
    pub analyzer: Arc<Analyzer>,
    /// The decision point.
    pub gate: Arc<dyn Gate>,
    /// The row-rewriting point.
    pub filter: Arc<dyn ResultFilter>,
    /// Metrics.
    pub metrics: Metrics,
    /// Cancel-key routing.
    pub cancels: Arc<CancelRegistry>,
    /// Client TLS, if configured.
    pub tls_acceptor: Option<TlsAcceptor>,
    /// Upstream TLS, if configured.
    pub upstream_tls: Option<TlsConnector>,
    /// Message size caps.
    pub limits: Limits,
    /// Source of session ids.
    pub next_session: AtomicU64,
    /// Flips to true when the gateway shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Reloads and rollbacks of the policy directory, when one is configured.
    pub policy_reload: Option<ReloadHandle>,
    /// The audit trail, when `[audit]` is configured.
    pub audit: Option<Arc<AuditContext>>,
    /// Approvals of held statements, when `[approvals]` is configured.
    pub approvals: Option<Arc<crate::approvals::Approvals>>,
    /// The traffic recording, when `[recording]` is configured.
    pub recorder: Option<Arc<crate::recording::Recorder>>,
    /// The shadow policy set, when `[shadow]` is configured.
    pub shadow: Option<Arc<crate::policy::shadow::Shadow>>,
}

/// Extension points chosen by the caller (policies, masking); defaults pass everything.
pub struct Plugins {
    /// The decision point.
    pub gate: Arc<dyn Gate>,
    /// The row-rewriting point.
    pub filter: Arc<dyn ResultFilter>,
}

impl Default for Plugins {
    fn default() -> Self {
        Plugins {
            gate: Arc::new(PassThrough),
            filter: Arc::new(NoMasking),
        }
    }
}

/// The audit trail's record of a loaded policy chain.
pub fn policy_refs(chain: &crate::policy::PolicyChain) -> Vec<PolicyRef> {
    chain
        .policies()
        .iter()
        .map(|p| PolicyRef {
            id: p.id().to_owned(),
            name: p.metadata().name.clone(),
            version: p.metadata().version.clone(),
            sha256: p.sha256().to_owned(),
            mode: p.mode().as_str().to_owned(),
        })
        .collect()
}

/// A running gateway.
pub struct GatewayHandle {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl GatewayHandle {
    /// The client listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin HTTP address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Client connections open now.
    pub fn active_connections(&self) -> usize {
        self.shared.metrics.connections_active.get().max(0) as usize
    }

    /// The shared state (metrics, analyzer, ...).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Stops accepting, lets open sessions finish within the configured grace period,
    /// then closes the rest.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        close_audit(&self.shared).await;
    }

    /// Waits until the gateway stops (after [`GatewayHandle::shutdown`] from elsewhere,
    /// or a fatal listener error).
    pub async fn wait(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
        close_audit(&self.shared).await;
    }

    /// Reloads and rollbacks of the policy directory, when one is configured.
    pub fn policy_reload(&self) -> Option<&ReloadHandle> {
        self.shared.policy_reload.as_ref()
    }

    /// A sender that triggers shutdown, for signal handlers.
    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Starts a gateway. With `[[policies]]` in the configuration, every statement passes
/// the policy chain (loaded before the listener opens; any policy that fails to load
/// fails the start); without, everything is allowed.
pub async fn start(config: Config) -> anyhow::Result<GatewayHandle> {
    let metrics = Metrics::new();
    let mut sets = None;
    let mut policies = Vec::new();
    let plugins = if let Some(dir) = &config.policy_dir {
        let s = load_policy_dir(&config, dir.clone(), &metrics).await?;
        policies = policy_refs(&s.current().chain);
        sets = Some(Arc::clone(&s));
        live_policy_plugins(&config, s)
    } else if config.policies.is_empty() {
        Plugins::default()
    } else {
        let chain = Arc::new(load_policies(&config, &metrics).await?);
        policies = policy_refs(&chain);
        policy_plugins(&config, chain)
    };
    start_inner(config, plugins, metrics, sets, policies).await
}

/// Wraps the gate and filter with the shadow set and the traffic recording, when
/// configured. Both observe; neither changes a decision or a row.
async fn observe(
    config: &Config,
    plugins: Plugins,
    metrics: &Metrics,
) -> anyhow::Result<(
    Plugins,
    Option<Arc<crate::recording::Recorder>>,
    Option<Arc<crate::policy::shadow::Shadow>>,
)> {
    let Plugins {
        mut gate,
        mut filter,
    } = plugins;
    let catalog = filter.catalog().cloned();
    let mut shadow = None;
    if let Some(sc) = &config.shadow {
        let sc = sc.clone();
        let cache = config.policy_runtime.cache_dir.clone();
        let registry = metrics.registry.clone();
        let s = tokio::task::spawn_blocking(move || {
            crate::policy::shadow::Shadow::start(&sc, cache, Some(&registry))
        })
        .await
        .context("loading the shadow policy set panicked")??;
        use crate::pipeline::{ObservingFilter, ObservingGate};
        use crate::policy::shadow::{ShadowFilter, ShadowGate};
        let observer = ShadowGate::new(Arc::clone(&s), catalog.clone());
        gate = Arc::new(ObservingGate::new(gate, observer));
        filter = Arc::new(ObservingFilter::new(
            filter,
            ShadowFilter::new(Arc::clone(&s)),
        ));
        shadow = Some(s);
    }
    let mut recorder = None;
    if let Some(rc) = &config.recording {
        let r = crate::recording::Recorder::start(rc.clone(), Some(&metrics.registry))?;
        (gate, filter) = crate::recording::wrap(&r, gate, filter);
        recorder = Some(r);
    }
    Ok((Plugins { gate, filter }, recorder, shadow))
}

/// Loads a policy directory's first set (off the runtime's worker threads).
async fn load_policy_dir(
    config: &Config,
    dir: crate::config::PolicyDirConfig,
    metrics: &Metrics,
) -> anyhow::Result<Arc<PolicySets>> {
    let policy_metrics = crate::policy::PolicyMetrics::register(&metrics.registry)
        .context("cannot register policy metrics")?;
    let cache_dir = config.policy_runtime.cache_dir.clone();
    let allow_fc = config.policy_runtime.allow_function_call;
    let registry = metrics.registry.clone();
    let sets = tokio::task::spawn_blocking(move || -> anyhow::Result<PolicySets> {
        let runtime = crate::policy::PolicyRuntime::new(cache_dir, policy_metrics)?;
        PolicySets::load(dir, runtime, allow_fc, &registry)
    })
    .await
    .context("policy loading panicked")??;
    Ok(Arc::new(sets))
}

/// The masking catalog cache and pseudonym key from `[masking]`.
fn masking_parts(config: &Config) -> (Arc<crate::masking::Catalog>, crate::masking::PseudonymKey) {
    let m = &config.masking;
    let catalog = crate::masking::Catalog::new(Duration::from_millis(m.catalog_refresh_ms.max(1)));
    let key = match m.resolved_key() {
        Some(k) => crate::masking::PseudonymKey::new(k.into_bytes()),
        None => {
            tracing::warn!(
                "no [masking] pseudonym_key configured: pseudonyms change when the gateway restarts"
            );
            crate::masking::PseudonymKey::random()
        }
    };
    (catalog, key)
}

/// The gate and filter of a hot-reloaded policy directory: both follow the live set,
/// so a reload that adds, changes or removes a masking policy applies from the next
/// statement and result set. Results are tracked even while no set masks (a later
/// one may).
pub fn live_policy_plugins(config: &Config, sets: Arc<PolicySets>) -> Plugins {
    let (catalog, key) = masking_parts(config);
    let filter = Arc::new(crate::masking::MaskingFilter::live(
        Arc::clone(&sets),
        Arc::clone(&catalog),
        key,
        config.masking.batch_rows,
    ));
    Plugins {
        gate: Arc::new(crate::masking::MaskingGate::live(sets, catalog)),
        filter,
    }
}

/// The gate and filter of a loaded policy chain: the chain decides statements; when a
/// policy implements the `mask` hook, a [`MaskingFilter`](crate::masking::MaskingFilter)
/// masks results, with a catalog cache reloaded after DDL.
pub fn policy_plugins(config: &Config, chain: Arc<crate::policy::PolicyChain>) -> Plugins {
    let mask_policies = chain.mask_policies();
    if mask_policies.is_empty() {
        return Plugins {
            gate: chain,
            filter: Arc::new(NoMasking),
        };
    }
    let (catalog, key) = masking_parts(config);
    let filter = Arc::new(crate::masking::MaskingFilter::new(
        mask_policies,
        Arc::clone(&catalog),
        key,
        config.masking.batch_rows,
    ));
    Plugins {
        gate: Arc::new(crate::masking::MaskingGate::new(
            chain,
            Arc::clone(&catalog),
        )),
        filter,
    }
}

/// Loads the configured policies (compiling can take seconds: done off the runtime's
/// worker threads), with their metrics in the gateway's registry.
pub async fn load_policies(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<crate::policy::PolicyChain> {
    let policy_metrics = crate::policy::PolicyMetrics::register(&metrics.registry)
        .context("cannot register policy metrics")?;
    let config = config.clone();
    let chain =
        tokio::task::spawn_blocking(move || crate::policy::load_chain(&config, policy_metrics))
            .await
            .context("policy loading panicked")??;
    Ok(chain)
}

/// Starts a gateway with the given plugins. The configuration must not declare
/// `[[policies]]`: they are loaded by [`start`], and a caller-supplied gate would
/// silently replace them.
pub async fn start_with(config: Config, plugins: Plugins) -> anyhow::Result<GatewayHandle> {
    anyhow::ensure!(
        config.policy_dir.is_none(),
        "the configuration declares a [policy_dir], which server::start_with would not enforce; use server::start"
    );
    anyhow::ensure!(
        config.policies.is_empty(),
        "the configuration declares {} [[policies]], which server::start_with would not enforce; use server::start",
        config.policies.len()
    );
    start_inner(config, plugins, Metrics::new(), None, Vec::new()).await
}

async fn start_inner(
    config: Config,
    plugins: Plugins,
    metrics: Metrics,
    policy_sets: Option<Arc<PolicySets>>,
    policies: Vec<PolicyRef>,
) -> anyhow::Result<GatewayHandle> {
    let (plugins, recorder, shadow) = observe(&config, plugins, &metrics).await?;
    let identities = Arc::new(IdentityStore::from_config(&config)?);
    identities.prime().await;
    anyhow::ensure!(
        config.auth.mtls.is_none() || config.server.tls.is_some(),
        "[auth.mtls] needs [server.tls]: client certificates come with TLS"
    );
    let tls_acceptor = config
        .server
        .tls
        .as_ref()
        .map(|t| crate::frontend::server_tls_acceptor(t, identities.mtls().map(|m| m.verifier())))
        .transpose()?;
    let upstream_tls = crate::backend::upstream_tls_connector(&config.upstream)?;
    let limits = Limits {
        max_message: config.server.max_message_bytes,
        ..Limits::default()
    };
    let listeners = bind_listeners(config.server.listen, config.server.session_threads)
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    let addr = listeners[0].local_addr()?;
    let audit = match &config.audit {
        Some(a) => {
            let log = AuditLog::open(a, Some(&metrics.registry))
                .context("cannot open the audit trail")?;
            let ctx = AuditContext::new(log, a, policies);
            let refs = ctx.policies();
            if !refs.is_empty() {
                ctx.log.policy_loaded(
                    &refs,
                    serde_json::json!({"reason": "start", "count": refs.len()}),
                );
            }
            Some(Arc::new(ctx))
        }
        None => None,
    };
    let approvals = match &config.approvals {
        Some(a) => Some(
            crate::approvals::Approvals::start(
                a.clone(),
                Arc::clone(&plugins.gate),
                metrics.clone(),
            )
            .await
            .context("cannot open the approvals store")?,
        ),
        None => None,
    };
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    let policy_reload = match policy_sets {
        Some(sets) => {
            let on_swap: Option<crate::policy::reload::watch::OnSwap> = audit.as_ref().map(|a| {
                let a = Arc::clone(a);
                Arc::new(
                    move |set: &crate::policy::reload::PolicySet, action: &str| {
                        a.policies_swapped(
                            policy_refs(&set.chain),
                            serde_json::json!({
                                "reason": action,
                                "set_version": set.version,
                                "generation": set.generation,
                                "manifest_sha256": set.manifest_sha256,
                            }),
                        );
                    },
                ) as crate::policy::reload::watch::OnSwap
            });
            let (handle, task) =
                crate::policy::reload::watch::spawn(sets, shutdown.clone(), on_swap)?;
            tasks.push(task);
            Some(handle)
        }
        None => None,
    };
    if let Some(s) = shadow.as_ref().filter(|s| s.config().watch) {
        tasks.push(crate::policy::shadow::spawn_watcher(
            Arc::clone(s),
            shutdown.clone(),
        )?);
    }
    let shared = Arc::new(Shared {
        analyzer: Arc::new(Analyzer::new(config.analysis.parse_cache_entries)),
        config: Arc::new(config),
        identities,
        // Role-mapped sessions cannot leave their role (RESET ROLE, SET ROLE, ...).
        gate: Arc::new(crate::pipeline::RoleLock::new(plugins.gate)),
        filter: plugins.filter,
        metrics,
        cancels: Arc::new(CancelRegistry::default()),
        tls_acceptor,
        upstream_tls,
        limits,
        next_session: AtomicU64::new(1),
        shutdown,
        policy_reload,
        audit,
        approvals,
        recorder,
        shadow,
    });
    let mut admin_addr = None;
    if let Some(admin_listen) = shared.config.admin.listen {
        let admin = TcpListener::bind(admin_listen)
            .await
            .with_context(|| format!("cannot listen on admin address {admin_listen}"))?;
        admin_addr = Some(admin.local_addr()?);
        tasks.push(tokio::spawn(crate::admin::serve(
            admin,
            Arc::clone(&shared),
        )));
    }
    let slots = Arc::new(Semaphore::new(shared.config.server.max_connections));
    if shared.config.server.session_threads == 0 {
        let listener = listeners.into_iter().next().expect("one listener");
        tasks.push(tokio::spawn(accept_loop(
            TcpListener::from_std(listener)?,
            Arc::clone(&shared),
            slots,
        )));
    } else {
        for (i, listener) in listeners.into_iter().enumerate() {
            let (shared, slots) = (Arc::clone(&shared), Arc::clone(&slots));
            let thread = std::thread::Builder::new()
                .name(format!("portcullis-sessions-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            tracing::error!(error = %e, "cannot start a session thread");
                            return;
                        }
                    };
                    rt.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(l) => accept_loop(l, shared, slots).await,
                            Err(e) => tracing::error!(error = %e, "cannot register a listener"),
                        }
                    });
                })
                .context("cannot start a session thread")?;
            tasks.push(tokio::task::spawn_blocking(move || {
                let _ = thread.join();
            }));
        }
    }
    tracing::info!(%addr, ?admin_addr, "portcullis listening");
    Ok(GatewayHandle {
        addr,
        admin_addr,
        shared,
        stop,
        tasks,
    })
}

/// Writes the audit trail's `stop` event and stops its writer (off the runtime: it
/// syncs the file).
async fn close_audit(shared: &Arc<Shared>) {
    if let Some(a) = &shared.audit {
        let log = a.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.close()).await;
    }
}

/// The client listeners: one, or with `session_threads` that many `SO_REUSEPORT`
/// sockets on the same address (the first chooses the port when it is 0). They are
/// registered with a runtime by the thread that accepts on them.
fn bind_listeners(addr: SocketAddr, threads: usize) -> std::io::Result<Vec<std::net::TcpListener>> {
    if threads == 0 {
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        return Ok(vec![l]);
    }
    let mut out: Vec<std::net::TcpListener> = Vec::with_capacity(threads);
    let mut at = addr;
    for _ in 0..threads {
        let socket = if at.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(at)?;
        let std: std::net::TcpListener = socket.listen(1024)?.into_std()?;
        at = std.local_addr()?;
        out.push(std);
    }
    Ok(out)
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, slots: Arc<Semaphore>) {
    let mut shutdown = shared.shutdown.clone();
    let mut sessions = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and similar: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        shared.metrics.errors.with_label_values(&["accept"]).inc();
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let permit = Arc::clone(&slots).try_acquire_owned().ok();
                let shared = Arc::clone(&shared);
                sessions.spawn(async move {
                    crate::frontend::serve_connection(socket, peer, shared, permit).await;
                });
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    let grace = Duration::from_millis(shared.config.server.shutdown_grace_ms);
    let drained = tokio::time::timeout(grace, async {
        while sessions.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            remaining = sessions.len(),
            "shutdown grace period over; closing sessions"
        );
        sessions.shutdown().await;
    }
}
