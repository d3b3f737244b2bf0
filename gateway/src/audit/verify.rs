//! `portcullis audit verify`: checks a trail's hash chain, seals and signatures.

use std::fmt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde_json::Value;

use super::chain::{GENESIS, hash_value, verify_checkpoint};
use super::event::CheckpointRecord;

/// Most problems reported (the rest are counted).
const MAX_PROBLEMS: usize = 1000;

/// What to check beyond the chain itself.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Check checkpoint signatures with this key; a trail without any checkpoint is
    /// then a problem.
    pub public_key: Option<VerifyingKey>,
    /// The trail must end with a `stop` event (the gateway was shut down cleanly and
    /// nothing was cut off its end).
    pub require_sealed: bool,
    /// The trail may start in the middle of the chain (older files archived).
    pub partial: bool,
}

/// One thing wrong with the trail, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub file: PathBuf,
    /// 1-based line (0: the file as a whole).
    pub line: usize,
    /// The event's sequence number, when readable.
    pub seq: Option<u64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)?;
        if let Some(s) = self.seq {
            write!(f, " (seq {s})")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Files read.
    pub files: usize,
    /// Events read.
    pub events: u64,
    /// First and last sequence numbers seen.
    pub first_seq: Option<u64>,
    /// Last sequence number seen.
    pub last_seq: Option<u64>,
    /// Checkpoint events seen.
    pub checkpoints: u64,
    /// Checkpoints whose signature verified with the given key.
    pub signatures_verified: u64,
    /// Events after the last checkpoint (not covered by a signature).
    pub unsigned_tail: u64,
    /// The trail ends with a `stop` event.
    pub sealed: bool,
    /// Everything wrong, in trail order.
    pub problems: Vec<Problem>,
    /// Problems beyond `MAX_PROBLEMS`, not listed.
    pub more_problems: usize,
}

impl Report {
    /// True if nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, file: &Path, line: usize, seq: Option<u64>, message: impl Into<String>) {
        if self.problems.len() >= MAX_PROBLEMS {
            self.more_problems += 1;
            return;
        }
        self.problems.push(Problem {
            file: file.to_owned(),
            line,
            seq,
            message: message.into(),
        });
    }
}

/// Where the chain stands after the last event read.
struct Head {
    seq: u64,
    hash: String,
    file: PathBuf,
    line: usize,
    kind: String,
}

