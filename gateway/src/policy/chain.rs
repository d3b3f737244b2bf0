//! The policy chain: every loaded policy, in configuration order, behind the
//! [`Gate`] seam.
//!
//! Rules, in order of strength:
//! - **deny wins**: the first enforcing policy that denies (or fails) decides, naming
//!   itself; later policies are not called;
//! - a failure (trap, timeout, memory cap, oversized result) of an enforcing policy
//!   denies with SQLSTATE 42501 (fail closed); the connection stays usable;
//! - `require-approval` results accumulate: when no policy denies, the statement is held
//!   ([`Decision::Hold`]) with every reason and suggested approver; `approve-hook`
//!   policies then route the request (the first enforcing one decides);
//! - `monitor` policies are called and their decisions logged and counted, never
//!   enforced (their failures neither).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bindings::portcullis::policy::types as wit;
use super::cache::CacheOutcome;
use super::caps;
use super::context::CallContext;
use super::decision_cache::DecisionCache;
use super::engine::truncate;
use super::instance::{CallFailure, InstancePool, Rejected};
use super::memo::{Ask, DecisionMemo, ResultMemo};
use super::metrics::PolicyMetrics;
use crate::config::{ApprovalMode, PolicyMode};
use crate::pipeline::{
    ApprovalAsk, ApprovalNeed, ApprovalRoute, Decision, Denial, Gate, PolicyVerdictRecord,
    SessionInfo, StatementContext,
};

/// SQLSTATE of every policy denial unless the policy names another.
pub const DEFAULT_SQLSTATE: &str = "42501";

/// What a policy says about itself (`metadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMetadata {
    /// Policy name.
    pub name: String,
    /// Policy version.
    pub version: String,
    /// Implements `authorize`.
    pub authorize: bool,
    /// Implements `plan-masks`/`mask-rows`.
    pub mask: bool,
    /// Implements `approve-hook`.
    pub approve: bool,
}

impl PolicyMetadata {
    pub(crate) fn from_wit(m: &wit::Metadata) -> Self {
        PolicyMetadata {
            name: m.name.clone(),
            version: m.version.clone(),
            authorize: m.hooks.contains(&wit::Hook::Authorize),
            mask: m.hooks.contains(&wit::Hook::Mask),
            approve: m.hooks.contains(&wit::Hook::Approve),
        }
    }

    /// Checks `metadata` against the size caps.
    pub(crate) fn check(m: &wit::Metadata) -> Result<(), String> {
        if m.name.len() > caps::MAX_NAME_BYTES || m.version.len() > caps::MAX_NAME_BYTES {
            return Err(format!(
                "metadata name or version longer than {} bytes",
                caps::MAX_NAME_BYTES
            ));
        }
        if m.hooks.len() > caps::MAX_HOOKS {
            return Err(format!("metadata lists {} hooks", m.hooks.len()));
        }
        Ok(())
    }
}

/// One policy's verdict on one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allow.
    Allow,
    /// Deny with this message and SQLSTATE.
    Deny {
        /// Message for the client.
        message: String,
        /// SQLSTATE (validated; 42501 when the policy gave none or an invalid one).
        sqlstate: String,
    },
    /// Hold for approval.
    RequireApproval {
        /// Why.
        reason: String,
        /// Who may approve.
        approvers: Vec<String>,
    },
    /// The call failed; the instance was discarded.
    Failed(CallFailure),
}

/// A `plan-masks` lookup that found no remembered plan (see
/// [`LoadedPolicy::remembered_plan`]); holds the cache key, if the policy caches.
pub struct PlanMiss(Option<Vec<u8>>);

/// A loaded, configured policy.
pub struct LoadedPolicy {
    id: Arc<str>,
    mode: PolicyMode,
    approval_mode: Option<ApprovalMode>,
    metadata: PolicyMetadata,
    sha256: String,
    cache: CacheOutcome,
    load_time: Duration,
    pool: InstancePool,
    /// `portcullis_policy_call_microseconds{policy}`, resolved once.
    call_us: prometheus::Histogram,
    /// `portcullis_policy_decisions_total{policy,decision}` for allow, deny,
    /// require_approval and error, resolved once (label lookups cost more than a
    /// warm call's bookkeeping).
    decisions: [prometheus::IntCounter; 4],
    /// Remembered verdicts, with `decision_cache = true` (see [`super::decision_cache`]).
    decision_cache: Option<DecisionCache>,
    /// The metrics, kept to resolve the decision-cache counters when it is enabled.
    metrics: PolicyMetrics,
}

