use bytes::{BufMut, BytesMut};

use crate::{Cursor, Limits, WireError};

/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_3_0: i32 = 196_608;
/// The request code of an SSLRequest.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// The request code of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// The request code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// The process id and secret a server hands out in BackendKeyData, and a CancelRequest
/// carries back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CancelKey {
    /// The backend process id.
    pub pid: i32,
    /// The secret key.
    pub secret: i32,
}

/// A StartupMessage: protocol version and parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StartupMessage {
    /// The minor protocol version the client asked for (major is always 3).
    pub minor: u16,
    /// Parameters in the order sent (`user`, `database`, `application_name`, GUCs, `_pq_.*`).
    pub params: Vec<(String, String)>,
}

impl StartupMessage {
    /// The value of a parameter, if sent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Encodes the message for sending to a server.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_i32(0);
        out.put_i32(PROTOCOL_3_0);
        for (k, v) in &self.params {
            crate::put_cstr(out, k);
            crate::put_cstr(out, v);
        }
        out.put_u8(0);
        let len = (out.len() - start) as i32;
        out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    }
}

/// The first, untagged packet of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupPacket {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption.
    GssEncRequest,
    /// The client asks to cancel the query running on another connection.
    Cancel(CancelKey),
    /// A regular session start.
    Startup(StartupMessage),
}

/// Decodes one startup packet from the front of `buf`. Returns the packet and how many
/// bytes it took, or `None` if more bytes are needed. The declared length is checked
/// against `limits.max_startup` before waiting for the body.
pub fn decode_startup(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(StartupPacket, usize)>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 {
        return Err(WireError::BadLength { tag: '\0', len });
    }
    let len = len as usize;
    if len > limits.max_startup {
        return Err(WireError::TooLarge {
            tag: '\0',
            len,
            limit: limits.max_startup,
        });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let mut c = Cursor::new(0, &buf[4..len]);
    let code = c.i32("protocol version")?;
    let packet = match code {
        SSL_REQUEST_CODE if len == 8 => StartupPacket::SslRequest,
        GSSENC_REQUEST_CODE if len == 8 => StartupPacket::GssEncRequest,
        CANCEL_REQUEST_CODE => {
            let pid = c.i32("process id")?;
            let secret = c.i32("secret key")?;
            StartupPacket::Cancel(CancelKey { pid, secret })
        }
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => {
            return Err(WireError::BadLength {
                tag: '\0',
                len: len as i32,
            });
        }
        _ => {
            let major = (code >> 16) as u16;
            let minor = (code & 0xffff) as u16;
            if major != 3 {
                return Err(WireError::UnsupportedProtocol { major, minor });
            }
            let mut params = Vec::new();
            loop {
                let key = c.cstr("parameter name")?;
                if key.is_empty() {
                    break;
                }
                let value = c.cstr("parameter value")?;
                params.push((key.to_owned(), value.to_owned()));
            }
            StartupPacket::Startup(StartupMessage { minor, params })
        }
    };
    Ok(Some((packet, len)))
}

/// Encodes an SSLRequest.
pub fn encode_ssl_request(out: &mut BytesMut) {
    out.put_i32(8);
    out.put_i32(SSL_REQUEST_CODE);
}

/// Encodes a CancelRequest.
pub fn encode_cancel_request(out: &mut BytesMut, key: CancelKey) {
    out.put_i32(16);
    out.put_i32(CANCEL_REQUEST_CODE);
    out.put_i32(key.pid);
    out.put_i32(key.secret);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_round_trip() {
        let m = StartupMessage {
            minor: 0,
            params: vec![
                ("user".into(), "alice".into()),
                ("database".into(), "demo".into()),
            ],
        };
        let mut out = BytesMut::new();
        m.encode(&mut out);
        let (p, n) = decode_startup(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(n, out.len());
        assert_eq!(p, StartupPacket::Startup(m));
    }

    #[test]
    fn ssl_cancel_and_gss_requests() {
        let mut out = BytesMut::new();
        encode_ssl_request(&mut out);
        assert_eq!(
            decode_startup(&out, &Limits::default()).unwrap().unwrap().0,
            StartupPacket::SslRequest
        );
        let mut out = BytesMut::new();
        encode_cancel_request(&mut out, CancelKey { pid: 7, secret: -3 });
        assert_eq!(
            decode_startup(&out, &Limits::default()).unwrap().unwrap().0,
            StartupPacket::Cancel(CancelKey { pid: 7, secret: -3 })
        );
        let gss = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30];
        assert_eq!(
            decode_startup(&gss, &Limits::default()).unwrap().unwrap().0,
            StartupPacket::GssEncRequest
        );
    }

    #[test]
    fn oversized_and_garbage_startups_are_refused() {
        let huge = [0x7f, 0, 0, 0, 0, 3, 0, 0];
        assert!(matches!(
            decode_startup(&huge, &Limits::default()),
            Err(WireError::TooLarge { .. })
        ));
        let v2 = [0, 0, 0, 9, 0, 2, 0, 0, 0];
        assert!(matches!(
            decode_startup(&v2, &Limits::default()),
            Err(WireError::UnsupportedProtocol { .. })
        ));
        let unterminated = [0, 0, 0, 12, 0, 3, 0, 0, b'u', b's', b'e', b'r'];
        assert!(decode_startup(&unterminated, &Limits::default()).is_err());
    }
}
