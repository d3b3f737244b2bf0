//! Reading recordings — and audit trails, which replay where they hold enough.
//!
//! Both are JSON lines; the first line tells them apart (a recording starts with its
//! header, an audit file with a chained event). Every error names the file and line.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use portcullis_sql::Analyzer;

use super::format::{
    DecisionRec, FORMAT_NAME, FORMAT_VERSION, Header, IdentityRec, Line, ResultLine, StatementLine,
    SummaryRec, TableRec,
};
use crate::audit::AuditEvent;

/// Where a replayed statement's parse summary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fidelity {
    /// A recording: the request exactly as the policies saw it.
    Recording,
    /// An audit event whose text parses as is (the SQL as sent, or redacted text
    /// without literals): re-analysed (view columns not completed).
    AuditFull,
    /// An audit event with literals redacted: re-analysed with `NULL` for each `?`.
    AuditRedacted,
    /// An audit event with kind, fingerprint and tables only (no columns, functions).
    AuditPartial,
}

/// One replayable item.
#[derive(Debug, Clone)]
pub enum Entry {
    /// A statement.
    Statement(Box<StatementLine>, Fidelity),
    /// A result set.
    Result(Box<ResultLine>),
}

/// A recording or audit file, read line by line.
pub struct Reader {
    path: PathBuf,
    lines: std::io::Lines<std::io::BufReader<std::fs::File>>,
    line_no: usize,
    audit: Option<bool>,
    analyzer: Analyzer,
    bytes: u64,
    /// Audit events that are not replayable statements (connect, denied by the
    /// audit sink, function calls, ...).
    pub skipped: u64,
}

