//! Socket-free PostgreSQL wire protocol (protocol 3.0).
//!
//! This crate owns the byte-level view of the protocol and nothing else: framing with
//! size caps checked before any allocation, typed views of the messages the gateway
//! must look inside, and builders for the messages it must produce. It performs no I/O
//! and reads no clock, so everything here is tested byte-in/bytes-out and fuzzed.
//!
//! Direction matters for message tags (`D` is Describe from a client and DataRow from
//! a server), so messages live in [`frontend`] (sent by clients) and [`backend`] (sent
//! by servers).

pub mod backend;
mod cursor;
mod error;
mod frame;
pub mod frontend;
mod startup;

pub use cursor::Cursor;
pub use error::WireError;
pub use frame::{Frame, FrameDecoder, Limits};
pub use startup::{
    CANCEL_REQUEST_CODE, CancelKey, GSSENC_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE,
    StartupMessage, StartupPacket, decode_startup, encode_cancel_request, encode_ssl_request,
};

/// Appends one tagged message to `out`: the tag, a length placeholder, whatever `body`
/// writes, then patches the length.
pub fn put_message(out: &mut bytes::BytesMut, tag: u8, body: impl FnOnce(&mut bytes::BytesMut)) {
    use bytes::BufMut;
    out.put_u8(tag);
    let len_at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - len_at) as i32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Appends a NUL-terminated string.
pub fn put_cstr(out: &mut bytes::BytesMut, s: &str) {
    use bytes::BufMut;
    out.put_slice(s.as_bytes());
    out.put_u8(0);
}
