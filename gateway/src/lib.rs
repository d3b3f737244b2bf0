//! Portcullis: a governance gateway for PostgreSQL.
//!
//! Clients connect to the gateway as verified identities; each statement is analysed and
//! decided before it reaches PostgreSQL, and each result row passes a rewriting point on
//! its way back. The byte-level protocol lives in `portcullis-wire`, statement analysis
//! in `portcullis-sql`, authentication in `portcullis-auth`; this crate holds the
//! socket-free session relay ([`session`]) and the tokio I/O around it.

pub mod admin;
pub mod approvals;
pub mod audit;
pub mod backend;
pub mod cancel;
pub mod cli;
pub mod config;
pub mod demo;
pub mod frontend;
pub mod identity;
pub mod masking;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod recording;
pub mod server;
pub mod session;
pub mod stream;
