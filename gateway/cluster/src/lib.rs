//! Throwaway PostgreSQL clusters for Portcullis tests and `portcullis demo`.
//!
//! [`Cluster::start`] runs `initdb` into a temporary directory, configures the
//! server (127.0.0.1 only, random free port, SCRAM-SHA-256 password auth,
//! optional TLS, `fsync = off`) and starts it with `pg_ctl`; dropping the
//! [`Cluster`] stops the server and deletes the directory. When the process
//! runs as root, the server programs run as the unprivileged `postgres` OS
//! user (PostgreSQL refuses to run as root).
//!
//! ```no_run
//! use portcullis_cluster::{Cluster, ClusterOptions, seed_demo};
//!
//! let cluster = Cluster::start(ClusterOptions::default())?;
//! seed_demo(&cluster, "demo")?;
//! assert_eq!(cluster.psql("demo", "select count(*) from customers")?, "200");
//! println!("connect with {}", cluster.connection_uri("demo"));
//! # Ok::<(), portcullis_cluster::ClusterError>(())
//! ```
//!
//! [`generate_test_pki`] creates a CA, server and client certificates for TLS
//! and mTLS tests.
//!
//! PostgreSQL binaries are located by [`find_pg_bin`]; if there are none the
//! error says how to install them. Servers leaked by a process that died
//! without dropping its clusters (e.g. an interrupted `cargo test`) are
//! stopped and removed by the next [`Cluster::start`]. Unix only.

#![warn(missing_docs)]

pub mod bin;
pub mod cluster;
pub mod error;
pub mod pki;
mod port;
mod psql;
mod reap;
mod runas;
pub mod seed;
mod util;

pub use bin::{find_pg_bin, resolve_pg_bin};
pub use cluster::{Cluster, ClusterOptions, DEFAULT_HBA, HOST, TlsFiles};
pub use error::ClusterError;
pub use pki::{TEST_CLIENT_CN, TestPki, generate_test_pki};
pub use seed::{DEMO_DB, DEMO_SCHEMA_SQL, seed_demo};
pub use util::{quote_ident, quote_literal};
