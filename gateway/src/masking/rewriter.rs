//! The row rewriters: native plans streamed row by row, `custom` columns batched
//! (one packed `cell-batch` per policy and batch of rows).

use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use portcullis_wire::backend::{DataRowCells, tag};

use super::functions::{ColumnType, CompiledMask, PseudonymKey, TypeClass, encode_constant_into};
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

/// The current value of a masked cell while a batch is flushed.
#[derive(Debug, Clone, Copy)]
enum Cur {
    /// NULL.
    Null,
    /// Bytes `at..at + len` of the held row bodies (not changed yet).
    Held { at: usize, len: usize },
    /// Bytes `at..at + len` of the flush's arena (masked).
    Arena { at: usize, len: usize },
}

/// No masked-column slot: the column passes unchanged.
const UNMASKED: usize = usize::MAX;

/// Applies a mask plan.
pub(super) struct MaskRewriter {
    steps: Vec<Vec<Step>>,
    /// Columns with at least one step.
    masked: Vec<bool>,
    /// For each column, its position among the masked columns (or [`UNMASKED`]).
    slot: Vec<usize>,
    types: Vec<ColumnType>,
    customs: Vec<(Arc<LoadedPolicy>, Vec<usize>)>,
    ctx: Arc<wit::ResultContext>,
    /// What `mask-cells` calls' `context` import answers.
    call: CallContext,
    key: Arc<PseudonymKey>,
    batch_rows: usize,
    /// The DataRow bodies held back for the next batch, concatenated, and where each
    /// one ends.
    held: Vec<u8>,
    held_ends: Vec<usize>,
    scratch: Vec<u8>,
    /// Reused by every flush: the current value of each masked cell (row-major, one
    /// slot per masked column), the bytes of the values that are not in `held`, and
    /// the batch sent to a policy.
    cur: Vec<Cur>,
    arena: Vec<u8>,
    batch: wit::CellBatch,
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
        let masked: Vec<bool> = steps.iter().map(|s| !s.is_empty()).collect();
        let mut n = 0;
        let slot = masked
            .iter()
            .map(|&m| {
                if !m {
                    return UNMASKED;
                }
                n += 1;
                n - 1
            })
            .collect();
        MaskRewriter {
            steps,
            masked,
            slot,
            types,
            customs,
            ctx,
            call,
            key,
            batch_rows,
            held: Vec::new(),
            held_ends: Vec::new(),
            scratch: Vec::new(),
            cur: Vec::new(),
            arena: Vec::new(),
            batch: wit::CellBatch {
                columns: 0,
                data: Vec::new(),
                lengths: Vec::new(),
            },
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

    /// Masks the held rows: native steps, then each policy's `custom` cells as one
    /// packed batch per policy, then the rows are written to `out`. Cells are
    /// referenced in the held bodies or copied into the arena: nothing is allocated
    /// per cell.
    fn flush(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        if self.held_ends.is_empty() {
            return Ok(());
        }
        let result = self.flush_held(out);
        self.held.clear();
        self.held_ends.clear();
        result
    }

    fn flush_held(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        let width = self.masked.iter().filter(|m| **m).count();
        self.cur.clear();
        self.arena.clear();
        let base = self.held.as_ptr() as usize;
        let mut start = 0;
        for &end in &self.held_ends {
            for (i, cell) in DataRowCells::new(&self.held[start..end])?.enumerate() {
                let cell = cell?;
                if self.slot[i] == UNMASKED {
                    continue;
                }
                let mut cur = match cell {
                    None => Cur::Null,
                    Some(v) => Cur::Held {
                        at: v.as_ptr() as usize - base,
                        len: v.len(),
                    },
                };
                for step in &self.steps[i] {
                    let Step::Native(m) = step else { continue };
                    let Some(v) = value(&self.held, &self.arena, cur) else {
                        break;
                    };
                    cur = if m.apply(v, &self.key, &mut self.scratch) {
                        let at = self.arena.len();
                        self.arena.extend_from_slice(&self.scratch);
                        Cur::Arena {
                            at,
                            len: self.scratch.len(),
                        }
                    } else {
                        Cur::Null
                    };
                }
                self.cur.push(cur);
            }
            start = end;
        }
        for c in 0..self.customs.len() {
            self.mask_custom(c, width)?;
        }
        let n = self.steps.len();
        let mut start = 0;
        for (r, &end) in self.held_ends.iter().enumerate() {
            let body = &self.held[start..end];
            start = end;
            out.reserve(body.len() + 16);
            let row_start = out.len();
            out.put_u8(tag::DATA_ROW);
            out.put_i32(0);
            out.put_i16(n as i16);
            for (i, cell) in DataRowCells::new(body)?.enumerate() {
                let v = match self.slot[i] {
                    UNMASKED => cell?,
                    s => value(&self.held, &self.arena, self.cur[r * width + s]),
                };
                match v {
                    None => out.put_i32(-1),
                    Some(v) => {
                        out.put_i32(v.len() as i32);
                        out.put_slice(v);
                    }
                }
            }
            let len = (out.len() - row_start - 1) as i32;
            out[row_start + 1..row_start + 5].copy_from_slice(&len.to_be_bytes());
        }
        Ok(())
    }

    /// Sends the current values of policy `c`'s custom columns to it as one packed
    /// batch and takes its answer as their new values.
    fn mask_custom(&mut self, c: usize, width: usize) -> anyhow::Result<()> {
        let (policy, cols) = &self.customs[c];
        let b = &mut self.batch;
        b.columns = cols.len() as u32;
        b.data.clear();
        b.lengths.clear();
        for r in 0..self.held_ends.len() {
            for &i in cols {
                let text_ok = !self.types[i].binary || self.types[i].class == TypeClass::Text;
                let cur = self.cur[r * width + self.slot[i]];
                match value(&self.held, &self.arena, cur).filter(|_| text_ok) {
                    None => b.lengths.push(-1),
                    Some(v) => {
                        let at = b.data.len();
                        match std::str::from_utf8(v) {
                            Ok(_) => b.data.extend_from_slice(v),
                            Err(_) => b
                                .data
                                .extend_from_slice(String::from_utf8_lossy(v).as_bytes()),
                        }
                        b.lengths.push((b.data.len() - at) as i32);
                    }
                }
            }
        }
        let answer = match super::off_runtime(|| policy.mask_cells(&self.ctx, b, &self.call)) {
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
        for (k, v) in crate::policy::packed::cells(&answer).enumerate() {
            let (r, i) = (k / cols.len(), cols[k % cols.len()]);
            // Values from the policy are type-checked like constants (the answer was
            // checked to be UTF-8 cell by cell).
            let at = self.arena.len();
            let ok = v
                .and_then(|v| std::str::from_utf8(v).ok())
                .is_some_and(|s| encode_constant_into(self.types[i], s, &mut self.arena));
            self.cur[r * width + self.slot[i]] = if ok {
                Cur::Arena {
                    at,
                    len: self.arena.len() - at,
                }
            } else {
                Cur::Null
            };
        }
        Ok(())
    }
}

/// The bytes of a cell's current value (`None` for NULL).
fn value<'a>(held: &'a [u8], arena: &'a [u8], cur: Cur) -> Option<&'a [u8]> {
    match cur {
        Cur::Null => None,
        Cur::Held { at, len } => Some(&held[at..at + len]),
        Cur::Arena { at, len } => Some(&arena[at..at + len]),
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
        self.held.extend_from_slice(body);
        self.held_ends.push(self.held.len());
        if self.held_ends.len() >= self.batch_rows {
            self.flush(out)?;
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) -> anyhow::Result<()> {
        self.flush(out)
    }
}