impl LoadedPolicy {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: Arc<str>,
        mode: PolicyMode,
        metadata: PolicyMetadata,
        sha256: String,
        cache: CacheOutcome,
        load_time: Duration,
        pool: InstancePool,
        metrics: PolicyMetrics,
    ) -> Self {
        let call_us = metrics.call_us.with_label_values(&[&id]);
        let decisions = ["allow", "deny", "require_approval", "error"]
            .map(|d| metrics.decisions.with_label_values(&[&id, d]));
        LoadedPolicy {
            id,
            mode,
            approval_mode: None,
            metadata,
            sha256,
            cache,
            load_time,
            pool,
            call_us,
            decisions,
            decision_cache: None,
            metrics,
        }
    }

    /// Turns the decision cache on or off (see [`super::decision_cache`]).
    pub(crate) fn with_decision_cache(mut self, on: bool) -> Self {
        self.decision_cache = on.then(|| {
            let c = &self.metrics.decision_cache;
            DecisionCache::new(
                c.with_label_values(&[&self.id, "hit"]),
                c.with_label_values(&[&self.id, "miss"]),
            )
        });
        self
    }

    /// Whether verdicts are remembered (`decision_cache = true`).
    pub fn caches_decisions(&self) -> bool {
        self.decision_cache.is_some()
    }

    /// The policy id from the configuration.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Enforce or monitor.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// Hold or defer for statements this policy holds (`None`: the gateway default).
    pub fn approval_mode(&self) -> Option<ApprovalMode> {
        self.approval_mode
    }

    /// Sets [`LoadedPolicy::approval_mode`].
    pub(crate) fn with_approval_mode(mut self, mode: Option<ApprovalMode>) -> Self {
        self.approval_mode = mode;
        self
    }

    /// What the policy said about itself.
    pub fn metadata(&self) -> &PolicyMetadata {
        &self.metadata
    }

    /// SHA-256 of the component file (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether the compiled code came from the cache.
    pub fn cache_outcome(&self) -> CacheOutcome {
        self.cache
    }

    /// Time the load took (read, digest, compile or cache, first instance, configure).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }

    /// The instance pool.
    pub fn pool(&self) -> &InstancePool {
        &self.pool
    }

    /// Calls `authorize` (whether or not the policy lists the hook); `call` answers the
    /// `context` import.
    pub fn authorize(&self, req: &wit::Request, call: &CallContext) -> Verdict {
        match &self.decision_cache {
            Some(_) => self.authorize_keyed(req, call, &super::decision_cache::key(req, call)),
            None => self.call_authorize(req, call),
        }
    }

    /// [`LoadedPolicy::authorize`] with the request's decision-cache key computed by the
    /// caller (once for a whole chain); without a cache the key is ignored.
    pub fn authorize_keyed(&self, req: &wit::Request, call: &CallContext, key: &[u8]) -> Verdict {
        let Some(cache) = &self.decision_cache else {
            return self.call_authorize(req, call);
        };
        if let Some(v) = cache.get(key) {
            self.count(&v);
            return v;
        }
        let v = self.call_authorize(req, call);
        cache.insert(key, &v);
        v
    }

    fn call_authorize(&self, req: &wit::Request, call: &CallContext) -> Verdict {
        let started = Instant::now();
        // An answer `authorize-json` could not decode fails in the check, so that it is
        // counted and logged like any rejected result; the `and_then` never sees one.
        let result = self
            .pool
            .call_checked(
                call,
                |p, store| p.authorize(store, req),
                |answer| match answer {
                    Ok(d) => check_decision(d).map_err(Rejected::Oversized),
                    Err(rejected) => Err(rejected.clone()),
                },
            )
            .and_then(|answer| answer.map_err(Rejected::into_failure));
        self.call_us.observe(started.elapsed().as_secs_f64() * 1e6);
        let verdict = match result {
            Ok(wit::Decision::Allow) => Verdict::Allow,
            Ok(wit::Decision::Deny(d)) => Verdict::Deny {
                sqlstate: match d.sqlstate {
                    Some(s) if valid_error_sqlstate(&s) => s,
                    Some(s) => {
                        tracing::warn!(policy = &*self.id, sqlstate = %truncate(&s, 16), "policy returned an invalid SQLSTATE; using 42501");
                        DEFAULT_SQLSTATE.to_owned()
                    }
                    None => DEFAULT_SQLSTATE.to_owned(),
                },
                message: d.message,
            },
            Ok(wit::Decision::RequireApproval(a)) => Verdict::RequireApproval {
                reason: a.reason,
                approvers: a.approvers,
            },
            Err(f) => Verdict::Failed(f),
        };
        self.count(&verdict);
        verdict
    }

    /// Counts a verdict a whole-chain memo remembered ([`super::memo`]) as this
    /// policy's decision-cache hit.
    fn count_remembered(&self, verdict: &Verdict) {
        if let Some(c) = &self.decision_cache {
            c.count_hit();
        }
        self.count(verdict);
    }

    /// Counts a verdict in `portcullis_policy_decisions_total`.
    fn count(&self, verdict: &Verdict) {
        let slot = match verdict {
            Verdict::Allow => 0,
            Verdict::Deny { .. } => 1,
            Verdict::RequireApproval { .. } => 2,
            Verdict::Failed(_) => 3,
        };
        self.decisions[slot].inc();
    }
}

