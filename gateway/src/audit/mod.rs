//! The tamper-evident audit trail.
//!
//! One JSON object per line ([`AuditEvent`]) for every statement (decided, run or
//! denied) and every connection event (connect, auth failure, disconnect) and gateway
//! event (start, stop, policy load, rotation, signed checkpoints).
//!
//! - **Durability.** Events of statements that may change data are on disk before the
//!   client sees their CommandComplete: the relay marks where the client's output must
//!   wait, the I/O layer holds it until the writer reports the event durable (group
//!   commit, see [`writer`]); inside a transaction block, until it is written, and
//!   the block's COMMIT until all are synced ([`Until`]). Other events are batched and
//!   written off the session task without a system call per statement.
//! - **Tamper evidence.** Events are numbered and hash-chained ([`chain`]) across file
//!   rotation and restarts; optional checkpoints are signed with Ed25519.
//!   [`verify::verify_files`] finds modified, deleted, inserted, reordered and
//!   truncated events and says where.
//! - **Fail closed.** While the trail cannot be written, statements other than
//!   transaction control are denied with SQLSTATE 58030 (unless `fail_open`); a
//!   result whose event could not be written is never released to the client.

pub mod chain;
pub mod cli;
pub mod event;
pub mod pg_sink;
pub mod queued;
pub mod record;
mod recover;
pub mod search;
mod syncer;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod tests;

pub use event::{
    ApprovalRecord, AuditEvent, CheckpointRecord, DecisionRecord, EventKind, OutcomeRecord,
    PolicyRef, SessionRecord, StatementRecord, TableAccess,
};
pub use queued::{Queued, StatementEvent, TextSource};
pub use record::{AuditContext, StatementFacts};
pub use writer::{AuditLog, Durability, Until};
