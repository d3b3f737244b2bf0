use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Config;

/// A configuration problem, located in the file.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed, a key is unknown or a value has the wrong type.
    #[error("{path}:{line}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, including the key.
        message: String,
    },
    /// The values are well-formed but inconsistent.
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the key (0 if unknown).
        line: usize,
        /// The key path, e.g. `identities[1].scram`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and validates a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &text)
}

/// Parses and validates configuration text; `path` is used in error messages.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
    let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_owned(),
        line: e.span().map(|s| line_of(text, s.start)).unwrap_or(0),
        message: e.message().trim().to_owned(),
    })?;
    validate(path, text, &config)?;
    resolve_paths(path, &mut config);
    Ok(config)
}

/// Makes policy paths and the policy cache directory relative to the configuration
/// file's directory (they are written relative to it).
fn resolve_paths(path: &Path, config: &mut Config) {
    let base = path.parent().unwrap_or(Path::new(""));
    for p in &mut config.policies {
        if p.path.is_relative() {
            p.path = base.join(&p.path);
        }
    }
    if let Some(dir) = &mut config.policy_runtime.cache_dir
        && dir.is_relative()
    {
        *dir = base.join(&*dir);
    }
    if let Some(pd) = &mut config.policy_dir {
        if pd.path.is_relative() {
            pd.path = base.join(&pd.path);
        }
        for k in &mut pd.trusted_keys {
            if k.is_relative() {
                *k = base.join(&*k);
            }
        }
    }
    if let Some(r) = &mut config.recording
        && r.path.is_relative()
    {
        r.path = base.join(&r.path);
    }
    if let Some(sh) = &mut config.shadow
        && sh.path.is_relative()
    {
        sh.path = base.join(&sh.path);
    }
    if let Some(ap) = &mut config.approvals
        && ap.path.is_relative()
    {
        ap.path = base.join(&ap.path);
    }
    let rel = |p: &mut std::path::PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    if let Some(j) = &mut config.auth.jwt {
        if let Some(p) = &mut j.jwks_file {
            rel(p);
        }
        if let Some(p) = &mut j.jwks_ca {
            rel(p);
        }
    }
    if let Some(m) = &mut config.auth.mtls {
        rel(&mut m.ca);
    }
    if let Some(d) = &mut config.auth.directory {
        rel(&mut d.path);
    }
    if let Some(audit) = &mut config.audit {
        if audit.dir.is_relative() {
            audit.dir = base.join(&audit.dir);
        }
        if let Some(key) = &mut audit.signing_key
            && key.is_relative()
        {
            *key = base.join(&*key);
        }
    }
}

/// The line of `key` inside the `n`th `[[policies]]` entry (best effort).
fn policy_line(text: &str, n: usize, key: &str) -> usize {
    let Some((start, _)) = text.match_indices("[[policies]]").nth(n) else {
        return 0;
    };
    let rest = &text[start..];
    let end = rest[1..].find("[[").map(|e| e + 1).unwrap_or(rest.len());
    match rest[..end].find(key) {
        Some(i) => line_of(text, start + i),
        None => line_of(text, start),
    }
}

/// Checks `[[policies]]` entries: ids, digests, limits and settings.
pub(super) fn validate_policies(c: &Config) -> Result<(), (usize, String, String)> {
    validate_policy_entries(&c.policies)
}

