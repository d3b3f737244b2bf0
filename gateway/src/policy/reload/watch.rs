//! What triggers a reload: file changes in the policy directory (debounced), the admin
//! API, SIGHUP (the binary), and rollbacks. One task runs them one at a time, off the
//! statement path (compiling runs on a blocking thread).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{PolicySets, SetStatus};

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Load the directory again.
    Reload,
    /// Restore the previous set.
    Rollback,
}

struct Request {
    action: Action,
    reply: Option<oneshot::Sender<Result<SetStatus, String>>>,
}

/// Asks the reload task for a reload or a rollback.
#[derive(Clone)]
pub struct ReloadHandle {
    tx: mpsc::UnboundedSender<Request>,
    sets: Arc<PolicySets>,
}

impl ReloadHandle {
    /// Runs `action` and waits for its outcome.
    pub async fn run(&self, action: Action) -> Result<SetStatus, String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request {
                action,
                reply: Some(reply),
            })
            .map_err(|_| "the gateway is shutting down".to_owned())?;
        rx.await.map_err(|_| "the reload task stopped".to_owned())?
    }

    /// Requests a reload without waiting (signal handlers).
    pub fn request_reload(&self) {
        let _ = self.tx.send(Request {
            action: Action::Reload,
            reply: None,
        });
    }

    /// The sets.
    pub fn sets(&self) -> &Arc<PolicySets> {
        &self.sets
    }
}

/// Called after a set went live, with the action (`reload` or `rollback`): the audit
/// trail records the swap and names the new set on later decisions.
pub type OnSwap = Arc<dyn Fn(&super::PolicySet, &str) + Send + Sync>;

/// Starts the reload task (and the directory watcher, if enabled).
pub fn spawn(
    sets: Arc<PolicySets>,
    mut shutdown: watch::Receiver<bool>,
    on_swap: Option<OnSwap>,
) -> anyhow::Result<(ReloadHandle, JoinHandle<()>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
    let (watcher, mut changed_rx) = if sets.config().watch {
        let (w, rx) = watch_dir(&sets.config().path)?;
        (Some(w), rx)
    } else {
        (None, mpsc::unbounded_channel().1)
    };
    let debounce = Duration::from_millis(sets.config().debounce_ms);
    let handle = ReloadHandle {
        tx,
        sets: Arc::clone(&sets),
    };
    let task = tokio::spawn(async move {
        // Kept alive for as long as the task runs.
        let _watcher = watcher;
        loop {
            let req = tokio::select! {
                _ = shutdown.changed() => break,
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => break,
                },
                Some(()) = next_change(&mut changed_rx, debounce) => {
                    Request { action: Action::Reload, reply: None }
                }
            };
            let s = Arc::clone(&sets);
            let hook = on_swap.clone();
            let outcome = tokio::task::spawn_blocking(move || {
                let (r, what) = match req.action {
                    Action::Reload => (s.reload(), "reload"),
                    Action::Rollback => (s.rollback(), "rollback"),
                };
                if let (Ok(set), Some(hook)) = (&r, &hook) {
                    hook(set, what);
                }
                r.map(|_| s.status())
            })
            .await
            .unwrap_or_else(|e| Err(format!("reload panicked: {e}")));
            if let Some(reply) = req.reply {
                let _ = reply.send(outcome);
            }
        }
    });
    Ok((handle, task))
}

/// Watches the directory `dir` (not its subdirectories): every change but a read sends
/// `()` on the channel, for as long as the watcher is kept.
pub fn watch_dir(
    dir: &Path,
) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::UnboundedReceiver<()>)> {
    let (changed_tx, changed_rx) = mpsc::unbounded_channel::<()>();
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if let Ok(ev) = ev
            && !matches!(ev.kind, notify::EventKind::Access(_))
        {
            let _ = changed_tx.send(());
        }
    })?;
    w.watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| anyhow::anyhow!("cannot watch the policy directory {}: {e}", dir.display()))?;
    Ok((w, changed_rx))
}

/// Waits for the next change from [`watch_dir`], then until the directory has been
/// quiet for `debounce`, so a sync tool writing several files triggers one reload.
/// `None` once the watcher is gone.
pub async fn next_change(
    changed: &mut mpsc::UnboundedReceiver<()>,
    debounce: Duration,
) -> Option<()> {
    changed.recv().await?;
    while let Ok(Some(())) = tokio::time::timeout(debounce, changed.recv()).await {}
    Some(())
}
