//! Remembered `authorize` verdicts and `plan-masks` plans, for policies whose answers
//! depend only on the literal-free part of a request.
//!
//! A policy runs sandboxed with no clock, randomness, files or network, so its verdict
//! is a function of what it is given. Most governance rules read the statement's
//! analysis (kind, tables, columns, functions, fingerprint) and the identity, never the
//! literals. For such a policy (`decision_cache = true` on its entry) the gateway keys
//! verdicts on everything the request holds except the SQL text, the bound parameters
//! and the session id, so `WHERE aid = 1` and `WHERE aid = 2` from the same connection
//! are decided once. When the statement has no fingerprint (it did not parse), the SQL
//! text is part of the key. Mask plans are keyed the same way, plus every result
//! column with its type, format and provenance; the rows themselves (`mask-rows`) are
//! never cached.
//!
//! The key is the full encoding, compared byte for byte, not a hash of it: two requests
//! share a verdict only when they are equal in every keyed field. A failed call is
//! never remembered. Each loaded policy has its own cache, so a reload starts empty.

use quick_cache::sync::Cache;

use super::CallContext;
use super::bindings::portcullis::policy::types as wit;
use super::chain::Verdict;

/// Verdicts remembered per policy.
pub const DECISION_CACHE_ENTRIES: usize = 8192;

/// Remembered verdicts and mask plans of one policy, and their hit/miss counters.
pub struct DecisionCache {
    /// Request key encoding → `authorize` verdict.
    verdicts: Cache<Vec<u8>, Verdict>,
    /// Result key encoding → `plan-masks` plan.
    plans: Cache<Vec<u8>, wit::MaskPlan>,
    /// `portcullis_policy_decision_cache_total{policy, outcome="hit"}`.
    hits: prometheus::IntCounter,
    /// `portcullis_policy_decision_cache_total{policy, outcome="miss"}`.
    misses: prometheus::IntCounter,
}

impl DecisionCache {
    /// An empty cache counting into these counters.
    pub fn new(hits: prometheus::IntCounter, misses: prometheus::IntCounter) -> Self {
        DecisionCache {
            verdicts: Cache::new(DECISION_CACHE_ENTRIES),
            plans: Cache::new(DECISION_CACHE_ENTRIES),
            hits,
            misses,
        }
    }

    /// The remembered verdict for `key`, counting a hit or a miss.
    pub fn get(&self, key: &[u8]) -> Option<Verdict> {
        self.counted(self.verdicts.get(key))
    }

    /// The remembered mask plan for a [`result_key`], counting a hit or a miss.
    pub fn plan(&self, key: &[u8]) -> Option<wit::MaskPlan> {
        self.counted(self.plans.get(key))
    }

    /// Remembers a mask plan (a failed call has none to remember).
    pub fn insert_plan(&self, key: Vec<u8>, plan: &wit::MaskPlan) {
        self.plans.insert(key, plan.clone());
    }

    /// Counts a hit answered for this cache by a whole-chain memo
    /// ([`super::memo`]), so the hit rate stays what the policy's own cache would show.
    pub fn count_hit(&self) {
        self.hits.inc();
    }

    fn counted<T>(&self, v: Option<T>) -> Option<T> {
        match v {
            Some(_) => self.hits.inc(),
            None => self.misses.inc(),
        }
        v
    }

    /// Remembers `verdict` for `key` (not a failure).
    pub fn insert(&self, key: &[u8], verdict: &Verdict) {
        if !matches!(verdict, Verdict::Failed(_)) {
            self.verdicts.insert(key.to_vec(), verdict.clone());
        }
    }
}

/// The cache key of a request: every field but `sql` (kept when the statement has no
/// fingerprint), `params` and `session-id`, plus the `context` answers.
pub fn key(req: &wit::Request, call: &CallContext) -> Vec<u8> {
    let mut k = Key(Vec::with_capacity(256));
    k.byte(b'a');
    k.identity(&req.identity, call);
    k.str(&req.database);
    k.statement(&req.statement);
    k.byte(req.protocol as u8);
    k.byte(req.transaction as u8);
    k.0
}

