//! The optional `authorize-json` export of contract 0.4.0: the `request` record as one
//! JSON string, the `decision` back as JSON bytes.
//!
//! An interpreted guest spends most of an `authorize` call lifting the request record
//! field by field in guest code: componentize-js decodes every string and builds every
//! object in interpreted JavaScript (BENCHMARKS.md, "Where the JavaScript floor goes").
//! One string, parsed by the guest's native JSON parser, costs a fraction of that; on
//! the way back, the bindings encode every returned string character by character in
//! JavaScript, while bytes are copied natively, so the decision comes back as UTF-8
//! JSON bytes. A component of the `policy-json` world exports `authorize-json` beside
//! `authorize`; the gateway then calls it instead, with the same request, and reads
//! the same decision ([`decode_decision`], strict: anything else fails the call).
//!
//! The JSON has the shape the JavaScript bindings give the record, so that a helper
//! (`policies-examples/lib/js`) hands a policy the very objects `authorize` would get:
//! camelCase keys, enum cases as their kebab-case names, variants as
//! `{"tag": case, "val": payload}`, an absent option as an absent key, `session-id` as
//! a decimal string (a `u64` does not fit a JSON number), `binary` parameters as arrays
//! of bytes.

use std::fmt::Write as _;

use wasmtime::AsContext;
use wasmtime::component::{Func, TypedFunc};

use super::bindings::portcullis::policy::types as wit;
use super::instance::Rejected;

/// The export's name.
pub const AUTHORIZE_JSON: &str = "authorize-json";

/// `authorize-json` as typed once per instance: the request JSON in, the decision as
/// UTF-8 JSON out.
pub type Typed = TypedFunc<(String,), (Vec<u8>,)>;

/// The largest answer read: a decision within the caps ([`super::caps`]) is far
/// smaller.
pub const MAX_DECISION_BYTES: usize = 256 * 1024;

/// `f` as `authorize-json`, type-checked against the contract.
pub(crate) fn typed(f: &Func, store: impl AsContext) -> wasmtime::Result<Typed> {
    f.typed(store).map_err(|e| {
        e.context(format!(
            "export {AUTHORIZE_JSON} does not have the type of contract 0.4.0"
        ))
    })
}

/// The `decision` an `authorize-json` answer encodes. Keys the contract does not name
/// are ignored, as the bindings ignore them; anything that is not such a decision is
/// [`Rejected::Invalid`], an answer over [`MAX_DECISION_BYTES`] [`Rejected::Oversized`].
pub fn decode_decision(bytes: &[u8]) -> Result<wit::Decision, Rejected> {
    if bytes.len() > MAX_DECISION_BYTES {
        return Err(Rejected::Oversized(format!(
            "{AUTHORIZE_JSON} answered {} bytes (cap {MAX_DECISION_BYTES})",
            bytes.len()
        )));
    }
    let d: DecisionJson = serde_json::from_slice(bytes)
        .map_err(|e| Rejected::Invalid(format!("{AUTHORIZE_JSON} answered no decision: {e}")))?;
    Ok(match d {
        DecisionJson::Allow => wit::Decision::Allow,
        DecisionJson::Deny(d) => wit::Decision::Deny(wit::Denial {
            message: d.message,
            sqlstate: d.sqlstate,
        }),
        DecisionJson::RequireApproval(a) => {
            wit::Decision::RequireApproval(wit::ApprovalRequirement {
                reason: a.reason,
                approvers: a.approvers,
            })
        }
    })
}

/// A `decision` as the JavaScript bindings shape it.
#[derive(serde::Deserialize)]
#[serde(tag = "tag", content = "val", rename_all = "kebab-case")]
enum DecisionJson {
    Allow,
    Deny(DenialJson),
    RequireApproval(ApprovalJson),
}

#[derive(serde::Deserialize)]
struct DenialJson {
    message: String,
    #[serde(default)]
    sqlstate: Option<String>,
}

#[derive(serde::Deserialize)]
struct ApprovalJson {
    reason: String,
    approvers: Vec<String>,
}

