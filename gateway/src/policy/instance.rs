//! Warm instances of one policy.
//!
//! A call takes an idle instance (or starts and configures a new one), arms the epoch
//! deadline, calls, and puts the instance back. An instance is discarded after
//! `max_calls_per_instance` calls and after every failure: a trapped instance cannot be
//! entered again, and one that hit its memory cap or returned garbage is not trusted.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use wasmtime::Store;
use wasmtime::component::{ComponentExportIndex, Func};

use super::bindings::{Policy, PolicyIndices, PolicyPre};
use super::engine::{HostState, TICK, truncate};
use super::{CallContext, PolicyRuntime};

/// Idle instances kept per policy; more (after a burst) are dropped when returned.
const MAX_IDLE: usize = 32;

/// Extra time given to instantiation and `configure` on top of the call deadline.
const SETUP_GRACE_MS: u64 = 1_000;

/// Per-policy resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyLimits {
    /// CPU deadline of one call, in milliseconds.
    pub deadline_ms: u64,
    /// Cap on each linear memory of an instance, in MiB.
    pub memory_mb: u64,
    /// Calls served by one instance before it is replaced.
    pub max_calls_per_instance: u64,
}

impl Default for PolicyLimits {
    fn default() -> Self {
        PolicyLimits {
            deadline_ms: crate::config::DEFAULT_POLICY_DEADLINE_MS,
            memory_mb: crate::config::DEFAULT_POLICY_MEMORY_MB,
            max_calls_per_instance: crate::config::DEFAULT_POLICY_MAX_CALLS,
        }
    }
}

impl PolicyLimits {
    fn deadline_ticks(&self) -> u64 {
        let tick_ms = TICK.as_millis().max(1) as u64;
        self.deadline_ms.div_ceil(tick_ms).max(1)
    }

    fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory_mb.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
    }
}

/// How a policy call failed. Every failure discards the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The call ran past its deadline.
    Timeout,
    /// The instance hit its memory (or table) cap.
    Memory,
    /// The guest trapped (panic, unreachable, out-of-bounds access, stack overflow).
    Trap,
    /// The guest called `exit`.
    Exit,
    /// The result broke a size cap (see [`super::caps`]).
    Oversized,
    /// The result broke the contract's shape rules (a `mask-cells` answer with the
    /// wrong cell count, lengths out of bounds, invalid UTF-8).
    Invalid,
    /// A fresh instance could not be started.
    Instantiate,
    /// A fresh instance's `configure` returned an error.
    Configure,
}

impl FailureKind {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::Memory => "memory",
            FailureKind::Trap => "trap",
            FailureKind::Exit => "exit",
            FailureKind::Oversized => "oversized",
            FailureKind::Invalid => "invalid",
            FailureKind::Instantiate => "instantiate",
            FailureKind::Configure => "configure",
        }
    }
}

/// A failed policy call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallFailure {
    /// What went wrong.
    pub kind: FailureKind,
    /// A short description for the client and the log.
    pub reason: String,
}

impl std::fmt::Display for CallFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Why a policy's result was not accepted (see [`InstancePool::call_checked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// It broke a size cap.
    Oversized(String),
    /// It broke the contract's shape rules.
    Invalid(String),
}

impl Rejected {
    /// The call failure it makes.
    pub(crate) fn into_failure(self) -> CallFailure {
        match self {
            Rejected::Oversized(why) => CallFailure {
                kind: FailureKind::Oversized,
                reason: format!("oversized result: {why}"),
            },
            Rejected::Invalid(why) => CallFailure {
                kind: FailureKind::Invalid,
                reason: format!("invalid result: {why}"),
            },
        }
    }
}

/// The exports of one instance: the world's (through bindgen) and the optional ones a
/// later minor added, looked up by name. Dereferences to the bindgen [`Policy`].
pub struct PolicyExports {
    policy: Policy,
    /// `mask-cells` (0.3.0), when the component exports it; its type was checked
    /// when the instance started.
    mask_cells: Option<Func>,
    /// `authorize-json` (0.4.0), when the component exports it, typed when the
    /// instance started (the per-statement path checks no types).
    authorize_json: Option<super::request_json::Typed>,
}

impl std::ops::Deref for PolicyExports {
    type Target = Policy;

    fn deref(&self) -> &Policy {
        &self.policy
    }
}

