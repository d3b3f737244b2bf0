//! Small cryptographic helpers shared by the verifier and the server.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::messages::KEY_LEN;

/// SHA-256's block size, the HMAC key size.
const BLOCK_LEN: usize = 64;

/// HMAC-SHA-256 of the concatenation of `parts` under a 32-byte key.
///
/// A key shorter than the block size is zero-padded to it by HMAC's definition
/// (RFC 2104), so building the MAC from the padded block is the same function and is
/// infallible (no `new_from_slice` error path to unwrap).
pub(crate) fn hmac_sha256(key: &[u8; KEY_LEN], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut block = [0u8; BLOCK_LEN];
    block[..KEY_LEN].copy_from_slice(key);
    let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Byte-wise XOR of two 32-byte strings.
pub(crate) fn xor(a: &[u8; KEY_LEN], b: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    let mut out = [0u8; KEY_LEN];
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        *o = x ^ y;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_key_hmac_equals_slice_key_hmac() {
        let key = [0x5a; KEY_LEN];
        let mut reference = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        reference.update(b"Client Key");
        let reference: [u8; KEY_LEN] = reference.finalize().into_bytes().into();
        assert_eq!(hmac_sha256(&key, &[b"Client ", b"Key"]), reference);
    }

    #[test]
    fn xor_is_bytewise() {
        let a = [0b1100; KEY_LEN];
        let b = [0b1010; KEY_LEN];
        assert_eq!(xor(&a, &b), [0b0110; KEY_LEN]);
    }
}
