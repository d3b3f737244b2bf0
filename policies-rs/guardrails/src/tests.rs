//! Native tests through the SDK harness. Requests are built the way the gateway's
//! analysis reports statements: names folded (`Public.CUSTOMERS` arrives as
//! `public.customers`, `"Secrets"` as `Secrets`), functions lower-cased and qualified as
//! written, one request per statement of a multi-statement string.

use portcullis_sdk::testing::{RequestBuilder, TestHost};
use portcullis_sdk::{
    Access::{Ddl, Read, Write},
    CopyTarget, Decision, Hook, PrincipalKind, Request, StatementKind as K, TableRef,
};

use crate::Guardrails;

fn host(json: &str) -> TestHost<Guardrails> {
    TestHost::with_json(json).unwrap_or_else(|e| panic!("configure failed: {e}\n{json}"))
}

fn config_error(json: &str) -> String {
    match TestHost::<Guardrails>::with_json(json) {
        Ok(_) => panic!("configure accepted {json}"),
        Err(e) => e,
    }
}

/// The demo settings, converted from TOML to JSON as the gateway does.
fn demo() -> TestHost<Guardrails> {
    let table: toml::Table = toml::from_str(include_str!("../demo-settings.toml")).unwrap();
    host(&serde_json::to_string(&table).unwrap())
}

fn alice() -> RequestBuilder {
    RequestBuilder::new("alice").groups(["analysts"])
}

fn bob() -> RequestBuilder {
    RequestBuilder::new("bob").groups(["dba", "pii-readers"])
}

fn etl() -> RequestBuilder {
    RequestBuilder::new("etl-agent")
        .groups(["pipelines"])
        .principal(PrincipalKind::Agent)
}

#[track_caller]
fn denied(h: &TestHost<Guardrails>, req: &Request) -> String {
    match h.authorize(req) {
        Decision::Deny(d) => {
            assert_eq!(d.sqlstate(), "42501", "{d:?}");
            d.message
        }
        other => panic!("expected a denial for {:?}, got {other:?}", req.statement),
    }
}

#[track_caller]
fn allowed(h: &TestHost<Guardrails>, req: &Request) {
    assert_eq!(h.authorize(req), Decision::Allow, "{:?}", req.statement);
}

// --- settings -------------------------------------------------------------------------