impl LoadedPolicy {
    /// Calls `approve-hook` for one approval request. The route is checked against
    /// the caps (approver count and length, message sizes).
    pub fn approve(
        &self,
        req: &wit::ApprovalRequest,
        call: &CallContext,
    ) -> Result<wit::ApprovalRoute, CallFailure> {
        let started = Instant::now();
        let result = self.pool.call(
            call,
            |p, store| p.call_approve_hook(store, req),
            check_route,
        );
        self.call_us.observe(started.elapsed().as_secs_f64() * 1e6);
        if result.is_err() {
            self.decisions[3].inc();
        }
        result
    }

    /// Calls `plan-masks` for one result set (or reuses the plan made for an equal
    /// context, with `decision_cache`). The plan is checked against the caps (a column
    /// index outside the result, an oversized refusal message).
    pub fn plan_masks(
        &self,
        ctx: &wit::ResultContext,
        call: &CallContext,
    ) -> Result<wit::MaskPlan, CallFailure> {
        match self.remembered_plan(ctx, call) {
            Ok(plan) => Ok(plan),
            Err(miss) => self.plan_masks_after(miss, ctx, call),
        }
    }

    /// The plan remembered for an equal context (with `decision_cache`), without
    /// calling the policy; otherwise what [`LoadedPolicy::plan_masks_after`] needs to
    /// call it and remember the answer. Lets a caller leave the async runtime only
    /// when the policy really runs.
    pub fn remembered_plan(
        &self,
        ctx: &wit::ResultContext,
        call: &CallContext,
    ) -> Result<wit::MaskPlan, PlanMiss> {
        let Some(cache) = &self.decision_cache else {
            return Err(PlanMiss(None));
        };
        let key = super::decision_cache::result_key(ctx, call);
        match cache.plan(&key) {
            Some(plan) => Ok(plan),
            None => Err(PlanMiss(Some(key))),
        }
    }

    /// Calls `plan-masks` after [`LoadedPolicy::remembered_plan`] missed, and
    /// remembers the plan.
    pub fn plan_masks_after(
        &self,
        miss: PlanMiss,
        ctx: &wit::ResultContext,
        call: &CallContext,
    ) -> Result<wit::MaskPlan, CallFailure> {
        let plan = self.call_plan_masks(ctx, call)?;
        if let (Some(cache), Some(key)) = (&self.decision_cache, miss.0) {
            cache.insert_plan(key, &plan);
        }
        Ok(plan)
    }

    fn call_plan_masks(
        &self,
        ctx: &wit::ResultContext,
        call: &CallContext,
    ) -> Result<wit::MaskPlan, CallFailure> {
        let started = Instant::now();
        let n = ctx.columns.len();
        let result = self.pool.call(
            call,
            |p, store| p.call_plan_masks(store, ctx),
            |plan: &wit::MaskPlan| check_plan(plan, n),
        );
        self.call_us.observe(started.elapsed().as_secs_f64() * 1e6);
        if result.is_err() {
            self.decisions[3].inc();
        }
        result
    }

