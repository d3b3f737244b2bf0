//! `portcullis policy replay`: a candidate policy set against recorded traffic.
//!
//! Every recorded statement is decided again by the candidate's `authorize` policies
//! and every recorded result set planned again by its masking policies — offline,
//! without touching a database. The report lists each difference from what was
//! recorded (allow→deny, deny→allow, newly held, mask changes per column, errors and
//! traps), per-policy latency, and which differences the author declared expected
//! (an expectations file); anything else makes the command fail, so CI can gate a
//! policy change on it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::candidate::{load_candidate, offline_runtime};
use super::chain::PolicyChain;
use super::evaluate::{Outcome, evaluate};
use super::maskdiff;
use crate::recording::format::{ResultLine, StatementLine};
use crate::recording::read::{Entry, Fidelity, Reader};

/// Longest SQL text shown in a difference.
const MAX_SQL_SHOWN: usize = 200;

/// One difference between the recorded decision and the candidate's.
#[derive(Debug, Clone, Serialize)]
pub struct Difference {
    /// `allow_to_deny`, `deny_to_allow`, `allow_to_hold`, `hold_to_allow`,
    /// `deny_to_hold`, `hold_to_deny`, `mask_changed`, `result_refused`,
    /// `result_unrefused` or `error`.
    pub kind: String,
    /// The recording's line sequence number (the audit event's `seq`).
    pub seq: u64,
    /// Who.
    pub user: String,
    /// Database.
    pub database: String,
    /// The statement's fingerprint.
    pub fingerprint: String,
    /// The SQL (cut to 200 bytes).
    pub sql: String,
    /// What was recorded (`allow`, `deny`, a mask function, `none`).
    pub before: String,
    /// What the candidate decides.
    pub after: String,
    /// The policy responsible for the new outcome (or the old one, for
    /// `deny_to_allow`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The result column, for mask changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The candidate's message (denial, refusal, failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Each candidate policy's verdict on the statement (`allow`, `deny`, `hold`,
    /// `error`), in chain order; empty for result sets.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::recording::format::VerdictRec>,
    /// Declared in the expectations file.
    pub expected: bool,
}

/// Latency of one policy hook over the replay.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyLatency {
    /// Policy id.
    pub policy: String,
    /// `authorize` or `plan-masks`.
    pub hook: String,
    /// Calls.
    pub calls: u64,
    /// Median, µs.
    pub p50_us: f64,
    /// 99th percentile, µs.
    pub p99_us: f64,
    /// Slowest, µs.
    pub max_us: f64,
}

/// The replay report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The recording (or audit file).
    pub recording: PathBuf,
    /// The candidate directory.
    pub policies: PathBuf,
    /// The candidate set's version.
    pub candidate_version: String,
    /// Statements replayed.
    pub statements: u64,
    /// Result sets replayed.
    pub results: u64,
    /// Audit events that are not replayable statements.
    pub skipped: u64,
    /// Statements by where their parse summary came from.
    pub fidelity: BTreeMap<String, u64>,
    /// Differences by kind.
    pub counts: BTreeMap<String, u64>,
    /// Differences declared expected.
    pub expected: u64,
    /// Differences not declared expected.
    pub unexpected: u64,
    /// Expectations that matched no difference.
    pub unmatched_expectations: Vec<String>,
    /// Every difference, in recording order.
    pub differences: Vec<Difference>,
    /// Per policy and hook.
    pub latency: Vec<PolicyLatency>,
    /// Wall time of the replay (without loading), ms.
    pub elapsed_ms: f64,
    /// Statements and result sets per second.
    pub items_per_sec: f64,
}

/// An expectations file: differences the author accepts.
///
/// ```toml
/// [[accept]]
/// kind = "allow_to_deny"      # required
/// user = "alice"              # optional filters: user, fingerprint, policy, column
/// fingerprint = "DELETE FROM orders"
/// max = 5                     # optional: at most this many
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The accepted differences.
    #[serde(default)]
    pub accept: Vec<Accept>,
}

/// One accepted kind of difference.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accept {
    /// The difference kind.
    pub kind: String,
    /// Only for this user.
    #[serde(default)]
    pub user: Option<String>,
    /// Only for this fingerprint.
    #[serde(default)]
    pub fingerprint: Option<String>,
    /// Only for this policy.
    #[serde(default)]
    pub policy: Option<String>,
    /// Only for this result column.
    #[serde(default)]
    pub column: Option<String>,
    /// At most this many.
    #[serde(default)]
    pub max: Option<u64>,
}