/// Checks policy entries (from `[[policies]]` or a policy directory's manifest): ids,
/// digests, limits and settings. The error names the entry's index and key.
pub fn validate_policy_entries(
    policies: &[super::PolicyConfig],
) -> Result<(), (usize, String, String)> {
    let mut ids = std::collections::HashSet::new();
    for (i, p) in policies.iter().enumerate() {
        let err = |key: &str, message: String| Err((i, key.to_owned(), message));
        let id_ok = !p.id.is_empty()
            && p.id.len() <= 64
            && p.id
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
        if !id_ok {
            return err(
                "id",
                format!(
                    "{:?} is not a valid policy id (1-64 letters, digits, `-`, `_`, `.`)",
                    p.id
                ),
            );
        }
        if !ids.insert(p.id.as_str()) {
            return err("id", format!("policy {:?} is declared twice", p.id));
        }
        if let Some(d) = &p.sha256
            && (d.len() != 64 || !d.chars().all(|ch| ch.is_ascii_hexdigit()))
        {
            return err("sha256", "expected 64 hexadecimal digits".into());
        }
        if !(1..=60_000).contains(&p.deadline_ms) {
            return err("deadline_ms", "must be between 1 and 60000".into());
        }
        if !(1..=4096).contains(&p.memory_mb) {
            return err("memory_mb", "must be between 1 and 4096".into());
        }
        if p.max_calls_per_instance == 0 {
            return err("max_calls_per_instance", "must be at least 1".into());
        }
        if let Err(e) = super::toml_table_to_json(&p.settings, "settings") {
            return err("settings", e);
        }
    }
    Ok(())
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Finds the line of the `n`th occurrence of `needle` (best effort, for messages).
fn find_line(text: &str, needle: &str, n: usize) -> usize {
    text.match_indices(needle)
        .nth(n)
        .map(|(i, _)| line_of(text, i))
        .unwrap_or(0)
}

fn validate(path: &Path, text: &str, c: &Config) -> Result<(), ConfigError> {
    let invalid = |line: usize, key: String, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line,
        key,
        message,
    };
    let mut seen = std::collections::HashSet::new();
    for (i, id) in c.identities.iter().enumerate() {
        let line = find_line(text, "scram", i);
        if let Some(Err(e)) = id
            .scram
            .as_ref()
            .map(|s| s.parse::<portcullis_auth::ScramVerifier>())
        {
            return Err(invalid(
                line,
                format!("identities[{i}].scram"),
                format!(
                    "{e} (expected SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>; run `portcullis passwd`)"
                ),
            ));
        }
        if id.name.is_empty() {
            return Err(invalid(
                find_line(text, "name", i),
                format!("identities[{i}].name"),
                "must not be empty".into(),
            ));
        }
        if !seen.insert(id.name.as_str()) {
            return Err(invalid(
                find_line(text, &format!("\"{}\"", id.name), 1),
                format!("identities[{i}].name"),
                format!("identity {:?} is declared twice", id.name),
            ));
        }
    }
    if let Err((key, message)) = crate::identity::validate_auth(&c.auth) {
        return Err(invalid(
            find_line(text, key.rsplit('.').next().unwrap_or(&key), 0),
            key,
            message,
        ));
    }
    if c.databases.is_empty() {
        return Err(invalid(
            0,
            "databases".into(),
            "declare at least one database (or \"*\")".into(),
        ));
    }
    if c.server.max_message_bytes < 1024 {
        return Err(invalid(
            find_line(text, "max_message_bytes", 0),
            "server.max_message_bytes".into(),
            "must be at least 1024".into(),
        ));
    }
    if c.policy_dir.is_some() && !c.policies.is_empty() {
        return Err(invalid(
            find_line(text, "[policy_dir]", 0),
            "policy_dir".into(),
            "[policy_dir] and [[policies]] cannot be combined: list the policies in the directory's policies.toml".into(),
        ));
    }
    if let Err((i, key, message)) = validate_policies(c) {
        return Err(invalid(
            policy_line(text, i, &key),
            format!("policies[{i}].{key}"),
            message,
        ));
    }
    if let Some(a) = &c.audit {
        if let Some(pg) = &a.postgres {
            if pg.resolved_url().is_none() {
                return Err(invalid(
                    find_line(text, "[audit.postgres]", 0),
                    "audit.postgres.url".into(),
                    "needs url (or url_env set in the environment)".into(),
                ));
            }
            if pg.table.is_empty()
                || !pg
                    .table
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '.')
            {
                return Err(invalid(
                    find_line(text, "table", 0),
                    "audit.postgres.table".into(),
                    "must be a plain table name (letters, digits, _, an optional schema.)".into(),
                ));
            }
        }
        if a.dir.as_os_str().is_empty() {
            return Err(invalid(
                find_line(text, "dir", 0),
                "audit.dir".into(),
                "must not be empty".into(),
            ));
        }
        if !(1..=60_000).contains(&a.batch_interval_ms) {
            return Err(invalid(
                find_line(text, "batch_interval_ms", 0),
                "audit.batch_interval_ms".into(),
                "must be between 1 and 60000".into(),
            ));
        }
        if a.max_file_bytes != 0 && a.max_file_bytes < 4096 {
            return Err(invalid(
                find_line(text, "max_file_bytes", 0),
                "audit.max_file_bytes".into(),
                "must be 0 (never rotate by size) or at least 4096".into(),
            ));
        }
        if a.signing_key.is_some() && a.checkpoint_interval_secs == 0 {
            return Err(invalid(
                find_line(text, "checkpoint_interval_secs", 0),
                "audit.checkpoint_interval_secs".into(),
                "must be at least 1 when a signing key is configured".into(),
            ));
        }
    }
    if let Some(a) = &c.approvals {
        if a.store == super::ApprovalStoreKind::Postgres && a.resolved_postgres_url().is_none() {
            return Err(invalid(
                find_line(text, "store", 0),
                "approvals.postgres_url".into(),
                "the postgres store needs postgres_url (or postgres_url_env set in the environment)".into(),
            ));
        }
        if !(10..=60_000).contains(&a.poll_ms) {
            return Err(invalid(
                find_line(text, "poll_ms", 0),
                "approvals.poll_ms".into(),
                "must be between 10 and 60000".into(),
            ));
        }
        if a.hold_timeout_ms == 0 || a.default_ttl_seconds == 0 {
            return Err(invalid(
                find_line(text, "[approvals]", 0),
                "approvals.hold_timeout_ms".into(),
                "hold_timeout_ms and default_ttl_seconds must be positive".into(),
            ));
        }
        if !a
            .table
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            || a.table.is_empty()
        {
            return Err(invalid(
                find_line(text, "table", 0),
                "approvals.table".into(),
                "must be a plain identifier (letters, digits, _)".into(),
            ));
        }
        for (i, w) in a.webhooks.iter().enumerate() {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                return Err(invalid(
                    find_line(text, &w.url, 0),
                    format!("approvals.webhooks[{i}].url"),
                    "must be an http:// or https:// URL".into(),
                ));
            }
        }
    }
    if c.upstream.tls == super::UpstreamTlsMode::VerifyFull && c.upstream.ca.is_none() {
        return Err(invalid(
            find_line(text, "tls", 0),
            "upstream.ca".into(),
            "verify-full needs a CA file".into(),
        ));
    }
    if let Some(r) = &c.recording
        && let Err((key, message)) = r.validate()
    {
        return Err(invalid(
            find_line(text, key.rsplit('.').next().unwrap_or(&key), 0),
            key,
            message,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[upstream]
user = "portcullis"
password = "x"

[databases.demo]
"#;

    #[test]
    fn minimal_config_loads_with_defaults() {
        let c = parse(Path::new("p.toml"), GOOD).unwrap();
        assert_eq!(c.server.listen.port(), 6432);
        assert!(c.databases.contains_key("demo"));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = format!("{GOOD}\n[server]\nlisten = \"127.0.0.1:1\"\nmax_conections = 3\n");
        let e = parse(Path::new("p.toml"), &text).unwrap_err().to_string();
        assert!(e.starts_with("p.toml:10:"), "{e}");
        assert!(e.contains("max_conections"), "{e}");
    }

    #[test]
    fn policies_parse_with_defaults_and_relative_paths() {
        let text = format!(
            "{GOOD}\n[policy_runtime]\ncache_dir = \"cache\"\n\n[[policies]]\nid = \"guardrails\"\npath = \"p/g.wasm\"\n[policies.settings]\nprotected = [\"secrets\"]\nnested = {{ a = 1.5, when = 1979-05-27T07:32:00Z }}\n"
        );
        let c = parse(Path::new("/etc/portcullis/p.toml"), &text).unwrap();
        let p = &c.policies[0];
        assert_eq!(p.path, Path::new("/etc/portcullis/p/g.wasm"));
        assert_eq!(p.deadline_ms, 50);
        assert_eq!(p.memory_mb, 64);
        assert_eq!(p.max_calls_per_instance, 100_000);
        assert_eq!(p.mode, crate::config::PolicyMode::Enforce);
        assert!(!c.policy_runtime.allow_function_call);
        assert_eq!(
            c.policy_runtime.cache_dir.as_deref(),
            Some(Path::new("/etc/portcullis/cache"))
        );
        let json: serde_json::Value = serde_json::from_str(&p.settings_json().unwrap()).unwrap();
        assert_eq!(json["protected"][0], "secrets");
        assert_eq!(json["nested"]["a"], 1.5);
        assert_eq!(json["nested"]["when"], "1979-05-27T07:32:00Z");
    }

    #[test]
    fn policy_errors_name_the_key() {
        let base = format!("{GOOD}\n[[policies]]\nid = \"a\"\npath = \"a.wasm\"\n");
        let e = parse(Path::new("p.toml"), &format!("{base}deadline_ms = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("p.toml:11: key `policies[0].deadline_ms`"),
            "{e}"
        );
        let e = parse(Path::new("p.toml"), &format!("{base}sha256 = \"abc\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("key `policies[0].sha256`"), "{e}");
        let e = parse(
            Path::new("p.toml"),
            &format!("{base}\n[[policies]]\nid = \"a\"\npath = \"b.wasm\"\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("p.toml:13: key `policies[1].id`"), "{e}");
        assert!(e.contains("declared twice"), "{e}");
        let e = parse(Path::new("p.toml"), &format!("{base}mdoe = \"monitor\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml:11:") && e.contains("mdoe"), "{e}");
        let e = parse(Path::new("p.toml"), &format!("{base}mode = \"audit\"\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("p.toml:11:") && e.contains("audit"), "{e}");
        let e = parse(
            Path::new("p.toml"),
            &format!("{base}[policies.settings]\nx = nan\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("key `policies[0].settings`"), "{e}");
    }

    #[test]
    fn bad_verifier_is_located() {
        let text = format!("{GOOD}\n[[identities]]\nname = \"alice\"\nscram = \"hunter2\"\n");
        let e = parse(Path::new("p.toml"), &text).unwrap_err().to_string();
        assert!(e.contains("p.toml:10: key `identities[0].scram`"), "{e}");
    }
}
