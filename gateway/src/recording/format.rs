//! The recording format (version 2): JSON lines, a header line first. Documented in
//! `docs/recording.md`; every type here is one JSON object of it.

use serde::{Deserialize, Serialize};

use crate::policy::bindings::portcullis::policy::types as wit;

/// The `format` of a recording's header line.
pub const FORMAT_NAME: &str = "portcullis-recording";
/// The format version this gateway writes, and the newest it reads. Version 2 added
/// the bound parameters of extended-protocol statements (`params`,
/// `binary_params`); version 1 recordings read as they are (no parameters).
pub const FORMAT_VERSION: u32 = 2;

/// The first line of a recording.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// The format version ([`FORMAT_VERSION`]).
    pub version: u32,
    /// When recording started (RFC 3339, UTC).
    pub started: String,
    /// The gateway version that wrote it.
    pub gateway: String,
    /// Whether result rows are sampled, and how many per result set.
    pub sample_rows: usize,
}

/// One line after the header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Line {
    /// A statement and its live decision.
    Statement(Box<StatementLine>),
    /// A result set: its columns with provenance and the masks applied.
    Result(Box<ResultLine>),
}

/// Who sent a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityRec {
    /// User name.
    pub user: String,
    /// `person`, `service` or `agent`.
    pub kind: String,
    /// Groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The person an agent acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acting_for: Option<String>,
    /// That person's groups (what the policies' `context.acting-for` answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acting_for_groups: Vec<String>,
    /// `scram`, `token` or `certificate`.
    #[serde(default = "default_auth")]
    pub auth: String,
    /// Client address.
    #[serde(default)]
    pub client_addr: String,
    /// `application_name`.
    #[serde(default)]
    pub application: String,
}

fn default_auth() -> String {
    "scram".into()
}

/// A table in a parse summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRec {
    /// Schema, when qualified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// Name.
    pub name: String,
    /// `read`, `write` or `ddl`.
    pub access: String,
}

/// The parse summary: exactly what the policy `request` carries about a statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRec {
    /// Statement kind (`select`, `create_table`, ...).
    pub kind: String,
    /// The first keyword.
    #[serde(default)]
    pub leading_keyword: String,
    /// Literal-free fingerprint.
    pub fingerprint: String,
    /// Tables with their access.
    #[serde(default)]
    pub tables: Vec<TableRec>,
    /// Columns (see `request::columns`).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Functions called.
    #[serde(default)]
    pub functions: Vec<String>,
    /// Whether a WHERE clause is present (UPDATE/DELETE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_where: Option<bool>,
    /// COPY direction (`to`) and target (`client`, `server_file`, `program`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy: Option<CopyRec>,
    /// Why the statement did not parse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// Part of a multi-statement string.
    #[serde(default)]
    pub multi_statement: bool,
    /// Position in its string.
    #[serde(default)]
    pub index: u32,
}

/// COPY details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRec {
    /// `COPY ... TO`.
    pub to: bool,
    /// `client`, `server_file` or `program`.
    pub target: String,
}

/// A decision as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRec {
    /// `allow`, `deny` or `hold`.
    pub outcome: String,
    /// The deciding policy (or gateway rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Denial message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// SQLSTATE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlstate: Option<String>,
}

/// One recorded statement.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatementLine {
    /// Position in the recording (from 1).
    pub seq: u64,
    /// When it was decided (RFC 3339, UTC).
    pub time: String,
    /// Gateway session number.
    pub session: u64,
    /// Who.
    pub identity: IdentityRec,
    /// Database.
    pub database: String,
    /// `simple` or `extended`.
    pub protocol: String,
    /// `idle`, `in_transaction` or `failed`.
    pub transaction: String,
    /// The raw SQL string the statement came in.
    pub sql: String,
    /// The parse summary (after the gateway completed view columns).
    pub statement: SummaryRec,
    /// The parameters of the Bind that executed it (extended protocol; version 2):
    /// text values as text, binary ones as `\x` hex, `null` for NULL, each cut to
    /// [`crate::audit::record::MAX_PARAM_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Vec<Option<String>>>,
    /// Positions (from 0) of the parameters sent in binary format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub binary_params: Vec<u32>,
    /// The live decision.
    pub decision: DecisionRec,
    /// Each policy's verdict, when the gateway knew them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<VerdictRec>,
}

