//! The upstream catalog, cached per database: table OID + attribute number to
//! `schema.table.column`, the columns of every relation, the lineage of views, and
//! the names of the functions (built-in or user-defined, see [`Functions`]).
//!
//! A database's catalog is loaded over a session's own upstream connection before the
//! client gets it, when the cache is missing or older than the refresh interval; it is
//! reloaded over a side connection once a session's DDL has committed (the session's
//! next results wait for it, see [`Catalog::reload`]) and, in the background, when a
//! result names a relation the cache does not know (at most once per second). Until
//! then such columns have unknown provenance, which the masking policy treats as
//! sensitive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_sql::OutputItem;
use portcullis_wire::backend::{DataRowCells, ErrorFields, tag};
use portcullis_wire::frontend::Query;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::backend::{Upstream, UpstreamTarget};

/// The catalog query: one row per column of every relation (system catalogs
/// included, so their columns have known provenance). Column 6 is a placeholder for
/// the view definition, which [`VIEWS_SQL`] reads apart: `pg_get_viewdef` fails the
/// whole query when a view is dropped while it runs, and a plain catalog scan never
/// does.
const CATALOG_SQL: &str = "SELECT c.oid::int8, n.nspname, c.relname, c.relkind::text, a.attnum::int4, a.attname, \
     NULL::text, n.nspname IN ('pg_catalog','information_schema') \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
     WHERE c.relkind IN ('r','v','m','p','f') AND a.attnum > 0 AND NOT a.attisdropped \
     AND n.nspname NOT LIKE 'pg\\_toast%' \
     ORDER BY 1, 5";

/// The definitions of the user views (system views are not followed: their lineage
/// ends at the view; policies deny statistics views that expose sampled values).
const VIEWS_SQL: &str = "SELECT c.oid::int8, pg_catalog.pg_get_viewdef(c.oid) \
     FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('v','m') AND n.nspname NOT IN ('pg_catalog','information_schema')";

/// How many per-view queries are written before their answers are read, when the
/// views are read one by one (see [`load`]): bounded, so neither side's socket buffer
/// fills while the other waits.
const VIEWS_PIPELINE: usize = 64;

/// The function query: every function name, with its schema and whether it was
/// created with the cluster (an OID below 16384, `FirstNormalObjectId`): anything
/// created later, in whatever schema (`pg_catalog` included) and by an extension too,
/// is user-defined. Then (fourth column `o`) the symbols of the user-defined operators
/// whose function is not C or internal code: SQL or PL code can read any table
/// (`CREATE OPERATOR ### (FUNCTION = lookup_ssn, ...)`); extension operators in C
/// (hstore's `->`, citext's `=`) compute from their operands. Then one row of kind
/// `c` when a user-defined cast runs SQL or PL code (`CREATE CAST (integer AS text)
/// WITH FUNCTION ...`): PostgreSQL applies casts implicitly, inside built-ins too
/// (`id || ''` runs that one), so every computed value is then opaque.
const FUNCTIONS_SQL: &str = "SELECT DISTINCT p.proname, n.nspname, p.oid < 16384, 'f' \
     FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
     UNION ALL SELECT DISTINCT o.oprname, n.nspname, false, 'o' \
     FROM pg_catalog.pg_operator o JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
     JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE o.oid >= 16384 AND l.lanname NOT IN ('c', 'internal') \
     UNION ALL SELECT '::', '', false, 'c' WHERE EXISTS (SELECT 1 \
     FROM pg_catalog.pg_cast c JOIN pg_catalog.pg_proc p ON p.oid = c.castfunc \
     JOIN pg_catalog.pg_language l ON l.oid = p.prolang \
     WHERE c.oid >= 16384 AND l.lanname NOT IN ('c', 'internal'))";

/// Built-in functions whose value does not come from their arguments: they run a
/// query given as text (`query_to_xml('SELECT ssn FROM customers', ...)`,
/// `ts_stat`), read a whole table or schema by name (`table_to_xml`), or read data
/// stored outside the statement (files, large objects, logical decoding). Opaque
/// like user-defined functions.
const OPAQUE_BUILTINS: &[&str] = &[
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "cursor_to_xmlschema",
    "table_to_xml",
    "table_to_xml_and_xmlschema",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    "ts_stat",
    "ts_rewrite",
    "pg_read_file",
    "pg_read_binary_file",
    "lo_get",
    "loread",
    "lo_export",
    "pg_logical_slot_get_changes",
    "pg_logical_slot_peek_changes",
    "pg_logical_slot_get_binary_changes",
    "pg_logical_slot_peek_binary_changes",
];

