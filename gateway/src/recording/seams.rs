//! The recording at the pipeline seams: observers of the gate and the result filter
//! (see [`crate::pipeline::ObservingGate`]) that record what they saw.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use portcullis_wire::backend::DataRowCells;

use super::format::{
    ColumnRec, DecisionRec, IdentityRec, Line, MaskRec, RefusalRec, ResultLine, StatementLine,
    SummaryRec, mask_name, transaction_name,
};
use super::writer::{Recorder, now_rfc3339};
use crate::masking::{Catalog, MaskObservation};
use crate::pipeline::{
    BoundParams, Decision, DecisionObserver, PlanObserver, Protocol, ResultContext, RowRewriter,
    StatementContext,
};
use crate::policy::bindings::portcullis::policy::types as wit;

/// Longest sampled value kept, in bytes.
const MAX_VALUE_BYTES: usize = 1024;

/// The recorded form of a live decision.
pub fn decision_rec(d: &Decision) -> DecisionRec {
    match d {
        Decision::Allow => DecisionRec {
            outcome: "allow".into(),
            policy: None,
            message: None,
            sqlstate: None,
        },
        Decision::Deny(d) => DecisionRec {
            outcome: "deny".into(),
            policy: Some(d.policy.clone()),
            message: Some(d.message.clone()),
            sqlstate: Some(d.sqlstate.clone()),
        },
        Decision::Hold(h) => DecisionRec {
            outcome: "hold".into(),
            policy: Some(h.policy.clone()),
            message: Some(h.reason.clone()),
            sqlstate: None,
        },
    }
}

/// The policy request of a statement as the live gate builds it, with view columns
/// completed through the catalog when masking is on.
pub fn live_request(ctx: &StatementContext<'_>, catalog: Option<&Arc<Catalog>>) -> wit::Request {
    let mut req = crate::policy::request::request(ctx);
    if let Some(cat) = catalog {
        let cat = cat.get(&ctx.session.database);
        crate::masking::provenance::expand_view_columns(&mut req.statement.columns, &cat);
    }
    req
}

/// Records every selected statement with the decision of the gate it observes
/// (an [`ObservingGate`](crate::pipeline::ObservingGate) observer).
pub struct RecordingGate {
    recorder: Arc<Recorder>,
    catalog: Option<Arc<Catalog>>,
}

impl RecordingGate {
    /// Records to `recorder`; `catalog` completes view columns like the masking gate
    /// does.
    pub fn new(recorder: Arc<Recorder>, catalog: Option<Arc<Catalog>>) -> Self {
        RecordingGate { recorder, catalog }
    }

    /// Queues the line of one statement, when its session is selected and sampled.
    fn record(
        &self,
        ctx: &StatementContext<'_>,
        decision: &Decision,
        params: Option<&BoundParams<'_>>,
    ) {
        let config = self.recorder.config();
        if !(config.selects(ctx.session) && config.sampled()) {
            return;
        }
        let req = live_request(ctx, self.catalog.as_ref());
        let line = StatementLine {
            seq: 0,
            time: now_rfc3339(),
            session: ctx.session.session_id,
            identity: IdentityRec::of(ctx.session),
            database: req.database.clone(),
            protocol: match req.protocol {
                wit::Protocol::Simple => "simple",
                wit::Protocol::Extended => "extended",
            }
            .into(),
            transaction: transaction_name(req.transaction).into(),
            sql: req.statement.sql.clone(),
            statement: SummaryRec::from_wit(&req.statement),
            params: params.map(|p| p.values.to_vec()),
            binary_params: params.map(binary_positions).unwrap_or_default(),
            decision: decision_rec(decision),
            verdicts: Vec::new(),
        };
        self.recorder.record(Line::Statement(Box::new(line)));
    }
}

/// Positions of the binary-format parameters among the recorded values.
fn binary_positions(p: &BoundParams<'_>) -> Vec<u32> {
    (0..p.values.len())
        .filter(|&i| crate::audit::record::param_is_binary(p.formats, i))
        .map(|i| i as u32)
        .collect()
}

impl DecisionObserver for RecordingGate {
    fn decided(&self, ctx: &StatementContext<'_>, decision: &Decision) {
        // An allowed Parse is recorded at each of its Binds, with the parameters
        // (see `bound`); denials and holds are recorded here.
        if !(ctx.protocol == Protocol::ExtendedParse && *decision == Decision::Allow) {
            self.record(ctx, decision, None);
        }
    }

    fn observes_binds(&self) -> bool {
        true
    }