/// One policy's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRec {
    /// Policy id.
    pub policy: String,
    /// `allow`, `deny`, `hold` or `error`.
    pub verdict: String,
    /// Call time, µs.
    #[serde(default)]
    pub us: u64,
}

/// A result column with provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnRec {
    /// Position.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// `text` or `binary`.
    pub format: String,
    /// Where the values come from.
    pub provenance: ProvenanceRec,
}

/// Provenance of a result column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProvenanceRec {
    /// A stored column.
    Direct {
        /// `schema.table.column`.
        source: SourceRec,
    },
    /// An expression over these columns.
    Derived {
        /// The columns.
        sources: Vec<SourceRec>,
    },
    /// A constant.
    Constant,
    /// Not established; these tables were in the statement.
    Unknown {
        /// The tables.
        #[serde(default)]
        tables: Vec<TableRec>,
    },
}

/// A stored column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRec {
    /// Schema.
    pub schema: String,
    /// Table.
    pub table: String,
    /// Column.
    pub column: String,
}

/// A mask applied to one column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRec {
    /// Column position.
    pub column: u32,
    /// The policy whose plan asked for it.
    pub policy: String,
    /// The mask function (`email`, `redact:***`, `partial:0,4,*`, ...).
    pub mask: String,
}

/// A result refused by a mask plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalRec {
    /// The policy.
    pub policy: String,
    /// Its message.
    pub message: String,
}

/// One recorded result set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultLine {
    /// Position in the recording.
    pub seq: u64,
    /// When it started.
    pub time: String,
    /// Gateway session number.
    pub session: u64,
    /// Who.
    pub identity: IdentityRec,
    /// Database.
    pub database: String,
    /// The statement producing it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<SummaryRec>,
    /// The columns with provenance.
    pub columns: Vec<ColumnRec>,
    /// Masks applied, in plan order.
    #[serde(default)]
    pub masks: Vec<MaskRec>,
    /// A refusal, if the plan refused the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<RefusalRec>,
    /// Sampled rows, as the client received them (masked); text values, binary as
    /// `\x` hex.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<Vec<Option<String>>>,
}

// ---------------------------------------------------------------------------
// Conversions with the WIT types
// ---------------------------------------------------------------------------

fn kind_name(k: wit::StatementKind) -> &'static str {
    portcullis_sql::StatementKind::ALL
        .into_iter()
        .find(|s| crate::policy::request::kind(*s) == k)
        .map_or("other", |s| s.as_str())
}

fn access_name(a: wit::Access) -> &'static str {
    match a {
        wit::Access::Read => "read",
        wit::Access::Write => "write",
        wit::Access::Ddl => "ddl",
    }
}

fn access_of(s: &str) -> Result<wit::Access, String> {
    Ok(match s {
        "read" => wit::Access::Read,
        "write" => wit::Access::Write,
        "ddl" => wit::Access::Ddl,
        other => return Err(format!("unknown table access \"{other}\"")),
    })
}

impl TableRec {
    /// From the WIT table reference.
    pub fn from_wit(t: &wit::TableRef) -> Self {
        TableRec {
            schema: t.schema.clone(),
            name: t.name.clone(),
            access: access_name(t.access).to_owned(),
        }
    }

    /// To the WIT table reference.
    pub fn to_wit(&self) -> Result<wit::TableRef, String> {
        Ok(wit::TableRef {
            schema: self.schema.clone(),
            name: self.name.clone(),
            access: access_of(&self.access)?,
        })
    }
}

