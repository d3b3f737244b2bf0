//! Tests of the chain, the writer and the verifier against real files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::chain::{CheckpointSigner, verifying_key};
use super::event::{AuditEvent, EventKind, SessionRecord};
use super::verify::{Report, VerifyOptions, verify_files};
use super::writer::{AuditLog, Until, trail_files};
use crate::config::AuditConfig;

fn session(user: &str) -> Arc<SessionRecord> {
    Arc::new(SessionRecord {
        id: 7,
        user: user.into(),
        groups: vec!["analysts".into()],
        principal: "person".into(),
        auth: "scram-sha-256".into(),
        acting_for: None,
        acting_for_groups: Vec::new(),
        role: None,
        client_addr: "127.0.0.1:5000".into(),
        application: "test".into(),
        database: "demo".into(),
    })
}

fn events(n: usize, user: &str) -> Vec<AuditEvent> {
    (0..n)
        .map(|i| {
            let mut e = AuditEvent::for_session(EventKind::Connect, &session(user));
            e.detail = Some(serde_json::json!({"i": i}));
            e
        })
        .collect()
}

/// Writes `n` events in a fresh trail and closes it.
fn trail(dir: &Path, n: usize, cfg: impl FnOnce(&mut AuditConfig)) -> Vec<PathBuf> {
    let mut c = AuditConfig::new(dir);
    cfg(&mut c);
    let log = AuditLog::open(&c, None).unwrap();
    for chunk in events(n, "alice").chunks(7) {
        log.submit(chunk.to_vec(), None);
    }
    log.close();
    trail_files(dir).unwrap()
}

fn verify(files: &[PathBuf]) -> Report {
    verify_files(
        files,
        &VerifyOptions {
            require_sealed: true,
            ..Default::default()
        },
    )
    .unwrap()
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(p: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(p, text).unwrap();
}

fn assert_problem(r: &Report, line: usize, needle: &str) {
    assert!(
        r.problems
            .iter()
            .any(|p| p.line == line && p.message.contains(needle)),
        "expected a problem on line {line} containing {needle:?}, got {:#?}",
        r.problems
    );
}

#[test]
fn a_clean_trail_verifies_and_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 20, |_| {});
    assert_eq!(files.len(), 1);
    let r = verify(&files);
    assert!(r.ok(), "{:#?}", r.problems);
    assert!(r.sealed);
    // start + 20 + stop
    assert_eq!(r.events, 22);
    assert_eq!(r.first_seq, Some(0));
    assert_eq!(r.last_seq, Some(21));
}

#[test]
fn a_modified_event_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 10, |_| {});
    let mut l = lines(&files[0]);
    l[4] = l[4].replace("\"alice\"", "\"mallory\"");
    write_lines(&files[0], &l);
    let r = verify(&files);
    assert_problem(&r, 5, "modified");
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
}

#[test]
fn a_deleted_event_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 10, |_| {});
    let mut l = lines(&files[0]);
    l.remove(3);
    write_lines(&files[0], &l);
    let r = verify(&files);
    assert_problem(&r, 4, "seq 3 is missing");
    assert_eq!(r.problems.len(), 1, "{:#?}", r.problems);
}

#[test]
fn an_inserted_event_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 10, |_| {});
    let mut l = lines(&files[0]);
    // A copy of a real event (valid hash), and a forged one with a fresh hash.
    let copy = l[2].clone();
    l.insert(5, copy);
    write_lines(&files[0], &l);
    let r = verify(&files);
    assert_problem(&r, 6, "inserted, duplicated or reordered");

    let dir2 = tempfile::tempdir().unwrap();
    let f = trail(dir2.path(), 10, |_| {});
    let mut l = lines(&f[0]);
    let mut forged: AuditEvent = serde_json::from_str(&l[3]).unwrap();
    forged.seq = 4;
    forged.detail = Some(serde_json::json!({"forged": true}));
    let line = super::chain::seal(&mut forged);
    l.insert(4, line.trim_end().to_owned());
    write_lines(&f[0], &l);
    let r = verify(&f);
    assert_problem(&r, 5, "replaced or inserted");
}