    /// Masks a packed batch of the `custom` cells (text): through `mask-cells` when the
    /// component exports it (contract 0.3.0; the answer is checked by
    /// [`super::packed::check_cells`]), otherwise through `mask-rows`, the batch
    /// unpacked into rows and the answer packed again.
    pub fn mask_cells(
        &self,
        ctx: &wit::ResultContext,
        batch: &wit::CellBatch,
        call: &CallContext,
    ) -> Result<Result<wit::CellBatch, String>, CallFailure> {
        if !self.pool.packed() {
            let rows = super::packed::rows_of(batch);
            return self
                .mask_rows(ctx, &rows, call)
                .map(|r| r.map(|rows| super::packed::pack_rows(&rows, batch.columns)));
        }
        let started = Instant::now();
        let (columns, cells) = (batch.columns, batch.lengths.len());
        let result = self.pool.call_checked(
            call,
            |p, store| p.call_mask_cells(store, ctx, batch),
            |r: &Result<wit::CellBatch, String>| super::packed::check_cells(r, columns, cells),
        );
        self.call_us.observe(started.elapsed().as_secs_f64() * 1e6);
        if result.is_err() {
            self.decisions[3].inc();
        }
        result
    }

    /// Calls `mask-rows` with a batch of rows (the `custom` columns only, text). The
    /// result must have as many rows, each as wide, as the input, and stay within
    /// [`caps::MAX_MASK_BATCH_BYTES`].
    pub fn mask_rows(
        &self,
        ctx: &wit::ResultContext,
        rows: &[wit::Row],
        call: &CallContext,
    ) -> Result<Result<Vec<wit::Row>, String>, CallFailure> {
        let started = Instant::now();
        let width = rows.first().map_or(0, |r| r.len());
        let count = rows.len();
        let result = self.pool.call(
            call,
            |p, store| p.call_mask_rows(store, ctx, rows),
            |r: &Result<Vec<wit::Row>, String>| check_rows(r, count, width),
        );
        self.call_us.observe(started.elapsed().as_secs_f64() * 1e6);
        if result.is_err() {
            self.decisions[3].inc();
        }
        result
    }
}

/// Size caps on a mask plan for a result of `n` columns.
fn check_plan(plan: &wit::MaskPlan, n: usize) -> Result<(), String> {
    if let Some(i) = plan.columns.iter().find(|c| c.index as usize >= n) {
        return Err(format!(
            "mask plan names column {} of a {n}-column result",
            i.index
        ));
    }
    if plan.columns.len() > n.saturating_mul(8) + 8 {
        return Err(format!("mask plan of {} entries", plan.columns.len()));
    }
    if let Some(r) = &plan.refuse
        && r.message.len() > caps::MAX_MESSAGE_BYTES
    {
        return Err(format!("refusal message of {} bytes", r.message.len()));
    }
    let constant_bytes: usize = plan
        .columns
        .iter()
        .map(|c| match &c.mask {
            wit::MaskFunction::Redact(s) => s.len(),
            wit::MaskFunction::Partial(p) => p.fill.len(),
            _ => 0,
        })
        .sum();
    if constant_bytes > caps::MAX_MESSAGE_BYTES {
        return Err(format!("mask constants of {constant_bytes} bytes"));
    }
    Ok(())
}

/// Shape and size caps on what `mask-rows` returns.
fn check_rows(r: &Result<Vec<wit::Row>, String>, count: usize, width: usize) -> Result<(), String> {
    match r {
        Err(m) if m.len() > caps::MAX_MESSAGE_BYTES => {
            Err(format!("mask-rows error of {} bytes", m.len()))
        }
        Err(_) => Ok(()),
        Ok(rows) => {
            if rows.len() != count || rows.iter().any(|row| row.len() != width) {
                return Err(format!(
                    "mask-rows returned {} rows for {count} (or a row not {width} wide)",
                    rows.len()
                ));
            }
            let bytes: usize = rows
                .iter()
                .flat_map(|r| r.iter())
                .map(|v| v.as_ref().map_or(0, |s| s.len()))
                .sum();
            if bytes > caps::MAX_MASK_BATCH_BYTES {
                return Err(format!("mask-rows returned {bytes} bytes"));
            }
            Ok(())
        }
    }
}

