//! Groups from a directory file (`[auth.directory]`): a TOML or JSON map from user name
//! to a list of groups, re-read when its modification time or size changes. Checked
//! lazily at login, at most every `poll_ms`, so a change needs no restart and never
//! touches open sessions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;

use crate::config::DirectoryConfig;

type Groups = HashMap<String, Vec<String>>;

struct State {
    groups: Groups,
    /// (mtime, length) of the version loaded.
    stamp: Option<(SystemTime, u64)>,
    checked: Instant,
}

/// The directory file and the version of it in use.
pub struct Directory {
    path: PathBuf,
    poll: Duration,
    state: Mutex<State>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Reads and parses a directory file (by extension: `.json`, else TOML).
pub fn read(path: &Path) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("auth.directory.path: {}", path.display()))?;
    let parsed: Groups = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("auth.directory.path: {}", path.display()))?
    } else {
        toml::from_str(&text).with_context(|| format!("auth.directory.path: {}", path.display()))?
    };
    Ok(parsed)
}

impl Directory {
    /// Loads the file; an unreadable file at start is an error.
    pub fn open(cfg: &DirectoryConfig) -> anyhow::Result<Self> {
        let stamp = stamp(&cfg.path);
        let groups = read(&cfg.path)?;
        Ok(Directory {
            path: cfg.path.clone(),
            poll: Duration::from_millis(cfg.poll_ms),
            state: Mutex::new(State {
                groups,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The groups of `user` in the current version of the file.
    pub fn groups(&self, user: &str) -> Vec<String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= self.poll {
            st.checked = Instant::now();
            let now = stamp(&self.path);
            if now != st.stamp {
                match read(&self.path) {
                    Ok(g) => {
                        tracing::info!(path = %self.path.display(), users = g.len(), "groups directory reloaded");
                        st.groups = g;
                        st.stamp = now;
                    }
                    Err(e) => {
                        // Keep the previous version; a half-written file is retried.
                        tracing::warn!(error = %format!("{e:#}"), "groups directory not reloaded; keeping the previous version");
                    }
                }
            }
        }
        st.groups.get(user).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_picked_up_and_a_broken_one_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("groups.toml");
        std::fs::write(&path, "alice = [\"analysts\"]\n").unwrap();
        let d = Directory::open(&DirectoryConfig {
            path: path.clone(),
            poll_ms: 0,
        })
        .unwrap();
        assert_eq!(d.groups("alice"), vec!["analysts"]);
        std::fs::write(&path, "alice = [\"analysts\", \"approvers\"]\nbob = []\n").unwrap();
        assert_eq!(d.groups("alice"), vec!["analysts", "approvers"]);
        std::fs::write(&path, "alice = [").unwrap();
        assert_eq!(d.groups("alice"), vec!["analysts", "approvers"]);
    }
}
