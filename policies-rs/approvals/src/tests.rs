//! Native tests through the SDK harness.

use portcullis_sdk::testing::{ApprovalRequestBuilder, RequestBuilder, TestHost};
use portcullis_sdk::{
    Access::{Ddl, Read, Write},
    ApprovalRoute, Decision, PrincipalKind, StatementKind as K,
};

use crate::Approvals;

fn demo() -> TestHost<Approvals> {
    let table: toml::Table = toml::from_str(include_str!("../demo-settings.toml")).unwrap();
    TestHost::with_json(&serde_json::to_string(&table).unwrap()).unwrap()
}

fn etl() -> RequestBuilder {
    RequestBuilder::new("etl-agent")
        .groups(["pipelines"])
        .principal(PrincipalKind::Agent)
        .database("demo")
}

fn config_error(json: &str) -> String {
    match TestHost::<Approvals>::with_json(json) {
        Ok(_) => panic!("configure accepted {json}"),
        Err(e) => e,
    }
}

#[test]
fn pipeline_writes_to_customers_are_held() {
    let h = demo();
    let update = etl().kind(K::Update).table("customers", Write).build();
    match h.authorize(&update) {
        Decision::RequireApproval(a) => {
            assert!(a.reason.contains("data owner"), "{a:?}");
            assert_eq!(a.approvers, ["group:data-owners", "group:dba"]);
        }
        other => panic!("{other:?}"),
    }
    let read = etl().kind(K::Select).table("customers", Read).build();
    assert_eq!(h.authorize(&read), Decision::Allow);
    let orders = etl().kind(K::Update).table("orders", Write).build();
    assert_eq!(h.authorize(&orders), Decision::Allow);
    let alice = RequestBuilder::new("alice")
        .groups(["analysts"])
        .kind(K::Update)
        .table("customers", Write)
        .build();
    assert_eq!(h.authorize(&alice), Decision::Allow);
}

#[test]
fn ddl_needs_a_dba_except_for_dbas() {
    let h = demo();
    let alter = RequestBuilder::new("alice")
        .database("demo")
        .kind(K::Alter)
        .table("orders", Ddl)
        .build();
    assert!(matches!(h.authorize(&alter), Decision::RequireApproval(_)));
    let bob = RequestBuilder::new("bob")
        .groups(["dba"])
        .database("demo")
        .kind(K::Alter)
        .table("orders", Ddl)
        .build();
    assert_eq!(h.authorize(&bob), Decision::Allow);
}

#[test]
fn routing_follows_the_rule() {
    let h = demo();
    let update = etl().kind(K::Update).table("customers", Write).build();
    let route = h.approve(&ApprovalRequestBuilder::new(update, "r").build());
    match route {
        ApprovalRoute::Route(r) => {
            assert_eq!(r.approvers, ["group:data-owners", "group:dba"]);
            assert_eq!(r.required_approvals, 1);
            assert_eq!(r.ttl_seconds, 900);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn incident_windows_auto_approve() {
    let h = TestHost::<Approvals>::with_json(
        r#"{"rules":[{"kinds":["drop"],"approvers":["group:dba"],"approvals":2,"channel":"ops"}],
            "auto_approve":[{"groups":["oncall"],"from":"2026-12-01T00:00:00Z","until":"2026-12-01T06:00:00Z","reason":"INC-1"}]}"#,
    )
    .unwrap();
    let drop = RequestBuilder::new("carol")
        .groups(["oncall"])
        .kind(K::Drop)
        .build();
    let at = |ms| {
        h.approve(
            &ApprovalRequestBuilder::new(drop.clone(), "r")
                .requested_at_ms(ms)
                .build(),
        )
    };
    // 2026-12-01T01:00:00Z
    assert_eq!(at(1_796_086_800_000), ApprovalRoute::auto_approve("INC-1"));
    // 2026-12-01T07:00:00Z: outside, routed to two DBAs on the ops channel.
    match at(1_796_108_400_000) {
        ApprovalRoute::Route(r) => {
            assert_eq!(r.required_approvals, 2);
            assert_eq!(r.channel.as_deref(), Some("ops"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_settings_are_refused() {
    assert!(config_error(r#"{"rules":[{"kinds":["drop"]}]}"#).contains("approvers"));
    assert!(
        config_error(r#"{"rules":[{"kinds":["drop"],"approvers":["dba"]}]}"#)
            .contains("group:NAME")
    );
    assert!(
        config_error(r#"{"rules":[{"access":["write"],"approvers":["group:x"]}]}"#)
            .contains("tables")
    );
    assert!(config_error(r#"{"rules":[{"approvers":["group:x"]}]}"#).contains("kinds"));
    assert!(
        config_error(r#"{"rules":[{"kinds":["drop"],"approvers":["group:x"],"approvals":0}]}"#)
            .contains("at least 1")
    );
    assert!(config_error(r#"{"auto_approve":[{"groups":["x"],"from":"yesterday","until":"2026-01-01T00:00:00Z"}]}"#).contains("from"));
    assert!(config_error(r#"{"rulez":[]}"#).contains("rulez"));
}