#[test]
fn reordered_events_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 10, |_| {});
    let mut l = lines(&files[0]);
    l.swap(3, 4);
    write_lines(&files[0], &l);
    let r = verify(&files);
    assert!(!r.ok());
    assert_problem(&r, 4, "missing");
    assert_problem(&r, 5, "inserted, duplicated or reordered");
}

#[test]
fn truncation_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 10, |_| {});
    let text = std::fs::read_to_string(&files[0]).unwrap();
    // Cut in the middle of the last line.
    std::fs::write(&files[0], &text[..text.len() - 20]).unwrap();
    let r = verify(&files);
    assert_problem(&r, 12, "middle of an event");

    // Whole events cut off the end: the trail no longer ends with `stop`.
    let mut l: Vec<String> = text.lines().map(str::to_owned).collect();
    l.truncate(8);
    write_lines(&files[0], &l);
    let r = verify(&files);
    assert_problem(&r, 8, "does not end with a stop event");
}

#[test]
fn rotation_keeps_the_chain_and_truncating_a_sealed_file_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let files = trail(dir.path(), 200, |c| c.max_file_bytes = 4096);
    assert!(files.len() > 3, "expected several files, got {files:?}");
    let r = verify(&files);
    assert!(r.ok(), "{:#?}", r.problems);
    assert_eq!(r.events, 202 + (files.len() as u64 - 1));

    // Deleting a whole middle file.
    let mut missing = files.clone();
    missing.remove(1);
    let r = verify(&missing);
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("sealed with next file")),
        "{:#?}",
        r.problems
    );

    // Cutting the seal and an event off a middle file.
    let mut l = lines(&files[1]);
    let n = l.len();
    l.truncate(n - 2);
    write_lines(&files[1], &l);
    let r = verify(&files);
    assert!(
        r.problems
            .iter()
            .any(|p| p.file == files[1] && p.message.contains("without a rotation seal")),
        "{:#?}",
        r.problems
    );
}

#[test]
fn a_restart_continues_the_chain_and_a_torn_tail_is_repaired() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 5, |_| {});
    // A crash in the middle of a write.
    let files = trail_files(dir.path()).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&files[0])
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":7,\"prev\":\"ab").unwrap();
    drop(f);
    let files = trail(dir.path(), 5, |_| {});
    let r = verify(&files);
    assert!(r.ok(), "{:#?}", r.problems);
    assert_eq!(r.events, 14);
    let l = lines(&files[0]);
    let start: AuditEvent = serde_json::from_str(&l[7]).unwrap();
    assert_eq!(start.kind, EventKind::Start);
    let d = start.detail.unwrap();
    assert_eq!(d["previous_run"], "clean");
    assert_eq!(d["torn_tail_bytes"], 19);
}

#[test]
fn a_restart_after_rotation_continues_in_the_sealed_files_successor() {
    let dir = tempfile::tempdir().unwrap();
    trail(dir.path(), 100, |c| c.max_file_bytes = 4096);
    trail(dir.path(), 100, |c| c.max_file_bytes = 4096);
    let files = trail_files(dir.path()).unwrap();
    let r = verify(&files);
    assert!(r.ok(), "{:#?}", r.problems);
}

