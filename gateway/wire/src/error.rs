use thiserror::Error;

/// Errors found while decoding wire-protocol bytes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum WireError {
    /// A length field is smaller than the length field itself.
    #[error("invalid message length {len} for message type {tag:?}")]
    BadLength {
        /// The message tag (0 for untagged startup packets).
        tag: char,
        /// The declared length.
        len: i32,
    },
    /// A message is larger than the configured cap; nothing was allocated for it.
    #[error("message type {tag:?} of {len} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The message tag (0 for untagged startup packets).
        tag: char,
        /// The declared length.
        len: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A message body ended before a field was complete.
    #[error("truncated {what} in message type {tag:?}")]
    Truncated {
        /// The message tag.
        tag: char,
        /// The field being read.
        what: &'static str,
    },
    /// A field holds a value the protocol does not allow.
    #[error("invalid {what} in message type {tag:?}")]
    Invalid {
        /// The message tag.
        tag: char,
        /// What was wrong.
        what: &'static str,
    },
    /// A message type that is not valid in this direction or state.
    #[error("unexpected message type {0:?}")]
    UnexpectedTag(char),
    /// The client asked for a protocol version we do not speak.
    #[error("unsupported frontend protocol {major}.{minor}: server supports 3.0 to 3.0")]
    UnsupportedProtocol {
        /// Major version.
        major: u16,
        /// Minor version.
        minor: u16,
    },
}

impl WireError {
    /// The SQLSTATE PostgreSQL uses for this kind of protocol failure.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "08P01",
            WireError::UnsupportedProtocol { .. } => "0A000",
            _ => "08P01",
        }
    }
}