/// Constructs that parse as function calls but are SQL syntax, not `pg_proc` entries:
/// they compute from their arguments only.
const SYNTAX_FUNCTIONS: &[&str] = &[
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "grouping",
    "row",
    "array",
    "trim",
    "current_date",
    "current_time",
    "current_timestamp",
    "localtime",
    "localtimestamp",
    "current_user",
    "current_role",
    "session_user",
    "user",
    "current_catalog",
    "current_schema",
    "system_user",
];

/// The functions of a database, to tell a call whose value is computed from its
/// arguments (a built-in) from one whose body may read anything (user-defined: SQL,
/// PL/pgSQL, `SECURITY DEFINER`, an extension's): the gateway cannot see inside the
/// latter, so a statement calling one has unknown provenance.
#[derive(Debug, Default)]
pub struct Functions {
    /// Every built-in function name (created with the cluster).
    builtin: std::collections::HashSet<String>,
    /// Every user-defined function name, with and without its schema.
    user: std::collections::HashSet<String>,
    /// The symbols of user-defined operators running SQL or PL code (see
    /// [`FUNCTIONS_SQL`]).
    operators: std::collections::HashSet<String>,
    /// A user-defined cast runs SQL or PL code: every function and operator (explicit
    /// casts included) is opaque.
    code_casts: bool,
}

impl Functions {
    /// From rows of [`FUNCTIONS_SQL`]: name, schema, built-in (`t`/`f`), function or
    /// operator (`f`/`o`; a function when missing).
    pub(crate) fn from_rows(rows: Vec<Vec<Option<String>>>) -> Self {
        let mut f = Functions::default();
        for row in rows {
            let get = |i: usize| row.get(i).cloned().flatten();
            let (Some(name), Some(schema)) = (get(0), get(1)) else {
                continue;
            };
            if get(3).as_deref() == Some("c") {
                f.code_casts = true;
            } else if get(3).as_deref() == Some("o") {
                f.operators.insert(name);
            } else if get(2).as_deref() == Some("t") {
                f.builtin.insert(name);
            } else {
                f.user.insert(format!("{schema}.{name}"));
                f.user.insert(name);
            }
        }
        f
    }

    /// Whether a call of `name` (as the statement analysis reports it: `f` or
    /// `schema.f`, unquoted parts lowercased) may read data the gateway cannot see.
    /// Fail closed: a name shared with any user-defined function in any schema (so
    /// `search_path` and overloading cannot pick it unseen), a qualified name outside
    /// `pg_catalog`, a name the catalog does not know, and the built-ins of
    /// `OPAQUE_BUILTINS` are opaque. An operator (`operator(###)`, see
    /// [`portcullis_sql::operator_call`]) is opaque when a user-defined operator with
    /// its symbol runs SQL or PL code (whatever its operand types: overloading picks
    /// it unseen).
    pub fn is_opaque(&self, name: &str) -> bool {
        if let Some(op) = operator_symbol(name) {
            return self.operator_is_opaque(op);
        }
        if self.code_casts {
            return true;
        }
        let bare = name.rsplit('.').next().unwrap_or(name);
        if OPAQUE_BUILTINS.contains(&bare) {
            return true;
        }
        match name.rsplit_once('.') {
            Some((schema, f)) => {
                let schema = schema.rsplit('.').next().unwrap_or(schema);
                !(schema == "pg_catalog" && self.builtin.contains(f) && !self.user.contains(name))
            }
            None => {
                self.user.contains(name)
                    || !(self.builtin.contains(name) || SYNTAX_FUNCTIONS.contains(&name))
            }
        }
    }

    /// Whether a use of operator `symbol` is opaque: a user-defined operator with that
    /// symbol runs SQL or PL code, or a user-defined cast does.
    pub fn operator_is_opaque(&self, symbol: &str) -> bool {
        self.code_casts || self.operators.contains(symbol)
    }

    /// Whether the catalog knows `name` (a user-defined or built-in function; every
    /// operator).
    pub fn knows(&self, name: &str) -> bool {
        if operator_symbol(name).is_some() {
            return true;
        }
        let bare = name.rsplit('.').next().unwrap_or(name);
        self.user.contains(name) || self.builtin.contains(bare) || SYNTAX_FUNCTIONS.contains(&bare)
    }
}

