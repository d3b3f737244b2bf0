use bytes::{BufMut, BytesMut};

use crate::{Cursor, WireError};

use super::tag;

/// A PasswordMessage (cleartext or md5 password), or a SASLResponse read as raw data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordMessage<'a> {
    /// The raw payload: a NUL-terminated password, or SASL data.
    pub data: &'a [u8],
}

impl<'a> PasswordMessage<'a> {
    /// Reads the body of a `p` message without interpreting it.
    pub fn decode(body: &'a [u8]) -> Self {
        PasswordMessage { data: body }
    }

    /// Appends a `p` message with the given raw payload.
    pub fn encode(data: &[u8], out: &mut BytesMut) {
        crate::put_message(out, tag::PASSWORD, |b| b.put_slice(data));
    }
}

/// A SASLInitialResponse: the chosen mechanism and the client-first message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// Mechanism name, e.g. `SCRAM-SHA-256`.
    pub mechanism: &'a str,
    /// The initial client response (absent when the length is -1).
    pub data: Option<&'a [u8]>,
}

impl<'a> SaslInitialResponse<'a> {
    /// Reads the body of a `p` message as a SASLInitialResponse.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::PASSWORD, body);
        let mechanism = c.cstr("SASL mechanism")?;
        let data = c.value("SASL initial response")?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// Appends a SASLInitialResponse.
    pub fn encode(mechanism: &str, data: &[u8], out: &mut BytesMut) {
        crate::put_message(out, tag::PASSWORD, |b| {
            crate::put_cstr(b, mechanism);
            b.put_i32(data.len() as i32);
            b.put_slice(data);
        });
    }
}