impl Reader {
    /// Opens `path`.
    pub fn open(path: &Path) -> Result<Reader, String> {
        let f = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Reader {
            path: path.to_owned(),
            lines: std::io::BufReader::with_capacity(1 << 20, f).lines(),
            line_no: 0,
            audit: None,
            analyzer: Analyzer::new(4096),
            bytes: 0,
            skipped: 0,
        })
    }

    /// Bytes read so far (for a progress bar).
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// True once the first line showed an audit trail.
    pub fn is_audit(&self) -> bool {
        self.audit == Some(true)
    }

    fn err(&self, line: usize, msg: impl std::fmt::Display) -> String {
        format!("{}:{line}: {msg}", self.path.display())
    }

    /// The next non-empty line and its number. The first one tells a recording from
    /// an audit trail.
    pub fn next_raw(&mut self) -> Option<Result<(usize, String), String>> {
        loop {
            let text = match self.lines.next()? {
                Ok(t) => t,
                Err(e) => {
                    self.line_no += 1;
                    return Some(Err(self.err(self.line_no, format!("cannot read: {e}"))));
                }
            };
            self.line_no += 1;
            self.bytes += text.len() as u64 + 1;
            if text.trim().is_empty() {
                continue;
            }
            if self.audit.is_none() {
                let value: serde_json::Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(e) => return Some(Err(self.json_err(self.line_no, &e))),
                };
                if value.get("format").is_some() {
                    self.audit = Some(false);
                } else if value.get("prev").is_some() && value.get("kind").is_some() {
                    self.audit = Some(true);
                } else {
                    return Some(Err(self.err(
                        self.line_no,
                        format!(
                            "neither a recording (header line with \"format\": \"{FORMAT_NAME}\") nor an audit trail"
                        ),
                    )));
                }
            }
            return Some(Ok((self.line_no, text)));
        }
    }

    fn json_err(&self, line: usize, e: &serde_json::Error) -> String {
        if e.is_eof() {
            self.err(line, format!("truncated line (incomplete JSON: {e})"))
        } else {
            self.err(line, format!("not valid JSON: {e}"))
        }
    }

    /// Parses line `line` (from [`Reader::next_raw`]): `Ok(None)` for a header or an
    /// audit event that is not a replayable statement. Callable from many threads.
    pub fn parse(&self, line: usize, text: &str) -> Result<Option<Entry>, String> {
        if self.audit == Some(true) {
            let event: AuditEvent =
                serde_json::from_str(text).map_err(|e| self.json_err(line, &e))?;
            return Ok(self.audit_entry(&event));
        }
        // Fast paths for the writer's own layout (`type` first).
        if text.starts_with("{\"type\":\"statement\"") {
            let s: StatementLine =
                serde_json::from_str(text).map_err(|e| self.json_err(line, &e))?;
            s.request().map_err(|e| self.err(line, e))?;
            return Ok(Some(Entry::Statement(Box::new(s), Fidelity::Recording)));
        }
        if text.starts_with("{\"type\":\"result\"") {
            let r: ResultLine = serde_json::from_str(text).map_err(|e| self.json_err(line, &e))?;
            r.context().map_err(|e| self.err(line, e))?;
            return Ok(Some(Entry::Result(Box::new(r))));
        }
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| self.json_err(line, &e))?;
        if value.get("format").is_some() {
            let h: Header = serde_json::from_value(value)
                .map_err(|e| self.err(line, format!("bad header: {e}")))?;
            if h.format != FORMAT_NAME {
                return Err(self.err(line, format!("unknown format \"{}\"", h.format)));
            }
            if h.version > FORMAT_VERSION {
                return Err(self.err(
                    line,
                    format!(
                        "recording format version {} is newer than this gateway reads ({FORMAT_VERSION})",
                        h.version
                    ),
                ));
            }
            return Ok(None);
        }
        let parsed: Line =
            serde_json::from_value(value).map_err(|e| self.err(line, format!("bad line: {e}")))?;
        Ok(Some(match parsed {
            Line::Statement(s) => {
                s.request().map_err(|e| self.err(line, e))?;
                Entry::Statement(s, Fidelity::Recording)
            }
            Line::Result(r) => {
                r.context().map_err(|e| self.err(line, e))?;
                Entry::Result(r)
            }
        }))
    }

    /// The statement of an audit event, when it has one a policy decided.
    fn audit_entry(&self, e: &AuditEvent) -> Option<Entry> {
        let (Some(session), Some(st), Some(decision)) = (&e.session, &e.statement, &e.decision)
        else {
            return None;
        };
        let gateway_rule = decision
            .policy
            .as_deref()
            .is_some_and(|p| p.starts_with("portcullis:"));
        if st.protocol == "function_call" || gateway_rule {
            return None;
        }
        let identity = IdentityRec {
            user: session.user.clone(),
            kind: session.principal.clone(),
            groups: session.groups.clone(),
            acting_for: session.acting_for.clone(),
            acting_for_groups: session.acting_for_groups.clone(),
            auth: session.auth.clone(),
            client_addr: session.client_addr.clone(),
            application: session.application.clone(),
        };
        let partial = || SummaryRec {
            kind: st.kind.to_string(),
            leading_keyword: String::new(),
            fingerprint: st.fingerprint.clone(),
            tables: st
                .tables
                .iter()
                .map(|t| {
                    let (schema, name) = match t.name.split_once('.') {
                        Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
                        None => (None, t.name.clone()),
                    };
                    TableRec {
                        schema,
                        name,
                        access: t.access.to_string(),
                    }
                })
                .collect(),
            columns: Vec::new(),
            functions: Vec::new(),
            has_where: None,
            copy: None,
            parse_error: None,
            multi_statement: false,
            index: st.index as u32,
        };
        let analysed = |text: &str| -> Option<SummaryRec> {
            let a = self.analyzer.analyze(text);
            let s = a.statements.get(st.index)?;
            if s.parse_error.is_some() && st.kind != "unparsed" {
                return None;
            }
            let w = crate::policy::request::statement(s, text, a.statements.len() > 1, st.index);
            Some(SummaryRec::from_wit(&w))
        };
        // `full` text parses as is; `redacted` text has a `?` for every literal and
        // parses with `NULL` in their place; without text only the kind, the
        // fingerprint and the tables are known.
        let (summary, sql, fidelity) = match &st.text {
            Some(text) if !st.text_truncated => match analysed(text) {
                Some(s) => (s, text.clone(), Fidelity::AuditFull),
                None if text.contains('?') => match analysed(&text.replace('?', "NULL")) {
                    Some(mut s) => {
                        s.fingerprint = st.fingerprint.clone();
                        (s, text.clone(), Fidelity::AuditRedacted)
                    }
                    None => (partial(), text.clone(), Fidelity::AuditPartial),
                },
                None => (partial(), text.clone(), Fidelity::AuditPartial),
            },
            _ => (partial(), st.fingerprint.clone(), Fidelity::AuditPartial),
        };
        let line = StatementLine {
            seq: e.seq,
            time: e.time.clone(),
            session: session.id,
            identity,
            database: session.database.clone(),
            protocol: st.protocol.to_string(),
            transaction: "idle".into(),
            sql,
            statement: summary,
            params: st.params.as_ref().map(|p| p.to_vec()),
            binary_params: Vec::new(),
            decision: DecisionRec {
                // A statement that waited for an approval was held by the gate,
                // whatever the reviewer then decided.
                outcome: if decision.approval.is_some() {
                    "hold"
                } else if decision.verdict == "deny" {
                    "deny"
                } else {
                    "allow"
                }
                .into(),
                policy: decision.policy.clone(),
                message: decision.message.clone(),
                sqlstate: decision.sqlstate.clone(),
            },
            verdicts: Vec::new(),
        };
        Some(Entry::Statement(Box::new(line), fidelity))
    }
}