impl Accept {
    fn matches(&self, d: &Difference) -> bool {
        self.kind == d.kind
            && self.user.as_ref().is_none_or(|u| *u == d.user)
            && self
                .fingerprint
                .as_ref()
                .is_none_or(|f| *f == d.fingerprint)
            && self
                .policy
                .as_ref()
                .is_none_or(|p| Some(p) == d.policy.as_ref())
            && self
                .column
                .as_ref()
                .is_none_or(|c| Some(c) == d.column.as_ref())
    }

    fn describe(&self) -> String {
        let mut s = self.kind.clone();
        for (k, v) in [
            ("user", &self.user),
            ("fingerprint", &self.fingerprint),
            ("policy", &self.policy),
            ("column", &self.column),
        ] {
            if let Some(v) = v {
                s.push_str(&format!(" {k}={v:?}"));
            }
        }
        s
    }
}

/// Reads an expectations file.
pub fn read_expectations(path: &Path) -> Result<Expectations, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), e.message()))
}

/// What to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// The recording or audit file.
    pub recording: PathBuf,
    /// The candidate policy directory.
    pub policies: PathBuf,
    /// Accepted differences.
    pub expectations: Expectations,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
    /// Worker threads (the policies are called from each; at least 1).
    pub threads: usize,
}

/// Worker threads by default: the available cores, at most 8.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

/// Lines handed to the workers at a time.
const CHUNK: usize = 8192;

/// What one worker made of its lines.
#[derive(Default)]
struct Part {
    statements: u64,
    results: u64,
    skipped: u64,
    items: u64,
    fidelity: BTreeMap<&'static str, u64>,
    diffs: Vec<Difference>,
    timings: Timings,
    error: Option<String>,
}

impl Part {
    fn failed(e: &str) -> Part {
        Part {
            error: Some(e.to_owned()),
            ..Part::default()
        }
    }
}

/// Parses and replays `lines` (in order; stops at the first error).
fn work(reader: &Reader, chain: &PolicyChain, lines: &[(usize, String)]) -> Part {
    let mut part = Part::default();
    for (no, text) in lines {
        let entry = match reader.parse(*no, text) {
            Ok(Some(e)) => e,
            Ok(None) => {
                if reader.is_audit() {
                    part.skipped += 1;
                }
                continue;
            }
            Err(e) => {
                part.error = Some(e);
                return part;
            }
        };
        let done = match entry {
            Entry::Statement(s, fidelity) => {
                part.statements += 1;
                let key = match fidelity {
                    Fidelity::Recording => "recording",
                    Fidelity::AuditFull => "audit_full",
                    Fidelity::AuditRedacted => "audit_redacted",
                    Fidelity::AuditPartial => "audit_partial",
                };
                *part.fidelity.entry(key).or_default() += 1;
                statement(chain, &s, &mut part.timings, &mut part.diffs)
            }
            Entry::Result(r) => {
                part.results += 1;
                result(chain, &r, &mut part.timings, &mut part.diffs)
            }
        };
        if let Err(e) = done {
            part.error = Some(format!("line {no}: {e}"));
            return part;
        }
        part.items += 1;
    }
    part
}

