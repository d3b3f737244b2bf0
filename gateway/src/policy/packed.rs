//! The packed batch of contract 0.3.0: `cell-batch` and the optional `mask-cells`
//! export.
//!
//! A batch holds the `custom` cells of a run of rows in one byte buffer and one list of
//! lengths (row-major, -1 for NULL), like PostgreSQL's DataRow, so one call moves two
//! buffers across the sandbox boundary instead of a string per cell and a list per row.
//! Components built before 0.3.0 do not export `mask-cells`; for them the batch is
//! unpacked into `mask-rows` rows and the answer packed again (see
//! [`super::LoadedPolicy::mask_cells`]).
//!
//! A guest's answer is checked strictly before any of it is used
//! ([`check_cells`]): the same number of columns and cells, every length -1 or more,
//! the lengths adding up to the data exactly, every cell valid UTF-8. Anything else
//! fails the call ([`super::FailureKind::Invalid`]), which refuses the result.

use wasmtime::AsContext;
use wasmtime::component::{Func, TypedFunc};

use super::bindings::portcullis::policy::types as wit;
use super::caps;
use super::instance::Rejected;

/// The export's name.
pub const MASK_CELLS: &str = "mask-cells";

/// `mask-cells`' parameters, as lowered.
pub type Params<'a> = (&'a wit::ResultContext, &'a wit::CellBatch);

/// `mask-cells`' results, as lifted.
pub type Results = (Result<wit::CellBatch, String>,);

/// `f` as `mask-cells`, type-checked against the contract.
pub(crate) fn typed<'a>(
    f: &Func,
    store: impl AsContext,
) -> wasmtime::Result<TypedFunc<Params<'a>, Results>> {
    f.typed::<Params<'a>, Results>(store).map_err(|e| {
        e.context(format!(
            "export {MASK_CELLS} does not have the type of contract 0.3.0"
        ))
    })
}

/// Checks a `mask-cells` answer to a batch of `columns` columns and `cells` cells.
pub fn check_cells(
    answer: &Result<wit::CellBatch, String>,
    columns: u32,
    cells: usize,
) -> Result<(), Rejected> {
    let b = match answer {
        Err(m) if m.len() > caps::MAX_MESSAGE_BYTES => {
            return Err(Rejected::Oversized(format!(
                "mask-cells error of {} bytes",
                m.len()
            )));
        }
        Err(_) => return Ok(()),
        Ok(b) => b,
    };
    if b.columns != columns {
        return Err(Rejected::Invalid(format!(
            "mask-cells answered {} columns for {columns}",
            b.columns
        )));
    }
    if b.lengths.len() != cells {
        return Err(Rejected::Invalid(format!(
            "mask-cells answered {} cells for {cells} ({} rows of {columns})",
            b.lengths.len(),
            cells / (columns.max(1) as usize)
        )));
    }
    if b.data.len() > caps::MAX_MASK_BATCH_BYTES {
        return Err(Rejected::Oversized(format!(
            "mask-cells returned {} bytes",
            b.data.len()
        )));
    }
    let mut at = 0usize;
    for (k, &len) in b.lengths.iter().enumerate() {
        let cell = || {
            let w = columns.max(1) as usize;
            format!("cell {k} (row {}, column {})", k / w, k % w)
        };
        if len == -1 {
            continue;
        }
        let Ok(len) = usize::try_from(len) else {
            return Err(Rejected::Invalid(format!(
                "mask-cells {} has length {len}",
                cell()
            )));
        };
        let Some(value) = b.data.get(at..at + len) else {
            return Err(Rejected::Invalid(format!(
                "mask-cells {} of {len} bytes runs past the end of its {}-byte data",
                cell(),
                b.data.len()
            )));
        };
        if std::str::from_utf8(value).is_err() {
            return Err(Rejected::Invalid(format!(
                "mask-cells {} is not valid UTF-8",
                cell()
            )));
        }
        at += len;
    }
    if at != b.data.len() {
        return Err(Rejected::Invalid(format!(
            "mask-cells data holds {} bytes after its last cell",
            b.data.len() - at
        )));
    }
    Ok(())
}

/// The cells of a batch whose lengths are in bounds (one the host built, or an answer
/// that passed [`check_cells`]), row-major; `None` for NULL.
pub fn cells(b: &wit::CellBatch) -> impl Iterator<Item = Option<&[u8]>> {
    let mut at = 0usize;
    b.lengths.iter().map(move |&len| {
        let len = usize::try_from(len).ok()?;
        let v = b.data.get(at..at + len).unwrap_or_default();
        at += len;
        Some(v)
    })
}

