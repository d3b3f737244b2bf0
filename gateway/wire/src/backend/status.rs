use bytes::{BufMut, BytesMut};

use crate::{CancelKey, Cursor, WireError};

use super::tag;

/// The transaction status carried by ReadyForQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TransactionStatus {
    /// Not in a transaction block (`I`).
    #[default]
    Idle,
    /// In a transaction block (`T`).
    InTransaction,
    /// In a failed transaction block (`E`).
    Failed,
}

impl TransactionStatus {
    /// Reads the status byte of a ReadyForQuery body.
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        match body {
            [b'I'] => Ok(TransactionStatus::Idle),
            [b'T'] => Ok(TransactionStatus::InTransaction),
            [b'E'] => Ok(TransactionStatus::Failed),
            _ => Err(WireError::Invalid {
                tag: 'Z',
                what: "transaction status",
            }),
        }
    }

    /// The status byte.
    pub fn byte(self) -> u8 {
        match self {
            TransactionStatus::Idle => b'I',
            TransactionStatus::InTransaction => b'T',
            TransactionStatus::Failed => b'E',
        }
    }

    /// A stable lower-case name (`idle`, `in_transaction`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Idle => "idle",
            TransactionStatus::InTransaction => "in_transaction",
            TransactionStatus::Failed => "failed",
        }
    }
}

/// Appends ReadyForQuery.
pub fn ready_for_query(out: &mut BytesMut, status: TransactionStatus) {
    crate::put_message(out, tag::READY_FOR_QUERY, |b| b.put_u8(status.byte()));
}

/// Appends ParameterStatus.
pub fn parameter_status(out: &mut BytesMut, name: &str, value: &str) {
    crate::put_message(out, tag::PARAMETER_STATUS, |b| {
        crate::put_cstr(b, name);
        crate::put_cstr(b, value);
    });
}

/// Reads a ParameterStatus body into (name, value).
pub fn decode_parameter_status(body: &[u8]) -> Result<(&str, &str), WireError> {
    let mut c = Cursor::new(tag::PARAMETER_STATUS, body);
    Ok((c.cstr("parameter name")?, c.cstr("parameter value")?))
}

/// Appends BackendKeyData.
pub fn backend_key_data(out: &mut BytesMut, key: CancelKey) {
    crate::put_message(out, tag::BACKEND_KEY_DATA, |b| {
        b.put_i32(key.pid);
        b.put_i32(key.secret);
    });
}

/// Reads a BackendKeyData body.
pub fn decode_backend_key_data(body: &[u8]) -> Result<CancelKey, WireError> {
    let mut c = Cursor::new(tag::BACKEND_KEY_DATA, body);
    Ok(CancelKey {
        pid: c.i32("process id")?,
        secret: c.i32("secret key")?,
    })
}

/// Appends NegotiateProtocolVersion: the newest minor version we support and the
/// protocol options we did not recognise.
pub fn negotiate_protocol_version(out: &mut BytesMut, minor: i32, unrecognised: &[&str]) {
    crate::put_message(out, tag::NEGOTIATE_PROTOCOL_VERSION, |b| {
        b.put_i32((3 << 16) | minor);
        b.put_i32(unrecognised.len() as i32);
        for o in unrecognised {
            crate::put_cstr(b, o);
        }
    });
}