/// The symbol of an operator use named by [`portcullis_sql::operator_call`].
fn operator_symbol(name: &str) -> Option<&str> {
    name.strip_prefix("operator(")?.strip_suffix(')')
}

/// Most catalog rows loaded (relations × columns); a bigger catalog is truncated and
/// the rest has unknown provenance.
const MAX_ROWS: usize = 1_000_000;

/// One relation.
#[derive(Debug, Clone)]
pub struct Relation {
    /// Its OID.
    pub oid: u32,
    /// Schema.
    pub schema: String,
    /// Name.
    pub name: String,
    /// Columns by attribute number, in order.
    pub columns: Vec<(i16, String)>,
    /// For a view: the lineage of its output columns, when its definition parses and
    /// calls no opaque function (see [`Functions::is_opaque`]).
    pub view: Option<Option<Vec<OutputItem>>>,
}

impl Relation {
    /// The name of attribute `attnum`.
    pub fn column(&self, attnum: i16) -> Option<&str> {
        self.columns
            .iter()
            .find(|(n, _)| *n == attnum)
            .map(|(_, c)| c.as_str())
    }

    /// The position (from 0) of column `name` among the columns.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|(_, c)| c == name)
    }
}

/// The catalog of one database.
#[derive(Debug, Default)]
pub struct DbCatalog {
    by_oid: HashMap<u32, Arc<Relation>>,
    by_name: HashMap<String, Vec<Arc<Relation>>>,
    /// `None` until loaded: then every function call is opaque.
    functions: Option<Functions>,
    /// Every function call taken as a built-in ([`DbCatalog::statement_only`]).
    all_builtin: bool,
}

impl DbCatalog {
    /// The relation with this OID.
    pub fn relation(&self, oid: u32) -> Option<&Arc<Relation>> {
        self.by_oid.get(&oid)
    }

    /// Relations named `name` (in `schema`, or in any schema when `None`).
    pub fn named(&self, schema: Option<&str>, name: &str) -> Vec<Arc<Relation>> {
        self.by_name
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|r| schema.is_none_or(|s| s == r.schema))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether a call of `name` may read data the gateway cannot see (every call,
    /// while the functions are not loaded). See [`Functions::is_opaque`].
    pub fn function_is_opaque(&self, name: &str) -> bool {
        !self.all_builtin && self.functions.as_ref().is_none_or(|f| f.is_opaque(name))
    }

    /// Whether a use of operator `symbol` may read data the gateway cannot see (every
    /// use, while the functions are not loaded).
    pub fn operator_is_opaque(&self, symbol: &str) -> bool {
        !self.all_builtin
            && self
                .functions
                .as_ref()
                .is_none_or(|f| f.operator_is_opaque(symbol))
    }

    /// Whether the catalog knows function `name` (false while not loaded).
    pub fn knows_function(&self, name: &str) -> bool {
        self.functions.as_ref().is_some_and(|f| f.knows(name))
    }

    /// A catalog without relations whose function calls are all taken as built-ins:
    /// the provenance a statement alone gives, as recorded when no masking policy
    /// planned (not for masking).
    pub fn statement_only() -> Self {
        DbCatalog {
            all_builtin: true,
            ..Default::default()
        }
    }

    /// Number of relations.
    pub fn len(&self) -> usize {
        self.by_oid.len()
    }

    /// True when no relation is known.
    pub fn is_empty(&self) -> bool {
        self.by_oid.is_empty()
    }

    /// Builds a catalog from rows of [`CATALOG_SQL`] and the functions (`None`: not
    /// loaded).
    pub(crate) fn from_rows(rows: Vec<Vec<Option<String>>>, functions: Option<Functions>) -> Self {
        let mut cat = DbCatalog {
            functions,
            ..Default::default()
        };
        let mut rels: Vec<Relation> = Vec::new();
        for row in rows {
            let get = |i: usize| row.get(i).cloned().flatten();
            let (Some(oid), Some(schema), Some(name), Some(attnum), Some(attname)) = (
                get(0).and_then(|s| s.parse::<u32>().ok()),
                get(1),
                get(2),
                get(4).and_then(|s| s.parse::<i16>().ok()),
                get(5),
            ) else {
                continue;
            };
            let system = get(7).as_deref() == Some("t");
            let is_view = !system && matches!(get(3).as_deref(), Some("v" | "m"));
            if rels.last().is_none_or(|r| r.oid != oid) {
                rels.push(Relation {
                    oid,
                    schema,
                    name,
                    columns: Vec::new(),
                    view: None,
                });
            }
            let r = rels.last_mut().expect("pushed");
            r.columns.push((attnum, attname));
            if is_view && r.view.is_none() {
                r.view = Some(get(6).and_then(|def| cat.view_lineage(&def)));
            }
        }
        for r in rels {
            let r = Arc::new(r);
            cat.by_name
                .entry(r.name.clone())
                .or_default()
                .push(Arc::clone(&r));
            cat.by_oid.insert(r.oid, r);
        }
        cat
    }

    /// The lineage of a view definition; `None` (unknown) when it does not parse or
    /// calls an opaque function.
    fn view_lineage(&self, def: &str) -> Option<Vec<OutputItem>> {
        let analysis = portcullis_sql::analyze_uncached(def);
        let [st] = analysis.statements.as_slice() else {
            return None;
        };
        if st.functions.iter().any(|f| self.function_is_opaque(f))
            || st.operators.iter().any(|o| self.operator_is_opaque(o))
        {
            return None;
        }
        portcullis_sql::query_lineage(def)
    }
}

struct Entry {
    snapshot: Arc<DbCatalog>,
    loaded_at: Instant,
    target: Option<UpstreamTarget>,
    stale: bool,
    last_background: Option<Instant>,
}

/// The per-database catalog cache.
pub struct Catalog {
    dbs: RwLock<HashMap<String, Entry>>,
    refreshing: Arc<AtomicBool>,
    refresh: Duration,
}

impl Catalog {
    /// A cache whose entries are reloaded after `refresh`.
    pub fn new(refresh: Duration) -> Arc<Self> {
        Arc::new(Catalog {
            dbs: RwLock::new(HashMap::new()),
            refreshing: Arc::new(AtomicBool::new(false)),
            refresh,
        })
    }

