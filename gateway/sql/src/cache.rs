//! The shared, bounded parse cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::sync::Cache;

use crate::analyze::analyze_key;
use crate::canon::{self, Style};
use crate::summary::Analysis;

/// Query strings longer than this are analysed but never cached.
pub const MAX_CACHED_SQL_BYTES: usize = 64 * 1024;

/// Parse-cache counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Analyses that had to parse (including strings too large to cache).
    pub misses: u64,
    /// Entries held now.
    pub entries: usize,
}

/// Analyses query strings, sharing one bounded cache between all sessions.
///
/// The cache maps the canonical, literal-free form of a whole query string
/// (see [`crate::fingerprint`]) to its [`Analysis`], so statements that differ
/// only in literal values share one parse. A hit costs one lexer pass over the
/// string plus one hash lookup.
pub struct Analyzer {
    cache: Option<Cache<String, Arc<Analysis>>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Analyzer {
    /// An analyzer caching up to `capacity` distinct query shapes
    /// (`0` disables caching).
    pub fn new(capacity: usize) -> Self {
        Analyzer {
            cache: (capacity > 0).then(|| Cache::new(capacity)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Analyses one query string: a simple-protocol `Query` (possibly several
    /// statements) or one extended-protocol `Parse` text (with `$n` parameters).
    ///
    /// The result is always identical to [`crate::analyze_uncached`]`(sql)`.
    pub fn analyze(&self, sql: &str) -> Arc<Analysis> {
        let cache = match &self.cache {
            Some(c) if sql.len() <= MAX_CACHED_SQL_BYTES => c,
            _ => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                return Arc::new(crate::analyze_uncached(sql));
            }
        };
        let key = canon::render(sql, Style::Key);
        if let Some(hit) = cache.get(key.as_str()) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return hit;
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let analysis = Arc::new(analyze_key(&key));
        cache.insert(key, Arc::clone(&analysis));
        analysis
    }

    /// Cache counters.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.as_ref().map_or(0, |c| c.len()),
        }
    }
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer")
            .field("stats", &self.stats())
            .finish()
    }
}