impl IdentityRec {
    /// The identity of a live session.
    pub fn of(session: &crate::pipeline::SessionInfo) -> Self {
        IdentityRec {
            acting_for_groups: session.identity.acting_for_groups.clone(),
            ..Self::from_wit(&crate::policy::request::identity(session))
        }
    }

    /// What the policies' `context` import answers for this identity.
    pub fn call_context(&self) -> crate::policy::CallContext {
        crate::policy::CallContext::acting_for(self.acting_for.as_deref(), &self.acting_for_groups)
    }

    /// From the WIT identity (which does not hold the delegator's groups).
    pub fn from_wit(i: &wit::Identity) -> Self {
        IdentityRec {
            user: i.user.clone(),
            kind: match i.kind {
                wit::PrincipalKind::Person => "person",
                wit::PrincipalKind::Service => "service",
                wit::PrincipalKind::Agent => "agent",
            }
            .into(),
            groups: i.groups.clone(),
            acting_for: i.acting_for.clone(),
            acting_for_groups: Vec::new(),
            auth: match i.auth_method {
                wit::AuthMethod::Scram => "scram",
                wit::AuthMethod::Token => "token",
                wit::AuthMethod::Certificate => "certificate",
            }
            .into(),
            client_addr: i.client_addr.clone(),
            application: i.application_name.clone(),
        }
    }

    /// To the WIT identity.
    pub fn to_wit(&self) -> Result<wit::Identity, String> {
        Ok(wit::Identity {
            user: self.user.clone(),
            groups: self.groups.clone(),
            kind: match self.kind.as_str() {
                "person" => wit::PrincipalKind::Person,
                "service" => wit::PrincipalKind::Service,
                "agent" => wit::PrincipalKind::Agent,
                other => return Err(format!("unknown principal kind \"{other}\"")),
            },
            auth_method: match self.auth.as_str() {
                "token" => wit::AuthMethod::Token,
                "certificate" => wit::AuthMethod::Certificate,
                _ => wit::AuthMethod::Scram,
            },
            acting_for: self.acting_for.clone(),
            client_addr: self.client_addr.clone(),
            application_name: self.application.clone(),
        })
    }
}

impl SummaryRec {
    /// From the WIT statement (the SQL itself is kept once, on the line).
    pub fn from_wit(s: &wit::Statement) -> Self {
        SummaryRec {
            kind: kind_name(s.kind).to_owned(),
            leading_keyword: s.leading_keyword.clone(),
            fingerprint: s.fingerprint.clone(),
            tables: s.tables.iter().map(TableRec::from_wit).collect(),
            columns: s.columns.clone(),
            functions: s.functions.clone(),
            has_where: s.has_where,
            copy: s.copy.as_ref().map(|c| CopyRec {
                to: c.to,
                target: match c.target {
                    wit::CopyTarget::Client => "client",
                    wit::CopyTarget::ServerFile => "server_file",
                    wit::CopyTarget::Program => "program",
                }
                .into(),
            }),
            parse_error: s.parse_error.clone(),
            multi_statement: s.multi_statement,
            index: s.index,
        }
    }

    /// To the WIT statement with `sql`.
    pub fn to_wit(&self, sql: &str) -> Result<wit::Statement, String> {
        let kind = portcullis_sql::StatementKind::from_name(&self.kind)
            .ok_or_else(|| format!("unknown statement kind \"{}\"", self.kind))?;
        Ok(wit::Statement {
            kind: crate::policy::request::kind(kind),
            leading_keyword: self.leading_keyword.clone(),
            fingerprint: self.fingerprint.clone(),
            sql: sql.to_owned(),
            tables: self
                .tables
                .iter()
                .map(TableRec::to_wit)
                .collect::<Result<_, _>>()?,
            columns: self.columns.clone(),
            functions: self.functions.clone(),
            has_where: self.has_where,
            copy: match &self.copy {
                None => None,
                Some(c) => Some(wit::CopyInfo {
                    to: c.to,
                    target: match c.target.as_str() {
                        "client" => wit::CopyTarget::Client,
                        "server_file" => wit::CopyTarget::ServerFile,
                        "program" => wit::CopyTarget::Program,
                        other => return Err(format!("unknown COPY target \"{other}\"")),
                    },
                }),
            },
            parse_error: self.parse_error.clone(),
            multi_statement: self.multi_statement,
            index: self.index,
        })
    }
}

