//! Packed batches of cells (contract 0.3.0 `cell-batch`, hook `mask-cells`): the
//! `custom` cells of a run of rows in one string and one list of lengths, so masking
//! them allocates nothing per cell, in the guest or in the gateway.
//!
//! [`crate::Policy::mask_cells`] reads a [`Cells`] and writes a [`CellWriter`]; the
//! usual shape is [`Cells::mask_each`]:
//!
//! ```
//! use portcullis_sdk::{CellMask, CellWriter, Cells};
//!
//! let cells = Cells::from_rows(&[vec![Some("Ada Lovelace".into()), None]]);
//! let mut out = CellWriter::new(cells.columns());
//! cells
//!     .mask_each(&mut out, |_column, value, buf| {
//!         buf.push_str(&value[..1]);
//!         buf.push('.');
//!         Ok(CellMask::Value)
//!     })
//!     .unwrap();
//! assert_eq!(out.into_cells().to_rows(), vec![vec![Some("A.".into()), None]]);
//! ```

use crate::{Policy, ResultContext, Row};

/// A batch as it crosses the boundary (the contract's `cell-batch`), unchecked: what
/// [`crate::Policy::mask_batch`] takes and returns. Most policies never see it:
/// [`crate::Policy::mask_cells`] gets the checked [`Cells`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellBatch {
    /// Cells per row.
    pub columns: u32,
    /// The bytes of the non-NULL cells, concatenated, row-major.
    pub data: Vec<u8>,
    /// Each cell's length in bytes; -1 for NULL.
    pub lengths: Vec<i32>,
}

impl CellBatch {
    /// Checks the batch (see [`Cells::new`]; the data must be UTF-8).
    pub fn into_cells(self) -> Result<Cells, String> {
        let data = String::from_utf8(self.data)
            .map_err(|e| format!("cell batch is not valid UTF-8: {e}"))?;
        Cells::new(self.columns as usize, data, self.lengths)
    }
}

impl From<Cells> for CellBatch {
    fn from(c: Cells) -> Self {
        CellBatch {
            columns: c.columns as u32,
            data: c.data.into_bytes(),
            lengths: c.lengths,
        }
    }
}

/// Runs [`Policy::mask_cells`] on `cells` and checks that it wrote one value per cell.
pub(crate) fn mask_checked<P: Policy>(
    p: &P,
    ctx: &ResultContext,
    cells: &Cells,
) -> Result<Cells, String> {
    let mut out = CellWriter::new(cells.columns());
    p.mask_cells(ctx, cells, &mut out)?;
    if out.len() != cells.len() {
        return Err(format!(
            "mask_cells wrote {} cells for {}",
            out.len(),
            cells.len()
        ));
    }
    Ok(out.into_cells())
}

/// A batch of cells, row-major: the `custom` columns of the mask plan, in plan order,
/// in text format. Cell `c` of row `r` is cell `r * columns() + c`; `None` is NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cells {
    columns: usize,
    data: String,
    lengths: Vec<i32>,
}

/// What a cell mask produced (see [`Cells::mask_each`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellMask {
    /// The masked value is what the mask wrote into its buffer (possibly empty).
    Value,
    /// The value passes unchanged (no copy into the buffer needed).
    Unchanged,
    /// The value becomes NULL.
    Null,
}

impl Cells {
    /// A batch from its parts, checked: `columns` at least 1, as many lengths as a
    /// whole number of rows, every length -1 (NULL) or more, the lengths adding up to
    /// `data` exactly and each cell ending on a character boundary.
    pub fn new(columns: usize, data: String, lengths: Vec<i32>) -> Result<Cells, String> {
        if columns == 0 {
            return Err("cell batch of 0 columns".into());
        }
        if !lengths.len().is_multiple_of(columns) {
            return Err(format!(
                "cell batch of {} cells is not a whole number of {columns}-column rows",
                lengths.len()
            ));
        }
        let mut at = 0usize;
        for (k, &len) in lengths.iter().enumerate() {
            if len == -1 {
                continue;
            }
            let len = usize::try_from(len).map_err(|_| format!("cell {k} has length {len}"))?;
            at = at
                .checked_add(len)
                .filter(|&end| end <= data.len() && data.is_char_boundary(end))
                .ok_or_else(|| format!("cell {k} of {len} bytes is out of bounds"))?;
        }
        if at != data.len() {
            return Err(format!(
                "cell batch holds {} bytes after its last cell",
                data.len() - at
            ));
        }
        Ok(Cells {
            columns,
            data,
            lengths,
        })
    }

