use portcullis_sdk::testing::{RequestBuilder, TestHost};
use portcullis_sdk::{
    Access, ColumnSource, CopyTarget, Identity, MaskFunction, Provenance, ResultColumn,
    ResultContext, StatementKind, TableRef,
};

use super::*;

fn host() -> TestHost<PiiMask> {
    let text = include_str!("../demo-settings.toml");
    let table: toml::Table = toml::from_str(text).unwrap();
    TestHost::with_json(&serde_json::to_string(&table).unwrap()).unwrap()
}

fn who(user: &str, groups: &[&str]) -> Identity {
    let mut id = Identity::new(user);
    id.groups = groups.iter().map(|g| g.to_string()).collect();
    id
}

fn direct(i: u32, col: &str) -> ResultColumn {
    ResultColumn::new(
        i,
        col,
        25,
        Provenance::Direct(ColumnSource::new("public", "customers", col)),
    )
}

fn customers() -> Vec<ResultColumn> {
    [
        "id",
        "name",
        "email",
        "phone",
        "ssn",
        "card_number",
        "created_at",
    ]
    .iter()
    .enumerate()
    .map(|(i, c)| direct(i as u32, c))
    .collect()
}

fn masks(id: Identity, cols: Vec<ResultColumn>) -> Vec<(u32, MaskFunction)> {
    let plan = host().plan_masks(&ResultContext::new(id, "demo", cols));
    assert!(plan.refuse.is_none());
    plan.columns
        .into_iter()
        .map(|c| (c.index, c.mask))
        .collect()
}

#[test]
fn analysts_see_masks_readers_plain_pipelines_pseudonyms() {
    let alice = masks(who("alice", &["analysts"]), customers());
    assert_eq!(
        alice,
        vec![
            (2, MaskFunction::Email),
            (3, MaskFunction::Digits(4)),
            (4, MaskFunction::partial(0, 4, "*")),
            (5, MaskFunction::Digits(4)),
        ]
    );
    assert!(masks(who("bob", &["dba", "pii-readers"]), customers()).is_empty());
    let etl = masks(who("etl-agent", &["pipelines"]), customers());
    assert_eq!(etl.len(), 4);
    assert!(etl.iter().all(|(_, m)| *m == MaskFunction::Pseudonym));
}

#[test]
fn derived_and_unknown_provenance_fail_closed() {
    let derived = ResultColumn::new(
        0,
        "upper",
        25,
        Provenance::Derived(vec![ColumnSource::new("public", "customers", "email")]),
    );
    let harmless = ResultColumn::new(
        1,
        "n",
        25,
        Provenance::Derived(vec![ColumnSource::new("public", "customers", "name")]),
    );
    let unknown_sensitive = ResultColumn::new(
        2,
        "u",
        25,
        Provenance::Unknown(vec![TableRef::new("customers", Access::Read)]),
    );
    let unknown_other = ResultColumn::new(
        3,
        "o",
        25,
        Provenance::Unknown(vec![TableRef::new("orders", Access::Read)]),
    );
    let unknown_nothing = ResultColumn::new(4, "f", 25, Provenance::Unknown(vec![]));
    let constant = ResultColumn::new(5, "c", 25, Provenance::Constant);
    let m = masks(
        who("alice", &["analysts"]),
        vec![
            derived,
            harmless,
            unknown_sensitive,
            unknown_other,
            unknown_nothing,
            constant,
        ],
    );
    let r = MaskFunction::Redact("***".into());
    assert_eq!(m, vec![(0, r.clone()), (2, r.clone()), (4, r)]);
}

#[test]
fn name_patterns_catch_unlisted_columns() {
    let col = ResultColumn::new(
        0,
        "ssn",
        25,
        Provenance::Direct(ColumnSource::new("hr", "staff", "employee_ssn")),
    );
    assert_eq!(
        masks(who("alice", &[]), vec![col]),
        vec![(0, MaskFunction::partial(0, 4, "*"))]
    );
}

