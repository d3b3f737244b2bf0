//! Running the server binaries as an unprivileged user when we are root.
//!
//! `initdb` and `postgres` refuse to run as root. When the current process is
//! root, the server programs are started through `setpriv` (preferred: no PAM,
//! environment kept), `runuser` or `su` as an unprivileged OS user (`postgres`
//! by default, `nobody` as a last resort), and everything the server must write
//! or read is chowned to that user. When we are not root the programs run
//! directly.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

use crate::bin::which;
use crate::error::{ClusterError, Result};

/// How the server programs are launched.
#[derive(Debug, Clone)]
pub(crate) enum Launcher {
    /// Run directly (we are not root).
    Direct,
    /// Run as another user.
    As {
        /// User name.
        user: String,
        /// Numeric user id.
        uid: u32,
        /// Numeric primary group id.
        gid: u32,
        /// The privilege-dropping tool.
        tool: Tool,
    },
}

/// A privilege-dropping tool.
#[derive(Debug, Clone)]
pub(crate) enum Tool {
    Setpriv(std::path::PathBuf),
    Runuser(std::path::PathBuf),
    Su(std::path::PathBuf),
}

impl Launcher {
    /// Decides how to run the server: directly unless we are root, else as
    /// `user` (or `postgres`, then `nobody`).
    pub(crate) fn detect(user: Option<&str>) -> Result<Launcher> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Launcher::Direct);
        }
        let (user, uid, gid) = match user {
            Some(u) => lookup_user(u).ok_or_else(|| ClusterError::NoUnprivilegedUser {
                reason: format!("OS user {u:?} does not exist"),
            })?,
            None => ["postgres", "nobody"]
                .into_iter()
                .find_map(lookup_user)
                .ok_or_else(|| ClusterError::NoUnprivilegedUser {
                    reason: "neither the `postgres` nor the `nobody` OS user exists".to_owned(),
                })?,
        };
        if uid == 0 {
            return Err(ClusterError::NoUnprivilegedUser {
                reason: format!("OS user {user:?} has uid 0"),
            });
        }
        let tool = if let Some(p) = which("setpriv") {
            Tool::Setpriv(p)
        } else if let Some(p) = which("runuser") {
            Tool::Runuser(p)
        } else if let Some(p) = which("su") {
            Tool::Su(p)
        } else {
            return Err(ClusterError::NoUnprivilegedUser {
                reason: "none of setpriv, runuser, su is on PATH (install util-linux)".to_owned(),
            });
        };
        Ok(Launcher::As {
            user,
            uid,
            gid,
            tool,
        })
    }

    /// Builds a [`Command`] that runs `program` (with the arguments the caller
    /// adds afterwards) as the server user.
    ///
    /// With `su`, arguments are forwarded through `sh -c 'exec "$0" "$@"'`
    /// (after `--`, so su does not parse them), so the caller can keep using
    /// [`Command::arg`] in every case.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match self {
            Launcher::Direct => Command::new(program),
            Launcher::As {
                user,
                uid,
                gid,
                tool,
            } => match tool {
                Tool::Setpriv(setpriv) => {
                    let mut c = Command::new(setpriv);
                    c.arg(format!("--reuid={uid}"))
                        .arg(format!("--regid={gid}"))
                        .arg("--clear-groups")
                        .arg("--")
                        .arg(program);
                    c
                }
                Tool::Runuser(runuser) => {
                    let mut c = Command::new(runuser);
                    c.arg("-u").arg(user).arg("--").arg(program);
                    c
                }
                Tool::Su(su) => {
                    let mut c = Command::new(su);
                    c.arg("-s")
                        .arg("/bin/sh")
                        .arg("-c")
                        .arg(r#"exec "$0" "$@""#)
                        .arg("--")
                        .arg(user)
                        .arg(program);
                    c
                }
            },
        }
    }

    /// Gives `path` to the server user (no-op when running directly).
    pub(crate) fn chown(&self, path: &Path) -> Result<()> {
        if let Launcher::As { uid, gid, .. } = self {
            std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(|e| ClusterError::io(format!("chown {}", path.display()), e))?;
        }
        Ok(())
    }

    /// The user the server runs as, for messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Launcher::Direct => "the current user".to_owned(),
            Launcher::As { user, .. } => format!("OS user {user:?}"),
        }
    }
}

/// Looks up `name` with `id`, returning (name, uid, gid).
fn lookup_user(name: &str) -> Option<(String, u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id")
            .arg(flag)
            .arg(OsStr::new(name))
            .env("LC_ALL", "C")
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((name.to_owned(), id("-u")?, id("-g")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every available privilege-dropping tool really runs the program as the
    /// server user, with arguments passed through untouched.
    #[test]
    fn each_tool_runs_as_the_server_user() {
        let launcher = Launcher::detect(None).unwrap();
        let Launcher::As { user, uid, gid, .. } = launcher else {
            // Not root: programs run directly.
            let out = Launcher::Direct
                .command(Path::new("/bin/echo"))
                .arg("-n")
                .output()
                .unwrap();
            assert!(out.status.success());
            return;
        };
        let tools = [
            which("setpriv").map(Tool::Setpriv),
            which("runuser").map(Tool::Runuser),
            which("su").map(Tool::Su),
        ];
        for tool in tools.into_iter().flatten() {
            let l = Launcher::As {
                user: user.clone(),
                uid,
                gid,
                tool: tool.clone(),
            };
            let out = l
                .command(Path::new("/bin/sh"))
                .args(["-c", r#"echo "$(id -u) $1""#, "sh", "-D a'b"])
                .current_dir("/")
                .output()
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout).trim(),
                format!("{uid} -D a'b"),
                "{tool:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
