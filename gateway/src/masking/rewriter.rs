//! The row rewriters: native plans streamed row by row, `custom` columns batched.

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use portcullis_wire::backend::{DataRowCells, tag};

use super::functions::{ColumnType, CompiledMask, PseudonymKey, TypeClass, encode_constant};
use crate::pipeline::{Refusal, RowRewriter};
use crate::policy::bindings::portcullis::policy::types as wit;
use crate::policy::{CallContext, LoadedPolicy};

/// One masking step of a column, in policy order.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// A built-in mask.
    Native(CompiledMask),
    /// A `custom` mask (`mask-rows` of the policy that planned it).
    Custom,
}

/// Refuses the result before any row.
pub(super) struct Refuse(pub(super) Refusal);

impl RowRewriter for Refuse {
    fn rewrite(&mut self, _body: &[u8], _out: &mut BytesMut) -> anyhow::Result<()> {
        Err(self.0.clone().into())
    }

    fn finish(&mut self, _out: &mut BytesMut) -> anyhow::Result<()> {
        Err(self.0.clone().into())
    }

    fn refusal(&self) -> Option<Refusal> {
        Some(self.0.clone())
    }
}

/// For results whose columns the gateway does not know: rows with cells are refused.
pub(super) struct NoColumns;

impl RowRewriter for NoColumns {
    fn rewrite(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
        let cells = DataRowCells::new(body)?;
        if !cells.is_empty() {
            return Err(Refusal {
                sqlstate: "42501".into(),
                message: "result refused: the gateway does not know this result's columns (describe the statement or portal before executing it while masking policies are loaded)".into(),
                policy: "portcullis:masking".into(),
            }
            .into());
        }
        portcullis_wire::backend::data_row(out, &[]);
        Ok(())
    }
}

/// Applies a mask plan.
pub(super) struct MaskRewriter {
    steps: Vec<Vec<Step>>,
    /// Columns with at least one step.
    masked: Vec<bool>,
    types: Vec<ColumnType>,
    customs: Vec<(Arc<LoadedPolicy>, Vec<usize>)>,
    ctx: Arc<wit::ResultContext>,
    /// What `mask-rows` calls' `context` import answers.
    call: CallContext,
    key: Arc<PseudonymKey>,
    batch_rows: usize,
    /// DataRow bodies held back for the next `mask-rows` batch.
    held: Vec<Vec<u8>>,
    scratch: Vec<u8>,
}