impl StatementLine {
    /// The policy request this statement was decided with.
    pub fn request(&self) -> Result<wit::Request, String> {
        Ok(wit::Request {
            identity: self.identity.to_wit()?,
            database: self.database.clone(),
            statement: self.statement.to_wit(&self.sql)?,
            params: self.params.as_ref().map(|p| self.param_values(p)),
            protocol: if self.protocol == "extended" {
                wit::Protocol::Extended
            } else {
                wit::Protocol::Simple
            },
            transaction: match self.transaction.as_str() {
                "in_transaction" => wit::TransactionState::InTransaction,
                "failed" => wit::TransactionState::Failed,
                _ => wit::TransactionState::Idle,
            },
            session_id: self.session,
        })
    }
}

impl StatementLine {
    /// The recorded parameters as the policy `request` carries them: binary ones
    /// (`binary_params`) decoded from their `\x` hex, the others as text.
    fn param_values(&self, params: &[Option<String>]) -> Vec<wit::ParamValue> {
        params
            .iter()
            .enumerate()
            .map(|(i, p)| match p {
                None => wit::ParamValue::Null,
                Some(v) => {
                    let bytes = v.strip_prefix("\\x").and_then(|h| hex::decode(h).ok());
                    match bytes {
                        Some(b) if self.binary_params.contains(&(i as u32)) => {
                            wit::ParamValue::Binary(b)
                        }
                        _ => wit::ParamValue::Text(v.clone()),
                    }
                }
            })
            .collect()
    }
}

/// The `transaction` name of a WIT state.
pub fn transaction_name(t: wit::TransactionState) -> &'static str {
    match t {
        wit::TransactionState::Idle => "idle",
        wit::TransactionState::InTransaction => "in_transaction",
        wit::TransactionState::Failed => "failed",
    }
}

impl ColumnRec {
    /// From the WIT result column.
    pub fn from_wit(c: &wit::ResultColumn) -> Self {
        let src = |s: &wit::ColumnSource| SourceRec {
            schema: s.schema.clone(),
            table: s.table.clone(),
            column: s.column.clone(),
        };
        ColumnRec {
            index: c.index,
            name: c.name.clone(),
            type_oid: c.type_oid,
            format: match c.format {
                wit::ValueFormat::Text => "text",
                wit::ValueFormat::Binary => "binary",
            }
            .into(),
            provenance: match &c.provenance {
                wit::Provenance::Direct(s) => ProvenanceRec::Direct { source: src(s) },
                wit::Provenance::Derived(v) => ProvenanceRec::Derived {
                    sources: v.iter().map(src).collect(),
                },
                wit::Provenance::Constant => ProvenanceRec::Constant,
                wit::Provenance::Unknown(t) => ProvenanceRec::Unknown {
                    tables: t.iter().map(TableRec::from_wit).collect(),
                },
            },
        }
    }

    /// To the WIT result column.
    pub fn to_wit(&self) -> Result<wit::ResultColumn, String> {
        let src = |s: &SourceRec| wit::ColumnSource {
            schema: s.schema.clone(),
            table: s.table.clone(),
            column: s.column.clone(),
        };
        Ok(wit::ResultColumn {
            index: self.index,
            name: self.name.clone(),
            type_oid: self.type_oid,
            format: if self.format == "binary" {
                wit::ValueFormat::Binary
            } else {
                wit::ValueFormat::Text
            },
            provenance: match &self.provenance {
                ProvenanceRec::Direct { source } => wit::Provenance::Direct(src(source)),
                ProvenanceRec::Derived { sources } => {
                    wit::Provenance::Derived(sources.iter().map(src).collect())
                }
                ProvenanceRec::Constant => wit::Provenance::Constant,
                ProvenanceRec::Unknown { tables } => wit::Provenance::Unknown(
                    tables
                        .iter()
                        .map(TableRec::to_wit)
                        .collect::<Result<_, _>>()?,
                ),
            },
        })
    }
}

