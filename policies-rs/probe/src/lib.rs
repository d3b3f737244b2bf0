//! # probe — an authorize-only test policy, FOR TESTS ONLY
//!
//! Denies (SQLSTATE 42501) every statement whose SQL or one of whose bound text
//! parameters contains `trigger` when `behaviour = "deny"`, panics on them with `behaviour = "panic"`, and allows
//! everything else. `behaviour = "reject-settings"` fails `configure`. It implements
//! only `authorize`, so it can be shipped through a policy directory (which refuses
//! masking policies). Build: `bash policies-rs/build.sh` → `target/policies/probe.wasm`.

#![warn(missing_docs)]

use portcullis_sdk::{Decision, ParamValue, Policy, Request};
use serde::Deserialize;

/// What the policy does with triggering statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// Allow everything.
    #[default]
    Allow,
    /// Deny triggering statements.
    Deny,
    /// Panic (trap) on triggering statements.
    Panic,
    /// Reject the settings in `configure`.
    RejectSettings,
}

/// The settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The behaviour.
    pub behaviour: Behaviour,
    /// The marker that triggers it.
    pub trigger: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            behaviour: Behaviour::Allow,
            trigger: "/*probe*/".to_owned(),
        }
    }
}

/// The policy.
#[derive(Debug)]
pub struct Probe(Settings);

impl Policy for Probe {
    type Settings = Settings;

    fn configure(settings: Settings) -> Result<Self, String> {
        if settings.behaviour == Behaviour::RejectSettings {
            return Err("probe test policy rejects its settings".to_owned());
        }
        Ok(Probe(settings))
    }

    fn authorize(&self, req: &Request) -> Decision {
        let trigger = self.0.trigger.as_str();
        let in_params = req.params.iter().flatten().any(|p| match p {
            ParamValue::Text(t) => t.contains(trigger),
            _ => false,
        });
        if !(req.statement.sql.contains(trigger) || in_params) {
            return Decision::Allow;
        }
        match self.0.behaviour {
            Behaviour::Deny => Decision::deny("denied by the probe test policy"),
            Behaviour::Panic => panic!("probe test policy panics"),
            _ => Decision::Allow,
        }
    }
}

portcullis_sdk::export_policy!(Probe, hooks: [authorize]);
