//! The one WebAssembly engine of a gateway, its epoch ticker and the linker every
//! policy is instantiated with.
//!
//! The linker gives a policy exactly three things: the `log` import of the policy world,
//! the `context` interface (see [`super::context`]) and a closed WASI (the interfaces Rust's std imports, backed by nothing): no
//! preopened directories, environment, arguments or network; stdin is empty and
//! stdout/stderr are discarded; both clocks read zero and waiting on a clock traps (a
//! host-side sleep could not be interrupted by the deadline).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::portcullis::policy::types::LogLevel;
use super::bindings::{Policy, PolicyImports};
use super::cache::CompileCache;
use super::metrics::PolicyMetrics;
use super::{PolicyError, caps};

/// The `tracing` target of messages policies write with `log` (filter them with
/// `PORTCULLIS_LOG=portcullis::policy::guest=warn`, for example).
pub const GUEST_LOG_TARGET: &str = "portcullis::policy::guest";

/// Length of one epoch tick: deadlines are counted in these.
pub const TICK: Duration = Duration::from_millis(1);

/// The shared policy runtime: engine, linker, compile cache, metrics and the thread that
/// advances the epoch. Cheap to clone; the ticker stops when the last clone (and every
/// pool built on it) is dropped.
#[derive(Clone)]
pub struct PolicyRuntime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    cache: CompileCache,
    metrics: PolicyMetrics,
    _ticker: Ticker,
}

impl PolicyRuntime {
    /// Creates the engine (component model, epoch interruption), the closed linker and
    /// the compile cache in `cache_dir` (default: see [`CompileCache::default_dir`]).
    pub fn new(cache_dir: Option<PathBuf>, metrics: PolicyMetrics) -> Result<Self, PolicyError> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // For profiling policies with `perf`: wasmtime writes /tmp/perf-PID.map, which
        // names the guests' compiled functions (see `examples/guest_floor.rs`).
        if std::env::var_os("PORTCULLIS_WASM_PERFMAP").is_some() {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let linker = build_linker(&engine).map_err(|e| PolicyError::Engine(format!("{e:#}")))?;
        let cache = CompileCache::new(cache_dir.unwrap_or_else(CompileCache::default_dir), &engine);
        let ticker = Ticker::start(engine.clone());
        Ok(PolicyRuntime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                metrics,
                _ticker: ticker,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The linker (closed WASI + `log`).
    pub fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    /// The compile cache.
    pub fn cache(&self) -> &CompileCache {
        &self.inner.cache
    }

    /// The policy metrics.
    pub fn metrics(&self) -> &PolicyMetrics {
        &self.inner.metrics
    }

    /// A fresh store for one instance of policy `policy`, with a memory cap of
    /// `memory_bytes` per linear memory.
    pub fn new_store(&self, policy: Arc<str>, memory_bytes: usize) -> Store<HostState> {
        let mut store = Store::new(&self.inner.engine, HostState::new(policy, memory_bytes));
        store.limiter(|s| &mut s.limiter);
        store
    }
}

/// Advances the engine's epoch every [`TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("portcullis-policy-epoch".into())
            .spawn(move || {
                // The epoch follows the wall clock: a late wake-up (a busy machine)
                // catches up instead of stretching every deadline.
                let started = std::time::Instant::now();
                let tick = TICK.as_nanos().max(1);
                let mut ticks: u128 = 0;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    let due = started.elapsed().as_nanos() / tick;
                    while ticks < due {
                        engine.increment_epoch();
                        ticks += 1;
                    }
                }
            })
            .map_err(|e| tracing::error!(error = %e, "cannot start the policy epoch thread"))
            .ok();
        Ticker { stop, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a policy instance's store holds: its closed WASI context, its memory limiter,
/// its log budget and the context of the call in progress.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) log: LogBudget,
    /// What the `context` import answers during the current call.
    pub(crate) context: super::CallContext,
}

impl HostState {
    fn new(policy: Arc<str>, memory_bytes: usize) -> Self {
        HostState {
            wasi: closed_wasi(),
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(memory_bytes),
            log: LogBudget::new(policy),
            context: super::CallContext::default(),
        }
    }

