use bytes::{Bytes, BytesMut};

use crate::WireError;

/// Size caps applied to every message before any byte of its body is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest message accepted, header included.
    pub max_message: usize,
    /// Largest untagged startup packet (StartupMessage, SSLRequest, CancelRequest).
    pub max_startup: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 256 << 20,
            max_startup: 10_000,
        }
    }
}

/// One complete tagged message, kept as its raw bytes so it can be forwarded unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The whole message: tag, length and body.
    raw: Bytes,
}

impl Frame {
    /// Wraps the raw bytes of one message. `raw` must hold the tag, the length and the body.
    pub fn from_raw(raw: Bytes) -> Result<Frame, WireError> {
        if raw.len() < 5 {
            return Err(WireError::BadLength {
                tag: '\0',
                len: raw.len() as i32,
            });
        }
        let declared = i32::from_be_bytes([raw[1], raw[2], raw[3], raw[4]]);
        if declared < 4 || declared as usize + 1 != raw.len() {
            return Err(WireError::BadLength {
                tag: raw[0] as char,
                len: declared,
            });
        }
        Ok(Frame { raw })
    }

    /// The message type byte.
    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    /// The body, after the tag and the length.
    pub fn body(&self) -> &[u8] {
        &self.raw[5..]
    }

    /// The whole message as it travels on the wire.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Consumes the frame, returning its wire bytes.
    pub fn into_raw(self) -> Bytes {
        self.raw
    }
}

/// Splits a byte stream into [`Frame`]s, enforcing [`Limits`].
///
/// The check on the declared length happens as soon as the five header bytes are
/// present, so an oversized message is refused before the buffer grows for it.
#[derive(Debug, Clone, Copy)]
pub struct FrameDecoder {
    limits: Limits,
}

impl FrameDecoder {
    /// A decoder with the given limits.
    pub fn new(limits: Limits) -> Self {
        FrameDecoder { limits }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Checks the header at the front of `buf`. Returns the full message length once the
    /// header is complete, `None` while fewer than five bytes are buffered.
    pub fn check(&self, buf: &[u8]) -> Result<Option<usize>, WireError> {
        if buf.len() < 5 {
            return Ok(None);
        }
        let tag = buf[0];
        let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
        if len < 4 {
            return Err(WireError::BadLength {
                tag: tag as char,
                len,
            });
        }
        let total = len as usize + 1;
        if total > self.limits.max_message {
            return Err(WireError::TooLarge {
                tag: tag as char,
                len: total,
                limit: self.limits.max_message,
            });
        }
        Ok(Some(total))
    }

    /// Takes one complete frame off the front of `buf`, or `None` if more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        match self.check(buf)? {
            Some(total) if buf.len() >= total => {
                let raw = buf.split_to(total).freeze();
                Ok(Some(Frame { raw }))
            }
            _ => Ok(None),
        }
    }

    /// How many more bytes must arrive before the frame at the front of `buf` is complete
    /// (0 if a frame is ready or the header is incomplete). Lets the I/O layer reserve
    /// exactly what is needed, and only after [`FrameDecoder::check`] passed.
    pub fn missing(&self, buf: &[u8]) -> Result<usize, WireError> {
        Ok(match self.check(buf)? {
            Some(total) => total.saturating_sub(buf.len()),
            None => 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn splits_pipelined_frames_and_waits_for_partial_ones() {
        let d = FrameDecoder::new(Limits::default());
        let mut all = msg(b'Q', b"select 1\0");
        all.extend(msg(b'S', b""));
        let mut buf = BytesMut::from(&all[..all.len() - 2]);
        let f = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"select 1\0");
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&all[all.len() - 2..]);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().tag(), b'S');
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_oversized_message_from_the_header_alone() {
        let d = FrameDecoder::new(Limits {
            max_message: 100,
            max_startup: 100,
        });
        let mut buf = BytesMut::from(&[b'Q', 0x7f, 0xff, 0xff, 0xff][..]);
        let err = d.decode(&mut buf).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { tag: 'Q', .. }), "{err}");
    }

    #[test]
    fn refuses_negative_and_tiny_lengths() {
        let d = FrameDecoder::new(Limits::default());
        for len in [-1i32, 0, 3] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(b"Q");
            buf.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(
                d.decode(&mut buf),
                Err(WireError::BadLength { .. })
            ));
        }
    }

    #[test]
    fn missing_reports_the_rest_of_the_body() {
        let d = FrameDecoder::new(Limits::default());
        let all = msg(b'Q', b"select 1\0");
        assert_eq!(d.missing(&all[..5]).unwrap(), all.len() - 5);
        assert_eq!(d.missing(&all[..3]).unwrap(), 0);
    }
}