/// Size caps on an approval route.
fn check_route(r: &wit::ApprovalRoute) -> Result<(), String> {
    match r {
        wit::ApprovalRoute::Route(r) => {
            if r.approvers.len() > caps::MAX_APPROVERS
                || r.approvers.iter().any(|a| a.len() > caps::MAX_NAME_BYTES)
            {
                return Err(format!(
                    "more than {} approvers or an approver longer than {} bytes",
                    caps::MAX_APPROVERS,
                    caps::MAX_NAME_BYTES
                ));
            }
            if r.channel
                .as_ref()
                .is_some_and(|c| c.len() > caps::MAX_NAME_BYTES)
            {
                return Err("channel name too long".into());
            }
            Ok(())
        }
        wit::ApprovalRoute::AutoApprove(m) | wit::ApprovalRoute::AutoReject(m) => {
            if m.len() > caps::MAX_MESSAGE_BYTES {
                return Err(format!("route reason of {} bytes", m.len()));
            }
            Ok(())
        }
    }
}

/// Size caps on a decision.
fn check_decision(d: &wit::Decision) -> Result<(), String> {
    match d {
        wit::Decision::Allow => Ok(()),
        wit::Decision::Deny(d) => {
            if d.message.len() > caps::MAX_MESSAGE_BYTES {
                return Err(format!(
                    "deny message of {} bytes (cap {})",
                    d.message.len(),
                    caps::MAX_MESSAGE_BYTES
                ));
            }
            if d.sqlstate.as_ref().is_some_and(|s| s.len() > 64) {
                return Err("SQLSTATE longer than 64 bytes".into());
            }
            Ok(())
        }
        wit::Decision::RequireApproval(a) => {
            if a.reason.len() > caps::MAX_MESSAGE_BYTES {
                return Err(format!(
                    "approval reason of {} bytes (cap {})",
                    a.reason.len(),
                    caps::MAX_MESSAGE_BYTES
                ));
            }
            if a.approvers.len() > caps::MAX_APPROVERS
                || a.approvers
                    .iter()
                    .any(|x| x.len() > caps::MAX_APPROVER_BYTES)
            {
                return Err(format!(
                    "more than {} approvers or an approver longer than {} bytes",
                    caps::MAX_APPROVERS,
                    caps::MAX_APPROVER_BYTES
                ));
            }
            Ok(())
        }
    }
}

/// An error SQLSTATE: five digits or upper-case letters, not of the success, warning
/// or no-data classes.
fn valid_error_sqlstate(s: &str) -> bool {
    s.len() == 5
        && s.bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        && !matches!(&s[..2], "00" | "01" | "02")
}

/// Every loaded policy, in order: the gateway's [`Gate`] when policies are configured.
pub struct PolicyChain {
    /// The policies, in configuration order.
    policies: Vec<Arc<LoadedPolicy>>,
    /// The enforcing policies with the `mask` hook (asked for every result set).
    mask_policies: Vec<Arc<LoadedPolicy>>,
    /// Lets FunctionCall through while enforcing policies are loaded.
    allow_function_call: bool,
    /// Some policy implements `authorize` (else every statement is allowed at once).
    any_authorize: bool,
    /// Some policy enforces.
    any_enforcing: bool,
    /// Whole-chain decisions per session and statement shape, when every `authorize`
    /// policy enforces and caches its decisions.
    memo: Option<DecisionMemo>,
    /// Unmasked result sets per session and statement shape, when every mask policy
    /// caches its plans.
    result_memo: Option<ResultMemo>,
}

