//! Dynamic data masking: the [`ResultFilter`] that asks the policies' `plan-masks`
//! once per result set and applies the plan to every row natively, calling
//! `mask-rows` (in batches) only for `custom` columns.
//!
//! Fail closed:
//! - a policy that traps, times out or refuses in `plan-masks` or `mask-rows` refuses
//!   the whole result (an ErrorResponse naming the policy; the session goes on);
//! - a DataRow whose shape differs from the RowDescription, or rows of a result whose
//!   columns the gateway does not know (Execute without Describe), refuse it too;
//! - provenance that cannot be established is reported as `unknown` (see
//!   [`provenance`]).
//!
//! Out of scope: `COPY ... TO STDOUT` data (CopyData is not rows; the standard policy
//! denies COPY TO of sensitive tables, and of queries calling opaque functions, in
//! `authorize`), NOTIFY payloads, and timing side channels. Errors and notices are
//! scrubbed (see [`scrub_error`] and the [`ResultFilter`] impl of [`MaskingFilter`]).

pub mod catalog;
pub mod functions;
pub mod provenance;
mod rewriter;
pub mod scrub;

use std::sync::Arc;
use std::time::Duration;

use portcullis_sql::StatementKind;
use portcullis_wire::backend::ErrorFields;

use crate::pipeline::{
    Decision, Gate, Refusal, ResultContext, ResultFilter, RowRewriter, SessionInfo,
    StatementContext,
};
use crate::policy::bindings::portcullis::policy::types as wit;
use crate::policy::memo::{ResultAsk, ResultMemo};
use crate::policy::{CallContext, LoadedPolicy, PolicyChain};
pub use catalog::Catalog;
pub use functions::{ColumnType, CompiledMask, NativeMask, PseudonymKey, TypeClass};
use rewriter::{MaskRewriter, Refuse, Step};

/// Where the masking seams find their policies.
#[derive(Clone)]
pub enum Policies {
    /// A chain loaded once (`[[policies]]`).
    Fixed(Arc<PolicyChain>),
    /// The live set of a hot-reloaded policy directory: each statement and each result
    /// set uses the set in force when it starts.
    Live(Arc<crate::policy::reload::PolicySets>),
}

impl Policies {
    fn with_chain<R>(&self, f: impl FnOnce(&PolicyChain) -> R) -> R {
        match self {
            Policies::Fixed(c) => f(c),
            Policies::Live(s) => f(&s.current().chain),
        }
    }
}

/// Rows per `mask-rows` call by default.
pub const DEFAULT_BATCH_ROWS: usize = 1024;

/// The masking [`ResultFilter`].
pub struct MaskingFilter {
    policies: MaskPolicies,
    catalog: Arc<Catalog>,
    key: Arc<PseudonymKey>,
    batch_rows: usize,
}

impl MaskingFilter {
    /// A filter over `policies` (enforcing, with the `mask` hook), with the catalog
    /// cache and the pseudonym key.
    pub fn new(
        policies: Vec<Arc<LoadedPolicy>>,
        catalog: Arc<Catalog>,
        key: PseudonymKey,
        batch_rows: usize,
    ) -> Self {
        let memo = policies
            .iter()
            .all(|p| p.caches_decisions())
            .then(ResultMemo::default);
        Self::with_source(
            MaskPolicies::Fixed(policies, memo),
            catalog,
            key,
            batch_rows,
        )
    }

    /// A filter over the mask policies of a policy directory's live set: a reload that
    /// adds, changes or removes a masking policy applies from the next result set.
    pub fn live(
        sets: Arc<crate::policy::reload::PolicySets>,
        catalog: Arc<Catalog>,
        key: PseudonymKey,
        batch_rows: usize,
    ) -> Self {
        Self::with_source(MaskPolicies::Live(sets), catalog, key, batch_rows)
    }

    fn with_source(
        policies: MaskPolicies,
        catalog: Arc<Catalog>,
        key: PseudonymKey,
        batch_rows: usize,
    ) -> Self {
        MaskingFilter {
            policies,
            catalog,
            key: Arc::new(key),
            batch_rows: batch_rows.max(1),
        }
    }