impl ResultLine {
    /// The masking context this result was planned with.
    pub fn context(&self) -> Result<wit::ResultContext, String> {
        Ok(wit::ResultContext {
            identity: self.identity.to_wit()?,
            database: self.database.clone(),
            statement: match &self.statement {
                Some(s) => Some(s.to_wit(&s.fingerprint)?),
                None => None,
            },
            columns: self
                .columns
                .iter()
                .map(ColumnRec::to_wit)
                .collect::<Result<_, _>>()?,
        })
    }
}

/// A mask function as a short stable string (`email`, `redact:***`,
/// `partial:1,4,*`, `digits:4`, `date:year`, `round:10`, `custom`, `null`,
/// `pseudonym`).
pub fn mask_name(m: &wit::MaskFunction) -> String {
    match m {
        wit::MaskFunction::Redact(s) => format!("redact:{s}"),
        wit::MaskFunction::Null => "null".into(),
        wit::MaskFunction::Partial(p) => {
            format!("partial:{},{},{}", p.keep_first, p.keep_last, p.fill)
        }
        wit::MaskFunction::Email => "email".into(),
        wit::MaskFunction::Pseudonym => "pseudonym".into(),
        wit::MaskFunction::Digits(n) => format!("digits:{n}"),
        wit::MaskFunction::Date(wit::DatePart::Year) => "date:year".into(),
        wit::MaskFunction::Date(wit::DatePart::Month) => "date:month".into(),
        wit::MaskFunction::Round(s) => format!("round:{s}"),
        wit::MaskFunction::Custom => "custom".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in portcullis_sql::StatementKind::ALL {
            assert_eq!(kind_name(crate::policy::request::kind(k)), k.as_str());
        }
    }

    #[test]
    fn lines_round_trip() {
        let line = r#"{"type":"statement","seq":1,"time":"t","session":2,"identity":{"user":"alice","kind":"person","groups":["analysts"]},"database":"demo","protocol":"simple","transaction":"idle","sql":"select 1","statement":{"kind":"select","fingerprint":"select ?"},"decision":{"outcome":"allow"}}"#;
        let parsed: Line = serde_json::from_str(line).unwrap();
        let Line::Statement(s) = parsed else {
            panic!("not a statement")
        };
        let req = s.request().unwrap();
        assert_eq!(req.identity.user, "alice");
        assert_eq!(req.statement.kind, wit::StatementKind::Select);
        let back = SummaryRec::from_wit(&req.statement);
        assert_eq!(back, s.statement);
        assert!(req.params.is_none(), "a line without params has none");
    }

    #[test]
    fn recorded_params_reach_the_request() {
        let line = r#"{"type":"statement","seq":1,"time":"t","session":2,"identity":{"user":"a","kind":"agent"},"database":"demo","protocol":"extended","transaction":"idle","sql":"select $1, $2, $3, $4","statement":{"kind":"select","fingerprint":"select ?, ?, ?, ?"},"params":["42",null,"\\x0102","\\xzz"],"binary_params":[2,3],"decision":{"outcome":"allow"}}"#;
        let Line::Statement(s) = serde_json::from_str(line).unwrap() else {
            panic!("not a statement")
        };
        let params = s.request().unwrap().params.expect("params");
        assert!(matches!(&params[0], wit::ParamValue::Text(t) if t == "42"));
        assert!(matches!(params[1], wit::ParamValue::Null));
        assert!(matches!(&params[2], wit::ParamValue::Binary(b) if b == &[1, 2]));
        // Not valid hex (a value cut mid-byte, say): kept as the text recorded.
        assert!(matches!(&params[3], wit::ParamValue::Text(t) if t == "\\xzz"));
    }
}
