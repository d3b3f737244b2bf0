//! Runs built policy components through the real host, for policy authors' tests.
//!
//! ```no_run
//! use portcullis::policy::harness::{Harness, Who};
//!
//! let h = Harness::load(&["target/policies/guardrails.wasm".into()], &[r#"{"deny_unparsed": true}"#])
//!     .expect("the policy loads");
//! let d = h.decide(&Who::person("alice", &["analysts"]), "demo", "DO $$ BEGIN END $$");
//! assert!(d.is_deny());
//! ```
//!
//! The components are compiled with the same engine, sandbox and limits as in the
//! gateway (default deadline and memory cap), and every statement of the SQL string is
//! decided the way the relay decides it: the first denial wins.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use portcullis_sql::Analyzer;
use portcullis_wire::backend::TransactionStatus;

use super::{PolicyChain, PolicyError, PolicyMetrics, PolicyRuntime, load_chain_with};
use crate::config::{PolicyConfig, PrincipalKind};
use crate::identity::{AuthMethod, Identity};
use crate::pipeline::{Decision, Gate, Protocol, SessionInfo, StatementContext};

/// An identity for [`Harness::decide`].
#[derive(Debug, Clone)]
pub struct Who {
    /// User name.
    pub user: String,
    /// Person, service or agent.
    pub kind: PrincipalKind,
    /// Groups.
    pub groups: Vec<String>,
    /// For an agent acting for a person: that person.
    pub acting_for: Option<String>,
    /// That person's groups.
    pub acting_for_groups: Vec<String>,
}

impl Who {
    /// A person in `groups`.
    pub fn person(user: &str, groups: &[&str]) -> Who {
        Who::new(user, PrincipalKind::Person, groups)
    }

    /// An identity of any kind.
    pub fn new(user: &str, kind: PrincipalKind, groups: &[&str]) -> Who {
        Who {
            user: user.to_owned(),
            kind,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            acting_for: None,
            acting_for_groups: Vec::new(),
        }
    }

    /// An agent acting for `person`.
    pub fn agent_for(user: &str, person: &str, groups: &[&str]) -> Who {
        Who {
            acting_for: Some(person.to_owned()),
            ..Who::new(user, PrincipalKind::Agent, groups)
        }
    }

    /// The same identity, acting for a person in `groups`.
    pub fn with_person_groups(mut self, groups: &[&str]) -> Who {
        self.acting_for_groups = groups.iter().map(|g| (*g).to_owned()).collect();
        self
    }
}

/// A policy chain loaded from component files, with its own statement analyser.
pub struct Harness {
    chain: PolicyChain,
    analyzer: Analyzer,
}

impl Harness {
    /// Loads `components` (in chain order) with `settings` (JSON, one per component;
    /// missing ones are `{}`). Compiled components are cached under the system temp dir.
    pub fn load(components: &[PathBuf], settings: &[&str]) -> Result<Harness, PolicyError> {
        let mut configs = Vec::with_capacity(components.len());
        for (i, path) in components.iter().enumerate() {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| format!("policy{i}"));
            let mut config = PolicyConfig::new(id.clone(), path.clone());
            let json = settings.get(i).copied().unwrap_or("{}");
            let value: serde_json::Value =
                serde_json::from_str(json).map_err(|e| PolicyError::Settings {
                    id: id.clone(),
                    key: format!("settings[{i}]"),
                    message: format!("not JSON: {e}"),
                })?;
            config.settings = toml::Table::try_from(value).map_err(|e| PolicyError::Settings {
                id,
                key: format!("settings[{i}]"),
                message: format!("not a table: {e}"),
            })?;
            configs.push(config);
        }
        Self::from_configs(&configs)
    }

    /// Loads the policies `configs` describes, in chain order, with their own limits
    /// (deadline, memory) and settings, compiling into the same cache as
    /// [`Harness::load`].
    pub fn from_configs(configs: &[PolicyConfig]) -> Result<Harness, PolicyError> {
        let cache = std::env::temp_dir().join("portcullis-harness-cache");
        let runtime = PolicyRuntime::new(Some(cache), PolicyMetrics::unregistered())?;
        Ok(Harness {
            chain: load_chain_with(&runtime, configs, false)?,
            analyzer: Analyzer::new(1024),
        })
    }

    /// Decides `sql` (every statement of it) for `who` connected to `database`, as a
    /// simple-protocol query outside a transaction.
    pub fn decide(&self, who: &Who, database: &str, sql: &str) -> Decision {
        let session = offline_session(who, database, "portcullis-harness");
        let decided: Result<Decision, std::convert::Infallible> =
            decide_sql(&self.analyzer, &session, sql, |ctx| {
                Ok(self.chain.decide(ctx))
            });
        decided.unwrap_or_else(|never| match never {})
    }

    /// The `authorize` requests [`Harness::decide`] makes for `sql`, one per statement.
    pub fn requests(
        &self,
        who: &Who,
        database: &str,
        sql: &str,
    ) -> Vec<super::bindings::portcullis::policy::types::Request> {
        let session = offline_session(who, database, "portcullis-harness");
        let mut out = Vec::new();
        let built: Result<Decision, std::convert::Infallible> =
            decide_sql(&self.analyzer, &session, sql, |ctx| {
                out.push(super::request::request(ctx));
                Ok(Decision::Allow)
            });
        built.unwrap_or_else(|never| match never {});
        out
    }

    /// The loaded chain (metadata, versions, digests).
    pub fn chain(&self) -> &PolicyChain {
        &self.chain
    }
}

/// A session for deciding statements offline (tests, fixtures, replay).
pub(crate) fn offline_session(who: &Who, database: &str, application: &str) -> SessionInfo {
    SessionInfo {
        session_id: 0,
        identity: Arc::new(Identity {
            name: who.user.clone(),
            kind: who.kind,
            groups: who.groups.clone(),
            auth_method: AuthMethod::ScramSha256,
            role: None,
            acting_for: who.acting_for.clone(),
            acting_for_groups: who.acting_for_groups.clone(),
            expires_at: None,
        }),
        database: database.to_owned(),
        client_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        application_name: application.to_owned(),
    }
}

/// Decides every statement of `sql` as a simple-protocol query outside a transaction,
/// the way the relay does: the first denial (or error) wins.
pub(crate) fn decide_sql<E>(
    analyzer: &Analyzer,
    session: &SessionInfo,
    sql: &str,
    mut decide: impl FnMut(&StatementContext<'_>) -> Result<Decision, E>,
) -> Result<Decision, E> {
    let analysis = analyzer.analyze(sql);
    let mut held = None;
    for statement in &analysis.statements {
        let ctx = StatementContext {
            session,
            analysis: &analysis,
            statement,
            sql,
            protocol: Protocol::Simple,
            transaction: TransactionStatus::Idle,
            verdicts: None,
        };
        match decide(&ctx)? {
            d @ Decision::Deny(_) => return Ok(d),
            d @ Decision::Hold(_) => {
                held.get_or_insert(d);
            }
            Decision::Allow => {}
        }
    }
    Ok(held.unwrap_or(Decision::Allow))
}
