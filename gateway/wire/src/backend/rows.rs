use bytes::{BufMut, BytesMut};

use crate::{Cursor, WireError};

use super::tag;

/// One column of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDescription {
    /// Column name (the alias, if any).
    pub name: String,
    /// OID of the table the column comes from, or 0 if it is not a plain column.
    pub table_oid: u32,
    /// Attribute number of that column in its table, or 0.
    pub column_attr: i16,
    /// Data type OID.
    pub type_oid: u32,
    /// Data type size (negative for variable width).
    pub type_len: i16,
    /// Type modifier.
    pub type_mod: i32,
    /// Format code: 0 text, 1 binary.
    pub format: i16,
}

/// A decoded RowDescription.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowDescription {
    /// The columns in order.
    pub fields: Vec<FieldDescription>,
}

impl RowDescription {
    /// Reads a RowDescription body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::ROW_DESCRIPTION, body);
        let n = c.count16("field count")?;
        let mut fields = Vec::with_capacity(n.min(c.remaining().len() / 19));
        for _ in 0..n {
            let name = String::from_utf8_lossy(c.cstr_bytes("field name")?).into_owned();
            fields.push(FieldDescription {
                name,
                table_oid: c.i32("table oid")? as u32,
                column_attr: c.i16("column attribute")?,
                type_oid: c.i32("type oid")? as u32,
                type_len: c.i16("type length")?,
                type_mod: c.i32("type modifier")?,
                format: c.i16("format code")?,
            });
        }
        Ok(RowDescription { fields })
    }
}

/// Appends a RowDescription for gateway-generated results (text columns).
pub fn row_description(out: &mut BytesMut, fields: &[FieldDescription]) {
    crate::put_message(out, tag::ROW_DESCRIPTION, |b| {
        b.put_i16(fields.len() as i16);
        for f in fields {
            crate::put_cstr(b, &f.name);
            b.put_u32(f.table_oid);
            b.put_i16(f.column_attr);
            b.put_u32(f.type_oid);
            b.put_i16(f.type_len);
            b.put_i32(f.type_mod);
            b.put_i16(f.format);
        }
    });
}

/// Appends a DataRow.
pub fn data_row(out: &mut BytesMut, cells: &[Option<&[u8]>]) {
    crate::put_message(out, tag::DATA_ROW, |b| {
        b.put_i16(cells.len() as i16);
        for c in cells {
            match c {
                Some(v) => {
                    b.put_i32(v.len() as i32);
                    b.put_slice(v);
                }
                None => b.put_i32(-1),
            }
        }
    });
}

/// Appends a CommandComplete with the given tag (e.g. `SELECT 3`).
pub fn command_complete(out: &mut BytesMut, command_tag: &str) {
    crate::put_message(out, tag::COMMAND_COMPLETE, |b| {
        crate::put_cstr(b, command_tag)
    });
}

/// Iterates over the cells of a DataRow body without copying them.
#[derive(Debug, Clone)]
pub struct DataRowCells<'a> {
    cursor: Cursor<'a>,
    left: usize,
}

impl<'a> DataRowCells<'a> {
    /// Starts reading a DataRow body.
    pub fn new(body: &'a [u8]) -> Result<Self, WireError> {
        let mut cursor = Cursor::new(tag::DATA_ROW, body);
        let left = cursor.count16("column count")?;
        Ok(DataRowCells { cursor, left })
    }

    /// How many cells are left.
    pub fn len(&self) -> usize {
        self.left
    }

    /// True when no cells are left.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }
}

impl<'a> Iterator for DataRowCells<'a> {
    type Item = Result<Option<&'a [u8]>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        Some(self.cursor.value("column value"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_row_round_trip() {
        let mut out = BytesMut::new();
        data_row(&mut out, &[Some(b"1"), None, Some(b"")]);
        let cells: Vec<_> = DataRowCells::new(&out[5..])
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(cells, vec![Some(&b"1"[..]), None, Some(&b""[..])]);
    }

    #[test]
    fn row_description_round_trip() {
        let f = FieldDescription {
            name: "email".into(),
            table_oid: 16384,
            column_attr: 3,
            type_oid: 25,
            type_len: -1,
            type_mod: -1,
            format: 0,
        };
        let mut out = BytesMut::new();
        row_description(&mut out, std::slice::from_ref(&f));
        assert_eq!(RowDescription::decode(&out[5..]).unwrap().fields, vec![f]);
    }
}
