//! The gateway's configuration file (`portcullis.toml`).
//!
//! Loading is strict: unknown keys are errors, and every error names the file, the line
//! and the key, so a typo never silently turns a rule off.

mod approvals;
mod auth;
mod load;
mod types;

pub use approvals::*;
pub use auth::*;
pub use load::{ConfigError, load, parse, validate_policy_entries};
pub use types::*;
