//! Locating the PostgreSQL binaries.
//!
//! Search order for the server binaries (`initdb`, `pg_ctl`, `postgres`):
//!
//! 1. the `PG_BIN` environment variable (if set and non-empty it must be
//!    right: an incomplete directory is an error, not a reason to keep looking);
//! 2. `pg_config --bindir`;
//! 3. `/usr/lib/postgresql/<version>/bin`, highest version first;
//! 4. the directory of `initdb` found on `PATH` (symlinks resolved).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{ClusterError, Result};

/// The programs a server binary directory must contain.
pub const REQUIRED_PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Name of the environment variable that overrides the binary search.
pub const PG_BIN_ENV: &str = "PG_BIN";

/// Finds the directory holding `initdb`, `pg_ctl` and `postgres`.
///
/// See the [module documentation](self) for the search order. When nothing is
/// found the error says what is missing and how to install it.
pub fn find_pg_bin() -> Result<PathBuf> {
    resolve_pg_bin(std::env::var_os(PG_BIN_ENV).as_deref())
}

/// [`find_pg_bin`] with an explicit value for `PG_BIN` (`None` = unset), so
/// that callers and tests need not mutate the process environment.
pub fn resolve_pg_bin(pg_bin_env: Option<&OsStr>) -> Result<PathBuf> {
    if let Some(dir) = pg_bin_env.filter(|v| !v.is_empty()) {
        return check_bin_dir(Path::new(dir), PG_BIN_ENV);
    }
    let mut searched = vec![format!("{PG_BIN_ENV} (unset)")];

    match pg_config_bindir() {
        Some(dir) if missing_programs(&dir).is_empty() => return Ok(dir),
        Some(dir) => searched.push(format!("pg_config --bindir ({})", dir.display())),
        None => searched.push("pg_config --bindir (no pg_config on PATH)".to_owned()),
    }

    for dir in versioned_bin_dirs(Path::new("/usr/lib/postgresql")) {
        if missing_programs(&dir).is_empty() {
            return Ok(dir);
        }
    }
    searched.push("/usr/lib/postgresql/*/bin".to_owned());

    if let Some(initdb) = which("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent()
            && missing_programs(dir).is_empty()
        {
            return Ok(dir.to_path_buf());
        }
    }
    searched.push("PATH".to_owned());

    Err(ClusterError::PgBinNotFound {
        searched: searched.join(", "),
    })
}

/// Checks that an explicitly named directory holds all [`REQUIRED_PROGRAMS`].
///
/// `source_name` says where the directory came from and appears in the error.
pub fn check_bin_dir(dir: &Path, source_name: &str) -> Result<PathBuf> {
    let missing = missing_programs(dir);
    if missing.is_empty() {
        Ok(dir.to_path_buf())
    } else {
        Err(ClusterError::PgBinIncomplete {
            source_name: source_name.to_owned(),
            dir: dir.to_path_buf(),
            missing: missing.join(", "),
        })
    }
}

/// Finds `psql`: next to the server binaries first, then on `PATH`.
pub fn find_psql(bin_dir: &Path) -> Result<PathBuf> {
    let local = bin_dir.join("psql");
    if is_executable(&local) {
        return Ok(local);
    }
    which("psql").ok_or_else(|| ClusterError::PsqlNotFound {
        bin_dir: bin_dir.to_path_buf(),
    })
}

/// Returns the names of the [`REQUIRED_PROGRAMS`] absent from `dir`.
fn missing_programs(dir: &Path) -> Vec<&'static str> {
    REQUIRED_PROGRAMS
        .into_iter()
        .filter(|p| !is_executable(&dir.join(p)))
        .collect()
}

/// Runs `pg_config --bindir` and returns its answer, if any.
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .env("LC_ALL", "C")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = String::from_utf8(out.stdout).ok()?;
    let dir = dir.trim();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// Lists `<root>/<version>/bin`, highest (numeric) version first.
fn versioned_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u64>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let key = name
                .split('.')
                .map(|p| p.parse::<u64>().ok())
                .collect::<Option<Vec<_>>>()?;
            Some((key, e.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Searches `PATH` for an executable called `name`.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// Whether `path` is a regular file with some execute bit set.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let root = tempfile::tempdir().unwrap();
        for v in ["9.6", "15", "10", "abc"] {
            std::fs::create_dir_all(root.path().join(v).join("bin")).unwrap();
        }
        let dirs = versioned_bin_dirs(root.path());
        let names: Vec<_> = dirs
            .iter()
            .map(|d| d.parent().unwrap().file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["15", "10", "9.6"]);
    }
}
