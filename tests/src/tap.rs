//! A TCP tap between a client and the gateway that records every byte the gateway
//! sends, so a test can assert that a value never reached the client in any form
//! (row, notice, error, COPY data).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{build_uri, password_for};

/// A listening tap forwarding to one address.
pub struct Tap {
    port: u16,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    /// Starts a tap forwarding every connection to `target`.
    pub async fn start(target: SocketAddr) -> Tap {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("tap listens");
        let port = listener.local_addr().expect("tap address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen2 = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let seen = Arc::clone(&seen2);
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        let _ = sw.shutdown().await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        seen.lock().expect("tap lock").extend_from_slice(&buf[..n]);
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = cw.shutdown().await;
                    up.abort();
                });
            }
        });
        Tap { port, seen }
    }

    /// A URI for `user` (demo password) to the `demo` database through the tap.
    pub fn uri(&self, user: &str) -> String {
        self.uri_db(user, "demo")
    }

    /// A URI for `user` (demo password) to database `db` through the tap.
    pub fn uri_db(&self, user: &str, db: &str) -> String {
        build_uri(
            user,
            password_for(user),
            "127.0.0.1",
            self.port,
            db,
            "sslmode=disable",
        )
    }

    /// Every byte sent to clients so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.seen.lock().expect("tap lock").clone()
    }
}

/// Panics if any of `needles` occurs in `haystack` (naming `what`).
pub fn assert_no_leak(haystack: &[u8], needles: &[String], what: &str) {
    let mut by_len: std::collections::BTreeMap<usize, std::collections::HashSet<&[u8]>> =
        Default::default();
    for n in needles {
        by_len.entry(n.len()).or_default().insert(n.as_bytes());
    }
    for (len, set) in &by_len {
        if *len == 0 || haystack.len() < *len {
            continue;
        }
        for w in haystack.windows(*len) {
            if set.contains(w) {
                panic!(
                    "{what}: the plain sensitive value {:?} reached the masked client",
                    String::from_utf8_lossy(w)
                );
            }
        }
    }
}