impl PolicyExports {
    /// Decides `req`: through `authorize-json` when the component exports it (the
    /// request as one JSON string, the decision back as JSON, [`super::request_json`]),
    /// else through `authorize`. An answer of `authorize-json` that is not a decision
    /// is the inner `Err`.
    pub fn authorize(
        &self,
        store: &mut Store<HostState>,
        req: &super::bindings::portcullis::policy::types::Request,
    ) -> wasmtime::Result<Result<super::bindings::portcullis::policy::types::Decision, Rejected>>
    {
        match self.authorize_json {
            Some(f) => {
                let mut json = String::with_capacity(1024);
                super::request_json::encode(req, &mut json);
                let (answer,) = f.call(store, (json,))?;
                Ok(super::request_json::decode_decision(&answer))
            }
            None => Ok(Ok(self.policy.call_authorize(store, req)?)),
        }
    }

    /// Calls `mask-cells`; an error when the component does not export it.
    pub fn call_mask_cells(
        &self,
        store: &mut Store<HostState>,
        ctx: &super::bindings::portcullis::policy::types::ResultContext,
        batch: &super::bindings::portcullis::policy::types::CellBatch,
    ) -> wasmtime::Result<Result<super::bindings::portcullis::policy::types::CellBatch, String>>
    {
        let Some(f) = self.mask_cells else {
            return Err(wasmtime::format_err!(
                "the component does not export {}",
                super::packed::MASK_CELLS
            ));
        };
        let (r,) = super::packed::typed(&f, &*store)?.call(store, (ctx, batch))?;
        Ok(r)
    }
}

/// Why starting (or priming) an instance failed.
#[derive(Debug)]
pub(crate) enum StartError {
    /// Instantiation failed (trap, timeout, memory cap in the component's start code).
    Instantiate(CallFailure),
    /// `configure` trapped, timed out or hit the memory cap.
    Configure(CallFailure),
    /// `configure` returned `Err(message)`.
    Rejected(String),
    /// The first call after start (at load: `metadata`) failed.
    Call(CallFailure),
}

impl StartError {
    /// As a call failure (for a fresh instance started on the statement path).
    fn into_failure(self) -> CallFailure {
        match self {
            StartError::Instantiate(f) | StartError::Call(f) => f,
            StartError::Configure(mut f) => {
                f.kind = if f.kind == FailureKind::Trap {
                    FailureKind::Configure
                } else {
                    f.kind
                };
                f.reason = format!("configure on a fresh instance: {}", f.reason);
                f
            }
            StartError::Rejected(m) => CallFailure {
                kind: FailureKind::Configure,
                reason: format!(
                    "configure on a fresh instance returned an error: {}",
                    truncate(&m, 200)
                ),
            },
        }
    }
}

struct Warm {
    store: Store<HostState>,
    policy: PolicyExports,
    calls: u64,
}

/// The instances of one policy.
pub struct InstancePool {
    id: Arc<str>,
    runtime: PolicyRuntime,
    pre: PolicyPre<HostState>,
    indices: PolicyIndices,
    /// Where `mask-cells` is, when the component exports it.
    mask_cells: Option<ComponentExportIndex>,
    /// Where `authorize-json` is, when the component exports it.
    authorize_json: Option<ComponentExportIndex>,
    settings_json: String,
    limits: PolicyLimits,
    idle: Mutex<Vec<Warm>>,
}