impl Iterator for Reader {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (line, text) = match self.next_raw()? {
                Ok(l) => l,
                Err(e) => return Some(Err(e)),
            };
            match self.parse(line, &text) {
                Ok(Some(entry)) => return Some(Ok(entry)),
                Ok(None) => {
                    if self.is_audit() {
                        self.skipped += 1;
                    }
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<Entry>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, text).unwrap();
        Reader::open(&path)?.collect()
    }

    const HEADER: &str = r#"{"format":"portcullis-recording","version":1,"started":"-","gateway":"-","sample_rows":0}"#;
    const STATEMENT: &str = r#"{"type":"statement","seq":1,"time":"-","session":1,"identity":{"user":"a","kind":"person"},"database":"demo","protocol":"simple","transaction":"idle","sql":"select 1","statement":{"kind":"select","fingerprint":"select ?"},"decision":{"outcome":"allow"}}"#;

    #[test]
    fn recordings_read_with_line_numbers() {
        assert_eq!(
            read(&format!("{HEADER}\n{STATEMENT}\n\n{STATEMENT}\n"))
                .unwrap()
                .len(),
            2
        );
        let e = read(&format!(
            "{HEADER}\n{STATEMENT}\n{{\"type\":\"statement\"}}\n"
        ))
        .unwrap_err();
        assert!(e.contains(":3: "), "{e}");
        let e = read(&format!("{HEADER}\n{}", &STATEMENT[..40])).unwrap_err();
        assert!(e.contains(":2: truncated line"), "{e}");
        // Version 1 (no parameters) still reads; so does the current version.
        let current = HEADER.replace("\"version\":1", "\"version\":2");
        assert_eq!(read(&format!("{current}\n{STATEMENT}\n")).unwrap().len(), 1);
        let newer = HEADER.replace("\"version\":1", "\"version\":9");
        let e = read(&format!("{newer}\n")).unwrap_err();
        assert!(e.contains("version 9 is newer"), "{e}");
        let bad_kind = STATEMENT.replace("\"kind\":\"select\"", "\"kind\":\"selekt\"");
        let e = read(&format!("{HEADER}\n{bad_kind}\n")).unwrap_err();
        assert!(e.contains(":2: unknown statement kind"), "{e}");
    }
}