    /// The catalog cache.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    fn refuse(policy: &str, message: String) -> Option<Box<dyn RowRewriter>> {
        Some(Box::new(Refuse(Refusal {
            sqlstate: "42501".into(),
            message,
            policy: policy.to_owned(),
        })))
    }
}

/// Withholds the values that data-exception (22) and integrity-violation (23)
/// errors quote: every double-quoted part of the message becomes `"…"`, and the detail
/// (`Key (email)=(...) already exists.`) is dropped. The SQLSTATE, severity and the
/// schema/table/column/constraint fields stay.
pub fn scrub_error(error: &ErrorFields) -> Option<ErrorFields> {
    let code = error.code()?;
    if !(code.starts_with("22") || code.starts_with("23")) {
        return None;
    }
    let mut out = ErrorFields::default();
    for (f, v) in &error.fields {
        match f {
            b'M' => {
                let mut m = String::with_capacity(v.len());
                let mut quoted = false;
                for c in v.chars() {
                    if c == '"' {
                        if !quoted {
                            m.push_str("\"…");
                        }
                        quoted = !quoted;
                        if !quoted {
                            m.push('"');
                        }
                    } else if !quoted {
                        m.push(c);
                    }
                }
                if quoted {
                    m.push('"');
                }
                out.fields.push((b'M', m));
            }
            b'S' | b'V' | b'C' | b's' | b't' | b'c' | b'd' | b'n' | b'F' | b'L' | b'R' => {
                out.fields.push((*f, v.clone()))
            }
            _ => {}
        }
    }
    out.fields.push((
        b'D',
        "Values in this error were withheld by the Portcullis gateway (masking).".into(),
    ));
    Some(out)
}

/// Runs a policy call where the host may block: a policy that panics writes to its
/// (closed) stderr, and wasmtime-wasi's synchronous stream bindings then block on the
/// ambient tokio runtime, which is not allowed on a runtime worker thread. On a
/// multi-thread runtime the call leaves the worker (`block_in_place`).
pub(crate) fn off_runtime<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Converts a WIT mask function to a native one (`None` for `custom`).
pub fn native(m: &wit::MaskFunction) -> Option<NativeMask> {
    Some(match m {
        wit::MaskFunction::Redact(c) => NativeMask::Redact(c.clone()),
        wit::MaskFunction::Null => NativeMask::Null,
        wit::MaskFunction::Partial(p) => NativeMask::Partial {
            first: p.keep_first as usize,
            last: p.keep_last as usize,
            fill: p.fill.clone(),
        },
        wit::MaskFunction::Email => NativeMask::Email,
        wit::MaskFunction::Pseudonym => NativeMask::Pseudonym,
        wit::MaskFunction::Digits(n) => NativeMask::Digits(*n as usize),
        wit::MaskFunction::Date(p) => NativeMask::Date {
            year: matches!(p, wit::DatePart::Year),
        },
        wit::MaskFunction::Round(step) => NativeMask::Round(*step),
        wit::MaskFunction::Custom => return None,
    })
}

impl ResultFilter for MaskingFilter {
    fn catalog(&self) -> Option<&Arc<Catalog>> {
        Some(&self.catalog)
    }

    fn scrub_error(&self, session: &SessionInfo, error: &ErrorFields) -> Option<ErrorFields> {
        if self.is_masked(session) {
            return Some(scrub::scrub_for_masked(error, false));
        }
        scrub_error(error)
    }

    fn scrub_notice(&self, session: &SessionInfo, notice: &ErrorFields) -> Option<ErrorFields> {
        self.is_masked(session)
            .then(|| scrub::scrub_for_masked(notice, true))
    }

    fn begin(&self, ctx: &ResultContext<'_>) -> Option<Box<dyn RowRewriter>> {
        self.begin_observed(ctx, None)
    }