/// `req` as JSON, into `out` (cleared first).
pub fn encode(req: &wit::Request, out: &mut String) {
    out.clear();
    let id = &req.identity;
    out.push_str("{\"identity\":{\"user\":");
    string(out, &id.user);
    out.push_str(",\"groups\":");
    strings(out, &id.groups);
    out.push_str(",\"kind\":\"");
    out.push_str(principal_kind(id.kind));
    out.push_str("\",\"authMethod\":\"");
    out.push_str(auth_method(id.auth_method));
    out.push('"');
    if let Some(p) = &id.acting_for {
        out.push_str(",\"actingFor\":");
        string(out, p);
    }
    out.push_str(",\"clientAddr\":");
    string(out, &id.client_addr);
    out.push_str(",\"applicationName\":");
    string(out, &id.application_name);
    out.push_str("},\"database\":");
    string(out, &req.database);
    out.push_str(",\"statement\":");
    statement(out, &req.statement);
    if let Some(params) = &req.params {
        out.push_str(",\"params\":[");
        for (i, p) in params.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            match p {
                wit::ParamValue::Null => out.push_str("{\"tag\":\"null\"}"),
                wit::ParamValue::Text(t) => {
                    out.push_str("{\"tag\":\"text\",\"val\":");
                    string(out, t);
                    out.push('}');
                }
                wit::ParamValue::Binary(b) => {
                    out.push_str("{\"tag\":\"binary\",\"val\":[");
                    for (k, byte) in b.iter().enumerate() {
                        if k > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{byte}");
                    }
                    out.push_str("]}");
                }
            }
        }
        out.push(']');
    }
    out.push_str(",\"protocol\":\"");
    out.push_str(match req.protocol {
        wit::Protocol::Simple => "simple",
        wit::Protocol::Extended => "extended",
    });
    out.push_str("\",\"transaction\":\"");
    out.push_str(match req.transaction {
        wit::TransactionState::Idle => "idle",
        wit::TransactionState::InTransaction => "in-transaction",
        wit::TransactionState::Failed => "failed",
    });
    let _ = write!(out, "\",\"sessionId\":\"{}\"}}", req.session_id);
}

fn statement(out: &mut String, s: &wit::Statement) {
    out.push_str("{\"kind\":\"");
    out.push_str(statement_kind(s.kind));
    out.push_str("\",\"leadingKeyword\":");
    string(out, &s.leading_keyword);
    out.push_str(",\"fingerprint\":");
    string(out, &s.fingerprint);
    out.push_str(",\"sql\":");
    string(out, &s.sql);
    out.push_str(",\"tables\":[");
    for (i, t) in s.tables.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('{');
        if let Some(schema) = &t.schema {
            out.push_str("\"schema\":");
            string(out, schema);
            out.push(',');
        }
        out.push_str("\"name\":");
        string(out, &t.name);
        out.push_str(",\"access\":\"");
        out.push_str(match t.access {
            wit::Access::Read => "read",
            wit::Access::Write => "write",
            wit::Access::Ddl => "ddl",
        });
        out.push_str("\"}");
    }
    out.push_str("],\"columns\":");
    strings(out, &s.columns);
    out.push_str(",\"functions\":");
    strings(out, &s.functions);
    if let Some(w) = s.has_where {
        let _ = write!(out, ",\"hasWhere\":{w}");
    }
    if let Some(c) = &s.copy {
        let _ = write!(out, ",\"copy\":{{\"to\":{},\"target\":\"", c.to);
        out.push_str(match c.target {
            wit::CopyTarget::Client => "client",
            wit::CopyTarget::ServerFile => "server-file",
            wit::CopyTarget::Program => "program",
        });
        out.push_str("\"}");
    }
    if let Some(e) = &s.parse_error {
        out.push_str(",\"parseError\":");
        string(out, e);
    }
    let _ = write!(
        out,
        ",\"multiStatement\":{},\"index\":{}}}",
        s.multi_statement, s.index
    );
}

fn strings(out: &mut String, items: &[String]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        string(out, s);
    }
    out.push(']');
}

/// `s` as a JSON string: quotes, backslashes and control characters escaped.
fn string(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{b:04x}");
        } else {
            out.push_str(escape);
        }
        plain = i + 1;
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

fn principal_kind(k: wit::PrincipalKind) -> &'static str {
    match k {
        wit::PrincipalKind::Person => "person",
        wit::PrincipalKind::Service => "service",
        wit::PrincipalKind::Agent => "agent",
    }
}

fn auth_method(m: wit::AuthMethod) -> &'static str {
    match m {
        wit::AuthMethod::Scram => "scram",
        wit::AuthMethod::Token => "token",
        wit::AuthMethod::Certificate => "certificate",
    }
}

