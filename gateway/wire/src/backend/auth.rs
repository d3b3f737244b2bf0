use bytes::{BufMut, BytesMut};

use crate::{Cursor, WireError};

use super::tag;

/// An Authentication message from a server, by subtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    /// AuthenticationOk.
    Ok,
    /// AuthenticationCleartextPassword.
    Cleartext,
    /// AuthenticationMD5Password with its salt.
    Md5 {
        /// The salt.
        salt: [u8; 4],
    },
    /// AuthenticationSASL with the offered mechanisms.
    Sasl {
        /// Mechanism names.
        mechanisms: Vec<&'a str>,
    },
    /// AuthenticationSASLContinue.
    SaslContinue(&'a [u8]),
    /// AuthenticationSASLFinal.
    SaslFinal(&'a [u8]),
    /// Any other subtype (Kerberos, GSS, SSPI): unsupported by the gateway.
    Other(i32),
}

impl<'a> AuthRequest<'a> {
    /// Reads the body of an `R` message.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::AUTHENTICATION, body);
        Ok(match c.i32("authentication type")? {
            0 => AuthRequest::Ok,
            3 => AuthRequest::Cleartext,
            5 => {
                let s = c.bytes(4, "md5 salt")?;
                AuthRequest::Md5 {
                    salt: [s[0], s[1], s[2], s[3]],
                }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = c.cstr("SASL mechanism")?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                AuthRequest::Sasl { mechanisms }
            }
            11 => AuthRequest::SaslContinue(c.remaining()),
            12 => AuthRequest::SaslFinal(c.remaining()),
            other => AuthRequest::Other(other),
        })
    }
}

fn auth(out: &mut BytesMut, code: i32, rest: impl FnOnce(&mut BytesMut)) {
    crate::put_message(out, tag::AUTHENTICATION, |b| {
        b.put_i32(code);
        rest(b);
    });
}

/// Appends AuthenticationOk.
pub fn auth_ok(out: &mut BytesMut) {
    auth(out, 0, |_| {});
}

/// Appends AuthenticationCleartextPassword.
pub fn auth_cleartext(out: &mut BytesMut) {
    auth(out, 3, |_| {});
}

/// Appends AuthenticationSASL offering `mechanisms`.
pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    auth(out, 10, |b| {
        for m in mechanisms {
            crate::put_cstr(b, m);
        }
        b.put_u8(0);
    });
}

/// Appends AuthenticationSASLContinue.
pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    auth(out, 11, |b| b.put_slice(data));
}

/// Appends AuthenticationSASLFinal.
pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    auth(out, 12, |b| b.put_slice(data));
}
