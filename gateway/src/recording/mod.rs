//! Traffic recording for `portcullis policy replay` and `bench`.
//!
//! With `[recording]`, the gateway writes the statements (and result sets) of the
//! selected traffic — by identity, database and sample rate — to a JSON-lines file
//! in the versioned format of [`format`](mod@format) (`docs/recording.md`). The recording sits at
//! the pipeline seams ([`RecordingGate`], [`RecordingFilter`]), so it sees exactly
//! what the policies saw and what the client got, and it never changes either:
//! lines go through a bounded queue to a writer thread, and a line that does not fit
//! is dropped and counted (`portcullis_recording_dropped_total`), never waited for.

pub mod format;
pub mod read;
mod seams;
mod writer;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use crate::pipeline::SessionInfo;
pub use format::{FORMAT_NAME, FORMAT_VERSION, Line};
pub use seams::{RecordingFilter, RecordingGate, decision_rec, live_request};
pub use writer::Recorder;

/// `[recording]`: what traffic is recorded, and where.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingConfig {
    /// The recording file (appended to; each gateway start writes a header line). A
    /// relative path is relative to the configuration file.
    pub path: PathBuf,
    /// Record only these identities (empty: all).
    #[serde(default)]
    pub identities: Vec<String>,
    /// Record only sessions on these databases (empty: all).
    #[serde(default)]
    pub databases: Vec<String>,
    /// Fraction of the selected statements (and result sets) recorded, 0 to 1.
    #[serde(default = "default_sample_rate")]
    pub sample_rate: f64,
    /// Record result sets (columns with provenance, masks applied).
    #[serde(default = "default_true")]
    pub results: bool,
    /// Rows recorded per result set, as the client received them (masked); 0: none.
    #[serde(default)]
    pub sample_rows: usize,
    /// Lines queued for the writer; beyond that, lines are dropped and counted.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Stop recording once the file is this large (0 = no limit); later lines are
    /// dropped and counted.
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    1 << 30
}

fn default_sample_rate() -> f64 {
    1.0
}
fn default_true() -> bool {
    true
}
fn default_queue() -> usize {
    8192
}

/// Most rows recorded per result set.
pub const MAX_SAMPLE_ROWS: usize = 1000;

impl RecordingConfig {
    /// A configuration recording everything to `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RecordingConfig {
            path: path.into(),
            identities: Vec::new(),
            databases: Vec::new(),
            sample_rate: 1.0,
            results: true,
            sample_rows: 0,
            queue: default_queue(),
            max_file_bytes: default_max_file_bytes(),
        }
    }

    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !(0.0..=1.0).contains(&self.sample_rate) {
            return Err((
                "recording.sample_rate".into(),
                "must be between 0 and 1".into(),
            ));
        }
        if self.sample_rows > MAX_SAMPLE_ROWS {
            return Err((
                "recording.sample_rows".into(),
                format!("at most {MAX_SAMPLE_ROWS}"),
            ));
        }
        if self.queue == 0 {
            return Err(("recording.queue".into(), "must be at least 1".into()));
        }
        Ok(())
    }

    /// Whether this session's traffic is selected (identity and database filters).
    pub fn selects(&self, session: &SessionInfo) -> bool {
        (self.identities.is_empty() || self.identities.contains(&session.identity.name))
            && (self.databases.is_empty() || self.databases.contains(&session.database))
    }

    /// One sampling draw.
    pub fn sampled(&self) -> bool {
        self.sample_rate >= 1.0
            || (self.sample_rate > 0.0 && rand::random::<f64>() < self.sample_rate)
    }
}

/// The gate and filter with recording around them, when `[recording]` is set.
pub fn wrap(
    recorder: &Arc<Recorder>,
    gate: Arc<dyn crate::pipeline::Gate>,
    filter: Arc<dyn crate::pipeline::ResultFilter>,
) -> (
    Arc<dyn crate::pipeline::Gate>,
    Arc<dyn crate::pipeline::ResultFilter>,
) {
    let catalog = filter.catalog().cloned();
    let gate = Arc::new(crate::pipeline::ObservingGate::new(
        gate,
        RecordingGate::new(Arc::clone(recorder), catalog),
    ));
    let filter: Arc<dyn crate::pipeline::ResultFilter> = if recorder.config().results {
        Arc::new(crate::pipeline::ObservingFilter::new(
            filter,
            RecordingFilter::new(Arc::clone(recorder)),
        ))
    } else {
        filter
    };
    (gate, filter)
}