    fn begin_masked(
        &self,
        ctx: &ResultContext<'_>,
        masked: &mut Vec<crate::pipeline::MaskedColumn>,
    ) -> Option<Box<dyn RowRewriter>> {
        self.begin_with_plan(ctx, masked, &mut MaskObservation::default())
    }

    fn begin_with_plan(
        &self,
        ctx: &ResultContext<'_>,
        masked: &mut Vec<crate::pipeline::MaskedColumn>,
        plan: &mut MaskObservation,
    ) -> Option<Box<dyn RowRewriter>> {
        let rw = self.begin_observed(ctx, Some(plan));
        masked.extend(masked_columns(ctx, plan));
        rw
    }
}

/// The masking context of a result set with these columns (with provenance).
pub fn result_context(
    ctx: &ResultContext<'_>,
    columns: Vec<wit::ResultColumn>,
) -> wit::ResultContext {
    wit::ResultContext {
        identity: crate::policy::request::identity(ctx.session),
        database: ctx.session.database.clone(),
        statement: ctx
            .statement
            .map(|s| crate::policy::request::statement(s, &s.fingerprint, false, 0)),
        columns,
    }
}

/// The masking context the plan was made with, or — when no masking policy planned
/// (none live, or no columns) — one with provenance from the statement alone (no
/// catalog), as a policy would have been asked.
pub fn planned_context(ctx: &ResultContext<'_>, plan: &MaskObservation) -> Arc<wit::ResultContext> {
    if let Some(c) = &plan.context {
        return Arc::clone(c);
    }
    let cat = catalog::DbCatalog::statement_only();
    let mut missed = false;
    let columns = provenance::result_columns(ctx.columns, ctx.statement, &cat, &mut missed);
    Arc::new(result_context(ctx, columns))
}

/// The masked columns of an observed plan, named as the client sees them.
pub fn masked_columns(
    ctx: &ResultContext<'_>,
    obs: &MaskObservation,
) -> Vec<crate::pipeline::MaskedColumn> {
    obs.masks
        .iter()
        .map(|(i, policy, m)| crate::pipeline::MaskedColumn {
            column: ctx
                .columns
                .fields
                .get(*i as usize)
                .map_or_else(|| format!("#{i}"), |f| f.name.clone()),
            mask: crate::recording::format::mask_name(m),
            policy: policy.clone(),
        })
        .collect()
}

/// What a mask plan did to one result set, for the traffic recording and shadow mode.
#[derive(Debug, Default)]
pub struct MaskObservation {
    /// The masking context the policies saw (columns with provenance).
    pub context: Option<Arc<wit::ResultContext>>,
    /// `(column, policy, mask)` in plan order.
    pub masks: Vec<(u32, String, wit::MaskFunction)>,
    /// `(policy, message)` when a plan refused the result or a policy failed.
    pub refused: Option<(String, String)>,
}

impl MaskingFilter {
    /// Whether `session`'s identity is masked (see [`identity_is_masked`]): its errors
    /// and notices are scrubbed ([`scrub::scrub_for_masked`]).
    pub fn is_masked(&self, session: &SessionInfo) -> bool {
        match &self.policies {
            MaskPolicies::Fixed(v, _) => identity_is_masked(v, session),
            MaskPolicies::Live(sets) => {
                identity_is_masked(sets.current().chain.mask_policies_ref(), session)
            }
        }
    }