#[test]
fn checkpoints_are_signed_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let secret: [u8; 32] = rand::random();
    let key_file = dir.path().join("audit.key");
    std::fs::write(&key_file, hex::encode(secret)).unwrap();
    let trail_dir = dir.path().join("trail");
    let files = trail(&trail_dir, 10, |c| c.signing_key = Some(key_file.clone()));
    let public = verifying_key(
        CheckpointSigner::new(secret)
            .public_key_hex()
            .parse::<String>()
            .map(|h| super::chain::parse_hex_key(&h).unwrap())
            .unwrap(),
    )
    .unwrap();
    let opts = VerifyOptions {
        public_key: Some(public),
        require_sealed: true,
        partial: false,
    };
    let r = verify_files(&files, &opts).unwrap();
    assert!(r.ok(), "{:#?}", r.problems);
    assert_eq!(r.signatures_verified, 1);

    // Another key does not verify them.
    let other = verifying_key(
        super::chain::parse_hex_key(CheckpointSigner::new(rand::random()).public_key_hex())
            .unwrap(),
    )
    .unwrap();
    let r = verify_files(
        &files,
        &VerifyOptions {
            public_key: Some(other),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("not the given public key")),
        "{:#?}",
        r.problems
    );

    // Rewriting the chain and re-hashing everything (a forger without the key) breaks
    // the signature.
    let mut l = lines(&files[0]);
    let mut prev = super::chain::GENESIS.to_owned();
    for line in l.iter_mut() {
        let mut e: AuditEvent = serde_json::from_str(line).unwrap();
        if e.seq == 3 {
            e.detail = Some(serde_json::json!({"i": "forged"}));
        }
        e.prev = prev.clone();
        if let Some(c) = &mut e.checkpoint {
            c.head_hash = prev.clone();
        }
        *line = super::chain::seal(&mut e).trim_end().to_owned();
        prev = e.hash.clone();
    }
    write_lines(&files[0], &l);
    let r = verify_files(&files, &opts).unwrap();
    assert!(
        r.problems
            .iter()
            .any(|p| p.message.contains("signature does not verify")),
        "{:#?}",
        r.problems
    );
}

#[tokio::test]
async fn sync_waits_for_the_disk_and_an_unwritable_sink_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&AuditConfig::new(dir.path()), None).unwrap();
    let ticket = log.submit(events(1, "bob"), Some(Until::Synced));
    log.sync().await.unwrap();
    assert!(log.durability().borrow().through >= ticket);
    let text = std::fs::read_to_string(&trail_files(dir.path()).unwrap()[0]).unwrap();
    assert!(text.contains("\"bob\""));
    assert!(log.healthy());
    log.close();

    // A trail file that is /dev/full: every write fails with ENOSPC.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/full", dir.path().join(super::writer::file_name(0))).unwrap();
    let log = AuditLog::open(&AuditConfig::new(dir.path()), None).unwrap();
    log.submit(events(1, "bob"), Some(Until::Synced));
    assert!(log.sync().await.is_err());
    assert!(!log.healthy());
    log.close();
}

#[test]
fn files_rotate_by_age_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = AuditConfig::new(dir.path());
    c.max_file_age_secs = 1;
    let log = AuditLog::open(&c, None).unwrap();
    log.submit(events(3, "alice"), None);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    log.submit(events(3, "bob"), None);
    log.close();
    let files = trail_files(dir.path()).unwrap();
    assert!(files.len() >= 2, "{files:?}");
    let r = verify(&files);
    assert!(r.ok(), "{:#?}", r.problems);
}

/// The canonical form as first written (a `serde_json` string per key and scalar):
/// trails sealed with it must keep verifying.
fn reference_canonical(v: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(k).unwrap());
                out.push(':');
                reference_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                reference_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap()),
    }
}

#[test]
fn the_canonical_form_is_byte_for_byte_the_original_one() {
    let mut samples = vec![serde_json::json!({
        "z": 1, "a": [true, false, null, -0.5, 1e300, 18446744073709551615u64, -9223372036854775808i64],
        "quote\"back\\slash": "tab\tnew\nline\r\u{8}\u{c}\u{1}\u{1f}\u{7f}",
        "ünïcödé": "日本語 😀 </script>",
        "": {}, "empty": [], "nested": {"b": {"d": 1, "c": [{"y": 2, "x": 3}]}}
    })];
    for mut e in events(3, "alice") {
        e.seq = 7;
        samples.push(serde_json::to_value(&e).unwrap());
    }
    for v in samples {
        let (mut new, mut old) = (String::new(), String::new());
        super::chain::canonical(&v, &mut new);
        reference_canonical(&v, &mut old);
        assert_eq!(new, old);
    }
}

