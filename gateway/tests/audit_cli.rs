//! `portcullis audit verify|search|keygen` as a user runs them (the built binary).

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use portcullis::audit::writer::trail_files;
use portcullis::audit::{AuditEvent, AuditLog, EventKind, SessionRecord};
use portcullis::config::AuditConfig;

fn portcullis(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .output()
        .expect("running portcullis")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_trail(dir: &Path, key: Option<&Path>) {
    let mut cfg = AuditConfig::new(dir);
    cfg.signing_key = key.map(Path::to_owned);
    let log = AuditLog::open(&cfg, None).unwrap();
    for (i, user) in ["alice", "bob", "alice"].iter().enumerate() {
        let s = Arc::new(SessionRecord {
            id: i as u64,
            user: (*user).into(),
            groups: vec![],
            principal: "person".into(),
            auth: "scram-sha-256".into(),
            acting_for: None,
            acting_for_groups: Vec::new(),
            role: None,
            client_addr: "127.0.0.1:1".into(),
            application: "cli-test".into(),
            database: "demo".into(),
        });
        log.record(AuditEvent::for_session(EventKind::Connect, &s));
    }
    log.close();
}

#[test]
fn verify_search_and_keygen() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("audit.key");
    let o = portcullis(&["audit", "keygen", key.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    let public = dir.path().join("audit.pub");
    assert!(public.is_file());
    let trail = dir.path().join("trail");
    write_trail(&trail, Some(&key));

    let t = trail.to_str().unwrap();
    let p = public.to_str().unwrap();
    let o = portcullis(&["audit", "verify", "--sealed", "--public-key", p, t]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("1 signatures verified"), "{}", text(&o));

    let o = portcullis(&["audit", "search", t, "--user", "alice", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let lines: Vec<AuditEvent> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|e| e.session.as_ref().unwrap().user == "alice")
    );
    let o = portcullis(&["audit", "search", t, "--kind", "connect", "--since", "1h"]);
    assert!(text(&o).contains("(3 events)"), "{}", text(&o));

    let o = portcullis(&["audit", "tail", t, "-n", "2", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let tail: Vec<AuditEvent> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[1].kind, EventKind::Stop);

    // Tampering: bob becomes mallory on line 3.
    let file = &trail_files(&trail).unwrap()[0];
    let body = std::fs::read_to_string(file).unwrap();
    std::fs::write(file, body.replacen("\"bob\"", "\"mallory\"", 1)).unwrap();
    let o = portcullis(&["audit", "verify", "--public-key", p, t]);
    assert!(!o.status.success());
    let out = text(&o);
    assert!(
        out.contains(&format!("{}:3 (seq 2)", file.display())) && out.contains("modified"),
        "{out}"
    );
}
