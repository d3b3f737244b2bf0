//! Detached Ed25519 signatures for policy artifacts and manifests.
//!
//! A signature file (`<file>.sig`) holds the base64 of an Ed25519 signature over
//! `portcullis-policy-signature-v1:<sha256 hex of the file>`, so what is signed is the
//! digest the gateway pins and checks. Keys are files holding base64: 32 bytes of
//! secret seed (`portcullis policy keygen` writes `KEY` and `KEY.pub`), or the 32-byte
//! public key.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// What is signed for a file with this digest.
fn message(sha256_hex: &str) -> Vec<u8> {
    format!(
        "portcullis-policy-signature-v1:{}",
        sha256_hex.to_ascii_lowercase()
    )
    .into_bytes()
}

/// The signature file of `path` (`path` + `.sig`).
pub fn signature_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// A new random signing key.
pub fn generate() -> SigningKey {
    SigningKey::from_bytes(&rand::random::<[u8; 32]>())
}

/// Base64 text of a secret key (its seed).
pub fn encode_secret(key: &SigningKey) -> String {
    B64.encode(key.to_bytes())
}

/// Base64 text of a public key.
pub fn encode_public(key: &VerifyingKey) -> String {
    B64.encode(key.to_bytes())
}

fn decode32(text: &str, what: &str) -> Result<[u8; 32], String> {
    let bytes = B64
        .decode(text.trim())
        .map_err(|e| format!("{what}: not base64: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("{what}: {} bytes, expected 32", b.len()))
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SigningKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(SigningKey::from_bytes(&decode32(
        &text,
        &path.display().to_string(),
    )?))
}

/// Parses a public key (base64 text).
pub fn parse_public(text: &str, what: &str) -> Result<VerifyingKey, String> {
    VerifyingKey::from_bytes(&decode32(text, what)?).map_err(|e| format!("{what}: {e}"))
}

/// Reads a public key file.
pub fn read_public(path: &Path) -> Result<VerifyingKey, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_public(&text, &path.display().to_string())
}

/// The signature text (base64) of a file with digest `sha256_hex`.
pub fn sign_digest(key: &SigningKey, sha256_hex: &str) -> String {
    B64.encode(key.sign(&message(sha256_hex)).to_bytes())
}

/// Checks `signature_text` (base64) over `sha256_hex` against any of `trusted`.
pub fn verify_digest(
    trusted: &[VerifyingKey],
    sha256_hex: &str,
    signature_text: &str,
) -> Result<(), String> {
    let bytes = B64
        .decode(signature_text.trim())
        .map_err(|e| format!("signature is not base64: {e}"))?;
    let sig = Signature::from_slice(&bytes).map_err(|e| format!("malformed signature: {e}"))?;
    let msg = message(sha256_hex);
    if trusted.iter().any(|k| k.verify(&msg, &sig).is_ok()) {
        Ok(())
    } else if trusted.is_empty() {
        Err("no trusted keys are configured".to_owned())
    } else {
        Err("signature does not match any trusted key".to_owned())
    }
}

/// Verifies `<path>.sig` for the bytes `content` of `path`.
pub fn verify_file(trusted: &[VerifyingKey], path: &Path, content: &[u8]) -> Result<(), String> {
    let sig_path = signature_path(path);
    let sig = std::fs::read_to_string(&sig_path)
        .map_err(|e| format!("{}: cannot read the signature: {e}", sig_path.display()))?;
    verify_digest(trusted, &crate::policy::cache::sha256_hex(content), &sig)
        .map_err(|e| format!("{}: {e}", sig_path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_round_trip_and_tampering_fails() {
        let key = generate();
        let other = generate();
        let digest = crate::policy::cache::sha256_hex(b"component bytes");
        let sig = sign_digest(&key, &digest);
        let trusted = [key.verifying_key()];
        assert!(verify_digest(&trusted, &digest, &sig).is_ok());
        let wrong = crate::policy::cache::sha256_hex(b"other bytes");
        assert!(verify_digest(&trusted, &wrong, &sig).is_err());
        assert!(verify_digest(&[other.verifying_key()], &digest, &sig).is_err());
        assert!(verify_digest(&trusted, &digest, "!!").is_err());
        assert!(verify_digest(&[], &digest, &sig).is_err());
        let pk = parse_public(&encode_public(&key.verifying_key()), "k").unwrap();
        assert_eq!(pk, key.verifying_key());
    }
}
