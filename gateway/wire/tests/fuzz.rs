//! Seeded random-input tests of every decoder: whatever the bytes, decoding returns a
//! value or an error, never panics and never allocates from an untrusted count.

use bytes::BytesMut;
use portcullis_wire::backend::{AuthRequest, DataRowCells, ErrorFields, RowDescription, TransactionStatus};
use portcullis_wire::frontend::{Bind, Close, Describe, Execute, Parse, Query, SaslInitialResponse};
use portcullis_wire::{FrameDecoder, Limits, decode_startup};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = (self.next() as usize) % (max + 1);
        (0..len)
            .map(|_| {
                // Bias towards bytes that matter to the protocol: NUL, 0xff, small numbers.
                match self.next() % 4 {
                    0 => 0,
                    1 => 0xff,
                    2 => (self.next() % 8) as u8,
                    _ => self.next() as u8,
                }
            })
            .collect()
    }
}

#[test]
fn message_body_decoders_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for _ in 0..50_000 {
        let b = rng.bytes(64);
        let _ = Query::decode(&b);
        let _ = Parse::decode(&b);
        let _ = Bind::decode(&b);
        let _ = Describe::decode(&b);
        let _ = Close::decode(&b);
        let _ = Execute::decode(&b);
        let _ = SaslInitialResponse::decode(&b);
        let _ = AuthRequest::decode(&b);
        let _ = ErrorFields::decode(b'E', &b);
        let _ = RowDescription::decode(&b);
        let _ = TransactionStatus::decode(&b);
        if let Ok(cells) = DataRowCells::new(&b) {
            for c in cells {
                if c.is_err() {
                    break;
                }
            }
        }
    }
}

#[test]
fn framing_never_panics_and_respects_the_cap() {
    let mut rng = Rng(42);
    let limits = Limits { max_message: 512, max_startup: 256 };
    let d = FrameDecoder::new(limits);
    for _ in 0..20_000 {
        let b = rng.bytes(96);
        let _ = decode_startup(&b, &limits);
        let mut buf = BytesMut::from(&b[..]);
        while let Ok(Some(f)) = d.decode(&mut buf) {
            assert!(f.raw().len() <= limits.max_message);
        }
    }
}