impl PolicyChain {
    /// A chain of `policies`, called in order. `allow_function_call` lets fast-path
    /// FunctionCall messages through while enforcing policies are loaded.
    pub fn new(policies: Vec<Arc<LoadedPolicy>>, allow_function_call: bool) -> Self {
        let any_authorize = policies.iter().any(|p| p.metadata.authorize);
        let any_enforcing = policies.iter().any(|p| p.mode == PolicyMode::Enforce);
        let mask_policies: Vec<Arc<LoadedPolicy>> = policies
            .iter()
            .filter(|p| p.metadata.mask && p.mode == PolicyMode::Enforce)
            .cloned()
            .collect();
        let memo = policies
            .iter()
            .filter(|p| p.metadata.authorize)
            .all(|p| p.mode == PolicyMode::Enforce && p.caches_decisions())
            .then(DecisionMemo::default);
        let result_memo = (!mask_policies.is_empty()
            && mask_policies.iter().all(|p| p.caches_decisions()))
        .then(ResultMemo::default);
        PolicyChain {
            policies,
            mask_policies,
            allow_function_call,
            any_authorize,
            any_enforcing,
            memo,
            result_memo,
        }
    }

    /// The policies, in order.
    pub fn policies(&self) -> &[Arc<LoadedPolicy>] {
        &self.policies
    }

    /// The enforcing policies that implement the `mask` hook, in order.
    pub fn mask_policies(&self) -> Vec<Arc<LoadedPolicy>> {
        self.mask_policies.clone()
    }

    /// [`PolicyChain::mask_policies`], borrowed.
    pub fn mask_policies_ref(&self) -> &[Arc<LoadedPolicy>] {
        &self.mask_policies
    }

    /// The memo of whole-chain decisions, when every `authorize` policy enforces and
    /// caches its decisions.
    pub fn decision_memo(&self) -> Option<&DecisionMemo> {
        self.memo.as_ref()
    }

    /// The memo of unmasked result sets, when every mask policy caches its plans.
    pub fn result_memo(&self) -> Option<&ResultMemo> {
        self.result_memo.as_ref()
    }

    /// Decides a statement, answering from the whole-chain memo when it can (see
    /// [`super::memo`]); otherwise builds the request with `request` and asks the
    /// policies, remembering the outcome.
    pub fn decide_remembered(
        &self,
        ask: &Ask<'_>,
        sink: Option<&crate::pipeline::VerdictSink>,
        request: impl FnOnce() -> wit::Request,
    ) -> Decision {
        let call = || CallContext::of(&ask.session.identity);
        let Some(memo) = &self.memo else {
            return self.decide_request_into(&request(), &call(), sink);
        };
        if let Some(hit) = memo.get(ask) {
            for (i, v) in &hit.verdicts {
                let p = &self.policies[*i];
                p.count_remembered(v);
                if let Some(sink) = sink {
                    sink.borrow_mut().push(verdict_record(p, v, 0));
                }
            }
            return hit.decision.clone();
        }
        let mut trail = Vec::new();
        let decision = self.decide_traced(&request(), &call(), sink, Some(&mut trail));
        memo.insert(ask, trail, &decision);
        decision
    }

    /// The policy with this id.
    pub fn get(&self, id: &str) -> Option<&Arc<LoadedPolicy>> {
        self.policies.iter().find(|p| &*p.id == id)
    }

    /// Decides like the [`Gate`], but a policy that fails (trap, timeout, memory,
    /// oversized answer) is an error rather than a denial, so fixtures cannot pass by
    /// failing. Calls each policy an extra time: for tests, not for live traffic.
    pub fn decide_checked(&self, ctx: &StatementContext<'_>) -> Result<Decision, String> {
        let req = super::request::request(ctx);
        let call = CallContext::of(&ctx.session.identity);
        for p in self.policies.iter().filter(|p| p.metadata.authorize) {
            if let Verdict::Failed(f) = p.authorize(&req, &call) {
                return Err(format!("policy \"{}\" failed: {f}", p.id()));
            }
        }
        Ok(self.decide_request(&req, &call))
    }

    /// Decides a ready-made request (the [`Gate`] builds it from the statement); `call`
    /// answers the policies' `context` import.
    pub fn decide_request(&self, req: &wit::Request, call: &CallContext) -> Decision {
        self.decide_request_into(req, call, None)
    }

    /// [`PolicyChain::decide_request`], writing each called policy's verdict to `sink`.
    pub fn decide_request_into(
        &self,
        req: &wit::Request,
        call: &CallContext,
        sink: Option<&crate::pipeline::VerdictSink>,
    ) -> Decision {
        self.decide_traced(req, call, sink, None)
    }

