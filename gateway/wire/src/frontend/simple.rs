use bytes::BytesMut;

use crate::{Cursor, WireError};

use super::tag;

/// A simple-protocol Query: one string that may hold several statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    /// The SQL text.
    pub sql: &'a str,
}

impl<'a> Query<'a> {
    /// Reads a Query body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::QUERY, body);
        let sql = c.cstr("query string")?;
        Ok(Query { sql })
    }

    /// Appends a Query message.
    pub fn encode(sql: &str, out: &mut BytesMut) {
        crate::put_message(out, tag::QUERY, |b| crate::put_cstr(b, sql));
    }
}

/// A FunctionCall (the legacy fast-path interface): which function OID is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionCall {
    /// The OID of the function called.
    pub function_oid: u32,
}

impl FunctionCall {
    /// Reads the function OID from a FunctionCall body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::FUNCTION_CALL, body);
        Ok(FunctionCall {
            function_oid: c.i32("function oid")? as u32,
        })
    }
}