impl InstancePool {
    /// A pool for policy `id` with settings `settings_json`. No instance is started yet.
    pub(crate) fn new(
        id: Arc<str>,
        runtime: PolicyRuntime,
        pre: PolicyPre<HostState>,
        settings_json: String,
        limits: PolicyLimits,
    ) -> wasmtime::Result<Self> {
        let indices = PolicyIndices::new(pre.instance_pre())?;
        let mask_cells = pre
            .instance_pre()
            .component()
            .get_export_index(None, super::packed::MASK_CELLS);
        let authorize_json = pre
            .instance_pre()
            .component()
            .get_export_index(None, super::request_json::AUTHORIZE_JSON);
        Ok(InstancePool {
            id,
            runtime,
            pre,
            indices,
            mask_cells,
            authorize_json,
            settings_json,
            limits,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Whether the component exports `mask-cells` (contract 0.3.0): the gateway then
    /// masks `custom` columns through it instead of `mask-rows`.
    pub fn packed(&self) -> bool {
        self.mask_cells.is_some()
    }

    /// Whether the component exports `authorize-json` (contract 0.4.0, world
    /// `policy-json`): the gateway then passes each request as one JSON string.
    pub fn authorizes_with_json(&self) -> bool {
        self.authorize_json.is_some()
    }

    /// The policy id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The limits.
    pub fn limits(&self) -> PolicyLimits {
        self.limits
    }

    /// Idle instances now.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// Starts and configures a fresh instance and puts it in the pool. Used at load
    /// time, where a configure error must reject the policy.
    pub(crate) fn prime<R>(
        &self,
        first: impl FnOnce(&PolicyExports, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, StartError> {
        let mut warm = self.start()?;
        warm.store.data_mut().begin_call(&CallContext::default());
        warm.store.set_epoch_deadline(self.setup_ticks());
        let result = guarded(|| first(&warm.policy, &mut warm.store));
        warm.store.data_mut().log.end_call();
        match result {
            Ok(r) => {
                self.put_back(warm);
                Ok(r)
            }
            Err(e) => Err(StartError::Call(self.failure(
                &warm.store,
                &e,
                self.setup_deadline_ms(),
            ))),
        }
    }

    /// Calls the policy: `call` runs the export, with `context` answering the
    /// `context` import; `check` validates the result (an `Err` from it is an
    /// [`FailureKind::Oversized`] failure). Any failure discards the instance and is
    /// counted in `portcullis_policy_traps_total`.
    pub fn call<R>(
        &self,
        context: &CallContext,
        call: impl FnOnce(&PolicyExports, &mut Store<HostState>) -> wasmtime::Result<R>,
        check: impl FnOnce(&R) -> Result<(), String>,
    ) -> Result<R, CallFailure> {
        self.call_checked(context, call, |r| check(r).map_err(Rejected::Oversized))
    }

    /// [`InstancePool::call`] with a `check` that tells an oversized result from one
    /// that breaks the contract's shape rules ([`FailureKind::Invalid`]).
    pub fn call_checked<R>(
        &self,
        context: &CallContext,
        call: impl FnOnce(&PolicyExports, &mut Store<HostState>) -> wasmtime::Result<R>,
        check: impl FnOnce(&R) -> Result<(), Rejected>,
    ) -> Result<R, CallFailure> {
        let result = self.call_inner(context, call, check);
        if let Err(f) = &result {
            self.runtime
                .metrics()
                .traps
                .with_label_values(&[&self.id, f.kind.as_str()])
                .inc();
            tracing::warn!(policy = &*self.id, kind = f.kind.as_str(), reason = %f.reason, "policy call failed; instance discarded");
        }
        result
    }

    fn call_inner<R>(
        &self,
        context: &CallContext,
        call: impl FnOnce(&PolicyExports, &mut Store<HostState>) -> wasmtime::Result<R>,
        check: impl FnOnce(&R) -> Result<(), Rejected>,
    ) -> Result<R, CallFailure> {
        let popped = self.idle.lock().ok().and_then(|mut v| v.pop());
        let mut warm = match popped {
            Some(w) => w,
            None => self.start().map_err(StartError::into_failure)?,
        };
        warm.store.data_mut().begin_call(context);
        warm.store.set_epoch_deadline(self.limits.deadline_ticks());
        let result = guarded(|| call(&warm.policy, &mut warm.store));
        warm.store.data_mut().log.end_call();
        let value = match result {
            Ok(v) => v,
            Err(e) => return Err(self.failure(&warm.store, &e, self.limits.deadline_ms)),
        };
        if let Err(why) = check(&value) {
            return Err(why.into_failure());
        }
        warm.calls += 1;
        if warm.calls < self.limits.max_calls_per_instance {
            self.put_back(warm);
        }
        Ok(value)
    }

    fn put_back(&self, warm: Warm) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < MAX_IDLE
        {
            idle.push(warm);
        }
    }

    /// Deadline of instantiation + `configure` (and of the first call at load).
    fn setup_deadline_ms(&self) -> u64 {
        self.limits.deadline_ms + SETUP_GRACE_MS
    }

    fn setup_ticks(&self) -> u64 {
        self.setup_deadline_ms()
            .div_ceil(TICK.as_millis().max(1) as u64)
            .max(1)
    }

    /// What one fresh instance costs: the time to instantiate and configure it, and
    /// the linear memory it holds afterwards (bytes). The instance is discarded.
    pub fn instance_cost(&self) -> Result<(std::time::Duration, usize), String> {
        let started = Instant::now();
        let warm = self.start().map_err(|e| e.into_failure().to_string())?;
        Ok((started.elapsed(), warm.store.data().limiter.peak))
    }

    /// Instantiates and configures a fresh instance.
    fn start(&self) -> Result<Warm, StartError> {
        let started = Instant::now();
        let mut store = self
            .runtime
            .new_store(Arc::clone(&self.id), self.limits.memory_bytes());
        store.set_epoch_deadline(self.setup_ticks());
        store.data_mut().begin_call(&CallContext::default());
        let policy = match self.instantiate(&mut store) {
            Ok(p) => p,
            Err(e) => {
                let mut f = self.failure(&store, &e, self.setup_deadline_ms());
                if f.kind == FailureKind::Trap {
                    f.kind = FailureKind::Instantiate;
                }
                return Err(StartError::Instantiate(f));
            }
        };
        let configured = policy.call_configure(&mut store, &self.settings_json);
        store.data_mut().log.end_call();
        match configured {
            Ok(Ok(())) => {}
            Ok(Err(message)) => return Err(StartError::Rejected(message)),
            Err(e) => {
                return Err(StartError::Configure(self.failure(
                    &store,
                    &e,
                    self.setup_deadline_ms(),
                )));
            }
        }
        tracing::debug!(
            policy = &*self.id,
            elapsed_us = started.elapsed().as_micros() as u64,
            "policy instance started"
        );
        Ok(Warm {
            store,
            policy,
            calls: 0,
        })
    }

    /// Instantiates the component and finds its exports; a `mask-cells` of the wrong
    /// type is an error.
    fn instantiate(&self, store: &mut Store<HostState>) -> wasmtime::Result<PolicyExports> {
        let instance = self.pre.instance_pre().instantiate(&mut *store)?;
        let policy = self.indices.load(&mut *store, &instance)?;
        let func = |store: &mut Store<HostState>, index: &ComponentExportIndex, name: &str| {
            instance
                .get_func(&mut *store, index)
                .ok_or_else(|| wasmtime::format_err!("export {name} is not a function"))
        };
        let mask_cells = match &self.mask_cells {
            None => None,
            Some(index) => {
                let f = func(store, index, super::packed::MASK_CELLS)?;
                super::packed::typed(&f, &*store)?;
                Some(f)
            }
        };
        let authorize_json = match &self.authorize_json {
            None => None,
            Some(index) => {
                let f = func(store, index, super::request_json::AUTHORIZE_JSON)?;
                Some(super::request_json::typed(&f, &*store)?)
            }
        };
        Ok(PolicyExports {
            policy,
            mask_cells,
            authorize_json,
        })
    }

    /// Classifies a call error; `deadline_ms` is the deadline the call ran under.
    fn failure(
        &self,
        store: &Store<HostState>,
        e: &wasmtime::Error,
        deadline_ms: u64,
    ) -> CallFailure {
        tracing::debug!(policy = &*self.id, error = ?e, "policy error");
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return CallFailure {
                kind: FailureKind::Exit,
                reason: format!("exited with status {}", exit.0),
            };
        }
        let memory_denied = store.data().limiter.denied;
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => CallFailure {
                kind: FailureKind::Timeout,
                reason: format!("timeout after {deadline_ms} ms"),
            },
            _ if memory_denied => CallFailure {
                kind: FailureKind::Memory,
                reason: format!("out of memory: over the {} MiB cap", self.limits.memory_mb),
            },
            Some(trap) => CallFailure {
                kind: FailureKind::Trap,
                // "wasm trap: ..."
                reason: trap.to_string(),
            },
            None => {
                // The root cause, on one line (the outer layers carry the wasm
                // backtrace, which is for the log, not the client).
                let root = e.root_cause().to_string();
                let line = root.lines().next().unwrap_or("unknown error");
                CallFailure {
                    kind: FailureKind::Trap,
                    reason: format!("error: {}", truncate(line, 200)),
                }
            }
        }
    }
}

/// Runs a guest call, turning a panic in a host function it reached (for example a
/// WASI stream that cannot block on a runtime thread) into an error, so the call fails
/// closed like a trap and the instance, which may be inconsistent, is discarded.
fn guarded<R>(f: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(wasmtime::format_err!(
            "a host function the policy called failed: {why}"
        ))
    })
}
