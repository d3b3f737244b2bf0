//! The recording writer: a bounded queue and a thread appending JSON lines.

use std::io::Write;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};

use anyhow::Context as _;

use super::RecordingConfig;
use super::format::{FORMAT_NAME, FORMAT_VERSION, Header, Line};

/// Where recorded lines go: cheap to call from the session tasks (never blocks).
pub struct Recorder {
    config: RecordingConfig,
    tx: SyncSender<Line>,
    recorded: prometheus::IntCounter,
    dropped: prometheus::IntCounter,
}

impl Recorder {
    /// Opens (appends to) the file, writes the header line and starts the writer
    /// thread. Metrics go to `registry` when given.
    pub fn start(
        config: RecordingConfig,
        registry: Option<&prometheus::Registry>,
    ) -> anyhow::Result<Arc<Recorder>> {
        if let Some(dir) = config.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&config.path)
            .with_context(|| format!("opening the recording {}", config.path.display()))?;
        let header = Header {
            format: FORMAT_NAME.into(),
            version: FORMAT_VERSION,
            started: now_rfc3339(),
            gateway: env!("CARGO_PKG_VERSION").into(),
            sample_rows: config.sample_rows,
        };
        let mut text = serde_json::to_vec(&header)?;
        text.push(b'\n');
        file.write_all(&text)
            .with_context(|| format!("writing {}", config.path.display()))?;
        let recorded = prometheus::IntCounter::new(
            "recording_lines_total",
            "Lines written to the traffic recording",
        )?;
        let dropped = prometheus::IntCounter::new(
            "recording_dropped_total",
            "Recording lines dropped because the writer could not keep up",
        )?;
        if let Some(r) = registry {
            let _ = r.register(Box::new(recorded.clone()));
            let _ = r.register(Box::new(dropped.clone()));
        }
        let (tx, rx) = sync_channel(config.queue.max(1));
        let counters = (recorded.clone(), dropped.clone());
        let path = config.path.clone();
        let limit = match config.max_file_bytes {
            0 => u64::MAX,
            n => n,
        };
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        std::thread::Builder::new()
            .name("portcullis-recording".into())
            .spawn(move || write_loop(rx, file, counters, &path, size, limit))
            .context("starting the recording writer")?;
        tracing::info!(path = %config.path.display(), "recording traffic");
        Ok(Arc::new(Recorder {
            config,
            tx,
            recorded,
            dropped,
        }))
    }

    /// The configuration.
    pub fn config(&self) -> &RecordingConfig {
        &self.config
    }

    /// Queues a line; drops (and counts) it when the queue is full.
    pub fn record(&self, line: Line) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }

    /// Lines written so far.
    pub fn recorded(&self) -> u64 {
        self.recorded.get()
    }

    /// Lines dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

/// Numbers, serialises and appends lines; flushes whenever the queue is empty, so
/// the file is current within one batch. Past `limit` bytes lines are dropped. Ends
/// when every sender is gone.
fn write_loop(
    rx: Receiver<Line>,
    file: std::fs::File,
    (recorded, dropped): (prometheus::IntCounter, prometheus::IntCounter),
    path: &std::path::Path,
    mut size: u64,
    limit: u64,
) {
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let mut seq = 0u64;
    let mut failed = false;
    let mut full = false;
    let mut write = |mut line: Line, out: &mut std::io::BufWriter<std::fs::File>| {
        if full {
            dropped.inc();
            return;
        }
        seq += 1;
        match &mut line {
            Line::Statement(s) => s.seq = seq,
            Line::Result(r) => r.seq = seq,
        }
        let mut text = match serde_json::to_vec(&line) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "recording line not serialisable");
                return;
            }
        };
        text.push(b'\n');
        if size + text.len() as u64 > limit {
            full = true;
            dropped.inc();
            tracing::warn!(path = %path.display(), limit, "the recording reached recording.max_file_bytes; recording stopped");
            return;
        }
        size += text.len() as u64;
        if let Err(e) = out.write_all(&text) {
            if !failed {
                tracing::error!(path = %path.display(), error = %e, "cannot write the recording");
                failed = true;
            }
            return;
        }
        recorded.inc();
    };
    while let Ok(line) = rx.recv() {
        write(line, &mut out);
        while let Ok(line) = rx.try_recv() {
            write(line, &mut out);
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

/// Now, RFC 3339 UTC with microseconds.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string()
}
