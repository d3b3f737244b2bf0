//! Parsing of the client's SCRAM messages and building of the server's, following
//! RFC 5802 as PostgreSQL's `auth-scram.c` applies it.
//!
//! Everything here works on untrusted bytes: lengths are bounded, every access is
//! checked, and every failure is an [`AuthError::Protocol`] with a message close to the
//! one PostgreSQL gives.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::AuthError;

/// Longest client SCRAM message accepted, in bytes. Real clients send well under 200
/// bytes (libpq: about 30 for client-first, about 110 for client-final).
pub(crate) const MAX_MESSAGE_LEN: usize = 2048;

/// Longest client nonce accepted, in bytes (libpq sends 24).
pub(crate) const MAX_NONCE_LEN: usize = 256;

/// Length of a SHA-256 output, and so of a SCRAM-SHA-256 proof, key or signature.
pub(crate) const KEY_LEN: usize = 32;

/// The channel-binding flag of the GS2 header, among those the gateway accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CbindFlag {
    /// `n`: the client does not support channel binding.
    NotSupported,
    /// `y`: the client supports channel binding but thinks the server does not. Accepted
    /// because the gateway does not advertise SCRAM-SHA-256-PLUS.
    NotAdvertised,
}

impl CbindFlag {
    /// The whole GS2 header that carries this flag (authorization identities are
    /// refused, so the header is always the flag and two commas). Base64 of it is the
    /// `c=` value the client-final-message must carry.
    pub(crate) fn gs2_header(self) -> &'static [u8] {
        match self {
            CbindFlag::NotSupported => b"n,,",
            CbindFlag::NotAdvertised => b"y,,",
        }
    }
}

/// A parsed client-first-message.
#[derive(Debug)]
pub(crate) struct ClientFirst<'a> {
    /// Which channel-binding flag the client sent.
    pub cbind_flag: CbindFlag,
    /// client-first-message-bare, which enters the AuthMessage.
    pub bare: &'a [u8],
    /// The client nonce (printable ASCII, no comma).
    pub nonce: &'a str,
}

/// A parsed client-final-message.
#[derive(Debug)]
pub(crate) struct ClientFinal<'a> {
    /// The `c=` value (base64 of the GS2 header plus channel-binding data), as sent.
    pub channel_binding: &'a [u8],
    /// The `r=` value: client nonce followed by server nonce.
    pub nonce: &'a [u8],
    /// client-final-message-without-proof, which enters the AuthMessage.
    pub without_proof: &'a [u8],
    /// The decoded `p=` value.
    pub proof: [u8; KEY_LEN],
}

/// A bounds-checked reader over one message.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, pos: 0, what }
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    /// Consumes `expected`, or fails naming what was found instead.
    fn expect(&mut self, expected: u8) -> Result<(), AuthError> {
        match self.next() {
            Some(b) if b == expected => Ok(()),
            Some(b) => Err(AuthError::protocol(format!(
                "expected {:?} but found {} in {}",
                char::from(expected),
                describe(b),
                self.what
            ))),
            None => Err(AuthError::protocol(format!(
                "expected {:?} but found the end of {}",
                char::from(expected),
                self.what
            ))),
        }
    }

    /// Reads everything up to the next comma or the end.
    fn value(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let len = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or_default()
    }

    /// Reads the attribute `name=value` and returns its value.
    fn attribute(&mut self, name: u8) -> Result<&'a [u8], AuthError> {
        match self.peek() {
            Some(b) if b == name => {}
            Some(b) => {
                return Err(AuthError::protocol(format!(
                    "expected attribute {:?} but found {} in {}",
                    char::from(name),
                    describe(b),
                    self.what
                )));
            }
            None => {
                return Err(AuthError::protocol(format!(
                    "attribute {:?} missing from {}",
                    char::from(name),
                    self.what
                )));
            }
        }
        self.pos += 1;
        self.expect(b'=')?;
        Ok(self.value())
    }

    /// Reads any attribute `x=value`, where `x` is an ASCII letter.
    fn any_attribute(&mut self) -> Result<(u8, &'a [u8]), AuthError> {
        match self.next() {
            Some(name) if name.is_ascii_alphabetic() => {
                self.expect(b'=')?;
                Ok((name, self.value()))
            }
            Some(b) => Err(AuthError::protocol(format!(
                "attribute expected, but found invalid character {} in {}",
                describe(b),
                self.what
            ))),
            None => Err(AuthError::protocol(format!(
                "attribute expected, but found the end of {}",
                self.what
            ))),
        }
    }
}