#[test]
fn seal_writes_the_lines_it_always_wrote_for_every_field() {
    use super::event::*;
    use sha2::{Digest, Sha256};
    use std::borrow::Cow;
    // What `seal` computed before it serialised directly: the SHA-256 of the canonical
    // JSON of the whole event, built through a JSON value.
    let reference = |e: &AuditEvent| {
        let mut e = e.clone();
        e.hash.clear();
        let mut body = String::new();
        reference_canonical(&serde_json::to_value(&e).unwrap(), &mut body);
        let hash = hex::encode(Sha256::digest(body.as_bytes()));
        format!("{{\"hash\":\"{hash}\",{}\n", &body[1..])
    };
    // Every record with every optional field set, so each type's field order is checked.
    let mut session = (*session("alice")).clone();
    session.acting_for = Some("bob".into());
    session.acting_for_groups = vec!["dba".into()];
    session.role = Some("analyst".into());
    let mut e = AuditEvent::for_session(EventKind::Statement, &Arc::new(session));
    e.seq = 9;
    e.prev = "ab".repeat(32);
    e.time = "2026-12-01T00:00:00.000000Z".into();
    e.statement = Some(StatementRecord {
        protocol: Cow::Borrowed("extended"),
        kind: Cow::Borrowed("update"),
        fingerprint: "update t set a = ? where id = ?".into(),
        index: 1,
        text: Some("update t set a = $1 where id = $2".into()),
        text_truncated: true,
        params: Some(Arc::from(vec![Some("x\"y".to_owned()), None])),
        tables: vec![TableAccess {
            name: "public.t".into(),
            access: Cow::Borrowed("write"),
        }],
        writes: true,
    });
    e.decision = Some(DecisionRecord {
        verdict: Cow::Borrowed("require_approval"),
        policy: Some("approvals".into()),
        message: Some("needs a DBA".into()),
        sqlstate: Some("42501".into()),
        approval: Some(ApprovalRecord {
            id: "r-1".into(),
            status: "approved".into(),
            reviewers: vec!["bob".into()],
        }),
        verdicts: vec![crate::pipeline::PolicyVerdictRecord {
            policy: "guardrails".into(),
            verdict: "allow".into(),
            mode: Some("monitor".into()),
            micros: 3,
        }],
    });
    e.outcome = Some(OutcomeRecord {
        status: Cow::Borrowed("error"),
        command: Some("UPDATE 1".into()),
        rows: Some(1),
        sqlstate: Some("23505".into()),
        error: Some("duplicate key".into()),
        duration_us: 12,
    });
    e.policies = Some(Arc::from(vec![PolicyRef {
        id: "guardrails".into(),
        name: "guardrails".into(),
        version: "0.1.0".into(),
        sha256: "cd".repeat(32),
        mode: "enforce".into(),
    }]));
    e.masked = vec![crate::pipeline::MaskedColumn {
        column: "customers.email".into(),
        mask: "email".into(),
        policy: "pii-mask".into(),
    }];
    e.detail = Some(serde_json::json!({"z": 1, "a": {"y": [1.5, null, "é"]}}));
    e.checkpoint = Some(CheckpointRecord {
        head_seq: 8,
        head_hash: "ef".repeat(32),
        key: "01".repeat(32),
        signature: "02".repeat(64),
    });
    let want = reference(&e);
    assert_eq!(super::chain::seal(&mut e.clone()), want);
    // And the small events.
    for mut e in events(2, "bob") {
        let want = reference(&e);
        assert_eq!(super::chain::seal(&mut e), want);
    }
    let mut lost = AuditEvent::new(EventKind::Lost);
    lost.detail = Some(serde_json::json!({"events": 3}));
    assert_eq!(super::chain::seal(&mut lost.clone()), reference(&lost));
}

/// Waits until every event up to `ticket` is on disk (no deadline: a lost wake-up
/// hangs the test instead of passing it).
async fn durable_through(log: &AuditLog, ticket: u64) {
    let mut rx = log.durability();
    while rx.borrow_and_update().through < ticket {
        rx.changed().await.unwrap();
    }
}

