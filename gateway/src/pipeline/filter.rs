use bytes::BytesMut;
use portcullis_sql::StatementSummary;
use portcullis_wire::backend::RowDescription;

use super::SessionInfo;

/// What a result filter knows when a result set starts.
#[derive(Debug, Clone, Copy)]
pub struct ResultContext<'a> {
    /// The session.
    pub session: &'a SessionInfo,
    /// The statement producing the rows, when known.
    pub statement: Option<&'a StatementSummary>,
    /// The columns of the result.
    pub columns: &'a RowDescription,
}

/// Rewrites the DataRows of one result set.
pub trait RowRewriter: Send {
    /// Rewrites one DataRow body (`body` excludes the tag and length), appending a
    /// complete DataRow message to `out`.
    fn rewrite(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()>;
}

/// Chooses a row rewriter for each result set, or none for pass-through.
pub trait ResultFilter: Send + Sync {
    /// Called when a result set starts. `None` forwards rows untouched at no cost.
    fn begin(&self, ctx: &ResultContext<'_>) -> Option<Box<dyn RowRewriter>>;

    /// True if [`ResultFilter::begin`] never returns a rewriter, so the relay can skip
    /// tracking result sets altogether.
    fn is_passthrough(&self) -> bool {
        false
    }
}

/// Forwards every row untouched.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMasking;

impl ResultFilter for NoMasking {
    fn begin(&self, _ctx: &ResultContext<'_>) -> Option<Box<dyn RowRewriter>> {
        None
    }

    fn is_passthrough(&self) -> bool {
        true
    }
}
