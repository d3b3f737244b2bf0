//! What the writer finds on disk at startup: the trail's last event (to continue the
//! chain), a torn last line a crash left (cut off and recorded), and the lines the
//! PostgreSQL sink may have missed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::chain::{GENESIS, hash_value};
use super::writer::{file_name, trail_files};

/// Largest tail read to find the last event at startup.
const TAIL_WINDOW: u64 = 4 << 20;

/// What startup found on disk.
pub(super) struct Recovered {
    /// The file to append to.
    pub(super) path: PathBuf,
    /// Its length up to the end of its last whole event.
    pub(super) good_len: u64,
    /// The number the next event gets.
    pub(super) next_seq: u64,
    /// The hash of the last event (the next one's `prev`).
    pub(super) prev: String,
    /// What the `start` event records about the previous run.
    pub(super) detail: Value,
}

pub(super) fn recover(dir: &Path) -> anyhow::Result<Recovered> {
    let files = trail_files(dir)
        .with_context(|| format!("cannot list audit directory {}", dir.display()))?;
    let Some(last_file) = files.last().cloned() else {
        return Ok(Recovered {
            path: dir.join(file_name(0)),
            good_len: 0,
            next_seq: 0,
            prev: GENESIS.to_owned(),
            detail: json!({"previous_run": "none", "file": file_name(0)}),
        });
    };
    let regular = std::fs::metadata(&last_file)
        .map(|m| m.is_file())
        .unwrap_or(false);
    if !regular {
        // A device or pipe: nothing to recover, the chain starts over.
        return Ok(Recovered {
            path: last_file,
            good_len: 0,
            next_seq: 0,
            prev: GENESIS.to_owned(),
            detail: json!({"previous_run": "unknown", "note": "the trail file is not a regular file"}),
        });
    }
    let tail = read_tail(&last_file)?;
    let mut detail = json!({"file": last_file.file_name().and_then(|n| n.to_str()).unwrap_or("")});
    if tail.torn_len > 0 {
        // Cut the torn line off: no client was told about it (results are released
        // only after their event's write completed).
        let f = OpenOptions::new()
            .write(true)
            .open(&last_file)
            .with_context(|| format!("cannot open {} to repair it", last_file.display()))?;
        f.set_len(tail.good_len)
            .with_context(|| format!("cannot truncate the torn tail of {}", last_file.display()))?;
        f.sync_all()?;
        detail["torn_tail_bytes"] = json!(tail.torn_len);
        detail["torn_tail_sha256"] = json!(tail.torn_sha256);
        tracing::warn!(file = %last_file.display(), bytes = tail.torn_len, "audit trail: cut off a torn last line");
    }
    let last = match tail.last {
        Some(v) => Some(v),
        None => {
            // The last file has no complete event; look at the one before.
            let mut found = None;
            for f in files.iter().rev().skip(1) {
                if let Some(v) = read_tail(f)?.last {
                    found = Some(v);
                    break;
                }
            }
            found
        }
    };
    let Some(last) = last else {
        detail["previous_run"] = json!("none");
        return Ok(Recovered {
            path: last_file,
            good_len: tail.good_len,
            next_seq: 0,
            prev: GENESIS.to_owned(),
            detail,
        });
    };
    let seq = last["seq"]
        .as_u64()
        .context("the last audit event has no seq")?;
    let hash = last["hash"].as_str().unwrap_or("").to_owned();
    let kind = last["kind"].as_str().unwrap_or("");
    detail["previous_run"] = json!(if kind == "stop" { "clean" } else { "unclean" });
    detail["continues_seq"] = json!(seq);
    let (path, good_len) = if kind == "rotate" {
        // Crashed between sealing a file and creating the next one.
        (dir.join(file_name(seq + 1)), 0)
    } else {
        (last_file, tail.good_len)
    };
    Ok(Recovered {
        path,
        good_len,
        next_seq: seq + 1,
        prev: hash,
        detail,
    })
}

struct Tail {
    last: Option<Value>,
    good_len: u64,
    torn_len: u64,
    torn_sha256: String,
}

fn read_tail(path: &Path) -> anyhow::Result<Tail> {
    let mut f = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let len = f.metadata()?.len();
    let window = len.min(TAIL_WINDOW);
    f.seek(SeekFrom::Start(len - window))?;
    let mut buf = Vec::with_capacity(window as usize);
    f.read_to_end(&mut buf)?;
    let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if end == 0 && window < len {
        bail!(
            "{}: the last audit event is longer than {TAIL_WINDOW} bytes",
            path.display()
        );
    }
    let torn = &buf[end..];
    let torn_len = torn.len() as u64;
    let torn_sha256 = hex::encode(Sha256::digest(torn));
    if end == 0 {
        return Ok(Tail {
            last: None,
            good_len: 0,
            torn_len,
            torn_sha256,
        });
    }
    let body = &buf[..end - 1];
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if start == 0 && window < len {
        bail!(
            "{}: the last audit event is longer than {TAIL_WINDOW} bytes",
            path.display()
        );
    }
    let line = &body[start..];
    let value: Value = serde_json::from_slice(line).with_context(|| {
        format!(
            "{}: the last audit event is not valid JSON; run `portcullis audit verify` on the trail",
            path.display()
        )
    })?;
    let stored = value["hash"].as_str().unwrap_or("");
    if hash_value(&value) != stored {
        bail!(
            "{}: the last audit event's hash does not verify (the trail was modified); run `portcullis audit verify` on the trail",
            path.display()
        );
    }
    Ok(Tail {
        last: Some(value),
        good_len: len - torn_len,
        torn_len,
        torn_sha256,
    })
}

/// Queues the lines of the newest two trail files for the PostgreSQL sink.
pub(super) fn backfill(dir: &Path, sink: &mut super::pg_sink::PgSink) -> anyhow::Result<()> {
    let files = trail_files(dir)?;
    for path in files.iter().rev().take(2).rev() {
        let text = std::fs::read_to_string(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for line in text.lines() {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                sink.push(super::pg_sink::Row {
                    seq: seq as i64,
                    file: name.clone(),
                    line: line.to_owned(),
                });
            }
        }
    }
    Ok(())
}