    /// [`ResultFilter::begin`], also reporting what was planned to `obs`.
    pub fn begin_observed(
        &self,
        ctx: &ResultContext<'_>,
        mut obs: Option<&mut MaskObservation>,
    ) -> Option<Box<dyn RowRewriter>> {
        let live;
        let (policies, memo): (&[Arc<LoadedPolicy>], Option<&ResultMemo>) = match &self.policies {
            MaskPolicies::Fixed(v, memo) => (v, memo.as_ref()),
            MaskPolicies::Live(sets) => {
                live = sets.current();
                (live.chain.mask_policies_ref(), live.chain.result_memo())
            }
        };
        if policies.is_empty() {
            return None;
        }
        let db = &ctx.session.database;
        let cat = self.catalog.get(db);
        let ask = ResultAsk {
            session: ctx.session,
            analysis: ctx.analysis,
            statement: ctx.statement,
            columns: ctx.columns,
            catalog: &cat,
        };
        if let Some(hit) = memo.and_then(|m| m.get(&ask)) {
            if let Some(o) = obs.as_deref_mut() {
                o.context = Some(Arc::clone(&hit.context));
            }
            return None;
        }
        let mut missed = false;
        let columns = provenance::result_columns(ctx.columns, ctx.statement, &cat, &mut missed);
        if missed {
            self.catalog.invalidate(db, Duration::ZERO);
        }
        let n = columns.len();
        if n == 0 {
            // Columns unknown (Execute without Describe) or a zero-column result:
            // rows with cells are refused.
            return Some(Box::new(rewriter::NoColumns));
        }
        let types: Vec<ColumnType> = ctx
            .columns
            .fields
            .iter()
            .map(|f| ColumnType::new(f.type_oid, f.format))
            .collect();
        let wctx = Arc::new(result_context(ctx, columns));
        let call = CallContext::of(&ctx.session.identity);
        if let Some(o) = obs.as_deref_mut() {
            o.context = Some(Arc::clone(&wctx));
        }
        let mut steps: Vec<Vec<Step>> = vec![Vec::new(); n];
        let mut customs: Vec<(Arc<LoadedPolicy>, Vec<usize>)> = Vec::new();
        for p in policies {
            // A remembered plan needs no policy call, so no trip off the runtime.
            let planned = match p.remembered_plan(&wctx, &call) {
                Ok(plan) => Ok(plan),
                Err(miss) => off_runtime(|| p.plan_masks_after(miss, &wctx, &call)),
            };
            let plan = match planned {
                Ok(plan) => plan,
                Err(f) => {
                    if let Some(o) = obs.as_deref_mut() {
                        o.refused = Some((p.id().to_owned(), format!("policy failed: {f}")));
                    }
                    return Self::refuse(
                        p.id(),
                        format!(
                            "policy \"{}\" failed while planning masks ({f}); result refused",
                            p.id()
                        ),
                    );
                }
            };
            if let Some(r) = plan.refuse {
                if let Some(o) = obs.as_deref_mut() {
                    o.refused = Some((p.id().to_owned(), r.message.clone()));
                }
                let sqlstate = r
                    .sqlstate
                    .filter(|s| s.len() == 5 && !s.starts_with("00"))
                    .unwrap_or_else(|| "42501".into());
                return Some(Box::new(Refuse(Refusal {
                    sqlstate,
                    message: r.message,
                    policy: p.id().to_owned(),
                })));
            }
            let mut mine = Vec::new();
            for cm in plan.columns {
                let i = cm.index as usize;
                if let Some(o) = obs.as_deref_mut() {
                    o.masks.push((cm.index, p.id().to_owned(), cm.mask.clone()));
                }
                match native(&cm.mask) {
                    Some(m) => steps[i].push(Step::Native(CompiledMask::new(m, types[i]))),
                    None => {
                        if !mine.contains(&i) {
                            mine.push(i);
                        }
                        steps[i].push(Step::Custom);
                    }
                }
            }
            if !mine.is_empty() {
                customs.push((Arc::clone(p), mine));
            }
        }
        if steps.iter().all(|s| s.is_empty()) {
            if let (Some(m), false) = (memo, missed) {
                m.insert(&ask, &wctx);
            }
            return None;
        }
        Some(Box::new(MaskRewriter::new(
            steps,
            types,
            customs,
            wctx,
            call,
            Arc::clone(&self.key),
            self.batch_rows,
        )))
    }
}

