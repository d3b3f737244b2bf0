//! Picking free TCP ports for clusters.
//!
//! A port is chosen by binding `127.0.0.1:0` and reading back what the kernel
//! gave us. Ports handed out to live clusters of this process are remembered so
//! two clusters started at the same moment never get the same one; collisions
//! with other processes are handled by the caller retrying on bind failures.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, MutexGuard};

use crate::error::{ClusterError, Result};

/// Ports reserved by clusters of this process.
static RESERVED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

fn reserved() -> MutexGuard<'static, BTreeSet<u16>> {
    // A panic while holding this lock cannot leave the set inconsistent.
    RESERVED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A port reserved for one cluster; released on drop.
#[derive(Debug)]
pub(crate) struct PortReservation {
    port: u16,
}

impl PortReservation {
    /// Reserves a free random port.
    pub(crate) fn random() -> Result<PortReservation> {
        for _ in 0..64 {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .map_err(|e| ClusterError::io("binding 127.0.0.1:0 to pick a free port", e))?;
            let port = listener
                .local_addr()
                .map_err(|e| ClusterError::io("reading the picked port", e))?
                .port();
            if reserved().insert(port) {
                return Ok(PortReservation { port });
            }
        }
        Err(ClusterError::io(
            "picking a free port",
            std::io::Error::other("the kernel kept handing out ports already in use"),
        ))
    }

    /// Records a caller-chosen port (no availability check: the server will
    /// fail to bind if it is taken).
    pub(crate) fn fixed(port: u16) -> PortReservation {
        reserved().insert(port);
        PortReservation { port }
    }

    /// The reserved port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for PortReservation {
    fn drop(&mut self) {
        reserved().remove(&self.port);
    }
}