impl MaskRewriter {
    /// A rewriter for these per-column steps and column types.
    pub(super) fn new(
        steps: Vec<Vec<Step>>,
        types: Vec<ColumnType>,
        customs: Vec<(Arc<LoadedPolicy>, Vec<usize>)>,
        ctx: Arc<wit::ResultContext>,
        call: CallContext,
        key: Arc<PseudonymKey>,
        batch_rows: usize,
    ) -> Self {
        let masked = steps.iter().map(|s| !s.is_empty()).collect();
        MaskRewriter {
            steps,
            masked,
            types,
            customs,
            ctx,
            call,
            key,
            batch_rows,
            held: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn shape_error(&self, got: usize) -> anyhow::Error {
        Refusal {
            sqlstate: "42501".into(),
            message: format!(
                "result refused: a row has {got} values for {} described columns",
                self.steps.len()
            ),
            policy: "portcullis:masking".into(),
        }
        .into()
    }

    /// Native-only fast path: masks while copying into `out`.
    fn stream(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
        let cells = DataRowCells::new(body)?;
        if cells.len() != self.steps.len() {
            return Err(self.shape_error(cells.len()));
        }
        out.reserve(body.len() + 16);
        let start = out.len();
        out.put_u8(tag::DATA_ROW);
        out.put_i32(0);
        out.put_i16(self.steps.len() as i16);
        for (i, cell) in cells.enumerate() {
            let cell = cell?;
            match cell {
                None => out.put_i32(-1),
                Some(v) if !self.masked[i] => {
                    out.put_i32(v.len() as i32);
                    out.put_slice(v);
                }
                Some(v) if self.steps[i].len() == 1 => {
                    // The common case: one native mask, no intermediate copies.
                    let Step::Native(m) = &self.steps[i][0] else {
                        unreachable!("custom steps are batched")
                    };
                    if m.apply(v, &self.key, &mut self.scratch) {
                        out.put_i32(self.scratch.len() as i32);
                        out.put_slice(&self.scratch);
                    } else {
                        out.put_i32(-1);
                    }
                }
                Some(v) => {
                    let mut cur: Option<Vec<u8>> = Some(v.to_vec());
                    for step in &self.steps[i] {
                        let Step::Native(m) = step else { continue };
                        if let Some(val) = cur.take() {
                            cur = m
                                .apply(&val, &self.key, &mut self.scratch)
                                .then(|| std::mem::take(&mut self.scratch));
                        }
                    }
                    match cur {
                        None => out.put_i32(-1),
                        Some(v) => {
                            out.put_i32(v.len() as i32);
                            out.put_slice(&v);
                        }
                    }
                }
            }
        }
        let len = (out.len() - start - 1) as i32;
        out[start + 1..start + 5].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    fn flush(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        if self.held.is_empty() {
            return Ok(());
        }
        let bodies = std::mem::take(&mut self.held);
        let n = self.steps.len();
        // Every cell after the native steps (custom columns are filled in below).
        let mut rows: Vec<Vec<Option<Vec<u8>>>> = Vec::with_capacity(bodies.len());
        for body in &bodies {
            let mut row = Vec::with_capacity(n);
            for (i, cell) in DataRowCells::new(body)?.enumerate() {
                let mut cur = cell?.map(<[u8]>::to_vec);
                for step in &self.steps[i] {
                    if let (Step::Native(m), Some(v)) = (step, cur.as_ref()) {
                        cur = m
                            .apply(v, &self.key, &mut self.scratch)
                            .then(|| std::mem::take(&mut self.scratch));
                    }
                }
                row.push(cur);
            }
            rows.push(row);
        }
        for (policy, cols) in &self.customs {
            let batch: Vec<wit::Row> = rows
                .iter()
                .map(|row| {
                    cols.iter()
                        .map(|&i| {
                            let text_ok =
                                !self.types[i].binary || self.types[i].class == TypeClass::Text;
                            row[i]
                                .as_ref()
                                .filter(|_| text_ok)
                                .map(|v| String::from_utf8_lossy(v).into_owned())
                        })
                        .collect()
                })
                .collect();
            let masked = match super::off_runtime(|| {
                policy.mask_rows(&self.ctx, &batch, &self.call)
            }) {
                Ok(Ok(m)) => m,
                Ok(Err(msg)) => {
                    return Err(Refusal {
                        sqlstate: "42501".into(),
                        message: format!("policy \"{}\" refused the result: {msg}", policy.id()),
                        policy: policy.id().to_owned(),
                    }
                    .into());
                }
                Err(f) => {
                    return Err(Refusal {
                        sqlstate: "42501".into(),
                        message: format!(
                            "policy \"{}\" failed while masking rows ({f}); result refused",
                            policy.id()
                        ),
                        policy: policy.id().to_owned(),
                    }
                    .into());
                }
            };
            for (row, new) in rows.iter_mut().zip(masked) {
                for (&i, v) in cols.iter().zip(new) {
                    // Values from the policy are type-checked like constants.
                    row[i] = v.and_then(|s| encode_constant(self.types[i], &s));
                }
            }
        }
        let mut refs: Vec<Option<&[u8]>> = Vec::with_capacity(n);
        for row in &rows {
            refs.clear();
            refs.extend(row.iter().map(|c| c.as_deref()));
            portcullis_wire::backend::data_row(out, &refs);
        }
        Ok(())
    }
}

impl RowRewriter for MaskRewriter {
    fn rewrite(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
        if self.customs.is_empty() {
            return self.stream(body, out);
        }
        let cells = DataRowCells::new(body)?;
        if cells.len() != self.steps.len() {
            return Err(self.shape_error(cells.len()));
        }
        self.held.push(body.to_vec());
        if self.held.len() >= self.batch_rows {
            self.flush(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        self.flush(out)
    }
}