/// The cache key of a result context (for `plan-masks`): the identity, the database,
/// the statement as in [`key`], and every result column with its provenance.
pub fn result_key(ctx: &wit::ResultContext, call: &CallContext) -> Vec<u8> {
    let mut k = Key(Vec::with_capacity(256));
    k.byte(b'r');
    k.identity(&ctx.identity, call);
    k.str(&ctx.database);
    match &ctx.statement {
        Some(s) => {
            k.byte(1);
            k.statement(s);
        }
        None => k.byte(0),
    }
    k.len(ctx.columns.len());
    for c in &ctx.columns {
        k.len(c.index as usize);
        k.str(&c.name);
        k.len(c.type_oid as usize);
        k.byte(c.format as u8);
        match &c.provenance {
            wit::Provenance::Direct(src) => {
                k.byte(0);
                k.source(src);
            }
            wit::Provenance::Derived(srcs) => {
                k.byte(1);
                k.len(srcs.len());
                for src in srcs {
                    k.source(src);
                }
            }
            wit::Provenance::Constant => k.byte(2),
            wit::Provenance::Unknown(tables) => {
                k.byte(3);
                k.tables(tables);
            }
        }
    }
    k.0
}

/// A length-prefixed encoding: no two different field sequences encode alike.
struct Key(Vec<u8>);

impl Key {
    fn byte(&mut self, b: u8) {
        self.0.push(b);
    }

    fn len(&mut self, n: usize) {
        self.0.extend_from_slice(&(n as u32).to_le_bytes());
    }

