//! The hash chain and signed checkpoints.
//!
//! An event's hash is the SHA-256 of its *canonical JSON* without the `hash` key:
//! objects with keys in byte order, no insignificant whitespace, strings and numbers as
//! `serde_json` writes them. Every event carries the previous event's hash in `prev`,
//! so changing, removing, inserting or reordering any event breaks the chain at that
//! point. A checkpoint signs `(head_seq, head_hash)` with Ed25519: whoever holds the
//! public key can tell that the chain up to the head is the one the gateway wrote.

use std::path::Path;

use anyhow::{Context, bail};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::event::{AuditEvent, CheckpointRecord};

/// `prev` of the first event of a trail.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Writes `v` as canonical JSON (sorted keys, no whitespace).
pub fn canonical(v: &Value, out: &mut String) {
    let mut buf = std::mem::take(out).into_bytes();
    write_canonical(v, &mut buf);
    *out = String::from_utf8(buf).expect("serde_json writes UTF-8");
}

/// [`canonical`] into bytes, without an allocation per key or scalar (this runs for
/// every audit event).
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    const OK: &str = "JSON serialises into a Vec";
    match v {
        Value::Object(map) => {
            out.push(b'{');
            // Without serde_json's `preserve_order` the map is a BTreeMap, so its keys
            // already come in byte order; sort only if they do not.
            let mut entries: Vec<(&String, &Value)> = Vec::new();
            let in_order = map.keys().is_sorted();
            if !in_order {
                entries = map.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            let write = |i: usize, k: &String, item: &Value, out: &mut Vec<u8>| {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect(OK);
                out.push(b':');
                write_canonical(item, out);
            };
            if in_order {
                for (i, (k, item)) in map.iter().enumerate() {
                    write(i, k, item, out);
                }
            } else {
                for (i, (k, item)) in entries.into_iter().enumerate() {
                    write(i, k, item, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        other => serde_json::to_writer(&mut *out, other).expect(OK),
    }
}

/// The hash of an event given as a JSON object (its `hash` key, if any, is ignored).
pub fn hash_value(v: &Value) -> String {
    let mut text = String::with_capacity(512);
    match v {
        Value::Object(map) if map.contains_key("hash") => {
            let mut map = map.clone();
            map.remove("hash");
            canonical(&Value::Object(map), &mut text);
        }
        other => canonical(other, &mut text),
    }
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Seals `event`: computes its hash and returns the JSON line (with `\n`) to write.
/// The line is the canonical JSON with `hash` first (the line itself need not be
/// canonical: verification re-canonicalises what it reads).
pub fn seal(event: &mut AuditEvent) -> String {
    let mut line = Vec::new();
    seal_into(event, &mut Vec::new(), &mut line);
    String::from_utf8(line).expect("serde_json writes UTF-8")
}

/// [`seal`], appending the line to `out` and serialising through `scratch` (both
/// reused by the writer, so sealing an event allocates nothing of its own; `event.hash`
/// keeps its capacity too).
///
/// The record types declare their fields in byte order of their names and serde_json's
/// maps are sorted, so serialising an event directly gives its canonical JSON, without
/// building a JSON value first (this runs for every event). Debug builds check it.
pub fn seal_into(event: &mut AuditEvent, scratch: &mut Vec<u8>, out: &mut Vec<u8>) {
    event.hash.clear();
    let hash = seal_serialized(&*event, scratch, out);
    event
        .hash
        .push_str(std::str::from_utf8(&hash).expect("hex is ASCII"));
}

/// [`seal_into`] of anything that serialises to an event's canonical JSON without
/// `hash` (the writer's view of a queued statement event): appends the line to `out`
/// and returns the hash (hex).
pub fn seal_serialized<T: Serialize + ?Sized>(
    event: &T,
    scratch: &mut Vec<u8>,
    out: &mut Vec<u8>,
) -> [u8; 64] {
    scratch.clear();
    serde_json::to_writer(&mut *scratch, event).expect("an audit event serializes");
    debug_assert_eq!(
        std::str::from_utf8(scratch).expect("serde_json writes UTF-8"),
        {
            let mut c = String::new();
            canonical(&serde_json::to_value(event).expect("serializes"), &mut c);
            c
        },
        "audit record types must declare their fields in byte order of their names"
    );
    let mut hash = [0u8; 64];
    hex::encode_to_slice(Sha256::digest(&scratch[..]), &mut hash).expect("64 hex digits");
    out.reserve(scratch.len() + 80);
    out.extend_from_slice(b"{\"hash\":\"");
    out.extend_from_slice(&hash);
    out.push(b'"');
    if scratch.len() > 2 {
        out.push(b',');
    }
    out.extend_from_slice(&scratch[1..]);
    out.push(b'\n');
    hash
}

/// The bytes a checkpoint signs.
pub fn checkpoint_message(head_seq: u64, head_hash: &str) -> Vec<u8> {
    format!("portcullis-audit-checkpoint:v1:{head_seq}:{head_hash}").into_bytes()
}

/// Signs checkpoints with the configured Ed25519 key.
pub struct CheckpointSigner {
    key: SigningKey,
    key_hex: String,
}

impl CheckpointSigner {
    /// A signer from a 32-byte secret key.
    pub fn new(secret: [u8; 32]) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let key_hex = hex::encode(key.verifying_key().as_bytes());
        CheckpointSigner { key, key_hex }
    }

    /// Reads a secret key file (64 hex digits).
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        Ok(CheckpointSigner::new(read_hex_key(path)?))
    }

    /// The public key, hex.
    pub fn public_key_hex(&self) -> &str {
        &self.key_hex
    }

    /// A checkpoint over `(head_seq, head_hash)`.
    pub fn sign(&self, head_seq: u64, head_hash: &str) -> CheckpointRecord {
        let sig = self.key.sign(&checkpoint_message(head_seq, head_hash));
        CheckpointRecord {
            head_seq,
            head_hash: head_hash.to_owned(),
            key: self.key_hex.clone(),
            signature: hex::encode(sig.to_bytes()),
        }
    }
}

/// Reads 32 bytes written as 64 hex digits (surrounding whitespace allowed).
pub fn read_hex_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    parse_hex_key(text.trim()).with_context(|| format!("key file {}", path.display()))
}

/// Parses 64 hex digits.
pub fn parse_hex_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(text).context("expected 64 hexadecimal digits")?;
    let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        bail!(
            "expected 64 hexadecimal digits (32 bytes), got {} bytes",
            bytes.len()
        );
    };
    Ok(key)
}

/// Checks a checkpoint's signature against `public_key`.
pub fn verify_checkpoint(public_key: &VerifyingKey, c: &CheckpointRecord) -> Result<(), String> {
    let sig = hex::decode(&c.signature).map_err(|_| "signature is not hex".to_owned())?;
    let sig =
        Signature::from_slice(&sig).map_err(|_| "signature has the wrong length".to_owned())?;
    public_key
        .verify(&checkpoint_message(c.head_seq, &c.head_hash), &sig)
        .map_err(|_| "signature does not verify with the given public key".to_owned())
}

/// A public key from 64 hex digits.
pub fn verifying_key(bytes: [u8; 32]) -> anyhow::Result<VerifyingKey> {
    VerifyingKey::from_bytes(&bytes).context("not a valid Ed25519 public key")
}
