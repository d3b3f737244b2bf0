//! The JSON-lines file sink: one writer thread, group commit, rotation (startup
//! recovery is in `audit/recover.rs`; syncs for `fsync = "batch"` run on the thread
//! of `audit/syncer.rs`).
//!
//! Sessions hand events to [`AuditLog::submit`] (a mutex push; no system call unless
//! the writer sleeps and must wake up: a client waits, or no deadline of the writer
//! covers the new events) and the writer thread does everything else: it numbers and
//! chains the events, writes them in batches, syncs them per the fsync policy,
//! rotates files and signs checkpoints. Every submitted event gets a *ticket*; the
//! writer publishes the highest ticket written and the highest synced through a watch
//! channel, which is how the I/O layer holds a write's result until its event is
//! written or synced (see [`Until`]).

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};

use super::chain::{CheckpointSigner, seal_into, seal_serialized};
use super::event::{AuditEvent, EventKind, PolicyRef};
use super::queued::Queued;
use super::syncer::Syncer;
use crate::config::{AuditConfig, AuditFsync};

/// Encoded events kept in memory while the sink fails; beyond this, events are
/// counted as lost (a `lost` event records how many once the sink works again).
const MAX_PENDING_BYTES: usize = 64 << 20;
/// Time between attempts while the sink fails.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// How far an event must get before the result it records is released.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Until {
    /// Written to the file: in the kernel, so it survives a crash or `kill -9` of the
    /// gateway. Enough for a write inside a transaction block, whose effect a crash
    /// of this machine rolls back (the block's COMMIT waits for [`Until::Synced`]).
    #[default]
    Written,
    /// Synced as the fsync policy requires: it survives a power loss too (with
    /// `fsync = "never"`, written).
    Synced,
}

/// How far the writer got, in tickets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durability {
    /// Every event with a ticket up to this one is on disk (synced as its fsync
    /// policy requires).
    pub through: u64,
    /// Every event with a ticket up to this one is written to the file (at least
    /// `through`).
    pub written: u64,
    /// Events with tickets up to this one could not be written when first tried (they
    /// are retried, but whoever waits for them should give up).
    pub failed_through: u64,
}

impl Durability {
    /// `Some(true)` once `ticket` got as far as `until`, `Some(false)` if writing it
    /// failed, `None` while it is still on its way.
    pub fn state_of(&self, ticket: u64, until: Until) -> Option<bool> {
        let reached = match until {
            Until::Written => self.written.max(self.through),
            Until::Synced => self.through,
        };
        if reached >= ticket {
            Some(true)
        } else if self.failed_through >= ticket {
            Some(false)
        } else {
            None
        }
    }
}

/// The audit trail of a gateway. Cloning shares it.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Mutex<Queue>,
    wake: Condvar,
    healthy: AtomicBool,
    durable: watch::Sender<Durability>,
    feed: broadcast::Sender<Arc<str>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    dir: PathBuf,
    public_key: Option<String>,
}

#[derive(Default)]
struct Queue {
    items: Vec<(SystemTime, Queued)>,
    submitted: u64,
    /// A client waits for the queued events: write them now.
    urgent: bool,
    /// ... and sync them now (it waits for [`Until::Synced`]).
    sync: bool,
    stop: bool,
    /// The writer waits on the condition variable.
    sleeping: bool,
    /// ... and wakes up by itself in time to write new events within the batch
    /// interval, so only urgent ones need to wake it.
    armed: bool,
}

/// Counters of the audit writer.
#[derive(Clone)]
struct WriterMetrics {
    events: prometheus::IntCounter,
    errors: prometheus::IntCounter,
    lost: prometheus::IntCounter,
    healthy: prometheus::IntGauge,
}

impl WriterMetrics {
    fn new(registry: Option<&prometheus::Registry>) -> anyhow::Result<Self> {
        let m = WriterMetrics {
            events: prometheus::IntCounter::new(
                "portcullis_audit_events_total",
                "Audit events written",
            )?,
            errors: prometheus::IntCounter::new(
                "portcullis_audit_write_errors_total",
                "Failed attempts to write or sync the audit trail",
            )?,
            lost: prometheus::IntCounter::new(
                "portcullis_audit_lost_events_total",
                "Audit events dropped while the sink failed and its buffer was full",
            )?,
            healthy: prometheus::IntGauge::new(
                "portcullis_audit_healthy",
                "1 while the audit trail can be written",
            )?,
        };
        if let Some(r) = registry {
            r.register(Box::new(m.events.clone()))?;
            r.register(Box::new(m.errors.clone()))?;
            r.register(Box::new(m.lost.clone()))?;
            r.register(Box::new(m.healthy.clone()))?;
        }
        Ok(m)
    }
}

