use bytes::{BufMut, BytesMut};

use crate::{Cursor, WireError};

use super::tag;

/// Severity of an ErrorResponse or NoticeResponse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// ERROR: the statement failed; the session goes on.
    Error,
    /// FATAL: the session ends.
    Fatal,
    /// NOTICE (for NoticeResponse).
    Notice,
    /// WARNING (for NoticeResponse).
    Warning,
}

impl Severity {
    /// The non-localised text PostgreSQL sends.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// The fields of an ErrorResponse or NoticeResponse, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErrorFields {
    /// (field type byte, value) pairs: `S`, `V`, `C`, `M`, `D`, `H`, ...
    pub fields: Vec<(u8, String)>,
}

impl ErrorFields {
    /// A new error with severity, SQLSTATE and primary message.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        ErrorFields {
            fields: vec![
                (b'S', severity.as_str().to_owned()),
                (b'V', severity.as_str().to_owned()),
                (b'C', code.to_owned()),
                (b'M', message.into()),
            ],
        }
    }

    /// Adds a detail line.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.fields.push((b'D', detail.into()));
        self
    }

    /// Adds a hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.fields.push((b'H', hint.into()));
        self
    }

    /// The value of one field.
    pub fn get(&self, field: u8) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| v.as_str())
    }

    /// The SQLSTATE (`C`).
    pub fn code(&self) -> Option<&str> {
        self.get(b'C')
    }

    /// The primary message (`M`).
    pub fn message(&self) -> Option<&str> {
        self.get(b'M')
    }

    /// The non-localised severity (`V`, or `S` from old servers).
    pub fn severity(&self) -> Option<&str> {
        self.get(b'V').or_else(|| self.get(b'S'))
    }

    /// Reads the body of an `E` or `N` message.
    pub fn decode(tag: u8, body: &[u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag, body);
        let mut fields = Vec::new();
        loop {
            let f = c.u8("field type")?;
            if f == 0 {
                break;
            }
            let bytes = c.cstr_bytes("field value")?;
            fields.push((f, String::from_utf8_lossy(bytes).into_owned()));
        }
        Ok(ErrorFields { fields })
    }

    fn encode_as(&self, tag: u8, out: &mut BytesMut) {
        crate::put_message(out, tag, |b| {
            for (f, v) in &self.fields {
                b.put_u8(*f);
                // A NUL inside a value would end the field early on the wire.
                b.put_slice(v.replace('\0', " ").as_bytes());
                b.put_u8(0);
            }
            b.put_u8(0);
        });
    }

    /// Appends this as an ErrorResponse.
    pub fn encode_error(&self, out: &mut BytesMut) {
        self.encode_as(tag::ERROR_RESPONSE, out);
    }

    /// Appends this as a NoticeResponse.
    pub fn encode_notice(&self, out: &mut BytesMut) {
        self.encode_as(tag::NOTICE_RESPONSE, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_round_trip() {
        let e = ErrorFields::new(Severity::Error, "42501", "permission denied")
            .detail("policy guardrails");
        let mut out = BytesMut::new();
        e.encode_error(&mut out);
        assert_eq!(out[0], b'E');
        let d = ErrorFields::decode(b'E', &out[5..]).unwrap();
        assert_eq!(d, e);
        assert_eq!(d.code(), Some("42501"));
    }
}