/// Whether `session`'s identity is masked by `policies`: one of them masks (or
/// refuses, or fails on) a text column of unknown provenance with no tables for it.
/// The rule follows the policies' own answer, not a list of names.
pub fn identity_is_masked(policies: &[Arc<LoadedPolicy>], session: &SessionInfo) -> bool {
    if policies.is_empty() {
        return false;
    }
    let ctx = wit::ResultContext {
        identity: crate::policy::request::identity(session),
        database: session.database.clone(),
        statement: None,
        columns: vec![wit::ResultColumn {
            index: 0,
            name: "?column?".into(),
            type_oid: 25,
            format: wit::ValueFormat::Text,
            provenance: wit::Provenance::Unknown(Vec::new()),
        }],
    };
    let call = CallContext::of(&session.identity);
    policies.iter().any(|p| {
        let planned = match p.remembered_plan(&ctx, &call) {
            Ok(plan) => Ok(plan),
            Err(miss) => off_runtime(|| p.plan_masks_after(miss, &ctx, &call)),
        };
        match planned {
            Ok(plan) => plan.refuse.is_some() || !plan.columns.is_empty(),
            Err(_) => true,
        }
    })
}

/// The gate of a chain with masking policies: before the chain decides, the
/// statement's `columns` that name view columns are completed with the base columns
/// they come from (through the catalog), so a policy that lists `customers.email` also
/// sees `WHERE v.email LIKE 'a%'` or `COPY (SELECT email FROM v) TO STDOUT` over a
/// view `v` of `customers`. The catalog is reloaded after DDL by the session once
/// the DDL has run and committed, whether it ran at once or after an approval (see
/// [`changes_catalog`]).
pub struct MaskingGate {
    chain: Policies,
    catalog: Arc<Catalog>,
}

impl MaskingGate {
    /// Wraps `chain`.
    pub fn new(chain: Arc<PolicyChain>, catalog: Arc<Catalog>) -> Self {
        MaskingGate {
            chain: Policies::Fixed(chain),
            catalog,
        }
    }

    /// Wraps the live set of a policy directory.
    pub fn live(sets: Arc<crate::policy::reload::PolicySets>, catalog: Arc<Catalog>) -> Self {
        MaskingGate {
            chain: Policies::Live(sets),
            catalog,
        }
    }
}

/// Adds `opaque:NAME()` to request `columns` for every function the statement calls
/// whose body the gateway cannot see, and `opaque:operator(SYMBOL)` for every such
/// operator (see [`catalog::Functions::is_opaque`]): a masking
/// policy cannot tell what such a call reads, so it treats it as sensitive (pii-mask
/// denies `COPY ... TO`, copies into tables and exfiltrating functions with one). Such
/// a call in a condition adds `predicate:opaque:NAME()` as well (it may test a masked
/// value: `WHERE lookup_ssn(id) LIKE '1%'`), as does one outside the output list of a
/// statement with any condition (its value may reach the condition by an alias:
/// `FROM (SELECT lookup_ssn(id) AS s ...) x WHERE s LIKE '1%'`); one in a GROUP BY /
/// ORDER BY adds `ordered:opaque:NAME()`, as does one outside the output list of a
/// statement that sorts or groups.
pub fn opaque_calls(
    columns: &mut Vec<String>,
    s: &portcullis_sql::StatementSummary,
    cat: &catalog::DbCatalog,
) {
    // A call outside the output list may reach a condition through an alias, a
    // derived table or a CTE: with any condition, it counts as one in a condition.
    let none = Vec::new();
    let nested_if = |used: bool| if used { &s.lineage.nested_calls } else { &none };
    let mut push = |e: String| {
        if !columns.contains(&e) {
            columns.push(e);
        }
    };
    for f in s.functions.iter().filter(|f| cat.function_is_opaque(f)) {
        push(format!("opaque:{f}()"));
    }
    for o in s.operators.iter().filter(|o| cat.operator_is_opaque(o)) {
        push(format!("opaque:{}", portcullis_sql::operator_call(o)));
    }
    // The lineage names operators as `operator(SYMBOL)`.
    let uses = [
        ("predicate:", &s.lineage.condition_calls),
        ("predicate:", nested_if(s.lineage.has_condition)),
        ("ordered:", &s.lineage.ordered_calls),
        ("ordered:", nested_if(s.lineage.has_ordering)),
    ];
    for (prefix, names) in uses {
        for f in names.iter().filter(|f| cat.function_is_opaque(f)) {
            // `opaque:f()`, or `opaque:operator(###)` for an operator.
            let call = if f.ends_with(')') { "" } else { "()" };
            push(format!("{prefix}opaque:{f}{call}"));
        }
    }
}