/// Verifies the files of one trail, in chain order.
pub fn verify_files(files: &[PathBuf], opts: &VerifyOptions) -> std::io::Result<Report> {
    let mut r = Report::default();
    let mut head: Option<Head> = None;
    let mut expected_next_file: Option<String> = None;
    for (fi, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path)?;
        r.files += 1;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_owned();
        if let Some(expected) = expected_next_file.take()
            && expected != name
        {
            r.problem(path, 0, None, format!("the previous file was sealed with next file {expected}, but the next file given is {name} (files missing, renamed or out of order)"));
        }
        let last_file = fi + 1 == files.len();
        let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
        let torn = lines.pop().is_some_and(|rest| !rest.is_empty());
        let mut resync = false;
        let mut sealed_at: Option<usize> = None;
        for (li, raw) in lines.iter().enumerate() {
            let line = li + 1;
            if let Some(at) = sealed_at.take() {
                r.problem(path, line, None, format!("event after the rotation seal on line {at}: inserted or appended after the file was closed"));
            }
            let value: Value = match serde_json::from_slice(raw) {
                Ok(v @ Value::Object(_)) => v,
                _ => {
                    r.problem(
                        path,
                        line,
                        None,
                        "not a valid audit event (modified, inserted or corrupted line)",
                    );
                    resync = true;
                    continue;
                }
            };
            let seq = value["seq"].as_u64();
            let stored = value["hash"].as_str().unwrap_or("").to_owned();
            let prev = value["prev"].as_str().unwrap_or("").to_owned();
            let kind = value["kind"].as_str().unwrap_or("").to_owned();
            let Some(seq) = seq else {
                r.problem(
                    path,
                    line,
                    None,
                    "event without a sequence number (modified)",
                );
                resync = true;
                continue;
            };
            r.events += 1;
            r.first_seq.get_or_insert(seq);
            r.last_seq = Some(seq);
            if hash_value(&value) != stored {
                r.problem(
                    path,
                    line,
                    Some(seq),
                    "the event's content does not match its hash: the event was modified",
                );
            }
            match &head {
                None => {
                    if !opts.partial && (seq != 0 || prev != GENESIS) {
                        r.problem(path, line, Some(seq), format!("the trail starts at seq {seq}, not at the first event: earlier events or files are missing (use --partial if older files were archived)"));
                    }
                }
                Some(h) if resync => {
                    let _ = h;
                }
                Some(h) => {
                    let want = h.seq + 1;
                    if seq > want {
                        let missing = if seq - want == 1 {
                            format!("seq {want} is missing")
                        } else {
                            format!(
                                "seq {want}..{} ({} events) are missing",
                                seq - 1,
                                seq - want
                            )
                        };
                        r.problem(
                            path,
                            line,
                            Some(seq),
                            format!(
                                "{missing} after {}:{} (seq {}): events were deleted",
                                h.file.display(),
                                h.line,
                                h.seq
                            ),
                        );
                    } else if seq < want {
                        r.problem(path, line, Some(seq), format!("seq {seq} comes after seq {} ({}:{}): an event was inserted, duplicated or reordered", h.seq, h.file.display(), h.line));
                    } else if prev != h.hash {
                        r.problem(path, line, Some(seq), format!("prev does not match the hash of seq {} ({}:{}): an event was replaced or inserted", h.seq, h.file.display(), h.line));
                    }
                }
            }
            resync = false;
            if kind == "checkpoint" {
                r.checkpoints += 1;
                check_checkpoint(&mut r, opts, path, line, seq, &prev, &value);
                r.unsigned_tail = 0;
            } else {
                r.unsigned_tail += 1;
            }
            if kind == "rotate" {
                sealed_at = Some(line);
                expected_next_file = value["detail"]["next_file"].as_str().map(str::to_owned);
            }
            head = Some(Head {
                seq,
                hash: stored,
                file: path.clone(),
                line,
                kind,
            });
        }
        if torn {
            r.problem(
                path,
                lines.len() + 1,
                None,
                "the file ends in the middle of an event: truncated",
            );
        }
        if !last_file
            && head
                .as_ref()
                .is_none_or(|h| h.kind != "rotate" || h.file != *path)
        {
            let at = head.as_ref().filter(|h| h.file == *path).map(|h| h.seq);
            r.problem(path, lines.len(), at, "the file ends without a rotation seal although more files follow: events were cut off its end (or a file is out of order)");
        }
    }
    match &head {
        Some(h) => {
            r.sealed = h.kind == "stop";
            if opts.require_sealed && !r.sealed {
                r.problem(&h.file, h.line, Some(h.seq), "the trail does not end with a stop event: truncated (or the gateway is still running, or crashed)");
            }
        }
        None => {
            if let Some(f) = files.last() {
                r.problem(f, 0, None, "no events");
            }
        }
    }
    if opts.public_key.is_some() && r.checkpoints == 0 && r.events > 0 {
        let f = files.last().cloned().unwrap_or_default();
        r.problem(&f, 0, None, "no signed checkpoint in the trail");
    }
    Ok(r)
}

fn check_checkpoint(
    r: &mut Report,
    opts: &VerifyOptions,
    path: &Path,
    line: usize,
    seq: u64,
    prev: &str,
    value: &Value,
) {
    let Ok(c) = serde_json::from_value::<CheckpointRecord>(value["checkpoint"].clone()) else {
        r.problem(
            path,
            line,
            Some(seq),
            "checkpoint without a readable signature",
        );
        return;
    };
    if c.head_seq + 1 != seq || c.head_hash != prev {
        r.problem(
            path,
            line,
            Some(seq),
            "the checkpoint does not sign the event before it",
        );
    }
    if let Some(key) = &opts.public_key {
        if c.key != hex::encode(key.as_bytes()) {
            r.problem(
                path,
                line,
                Some(seq),
                format!(
                    "the checkpoint was signed by key {}, not the given public key",
                    c.key
                ),
            );
            return;
        }
        match verify_checkpoint(key, &c) {
            Ok(()) => r.signatures_verified += 1,
            Err(e) => r.problem(path, line, Some(seq), format!("checkpoint {e}")),
        }
    }
}