/// A batch as `mask-rows` rows (for components built before 0.3.0).
pub fn rows_of(b: &wit::CellBatch) -> Vec<wit::Row> {
    let w = (b.columns as usize).max(1);
    let mut rows = Vec::with_capacity(b.lengths.len() / w);
    let mut row = Vec::with_capacity(w);
    for v in cells(b) {
        row.push(v.map(|v| String::from_utf8_lossy(v).into_owned()));
        if row.len() == w {
            rows.push(std::mem::replace(&mut row, Vec::with_capacity(w)));
        }
    }
    rows
}

/// `mask-rows` rows (already checked for shape) as a batch of `columns` columns.
pub fn pack_rows(rows: &[wit::Row], columns: u32) -> wit::CellBatch {
    let mut b = wit::CellBatch {
        columns,
        data: Vec::new(),
        lengths: Vec::with_capacity(rows.len() * columns as usize),
    };
    for v in rows.iter().flatten() {
        match v {
            None => b.lengths.push(-1),
            Some(s) => {
                b.lengths.push(s.len() as i32);
                b.data.extend_from_slice(s.as_bytes());
            }
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(columns: u32, data: &[u8], lengths: &[i32]) -> Result<wit::CellBatch, String> {
        Ok(wit::CellBatch {
            columns,
            data: data.to_vec(),
            lengths: lengths.to_vec(),
        })
    }

    fn invalid(r: Result<(), Rejected>) -> String {
        match r {
            Err(Rejected::Invalid(m)) => m,
            other => panic!("expected an invalid answer, got {other:?}"),
        }
    }

    #[test]
    fn answers_are_checked_strictly() {
        assert_eq!(check_cells(&batch(2, b"abc", &[1, -1, 0, 2]), 2, 4), Ok(()));
        assert_eq!(check_cells(&batch(1, "é".as_bytes(), &[2]), 1, 1), Ok(()));
        assert_eq!(check_cells(&Err("no".into()), 2, 4), Ok(()));
        let m = invalid(check_cells(&batch(1, b"abc", &[1, 2]), 2, 2));
        assert!(m.contains("1 columns for 2"), "{m}");
        let m = invalid(check_cells(&batch(2, b"abc", &[1, 2]), 2, 4));
        assert!(m.contains("2 cells for 4 (2 rows of 2)"), "{m}");
        let m = invalid(check_cells(&batch(2, b"abc", &[1, 5]), 2, 2));
        assert!(
            m.contains("cell 1 (row 0, column 1) of 5 bytes runs past"),
            "{m}"
        );
        let m = invalid(check_cells(&batch(2, b"abc", &[1, -2]), 2, 2));
        assert!(m.contains("has length -2"), "{m}");
        let m = invalid(check_cells(&batch(2, b"abc", &[1, 1]), 2, 2));
        assert!(m.contains("1 bytes after its last cell"), "{m}");
        let m = invalid(check_cells(&batch(1, &[0xc3], &[1]), 1, 1));
        assert!(m.contains("not valid UTF-8"), "{m}");
        // A cell boundary inside a character is invalid even if the whole data is not.
        let m = invalid(check_cells(&batch(2, "é".as_bytes(), &[1, 1]), 2, 2));
        assert!(
            m.contains("cell 0 (row 0, column 0) is not valid UTF-8"),
            "{m}"
        );
        assert!(matches!(
            check_cells(&Err("x".repeat(caps::MAX_MESSAGE_BYTES + 1)), 1, 1),
            Err(Rejected::Oversized(_))
        ));
    }

    #[test]
    fn rows_round_trip() {
        let rows: Vec<wit::Row> = vec![
            vec![Some("Ada".into()), None],
            vec![Some(String::new()), Some("żółw".into())],
        ];
        let b = pack_rows(&rows, 2);
        assert_eq!(b.lengths, [3, -1, 0, 7]);
        assert_eq!(check_cells(&Ok(b.clone()), 2, 4), Ok(()));
        assert_eq!(rows_of(&b), rows);
        let cells: Vec<Option<&[u8]>> = cells(&b).collect();
        assert_eq!(cells[3], Some("żółw".as_bytes()));
    }
}