    /// Resets the per-call state (log budget, memory-denial flag) and sets the call's
    /// context before a call.
    pub(crate) fn begin_call(&mut self, context: &super::CallContext) {
        self.context.clone_from(context);
        self.log.begin_call();
        self.limiter.denied = false;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl super::bindings::portcullis::policy::types::Host for HostState {}

impl PolicyImports for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        self.log.log(level, &message);
    }
}

/// Caps the size of each linear memory and table of an instance, and remembers whether
/// it refused a growth (so the failure that follows is reported as out-of-memory).
pub(crate) struct MemoryLimiter {
    max_memory: usize,
    pub(crate) denied: bool,
    /// Largest linear memory granted so far, bytes (for `portcullis policy bench`).
    pub(crate) peak: usize,
}

/// Most elements in one table of a policy instance.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl MemoryLimiter {
    fn new(max_memory: usize) -> Self {
        MemoryLimiter {
            max_memory,
            denied: false,
            peak: 0,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.denied = true;
            return Ok(false);
        }
        Ok(true)
    }
}

/// Rate-limits and truncates a policy's `log` calls: at most
/// [`caps::MAX_LOGS_PER_CALL`] messages per call, each cut to [`caps::MAX_LOG_BYTES`].
pub(crate) struct LogBudget {
    policy: Arc<str>,
    left: u32,
    dropped: u32,
}

impl LogBudget {
    fn new(policy: Arc<str>) -> Self {
        LogBudget {
            policy,
            left: caps::MAX_LOGS_PER_CALL,
            dropped: 0,
        }
    }

    fn begin_call(&mut self) {
        self.left = caps::MAX_LOGS_PER_CALL;
        self.dropped = 0;
    }

    /// Reports messages dropped during the call that just ended.
    pub(crate) fn end_call(&mut self) {
        if self.dropped > 0 {
            tracing::warn!(
                policy = &*self.policy,
                dropped = self.dropped,
                "policy logged too much; messages dropped"
            );
            self.dropped = 0;
        }
    }

    fn log(&mut self, level: LogLevel, message: &str) {
        if self.left == 0 {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        self.left -= 1;
        let message = truncate(message, caps::MAX_LOG_BYTES);
        let policy = &*self.policy;
        match level {
            LogLevel::Debug => tracing::debug!(target: GUEST_LOG_TARGET, policy, "{message}"),
            LogLevel::Info => tracing::info!(target: GUEST_LOG_TARGET, policy, "{message}"),
            LogLevel::Warn => tracing::warn!(target: GUEST_LOG_TARGET, policy, "{message}"),
            LogLevel::Error => tracing::error!(target: GUEST_LOG_TARGET, policy, "{message}"),
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A clock frozen at zero: policies have no clock (decisions must not depend on time
/// the gateway did not hand them).
struct FrozenClock;

impl wasmtime_wasi::HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

fn closed_wasi() -> WasiCtx {
    WasiCtx::builder()
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// The linker: closed WASI p2, then the clock-wait functions replaced by traps, then
/// the policy world's `log` and `context` (under its 0.4.0, 0.3.0 and 0.2.0 names).
fn build_linker(engine: &Engine) -> wasmtime::Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    deny_clock_waits(&mut linker)?;
    Policy::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    // Components built against 0.2.0 import `context` under that version.
    super::bindings_v0_2::portcullis::policy::context::add_to_linker::<
        HostState,
        HasSelf<HostState>,
    >(&mut linker, |s| s)?;
    super::bindings_v0_3::portcullis::policy::context::add_to_linker::<
        HostState,
        HasSelf<HostState>,
    >(&mut linker, |s| s)?;
    Ok(linker)
}

/// The monotonic-clock interface as wasmtime-wasi names it (guests importing an older
/// 0.2.x resolve to it by semver). Must match wasmtime-wasi's WIT: a different
/// version here would define a new, unused instance and leave the sleeping functions
/// open; re-check on every wasmtime upgrade.
const MONOTONIC_CLOCK: &str = "wasi:clocks/monotonic-clock@0.2.12";

/// Replaces `wasi:clocks/monotonic-clock`'s `subscribe-duration`/`subscribe-instant`
/// with traps. A guest sleeping would block a gateway thread in the host, where the
/// epoch deadline cannot reach it.
fn deny_clock_waits(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut clock = linker.instance(MONOTONIC_CLOCK)?;
    for name in ["subscribe-duration", "subscribe-instant"] {
        clock.func_wrap(
            name,
            |_store, (_arg,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
                Err(wasmtime::format_err!(
                    "policies cannot wait on a clock (wasi:clocks/monotonic-clock is closed)"
                ))
            },
        )?;
    }
    linker.allow_shadowing(false);
    Ok(())
}