    /// The cached catalog of `database` (empty if never loaded).
    pub fn get(&self, database: &str) -> Arc<DbCatalog> {
        self.dbs
            .read()
            .ok()
            .and_then(|m| m.get(database).map(|e| Arc::clone(&e.snapshot)))
            .unwrap_or_default()
    }

    fn needs_load(&self, database: &str) -> bool {
        self.dbs.read().ok().is_none_or(|m| match m.get(database) {
            None => true,
            Some(e) => e.stale || e.loaded_at.elapsed() >= self.refresh,
        })
    }

    /// Before a session starts: loads `database`'s catalog over the session's upstream
    /// connection if it is missing or due. A failure is logged; the session then runs
    /// with what the cache has (unknown relations have unknown provenance).
    pub async fn prepare_session(
        &self,
        database: &str,
        upstream: &mut Upstream,
        target: &UpstreamTarget,
    ) {
        if !self.needs_load(database) {
            return;
        }
        let started = Instant::now();
        match load(upstream).await {
            Ok((rows, functions)) => {
                self.store(database, rows, functions, Some(target.clone()), started)
            }
            Err(e) => {
                tracing::warn!(database, error = %e, "cannot load the catalog for masking")
            }
        }
    }

    /// Stores a catalog read by a load that started at `started`, unless a load that
    /// started later was stored already (a slow background load must not undo a
    /// reload after DDL).
    fn store(
        &self,
        database: &str,
        rows: Vec<Vec<Option<String>>>,
        functions: Option<Functions>,
        target: Option<UpstreamTarget>,
        started: Instant,
    ) {
        let snapshot = Arc::new(DbCatalog::from_rows(rows, functions));
        tracing::debug!(database, relations = snapshot.len(), "catalog loaded");
        if let Ok(mut m) = self.dbs.write() {
            if m.get(database).is_some_and(|e| e.loaded_at > started) {
                return;
            }
            let prev = m.remove(database);
            let target = target.or_else(|| prev.as_ref().and_then(|p| p.target.clone()));
            m.insert(
                database.to_owned(),
                Entry {
                    snapshot,
                    loaded_at: started,
                    target,
                    stale: false,
                    last_background: prev.and_then(|p| p.last_background),
                },
            );
        }
    }

