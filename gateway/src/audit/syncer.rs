//! Syncs the trail file off the writer thread.
//!
//! A sync (`fdatasync`) takes from a fraction of a millisecond to many. While the writer
//! waited for one, every session whose result waits only for its event to be written
//! (a write inside a transaction block) waited as well. With `fsync = "batch"` the
//! writer hands its syncs to this thread and goes on writing. A request that arrives
//! while a sync runs waits; a newer one replaces it, so one sync covers every session
//! that asked meanwhile (group commit).

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The sync thread of one trail.
pub(super) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// The file to sync, and the ticket a completed sync of it covers.
    request: Option<(Arc<File>, u64)>,
    /// Why the last sync failed, until the writer takes it.
    failed: Option<std::io::Error>,
    stop: bool,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Syncer {
    /// Starts the thread. After each sync it calls `done` with the ticket the sync
    /// covers and whether it succeeded (a failure is kept for [`Syncer::take_failure`]
    /// first).
    pub(super) fn start(done: impl Fn(u64, bool) + Send + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("portcullis-audit-sync".into())
            .spawn(move || {
                loop {
                    let (file, ticket) = {
                        let mut st = lock(&s.state);
                        loop {
                            if let Some(r) = st.request.take() {
                                break r;
                            }
                            if st.stop {
                                return;
                            }
                            st = s.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                        }
                    };
                    let result = file.sync_data();
                    let ok = result.is_ok();
                    if let Err(e) = result {
                        lock(&s.state).failed = Some(e);
                    }
                    done(ticket, ok);
                }
            })?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a sync of `file` that covers `ticket` (replacing a request still
    /// waiting, which it covers too).
    pub(super) fn request(&self, file: &Arc<File>, ticket: u64) {
        lock(&self.shared.state).request = Some((Arc::clone(file), ticket));
        self.shared.wake.notify_one();
    }

    /// The error of a sync that failed since the last call.
    pub(super) fn take_failure(&self) -> Option<std::io::Error> {
        lock(&self.shared.state).failed.take()
    }

    /// Finishes the sync under way and a waiting one, then stops the thread.
    pub(super) fn stop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn a_request_is_synced_and_reported_and_a_failure_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut s = Syncer::start(move |ticket, ok| tx.send((ticket, ok)).unwrap()).unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        s.request(&file, 7);
        assert_eq!(rx.recv().unwrap(), (7, true));
        assert!(s.take_failure().is_none());
        // A pipe cannot be synced (EINVAL).
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let pipe = Arc::new(File::from(std::os::fd::OwnedFd::from(w)));
        s.request(&pipe, 9);
        assert_eq!(rx.recv().unwrap(), (9, false));
        assert!(s.take_failure().is_some());
        s.stop();
    }
}