#[tokio::test]
async fn events_nobody_waits_for_reach_the_disk_without_waking_the_writer_for_each() {
    let dir = tempfile::tempdir().unwrap();
    let log = AuditLog::open(&AuditConfig::new(dir.path()), None).unwrap();
    // Into an idle writer (it sleeps without a deadline), into one that is about to
    // write (its deadline is set), and from a buffer that is drained and reused.
    let mut buf = Vec::new();
    let mut ticket = 0;
    for round in 0..20 {
        buf.extend(events(1 + round % 3, "carol"));
        ticket = log.submit_drain(&mut buf, None);
        assert!(buf.is_empty());
        if round % 4 == 0 {
            durable_through(&log, ticket).await;
        } else if round % 4 == 1 {
            std::thread::sleep(std::time::Duration::from_millis(15));
        }
    }
    durable_through(&log, ticket).await;
    log.close();
    let files = trail_files(dir.path()).unwrap();
    let r = verify(&files);
    assert!(r.ok(), "{:#?}", r.problems);
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let expected: usize = (0..20).map(|round| 1 + round % 3).sum();
    assert_eq!(text.matches("\"carol\"").count(), expected);
}

#[test]
fn sealing_into_reused_buffers_writes_what_seal_writes() {
    let mut scratch = Vec::new();
    let mut out = Vec::new();
    let mut want = String::new();
    for (i, mut e) in events(5, "dave").into_iter().enumerate() {
        e.seq = i as u64;
        e.prev = "cd".repeat(32);
        e.time = "2026-12-01T00:00:00.000000Z".into();
        want.push_str(&super::chain::seal(&mut e.clone()));
        // A left-over hash in the event is replaced, not appended to.
        e.hash = "stale".into();
        super::chain::seal_into(&mut e, &mut scratch, &mut out);
        assert_eq!(e.hash.len(), 64);
    }
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

#[tokio::test]
async fn a_written_wait_is_released_before_the_sync_and_a_synced_one_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = AuditConfig::new(dir.path());
    // No periodic sync during the test: only a synced wait syncs.
    c.batch_interval_ms = 60_000;
    let log = AuditLog::open(&c, None).unwrap();
    let mut rx = log.durability();
    let written = log.submit(events(1, "erin"), Some(Until::Written));
    while rx.borrow_and_update().state_of(written, Until::Written) != Some(true) {
        rx.changed().await.unwrap();
    }
    let d = *rx.borrow();
    assert!(d.written >= written);
    assert!(d.through < written, "written, not synced: {d:?}");
    assert_eq!(d.state_of(written, Until::Synced), None);
    let text = std::fs::read_to_string(&trail_files(dir.path()).unwrap()[0]).unwrap();
    assert!(text.contains("\"erin\""), "in the file before the sync");

    let synced = log.submit(events(1, "frank"), Some(Until::Synced));
    while rx.borrow_and_update().state_of(synced, Until::Synced) != Some(true) {
        rx.changed().await.unwrap();
    }
    assert!(rx.borrow().through >= synced);
    log.close();
}

#[tokio::test]
async fn a_sync_that_fails_on_the_sync_thread_fails_its_waiters_and_the_trail() {
    // /dev/null takes every write and refuses every sync (EINVAL).
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/dev/null", dir.path().join(super::writer::file_name(0))).unwrap();
    let mut c = AuditConfig::new(dir.path());
    c.batch_interval_ms = 60_000;
    let log = AuditLog::open(&c, None).unwrap();
    let mut rx = log.durability();
    let written = log.submit(events(1, "gina"), Some(Until::Written));
    let state = loop {
        if let Some(s) = rx.borrow_and_update().state_of(written, Until::Written) {
            break s;
        }
        rx.changed().await.unwrap();
    };
    assert!(state, "a written wait needs no sync");
    let synced = log.submit(events(1, "hank"), Some(Until::Synced));
    let state = loop {
        if let Some(s) = rx.borrow_and_update().state_of(synced, Until::Synced) {
            break s;
        }
        rx.changed().await.unwrap();
    };
    assert!(!state, "the sync failed, so its waiter is told so");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while log.healthy() {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never noticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    log.close();
}