fn lock(m: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The file holding events from `first_seq` on.
pub fn file_name(first_seq: u64) -> String {
    format!("audit-{first_seq:020}.jsonl")
}

/// The trail's files in `dir`, in chain order.
pub fn trail_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files)
}

impl AuditLog {
    /// Opens (or creates) the trail in `config.dir`, continuing the chain from the
    /// last event on disk, and starts the writer thread. A torn last line (a crash in
    /// the middle of a write nobody was told about) is cut off and recorded in the
    /// `start` event. A last event whose hash does not verify stops the start.
    pub fn open(
        config: &AuditConfig,
        registry: Option<&prometheus::Registry>,
    ) -> anyhow::Result<Self> {
        let signer = config
            .signing_key
            .as_deref()
            .map(CheckpointSigner::from_file)
            .transpose()?;
        std::fs::create_dir_all(&config.dir)
            .with_context(|| format!("cannot create audit directory {}", config.dir.display()))?;
        let rec = super::recover::recover(&config.dir)?;
        let metrics = WriterMetrics::new(registry)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&rec.path)
            .with_context(|| format!("cannot open audit file {}", rec.path.display()))?;
        let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
        if regular {
            sync_dir(&config.dir);
        }
        let (durable, _) = watch::channel(Durability::default());
        let (feed, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            healthy: AtomicBool::new(true),
            durable,
            feed,
            thread: Mutex::new(None),
            dir: config.dir.clone(),
            public_key: signer.as_ref().map(|s| s.public_key_hex().to_owned()),
        });
        let now = Instant::now();
        let mut w = Writer {
            cfg: config.clone(),
            inner: Arc::clone(&inner),
            metrics,
            file: Arc::new(file),
            path: rec.path.clone(),
            regular,
            good_len: rec.good_len,
            opened: now,
            next_seq: rec.next_seq,
            prev: rec.prev,
            pending: Vec::new(),
            pending_lines: Vec::new(),
            batch: Vec::new(),
            scratch: Vec::new(),
            spare_hash: String::new(),
            time_text: String::new(),
            taken: 0,
            unsynced: false,
            last_flush: now,
            last_sync: now,
            retry_at: None,
            failing: false,
            signer,
            last_checkpoint: now,
            since_checkpoint: 0,
            lost: 0,
            sealed: None,
            pg: None,
            syncer: None,
        };
        if config.fsync == AuditFsync::Batch {
            w.syncer = Some(
                Syncer::start(sync_reporter(Arc::clone(&inner)))
                    .context("cannot start the audit sync thread")?,
            );
        }
        if let Some(pg) = &config.postgres {
            // On a thread of its own: the sink blocks on its own small runtime, which
            // cannot start inside the caller's.
            let dir = config.dir.clone();
            let sink = std::thread::scope(|scope| {
                scope
                    .spawn(move || -> anyhow::Result<super::pg_sink::PgSink> {
                        let mut sink = super::pg_sink::PgSink::open(pg)?;
                        // Lines a crash left in the files but not in the table: the
                        // table gets them now (it ignores those it has).
                        super::recover::backfill(&dir, &mut sink)?;
                        sink.flush()
                            .context("cannot copy the trail's last lines to the audit table")?;
                        Ok(sink)
                    })
                    .join()
                    .map_err(|_| anyhow::anyhow!("the audit table setup panicked"))?
            })?;
            tracing::info!(table = %pg.table, gateway = sink.gateway(), "audit trail also written to PostgreSQL");
            w.pg = Some(sink);
        }
        let mut start = AuditEvent::new(EventKind::Start);
        start.detail = Some(rec.detail);
        w.encode(SystemTime::now(), start.into());
        let thread = std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || w.run())
            .context("cannot start the audit writer thread")?;
        *inner.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
        Ok(AuditLog { inner })
    }

    /// Queues events. `wait`: a client waits for them to get that far, so write (and
    /// if asked, sync) them now. Returns the ticket of the last one (see
    /// [`AuditLog::durability`]).
    pub fn submit(&self, mut events: Vec<AuditEvent>, wait: Option<Until>) -> u64 {
        self.submit_drain(&mut events, wait)
    }

    /// [`AuditLog::submit`] of the events in `events` (owned [`AuditEvent`]s or
    /// [`Queued`] ones), leaving it empty (with its capacity, for the caller's next
    /// events).
    pub fn submit_drain<E: Into<Queued>>(&self, events: &mut Vec<E>, wait: Option<Until>) -> u64 {
        let urgent = wait.is_some();
        let now = SystemTime::now();
        let mut q = lock(&self.inner.queue);
        q.submitted += events.len() as u64;
        q.items.extend(events.drain(..).map(|e| (now, e.into())));
        let ticket = q.submitted;
        // A writer at work looks at the queue before it sleeps again; a sleeping one
        // must be woken for urgent events, and for others unless it wakes up in time.
        let notify = q.sleeping && (urgent || (!q.armed && !q.items.is_empty()));
        if urgent {
            q.urgent = true;
        }
        if wait == Some(Until::Synced) {
            q.sync = true;
        }
        if notify {
            // Once is enough until it has looked at the queue.
            q.sleeping = false;
        }
        drop(q);
        if notify {
            self.inner.wake.notify_one();
        }
        ticket
    }

    /// Queues one event no client waits for.
    pub fn record(&self, event: AuditEvent) {
        self.submit(vec![event], None);
    }

    /// Records that a policy set was loaded (at start or on reload).
    pub fn policy_loaded(&self, policies: &Arc<[PolicyRef]>, detail: Value) {
        let mut e = AuditEvent::new(EventKind::PolicyLoad);
        e.policies = Some(Arc::clone(policies));
        e.detail = Some(detail);
        self.record(e);
    }

    /// Writes and syncs everything queued so far; resolves when it is on disk, or
    /// errors if writing failed.
    pub async fn sync(&self) -> anyhow::Result<()> {
        let mut rx = self.durability();
        let ticket = self.submit(Vec::new(), Some(Until::Synced));
        loop {
            match rx.borrow_and_update().state_of(ticket, Until::Synced) {
                Some(true) => return Ok(()),
                Some(false) => bail!("the audit trail could not be written"),
                None => {}
            }
            rx.changed().await.context("the audit writer stopped")?;
        }
    }

    /// False while the trail cannot be written.
    pub fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// How far the writer got.
    pub fn durability(&self) -> watch::Receiver<Durability> {
        self.inner.durable.subscribe()
    }

    /// The lines written from now on, as they reach the file (for live feeds).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.inner.feed.subscribe()
    }

    /// The directory of the trail.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The checkpoint signing key's public half (hex), if checkpoints are signed.
    pub fn public_key(&self) -> Option<&str> {
        self.inner.public_key.as_deref()
    }

    /// Writes a final checkpoint (if signing) and the `stop` event, syncs, and stops the
    /// writer thread. Idempotent; events submitted afterwards are dropped.
    pub fn close(&self) {
        lock(&self.inner.queue).stop = true;
        self.inner.wake.notify_one();
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// What the sync thread does after a sync: publish it, or report its failure to the
/// waiting sessions and wake the writer to sync again itself.
fn sync_reporter(inner: Arc<Inner>) -> impl Fn(u64, bool) + Send + 'static {
    move |ticket, ok| {
        inner.durable.send_if_modified(|d| {
            let before = *d;
            if ok {
                d.through = d.through.max(ticket);
            } else {
                d.failed_through = d.failed_through.max(ticket);
            }
            *d != before
        });
        if !ok {
            let mut q = lock(&inner.queue);
            q.urgent = true;
            let wake = std::mem::take(&mut q.sleeping);
            drop(q);
            if wake {
                inner.wake.notify_one();
            }
        }
    }
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

struct Writer {
    cfg: AuditConfig,
    inner: Arc<Inner>,
    metrics: WriterMetrics,
    /// Shared with the sync thread while it syncs it.
    file: Arc<File>,
    path: PathBuf,
    regular: bool,
    good_len: u64,
    opened: Instant,
    next_seq: u64,
    prev: String,
    pending: Vec<u8>,
    pending_lines: Vec<Arc<str>>,
    /// The events being written (the queue's buffer is swapped with this one, so
    /// neither is reallocated in steady state).
    batch: Vec<(SystemTime, Queued)>,
    /// Reused buffers: an event's JSON while it is hashed, and the strings of the hash
    /// and time fields (an event's `prev` becomes the next one's `hash` buffer).
    scratch: Vec<u8>,
    spare_hash: String,
    time_text: String,
    taken: u64,
    unsynced: bool,
    last_flush: Instant,
    last_sync: Instant,
    retry_at: Option<Instant>,
    failing: bool,
    signer: Option<CheckpointSigner>,
    last_checkpoint: Instant,
    since_checkpoint: u64,
    lost: u64,
    /// The current file is sealed; events go to this file once it can be created.
    sealed: Option<PathBuf>,
    /// The PostgreSQL sink, when `[audit.postgres]` is configured.
    pg: Option<super::pg_sink::PgSink>,
    /// Syncs for `fsync = "batch"`, off this thread (see [`Syncer`]).
    syncer: Option<Syncer>,
}

impl Writer {
    fn interval(&self) -> Duration {
        Duration::from_millis(self.cfg.batch_interval_ms)
    }

    fn checkpoint_interval(&self) -> Duration {
        Duration::from_secs(self.cfg.checkpoint_interval_secs.max(1))
    }

    fn run(mut self) {
        loop {
            let (sync_now, stop) = self.wait();
            if let Some(e) = self.syncer.as_ref().and_then(Syncer::take_failure) {
                // Sync again, on this thread, until it works.
                self.fail("sync", &e);
                self.unsynced = true;
            }
            let mut items = std::mem::take(&mut self.batch);
            let n = items.len() as u64;
            for (time, e) in items.drain(..) {
                self.encode(time, e);
                if self.size_rotation_due() && self.flush(true) {
                    self.rotate();
                }
            }
            self.batch = items;
            self.taken += n;
            if self.signer.is_some()
                && self.since_checkpoint > 0
                && (stop || self.last_checkpoint.elapsed() >= self.checkpoint_interval())
            {
                self.checkpoint();
            }
            if stop {
                self.encode(SystemTime::now(), AuditEvent::new(EventKind::Stop).into());
            }
            // A sync that failed is retried before the trail counts as healthy again.
            let sync = stop
                || (self.failing && self.unsynced && self.cfg.fsync != AuditFsync::Never)
                || match self.cfg.fsync {
                    AuditFsync::Always => true,
                    AuditFsync::Batch => sync_now || self.last_sync.elapsed() >= self.interval(),
                    AuditFsync::Never => false,
                };
            // A stop, a failing trail and `fsync = "always"` sync here; otherwise the
            // sync thread does, while this one goes on writing.
            let inline = sync && (stop || self.failing || self.syncer.is_none());
            let mut ok = self.flush(inline);
            if ok && sync && !inline && self.unsynced {
                if let Some(syncer) = &self.syncer {
                    syncer.request(&self.file, self.taken);
                }
                self.unsynced = false;
                self.last_sync = Instant::now();
            }
            if stop && !ok {
                for _ in 0..3 {
                    std::thread::sleep(Duration::from_millis(100));
                    ok = self.flush(true);
                    if ok {
                        break;
                    }
                }
                if !ok {
                    tracing::error!(
                        pending_bytes = self.pending.len(),
                        "audit trail: could not write the last events before stopping"
                    );
                }
            }
            if ok && !stop && self.rotation_due() {
                self.rotate();
            }
            self.publish(ok, inline || self.cfg.fsync == AuditFsync::Never);
            if stop {
                if let Some(mut syncer) = self.syncer.take() {
                    syncer.stop();
                }
                return;
            }
        }
    }

    /// Waits for work: urgent events, a stop, or the next deadline. The events to write
    /// are in `self.batch` afterwards. Returns whether a client waits for a sync, and
    /// whether to stop.
    fn wait(&mut self) -> (bool, bool) {
        let inner = Arc::clone(&self.inner);
        let mut q = lock(&inner.queue);
        loop {
            if q.stop || q.urgent {
                break;
            }
            let mut deadline: Option<Instant> = None;
            let mut consider =
                |d: Instant| deadline = Some(deadline.map_or(d, |x: Instant| x.min(d)));
            if !q.items.is_empty() {
                consider(self.last_flush + self.interval());
            }
            if self.unsynced && self.cfg.fsync == AuditFsync::Batch {
                consider(self.last_sync + self.interval());
            }
            match self.retry_at {
                Some(r) => consider(r),
                None if !self.pending.is_empty() => consider(Instant::now()),
                None => {}
            }
            if self.signer.is_some() && self.since_checkpoint > 0 {
                consider(self.last_checkpoint + self.checkpoint_interval());
            }
            if self.cfg.max_file_age_secs > 0 && self.regular && self.good_len > 0 {
                consider(self.opened + Duration::from_secs(self.cfg.max_file_age_secs));
            }
            // New events need no wake-up while a deadline brings the writer back
            // within the batch interval anyway.
            q.armed = deadline.is_some_and(|d| d <= self.last_flush + self.interval());
            match deadline {
                None => {
                    q.sleeping = true;
                    q = inner.wake.wait(q).unwrap_or_else(|e| e.into_inner());
                }
                Some(d) => {
                    let now = Instant::now();
                    if d <= now {
                        break;
                    }
                    q.sleeping = true;
                    q = inner
                        .wake
                        .wait_timeout(q, d - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
            q.sleeping = false;
        }
        q.sleeping = false;
        debug_assert!(self.batch.is_empty());
        std::mem::swap(&mut q.items, &mut self.batch);
        q.urgent = false;
        (std::mem::take(&mut q.sync), q.stop)
    }

    fn encode(&mut self, time: SystemTime, e: Queued) {
        if self.pending.len() > MAX_PENDING_BYTES {
            self.lost += 1;
            self.metrics.lost.inc();
            return;
        }
        if self.lost > 0 && !self.failing {
            let mut l = AuditEvent::new(EventKind::Lost);
            l.detail = Some(json!({"events": self.lost}));
            self.lost = 0;
            self.encode(time, l.into());
        }
        let seq = self.next_seq;
        self.time_text.clear();
        write!(self.time_text, "{}", humantime::format_rfc3339_micros(time))
            .expect("writes to a String");
        let start = self.pending.len();
        let kind = match e {
            Queued::Event(mut e) => {
                e.seq = seq;
                e.prev = std::mem::take(&mut self.prev);
                e.hash = std::mem::take(&mut self.spare_hash);
                e.time = std::mem::take(&mut self.time_text);
                seal_into(&mut e, &mut self.scratch, &mut self.pending);
                self.prev = std::mem::take(&mut e.hash);
                self.spare_hash = std::mem::take(&mut e.prev);
                self.time_text = std::mem::take(&mut e.time);
                e.kind
            }
            Queued::Statement(s) => {
                // Debug builds check the line against the owned event's.
                #[cfg(debug_assertions)]
                let want = {
                    let mut owned = s.event();
                    owned.seq = seq;
                    owned.prev = self.prev.clone();
                    owned.time = self.time_text.clone();
                    super::chain::seal(&mut owned)
                };
                let hash = seal_serialized(
                    &s.view(seq, &self.prev, &self.time_text),
                    &mut self.scratch,
                    &mut self.pending,
                );
                self.prev.clear();
                self.prev
                    .push_str(std::str::from_utf8(&hash).expect("hex is ASCII"));
                #[cfg(debug_assertions)]
                assert_eq!(
                    std::str::from_utf8(&self.pending[start..]).expect("UTF-8"),
                    want,
                    "a queued statement event seals to its owned event's line"
                );
                EventKind::Statement
            }
        };
        self.next_seq += 1;
        self.metrics.events.inc();
        // The line without its newline.
        let line = std::str::from_utf8(&self.pending[start..self.pending.len() - 1])
            .expect("serde_json writes UTF-8");
        if let Some(pg) = &mut self.pg {
            let file = self.sealed.as_ref().unwrap_or(&self.path);
            let row = super::pg_sink::Row {
                seq: seq as i64,
                file: file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                line: line.to_owned(),
            };
            if !pg.push(row) {
                self.lost += 1;
                self.metrics.lost.inc();
            }
        }
        if self.inner.feed.receiver_count() > 0 {
            self.pending_lines.push(Arc::from(line));
        }
        if kind != EventKind::Checkpoint {
            self.since_checkpoint += 1;
        }
    }

    fn checkpoint(&mut self) {
        let Some(signer) = &self.signer else { return };
        let mut c = AuditEvent::new(EventKind::Checkpoint);
        c.checkpoint = Some(signer.sign(self.next_seq.saturating_sub(1), &self.prev));
        self.encode(SystemTime::now(), c.into());
        self.since_checkpoint = 0;
        self.last_checkpoint = Instant::now();
    }

    /// Writes what is pending and syncs if asked; false on failure (nothing is lost:
    /// the pending bytes stay for the next attempt, and a partial write is cut off).
    fn flush(&mut self, sync: bool) -> bool {
        self.last_flush = Instant::now();
        if let Some(next) = self.sealed.clone() {
            match OpenOptions::new().create(true).append(true).open(&next) {
                Ok(f) => {
                    sync_dir(&self.cfg.dir);
                    self.file = Arc::new(f);
                    self.path = next;
                    self.good_len = 0;
                    self.opened = Instant::now();
                    self.sealed = None;
                }
                Err(e) => {
                    self.fail("create the next file", &e);
                    return false;
                }
            }
        }
        if !self.pending.is_empty() {
            if let Err(e) = (&*self.file).write_all(&self.pending) {
                if self.regular {
                    let _ = self.file.set_len(self.good_len);
                }
                self.fail("write", &e);
                return false;
            }
            self.good_len += self.pending.len() as u64;
            self.pending.clear();
            self.unsynced = true;
            for line in self.pending_lines.drain(..) {
                let _ = self.inner.feed.send(line);
            }
        }
        if sync && self.unsynced {
            if let Err(e) = self.file.sync_data() {
                self.fail("sync", &e);
                return false;
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        if let Some(pg) = &mut self.pg
            && let Err(e) = pg.flush()
        {
            let e = std::io::Error::other(format!("{e:#}"));
            self.fail("write to the PostgreSQL audit table", &e);
            return false;
        }
        if self.failing {
            self.failing = false;
            self.retry_at = None;
            self.inner.healthy.store(true, Ordering::Relaxed);
            self.metrics.healthy.set(1);
            tracing::info!(file = %self.path.display(), "audit trail: writing again");
        }
        true
    }

    fn fail(&mut self, what: &str, e: &std::io::Error) {
        self.metrics.errors.inc();
        if !self.failing {
            tracing::error!(file = %self.path.display(), error = %e, "audit trail: cannot {what}; statements are refused unless audit.fail_open");
        }
        self.failing = true;
        self.retry_at = Some(Instant::now() + RETRY_AFTER);
        self.inner.healthy.store(false, Ordering::Relaxed);
        self.metrics.healthy.set(0);
    }

    /// Publishes how far the events taken so far got: written, and `synced` too (the
    /// sync thread publishes the syncs it makes).
    fn publish(&mut self, ok: bool, synced: bool) {
        let taken = self.taken;
        self.inner.durable.send_if_modified(|d| {
            let before = *d;
            if ok {
                d.written = taken;
                if synced {
                    d.through = d.through.max(taken);
                }
            } else {
                d.failed_through = taken;
            }
            *d != before
        });
    }

    fn size_rotation_due(&self) -> bool {
        self.regular
            && self.cfg.max_file_bytes > 0
            && self.good_len + self.pending.len() as u64 >= self.cfg.max_file_bytes
    }

    fn rotation_due(&self) -> bool {
        if !self.regular || self.good_len == 0 {
            return false;
        }
        (self.cfg.max_file_bytes > 0 && self.good_len >= self.cfg.max_file_bytes)
            || (self.cfg.max_file_age_secs > 0
                && self.opened.elapsed() >= Duration::from_secs(self.cfg.max_file_age_secs))
    }

    /// Seals the current file with a `rotate` event and continues in a new one.
    fn rotate(&mut self) {
        let (seq, prev, since) = (self.next_seq, self.prev.clone(), self.since_checkpoint);
        let next = file_name(seq + 1);
        let mut r = AuditEvent::new(EventKind::Rotate);
        r.detail = Some(json!({"next_file": next}));
        self.encode(SystemTime::now(), r.into());
        if !self.flush(true) {
            // Un-encode the seal: the chain goes on in this file.
            self.pending.clear();
            self.pending_lines.clear();
            self.next_seq = seq;
            self.prev = prev;
            self.since_checkpoint = since;
            return;
        }
        // The next flush opens the new file (and keeps trying until it can: nothing
        // is ever written after a seal).
        self.sealed = Some(self.cfg.dir.join(&next));
        self.flush(false);
    }
}
