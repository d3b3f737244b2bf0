//! Routing CancelRequests: clients get the gateway's own cancel keys, mapped to the
//! upstream backend that serves them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_wire::CancelKey;

/// The cancel key the gateway handed a client (never a server's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(pub CancelKey);

/// The cancel key of the upstream backend serving a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpstreamKey(pub CancelKey);

/// Where to send a cancel for one session.
#[derive(Debug, Clone)]
pub struct CancelTarget {
    /// Upstream host.
    pub host: String,
    /// Upstream port.
    pub port: u16,
    /// The backend's key.
    pub key: UpstreamKey,
    /// Bumped on every cancel request, so the session can withdraw a statement held
    /// at the gateway (which PostgreSQL has not seen).
    pub interrupt: Arc<tokio::sync::watch::Sender<u64>>,
}

/// Live sessions by client key.
#[derive(Debug, Default)]
pub struct CancelRegistry {
    sessions: Mutex<HashMap<ClientKey, CancelTarget>>,
}

impl CancelRegistry {
    /// Registers a session under a fresh random client key; the returned guard removes it.
    pub fn register(self: &Arc<Self>, target: CancelTarget) -> CancelGuard {
        let mut map = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let key = loop {
            let k = ClientKey(CancelKey {
                pid: rand::random::<i32>() & 0x3fff_ffff,
                secret: rand::random(),
            });
            if !map.contains_key(&k) {
                break k;
            }
        };
        map.insert(key, target);
        CancelGuard {
            registry: Arc::clone(self),
            key,
        }
    }

    /// The upstream target for a client key, if the session is still open.
    pub fn lookup(&self, key: ClientKey) -> Option<CancelTarget> {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }
}

/// Keeps a session's cancel key registered while it lives.
#[derive(Debug)]
pub struct CancelGuard {
    registry: Arc<CancelRegistry>,
    key: ClientKey,
}

impl CancelGuard {
    /// The key to hand the client in BackendKeyData.
    pub fn key(&self) -> ClientKey {
        self.key
    }

    /// Changes whenever the client sends a cancel request.
    pub fn interrupts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.registry
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.key)
            .map(|t| t.interrupt.subscribe())
            .unwrap_or_else(|| tokio::sync::watch::Sender::new(0).subscribe())
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.registry
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}