#[test]
fn metadata_names_the_crate_and_the_authorize_hook() {
    let m = TestHost::<Guardrails>::new().metadata();
    assert_eq!(m.name, "portcullis-guardrails");
    assert_eq!(m.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(m.hooks, vec![Hook::Authorize]);
}

#[test]
fn empty_settings_deny_only_unparsed_statements() {
    for settings in ["", "{}", "null", " \n"] {
        let h = host(settings);
        allowed(&h, &alice().kind(K::Drop).table("customers", Ddl).build());
        denied(
            &h,
            &alice()
                .sql("DO $$ begin end $$")
                .unparsed("syntax error")
                .build(),
        );
    }
}

#[test]
fn unparsed_statements_and_do_blocks_are_denied_unless_switched_off() {
    let h = host("{}");
    let do_block = alice()
        .sql("DO $$ BEGIN EXECUTE 'drop table customers'; END $$")
        .unparsed("sql parser error: expected an SQL statement, found: DO")
        .build();
    assert_eq!(do_block.statement.leading_keyword, "do");
    assert_eq!(
        denied(&h, &do_block),
        "DO blocks are not allowed: the gateway cannot check what they do"
    );
    let weird = alice()
        .sql("FROBNICATE x")
        .unparsed("unknown statement")
        .build();
    assert_eq!(
        denied(&h, &weird),
        "this statement is not allowed: the gateway could not analyse it (unknown statement)"
    );
    // A DO block the gateway did parse is just as opaque.
    denied(&h, &alice().sql("DO $$ begin end $$").kind(K::Do).build());
    // A huge parse error is cut.
    let long = alice().unparsed("e".repeat(10_000)).build();
    assert!(denied(&h, &long).len() < 400);

    let off = host(r#"{"deny_unparsed": false}"#);
    allowed(&off, &do_block);
    allowed(&off, &weird);
    // ... and the kinds can still be denied by a rule, with exemptions.
    let by_rule = host(
        r#"{"deny_unparsed": false, "rules": [{"deny_kinds": ["unparsed", "do"], "except_groups": ["dba"]}]}"#,
    );
    assert_eq!(
        denied(&by_rule, &do_block),
        "a statement the gateway cannot analyse is not allowed (rule 1)"
    );
    allowed(
        &by_rule,
        &bob().sql("DO $$ begin end $$").unparsed("x").build(),
    );
}

#[test]
fn invalid_settings_are_rejected_with_a_location_or_the_rule() {
    let e = config_error(r#"{"rules": [{"deny_kinds": ["dorp"]}]}"#);
    assert!(
        e.starts_with("invalid settings: unknown variant `dorp`, expected one of `select`"),
        "{e}"
    );
    assert!(e.ends_with("at line 1 column 34"), "{e}");
    let e = config_error("{\n  \"rules\": [{\"deny_kind\": [\"drop\"]}]\n}");
    assert!(
        e.starts_with("invalid settings: unknown field `deny_kind`"),
        "{e}"
    );
    assert!(e.contains("at line 2"), "{e}");
    let e = config_error(r#"{"deny_unparsed": "yes"}"#);
    assert!(
        e.starts_with("invalid settings: invalid type: string"),
        "{e}"
    );
    let e = config_error("{not json");
    assert!(e.starts_with("invalid settings: "), "{e}");

    for (json, expected) in [
        (
            r#"{"rules": [{"description": "empty"}]}"#,
            r#"rule 1 ("empty"): denies nothing"#,
        ),
        (
            r#"{"rules": [{"deny_kinds": ["drop"]}, {"deny_access": ["read"]}]}"#,
            r#"rule 2: deny_access needs tables (use tables = ["*"] for every table)"#,
        ),
        (
            r#"{"rules": [{"deny_kinds": ["drop"], "sqlstate": "4250"}]}"#,
            r#"rule 1: sqlstate "4250" is not an error SQLSTATE"#,
        ),
        (
            r#"{"rules": [{"deny_kinds": ["drop"], "sqlstate": "00000"}]}"#,
            r#"rule 1: sqlstate "00000""#,
        ),
        (
            r#"{"rules": [{"tables": ["a.b.c"], "deny_access": ["read"]}]}"#,
            r#"rule 1: tables: "a.b.c": has more than a schema and a name"#,
        ),
        (
            r#"{"rules": [{"tables": ["hr.*"], "deny_access": ["read"]}]}"#,
            r#"rule 1: tables: "hr.*": a partial wildcard"#,
        ),
        (
            r#"{"rules": [{"tables": [""], "deny_access": ["read"]}]}"#,
            r#"rule 1: tables: "": an empty name"#,
        ),
        (
            r#"{"rules": [{"deny_functions": ["pg_read_file(text)"]}]}"#,
            r#"rule 1: deny_functions: "pg_read_file(text)": give the name only"#,
        ),
        (
            r#"{"rules": [{"deny_functions": ["a..b"]}]}"#,
            r#"rule 1: deny_functions: "a..b" is not a function name"#,
        ),
        (
            r#"{"rules": [{"deny_statements_matching": ["  "]}]}"#,
            "rule 1: deny_statements_matching holds an empty prefix",
        ),
        (
            r#"{"rules": [{"deny_kinds": ["drop"], "except_users": [""]}]}"#,
            "rule 1: except_users holds an empty name",
        ),
        (
            r#"{"rules": [{"deny_kinds": ["drop"], "message": ""}]}"#,
            "rule 1: message is empty",
        ),
    ] {
        let e = config_error(json);
        assert!(
            e.starts_with(expected),
            "{json}\n  got: {e}\n  expected: {expected}"
        );
    }
}

#[test]
fn a_failed_reconfigure_leaves_the_policy_denying() {
    let h = host(r#"{"deny_unparsed": false}"#);
    let select = alice().build();
    allowed(&h, &select);
    assert!(h.configure_json(r#"{"rules": [{}]}"#).is_err());
    assert!(!h.is_configured());
    assert!(denied(&h, &select).contains("not configured"));
    h.configure_json("{}").unwrap();
    allowed(&h, &select);
}

// --- deny_kinds, databases, identity scope ----------------------------------------------

const NO_DROPS: &str = r#"{"rules": [{
    "description": "nobody drops or truncates in prod",
    "databases": ["prod", "demo"],
    "deny_kinds": ["drop", "truncate"],
    "except_groups": ["dba"]
}]}"#;

#[test]
fn deny_kinds_in_listed_databases_with_group_exemption() {
    let h = host(NO_DROPS);
    let drop = alice()
        .sql("DROP TABLE customers")
        .kind(K::Drop)
        .table("customers", Ddl);
    assert_eq!(
        denied(&h, &drop.clone().build()),
        r#"DROP on "customers" is not allowed in database "demo" (rule: nobody drops or truncates in prod)"#
    );
    assert_eq!(
        denied(&h, &drop.clone().database("prod").build()),
        r#"DROP on "customers" is not allowed in database "prod" (rule: nobody drops or truncates in prod)"#
    );
    allowed(&h, &drop.clone().database("scratch").build());
    allowed(
        &h,
        &bob()
            .sql("DROP TABLE customers")
            .kind(K::Drop)
            .table("customers", Ddl)
            .build(),
    );
    let truncate = alice()
        .sql("TRUNCATE public.orders, customers")
        .kind(K::Truncate)
        .table("public.orders", Ddl)
        .table("customers", Ddl)
        .build();
    assert_eq!(
        denied(&h, &truncate),
        r#"TRUNCATE on "public.orders", "customers" is not allowed in database "demo" (rule: nobody drops or truncates in prod)"#
    );
    allowed(
        &h,
        &alice().kind(K::Select).table("customers", Read).build(),
    );
    // Spelling the statement differently changes nothing: the gateway reports the kind.
    allowed(&h, &alice().kind(K::Alter).table("customers", Ddl).build());
}

#[test]
fn identity_scope_users_groups_kinds_and_exemptions() {
    let h = host(
        r#"{"rules": [
            {"users": ["carol"], "groups": ["interns"], "deny_kinds": ["insert"]},
            {"principal_kinds": ["agent"], "deny_kinds": ["delete"], "except_users": ["trusted-agent"]},
            {"deny_kinds": ["vacuum"], "except_principal_kinds": ["service"], "except_users": ["bob"]}
        ]}"#,
    );
    let insert = |b: RequestBuilder| b.kind(K::Insert).table("orders", Write).build();
    denied(&h, &insert(RequestBuilder::new("carol")));
    denied(&h, &insert(RequestBuilder::new("dave").groups(["interns"])));
    allowed(&h, &insert(alice()));

    let delete = |b: RequestBuilder| b.kind(K::Delete).has_where(true).build();
    denied(&h, &delete(etl()));
    denied(&h, &delete(RequestBuilder::new("x").agent_for("alice")));
    allowed(
        &h,
        &delete(RequestBuilder::new("trusted-agent").principal(PrincipalKind::Agent)),
    );
    allowed(&h, &delete(alice()));

    let vacuum = |b: RequestBuilder| b.kind(K::Vacuum).build();
    assert_eq!(
        denied(&h, &vacuum(alice())),
        "VACUUM is not allowed (rule 3)"
    );
    allowed(&h, &vacuum(bob()));
    allowed(
        &h,
        &vacuum(RequestBuilder::new("cron").principal(PrincipalKind::Service)),
    );
}

#[test]
fn kinds_scoped_to_tables() {
    let h = host(r#"{"rules": [{"tables": ["customers"], "deny_kinds": ["drop", "alter"]}]}"#);
    denied(
        &h,
        &alice().kind(K::Drop).table("public.customers", Ddl).build(),
    );
    allowed(&h, &alice().kind(K::Drop).table("orders", Ddl).build());
    allowed(
        &h,
        &alice()
            .kind(K::Drop)
            .table("archive.customers", Ddl)
            .build(),
    );
    allowed(&h, &alice().kind(K::Drop).build());
}

// --- deny_unbounded_writes --------------------------------------------------------------

#[test]
fn unbounded_writes() {
    let h = host(
        r#"{"rules": [{"description": "no UPDATE/DELETE without WHERE", "deny_unbounded_writes": true}]}"#,
    );
    let delete = alice()
        .sql("DELETE FROM orders")
        .kind(K::Delete)
        .table("orders", Write);
    assert_eq!(
        denied(&h, &delete.clone().has_where(false).build()),
        r#"DELETE without a WHERE clause on "orders" is not allowed (rule: no UPDATE/DELETE without WHERE)"#
    );
    allowed(&h, &delete.has_where(true).build());
    let update = alice().kind(K::Update).table("public.orders", Write);
    assert!(denied(&h, &update.clone().has_where(false).build()).starts_with("UPDATE without"));
    allowed(&h, &update.has_where(true).build());
    // Hidden in a CTE, PREPARE or EXPLAIN ANALYZE: the gateway reports has_where for
    // the statement as a whole.
    for (kind, sql) in [
        (
            K::Select,
            "WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d",
        ),
        (K::Prepare, "PREPARE p AS DELETE FROM orders"),
        (K::Explain, "EXPLAIN ANALYZE DELETE FROM orders"),
    ] {
        let req = alice()
            .sql(sql)
            .kind(kind)
            .table("orders", Write)
            .has_where(false)
            .build();
        assert!(
            denied(&h, &req).starts_with(r#"UPDATE or DELETE without a WHERE clause on "orders""#),
            "{sql}"
        );
    }
    allowed(&h, &alice().kind(K::Insert).table("orders", Write).build());
    allowed(&h, &alice().kind(K::Select).table("orders", Read).build());

    // Scoped to tables: only writes to those tables count.
    let scoped = host(r#"{"rules": [{"tables": ["orders"], "deny_unbounded_writes": true}]}"#);
    denied(
        &scoped,
        &alice()
            .kind(K::Update)
            .table("orders", Write)
            .has_where(false)
            .build(),
    );
    allowed(
        &scoped,
        &alice()
            .kind(K::Update)
            .table("customers", Write)
            .table("orders", Read)
            .has_where(false)
            .build(),
    );
}

// --- tables and deny_access ---------------------------------------------------------------

const SECRETS: &str = r#"{"rules": [{
    "description": "secrets only for bob",
    "tables": ["secrets", "public.secrets"],
    "deny_access": ["read", "write", "ddl"],
    "except_users": ["bob"]
}]}"#;

#[test]
fn table_access_matches_with_or_without_the_public_schema() {
    let h = host(SECRETS);
    let select = |t: &str| alice().kind(K::Select).table(t, Read).build();
    assert_eq!(
        denied(&h, &select("secrets")),
        r#"read access to "secrets" is not allowed (rule: secrets only for bob)"#
    );
    // `SELECT * FROM Public.SECRETS` and `FROM "public"."secrets"` arrive folded.
    assert_eq!(
        denied(&h, &select("public.secrets")),
        r#"read access to "public.secrets" is not allowed (rule: secrets only for bob)"#
    );
    // `FROM "Secrets"` is another table in PostgreSQL; `hr.secrets` too.
    allowed(&h, &select("Secrets"));
    allowed(&h, &select("hr.secrets"));
    allowed(&h, &select("customers"));
    // Every access is denied, and bob is exempt.
    assert!(
        denied(
            &h,
            &alice()
                .kind(K::Update)
                .table("secrets", Write)
                .has_where(true)
                .build()
        )
        .starts_with(r#"write access to "secrets""#)
    );
    assert!(
        denied(&h, &alice().kind(K::Alter).table("secrets", Ddl).build())
            .starts_with(r#"DDL on "secrets""#)
    );
    allowed(&h, &bob().kind(K::Select).table("secrets", Read).build());
    // Hidden reads (subquery, CTE, UNION, COPY (query) TO STDOUT) are reported as tables.
    let hidden = alice()
        .sql("with x as (select * from secrets) select * from x")
        .kind(K::Select)
        .table("customers", Read)
        .table("secrets", Read)
        .build();
    denied(&h, &hidden);
    let copy_out = alice()
        .sql("COPY (select * from secrets) TO STDOUT")
        .copy(true, CopyTarget::Client)
        .table("secrets", Read)
        .build();
    denied(&h, &copy_out);
    // GRANT ... ON ALL TABLES IN SCHEMA public covers secrets.
    let grant_all = alice()
        .kind(K::Grant)
        .table_ref(TableRef::qualified("public", "*", Ddl))
        .build();
    assert_eq!(
        denied(&h, &grant_all),
        r#"DDL on "public.*" is not allowed (rule: secrets only for bob)"#
    );
    allowed(
        &h,
        &alice()
            .kind(K::Grant)
            .table_ref(TableRef::qualified("hr", "*", Ddl))
            .build(),
    );
}

#[test]
fn table_patterns_fold_like_sql_names() {
    // `Secrets` in the settings is `secrets`, as in SQL; `"Secrets"` is the quoted name.
    let h = host(
        r#"{"rules": [{"tables": ["Public.Secrets", "\"Audit Log\""], "deny_access": ["read"]}]}"#,
    );
    let select = |t: TableRef| alice().kind(K::Select).table_ref(t).build();
    denied(&h, &select(TableRef::new("secrets", Read)));
    denied(&h, &select(TableRef::qualified("public", "secrets", Read)));
    allowed(&h, &select(TableRef::new("Secrets", Read)));
    denied(&h, &select(TableRef::new("Audit Log", Read)));
    allowed(&h, &select(TableRef::new("audit log", Read)));
}

#[test]
fn a_schema_qualified_rule_matches_that_schema_or_none() {
    let h = host(r#"{"rules": [{"tables": ["hr.salaries"], "deny_access": ["read"]}]}"#);
    let select = |t: &str| alice().kind(K::Select).table(t, Read).build();
    denied(&h, &select("hr.salaries"));
    denied(&h, &select("salaries")); // may resolve to hr.salaries via search_path
    allowed(&h, &select("public.salaries"));
    allowed(&h, &select("payroll.salaries"));
    // Access modes are exact: a write is not a read.
    allowed(
        &h,
        &alice().kind(K::Insert).table("hr.salaries", Write).build(),
    );
}

#[test]
fn per_group_access_on_every_table() {
    let h = host(
        r#"{"rules": [{"groups": ["analysts"], "tables": ["*"], "deny_access": ["write", "ddl"]}]}"#,
    );
    allowed(&h, &alice().kind(K::Select).table("orders", Read).build());
    assert_eq!(
        denied(&h, &alice().kind(K::Insert).table("orders", Write).build()),
        r#"write access to "orders" is not allowed (rule 1)"#
    );
    denied(
        &h,
        &alice().kind(K::CreateTable).table("scratch", Ddl).build(),
    );
    // A statement that also writes: INSERT ... SELECT.
    denied(
        &h,
        &alice()
            .kind(K::Insert)
            .table("customers", Read)
            .table("orders", Write)
            .build(),
    );
    allowed(&h, &etl().kind(K::Insert).table("orders", Write).build());
}

// --- deny_functions -----------------------------------------------------------------------

#[test]
fn functions_match_in_any_schema_and_case() {
    let h = host(
        r#"{"rules": [{"deny_functions": ["pg_read_file", "DBLINK", "lo_import", "public.only_here"]}]}"#,
    );
    let call = |f: &str| alice().kind(K::Select).function(f).build();
    assert_eq!(
        denied(&h, &call("pg_read_file")),
        "calling pg_read_file() is not allowed (rule 1)"
    );
    // `select PG_CATALOG.Lo_Import('/x')` arrives lower-cased.
    assert_eq!(
        denied(&h, &call("pg_catalog.lo_import")),
        "calling pg_catalog.lo_import() is not allowed (rule 1)"
    );
    denied(&h, &call("public.dblink"));
    denied(&h, &call("dblink"));
    allowed(&h, &call("pg_read_file_x"));
    allowed(&h, &call("lower"));
    denied(&h, &call("only_here"));
    denied(&h, &call("public.only_here"));
    allowed(&h, &call("other.only_here"));
    // Among other functions, in a later position.
    denied(
        &h,
        &alice()
            .kind(K::Select)
            .function("lower")
            .function("dblink")
            .build(),
    );
}

// --- deny_copy_targets --------------------------------------------------------------------

#[test]
fn server_side_copy() {
    let h = host(r#"{"rules": [{"deny_copy_targets": ["server-file", "program"]}]}"#);
    let copy = |to: bool, target| alice().copy(to, target).table("customers", Read).build();
    assert_eq!(
        denied(&h, &copy(true, CopyTarget::ServerFile)),
        "COPY TO a server file is not allowed (rule 1)"
    );
    assert_eq!(
        denied(&h, &copy(false, CopyTarget::Program)),
        "COPY FROM a server program is not allowed (rule 1)"
    );
    denied(&h, &copy(false, CopyTarget::ServerFile));
    allowed(&h, &copy(true, CopyTarget::Client));
    allowed(&h, &copy(false, CopyTarget::Client));
}

// --- deny_statements_matching -------------------------------------------------------------

#[test]
fn statement_prefixes_match_the_normalised_fingerprint_at_a_word_boundary() {
    let h = host(
        r#"{"rules": [{"description": "no role changes",
            "deny_statements_matching": ["SET ROLE", "reset  role", "set session authorization"]}]}"#,
    );
    let set = |sql: &str| alice().kind(K::Set).sql(sql).build();
    assert_eq!(
        denied(&h, &set("SET ROLE postgres")),
        "SET ROLE is not allowed (rule: no role changes)"
    );
    for sql in [
        "set role 'postgres'",
        "SET   ROLE\n postgres;",
        "SET /* x */ ROLE postgres",
        "SET role = 'postgres'",
        "SET role='postgres'",
        "SET \"ROLE\" TO postgres",
        "set role none",
        "set session authorization postgres",
    ] {
        denied(&h, &set(sql));
    }
    denied(&h, &alice().kind(K::Reset).sql("RESET ROLE").build());
    allowed(&h, &set("SET search_path = public"));
    allowed(&h, &set("SET roles_enabled = on"));
    allowed(&h, &set("SET LOCAL statement_timeout = 5"));
    // The exact fingerprint the gateway sends, literal already replaced.
    denied(&h, &alice().kind(K::Set).fingerprint("set role ?").build());
    // No fingerprint (should not happen): the SQL of a single statement is used.
    denied(
        &h,
        &alice()
            .kind(K::Set)
            .sql("SET ROLE x")
            .fingerprint("")
            .build(),
    );
}

// --- sqlstate and message -----------------------------------------------------------------

#[test]
fn custom_sqlstate_and_message() {
    let h = host(
        r#"{"rules": [{"deny_kinds": ["lock"], "sqlstate": "P0001", "message": "no explicit locks, please"}]}"#,
    );
    let d = h.authorize(&alice().kind(K::Lock).table("orders", Write).build());
    assert_eq!(d, Decision::deny_with("P0001", "no explicit locks, please"));
}

#[test]
fn rules_are_evaluated_in_order_and_the_first_denial_speaks() {
    let h = host(
        r#"{"rules": [
            {"description": "first", "deny_kinds": ["select"], "users": ["nobody"]},
            {"description": "second", "tables": ["*"], "deny_access": ["read"]},
            {"description": "third", "deny_kinds": ["select"]}
        ]}"#,
    );
    let m = denied(&h, &alice().kind(K::Select).table("orders", Read).build());
    assert!(m.ends_with("(rule: second)"), "{m}");
    let m = denied(&h, &alice().kind(K::Select).build());
    assert!(m.ends_with("(rule: third)"), "{m}");
}

#[test]
fn messages_stay_short() {
    let h = host(r#"{"rules": [{"deny_kinds": ["drop"]}]}"#);
    let mut drop = alice().kind(K::Drop);
    for i in 0..200 {
        drop = drop.table(&format!("t{i}"), Ddl);
    }
    assert_eq!(
        denied(&h, &drop.build()),
        r#"DROP on "t0", "t1", "t2", "t3", "t4" and 195 more is not allowed (rule 1)"#
    );
    let long = format!(
        r#"{{"rules": [{{"deny_kinds": ["drop"], "message": "{}"}}]}}"#,
        "x".repeat(5000)
    );
    assert!(config_error(&long).starts_with("rule 1: message is longer than 2048 bytes"));
    let long = format!(
        r#"{{"rules": [{{"deny_kinds": ["drop"], "description": "{}"}}]}}"#,
        "é".repeat(5000)
    );
    let m = denied(&host(&long), &alice().kind(K::Drop).build());
    assert!(m.len() <= 2048 + 3 && m.ends_with("..."), "{}", m.len());
}

// --- multi-statement strings --------------------------------------------------------------

#[test]
fn the_second_statement_of_a_string_is_judged_on_its_own() {
    let h = host(NO_DROPS);
    let sql = "select 1; drop table customers";
    let first = alice()
        .sql(sql)
        .fingerprint("select ?")
        .multi_statement(0)
        .build();
    let second = alice()
        .sql(sql)
        .fingerprint("drop table customers")
        .kind(K::Drop)
        .table("customers", Ddl)
        .multi_statement(1)
        .build();
    allowed(&h, &first);
    denied(&h, &second);
    // A prefix rule looks at the statement's own fingerprint, not the whole string.
    let roles = host(r#"{"rules": [{"deny_statements_matching": ["set role"]}]}"#);
    let sql = "select 1; set role postgres";
    allowed(
        &roles,
        &alice()
            .sql(sql)
            .fingerprint("select ?")
            .multi_statement(0)
            .build(),
    );
    denied(
        &roles,
        &alice()
            .sql(sql)
            .kind(K::Set)
            .fingerprint("set role postgres")
            .multi_statement(1)
            .build(),
    );
    // An unparsed second statement is denied by deny_unparsed.
    let do_second = alice()
        .sql("select 1; DO $$ begin perform 1; end $$;")
        .fingerprint("do ?")
        .leading_keyword("do")
        .unparsed("not parsed")
        .multi_statement(1)
        .build();
    denied(&h, &do_second);
}

// --- the demo -------------------------------------------------------------------------------

#[test]
fn demo_settings_do_what_the_demo_promises() {
    let h = demo();
    // alice's DROP TABLE customers: 42501; bob (dba) may drop.
    let drop = |b: RequestBuilder| {
        b.sql("DROP TABLE customers")
            .kind(K::Drop)
            .table("customers", Ddl)
            .build()
    };
    assert_eq!(
        denied(&h, &drop(alice())),
        r#"DROP on "customers" is not allowed in database "demo" (rule: only DBAs drop or truncate)"#
    );
    denied(&h, &drop(etl()));
    allowed(&h, &drop(bob()));
    // DELETE FROM orders without WHERE: denied for everyone, bob included.
    let delete = |b: RequestBuilder, has_where| {
        b.sql("DELETE FROM orders")
            .kind(K::Delete)
            .table("orders", Write)
            .has_where(has_where)
            .build()
    };
    for who in [alice(), bob(), etl()] {
        let m = denied(&h, &delete(who, false));
        assert!(m.starts_with("DELETE without a WHERE clause"), "{m}");
    }
    allowed(&h, &delete(etl(), true));
    allowed(&h, &delete(bob(), true));
    // SELECT * FROM secrets: only bob.
    let secrets = |b: RequestBuilder| {
        b.sql("SELECT * FROM secrets")
            .kind(K::Select)
            .table("secrets", Read)
            .build()
    };
    assert_eq!(
        denied(&h, &secrets(alice())),
        r#"read access to "secrets" is not allowed (rule: secrets only for bob)"#
    );
    denied(&h, &secrets(etl()));
    allowed(&h, &secrets(bob()));
    // Reads of the other tables are fine for everyone.
    for who in [alice(), bob(), etl()] {
        allowed(
            &h,
            &who.kind(K::Select)
                .table("customers", Read)
                .table("orders", Read)
                .build(),
        );
    }
    // DO blocks, for everyone.
    for who in [alice(), bob()] {
        denied(
            &h,
            &who.sql("DO $$ BEGIN DELETE FROM orders; END $$")
                .unparsed("x")
                .build(),
        );
    }
    // Dangerous functions and server-side COPY, for everyone.
    for f in [
        "pg_read_file",
        "pg_catalog.pg_read_binary_file",
        "pg_ls_dir",
        "lo_import",
        "lo_export",
        "dblink",
        "public.dblink_exec",
        "query_to_xml",
        "table_to_xml",
        "pg_execute_server_program",
        "set_config",
    ] {
        denied(&h, &bob().kind(K::Select).function(f).build());
    }
    allowed(&h, &alice().kind(K::Select).function("now").build());
    denied(
        &h,
        &bob()
            .copy(true, CopyTarget::ServerFile)
            .table("customers", Read)
            .build(),
    );
    denied(
        &h,
        &bob()
            .copy(false, CopyTarget::Program)
            .table("orders", Write)
            .build(),
    );
    allowed(
        &h,
        &alice()
            .copy(true, CopyTarget::Client)
            .table("customers", Read)
            .build(),
    );
    // Analysts only read; the agent may write but not change definitions.
    denied(
        &h,
        &alice()
            .kind(K::Update)
            .table("orders", Write)
            .has_where(true)
            .build(),
    );
    allowed(
        &h,
        &etl()
            .kind(K::Update)
            .table("orders", Write)
            .has_where(true)
            .build(),
    );
    denied(&h, &etl().kind(K::Alter).table("orders", Ddl).build());
    allowed(&h, &bob().kind(K::Alter).table("orders", Ddl).build());
    // Nobody switches roles.
    for (kind, sql) in [
        (K::Set, "SET ROLE postgres"),
        (K::Set, "SET SESSION ROLE postgres"),
        (K::Set, "set local role postgres"),
        (K::Set, "SET role = 'postgres'"),
        (K::Reset, "RESET ROLE"),
        (K::Set, "SET SESSION AUTHORIZATION postgres"),
        (K::Set, "set session_authorization = 'postgres'"),
        (K::Reset, "RESET SESSION AUTHORIZATION"),
    ] {
        denied(&h, &bob().kind(kind).sql(sql).build());
    }
    allowed(
        &h,
        &alice().kind(K::Set).sql("SET search_path = public").build(),
    );
    allowed(&h, &alice().kind(K::Show).sql("SHOW ROLE").build());
    // The other database of the demo has the same drop rule.
    denied(
        &h,
        &alice()
            .database("postgres")
            .kind(K::Truncate)
            .table("orders", Ddl)
            .build(),
    );
}

#[test]
fn demo_agent_acting_for_a_person_reads_but_its_writes_need_approval() {
    let h = demo();
    let for_alice = || {
        etl()
            .agent_for("alice")
            .person_groups(["analysts", "etl-owners"])
    };
    allowed(
        &h,
        &for_alice().kind(K::Select).table("orders", Read).build(),
    );
    match h.authorize(&for_alice().kind(K::Insert).table("orders", Write).build()) {
        Decision::RequireApproval(a) => {
            assert!(
                a.reason.contains("etl-agent acting for alice"),
                "{}",
                a.reason
            );
            assert_eq!(a.approvers, vec!["group:dba".to_owned()]);
        }
        other => panic!("expected require-approval, got {other:?}"),
    }
    // A denial still wins over the approval (DDL by agents).
    denied(&h, &for_alice().kind(K::Drop).table("orders", Ddl).build());
    // The same agent on its own credentials writes as before.
    allowed(&h, &etl().kind(K::Insert).table("orders", Write).build());
    // Acting for someone who owns no pipeline, it reads but may not write at all.
    let for_carol = || etl().agent_for("carol").person_groups(["analysts"]);
    allowed(
        &h,
        &for_carol().kind(K::Select).table("orders", Read).build(),
    );
    let d = h.authorize(&for_carol().kind(K::Insert).table("orders", Write).build());
    match d {
        Decision::Deny(d) => assert!(d.message.contains("owners of a pipeline"), "{}", d.message),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn rules_scope_on_the_groups_of_the_person_an_agent_acts_for() {
    let h = host(
        r#"{"rules":[
            {"acting_for_groups": ["finance"], "deny_kinds": ["delete"]},
            {"principal_kinds": ["agent"], "except_acting_for_groups": ["dba"], "deny_kinds": ["truncate"]}
        ]}"#,
    );
    let agent = |groups: &[&str]| {
        RequestBuilder::new("bot")
            .agent_for("p")
            .person_groups(groups.iter().copied())
    };
    denied(
        &h,
        &agent(&["finance"]).kind(K::Delete).has_where(true).build(),
    );
    allowed(
        &h,
        &agent(&["sales"]).kind(K::Delete).has_where(true).build(),
    );
    // The agent's own groups do not count as the person's.
    allowed(
        &h,
        &RequestBuilder::new("bot")
            .agent_for("p")
            .groups(["finance"])
            .kind(K::Delete)
            .has_where(true)
            .build(),
    );
    // A person in `finance` connecting themselves is not an agent acting for one.
    allowed(
        &h,
        &RequestBuilder::new("p")
            .groups(["finance"])
            .kind(K::Delete)
            .has_where(true)
            .build(),
    );
    denied(&h, &agent(&["sales"]).kind(K::Truncate).build());
    allowed(&h, &agent(&["dba"]).kind(K::Truncate).build());
}

#[test]
fn approvers_need_the_approval_action() {
    let e = config_error(r#"{"rules":[{"deny_kinds":["drop"],"approvers":["group:dba"]}]}"#);
    assert!(e.contains("require-approval"), "{e}");
}