#[test]
fn ordering_by_a_masked_column_is_denied_only_when_configured() {
    let sorted = RequestBuilder::new("alice")
        .groups(["analysts"])
        .kind(StatementKind::Select)
        .table("customers", Access::Read)
        .column("customers.name")
        .column("ordered:customers.ssn")
        .build();
    assert!(host().authorize(&sorted).is_allow(), "allowed by default");
    let strict = TestHost::<PiiMask>::with_json(
        r#"{"columns": {"customers.ssn": "partial(last 4)"}, "deny_ordering": true, "exempt_groups": ["pii-readers"]}"#,
    )
    .unwrap();
    match strict.authorize(&sorted) {
        Decision::Deny(d) => assert!(d.message.contains("sorting or grouping"), "{d:?}"),
        other => panic!("{other:?}"),
    }
    let by_name = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("customers.ssn")
        .column("ordered:customers.name")
        .build();
    assert!(strict.authorize(&by_name).is_allow());
    let bob = RequestBuilder::new("bob")
        .groups(["pii-readers"])
        .kind(StatementKind::Select)
        .column("ordered:customers.ssn")
        .build();
    assert!(
        strict.authorize(&bob).is_allow(),
        "exempt identities may sort"
    );
}

#[test]
fn column_comparisons_are_denied_only_when_configured() {
    let join = RequestBuilder::new("alice")
        .groups(["analysts"])
        .kind(StatementKind::Select)
        .table("customers", Access::Read)
        .column("customers.id")
        .column("compared:customers.ssn")
        .column("compared:guesses.ssn");
    assert!(
        host().authorize(&join.clone().build()).is_allow(),
        "allowed by default"
    );
    let strict = TestHost::<PiiMask>::with_json(
        r#"{"columns": {"customers.ssn": "partial(last 4)"}, "deny_column_comparisons": true, "exempt_groups": ["pii-readers"], "pseudonym_groups": ["pipelines"]}"#,
    )
    .unwrap();
    match strict.authorize(&join.clone().build()) {
        Decision::Deny(d) => assert!(
            d.message.contains("customers.ssn") && d.message.contains("another column"),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        strict
            .authorize(&join.clone().user("etl-agent").groups(["pipelines"]).build())
            .is_deny(),
        "pseudonyms do not exempt"
    );
    assert!(
        strict
            .authorize(&join.user("bob").groups(["pii-readers"]).build())
            .is_allow()
    );
    let natural = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("compared:customers.*")
        .build();
    assert!(strict.authorize(&natural).is_deny(), "NATURAL JOIN");
    let by_key = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("customers.ssn")
        .column("compared:customers.id")
        .column("compared:orders.customer_id")
        .build();
    assert!(strict.authorize(&by_key).is_allow(), "joins on keys stay");
}

#[test]
fn inference_and_exfiltration_are_denied_for_masked_identities() {
    let h = host();
    let probe = RequestBuilder::new("alice")
        .groups(["analysts"])
        .kind(StatementKind::Select)
        .table("customers", Access::Read)
        .column("customers.id")
        .column("customers.ssn")
        .column("predicate:customers.ssn");
    assert!(h.authorize(&probe.clone().build()).is_deny());
    assert!(
        h.authorize(
            &probe
                .clone()
                .user("etl-agent")
                .groups(["pipelines"])
                .build()
        )
        .is_deny()
    );
    assert!(
        h.authorize(&probe.user("bob").groups(["pii-readers"]).build())
            .is_allow()
    );
    let by_id = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("customers.ssn")
        .column("predicate:customers.id");
    assert!(h.authorize(&by_id.build()).is_allow());
    let copy = RequestBuilder::new("alice")
        .kind(StatementKind::Copy)
        .table("customers", Access::Read)
        .copy(true, CopyTarget::Client);
    assert!(h.authorize(&copy.build()).is_deny());
    let ctas = RequestBuilder::new("alice")
        .kind(StatementKind::CreateTable)
        .table("customers", Access::Read)
        .column("customers.email")
        .column("written:customers.email");
    assert!(h.authorize(&ctas.build()).is_deny());
    let whole = RequestBuilder::new("alice")
        .kind(StatementKind::Insert)
        .column("customers.*")
        .column("written:customers.*");
    assert!(h.authorize(&whole.build()).is_deny());
    let stats = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .table("pg_catalog.pg_stats", Access::Read);
    assert!(h.authorize(&stats.build()).is_deny());
    let notify = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .function("pg_notify")
        .column("customers.ssn");
    assert!(h.authorize(&notify.build()).is_deny());
    let setting = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .function("pg_catalog.set_config")
        .column("customers.id");
    assert!(h.authorize(&setting.build()).is_allow());
    let block = RequestBuilder::new("alice").unparsed("DO blocks are not analysed");
    assert!(h.authorize(&block.build()).is_deny());
    let rename = RequestBuilder::new("alice")
        .kind(StatementKind::Alter)
        .table("customers", Access::Ddl);
    assert!(h.authorize(&rename.clone().build()).is_deny());
    assert!(
        h.authorize(&rename.user("bob").groups(["pii-readers"]).build())
            .is_allow()
    );
    let other = RequestBuilder::new("alice")
        .kind(StatementKind::Alter)
        .table("orders", Access::Ddl);
    assert!(h.authorize(&other.build()).is_allow());
    let returning = RequestBuilder::new("alice")
        .kind(StatementKind::Update)
        .column("customers.email")
        .column("customers.name")
        .column("written:customers.name");
    assert!(h.authorize(&returning.build()).is_allow());
}

#[test]
fn custom_masks_keep_initials_and_specs_parse() {
    let rows = host()
        .mask_rows(
            &ResultContext::new(who("alice", &[]), "demo", vec![]),
            vec![vec![Some("Alice Smith".into()), None]],
        )
        .unwrap();
    assert_eq!(rows, vec![vec![Some("A. S.".into()), None]]);
    // The packed path gives the same: NULLs, empty strings, multi-byte UTF-8.
    let ctx = ResultContext::new(who("alice", &[]), "demo", vec![]);
    let rows = vec![
        vec![Some("Alice Smith".into()), None],
        vec![Some(String::new()), Some("  Łukasz  żółw ".into())],
    ];
    let packed = host()
        .mask_cells(&ctx, &portcullis_sdk::Cells::from_rows(&rows))
        .unwrap();
    assert_eq!(packed.to_rows(), host().mask_rows(&ctx, rows).unwrap());
    assert_eq!(
        packed.to_rows()[1],
        vec![Some(String::new()), Some("Ł. ż.".into())]
    );
    assert_eq!(
        MaskSpec::parse("partial(first 1, last 2)")
            .unwrap()
            .function(),
        MaskFunction::partial(1, 2, "*")
    );
    assert!(MaskSpec::parse("partial(middle 2)").is_err());
    assert!(MaskSpec::parse("round(-1)").is_err());
    assert!(TestHost::<PiiMask>::with_json(r#"{"derived_mask": "email"}"#).is_err());
}

#[test]
fn opaque_calls_count_as_sensitive_reads_and_code_definitions_are_denied() {
    let h = host();
    // COPY of a query calling a user-defined function (or reading a view calling one).
    for entry in ["opaque:lookup_ssn()", "opaque:public.v_lookup"] {
        let copy = RequestBuilder::new("alice")
            .kind(StatementKind::Copy)
            .column("customers.id")
            .column(entry)
            .copy(true, CopyTarget::Client);
        assert!(h.authorize(&copy.clone().build()).is_deny(), "{entry}");
        assert!(
            h.authorize(&copy.user("bob").groups(["pii-readers"]).build())
                .is_allow()
        );
    }
    // Stored elsewhere or sent away.
    let insert = RequestBuilder::new("alice")
        .kind(StatementKind::Insert)
        .column("opaque:lookup_ssn()");
    assert!(h.authorize(&insert.build()).is_deny());
    let select_into = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .fingerprint("select lookup_ssn(?) into t2")
        .column("opaque:lookup_ssn()");
    assert!(h.authorize(&select_into.build()).is_deny());
    let notify = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .function("pg_notify")
        .column("opaque:lookup_ssn()");
    assert!(h.authorize(&notify.build()).is_deny());
    // Reading one is allowed: its result is masked (unknown provenance).
    let read = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .fingerprint("select lookup_ssn(?)")
        .column("opaque:lookup_ssn()");
    assert!(h.authorize(&read.build()).is_allow());
    for (fp, denied) in [
        ("create function f() returns text language sql as ?", true),
        ("create or replace function f() returns text", true),
        (
            "CREATE OR REPLACE PROCEDURE p() language plpgsql as ?",
            true,
        ),
        ("create operator !!! (rightarg = int, function = f)", true),
        ("create cast (int as text) with function f(int)", true),
        ("create constraint trigger t after insert on x", true),
        ("create event trigger e on ddl_command_start", true),
        ("create trusted procedural language plx", true),
        ("create extension dblink", true),
        ("alter function f() security definer", true),
        ("create table t (a int)", false),
        ("create view v as select ?", false),
        ("alter table orders add column x int", false),
    ] {
        let req = RequestBuilder::new("alice")
            .kind(StatementKind::CreateOther)
            .fingerprint(fp);
        assert_eq!(h.authorize(&req.clone().build()).is_deny(), denied, "{fp}");
        assert!(
            h.authorize(&req.user("bob").groups(["pii-readers"]).build())
                .is_allow()
        );
    }
}

#[test]
fn opaque_calls_in_conditions_and_orderings_count_as_masked_columns() {
    let probe = RequestBuilder::new("alice")
        .groups(["analysts"])
        .kind(StatementKind::Select)
        .table("customers", Access::Read)
        .column("customers.id")
        .column("predicate:customers.id")
        .column("opaque:lookup_ssn()")
        .column("predicate:opaque:lookup_ssn()");
    match host().authorize(&probe.clone().build()) {
        Decision::Deny(d) => assert!(
            d.message.contains("a condition on lookup_ssn()")
                && d.message.contains("cannot see what it reads"),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(
        host()
            .authorize(&probe.user("bob").groups(["pii-readers"]).build())
            .is_allow(),
        "exempt identities may"
    );
    // In the output only, an opaque call is masked, not denied.
    let output = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("customers.id")
        .column("predicate:customers.id")
        .column("opaque:lookup_ssn()")
        .build();
    assert!(host().authorize(&output).is_allow());
    // A view calling one, in a condition.
    let view = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("v_lookup.s")
        .column("predicate:v_lookup.s")
        .column("opaque:public.v_lookup")
        .column("predicate:opaque:public.v_lookup")
        .build();
    assert!(host().authorize(&view).is_deny());
    // Ordering: only when deny_ordering is on, as for masked columns.
    let ordered = RequestBuilder::new("alice")
        .kind(StatementKind::Select)
        .column("customers.id")
        .column("opaque:lookup_ssn()")
        .column("ordered:opaque:lookup_ssn()")
        .build();
    assert!(host().authorize(&ordered).is_allow());
    let strict = TestHost::<PiiMask>::with_json(
        r#"{"columns": {"customers.ssn": "partial(last 4)"}, "deny_ordering": true}"#,
    )
    .unwrap();
    match strict.authorize(&ordered) {
        Decision::Deny(d) => assert!(
            d.message.contains("sorting or grouping by lookup_ssn()"),
            "{d:?}"
        ),
        other => panic!("{other:?}"),
    }
}
