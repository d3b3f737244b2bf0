//! The embedded store: every request in one JSON file, rewritten atomically (write to a
//! temporary file, fsync, rename) on every change, so it survives restarts and crashes.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use tokio::sync::watch;

use super::{UpdateRefused, Updated};
use crate::approvals::model::{ApprovalRequest, Status, now_ms};

/// Final requests older than this are dropped from the file.
const KEEP_FINAL_MS: u64 = 7 * 24 * 3600 * 1000;

/// A single-file store.
pub struct FileStore {
    /// The file.
    path: PathBuf,
    /// Every request by id; the file mirrors it.
    requests: Mutex<BTreeMap<String, ApprovalRequest>>,
    /// Bumped on every change.
    version: watch::Sender<u64>,
}

impl FileStore {
    /// Opens (or creates) the file.
    pub fn open(path: &Path) -> anyhow::Result<FileStore> {
        let requests = match std::fs::read(path) {
            Ok(bytes) if bytes.is_empty() => BTreeMap::new(),
            Ok(bytes) => {
                let list: Vec<ApprovalRequest> = serde_json::from_slice(&bytes)
                    .with_context(|| format!("approvals store {} is corrupt", path.display()))?;
                list.into_iter().map(|r| (r.id.clone(), r)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        let store = FileStore {
            path: path.to_owned(),
            requests: Mutex::new(requests),
            version: watch::Sender::new(0),
        };
        store.persist(&store.lock())?;
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ApprovalRequest>> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, map: &BTreeMap<String, ApprovalRequest>) -> anyhow::Result<()> {
        let list: Vec<&ApprovalRequest> = map.values().collect();
        let bytes = serde_json::to_vec_pretty(&list)?;
        let dir = self.path.parent().filter(|p| !p.as_os_str().is_empty());
        let dir = dir.unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("cannot write in {}", dir.display()))?;
        tmp.write_all(&bytes)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path)
            .with_context(|| format!("cannot replace {}", self.path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn changed(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    /// Adds a request.
    pub fn insert(&self, r: &ApprovalRequest) -> anyhow::Result<()> {
        let mut map = self.lock();
        let now = now_ms();
        map.retain(|_, old| !(old.status.is_final() && old.updated_at_ms + KEEP_FINAL_MS < now));
        map.insert(r.id.clone(), r.clone());
        if let Err(e) = self.persist(&map) {
            map.remove(&r.id);
            return Err(e);
        }
        drop(map);
        self.changed();
        Ok(())
    }

    /// One request.
    pub fn get(&self, id: &str) -> Option<ApprovalRequest> {
        self.lock().get(id).cloned()
    }

    /// Requests, newest first.
    pub fn list(&self, open: bool, limit: usize) -> Vec<ApprovalRequest> {
        let now = now_ms();
        let mut v: Vec<ApprovalRequest> = self
            .lock()
            .values()
            .cloned()
            .map(|mut r| {
                r.expire_if_due(now);
                r
            })
            .filter(|r| !open || matches!(r.status, Status::Pending | Status::Approved))
            .collect();
        v.sort_by_key(|r| std::cmp::Reverse(r.created_at_ms));
        v.truncate(limit);
        v
    }

    /// Read-modify-write of one request.
    pub fn update<F>(&self, id: &str, f: F) -> anyhow::Result<Updated>
    where
        F: FnOnce(&mut ApprovalRequest) -> Result<(), String>,
    {
        let mut map = self.lock();
        let Some(old) = map.get(id).cloned() else {
            return Ok(Err(UpdateRefused::NotFound(id.to_owned())));
        };
        let mut new = old.clone();
        if let Err(m) = f(&mut new) {
            return Ok(Err(UpdateRefused::Refused(m)));
        }
        map.insert(id.to_owned(), new.clone());
        if let Err(e) = self.persist(&map) {
            map.insert(id.to_owned(), old);
            return Err(e);
        }
        drop(map);
        self.changed();
        Ok(Ok(new))
    }

    /// Uses an approval for a deferred re-run.
    pub fn consume_match(&self, key: &str, now: u64) -> anyhow::Result<Option<ApprovalRequest>> {
        let id = {
            let map = self.lock();
            map.values()
                .filter(|r| {
                    r.match_key == key && r.status == Status::Approved && r.expires_at_ms > now
                })
                .min_by_key(|r| r.updated_at_ms)
                .map(|r| r.id.clone())
        };
        let Some(id) = id else { return Ok(None) };
        let updated = self.update(&id, |r| {
            if r.status != Status::Approved {
                return Err("already used".into());
            }
            r.status = Status::Consumed;
            r.updated_at_ms = now;
            Ok(())
        })?;
        Ok(updated.ok())
    }

    /// Changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }
}