    /// [`PolicyChain::decide_request_into`], also pushing `(policy index, verdict)` of
    /// every policy asked to `trail`.
    fn decide_traced(
        &self,
        req: &wit::Request,
        call: &CallContext,
        sink: Option<&crate::pipeline::VerdictSink>,
        mut trail: Option<&mut Vec<(usize, Verdict)>>,
    ) -> Decision {
        let mut approvals: Vec<(&str, String, Vec<String>)> = Vec::new();
        let mut approval_mode = None;
        let key = self
            .policies
            .iter()
            .any(|p| p.caches_decisions())
            .then(|| super::decision_cache::key(req, call));
        for (i, p) in self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.metadata.authorize)
        {
            let started = sink.map(|_| Instant::now());
            let verdict = match &key {
                Some(k) => p.authorize_keyed(req, call, k),
                None => p.authorize(req, call),
            };
            if let (Some(sink), Some(t)) = (sink, started) {
                sink.borrow_mut()
                    .push(verdict_record(p, &verdict, t.elapsed().as_micros() as u64));
            }
            if let Some(trail) = trail.as_deref_mut() {
                trail.push((i, verdict.clone()));
            }
            if p.mode == PolicyMode::Monitor {
                log_monitored(p, req, &verdict);
                continue;
            }
            match verdict {
                Verdict::Allow => {}
                Verdict::Deny { message, sqlstate } => {
                    tracing::debug!(policy = p.id(), fingerprint = %req.statement.fingerprint, %message, "policy denied statement");
                    return Decision::Deny(Denial {
                        sqlstate,
                        message,
                        policy: p.id().to_owned(),
                    });
                }
                Verdict::RequireApproval { reason, approvers } => {
                    if approvals.is_empty() {
                        approval_mode = p.approval_mode;
                    }
                    approvals.push((p.id(), reason, approvers))
                }
                Verdict::Failed(f) => {
                    return Decision::Deny(Denial {
                        sqlstate: DEFAULT_SQLSTATE.to_owned(),
                        message: format!("policy \"{}\" failed ({f}); statement denied", p.id()),
                        policy: p.id().to_owned(),
                    });
                }
            }
        }
        if approvals.is_empty() {
            return Decision::Allow;
        }
        let reasons: Vec<&str> = approvals.iter().map(|(_, r, _)| r.as_str()).collect();
        let ids: Vec<&str> = approvals.iter().map(|(id, _, _)| *id).collect();
        let mut approvers: Vec<String> = Vec::new();
        for a in approvals.iter().flat_map(|(_, _, a)| a) {
            if !approvers.contains(a) {
                approvers.push(a.clone());
            }
        }
        Decision::Hold(ApprovalNeed {
            reason: reasons.join("; "),
            approvers,
            policy: ids.join(", "),
            mode: approval_mode,
        })
    }

    /// Routes an approval request: the first enforcing policy that implements
    /// `approve-hook` decides. A routing policy that fails rejects the request (fail
    /// closed); with none, the request goes to the approvers `authorize` suggested.
    pub fn route_request(
        &self,
        req: &wit::Request,
        call: &CallContext,
        ask: &ApprovalAsk<'_>,
    ) -> ApprovalRoute {
        let Some(p) = self
            .policies
            .iter()
            .find(|p| p.metadata.approve && p.mode == PolicyMode::Enforce)
        else {
            return ApprovalRoute::default_for(ask.need);
        };
        let areq = wit::ApprovalRequest {
            id: ask.id.to_owned(),
            request: req.clone(),
            reason: ask.need.reason.clone(),
            approvers: ask.need.approvers.clone(),
            requested_at_ms: ask.requested_at_ms,
        };
        match p.approve(&areq, call) {
            Ok(wit::ApprovalRoute::Route(r)) => ApprovalRoute::Route {
                approvers: r.approvers,
                required: r.required_approvals.max(1),
                ttl_seconds: (r.ttl_seconds > 0).then_some(r.ttl_seconds),
                channel: r.channel,
            },
            Ok(wit::ApprovalRoute::AutoApprove(reason)) => ApprovalRoute::AutoApprove(format!(
                "auto-approved by policy \"{}\": {reason}",
                p.id()
            )),
            Ok(wit::ApprovalRoute::AutoReject(reason)) => {
                ApprovalRoute::AutoReject(format!("rejected by policy \"{}\": {reason}", p.id()))
            }
            Err(f) => ApprovalRoute::AutoReject(format!(
                "approval routing policy \"{}\" failed ({f}); request rejected",
                p.id()
            )),
        }
    }
}