/// Per-policy call times.
#[derive(Default)]
pub(crate) struct Timings(BTreeMap<(usize, String, &'static str), Vec<u32>>);

impl Timings {
    fn merge(&mut self, other: Timings) {
        for (k, mut v) in other.0 {
            self.0.entry(k).or_default().append(&mut v);
        }
    }

    pub(crate) fn add(&mut self, order: usize, policy: &str, hook: &'static str, d: Duration) {
        let ns = u32::try_from(d.as_nanos()).unwrap_or(u32::MAX);
        match self.0.get_mut(&(order, policy.to_owned(), hook)) {
            Some(v) => v.push(ns),
            None => {
                self.0.insert((order, policy.to_owned(), hook), vec![ns]);
            }
        }
    }

    pub(crate) fn summary(mut self) -> Vec<PolicyLatency> {
        self.0
            .iter_mut()
            .map(|((_, policy, hook), v)| {
                v.sort_unstable();
                let q = |p: f64| {
                    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
                    v.get(i).copied().unwrap_or(0) as f64 / 1e3
                };
                PolicyLatency {
                    policy: policy.clone(),
                    hook: (*hook).to_owned(),
                    calls: v.len() as u64,
                    p50_us: q(0.5),
                    p99_us: q(0.99),
                    max_us: v.last().copied().unwrap_or(0) as f64 / 1e3,
                }
            })
            .collect()
    }
}

fn cut(s: &str) -> String {
    if s.len() <= MAX_SQL_SHOWN {
        return s.to_owned();
    }
    let mut end = MAX_SQL_SHOWN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Runs a replay. Errors: the candidate does not load, the recording cannot be read
/// (with file and line).
pub fn replay(opts: &ReplayOptions) -> Result<Report, String> {
    let runtime = offline_runtime()?;
    let candidate = load_candidate(&opts.policies, &runtime)
        .map_err(|e| format!("candidate {}: {e}", opts.policies.display()))?;
    let mut reader = Reader::open(&opts.recording)?;
    let total = std::fs::metadata(&opts.recording)
        .map(|m| m.len())
        .unwrap_or(0);
    let bar = if opts.progress {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "replay {bar:40} {bytes}/{total_bytes} {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut report = Report {
        recording: opts.recording.clone(),
        policies: opts.policies.clone(),
        candidate_version: candidate.version.clone(),
        statements: 0,
        results: 0,
        skipped: 0,
        fidelity: BTreeMap::new(),
        counts: BTreeMap::new(),
        expected: 0,
        unexpected: 0,
        unmatched_expectations: Vec::new(),
        differences: Vec::new(),
        latency: Vec::new(),
        elapsed_ms: 0.0,
        items_per_sec: 0.0,
    };
    let mut timings = Timings::default();
    let started = Instant::now();
    let threads = opts.threads.max(1);
    let mut n = 0u64;
    loop {
        let mut chunk: Vec<(usize, String)> = Vec::with_capacity(CHUNK);
        let mut read_error = None;
        while chunk.len() < CHUNK {
            match reader.next_raw() {
                None => break,
                Some(Ok(line)) => chunk.push(line),
                Some(Err(e)) => {
                    read_error = Some(e);
                    break;
                }
            }
        }
        if chunk.is_empty() && read_error.is_none() {
            break;
        }
        let per = chunk.len().div_ceil(threads).max(1);
        let parts: Vec<Part> = std::thread::scope(|scope| {
            let handles: Vec<_> = chunk
                .chunks(per)
                .map(|slice| {
                    let reader = &reader;
                    let chain = &candidate.chain;
                    scope.spawn(move || work(reader, chain, slice))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Part::failed("a replay worker panicked"))
                })
                .collect()
        });
        for part in parts {
            if let Some(e) = part.error {
                return Err(e);
            }
            report.statements += part.statements;
            report.results += part.results;
            report.skipped += part.skipped;
            for (k, v) in part.fidelity {
                *report.fidelity.entry(k.to_owned()).or_default() += v;
            }
            report.differences.extend(part.diffs);
            timings.merge(part.timings);
            n += part.items;
        }
        if let Some(e) = read_error {
            return Err(e);
        }
        bar.set_position(reader.bytes_read());
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();
    report.elapsed_ms = elapsed.as_secs_f64() * 1e3;
    report.items_per_sec = n as f64 / elapsed.as_secs_f64().max(1e-9);
    report.latency = timings.summary();
    classify(&mut report, &opts.expectations);
    Ok(report)
}

/// Marks each difference expected or not, and counts.
fn classify(report: &mut Report, exp: &Expectations) {
    let mut used = vec![0u64; exp.accept.len()];
    for d in &mut report.differences {
        *report.counts.entry(d.kind.clone()).or_default() += 1;
        let hit = exp
            .accept
            .iter()
            .enumerate()
            .find(|(i, a)| a.matches(d) && a.max.is_none_or(|m| used[*i] < m));
        if let Some((i, _)) = hit {
            used[i] += 1;
            d.expected = true;
            report.expected += 1;
        } else {
            report.unexpected += 1;
        }
    }
    report.unmatched_expectations = exp
        .accept
        .iter()
        .zip(&used)
        .filter(|(_, n)| **n == 0)
        .map(|(a, _)| a.describe())
        .collect();
}

/// The recorded outcome. Until approvals are enabled the gateway denies a statement
/// that needs one, with a message saying so: that is a hold.
fn recorded_outcome(d: &crate::recording::format::DecisionRec) -> &str {
    match d.outcome.as_str() {
        "deny"
            if d.message
                .as_deref()
                .is_some_and(|m| m.starts_with(APPROVAL_DENIAL)) =>
        {
            "hold"
        }
        other => other,
    }
}

/// How the gateway's denial of a statement needing approval starts.
pub(crate) const APPROVAL_DENIAL: &str = "approval required: ";

fn outcome_policy(o: &Outcome) -> Option<String> {
    match o {
        Outcome::Allow => None,
        Outcome::Deny { policy, .. } => Some(policy.clone()),
        Outcome::Hold { policies, .. } => Some(policies.join(",")),
    }
}

fn statement(
    chain: &PolicyChain,
    s: &StatementLine,
    timings: &mut Timings,
    out: &mut Vec<Difference>,
) -> Result<(), String> {
    let req = s.request()?;
    let call = s.identity.call_context();
    let mut e = evaluate(chain, &req, &call, true);
    if e.failed {
        // A CPU deadline is wall-clock epochs: on a busy machine a preempted call can
        // time out. A failure counts only if it happens again.
        e = evaluate(chain, &req, &call, true);
    }
    for v in &e.verdicts {
        let i = chain
            .policies()
            .iter()
            .position(|q| q.id() == v.policy)
            .unwrap_or(0);
        timings.add(i, &v.policy, "authorize", v.elapsed);
    }
    let before = recorded_outcome(&s.decision);
    let after = e.outcome.as_str();
    let diff = |kind: String, detail: Option<String>, policy: Option<String>| Difference {
        kind,
        seq: s.seq,
        user: s.identity.user.clone(),
        database: s.database.clone(),
        fingerprint: s.statement.fingerprint.clone(),
        sql: cut(&s.sql),
        before: before.to_owned(),
        after: after.to_owned(),
        policy,
        column: None,
        detail,
        verdicts: e
            .verdicts
            .iter()
            .map(|v| crate::recording::format::VerdictRec {
                policy: v.policy.clone(),
                verdict: super::evaluate::verdict_name(&v.verdict).to_owned(),
                us: v.elapsed.as_micros() as u64,
            })
            .collect(),
        expected: false,
    };
    if e.failed {
        let failure = e.verdicts.iter().find_map(|v| match &v.verdict {
            super::chain::Verdict::Failed(f) => Some((v.policy.clone(), f.to_string())),
            _ => None,
        });
        let (policy, detail) = failure.unzip();
        out.push(diff("error".into(), detail, policy));
        return Ok(());
    }
    if before != after {
        let policy = if after == "allow" {
            s.decision.policy.clone()
        } else {
            outcome_policy(&e.outcome)
        };
        let detail = match &e.outcome {
            Outcome::Deny { message, .. } => Some(message.clone()),
            Outcome::Hold { reasons, .. } => Some(reasons.join("; ")),
            Outcome::Allow => None,
        };
        out.push(diff(format!("{before}_to_{after}"), detail, policy));
    }
    Ok(())
}

fn result(
    chain: &PolicyChain,
    r: &ResultLine,
    timings: &mut Timings,
    out: &mut Vec<Difference>,
) -> Result<(), String> {
    if r.columns.is_empty() {
        return Ok(());
    }
    let ctx = r.context()?;
    let call = r.identity.call_context();
    let planned = maskdiff::plan(chain, &ctx, &call, |i, policy, d| {
        timings.add(i, policy, "plan-masks", d)
    });
    let recorded: Vec<maskdiff::Mask> = r
        .masks
        .iter()
        .map(|m| (m.column, m.policy.clone(), m.mask.clone()))
        .collect();
    let refused_by = r.refused.as_ref().map(|f| f.policy.as_str());
    let fingerprint = r
        .statement
        .as_ref()
        .map(|s| s.fingerprint.clone())
        .unwrap_or_default();
    for d in maskdiff::compare(r.columns.len(), &recorded, refused_by, &planned) {
        out.push(Difference {
            kind: d.kind.to_owned(),
            seq: r.seq,
            user: r.identity.user.clone(),
            database: r.database.clone(),
            fingerprint: fingerprint.clone(),
            sql: cut(&fingerprint),
            before: d.before,
            after: d.after,
            policy: d.policy,
            column: d.column.map(|i| r.columns[i].name.clone()),
            detail: d.detail,
            verdicts: Vec::new(),
            expected: false,
        });
    }
    Ok(())
}

/// The human-readable report.
pub fn render(report: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "replayed {} statements and {} result sets from {} against {} (version {}) in {:.0} ms ({:.0}/s)",
        report.statements,
        report.results,
        report.recording.display(),
        report.policies.display(),
        report.candidate_version,
        report.elapsed_ms,
        report.items_per_sec
    );
    if let Some(partial) = report.fidelity.get("audit_partial") {
        let _ = writeln!(
            s,
            "note: {partial} audit events held no statement text; they were replayed from kind, fingerprint and tables only"
        );
    }
    if report.differences.is_empty() {
        let _ = writeln!(s, "\nno differences");
    } else {
        let _ = writeln!(
            s,
            "\n{} differences ({} expected, {} unexpected):",
            report.differences.len(),
            report.expected,
            report.unexpected
        );
        for (k, n) in &report.counts {
            let _ = writeln!(s, "  {k:<18} {n}");
        }
        let _ = writeln!(
            s,
            "\n  {:<16} {:<6} {:<10} {:<10} {:<14} {:<12} {:<8} statement",
            "kind", "seq", "user", "before", "after", "policy", "expected"
        );
        for d in report.differences.iter().take(200) {
            let after = match &d.column {
                Some(c) => format!("{} [{c}]", d.after),
                None => d.after.clone(),
            };
            let _ = writeln!(
                s,
                "  {:<16} {:<6} {:<10} {:<10} {:<14} {:<12} {:<8} {}",
                d.kind,
                d.seq,
                d.user,
                d.before,
                after,
                d.policy.as_deref().unwrap_or("-"),
                if d.expected { "yes" } else { "NO" },
                d.sql.replace('\n', " ")
            );
        }
        if report.differences.len() > 200 {
            let _ = writeln!(
                s,
                "  ... {} more (use --json for all)",
                report.differences.len() - 200
            );
        }
    }
    for u in &report.unmatched_expectations {
        let _ = writeln!(s, "note: expected difference not seen: {u}");
    }
    if !report.latency.is_empty() {
        let _ = writeln!(
            s,
            "\n  {:<16} {:<11} {:>9} {:>9} {:>9} {:>9}",
            "policy", "hook", "calls", "p50 µs", "p99 µs", "max µs"
        );
        for l in &report.latency {
            let _ = writeln!(
                s,
                "  {:<16} {:<11} {:>9} {:>9.1} {:>9.1} {:>9.1}",
                l.policy, l.hook, l.calls, l.p50_us, l.p99_us, l.max_us
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diff(kind: &str, user: &str) -> Difference {
        Difference {
            kind: kind.into(),
            seq: 1,
            user: user.into(),
            database: "demo".into(),
            fingerprint: "select ?".into(),
            sql: "select 1".into(),
            before: "allow".into(),
            after: "deny".into(),
            policy: Some("guardrails".into()),
            column: None,
            detail: None,
            verdicts: Vec::new(),
            expected: false,
        }
    }

    fn report(diffs: Vec<Difference>) -> Report {
        Report {
            recording: "r".into(),
            policies: "p".into(),
            candidate_version: "v".into(),
            statements: 0,
            results: 0,
            skipped: 0,
            fidelity: BTreeMap::new(),
            counts: BTreeMap::new(),
            expected: 0,
            unexpected: 0,
            unmatched_expectations: Vec::new(),
            differences: diffs,
            latency: Vec::new(),
            elapsed_ms: 0.0,
            items_per_sec: 0.0,
        }
    }

    #[test]
    fn expectations_match_fields_and_budgets() {
        let exp: Expectations = toml::from_str(
            "[[accept]]\nkind = \"allow_to_deny\"\nuser = \"etl-agent\"\nmax = 1\n\n[[accept]]\nkind = \"mask_changed\"\n",
        )
        .unwrap();
        let mut r = report(vec![
            diff("allow_to_deny", "etl-agent"),
            diff("allow_to_deny", "etl-agent"),
            diff("allow_to_deny", "alice"),
        ]);
        classify(&mut r, &exp);
        assert_eq!(r.expected, 1);
        assert_eq!(r.unexpected, 2);
        assert_eq!(r.counts["allow_to_deny"], 3);
        assert!(r.differences[0].expected && !r.differences[1].expected);
        assert_eq!(r.unmatched_expectations, ["mask_changed"]);
        assert!(toml::from_str::<Expectations>("[[accept]]\nkinds = \"x\"\n").is_err());
    }

    #[test]
    fn percentiles_come_from_sorted_samples() {
        let mut t = Timings::default();
        for us in (1..=100).rev() {
            t.add(0, "g", "authorize", Duration::from_micros(us));
        }
        let mut other = Timings::default();
        other.add(0, "g", "authorize", Duration::from_micros(1000));
        t.merge(other);
        let s = t.summary();
        assert_eq!(s[0].calls, 101);
        assert_eq!(s[0].p50_us, 51.0);
        assert_eq!(s[0].max_us, 1000.0);
    }
}