/// The mask policies a [`MaskingFilter`] asks.
enum MaskPolicies {
    /// A fixed set, with its memo of unmasked results when every one caches its plans.
    Fixed(Vec<Arc<LoadedPolicy>>, Option<ResultMemo>),
    /// The mask policies of a directory's live set (the memo is the set's chain's).
    Live(Arc<crate::policy::reload::PolicySets>),
}

impl Gate for MaskingGate {
    fn decide(&self, ctx: &StatementContext<'_>) -> Decision {
        let cat = self.catalog.get(&ctx.session.database);
        let ask = crate::policy::memo::Ask {
            session: ctx.session,
            analysis: ctx.analysis,
            statement: ctx.statement,
            protocol: ctx.protocol,
            transaction: ctx.transaction,
            catalog: Some(&cat),
        };
        self.chain.with_chain(|c| {
            c.decide_remembered(&ask, ctx.verdicts, || {
                let mut req = crate::policy::request::request(ctx);
                provenance::expand_view_columns(&mut req.statement.columns, &cat);
                opaque_calls(&mut req.statement.columns, ctx.statement, &cat);
                req
            })
        })
    }

    fn route_approval(
        &self,
        ctx: &StatementContext<'_>,
        ask: &crate::pipeline::ApprovalAsk<'_>,
    ) -> crate::pipeline::ApprovalRoute {
        self.chain.with_chain(|c| c.route_approval(ctx, ask))
    }

    fn decide_function_call(&self, session: &SessionInfo, function_oid: u32) -> Decision {
        // A fast-path call's result is not a row: never masked. Denied to masked
        // identities even where `allow_function_call` lets others make them.
        let masked = self
            .chain
            .with_chain(|c| identity_is_masked(&c.mask_policies(), session));
        if masked {
            return Decision::Deny(crate::pipeline::Denial {
                sqlstate: "42501".into(),
                message: format!(
                    "fast-path function calls (FunctionCall of OID {function_oid}) are not allowed for {}: their results are not masked",
                    session.identity.name
                ),
                policy: "portcullis:masking".into(),
            });
        }
        self.chain
            .with_chain(|c| c.decide_function_call(session, function_oid))
    }
}

/// Whether a statement of this kind may change what the masking catalog holds
/// (relations, columns, view definitions): its session reloads the catalog once it
/// has committed, and holds back its next results until then.
pub fn changes_catalog(kind: StatementKind) -> bool {
    matches!(
        kind,
        StatementKind::CreateTable
            | StatementKind::CreateView
            | StatementKind::CreateOther
            | StatementKind::Alter
            | StatementKind::Drop
            | StatementKind::Do
            | StatementKind::Unparsed
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_wire::backend::Severity;

    #[test]
    fn data_errors_lose_their_values() {
        let e = ErrorFields::new(
            Severity::Error,
            "22P02",
            "invalid input syntax for type integer: \"123-45-6789\"",
        );
        let s = scrub_error(&e).unwrap();
        assert_eq!(
            s.message(),
            Some("invalid input syntax for type integer: \"…\"")
        );
        assert_eq!(s.code(), Some("22P02"));
        let e = ErrorFields::new(Severity::Error, "23505", "duplicate key")
            .detail("Key (email)=(alice@example.com) already exists.");
        let s = scrub_error(&e).unwrap();
        assert!(!s.get(b'D').unwrap().contains("alice"));
        let e = ErrorFields::new(Severity::Error, "42P01", "relation \"x\" does not exist");
        assert!(scrub_error(&e).is_none());
    }
}