/// One policy's verdict as the audit trail records it.
fn verdict_record(p: &LoadedPolicy, verdict: &Verdict, micros: u64) -> PolicyVerdictRecord {
    PolicyVerdictRecord {
        policy: p.id().to_owned(),
        verdict: match verdict {
            Verdict::Allow => "allow",
            Verdict::Deny { .. } => "deny",
            Verdict::RequireApproval { .. } => "require_approval",
            Verdict::Failed(_) => "error",
        }
        .to_owned(),
        mode: (p.mode == PolicyMode::Monitor).then(|| "monitor".to_owned()),
        micros,
    }
}

fn log_monitored(p: &LoadedPolicy, req: &wit::Request, verdict: &Verdict) {
    let fp = &req.statement.fingerprint;
    let user = &req.identity.user;
    match verdict {
        Verdict::Allow => {}
        Verdict::Deny { message, sqlstate } => {
            tracing::info!(policy = p.id(), %user, fingerprint = %fp, %sqlstate, %message, "monitor: policy would deny")
        }
        Verdict::RequireApproval { reason, .. } => {
            tracing::info!(policy = p.id(), %user, fingerprint = %fp, %reason, "monitor: policy would require approval")
        }
        Verdict::Failed(f) => {
            tracing::info!(policy = p.id(), %user, fingerprint = %fp, failure = %f, "monitor: policy failed (would deny)")
        }
    }
}

impl Gate for PolicyChain {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        if !self.any_authorize {
            return Decision::Allow;
        }
        let ask = Ask {
            session: ctx.session,
            analysis: ctx.analysis,
            statement: ctx.statement,
            protocol: ctx.protocol,
            transaction: ctx.transaction,
            catalog: None,
        };
        self.decide_remembered(&ask, ctx.verdicts, || super::request::request(ctx))
    }

    fn route_approval(&self, ctx: &StatementContext<'_>, ask: &ApprovalAsk<'_>) -> ApprovalRoute {
        let call = CallContext::of(&ctx.session.identity);
        self.route_request(&super::request::request(ctx), &call, ask)
    }

    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision {
        if self.allow_function_call || !self.any_enforcing {
            return Decision::Allow;
        }
        tracing::debug!(user = %session.identity.name, function_oid, "fast-path FunctionCall denied");
        Decision::Deny(Denial {
            sqlstate: DEFAULT_SQLSTATE.to_owned(),
            message: format!(
                "fast-path function calls (FunctionCall of OID {function_oid}) are not allowed while policies are enforced: they carry no SQL a policy could inspect; call the function with SELECT instead, or set policy_runtime.allow_function_call = true"
            ),
            policy: "portcullis:function-call".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_are_checked() {
        assert!(valid_error_sqlstate("42501"));
        assert!(valid_error_sqlstate("P0001"));
        assert!(!valid_error_sqlstate("00000"));
        assert!(!valid_error_sqlstate("01000"));
        assert!(!valid_error_sqlstate("4250"));
        assert!(!valid_error_sqlstate("42x01"));
        assert!(!valid_error_sqlstate("4250é"));
    }

    #[test]
    fn decisions_are_capped() {
        let big = wit::Decision::Deny(wit::Denial {
            message: "x".repeat(caps::MAX_MESSAGE_BYTES + 1),
            sqlstate: None,
        });
        assert!(check_decision(&big).is_err());
        let ok = wit::Decision::Deny(wit::Denial {
            message: "no".into(),
            sqlstate: Some("42501".into()),
        });
        assert!(check_decision(&ok).is_ok());
        let many = wit::Decision::RequireApproval(wit::ApprovalRequirement {
            reason: "r".into(),
            approvers: vec!["group:dba".into(); caps::MAX_APPROVERS + 1],
        });
        assert!(check_decision(&many).is_err());
    }
}
