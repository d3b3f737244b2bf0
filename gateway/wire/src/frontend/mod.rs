//! Messages sent by clients (frontends).

mod auth;
mod extended;
mod simple;

pub use auth::{PasswordMessage, SaslInitialResponse};
pub use extended::{Bind, Close, Describe, Execute, Parse, Target};
pub use simple::{FunctionCall, Query};

use bytes::BytesMut;

/// Message type bytes of frontend messages.
pub mod tag {
    /// Bind.
    pub const BIND: u8 = b'B';
    /// Close.
    pub const CLOSE: u8 = b'C';
    /// CopyData.
    pub const COPY_DATA: u8 = b'd';
    /// CopyDone.
    pub const COPY_DONE: u8 = b'c';
    /// CopyFail.
    pub const COPY_FAIL: u8 = b'f';
    /// Describe.
    pub const DESCRIBE: u8 = b'D';
    /// Execute.
    pub const EXECUTE: u8 = b'E';
    /// Flush.
    pub const FLUSH: u8 = b'H';
    /// FunctionCall.
    pub const FUNCTION_CALL: u8 = b'F';
    /// Parse.
    pub const PARSE: u8 = b'P';
    /// PasswordMessage, SASLInitialResponse and SASLResponse share this tag.
    pub const PASSWORD: u8 = b'p';
    /// Query.
    pub const QUERY: u8 = b'Q';
    /// Sync.
    pub const SYNC: u8 = b'S';
    /// Terminate.
    pub const TERMINATE: u8 = b'X';
}

/// Appends a Sync.
pub fn sync(out: &mut BytesMut) {
    crate::put_message(out, tag::SYNC, |_| {});
}

/// Appends a Flush.
pub fn flush(out: &mut BytesMut) {
    crate::put_message(out, tag::FLUSH, |_| {});
}

/// Appends a Terminate.
pub fn terminate(out: &mut BytesMut) {
    crate::put_message(out, tag::TERMINATE, |_| {});
}