/// The contract's name of a statement kind.
pub fn statement_kind(k: wit::StatementKind) -> &'static str {
    use wit::StatementKind as K;
    match k {
        K::Select => "select",
        K::Insert => "insert",
        K::Update => "update",
        K::Delete => "delete",
        K::Merge => "merge",
        K::Copy => "copy",
        K::CreateTable => "create-table",
        K::CreateView => "create-view",
        K::CreateIndex => "create-index",
        K::CreateOther => "create-other",
        K::Alter => "alter",
        K::Drop => "drop",
        K::Truncate => "truncate",
        K::Grant => "grant",
        K::Revoke => "revoke",
        K::Begin => "begin",
        K::Commit => "commit",
        K::Rollback => "rollback",
        K::Savepoint => "savepoint",
        K::Set => "set",
        K::Show => "show",
        K::Reset => "reset",
        K::Prepare => "prepare",
        K::Execute => "execute",
        K::Deallocate => "deallocate",
        K::Explain => "explain",
        K::Declare => "declare",
        K::Fetch => "fetch",
        K::Close => "close",
        K::Listen => "listen",
        K::Notify => "notify",
        K::Unlisten => "unlisten",
        K::Call => "call",
        K::Discard => "discard",
        K::Lock => "lock",
        K::Vacuum => "vacuum",
        K::Analyze => "analyze",
        K::Comment => "comment",
        K::Do => "do",
        K::Other => "other",
        K::Unparsed => "unparsed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_requires() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}é\u{7f}");
        assert_eq!(out, "\"a\\\"b\\\\c\\nd\\u0001é\u{7f}\"");
        let back: String = serde_json::from_str(&out).unwrap();
        assert_eq!(back, "a\"b\\c\nd\u{1}é\u{7f}");
    }

    #[test]
    fn decisions_decode_strictly() {
        let ok = |j: &str| decode_decision(j.as_bytes()).unwrap_or_else(|e| panic!("{j}: {e:?}"));
        assert!(matches!(ok(r#"{"tag":"allow"}"#), wit::Decision::Allow));
        match ok(r#"{"tag":"deny","val":{"message":"no","extra":1}}"#) {
            wit::Decision::Deny(d) => assert_eq!((d.message.as_str(), d.sqlstate), ("no", None)),
            other => panic!("{other:?}"),
        }
        match ok(r#"{"tag":"deny","val":{"message":"m","sqlstate":"42P01"}}"#) {
            wit::Decision::Deny(d) => assert_eq!(d.sqlstate.as_deref(), Some("42P01")),
            other => panic!("{other:?}"),
        }
        match ok(r#"{"val":{"reason":"r","approvers":["group:dba"]},"tag":"require-approval"}"#) {
            wit::Decision::RequireApproval(a) => {
                assert_eq!(
                    (a.reason.as_str(), a.approvers),
                    ("r", vec!["group:dba".into()])
                )
            }
            other => panic!("{other:?}"),
        }
        for bad in [
            "",
            "null",
            r#"{"tag":"permit"}"#,
            r#"{"tag":"deny"}"#,
            r#"{"tag":"deny","val":{"message":7}}"#,
            r#"{"tag":"require-approval","val":{"reason":"r"}}"#,
            r#"{"tag":"deny","val":{"message":"\ud800"}}"#,
            "\u{ff}",
        ] {
            assert!(
                matches!(decode_decision(bad.as_bytes()), Err(Rejected::Invalid(_))),
                "{bad:?}"
            );
        }
        let huge = format!(
            r#"{{"tag":"deny","val":{{"message":"{}"}}}}"#,
            "x".repeat(MAX_DECISION_BYTES)
        );
        assert!(matches!(
            decode_decision(huge.as_bytes()),
            Err(Rejected::Oversized(_))
        ));
    }

    #[test]
    fn a_request_encodes_to_valid_json_with_every_optional_field() {
        let req = wit::Request {
            identity: wit::Identity {
                user: "etl-agent".into(),
                groups: vec!["pipelines".into(), "x\"y".into()],
                kind: wit::PrincipalKind::Agent,
                auth_method: wit::AuthMethod::Token,
                acting_for: Some("alice".into()),
                client_addr: "127.0.0.1:5000".into(),
                application_name: "psql".into(),
            },
            database: "demo".into(),
            statement: wit::Statement {
                kind: wit::StatementKind::Copy,
                leading_keyword: "copy".into(),
                fingerprint: "copy t to stdout".into(),
                sql: "COPY t TO STDOUT".into(),
                tables: vec![wit::TableRef {
                    schema: Some("public".into()),
                    name: "t".into(),
                    access: wit::Access::Read,
                }],
                columns: vec!["t.*".into()],
                functions: vec![],
                has_where: Some(false),
                copy: Some(wit::CopyInfo {
                    to: true,
                    target: wit::CopyTarget::ServerFile,
                }),
                parse_error: Some("bad\ttab".into()),
                multi_statement: true,
                index: 2,
            },
            params: Some(vec![
                wit::ParamValue::Null,
                wit::ParamValue::Text("1".into()),
                wit::ParamValue::Binary(vec![0, 255]),
            ]),
            protocol: wit::Protocol::Extended,
            transaction: wit::TransactionState::InTransaction,
            session_id: u64::MAX,
        };
        let mut out = String::new();
        encode(&req, &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert_eq!(v["identity"]["actingFor"], "alice");
        assert_eq!(v["identity"]["groups"][1], "x\"y");
        assert_eq!(v["statement"]["copy"]["target"], "server-file");
        assert_eq!(v["statement"]["tables"][0]["schema"], "public");
        assert_eq!(v["statement"]["hasWhere"], false);
        assert_eq!(v["statement"]["parseError"], "bad\ttab");
        assert_eq!(v["params"][2]["val"][1], 255);
        assert_eq!(v["transaction"], "in-transaction");
        assert_eq!(v["sessionId"], u64::MAX.to_string());
    }
}
