//! The client side: accepting connections, TLS, login, and the relay loop.

mod connection;
mod login;
mod relay_io;
mod tls;

pub use connection::serve_connection;
pub use login::{Login, LoginEvent};
pub use tls::server_tls_acceptor;