    fn bound(&self, ctx: &StatementContext<'_>, params: &BoundParams<'_>) {
        self.record(ctx, &Decision::Allow, Some(params));
    }
}

/// Records the selected result sets: columns with provenance, the masks applied and,
/// with `sample_rows`, the first rows as the client received them (an
/// [`ObservingFilter`](crate::pipeline::ObservingFilter) observer).
pub struct RecordingFilter {
    recorder: Arc<Recorder>,
}

impl RecordingFilter {
    /// Records to `recorder`.
    pub fn new(recorder: Arc<Recorder>) -> Self {
        RecordingFilter { recorder }
    }
}

impl PlanObserver for RecordingFilter {
    fn planned(
        &self,
        ctx: &ResultContext<'_>,
        plan: &MaskObservation,
        rewriter: Option<Box<dyn RowRewriter>>,
    ) -> Option<Box<dyn RowRewriter>> {
        let config = self.recorder.config();
        if !(config.selects(ctx.session) && config.sampled()) {
            return rewriter;
        }
        let planned = crate::masking::planned_context(ctx, plan);
        let line = ResultLine {
            seq: 0,
            time: now_rfc3339(),
            session: ctx.session.session_id,
            identity: IdentityRec::of(ctx.session),
            database: ctx.session.database.clone(),
            statement: planned.statement.as_ref().map(SummaryRec::from_wit),
            columns: planned.columns.iter().map(ColumnRec::from_wit).collect(),
            masks: plan
                .masks
                .iter()
                .map(|(c, p, m)| MaskRec {
                    column: *c,
                    policy: p.clone(),
                    mask: mask_name(m),
                })
                .collect(),
            refused: plan
                .refused
                .clone()
                .map(|(policy, message)| RefusalRec { policy, message }),
            rows: Vec::new(),
        };
        if config.sample_rows == 0 || line.refused.is_some() {
            self.recorder.record(Line::Result(Box::new(line)));
            return rewriter;
        }
        Some(Box::new(Sampling {
            inner: rewriter,
            max: config.sample_rows,
            line: Some(line),
            recorder: Arc::clone(&self.recorder),
        }))
    }
}

/// Keeps the first rows the client gets (after masking); records the line when the
/// result set ends (or is refused).
struct Sampling {
    inner: Option<Box<dyn RowRewriter>>,
    max: usize,
    line: Option<ResultLine>,
    recorder: Arc<Recorder>,
}

impl Sampling {
    /// Samples the DataRows appended to `out` from `start`.
    fn sample(&mut self, out: &BytesMut, start: usize) {
        let Some(line) = self.line.as_mut() else {
            return;
        };
        let mut i = start;
        while i + 5 <= out.len() && line.rows.len() < self.max {
            let tag = out[i];
            let len = u32::from_be_bytes([out[i + 1], out[i + 2], out[i + 3], out[i + 4]]) as usize;
            let end = i + 1 + len;
            if len < 4 || end > out.len() {
                break;
            }
            if tag == b'D'
                && let Ok(cells) = DataRowCells::new(&out[i + 5..end])
            {
                let row: Vec<Option<String>> = cells
                    .enumerate()
                    .map(|(n, c)| {
                        let c = c.ok().flatten()?;
                        let cut = &c[..c.len().min(MAX_VALUE_BYTES)];
                        let binary = line
                            .columns
                            .get(n)
                            .is_some_and(|col| col.format == "binary");
                        Some(if binary {
                            format!("\\x{}", hex::encode(cut))
                        } else {
                            String::from_utf8_lossy(cut).into_owned()
                        })
                    })
                    .collect();
                line.rows.push(row);
            }
            i = end;
        }
    }
}

impl RowRewriter for Sampling {
    fn rewrite(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
        let start = out.len();
        match self.inner.as_mut() {
            Some(rw) => rw.rewrite(body, out)?,
            None => {
                out.put_u8(b'D');
                out.put_u32(body.len() as u32 + 4);
                out.extend_from_slice(body);
            }
        }
        self.sample(out, start);
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        let start = out.len();
        if let Some(rw) = self.inner.as_mut() {
            rw.finish(out)?;
        }
        self.sample(out, start);
        Ok(())
    }

    fn refusal(&self) -> Option<crate::pipeline::Refusal> {
        self.inner.as_ref().and_then(|rw| rw.refusal())
    }
}

impl Drop for Sampling {
    fn drop(&mut self) {
        if let Some(line) = self.line.take() {
            self.recorder.record(Line::Result(Box::new(line)));
        }
    }
}
