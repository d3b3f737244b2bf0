//! Whole-chain answers remembered per session and statement shape.
//!
//! With `decision_cache = true` on every policy, each policy already remembers its
//! verdicts (see [`super::decision_cache`]), but each statement still builds the WIT
//! request, encodes it as a key and looks it up once per policy; each result set builds
//! its masking context the same way. Within one session the identity, database,
//! application and client address never change, and the parse cache hands every
//! literal variant of a statement the same analysis. So a session asking again about the
//! same analysed statement (same protocol, transaction state and masking catalog) gets
//! the same answer: the memo keys it on the identity of those objects, holding each one
//! so its address cannot be reused while the entry lives, and compares the session's
//! strings on a hit.
//!
//! The memo is used only when every policy consulted is enforcing and caches its
//! decisions, and never for a statement without a fingerprint (its text is part of the
//! decision-cache key). Each [`super::PolicyChain`] has its own memos, so a reload
//! starts empty.

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_sql::{Analysis, StatementSummary};
use portcullis_wire::backend::{RowDescription, TransactionStatus};
use quick_cache::sync::Cache;

use super::bindings::portcullis::policy::types as wit;
use super::chain::Verdict;
use crate::identity::Identity;
use crate::masking::catalog::DbCatalog;
use crate::pipeline::{Decision, Protocol, SessionInfo};

/// Entries per memo (statement shapes × sessions).
pub const MEMO_ENTRIES: usize = 16_384;

/// What makes two asks the same: addresses of objects the entry holds, plus small
/// values. Equal keys are confirmed by [`Held::matches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    session: u64,
    identity: usize,
    statement: usize,
    catalog: usize,
    protocol: u8,
    transaction: u8,
}

/// The objects a key points at, kept alive by the entry, and the session strings
/// compared on a hit.
struct Held {
    identity: Arc<Identity>,
    analysis: Arc<Analysis>,
    catalog: Option<Arc<DbCatalog>>,
    database: String,
    application: String,
    client_addr: SocketAddr,
}

impl Held {
    fn of(
        session: &SessionInfo,
        analysis: &Arc<Analysis>,
        catalog: Option<&Arc<DbCatalog>>,
    ) -> Self {
        Held {
            identity: Arc::clone(&session.identity),
            analysis: Arc::clone(analysis),
            catalog: catalog.cloned(),
            database: session.database.clone(),
            application: session.application_name.clone(),
            client_addr: session.client_addr,
        }
    }

    fn matches(
        &self,
        session: &SessionInfo,
        analysis: &Arc<Analysis>,
        catalog: Option<&Arc<DbCatalog>>,
    ) -> bool {
        Arc::ptr_eq(&self.identity, &session.identity)
            && Arc::ptr_eq(&self.analysis, analysis)
            && match (&self.catalog, catalog) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
            && self.database == session.database
            && self.application == session.application_name
            && self.client_addr == session.client_addr
    }
}

fn key(
    session: &SessionInfo,
    statement: &StatementSummary,
    catalog: Option<&Arc<DbCatalog>>,
    protocol: u8,
    transaction: u8,
) -> Key {
    Key {
        session: session.session_id,
        identity: Arc::as_ptr(&session.identity) as usize,
        statement: statement as *const StatementSummary as usize,
        catalog: catalog.map_or(0, |c| Arc::as_ptr(c) as usize),
        protocol,
        transaction,
    }
}

/// Whether `statement` is one of `analysis`'s statements and may be remembered.
fn memorable(analysis: &Analysis, statement: &StatementSummary) -> bool {
    !statement.fingerprint.is_empty()
        && analysis
            .statements
            .iter()
            .any(|s| std::ptr::eq(s, statement))
}

/// A statement to decide, as the memo sees it.
#[derive(Clone, Copy)]
pub struct Ask<'a> {
    /// The session.
    pub session: &'a SessionInfo,
    /// The analysis the statement belongs to.
    pub analysis: &'a Arc<Analysis>,
    /// The statement.
    pub statement: &'a StatementSummary,
    /// The protocol that carried it.
    pub protocol: Protocol,
    /// The transaction state before it runs.
    pub transaction: TransactionStatus,
    /// The masking catalog the request's columns were completed with, if any.
    pub catalog: Option<&'a Arc<DbCatalog>>,
}

