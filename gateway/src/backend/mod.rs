//! The PostgreSQL side: connecting and logging in with the gateway's own credentials.

mod connect;
mod tls;

pub use connect::{Upstream, UpstreamError, UpstreamTarget, connect, send_cancel};
pub use tls::upstream_tls_connector;