    /// A batch holding `rows` (each as wide as the first; for tests and adapters).
    pub fn from_rows(rows: &[Row]) -> Cells {
        let mut w = CellWriter::new(rows.first().map_or(1, |r| r.len()).max(1));
        for v in rows.iter().flatten() {
            w.push(v.as_deref());
        }
        w.into_cells()
    }

    /// Cells per row.
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.lengths.len() / self.columns
    }

    /// Cells in the batch.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the batch has no cells.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// Every cell, row-major (`None` for NULL).
    pub fn iter(&self) -> impl Iterator<Item = Option<&str>> + '_ {
        let mut at = 0usize;
        self.lengths.iter().map(move |&len| {
            let len = usize::try_from(len).ok()?;
            let v = &self.data[at..at + len];
            at += len;
            Some(v)
        })
    }

    /// The batch as rows (what [`crate::Policy::mask_rows`] takes).
    pub fn to_rows(&self) -> Vec<Row> {
        let mut rows = Vec::with_capacity(self.rows());
        let mut row = Vec::with_capacity(self.columns);
        for v in self.iter() {
            row.push(v.map(str::to_owned));
            if row.len() == self.columns {
                rows.push(std::mem::replace(
                    &mut row,
                    Vec::with_capacity(self.columns),
                ));
            }
        }
        rows
    }

    /// Masks every non-NULL cell with `mask(column, value, buf)` into `out`, where
    /// `column` is the cell's position among the custom columns and `buf` an empty,
    /// reused buffer; NULL cells stay NULL. An `Err` from `mask` stops and is
    /// returned (the gateway then refuses the result).
    pub fn mask_each(
        &self,
        out: &mut CellWriter,
        mut mask: impl FnMut(usize, &str, &mut String) -> Result<CellMask, String>,
    ) -> Result<(), String> {
        let mut buf = String::new();
        for (k, v) in self.iter().enumerate() {
            let Some(v) = v else {
                out.push_null();
                continue;
            };
            buf.clear();
            match mask(k % self.columns, v, &mut buf)? {
                CellMask::Value => out.push_str(&buf),
                CellMask::Unchanged => out.push_str(v),
                CellMask::Null => out.push_null(),
            }
        }
        Ok(())
    }

    /// The parts: columns, data, lengths.
    pub fn into_parts(self) -> (usize, String, Vec<i32>) {
        (self.columns, self.data, self.lengths)
    }
}

/// Builds the answer to a [`Cells`] batch: push exactly one value per cell of the
/// batch, in the same order. The gateway refuses the result if the count differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellWriter {
    columns: usize,
    data: String,
    lengths: Vec<i32>,
}

impl CellWriter {
    /// An empty answer of `columns` cells per row.
    pub fn new(columns: usize) -> CellWriter {
        CellWriter {
            columns,
            data: String::new(),
            lengths: Vec::new(),
        }
    }

    /// Appends a value (`None` for NULL).
    pub fn push(&mut self, value: Option<&str>) {
        match value {
            Some(v) => self.push_str(v),
            None => self.push_null(),
        }
    }

    /// Appends a non-NULL value.
    pub fn push_str(&mut self, value: &str) {
        self.data.push_str(value);
        self.lengths.push(value.len() as i32);
    }

    /// Appends NULL.
    pub fn push_null(&mut self) {
        self.lengths.push(-1);
    }

    /// Appends every cell of `rows` (for a policy that computed whole rows).
    pub fn push_rows(&mut self, rows: &[Row]) {
        for v in rows.iter().flatten() {
            self.push(v.as_deref());
        }
    }

    /// Cells written so far.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The answer as a batch.
    pub fn into_cells(self) -> Cells {
        Cells {
            columns: self.columns.max(1),
            data: self.data,
            lengths: self.lengths,
        }
    }

    /// The parts: columns, data, lengths.
    pub fn into_parts(self) -> (usize, String, Vec<i32>) {
        (self.columns, self.data, self.lengths)
    }
}