impl Ask<'_> {
    fn key(&self) -> Option<Key> {
        memorable(self.analysis, self.statement).then(|| {
            key(
                self.session,
                self.statement,
                self.catalog,
                self.protocol as u8,
                self.transaction as u8,
            )
        })
    }
}

/// A remembered chain decision.
pub struct RememberedDecision {
    held: Held,
    /// `(policy index in the chain, verdict)` for every policy that was asked, in order.
    pub verdicts: Vec<(usize, Verdict)>,
    /// The chain's decision.
    pub decision: Decision,
}

/// Chain decisions per session and statement shape.
pub struct DecisionMemo {
    entries: Cache<Key, Arc<RememberedDecision>>,
}

impl Default for DecisionMemo {
    fn default() -> Self {
        DecisionMemo {
            entries: Cache::new(MEMO_ENTRIES),
        }
    }
}

impl DecisionMemo {
    /// The decision remembered for this ask.
    pub fn get(&self, ask: &Ask<'_>) -> Option<Arc<RememberedDecision>> {
        let hit = self.entries.get(&ask.key()?)?;
        hit.held
            .matches(ask.session, ask.analysis, ask.catalog)
            .then_some(hit)
    }

    /// Number of remembered decisions.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers a decision (never one with a failed verdict).
    pub fn insert(&self, ask: &Ask<'_>, verdicts: Vec<(usize, Verdict)>, decision: &Decision) {
        if verdicts
            .iter()
            .any(|(_, v)| matches!(v, Verdict::Failed(_)))
        {
            return;
        }
        let Some(k) = ask.key() else { return };
        self.entries.insert(
            k,
            Arc::new(RememberedDecision {
                held: Held::of(ask.session, ask.analysis, ask.catalog),
                verdicts,
                decision: decision.clone(),
            }),
        );
    }
}

/// A result set to plan masks for, as the memo sees it.
#[derive(Clone, Copy)]
pub struct ResultAsk<'a> {
    /// The session.
    pub session: &'a SessionInfo,
    /// The analysis the statement belongs to (`None`: no statement, or one the session
    /// synthesised, such as a FETCH's declared query: not remembered).
    pub analysis: Option<&'a Arc<Analysis>>,
    /// The statement.
    pub statement: Option<&'a StatementSummary>,
    /// The result's columns.
    pub columns: &'a RowDescription,
    /// The masking catalog provenance was resolved with.
    pub catalog: &'a Arc<DbCatalog>,
}

impl ResultAsk<'_> {
    fn key(&self) -> Option<Key> {
        let (a, s) = (self.analysis?, self.statement?);
        memorable(a, s).then(|| key(self.session, s, Some(self.catalog), 0, 0))
    }
}

/// A result set that the mask policies left unmasked.
pub struct RememberedUnmasked {
    held: Held,
    columns: RowDescription,
    /// The masking context the policies were asked with.
    pub context: Arc<wit::ResultContext>,
}

/// Result sets, per session and statement shape, that no mask policy masks or refuses.
/// Only that outcome is remembered: a masked result still builds its rewriter from the
/// (cached) plans.
pub struct ResultMemo {
    entries: Cache<Key, Arc<RememberedUnmasked>>,
}

impl Default for ResultMemo {
    fn default() -> Self {
        ResultMemo {
            entries: Cache::new(MEMO_ENTRIES),
        }
    }
}

impl ResultMemo {
    /// The remembered "unmasked" outcome for this result set.
    pub fn get(&self, ask: &ResultAsk<'_>) -> Option<Arc<RememberedUnmasked>> {
        let hit = self.entries.get(&ask.key()?)?;
        (hit.held
            .matches(ask.session, ask.analysis?, Some(ask.catalog))
            && hit.columns == *ask.columns)
            .then_some(hit)
    }

    /// Number of remembered result sets.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Remembers that this result set is not masked.
    pub fn insert(&self, ask: &ResultAsk<'_>, context: &Arc<wit::ResultContext>) {
        let (Some(k), Some(analysis)) = (ask.key(), ask.analysis) else {
            return;
        };
        self.entries.insert(
            k,
            Arc::new(RememberedUnmasked {
                held: Held::of(ask.session, analysis, Some(ask.catalog)),
                columns: ask.columns.clone(),
                context: Arc::clone(context),
            }),
        );
    }
}
