//! Cleaning up clusters leaked by processes that died without dropping them.
//!
//! `pg_ctl` detaches the server into its own session, so when a test run is
//! interrupted (Ctrl-C, SIGKILL, `abort`) its servers keep running and their
//! temporary directories stay behind. Each cluster directory therefore holds
//! an `owner` file naming the creating process (pid and pid namespace); the
//! first [`Cluster::start`](crate::Cluster::start) of a process stops and
//! removes clusters in the same base directory whose owner is gone.
//! Directories without an owner file, owned by a live process, or created in
//! another pid namespace are never touched.

use std::fs;
use std::path::Path;
use std::process::Stdio;

use crate::runas::Launcher;
use crate::util::scrub_env;

/// Prefix of every cluster directory.
pub(crate) const DIR_PREFIX: &str = "portcullis-pg-";

/// Name of the ownership marker inside a cluster directory.
const OWNER_FILE: &str = "owner";

/// Identity of this process: `<pid> <pid namespace>`.
fn owner_line(pid: u32) -> String {
    format!("{pid} {}", pid_namespace())
}

fn pid_namespace() -> String {
    fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "-".to_owned())
}

/// Marks `dir` as owned by this process.
pub(crate) fn mark_owned(dir: &Path) -> std::io::Result<()> {
    fs::write(dir.join(OWNER_FILE), owner_line(std::process::id()))
}

/// Whether a process with `pid` exists (possibly owned by another user).
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks for existence and permission.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Stops and removes dead processes' clusters under `base`; returns how many
/// were removed. Best effort: every error is ignored.
pub(crate) fn reap_stale(base: &Path, bin_dir: &Path, launcher: &Launcher) -> usize {
    let Ok(entries) = fs::read_dir(base) else {
        return 0;
    };
    let my_ns = pid_namespace();
    let mut reaped = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = entry.path();
        let Ok(owner) = fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let mut parts = owner.split_whitespace();
        let (Some(pid), Some(ns)) = (parts.next().and_then(|p| p.parse().ok()), parts.next())
        else {
            continue;
        };
        if ns != my_ns || alive(pid) {
            continue;
        }
        let data = dir.join("data");
        if data.join("postmaster.pid").exists() {
            let mut cmd = launcher.command(&bin_dir.join("pg_ctl"));
            scrub_env(&mut cmd);
            let _ = cmd
                .args(["stop", "-w", "-t", "10", "-s", "-m", "immediate", "-D"])
                .arg(&data)
                .current_dir(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if fs::remove_dir_all(&dir).is_ok() {
            reaped += 1;
        }
    }
    reaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_dead_owners_in_this_namespace_are_reaped() {
        let base = tempfile::tempdir().unwrap();
        let mk = |name: &str, owner: Option<String>| {
            let d = base.path().join(name);
            fs::create_dir(&d).unwrap();
            if let Some(o) = owner {
                fs::write(d.join(OWNER_FILE), o).unwrap();
            }
            d
        };
        // A pid far above pid_max (4194304) can never be alive.
        let dead = mk("portcullis-pg-dead", Some(owner_line(999_999_999)));
        let live = mk("portcullis-pg-live", Some(owner_line(std::process::id())));
        let foreign = mk("portcullis-pg-ns", Some("999999999 pid:[1]".into()));
        let unmarked = mk("portcullis-pg-new", None);
        let other = mk("something-else", Some(owner_line(999_999_999)));

        let n = reap_stale(base.path(), Path::new("/nonexistent"), &Launcher::Direct);
        assert_eq!(n, 1);
        assert!(!dead.exists());
        for kept in [live, foreign, unmarked, other] {
            assert!(kept.exists(), "{}", kept.display());
        }
    }
}
