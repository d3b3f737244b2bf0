//! The on-disk cache of precompiled policies.
//!
//! Compiling a component takes 0.1 s (Rust) to several seconds (Python, JavaScript);
//! loading a precompiled one takes well under a millisecond, so a restart never
//! recompiles. An entry is keyed by the artifact's SHA-256 and the engine's
//! compatibility hash (wasmtime version, target, settings), written atomically (temp
//! file + rename), and carries the SHA-256 of its own contents: an entry that is
//! truncated, corrupt or from another engine is detected, discarded and recompiled,
//! never run.
//!
//! Loading precompiled code is `unsafe` in wasmtime because the bytes become machine
//! code: the cache directory must be writable only by the gateway's user (it is
//! created with mode 0700).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Magic bytes at the start of a cache entry.
const MAGIC: &[u8; 8] = b"PCWASM1\n";
/// Header: magic + SHA-256 of the payload.
const HEADER: usize = MAGIC.len() + 32;

/// Where a compiled component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from a valid cache entry.
    Hit,
    /// Compiled (no entry, or the entry was invalid and has been replaced).
    Compiled,
}

/// Cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Components loaded from the cache.
    pub hits: u64,
    /// Components compiled.
    pub compiles: u64,
    /// Entries found invalid and discarded.
    pub invalid: u64,
}

/// Precompiled components in a directory.
pub struct CompileCache {
    dir: PathBuf,
    engine_key: String,
    hits: AtomicU64,
    compiles: AtomicU64,
    invalid: AtomicU64,
}

impl CompileCache {
    /// A cache in `dir` for components compiled by `engine`. The directory is created
    /// on first write.
    pub fn new(dir: PathBuf, engine: &Engine) -> Self {
        CompileCache {
            dir,
            engine_key: engine_key(engine),
            hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
        }
    }

    /// The default directory: `$XDG_CACHE_HOME/portcullis`, else
    /// `$HOME/.cache/portcullis`, else `portcullis-cache` under the temp dir.
    pub fn default_dir() -> PathBuf {
        let abs = |v: Option<std::ffi::OsString>| {
            v.map(PathBuf::from)
                .filter(|p| p.is_absolute() && !p.as_os_str().is_empty())
        };
        if let Some(x) = abs(std::env::var_os("XDG_CACHE_HOME")) {
            return x.join("portcullis");
        }
        if let Some(h) = abs(std::env::var_os("HOME")) {
            return h.join(".cache").join("portcullis");
        }
        std::env::temp_dir().join("portcullis-cache")
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters since start.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            compiles: self.compiles.load(Ordering::Relaxed),
            invalid: self.invalid.load(Ordering::Relaxed),
        }
    }

    /// The entry file for an artifact with SHA-256 `artifact_sha256` (hex).
    pub fn entry_path(&self, artifact_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{artifact_sha256}-{}.pcwasm", self.engine_key))
    }

    /// The component for `wasm` (whose SHA-256 is `artifact_sha256`), from the cache or
    /// compiled (and then cached). Cache I/O problems are logged, never fatal; a
    /// compile error is returned.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        artifact_sha256: &str,
    ) -> wasmtime::Result<(Component, CacheOutcome, Duration)> {
        let started = Instant::now();
        let path = self.entry_path(artifact_sha256);
        match read_entry(engine, &path) {
            Ok(Some(component)) => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok((component, CacheOutcome::Hit, started.elapsed()));
            }
            Ok(None) => {}
            Err(why) => {
                self.invalid.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path = %path.display(), %why, "discarding invalid policy cache entry");
                let _ = fs::remove_file(&path);
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `compiled` was produced just now by this engine's own compiler.
        let component = unsafe { Component::deserialize(engine, &compiled) }?;
        if let Err(e) = self.write_entry(&path, &compiled) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write policy cache entry; the next start compiles again");
        }
        Ok((component, CacheOutcome::Compiled, started.elapsed()))
    }

    fn write_entry(&self, path: &Path, compiled: &[u8]) -> std::io::Result<()> {
        create_private_dir(&self.dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".pcwasm-")
            .tempfile_in(&self.dir)?;
        tmp.write_all(MAGIC)?;
        tmp.write_all(&Sha256::digest(compiled))?;
        tmp.write_all(compiled)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

/// Reads and checks an entry. `Ok(None)`: no entry; `Err`: an entry that must not be
/// used (corrupt, truncated, from another engine).
fn read_entry(engine: &Engine, path: &Path) -> Result<Option<Component>, String> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err("not a Portcullis cache entry".into());
    }
    let (digest, payload) = bytes[MAGIC.len()..].split_at(32);
    if Sha256::digest(payload).as_slice() != digest {
        return Err("contents do not match their digest (corrupt or truncated)".into());
    }
    // SAFETY: the payload is byte-for-byte what this cache wrote after compiling it
    // with an engine of the same compatibility hash (checked by the digest above and
    // the entry's name); wasmtime re-checks the engine configuration on load.
    unsafe { Component::deserialize(engine, payload) }
        .map(Some)
        .map_err(|e| format!("rejected by the engine: {e}"))
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// A short, stable key for the engine's compatibility hash.
fn engine_key(engine: &Engine) -> String {
    use std::hash::Hash;
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex(&hasher.0.finalize()[..8])
}

/// Feeds `Hash` input into SHA-256, for a hash that is stable across processes.
struct Sha256Hasher(Sha256);

impl std::hash::Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_key_is_stable_within_a_process() {
        let engine = Engine::default();
        assert_eq!(engine_key(&engine), engine_key(&engine));
        assert_eq!(engine_key(&engine).len(), 16);
    }

    #[test]
    fn corrupt_entries_are_rejected_before_the_engine_sees_them() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let path = dir.path().join("x.pcwasm");
        fs::write(&path, b"garbage").unwrap();
        assert!(read_entry(&engine, &path).is_err());
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&[0u8; 32]);
        bad.extend_from_slice(b"payload");
        fs::write(&path, &bad).unwrap();
        let e = read_entry(&engine, &path).unwrap_err();
        assert!(e.contains("digest"), "{e}");
        // A well-formed entry whose payload is not a precompiled component.
        let mut wrong = MAGIC.to_vec();
        wrong.extend_from_slice(&Sha256::digest(b"payload"));
        wrong.extend_from_slice(b"payload");
        fs::write(&path, &wrong).unwrap();
        let e = read_entry(&engine, &path).unwrap_err();
        assert!(e.contains("engine"), "{e}");
        assert!(
            read_entry(&engine, &dir.path().join("missing"))
                .unwrap()
                .is_none()
        );
    }
}