    /// Marks `database`'s catalog stale (a result named a relation it does not know)
    /// and reloads it in the background over a side connection after `delay`. At most
    /// one such reload per second; after DDL, sessions use [`Catalog::reload`].
    pub fn invalidate(self: &Arc<Self>, database: &str, delay: Duration) {
        let target = {
            let Ok(mut m) = self.dbs.write() else { return };
            let Some(e) = m.get_mut(database) else { return };
            e.stale = true;
            if e.last_background
                .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
            {
                return;
            }
            e.last_background = Some(Instant::now());
            e.target.clone()
        };
        let Some(target) = target else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        let database = database.to_owned();
        rt.spawn(async move {
            tokio::time::sleep(delay).await;
            this.load_side(&database, &target).await;
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// Reloads `database`'s catalog now over a side connection (after a session's DDL
    /// committed), within [`RELOAD_TIMEOUT`]. A database never loaded, a failure or a
    /// timeout leaves the cache as it was, marked stale: relations it does not know
    /// keep unknown provenance (masked by the standard policy).
    pub async fn reload(&self, database: &str) {
        let target = {
            let Ok(mut m) = self.dbs.write() else { return };
            let Some(e) = m.get_mut(database) else { return };
            e.stale = true;
            e.target.clone()
        };
        let Some(target) = target else { return };
        if tokio::time::timeout(RELOAD_TIMEOUT, self.load_side(database, &target))
            .await
            .is_err()
        {
            tracing::warn!(database, "catalog reload after DDL timed out");
        }
    }

    /// Loads and stores `database`'s catalog over a new connection to `target`.
    async fn load_side(&self, database: &str, target: &UpstreamTarget) {
        let started = Instant::now();
        let result = async {
            let mut up = crate::backend::connect(target, Vec::new())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            load(&mut up).await
        }
        .await;
        match result {
            Ok((rows, functions)) => self.store(database, rows, functions, None, started),
            Err(e) => {
                tracing::warn!(database, error = %e, "cannot reload the catalog for masking")
            }
        }
    }
}

/// Longest a session's results wait for the catalog reload after its DDL.
pub const RELOAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the relations, the view definitions and the functions.
///
/// `pg_get_viewdef` fails [`VIEWS_SQL`] as a whole when any view is dropped while it
/// runs. Then each view the relations name is read by its own query, pipelined
/// ([`VIEWS_PIPELINE`] at a time): one that fails was dropped, and keeps unknown
/// lineage, as does every view whose definition cannot be read. A failure to read the
/// functions is logged and leaves them unknown (every function call is then opaque).
/// Both fail closed for what they cover, and nothing else.
async fn load(
    upstream: &mut Upstream,
) -> anyhow::Result<(Vec<Vec<Option<String>>>, Option<Functions>)> {
    let mut rows = simple_query(upstream, CATALOG_SQL).await??;
    let views = match simple_query(upstream, VIEWS_SQL).await? {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(error = %e, "view definitions changed while read; one by one");
            views_one_by_one(upstream, &rows).await?
        }
    };
    attach_view_definitions(&mut rows, views);
    let functions = match simple_query(upstream, FUNCTIONS_SQL).await? {
        Ok(f) => Some(Functions::from_rows(f)),
        Err(e) => {
            tracing::warn!(error = %e, "cannot load the functions for masking");
            None
        }
    };
    if functions.as_ref().is_some_and(|f| f.code_casts) {
        tracing::warn!(
            "a user-defined cast runs SQL or PL code: every computed value has unknown provenance for masking"
        );
    }
    Ok((rows, functions))
}

/// The definition of each user view in `rows` (rows of [`CATALOG_SQL`]), one query
/// per view, as rows of [`VIEWS_SQL`]. Views that fail are left out.
async fn views_one_by_one(
    upstream: &mut Upstream,
    rows: &[Vec<Option<String>>],
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    let oids: Vec<u32> = rows
        .iter()
        .filter(|r| {
            r.get(4).and_then(|a| a.as_deref()) == Some("1")
                && matches!(r.get(3).and_then(|k| k.as_deref()), Some("v" | "m"))
                && r.get(7).and_then(|s| s.as_deref()) == Some("f")
        })
        .filter_map(|r| r.first()?.as_deref()?.parse().ok())
        .collect();
    let mut views = Vec::with_capacity(oids.len());
    let mut lost = 0usize;
    for chunk in oids.chunks(VIEWS_PIPELINE) {
        let mut out = BytesMut::new();
        for oid in chunk {
            let sql = format!("SELECT {oid}::int8, pg_catalog.pg_get_viewdef({oid}::oid)");
            Query::encode(&sql, &mut out);
        }
        upstream.stream.write_all(&out).await?;
        upstream.stream.flush().await?;
        for _ in chunk {
            match read_response(upstream).await? {
                Ok(mut r) => views.append(&mut r),
                Err(_) => lost += 1,
            }
        }
    }
    if lost > 0 {
        tracing::debug!(lost, "views dropped while the catalog was read");
    }
    Ok(views)
}

/// Puts each view's definition (rows of [`VIEWS_SQL`]: OID, definition) on the first
/// column row of that view in `rows` (rows of [`CATALOG_SQL`]).
fn attach_view_definitions(rows: &mut [Vec<Option<String>>], views: Vec<Vec<Option<String>>>) {
    let mut defs: HashMap<String, String> = views
        .into_iter()
        .filter_map(|mut v| {
            let def = v.get_mut(1)?.take()?;
            Some((v.first()?.clone()?, def))
        })
        .collect();
    if defs.is_empty() {
        return;
    }
    for row in rows.iter_mut() {
        if row.get(4).and_then(|a| a.as_deref()) != Some("1") {
            continue;
        }
        let Some(oid) = row.first().and_then(|o| o.as_deref()) else {
            continue;
        };
        if let Some(def) = defs.remove(oid)
            && let Some(slot) = row.get_mut(6)
        {
            *slot = Some(def);
        }
    }
}

/// An ErrorResponse from the server: the query failed, the connection is usable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ServerError(String);

/// Runs one simple query: the text values of every row, or the server's error. The
/// outer error is an I/O or protocol failure (the connection is not usable).
async fn simple_query(
    upstream: &mut Upstream,
    sql: &str,
) -> anyhow::Result<Result<Vec<Vec<Option<String>>>, ServerError>> {
    let mut out = BytesMut::new();
    Query::encode(sql, &mut out);
    upstream.stream.write_all(&out).await?;
    upstream.stream.flush().await?;
    read_response(upstream).await
}

/// Reads one simple query's answer, up to its ReadyForQuery.
async fn read_response(
    upstream: &mut Upstream,
) -> anyhow::Result<Result<Vec<Vec<Option<String>>>, ServerError>> {
    let decoder = portcullis_wire::FrameDecoder::new(portcullis_wire::Limits::default());
    let mut rows = Vec::new();
    let mut error = None;
    loop {
        while let Some(f) = decoder.decode(&mut upstream.leftover)? {
            match f.tag() {
                tag::DATA_ROW if rows.len() < MAX_ROWS => {
                    let cells = DataRowCells::new(f.body())?
                        .map(|c| c.map(|v| v.map(|b| String::from_utf8_lossy(b).into_owned())))
                        .collect::<Result<Vec<_>, _>>()?;
                    rows.push(cells);
                }
                tag::ERROR_RESPONSE => {
                    let e = ErrorFields::decode(f.tag(), f.body())?;
                    error = Some(e.message().unwrap_or("error").to_owned());
                }
                tag::READY_FOR_QUERY => {
                    return Ok(match error {
                        Some(e) => Err(ServerError(e)),
                        None => Ok(rows),
                    });
                }
                _ => {}
            }
        }
        if upstream.stream.read_buf(&mut upstream.leftover).await? == 0 {
            anyhow::bail!("upstream closed the connection");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, schema: &str, builtin: bool) -> Vec<Option<String>> {
        vec![
            Some(name.into()),
            Some(schema.into()),
            Some(if builtin { "t" } else { "f" }.into()),
        ]
    }

    fn functions() -> Functions {
        Functions::from_rows(vec![
            row("lower", "pg_catalog", true),
            row("upper", "pg_catalog", true),
            row("now", "pg_catalog", true),
            row("query_to_xml", "pg_catalog", true),
            row("lower", "public", false),
            row("lookup_ssn", "public", false),
            row("sneaky", "pg_catalog", false),
            vec![
                Some("###".into()),
                Some("public".into()),
                Some("f".into()),
                Some("o".into()),
            ],
        ])
    }

    #[test]
    fn user_defined_and_unknown_functions_are_opaque() {
        let f = functions();
        for name in [
            "upper",
            "now",
            "pg_catalog.upper",
            "coalesce",
            "current_date",
        ] {
            assert!(!f.is_opaque(name), "{name}");
        }
        for name in [
            "lookup_ssn",
            "public.lookup_ssn",
            // Shares its name with a user-defined function (overloading, search_path).
            "lower",
            "public.lower",
            // Created after the cluster, even in pg_catalog.
            "sneaky",
            "pg_catalog.sneaky",
            // Not known: created since the last load.
            "brand_new",
            "pg_catalog.brand_new",
            "other.upper",
            // Runs a query given as text.
            "query_to_xml",
            "pg_catalog.query_to_xml",
        ] {
            assert!(f.is_opaque(name), "{name}");
        }
        assert!(f.knows("lookup_ssn") && f.knows("pg_catalog.upper"));
        assert!(!f.knows("brand_new"));
        // Operators: opaque only when a user-defined one with the symbol runs SQL/PL.
        assert!(f.is_opaque(&portcullis_sql::operator_call("###")));
        assert!(!f.is_opaque(&portcullis_sql::operator_call("=")));
        assert!(!f.is_opaque(&portcullis_sql::operator_call("->")));
        assert!(f.knows(&portcullis_sql::operator_call("=")));
        // A cast running SQL: every call and operator is opaque.
        let mut casts = functions();
        casts.code_casts = true;
        assert!(casts.is_opaque("pg_catalog.upper") && casts.is_opaque("operator(=)"));
        assert!(casts.is_opaque(&portcullis_sql::operator_call(portcullis_sql::CAST_SYMBOL)));
        // Not loaded: every operator is opaque, as every function is.
        let cat = DbCatalog::from_rows(Vec::new(), None);
        assert!(cat.function_is_opaque(&portcullis_sql::operator_call("=")));
    }

    #[test]
    fn views_calling_opaque_functions_have_unknown_lineage() {
        let rel = |oid: &str, name: &str, attnum: &str, col: &str, def: Option<&str>| {
            vec![
                Some(oid.into()),
                Some("public".into()),
                Some(name.into()),
                Some(if def.is_some() { "v" } else { "r" }.into()),
                Some(attnum.into()),
                Some(col.into()),
                def.map(str::to_owned),
                Some("f".into()),
            ]
        };
        let rows = vec![
            rel("100", "customers", "1", "id", None),
            rel("100", "customers", "2", "ssn", None),
            rel(
                "200",
                "v_lookup",
                "1",
                "s",
                Some("SELECT lookup_ssn(customers.id) AS s FROM customers"),
            ),
            rel(
                "300",
                "v_upper",
                "1",
                "s",
                Some("SELECT upper(customers.ssn) AS s FROM customers"),
            ),
        ];
        let cat = DbCatalog::from_rows(rows.clone(), Some(functions()));
        assert!(matches!(cat.relation(200).unwrap().view, Some(None)));
        assert!(matches!(cat.relation(300).unwrap().view, Some(Some(_))));
        // Functions not loaded: every call is opaque.
        let cat = DbCatalog::from_rows(rows, None);
        assert!(matches!(cat.relation(300).unwrap().view, Some(None)));
        assert!(cat.function_is_opaque("upper"));
        assert!(!DbCatalog::statement_only().function_is_opaque("lookup_ssn"));
    }

    #[test]
    fn view_definitions_land_on_their_views_first_column() {
        let rel = |oid: &str, kind: &str, attnum: &str| {
            vec![
                Some(oid.into()),
                Some("public".into()),
                Some(format!("r{oid}")),
                Some(kind.into()),
                Some(attnum.into()),
                Some(format!("c{attnum}")),
                None,
                Some("f".into()),
            ]
        };
        let mut rows = vec![
            rel("100", "r", "1"),
            rel("200", "v", "1"),
            rel("200", "v", "2"),
            rel("300", "v", "1"),
        ];
        let defs = vec![
            vec![Some("200".into()), Some("SELECT 1 AS c1, 2 AS c2".into())],
            // A view dropped after the relations were read: no row to land on.
            vec![Some("400".into()), Some("SELECT 1".into())],
        ];
        attach_view_definitions(&mut rows, defs);
        let defs: Vec<_> = rows.iter().map(|r| r[6].as_deref()).collect();
        assert_eq!(defs, [None, Some("SELECT 1 AS c1, 2 AS c2"), None, None]);
        let cat = DbCatalog::from_rows(rows, Some(functions()));
        assert!(matches!(cat.relation(200).unwrap().view, Some(Some(_))));
        // A view whose definition could not be read has unknown lineage.
        assert!(matches!(cat.relation(300).unwrap().view, Some(None)));
        assert!(cat.relation(100).unwrap().view.is_none());
    }
}
