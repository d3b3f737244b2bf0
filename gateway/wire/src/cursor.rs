use crate::WireError;

/// A bounds-checked reader over one message body.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    tag: char,
}

impl<'a> Cursor<'a> {
    /// Starts reading `buf`, the body of a message with tag `tag` (used in errors).
    pub fn new(tag: u8, buf: &'a [u8]) -> Self {
        Cursor {
            buf,
            tag: tag as char,
        }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.buf
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    fn truncated(&self, what: &'static str) -> WireError {
        WireError::Truncated {
            tag: self.tag,
            what,
        }
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        let (&b, rest) = self.buf.split_first().ok_or_else(|| self.truncated(what))?;
        self.buf = rest;
        Ok(b)
    }

    /// Reads a big-endian i16.
    pub fn i16(&mut self, what: &'static str) -> Result<i16, WireError> {
        let b = self.bytes(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a big-endian i32.
    pub fn i32(&mut self, what: &'static str) -> Result<i32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a count (i16) that must not be negative.
    pub fn count16(&mut self, what: &'static str) -> Result<usize, WireError> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| WireError::Invalid {
            tag: self.tag,
            what,
        })
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(self.truncated(what));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// Reads a NUL-terminated string as raw bytes (without the NUL).
    pub fn cstr_bytes(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.truncated(what))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Reads a NUL-terminated UTF-8 string.
    pub fn cstr(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        let tag = self.tag;
        let b = self.cstr_bytes(what)?;
        std::str::from_utf8(b).map_err(|_| WireError::Invalid { tag, what })
    }

    /// Reads a length-prefixed (i32) value; -1 means NULL.
    pub fn value(&mut self, what: &'static str) -> Result<Option<&'a [u8]>, WireError> {
        let len = self.i32(what)?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::Invalid {
            tag: self.tag,
            what,
        })?;
        self.bytes(len, what).map(Some)
    }
}