    fn str(&mut self, s: &str) {
        self.len(s.len());
        self.0.extend_from_slice(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.byte(1);
                self.str(s);
            }
            None => self.byte(0),
        }
    }

    fn strs(&mut self, v: &[String]) {
        self.len(v.len());
        for s in v {
            self.str(s);
        }
    }

    fn identity(&mut self, id: &wit::Identity, call: &CallContext) {
        self.str(&id.user);
        self.strs(&id.groups);
        self.byte(id.kind as u8);
        self.byte(id.auth_method as u8);
        self.opt_str(id.acting_for.as_deref());
        self.str(&id.client_addr);
        self.str(&id.application_name);
        match &call.acting_for {
            Some(d) => {
                self.byte(1);
                self.str(&d.user);
                self.strs(&d.groups);
            }
            None => self.byte(0),
        }
    }

    fn tables(&mut self, tables: &[wit::TableRef]) {
        self.len(tables.len());
        for t in tables {
            self.opt_str(t.schema.as_deref());
            self.str(&t.name);
            self.byte(t.access as u8);
        }
    }

    fn source(&mut self, c: &wit::ColumnSource) {
        self.str(&c.schema);
        self.str(&c.table);
        self.str(&c.column);
    }

    fn statement(&mut self, s: &wit::Statement) {
        self.byte(s.kind as u8);
        self.str(&s.leading_keyword);
        self.str(&s.fingerprint);
        if s.fingerprint.is_empty() {
            self.str(&s.sql);
        }
        self.tables(&s.tables);
        self.strs(&s.columns);
        self.strs(&s.functions);
        self.byte(match s.has_where {
            None => 2,
            Some(w) => w as u8,
        });
        match &s.copy {
            Some(c) => {
                self.byte(1);
                self.byte(c.to as u8);
                self.byte(c.target as u8);
            }
            None => self.byte(0),
        }
        self.opt_str(s.parse_error.as_deref());
        self.byte(s.multi_statement as u8);
        self.len(s.index as usize);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(sql: &str, fingerprint: &str) -> wit::Request {
        wit::Request {
            identity: wit::Identity {
                user: "alice".into(),
                groups: vec!["analysts".into()],
                kind: wit::PrincipalKind::Person,
                auth_method: wit::AuthMethod::Scram,
                acting_for: None,
                client_addr: "127.0.0.1:5000".into(),
                application_name: "psql".into(),
            },
            database: "demo".into(),
            statement: wit::Statement {
                kind: wit::StatementKind::Select,
                leading_keyword: "select".into(),
                fingerprint: fingerprint.into(),
                sql: sql.into(),
                tables: vec![wit::TableRef {
                    schema: None,
                    name: "orders".into(),
                    access: wit::Access::Read,
                }],
                columns: vec!["orders.id".into()],
                functions: Vec::new(),
                has_where: None,
                copy: None,
                parse_error: None,
                multi_statement: false,
                index: 0,
            },
            params: None,
            protocol: wit::Protocol::Simple,
            transaction: wit::TransactionState::Idle,
            session_id: 1,
        }
    }

    #[test]
    fn literals_params_and_the_session_are_not_keyed() {
        let none = CallContext::default();
        let fp = "select id from orders where id = ?";
        let a = request("SELECT id FROM orders WHERE id = 1", fp);
        let mut b = request("SELECT id FROM orders WHERE id = 2", fp);
        b.params = Some(vec![wit::ParamValue::Text("7".into())]);
        b.session_id = 99;
        assert_eq!(key(&a, &none), key(&b, &none));
    }

    #[test]
    fn everything_else_is_keyed() {
        let none = CallContext::default();
        let fp = "select id from orders";
        let base = key(&request("SELECT id FROM orders", fp), &none);
        let changed: [fn(&mut wit::Request); 16] = [
            |r| r.identity.user = "bob".into(),
            |r| r.identity.groups.push("dba".into()),
            |r| r.identity.kind = wit::PrincipalKind::Agent,
            |r| r.identity.acting_for = Some("alice".into()),
            |r| r.identity.client_addr = "10.0.0.1:5000".into(),
            |r| r.database = "prod".into(),
            |r| r.statement.fingerprint = "select id from orders_x".into(),
            |r| r.statement.tables[0].access = wit::Access::Write,
            |r| r.statement.tables[0].schema = Some("public".into()),
            |r| r.statement.columns.push("predicate:orders.id".into()),
            |r| r.statement.functions.push("pg_read_file".into()),
            |r| r.statement.has_where = Some(false),
            |r| r.statement.multi_statement = true,
            |r| r.statement.index = 1,
            |r| r.protocol = wit::Protocol::Extended,
            |r| r.transaction = wit::TransactionState::Failed,
        ];
        for (i, change) in changed.iter().enumerate() {
            let mut r = request("SELECT id FROM orders", fp);
            change(&mut r);
            assert_ne!(key(&r, &none), base, "change {i} did not change the key");
        }
        // The groups of the person an agent acts for.
        let call = CallContext::acting_for(Some("alice"), &["etl-owners".into()]);
        assert_ne!(key(&request("SELECT id FROM orders", fp), &call), base);
        // Field boundaries are encoded: ["ab"] is not ["a", "b"].
        let mut one = request("x", fp);
        one.identity.groups = vec!["ab".into()];
        let mut two = request("x", fp);
        two.identity.groups = vec!["a".into(), "b".into()];
        assert_ne!(key(&one, &none), key(&two, &none));
    }

    fn result(sql: &str, provenance: wit::Provenance) -> wit::ResultContext {
        let r = request(sql, "select email from customers where id = ?");
        wit::ResultContext {
            identity: r.identity,
            database: r.database,
            statement: Some(r.statement),
            columns: vec![wit::ResultColumn {
                index: 0,
                name: "email".into(),
                type_oid: 25,
                format: wit::ValueFormat::Text,
                provenance,
            }],
        }
    }

    #[test]
    fn result_keys_hold_the_columns_and_their_provenance_not_the_literals() {
        let none = CallContext::default();
        let src = |c: &str| wit::ColumnSource {
            schema: "public".into(),
            table: "customers".into(),
            column: c.into(),
        };
        let direct = wit::Provenance::Direct(src("email"));
        let a = result("SELECT email FROM customers WHERE id = 1", direct.clone());
        let b = result("SELECT email FROM customers WHERE id = 2", direct.clone());
        assert_eq!(result_key(&a, &none), result_key(&b, &none));
        let others = [
            wit::Provenance::Direct(src("name")),
            wit::Provenance::Derived(vec![src("email")]),
            wit::Provenance::Constant,
            wit::Provenance::Unknown(Vec::new()),
        ];
        for p in others {
            let c = result("SELECT email FROM customers WHERE id = 1", p);
            assert_ne!(result_key(&a, &none), result_key(&c, &none));
        }
        let mut binary = a.clone();
        binary.columns[0].format = wit::ValueFormat::Binary;
        assert_ne!(result_key(&a, &none), result_key(&binary, &none));
        let mut renamed = a.clone();
        renamed.columns[0].name = "e".into();
        assert_ne!(result_key(&a, &none), result_key(&renamed, &none));
        let mut other_user = a.clone();
        other_user.identity.user = "bob".into();
        assert_ne!(result_key(&a, &none), result_key(&other_user, &none));
    }

    #[test]
    fn without_a_fingerprint_the_sql_is_keyed() {
        let none = CallContext::default();
        let a = request("DO $$ BEGIN PERFORM 1; END $$", "");
        let b = request("DO $$ BEGIN DROP TABLE t; END $$", "");
        assert_ne!(key(&a, &none), key(&b, &none));
    }
}
