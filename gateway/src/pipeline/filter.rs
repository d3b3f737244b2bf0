use std::sync::Arc;

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
    /// The analysis `statement` is one of, when it is (not for a statement the session
    /// derived, such as a FETCH standing for its cursor's query).
    pub analysis: Option<&'a Arc<portcullis_sql::Analysis>>,
    /// The columns of the result.
    pub columns: &'a RowDescription,
}

/// A result set refused by a filter: the client gets this error instead of (the rest
/// of) the rows, and the session goes on. Return it (inside `anyhow::Error`) from
/// [`RowRewriter::rewrite`] or [`RowRewriter::finish`], or from
/// [`RowRewriter::refusal`] to refuse before any row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// SQLSTATE sent to the client.
    pub sqlstate: String,
    /// Message sent to the client.
    pub message: String,
    /// The policy (or gateway component) that refused.
    pub policy: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (policy \"{}\")", self.message, self.policy)
    }
}

impl std::error::Error for Refusal {}

/// Rewrites the DataRows of one result set.
///
/// Any error refuses the result: the client gets an ErrorResponse (the [`Refusal`]'s,
/// or a generic 42501 one), rows not yet sent are dropped, and the server's remaining
/// responses up to ReadyForQuery are discarded, so the client sees what PostgreSQL
/// sends after an error.
pub trait RowRewriter: Send {
    /// Rewrites one DataRow body (`body` excludes the tag and length), appending zero
    /// or more complete DataRow messages to `out` (a rewriter may hold rows back to
    /// process them in batches, and emit them later).
    fn rewrite(&mut self, body: &[u8], out: &mut BytesMut) -> anyhow::Result<()>;

    /// Called when the result set ends (before its CommandComplete or
    /// PortalSuspended is forwarded): appends the rows still held back.
    fn finish(&mut self, _out: &mut BytesMut) -> anyhow::Result<()> {
        Ok(())
    }

    /// Checked once when the result set starts: `Some` refuses it before any row.
    fn refusal(&self) -> Option<Refusal> {
        None
    }
}

/// One masked result column, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MaskedColumn {
    /// The column's name in the result (the alias, if any).
    pub column: String,
    /// The mask function (`email`, `partial(0,4,*)`, `custom`, ...).
    pub mask: String,
    /// The policy that asked for it.
    pub policy: String,
}

/// Chooses a row rewriter for each result set, or none for pass-through.
pub trait ResultFilter: Send + Sync {
    /// Called when a result set starts. `None` forwards rows untouched at no cost.
    fn begin(&self, ctx: &ResultContext<'_>) -> Option<Box<dyn RowRewriter>>;

    /// [`ResultFilter::begin`], also saying which columns the rewriter masks (for the
    /// audit trail). The default reports nothing.
    fn begin_masked(
        &self,
        ctx: &ResultContext<'_>,
        masked: &mut Vec<MaskedColumn>,
    ) -> Option<Box<dyn RowRewriter>> {
        let _ = masked;
        self.begin(ctx)
    }

    /// [`ResultFilter::begin_masked`], also reporting the mask plan to `plan`: a
    /// masking filter fills it, a wrapper passes it on to the filter it wraps (and may
    /// read it afterwards: the traffic recording and shadow mode do). The default
    /// reports nothing.
    fn begin_with_plan(
        &self,
        ctx: &ResultContext<'_>,
        masked: &mut Vec<MaskedColumn>,
        plan: &mut crate::masking::MaskObservation,
    ) -> Option<Box<dyn RowRewriter>> {
        let _ = plan;
        self.begin_masked(ctx, masked)
    }

    /// True if [`ResultFilter::begin`] never returns a rewriter, so the relay can skip
    /// tracking result sets altogether.
    fn is_passthrough(&self) -> bool {
        false
    }

    /// Called for every ErrorResponse the server sends (not for denials): `Some`
    /// replaces it. A masking filter withholds values that data-exception errors
    /// quote (`invalid input syntax for type integer: "123-45-6789"`).
    fn scrub_error(
        &self,
        _session: &SessionInfo,
        _error: &portcullis_wire::backend::ErrorFields,
    ) -> Option<portcullis_wire::backend::ErrorFields> {
        None
    }

    /// Called for every NoticeResponse the server sends: `Some` replaces it. A masking
    /// filter withholds the notices of masked identities (`RAISE NOTICE '%', ssn`).
    fn scrub_notice(
        &self,
        _session: &SessionInfo,
        _notice: &portcullis_wire::backend::ErrorFields,
    ) -> Option<portcullis_wire::backend::ErrorFields> {
        None
    }

    /// The catalog cache the filter needs loaded for each session's database before
    /// the session starts (masking resolves table OIDs through it).
    fn catalog(&self) -> Option<&Arc<crate::masking::Catalog>> {
        None
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
