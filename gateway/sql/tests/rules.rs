//! One test group per analysis rule, through the public API only.

use std::sync::Arc;

use portcullis_sql::{
    Access, Analyzer, CopyInfo, CopyTarget, StatementKind as K, StatementSummary, TableRef,
    analyze_uncached, fingerprint, split_statements,
};

fn all(sql: &str) -> Vec<StatementSummary> {
    analyze_uncached(sql).statements
}

fn one(sql: &str) -> StatementSummary {
    let mut v = all(sql);
    assert_eq!(v.len(), 1, "{sql}: {v:#?}");
    v.remove(0)
}

/// `[("schema.name", "access")]`, sorted for order-independent comparison.
fn tables(s: &StatementSummary) -> Vec<(String, &'static str)> {
    let mut v: Vec<_> = s
        .tables
        .iter()
        .map(|t| (t.qualified_name(), t.access.as_str()))
        .collect();
    v.sort();
    v
}

fn t(name: &str, access: &'static str) -> (String, &'static str) {
    (name.to_owned(), access)
}

fn kinds(sql: &str) -> Vec<K> {
    all(sql).iter().map(|s| s.kind).collect()
}

// ---- Rule 1: identifiers -------------------------------------------------

#[test]
fn unquoted_identifiers_fold_and_quoted_ones_keep_case() {
    for sql in [
        "SELECT * FROM CUSTOMERS",
        "select * from Customers",
        "select * from customers",
    ] {
        assert_eq!(tables(&one(sql)), vec![t("customers", "read")], "{sql}");
    }
    assert_eq!(
        tables(&one("select * from \"Customers\"")),
        vec![t("Customers", "read")]
    );
    assert_eq!(
        tables(&one("select * from PUBLIC.Customers")),
        vec![t("public.customers", "read")]
    );
    let s = one("select * from public.\"Customers\"");
    assert_eq!(
        s.tables,
        vec![TableRef {
            schema: Some("public".into()),
            name: "Customers".into(),
            access: Access::Read
        }]
    );
    // Three-part names drop the database.
    assert_eq!(
        tables(&one("select * from mydb.Sales.Orders")),
        vec![t("sales.orders", "read")]
    );
    // U&"..." identifiers are decoded, with or without UESCAPE.
    assert_eq!(
        tables(&one(r#"select * from U&"\0073ecrets""#)),
        vec![t("secrets", "read")]
    );
    assert_eq!(
        tables(&one(r#"select * from U&"!0073ecrets" UESCAPE '!'"#)),
        vec![t("secrets", "read")]
    );
    assert_eq!(
        one(r#"select * from U&"\zzzz""#).kind,
        K::Unparsed,
        "invalid escapes are refused"
    );
    // Identifiers longer than 63 bytes are truncated, as PostgreSQL does.
    let long = format!("select * from {}x", "a".repeat(63));
    assert_eq!(tables(&one(&long)), vec![t(&"a".repeat(63), "read")]);
}

// ---- Rule 2: tables and access ---------------------------------------------

#[test]
fn reads_are_found_everywhere() {
    for sql in [
        "select * from secrets",
        "select * from (select * from secrets) s",
        "select (select max(v) from secrets)",
        "select 1 where exists (select 1 from secrets)",
        "select 1 where 1 in (select v from secrets)",
        "with x as (select * from secrets) select * from x",
        "select 1 union select v from secrets",
        "select 1 except select v from secrets intersect select 2",
        "select * from t, lateral (select * from secrets where secrets.id = t.id) s",
        "select * from t join secrets on true",
        "select * from t natural join secrets",
        "select * from secrets for update",
        "select * from only secrets",
        "select * from ONLY public.secrets s",
        "values ((select v from secrets))",
    ] {
        let s = one(sql);
        assert!(
            s.tables
                .iter()
                .any(|t| t.name == "secrets" && t.access == Access::Read),
            "{sql}: {s:#?}"
        );
        assert!(
            !s.tables.iter().any(|t| t.name == "x"),
            "{sql}: CTE reported"
        );
    }
}

#[test]
fn dml_targets_are_writes_and_their_sources_reads() {
    let s = one("insert into orders (id) select id from customers returning id");
    assert_eq!(s.kind, K::Insert);
    assert_eq!(
        tables(&s),
        vec![t("customers", "read"), t("orders", "write")]
    );
    let s = one("update orders set total = 0 from customers c where c.id = orders.cid");
    assert_eq!(
        tables(&s),
        vec![t("customers", "read"), t("orders", "write")]
    );
    let s = one("delete from orders using customers where customers.id = orders.cid");
    assert_eq!(
        tables(&s),
        vec![t("customers", "read"), t("orders", "write")]
    );
    let s = one("merge into orders o using staging s on o.id = s.id when matched then delete");
    assert_eq!(s.kind, K::Merge);
    assert_eq!(tables(&s), vec![t("orders", "write"), t("staging", "read")]);
    // Read and written: reported once per access mode.
    let s = one("update t set a = (select max(a) from t)");
    assert_eq!(tables(&s), vec![t("t", "read"), t("t", "write")]);
    let s = one("update only secrets set a = 1");
    assert_eq!(tables(&s), vec![t("secrets", "write")]);
}

#[test]
fn data_modifying_ctes_are_writes() {
    let s = one("WITH x AS (DELETE FROM orders RETURNING *) SELECT * FROM x");
    assert_eq!(s.kind, K::Select);
    assert_eq!(tables(&s), vec![t("orders", "write")]);
    assert_eq!(s.has_where, Some(false));
    let s = one("with u as (update accounts set b = 0 where id = 1 returning *) select * from u");
    assert_eq!(tables(&s), vec![t("accounts", "write")]);
    assert_eq!(s.has_where, Some(true));
}

#[test]
fn cte_scoping_follows_postgresql() {
    // A CTE named like a table does not hide the table read in its own body.
    let s = one("WITH secrets AS (SELECT * FROM secrets) SELECT * FROM secrets");
    assert_eq!(tables(&s), vec![t("secrets", "read")]);
    // Non-recursive CTEs only see earlier siblings...
    let s = one("with a as (select * from b), b as (select 1) select * from a");
    assert_eq!(tables(&s), vec![t("b", "read")]);
    // ... recursive ones see all of them.
    let s = one("with recursive a as (select * from b), b as (select 1) select * from a");
    assert!(s.tables.is_empty(), "{s:#?}");
    let s = one("with recursive r(n) as (select 1 union all select n + 1 from r) select * from r");
    assert!(s.tables.is_empty(), "{s:#?}");
    // A CTE inside a subquery is not in scope outside it.
    let s = one("select * from (with x as (select 1) select * from x) s, x");
    assert_eq!(tables(&s), vec![t("x", "read")]);
    // A schema-qualified name is never a CTE.
    let s = one("with x as (select 1) select * from public.x");
    assert_eq!(tables(&s), vec![t("public.x", "read")]);
    // DML targets never resolve to CTEs.
    let s = one("with x as (select 1) insert into x select * from x");
    assert_eq!(tables(&s), vec![t("x", "write")]);
}

#[test]
fn ddl_targets() {
    type Case<'a> = (&'a str, K, &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (
            "DROP TABLE a, b.c",
            K::Drop,
            &[("a", "ddl"), ("b.c", "ddl")],
        ),
        ("drop view if exists v", K::Drop, &[("v", "ddl")]),
        ("drop index i", K::Drop, &[("i", "ddl")]),
        ("drop schema s cascade", K::Drop, &[]),
        ("TRUNCATE orders", K::Truncate, &[("orders", "ddl")]),
        (
            "truncate table only a, b",
            K::Truncate,
            &[("a", "ddl"), ("b", "ddl")],
        ),
        ("alter table t add column c int", K::Alter, &[("t", "ddl")]),
        (
            "alter table t rename to u",
            K::Alter,
            &[("t", "ddl"), ("u", "ddl")],
        ),
        ("create index on t (a)", K::CreateIndex, &[("t", "ddl")]),
        ("create table t (a int)", K::CreateTable, &[("t", "ddl")]),
        (
            "create table t as select * from s",
            K::CreateTable,
            &[("s", "read"), ("t", "ddl")],
        ),
        (
            "select * into n from s",
            K::CreateTable,
            &[("n", "ddl"), ("s", "read")],
        ),
        (
            "create table t (like s)",
            K::CreateTable,
            &[("s", "read"), ("t", "ddl")],
        ),
        (
            "create view v as select * from s",
            K::CreateView,
            &[("s", "read"), ("v", "ddl")],
        ),
        (
            "create materialized view v as select * from s",
            K::CreateView,
            &[("s", "read"), ("v", "ddl")],
        ),
        (
            "comment on table secrets is 'x'",
            K::Comment,
            &[("secrets", "ddl")],
        ),
        (
            "comment on column public.secrets.v is 'x'",
            K::Comment,
            &[("public.secrets", "ddl")],
        ),
        (
            "grant select on secrets to bob",
            K::Grant,
            &[("secrets", "ddl")],
        ),
        (
            "grant select on table a, b to bob",
            K::Grant,
            &[("a", "ddl"), ("b", "ddl")],
        ),
        (
            "grant all on all tables in schema public to bob",
            K::Grant,
            &[("public.*", "ddl")],
        ),
        (
            "revoke select on secrets from bob",
            K::Revoke,
            &[("secrets", "ddl")],
        ),
        (
            "lock table t in access exclusive mode",
            K::Lock,
            &[("t", "ddl")],
        ),
        ("vacuum t", K::Vacuum, &[("t", "ddl")]),
        ("analyze t", K::Analyze, &[("t", "ddl")]),
        (
            "create trigger tr after insert on t for each row execute function f()",
            K::CreateOther,
            &[("t", "ddl")],
        ),
        (
            "create policy p on t using (true)",
            K::CreateOther,
            &[("t", "ddl")],
        ),
    ];
    for (sql, kind, expected) in cases {
        let s = one(sql);
        assert_eq!(s.kind, *kind, "{sql}");
        let mut exp: Vec<_> = expected.iter().map(|(n, a)| (n.to_string(), *a)).collect();
        exp.sort();
        assert_eq!(tables(&s), exp, "{sql}");
    }
}

#[test]
fn copy_direction_target_and_access() {
    let s = one("COPY customers TO '/tmp/x'");
    assert_eq!(s.kind, K::Copy);
    assert_eq!(
        s.copy,
        Some(CopyInfo {
            to: true,
            target: CopyTarget::ServerFile
        })
    );
    assert_eq!(tables(&s), vec![t("customers", "read")]);
    let s = one("COPY customers TO PROGRAM 'cat'");
    assert_eq!(s.copy.map(|c| c.target), Some(CopyTarget::Program));
    let s = one("COPY (select * from secrets) TO STDOUT");
    assert_eq!(
        s.copy,
        Some(CopyInfo {
            to: true,
            target: CopyTarget::Client
        })
    );
    assert_eq!(tables(&s), vec![t("secrets", "read")]);
    let s = one("COPY orders (a, b) FROM STDIN WITH (FORMAT csv)");
    assert_eq!(
        s.copy.map(|c| (c.to, c.target)),
        Some((false, CopyTarget::Client))
    );
    assert_eq!(tables(&s), vec![t("orders", "write")]);
    let s = one("copy orders from '/etc/passwd'");
    assert_eq!(s.copy.map(|c| c.target), Some(CopyTarget::ServerFile));
    assert_eq!(s.copy.map(|c| c.direction()), Some("from"));
    // The target kind is structural: file and STDOUT never share a fingerprint.
    assert_ne!(
        fingerprint("COPY t TO '/x'"),
        fingerprint("COPY t TO STDOUT")
    );
    assert_ne!(
        fingerprint("COPY t TO '/x'"),
        fingerprint("COPY t TO PROGRAM '/x'")
    );
}

// ---- Rule 3: wrappers ----------------------------------------------------------

#[test]
fn wrappers_expose_the_statement_they_run() {
    let s = one("PREPARE p AS DELETE FROM orders");
    assert_eq!(s.kind, K::Prepare);
    assert_eq!(tables(&s), vec![t("orders", "write")]);
    assert_eq!(s.has_where, Some(false));
    let s = one("PREPARE p (int) AS SELECT lo_import('/x') FROM secrets WHERE id = $1");
    assert_eq!(tables(&s), vec![t("secrets", "read")]);
    assert_eq!(s.functions, vec!["lo_import"]);
    for sql in [
        "EXPLAIN ANALYZE DELETE FROM orders",
        "explain (analyze, buffers) delete from orders",
        "EXPLAIN DELETE FROM orders",
    ] {
        let s = one(sql);
        assert_eq!(s.kind, K::Explain, "{sql}");
        assert_eq!(tables(&s), vec![t("orders", "write")], "{sql}");
        assert_eq!(s.has_where, Some(false), "{sql}");
    }
    let s = one("DECLARE c CURSOR FOR SELECT * FROM secrets");
    assert_eq!(s.kind, K::Declare);
    assert_eq!(tables(&s), vec![t("secrets", "read")]);
    let s = one("CREATE VIEW v AS SELECT * FROM secrets");
    assert_eq!(tables(&s), vec![t("secrets", "read"), t("v", "ddl")]);
}

// ---- Rule 4: functions -----------------------------------------------------

#[test]
fn functions_are_found_everywhere() {
    assert_eq!(
        one("SELECT pg_read_file('/etc/passwd')").functions,
        vec!["pg_read_file"]
    );
    let s = one("SELECT * FROM dblink('host=x', 'select 1') AS t(a int)");
    assert_eq!(s.functions, vec!["dblink"]);
    assert!(
        s.tables.is_empty(),
        "a table function is not a relation: {s:#?}"
    );
    assert_eq!(
        one("select * from query_to_xml('select * from secrets', true, false, '')").functions,
        vec!["query_to_xml"]
    );
    assert_eq!(
        one("select PG_CATALOG.Lo_Import('/x')").functions,
        vec!["pg_catalog.lo_import"]
    );
    assert_eq!(one("select \"MyFunc\"(1)").functions, vec!["MyFunc"]);
    let cases: &[(&str, &str)] = &[
        ("select * from t where a = f(1)", "f"),
        ("select * from t, lateral pg_ls_dir('.') d", "pg_ls_dir"),
        (
            "create table t (a text default pg_read_file('x'))",
            "pg_read_file",
        ),
        (
            "insert into t values (1) returning pg_read_file('x')",
            "pg_read_file",
        ),
        (
            "update t set a = 1 returning current_setting('x')",
            "current_setting",
        ),
        (
            "delete from t where a = any(select g from generate_series(1, 3) g)",
            "generate_series",
        ),
        ("select count(*) filter (where f(x)) over () from t", "f"),
        ("select 1 from t group by g(a) having h(1) > 0", "h"),
        ("call my_proc(1)", "my_proc"),
        ("call s.p(pg_sleep(1))", "pg_sleep"),
        (
            "select set_config('standard_conforming_strings', 'off', false)",
            "set_config",
        ),
        ("select * from unnest(array[1]) with ordinality", "unnest"),
    ];
    for (sql, f) in cases {
        let s = one(sql);
        assert!(
            s.functions.iter().any(|x| x == f),
            "{sql}: {:?}",
            s.functions
        );
        assert!(s.calls_function(f));
    }
    assert!(one("select pg_catalog.pg_read_file('x')").calls_function("pg_read_file"));
    assert_eq!(one("call s.p()").functions, vec!["s.p"]);
}

// ---- Rule 5: multi-statement strings -------------------------------------------

#[test]
fn multi_statement_strings() {
    assert_eq!(
        kinds("select 1; drop table customers"),
        vec![K::Select, K::Drop]
    );
    let a = analyze_uncached("select 1; DO $$ begin perform 1; end $$;");
    assert_eq!(a.statements.len(), 2);
    assert_eq!(a.statements[0].kind, K::Select);
    assert_eq!(a.statements[1].kind, K::Unparsed);
    assert_eq!(a.statements[1].leading_keyword, "do");
    assert!(a.statements[1].parse_error.is_some());
    assert!(a.has_unparsed());
    // Only the failing piece is unparsed.
    assert_eq!(
        kinds("select 1; checkpoint; drop table t"),
        vec![K::Select, K::Unparsed, K::Drop]
    );
    assert!(all("").is_empty());
    assert!(all("  -- nothing\n /* at all */ ;; ").is_empty());
    // Separators hidden in literals, identifiers and comments do not split.
    for sql in [
        "select ';drop table x'",
        "select \";drop table x\"",
        "select $$;drop table x$$",
        "select $a$ $$; drop table x; $$ $a$",
        "select 1 -- ; drop table x",
        "select 1 /* ; */",
        "select 1 /* /* */ ; drop table x */",
        "select E'\\'; drop table x; --'",
        "select 'a'\n'b;drop table x'",
    ] {
        assert_eq!(kinds(sql), vec![K::Select], "{sql}");
    }
    // ... and separators outside them do.
    for sql in [
        "select 'a\\'; drop table x",
        "select E'\\\\'; drop table x",
        "select 1 -- c\r; drop table x",
        "select 'a' /* c */\n; drop table x",
    ] {
        assert_eq!(kinds(sql), vec![K::Select, K::Drop], "{sql}");
    }
    assert_eq!(
        split_statements("select 1; /* x */ drop table t;;"),
        vec!["select 1", "drop table t"]
    );
}

#[test]
fn suppressed_splits_fail_closed() {
    // psql (and we) keep `;` inside BEGIN ... END of CREATE FUNCTION; a
    // parameter named `begin` must not hide the statement after it.
    let a = analyze_uncached(
        "create function f(begin int) returns int language sql as 'select 1'; drop table secrets",
    );
    assert!(
        a.statements
            .iter()
            .any(|s| s.kind == K::Drop && s.touches_table("secrets")),
        "{a:#?}"
    );
    let a = analyze_uncached("select (1; drop table secrets");
    assert!(a.statements.iter().any(|s| s.kind == K::Drop), "{a:#?}");
    assert!(a.has_unparsed());
}

// ---- Rule 6: fingerprints ----------------------------------------------------

#[test]
fn fingerprints() {
    assert_eq!(
        fingerprint("SELECT abalance FROM pgbench_accounts WHERE aid = 1"),
        "select abalance from pgbench_accounts where aid = ?"
    );
    assert_eq!(
        fingerprint(
            "select 'a', E'b\\'', $$c$$, $t$d$t$, B'1', X'f', N'n', U&'u', 1.5e3, .5, 0x1F, $1"
        ),
        "select ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, $1"
    );
    assert_eq!(
        fingerprint("DROP/**/TABLE customers"),
        "drop table customers"
    );
    assert_eq!(
        fingerprint("  SeLeCt\t*\n\nFROM \"Mixed\" -- trailing\n"),
        "select * from \"Mixed\""
    );
    assert_eq!(fingerprint("a IN (1, 2, 3)"), "a in (?, ?, ?)");
    assert_eq!(fingerprint("select 1; select 2"), "select ?; select ?");
    // Case and whitespace tricks do not change the fingerprint...
    assert_eq!(
        fingerprint("DROP   table/* x */CUSTOMERS"),
        fingerprint("drop table customers")
    );
    // ... quoting does.
    assert_ne!(
        fingerprint("drop table \"Customers\""),
        fingerprint("drop table customers")
    );
    // Per-statement fingerprints.
    let a = analyze_uncached("SELECT 1 ; drop TABLE x");
    assert_eq!(a.fingerprint, "select ? ; drop table x");
    assert_eq!(a.statements[0].fingerprint, "select ?");
    assert_eq!(a.statements[1].fingerprint, "drop table x");
}

// ---- Rule 7: cache -----------------------------------------------------------

#[test]
fn cache_shares_one_parse_across_literals() {
    let an = Analyzer::new(100);
    let a = an.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 1");
    let b = an.analyze("SELECT abalance FROM pgbench_accounts WHERE aid = 99");
    let c = an.analyze("select abalance from pgbench_accounts where aid = 12345");
    assert!(Arc::ptr_eq(&a, &b) && Arc::ptr_eq(&b, &c));
    let st = an.stats();
    assert_eq!((st.hits, st.misses, st.entries), (2, 1, 1));
    for sql in [
        "select 'drop table x'",
        "select $$; drop table x; $$",
        "select 1 -- ; drop table x",
        "select E'\\'; drop table x; --'",
        "select 'a\\'; drop table x; --'",
        "select /* ; */ 1",
        "copy t to stdout",
        "copy t to '/x'",
        "copy t to program 'x'",
    ] {
        assert_eq!(*an.analyze(sql), analyze_uncached(sql), "{sql}");
    }
    // Huge strings bypass the cache.
    let big = format!("select 1 from t where a in ({}1)", "1, ".repeat(30_000));
    let before = an.stats().entries;
    let x = an.analyze(&big);
    assert_eq!(x.statements[0].kind, K::Select);
    assert_eq!(an.stats().entries, before);
    // Capacity 0 disables caching but still analyses.
    let none = Analyzer::new(0);
    assert_eq!(none.analyze("select 1").statements.len(), 1);
    assert_eq!(none.stats().entries, 0);
}

#[test]
fn analyzer_is_shared_across_threads() {
    let an = Arc::new(Analyzer::new(10));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let an = Arc::clone(&an);
            std::thread::spawn(move || {
                for j in 0..50 {
                    let a = an.analyze(&format!("select * from t where a = {}", i * 100 + j));
                    assert_eq!(a.statements[0].tables.len(), 1);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    let st = an.stats();
    assert_eq!(st.entries, 1);
    assert_eq!(st.hits + st.misses, 200);
}

// ---- has_where -----------------------------------------------------------------

#[test]
fn where_presence() {
    assert_eq!(one("UPDATE t SET a=1").has_where, Some(false));
    assert_eq!(one("DELETE FROM orders WHERE id = 1").has_where, Some(true));
    assert_eq!(one("DELETE FROM orders").has_where, Some(false));
    assert_eq!(one("update t set a = 1 where true").has_where, Some(true));
    assert_eq!(one("select * from t where a = 1").has_where, None);
    assert_eq!(one("insert into t values (1)").has_where, None);
    // Any UPDATE/DELETE without WHERE anywhere in the statement.
    assert_eq!(
        one("with a as (delete from x where id = 1 returning *), b as (delete from y returning *) select 1").has_where,
        Some(false)
    );
}

// ---- Misparse guards and bypass attempts ----------------------------------------

#[test]
fn table_shorthand_reads_the_table() {
    // `TABLE x` is `SELECT * FROM x`, wherever a query can start.
    for (sql, expected) in [
        ("table secrets", "secrets"),
        ("TABLE \"Secrets\"", "Secrets"),
        ("table public.secrets", "public.secrets"),
        ("table only secrets", "secrets"),
        ("select 1 union table secrets", "secrets"),
        ("select 1 union all table secrets", "secrets"),
        ("with x as (table secrets) select * from x", "secrets"),
        ("select * from (table secrets) s", "secrets"),
        ("explain analyze table secrets", "secrets"),
        ("create view v as table secrets", "secrets"),
        ("declare c cursor for table secrets", "secrets"),
        ("copy (table secrets) to stdout", "secrets"),
    ] {
        let s = one(sql);
        assert_ne!(s.kind, K::Unparsed, "{sql}: {s:?}");
        assert!(
            tables(&s)
                .iter()
                .any(|(n, a)| n == expected && *a == "read"),
            "{sql}: {:?}",
            tables(&s)
        );
    }
    // Object-type uses of TABLE are untouched.
    assert_eq!(one("drop table secrets").kind, K::Drop);
    assert_eq!(one("lock table secrets").kind, K::Lock);
    // A context the rewrite does not know stays refused (fail closed).
    assert_eq!(one("insert into t table secrets").kind, K::Unparsed);
}

#[test]
fn misreadings_are_refused_not_guessed() {
    // `current_user` in FROM is a function in PostgreSQL; sqlparser reads a table.
    let s = one("select * from current_user");
    assert_eq!(s.kind, K::Unparsed);
    // Unterminated literals, identifiers and comments.
    for sql in [
        "select 'abc",
        "select \"abc",
        "select $$abc",
        "select 1 /* abc",
        "select E'\\'",
    ] {
        let s = one(sql);
        assert_eq!(s.kind, K::Unparsed, "{sql}");
        assert!(s.parse_error.is_some());
        assert_eq!(s.leading_keyword, "select");
    }
    // `AS only` and `x.only` are column labels, not the inheritance marker.
    let s = one("select 1 as only, s.only from s");
    assert_eq!(s.kind, K::Select);
}

#[test]
fn kinds_of_common_statements() {
    let cases: &[(&str, K)] = &[
        ("begin", K::Begin),
        ("start transaction read only", K::Begin),
        ("commit", K::Commit),
        ("end", K::Commit),
        ("rollback", K::Rollback),
        ("abort", K::Rollback),
        ("rollback to savepoint s", K::Rollback),
        ("savepoint s", K::Savepoint),
        ("release savepoint s", K::Savepoint),
        ("set search_path = public", K::Set),
        ("set role bob", K::Set),
        ("set session authorization bob", K::Set),
        ("show search_path", K::Show),
        ("reset all", K::Reset),
        ("execute p(1)", K::Execute),
        ("deallocate p", K::Deallocate),
        ("fetch 10 from c", K::Fetch),
        ("close c", K::Close),
        ("listen ch", K::Listen),
        ("notify ch, 'x'", K::Notify),
        ("unlisten ch", K::Unlisten),
        ("discard all", K::Discard),
        ("create role r", K::CreateOther),
        ("create extension e", K::CreateOther),
        ("alter role r superuser", K::Alter),
        ("drop function f", K::Drop),
        ("values (1), (2)", K::Select),
        (
            "with x as (select 1) insert into t select * from x",
            K::Insert,
        ),
        ("vacuum (full) t, u", K::Unparsed),
    ];
    for (sql, kind) in cases {
        assert_eq!(one(sql).kind, *kind, "{sql}");
    }
    assert_eq!(K::CreateTable.as_str(), "create_table");
    assert_eq!(K::from_name("unparsed"), Some(K::Unparsed));
    assert_eq!(one("vacuum (full) t").leading_keyword, "vacuum");
    assert_eq!(one("grant select on t to u").leading_keyword, "grant");
}

#[test]
fn columns_best_effort() {
    let s = one("select c.name, total, * from customers c where c.id = $1");
    let cols: Vec<String> = s
        .columns
        .iter()
        .map(|c| match &c.table {
            Some(t) => format!("{t}.{}", c.name),
            None => c.name.clone(),
        })
        .collect();
    assert_eq!(cols, vec!["*", "c.name", "total", "c.id"]);
    let s = one("update t set \"A\" = 1, b = 2");
    let names: Vec<&str> = s.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, vec!["A", "b"]);
    assert!(one("set search_path = public").columns.is_empty());
}
