//! `portcullis audit search` and `portcullis audit tail`: reading a trail.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::event::AuditEvent;
use super::writer::trail_files;

/// Which events to show.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events of this user.
    pub user: Option<String>,
    /// Only statements touching a table of this name (`name` or `schema.name`).
    pub table: Option<String>,
    /// Only statements with this verdict (`allow` or `deny`).
    pub decision: Option<String>,
    /// Only events of this kind (`statement`, `connect`, ...).
    pub kind: Option<String>,
    /// Only events at or after this time.
    pub since: Option<SystemTime>,
    /// Only events before this time.
    pub until: Option<SystemTime>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &AuditEvent) -> bool {
        if let Some(u) = &self.user
            && e.session.as_ref().is_none_or(|s| &s.user != u)
        {
            return false;
        }
        if let Some(t) = &self.table {
            let hit = e.statement.as_ref().is_some_and(|s| {
                s.tables.iter().any(|x| {
                    x.name.eq_ignore_ascii_case(t)
                        || x.name
                            .rsplit('.')
                            .next()
                            .is_some_and(|n| n.eq_ignore_ascii_case(t))
                })
            });
            if !hit {
                return false;
            }
        }
        if let Some(d) = &self.decision
            && e.decision.as_ref().is_none_or(|x| &x.verdict != d)
        {
            return false;
        }
        if let Some(k) = &self.kind
            && e.kind.as_str() != k
        {
            return false;
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(t) = humantime::parse_rfc3339_weak(&e.time) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t >= u) {
                return false;
            }
        }
        true
    }
}

/// Parses a time for `--since`/`--until`: RFC 3339 (`2026-12-01T08:00:00Z`, the
/// offset optional) or an age (`15m`, `2h`, `1day`) meaning that long ago.
pub fn parse_time(s: &str) -> anyhow::Result<SystemTime> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    let ago = humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is neither an RFC 3339 time nor a duration like 15m"))?;
    Ok(SystemTime::now() - ago)
}

/// The trail files named by `paths` (directories expand to their trail files).
pub fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(trail_files(p).with_context(|| format!("cannot list {}", p.display()))?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads every parseable event of `files` (unparseable lines are skipped: `verify`
/// reports them).
pub fn read_events(files: &[PathBuf], mut f: impl FnMut(&str, AuditEvent)) -> anyhow::Result<()> {
    for path in files {
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line?;
            if let Ok(e) = serde_json::from_str::<AuditEvent>(&line) {
                f(&line, e);
            }
        }
    }
    Ok(())
}

/// The header of the table output.
pub fn table_header() -> String {
    format!(
        "{:<27} {:>8} {:<13} {:<10} {:<8} {:<6} {:<22} {:>6} {:<6} {}",
        "TIME", "SEQ", "KIND", "USER", "DB", "VERDICT", "POLICY", "ROWS", "STATE", "STATEMENT"
    )
}

/// One event as a table row.
pub fn table_row(e: &AuditEvent) -> String {
    let user = e.session.as_ref().map_or("-", |s| s.user.as_str());
    let db = e.session.as_ref().map_or("-", |s| s.database.as_str());
    let verdict = e.decision.as_ref().map_or("-", |d| &*d.verdict);
    let policy = e
        .decision
        .as_ref()
        .and_then(|d| d.policy.as_deref())
        .unwrap_or("-");
    let rows = e
        .outcome
        .as_ref()
        .and_then(|o| o.rows)
        .map_or("-".to_owned(), |r| r.to_string());
    let state = e
        .outcome
        .as_ref()
        .and_then(|o| o.sqlstate.as_deref())
        .unwrap_or("-");
    let what = match &e.statement {
        Some(s) => s.text.clone().unwrap_or_else(|| s.fingerprint.clone()),
        None => e.detail.as_ref().map(|d| d.to_string()).unwrap_or_default(),
    };
    let what: String = what.replace('\n', " ").chars().take(80).collect();
    format!(
        "{:<27} {:>8} {:<13} {:<10} {:<8} {:<6} {:<22} {:>6} {:<6} {}",
        e.time,
        e.seq,
        e.kind.as_str(),
        user,
        db,
        verdict,
        policy,
        rows,
        state,
        what
    )
}

/// Prints the last `n` events of the trail in `dir`, then (with `follow`) every new
/// event as it is written, across rotations, until the process is stopped.
pub fn tail(dir: &Path, n: usize, follow: bool, json: bool, filter: &Filter) -> anyhow::Result<()> {
    let out = std::io::stdout();
    let print = |line: &str, e: &AuditEvent| {
        let mut o = out.lock();
        let _ = if json {
            writeln!(o, "{line}")
        } else {
            writeln!(o, "{}", table_row(e))
        };
        let _ = o.flush();
    };
    if !json {
        println!("{}", table_header());
    }
    let files = trail_files(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut last: std::collections::VecDeque<(String, AuditEvent)> = Default::default();
    read_events(&files, |line, e| {
        if filter.matches(&e) {
            last.push_back((line.to_owned(), e));
            if last.len() > n {
                last.pop_front();
            }
        }
    })?;
    for (line, e) in &last {
        print(line, e);
    }
    if !follow {
        return Ok(());
    }
    let mut current = files.last().cloned();
    let mut offset = current
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .map_or(0, |m| m.len());
    let mut partial = String::new();
    loop {
        let files = trail_files(dir).unwrap_or_default();
        if current.is_none() {
            current = files.first().cloned();
            offset = 0;
        }
        let Some(path) = current.clone() else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        let mut grew = false;
        if let Ok(mut f) = std::fs::File::open(&path) {
            use std::io::{Read, Seek, SeekFrom};
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            if len > offset && f.seek(SeekFrom::Start(offset)).is_ok() {
                let mut buf = String::new();
                if f.read_to_string(&mut buf).is_ok() {
                    offset += buf.len() as u64;
                    partial.push_str(&buf);
                    grew = true;
                    while let Some(i) = partial.find('\n') {
                        let line: String = partial.drain(..=i).collect();
                        let line = line.trim_end();
                        if let Ok(e) = serde_json::from_str::<AuditEvent>(line)
                            && filter.matches(&e)
                        {
                            print(line, &e);
                        }
                    }
                }
            }
        }
        if !grew {
            // Move on once a newer file exists and this one is finished.
            if let Some(next) = files.iter().find(|f| **f > path) {
                current = Some(next.clone());
                offset = 0;
                partial.clear();
                continue;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