/// Renders one byte for an error message without echoing unprintable data.
fn describe(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("{:?}", char::from(b))
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Makes a peer-supplied name safe to log: at most 64 characters, anything but visible
/// ASCII replaced by `?`.
pub(crate) fn printable(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// True for RFC 5802 `printable`: %x21-2B / %x2D-7E (visible ASCII except comma).
fn is_printable(b: u8) -> bool {
    matches!(b, 0x21..=0x2b | 0x2d..=0x7e)
}

/// Checks that apply to every client message: not empty, bounded, no NUL byte.
fn check_envelope(data: &[u8], what: &str) -> Result<(), AuthError> {
    if data.is_empty() {
        return Err(AuthError::protocol(format!("{what} is empty")));
    }
    if data.len() > MAX_MESSAGE_LEN {
        return Err(AuthError::protocol(format!(
            "{what} is too long ({} bytes, at most {MAX_MESSAGE_LEN})",
            data.len()
        )));
    }
    if data.contains(&0) {
        return Err(AuthError::protocol(format!("{what} contains a NUL byte")));
    }
    Ok(())
}

/// Parses a client-first-message:
/// `gs2-cbind-flag "," [authzid] "," [reserved-mext ","] username "," nonce ["," extensions]`.
///
/// Refused: channel-binding flag `p` (SCRAM-SHA-256-PLUS is not advertised), an
/// authorization identity, a mandatory extension (`m=`), a missing or non-printable
/// nonce. The username is read and ignored (the startup packet's user counts), and
/// trailing optional extensions are skipped, as PostgreSQL does.
pub(crate) fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, AuthError> {
    const WHAT: &str = "client-first-message";
    check_envelope(data, WHAT)?;
    let mut c = Cursor::new(data, WHAT);

    let cbind_flag = match c.next() {
        Some(b'n') => CbindFlag::NotSupported,
        Some(b'y') => CbindFlag::NotAdvertised,
        Some(b'p') => {
            return Err(AuthError::protocol(
                "the client selected SCRAM-SHA-256 without channel binding, \
                 but the SCRAM message includes channel binding data",
            ));
        }
        Some(b) => {
            return Err(AuthError::protocol(format!(
                "unexpected channel-binding flag {}",
                describe(b)
            )));
        }
        None => return Err(AuthError::protocol("client-first-message is empty")),
    };
    c.expect(b',')?;
    if c.peek() == Some(b'a') {
        return Err(AuthError::protocol(
            "client uses authorization identity, but it is not supported",
        ));
    }
    c.expect(b',')?;
    let bare = data.get(c.pos..).unwrap_or_default();

    if c.peek() == Some(b'm') {
        return Err(AuthError::protocol(
            "client requires an unsupported SCRAM extension",
        ));
    }
    // The SCRAM username is ignored: the user is the one from the startup packet.
    let _username = c.attribute(b'n')?;
    c.expect(b',')?;
    let nonce = c.attribute(b'r')?;
    let nonce = check_nonce(nonce)?;

    // Optional extensions: syntax-checked and ignored.
    while !c.at_end() {
        c.expect(b',')?;
        c.any_attribute()?;
    }

    Ok(ClientFirst {
        cbind_flag,
        bare,
        nonce,
    })
}

/// Validates a client nonce and returns it as text.
fn check_nonce(nonce: &[u8]) -> Result<&str, AuthError> {
    if nonce.is_empty() {
        return Err(AuthError::protocol("empty SCRAM nonce"));
    }
    if nonce.len() > MAX_NONCE_LEN {
        return Err(AuthError::protocol(format!(
            "SCRAM nonce is too long ({} bytes, at most {MAX_NONCE_LEN})",
            nonce.len()
        )));
    }
    if !nonce.iter().all(|&b| is_printable(b)) {
        return Err(AuthError::protocol(
            "non-printable characters in SCRAM nonce",
        ));
    }
    std::str::from_utf8(nonce).map_err(|_| AuthError::protocol("SCRAM nonce is not ASCII"))
}

/// Parses a client-final-message:
/// `channel-binding "," nonce ["," extensions] "," proof`.
///
/// Only syntax is checked here; the caller compares `c=` and `r=` with what the
/// exchange expects and verifies the proof.
pub(crate) fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, AuthError> {
    const WHAT: &str = "client-final-message";
    check_envelope(data, WHAT)?;
    let mut c = Cursor::new(data, WHAT);

    let channel_binding = c.attribute(b'c')?;
    c.expect(b',')?;
    let nonce = c.attribute(b'r')?;

    // Skip optional extensions until the proof, which must come last.
    let (without_proof, proof) = loop {
        if c.at_end() {
            return Err(AuthError::protocol(
                "client-final-message is missing the proof",
            ));
        }
        let comma = c.pos;
        c.expect(b',')?;
        let (name, value) = c.any_attribute()?;
        if name == b'p' {
            break (data.get(..comma).unwrap_or_default(), value);
        }
    };
    if !c.at_end() {
        return Err(AuthError::protocol(
            "garbage found at the end of client-final-message",
        ));
    }

    Ok(ClientFinal {
        channel_binding,
        nonce,
        without_proof,
        proof: decode_key(proof, "proof in client-final-message")?,
    })
}

/// Decodes standard base64 that must hold exactly [`KEY_LEN`] bytes.
pub(crate) fn decode_key(b64: &[u8], what: &str) -> Result<[u8; KEY_LEN], AuthError> {
    // 32 bytes are 44 base64 characters; refuse anything else before decoding.
    if b64.len() != 44 {
        return Err(AuthError::protocol(format!("malformed {what}")));
    }
    let bytes = STANDARD
        .decode(b64)
        .map_err(|_| AuthError::protocol(format!("malformed {what}")))?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| AuthError::protocol(format!("malformed {what}")))
}

/// Builds server-first-message: `r=<client nonce><server nonce>,s=<salt>,i=<iterations>`.
pub(crate) fn server_first(full_nonce: &str, salt: &[u8], iterations: u32) -> String {
    format!("r={full_nonce},s={},i={iterations}", STANDARD.encode(salt))
}

/// Builds server-final-message: `v=<server signature>`.
pub(crate) fn server_final(signature: &[u8; KEY_LEN]) -> String {
    format!("v={}", STANDARD.encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROOF: &str = "AmNKosjJzS31NTlQYNs5BTeQjdHdk7lOflDo5re2an8=";

    #[test]
    fn parses_libpq_client_first() {
        let m = parse_client_first(b"n,,n=,r=9IZ2O01zb9IgiIZ1WJ/zgpJB").unwrap();
        assert_eq!(m.cbind_flag, CbindFlag::NotSupported);
        assert_eq!(m.cbind_flag.gs2_header(), b"n,,");
        assert_eq!(m.bare, b"n=,r=9IZ2O01zb9IgiIZ1WJ/zgpJB");
        assert_eq!(m.nonce, "9IZ2O01zb9IgiIZ1WJ/zgpJB");
    }

    #[test]
    fn accepts_y_flag_username_and_optional_extensions() {
        let m = parse_client_first(b"y,,n=someone=2Celse,r=abc,x=ext,Z=").unwrap();
        assert_eq!(m.cbind_flag, CbindFlag::NotAdvertised);
        assert_eq!(m.cbind_flag.gs2_header(), b"y,,");
        assert_eq!(m.bare, b"n=someone=2Celse,r=abc,x=ext,Z=");
        assert_eq!(m.nonce, "abc");
    }

    #[test]
    fn client_first_rejections() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"p=tls-server-end-point,,n=,r=abc", "channel binding data"),
            (b"q,,n=,r=abc", "channel-binding flag"),
            (b"n,a=bob,n=,r=abc", "authorization identity"),
            (b"n,,m=ext,n=,r=abc", "unsupported SCRAM extension"),
            (b"n,,r=abc", "expected attribute 'n'"),
            (b"n,,n=", "expected ','"),
            (b"n,,n=,", "attribute 'r' missing"),
            (b"n,,n=,r=", "empty SCRAM nonce"),
            (b"n,,n=,r=a\x7fb", "non-printable"),
            (b"n,,n=,r=a\xc3\xa9", "non-printable"),
            (b"n,,n=,r=abc,", "attribute expected"),
            (b"n,,n=,r=abc,1=x", "invalid character"),
            (b"n,,n=,r=abc,xx", "expected '='"),
            (b"n,,n=,r=ab\0c", "NUL"),
            (b"n", "end of client-first-message"),
            (b"n;,n=,r=abc", "expected ','"),
        ];
        for (input, needle) in cases {
            let err = parse_client_first(input).unwrap_err();
            assert!(
                matches!(&err, AuthError::Protocol(m) if m.contains(needle)),
                "{:?}: got {err:?}, wanted {needle:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn client_first_length_bounds() {
        let long_nonce = format!("n,,n=,r={}", "a".repeat(MAX_NONCE_LEN + 1));
        assert!(parse_client_first(long_nonce.as_bytes()).is_err());
        let ok_nonce = format!("n,,n=,r={}", "a".repeat(MAX_NONCE_LEN));
        assert!(parse_client_first(ok_nonce.as_bytes()).is_ok());
        let huge = format!("n,,n={},r=abc", "u".repeat(MAX_MESSAGE_LEN));
        assert!(parse_client_first(huge.as_bytes()).is_err());
    }

    #[test]
    fn parses_client_final_with_and_without_extensions() {
        let msg = format!("c=biws,r=abcdef,p={PROOF}");
        let m = parse_client_final(msg.as_bytes()).unwrap();
        assert_eq!(m.channel_binding, b"biws");
        assert_eq!(m.nonce, b"abcdef");
        assert_eq!(m.without_proof, b"c=biws,r=abcdef");
        assert_eq!(m.proof[0], 0x02);

        let msg = format!("c=biws,r=abcdef,x=1,y=,p={PROOF}");
        let m = parse_client_final(msg.as_bytes()).unwrap();
        assert_eq!(m.without_proof, b"c=biws,r=abcdef,x=1,y=");
    }

    #[test]
    fn client_final_rejections() {
        let cases: Vec<(String, &str)> = vec![
            ("r=abc,c=biws".into(), "expected attribute 'c'"),
            ("c=biws".into(), "expected ','"),
            ("c=biws,p=x".into(), "expected attribute 'r'"),
            ("c=biws,r=abc".into(), "missing the proof"),
            ("c=biws,r=abc,".into(), "attribute expected"),
            (format!("c=biws,r=abc,p={PROOF},x=1"), "garbage"),
            ("c=biws,r=abc,p=AAAA".into(), "malformed proof"),
            (
                format!("c=biws,r=abc,p={}", &PROOF[..43]),
                "malformed proof",
            ),
            (
                "c=biws,r=abc,p=!mNKosjJzS31NTlQYNs5BTeQjdHdk7lOflDo5re2an8=".into(),
                "malformed proof",
            ),
            // 33 bytes of base64 padding trickery: 44 chars that decode to 32 bytes only.
            (
                "c=biws,r=abc,p=AmNKosjJzS31NTlQYNs5BTeQjdHdk7lOflDo5re2an9=".into(),
                "malformed proof",
            ),
        ];
        for (input, needle) in cases {
            let err = parse_client_final(input.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, AuthError::Protocol(m) if m.contains(needle)),
                "{input:?}: got {err:?}, wanted {needle:?}"
            );
        }
    }

    #[test]
    fn builds_server_messages() {
        assert_eq!(
            server_first("abcXYZ", &[1, 2, 3], 4096),
            "r=abcXYZ,s=AQID,i=4096"
        );
        assert_eq!(
            server_final(&[0; KEY_LEN]),
            "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        );
    }
}
