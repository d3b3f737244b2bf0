//! Rust types for everything in the policy contract (`wit/policy.wit`).
//!
//! These are plain Rust values: they work the same inside a Wasm component and in a
//! native `cargo test`. The SDK converts them to and from the component-model values
//! at the boundary, so a policy never sees the generated bindings.
//!
//! Records the gateway *sends* (a [`Request`], an [`Identity`], a [`Statement`], a
//! [`ResultContext`], ...) are `#[non_exhaustive]`: a later contract version may add
//! fields without breaking a policy. Build them with their `new` functions or the
//! builders in [`crate::testing`]. Records a policy *returns* ([`Decision`],
//! [`MaskPlan`], [`ApprovalRoute`], ...) are plain structs and enums with helpers.

use std::fmt;
use std::str::FromStr;

/// The SQLSTATE a denial carries when it names none: `42501` (insufficient_privilege).
pub const DEFAULT_SQLSTATE: &str = "42501";

/// Declares a fieldless enum of the contract with its stable name (the WIT case name),
/// `Display`, `FromStr` (kebab-case or snake_case, any letter case) and serde support
/// (so settings can name cases: `deny_kinds = ["drop", "create-table"]`).
macro_rules! wit_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $( $(#[$vmeta:meta])* $variant:ident = $wit:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every case, in contract order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every case's name, in contract order.
            pub const NAMES: &'static [&'static str] = &[$($wit),+];

            /// The case's name in the contract (kebab-case), e.g. `"create-table"`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $wit,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            /// Parses a case name: `"create-table"`, `"create_table"` and `"CREATE_TABLE"`
            /// all give the same case.
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                let wanted: String = s
                    .trim()
                    .chars()
                    .map(|c| if c == '_' { '-' } else { c.to_ascii_lowercase() })
                    .collect();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == wanted)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        name: s.to_string(),
                        expected: $name::NAMES,
                    })
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse()
                    .map_err(|_| serde::de::Error::unknown_variant(&s, $name::NAMES))
            }
        }
    };
}

/// A name that is not a case of a contract enum (from [`FromStr`] on, e.g.,
/// [`StatementKind`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownName {
    what: &'static str,
    name: String,
    expected: &'static [&'static str],
}

impl fmt::Display for UnknownName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown {} `{}`, expected one of: {}",
            self.what,
            self.name,
            self.expected.join(", ")
        )
    }
}

impl std::error::Error for UnknownName {}

wit_enum! {
    /// What kind of principal is connected.
    pub enum PrincipalKind ("principal kind") {
        /// A person.
        Person = "person",
        /// A service or pipeline with its own credentials.
        Service = "service",
        /// An AI agent, possibly acting for a person (see [`Identity::acting_for`]).
        Agent = "agent",
    }
}

wit_enum! {
    /// How the identity proved who it is.
    pub enum AuthMethod ("auth method") {
        /// SCRAM-SHA-256 password exchange against a verifier in the gateway config.
        Scram = "scram",
        /// An identity-provider token (OIDC/JWT).
        Token = "token",
        /// A TLS client certificate.
        Certificate = "certificate",
    }
}

wit_enum! {
    /// How a statement touches a table. Ordered: `Read < Write < Ddl`.
    pub enum Access ("access") {
        /// Reads rows.
        Read = "read",
        /// Changes rows.
        Write = "write",
        /// Changes the definition or privileges.
        Ddl = "ddl",
    }
}

wit_enum! {
    /// Kinds of statements.
    ///
    /// Non-exhaustive: a later contract version may add kinds, so a `match` needs a
    /// wildcard arm, and a policy should treat kinds it does not know conservatively.
    #[non_exhaustive]
    pub enum StatementKind ("statement kind") {
        /// `SELECT` (and `VALUES`, `TABLE`).
        Select = "select",
        /// `INSERT`.
        Insert = "insert",
        /// `UPDATE`.
        Update = "update",
        /// `DELETE`.
        Delete = "delete",
        /// `MERGE`.
        Merge = "merge",
        /// `COPY` (see [`Statement::copy`]).
        Copy = "copy",
        /// `CREATE TABLE` (including `CREATE TABLE AS`).
        CreateTable = "create-table",
        /// `CREATE VIEW`.
        CreateView = "create-view",
        /// `CREATE INDEX`.
        CreateIndex = "create-index",
        /// Any other `CREATE`.
        CreateOther = "create-other",
        /// `ALTER`.
        Alter = "alter",
        /// `DROP`.
        Drop = "drop",
        /// `TRUNCATE`.
        Truncate = "truncate",
        /// `GRANT`.
        Grant = "grant",
        /// `REVOKE`.
        Revoke = "revoke",
        /// `BEGIN` / `START TRANSACTION`.
        Begin = "begin",
        /// `COMMIT`.
        Commit = "commit",
        /// `ROLLBACK`.
        Rollback = "rollback",
        /// `SAVEPOINT`.
        Savepoint = "savepoint",
        /// `SET`.
        Set = "set",
        /// `SHOW`.
        Show = "show",
        /// `RESET`.
        Reset = "reset",
        /// `PREPARE`.
        Prepare = "prepare",
        /// `EXECUTE`.
        Execute = "execute",
        /// `DEALLOCATE`.
        Deallocate = "deallocate",
        /// `EXPLAIN`.
        Explain = "explain",
        /// `DECLARE` (a cursor).
        Declare = "declare",
        /// `FETCH`.
        Fetch = "fetch",
        /// `CLOSE`.
        Close = "close",
        /// `LISTEN`.
        Listen = "listen",
        /// `NOTIFY`.
        Notify = "notify",
        /// `UNLISTEN`.
        Unlisten = "unlisten",
        /// `CALL`.
        Call = "call",
        /// `DISCARD`.
        Discard = "discard",
        /// `LOCK`.
        Lock = "lock",
        /// `VACUUM`.
        Vacuum = "vacuum",
        /// `ANALYZE`.
        Analyze = "analyze",
        /// `COMMENT`.
        Comment = "comment",
        /// `DO` (an anonymous code block).
        Do = "do",
        /// A statement the gateway parsed but does not classify.
        Other = "other",
        /// The gateway could not parse the statement (e.g. `DO $$ ... $$`); see
        /// [`Statement::parse_error`] and [`Statement::leading_keyword`].
        Unparsed = "unparsed",
    }
}

impl StatementKind {
    /// The kind as SQL words for messages: `"DROP"`, `"CREATE TABLE"`, `"DO"`;
    /// `"CREATE"` for `create-other`, `"statement"` for `other` and `unparsed`.
    pub fn sql_words(self) -> String {
        match self {
            StatementKind::CreateOther => "CREATE".into(),
            StatementKind::Other | StatementKind::Unparsed => "statement".into(),
            k => k.as_str().replace('-', " ").to_ascii_uppercase(),
        }
    }
}

wit_enum! {
    /// Where a `COPY` reads or writes.
    pub enum CopyTarget ("copy target") {
        /// The client connection (`STDIN`/`STDOUT`).
        Client = "client",
        /// A file on the database server.
        ServerFile = "server-file",
        /// A program run by the database server.
        Program = "program",
    }
}

wit_enum! {
    /// Which protocol carried the statement.
    pub enum Protocol ("protocol") {
        /// A simple-protocol `Query`.
        Simple = "simple",
        /// The extended protocol (`Parse`/`Bind`/`Execute`).
        Extended = "extended",
    }
}

wit_enum! {
    /// The transaction state before the statement runs.
    pub enum TransactionState ("transaction state") {
        /// Not in a transaction block.
        Idle = "idle",
        /// In a transaction block.
        InTransaction = "in-transaction",
        /// In a failed transaction block.
        Failed = "failed",
    }
}

wit_enum! {
    /// Wire format of a result column.
    pub enum ValueFormat ("value format") {
        /// Text format.
        Text = "text",
        /// Binary format.
        Binary = "binary",
    }
}

wit_enum! {
    /// How far [`MaskFunction::Date`] generalises a date or timestamp.
    pub enum DatePart ("date part") {
        /// Keep the year only.
        Year = "year",
        /// Keep year and month.
        Month = "month",
    }
}

wit_enum! {
    /// Which hooks a policy implements (the gateway calls only these).
    pub enum Hook ("hook") {
        /// [`crate::Policy::authorize`].
        Authorize = "authorize",
        /// [`crate::Policy::plan_masks`] and [`crate::Policy::mask_rows`].
        Mask = "mask",
        /// [`crate::Policy::approve`].
        Approve = "approve",
    }
}

wit_enum! {
    /// Log levels for [`crate::log`].
    pub enum LogLevel ("log level") {
        /// Debug.
        Debug = "debug",
        /// Info.
        Info = "info",
        /// Warning.
        Warn = "warn",
        /// Error.
        Error = "error",
    }
}

/// A verified identity: who is connected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identity {
    /// User name.
    pub user: String,
    /// Groups, from the config, a directory or the token.
    pub groups: Vec<String>,
    /// Person, service or agent.
    pub kind: PrincipalKind,
    /// How it authenticated.
    pub auth_method: AuthMethod,
    /// For an agent acting for a person: that person's user name.
    pub acting_for: Option<String>,
    /// The groups of the person in `acting_for` (empty when it is `None`), as the
    /// gateway verified them (contract 0.2.0: asked through the `context` import only
    /// when `acting_for` is set).
    pub acting_for_groups: Vec<String>,
    /// The client's address (`ip:port`).
    pub client_addr: String,
    /// The client's `application_name`.
    pub application_name: String,
}

impl Identity {
    /// A person called `user`, in no group, authenticated with SCRAM, with an empty
    /// client address and application name.
    pub fn new(user: impl Into<String>) -> Self {
        Identity {
            user: user.into(),
            groups: Vec::new(),
            kind: PrincipalKind::Person,
            auth_method: AuthMethod::Scram,
            acting_for: None,
            acting_for_groups: Vec::new(),
            client_addr: String::new(),
            application_name: String::new(),
        }
    }

    /// Whether the identity is in `group` (exact, case-sensitive).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// Whether the identity is in at least one of `groups`.
    pub fn in_any_group<S: AsRef<str>>(&self, groups: &[S]) -> bool {
        groups.iter().any(|g| self.in_group(g.as_ref()))
    }

    /// Whether the person this identity acts for is in at least one of `groups`
    /// (false when it acts for no one).
    pub fn acting_for_any_group<S: AsRef<str>>(&self, groups: &[S]) -> bool {
        self.acting_for.is_some()
            && groups
                .iter()
                .any(|g| self.acting_for_groups.iter().any(|p| p == g.as_ref()))
    }
}

/// A table (or view) a statement touches.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Schema, when the statement names it.
    pub schema: Option<String>,
    /// Table name, folded as PostgreSQL folds it (unquoted names lower-cased, quoted
    /// names verbatim). The gateway reports `*` for
    /// `GRANT ... ON ALL TABLES IN SCHEMA s`.
    pub name: String,
    /// The strongest access the statement makes.
    pub access: Access,
}

impl TableRef {
    /// A table reference without a schema.
    pub fn new(name: impl Into<String>, access: Access) -> Self {
        TableRef {
            schema: None,
            name: name.into(),
            access,
        }
    }

    /// A schema-qualified table reference.
    pub fn qualified(schema: impl Into<String>, name: impl Into<String>, access: Access) -> Self {
        TableRef {
            schema: Some(schema.into()),
            name: name.into(),
            access,
        }
    }

    /// `schema.name`, or `name` without a schema.
    pub fn qualified_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether this reference may denote a table `pattern` names; see [`TablePattern`].
    pub fn matches(&self, pattern: &TablePattern) -> bool {
        pattern.matches(self)
    }
}

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer ones are cut, by
/// PostgreSQL and by the gateway's analysis alike.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// A table named in a policy's settings: `*` (every table), `name` or `schema.name`,
/// each part written as in SQL: unquoted parts fold to lower case (`Customers` is
/// `customers`), double-quoted parts are kept verbatim (`"Customers"`), parts longer than
/// 63 bytes are cut as PostgreSQL cuts them.
///
/// Matching ([`TablePattern::matches`]) is then case-sensitive on the names the gateway
/// sends, which are folded the same way, and errs on the side of matching, as a deny
/// rule wants:
///
/// - `*` matches every table.
/// - `secrets` means `public.secrets`: it matches `secrets` written without a schema or
///   with schema `public` (not `hr.secrets`, another table).
/// - `hr.salaries` matches `salaries` written with schema `hr` or without a schema (an
///   unqualified name may resolve to it through `search_path`).
/// - A reference named `*` (the gateway's report of `GRANT ... ON ALL TABLES IN SCHEMA
///   s`) matches every pattern whose schema agrees, as it covers every table there.
///
/// ```
/// use portcullis_sdk::{Access, TablePattern, TableRef};
///
/// let p: TablePattern = "Public.Secrets".parse().unwrap();
/// assert_eq!(p.to_string(), "public.secrets");
/// assert!(p.matches(&TableRef::new("secrets", Access::Read)));
/// assert!(!p.matches(&TableRef::new("Secrets", Access::Read))); // `"Secrets"` in SQL
/// assert!(!p.matches(&TableRef::qualified("hr", "secrets", Access::Read)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TablePattern {
    /// `None` for `*`; otherwise the schema (`public` when not written) and the name.
    parts: Option<(String, String)>,
}

impl TablePattern {
    /// The pattern matching every table.
    pub fn any() -> Self {
        TablePattern { parts: None }
    }

    /// Parses a pattern, with a message saying what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "*" {
            return Ok(TablePattern::any());
        }
        let mut parts = Vec::new();
        let mut rest = text;
        loop {
            let (ident, after) = parse_identifier(rest)?;
            parts.push(ident);
            match after.strip_prefix('.') {
                Some(next) => rest = next,
                None if after.is_empty() => break,
                None => return Err(format!("unexpected {after:?} after a name")),
            }
        }
        let (schema, name) = match <[String; 2]>::try_from(parts) {
            Ok([schema, name]) => (schema, name),
            Err(parts) if parts.len() == 1 => ("public".to_string(), parts[0].clone()),
            Err(_) => return Err("has more than a schema and a name".into()),
        };
        Ok(TablePattern {
            parts: Some((schema, name)),
        })
    }

    /// Whether `table` may be the table this pattern names (see the type's docs).
    pub fn matches(&self, table: &TableRef) -> bool {
        match &self.parts {
            None => true,
            Some((schema, name)) => {
                (table.name == *name || table.name == "*")
                    && table.schema.as_deref().is_none_or(|s| s == schema)
            }
        }
    }
}

/// One identifier at the start of `s`: `"quoted"` (with `""` for a quote) verbatim, or
/// unquoted up to the next `.`, lower-cased; cut to [`MAX_IDENTIFIER_BYTES`]. Returns it
/// and the rest.
fn parse_identifier(s: &str) -> Result<(String, &str), String> {
    let (mut ident, rest) = if let Some(body) = s.strip_prefix('"') {
        let mut ident = String::new();
        let mut chars = body.char_indices();
        loop {
            match chars.next() {
                None => return Err(format!("unterminated quoted name in {s:?}")),
                Some((i, '"')) => {
                    if body[i + 1..].starts_with('"') {
                        ident.push('"');
                        chars.next();
                    } else {
                        break (ident, &body[i + 1..]);
                    }
                }
                Some((_, c)) => ident.push(c),
            }
        }
    } else {
        let end = s.find('.').unwrap_or(s.len());
        let word = &s[..end];
        if word.contains(['"', ' ', '\t', '*']) {
            let what = if word.contains('*') {
                "a partial wildcard (only `*` alone, for every table, is supported)"
            } else {
                "a quote or a space in an unquoted name (quote the whole name)"
            };
            return Err(format!("{what}: {word:?}"));
        }
        (word.to_ascii_lowercase(), &s[end..])
    };
    if ident.is_empty() {
        return Err("an empty name".into());
    }
    if ident.len() > MAX_IDENTIFIER_BYTES {
        let mut end = MAX_IDENTIFIER_BYTES;
        while !ident.is_char_boundary(end) {
            end -= 1;
        }
        ident.truncate(end);
    }
    Ok((ident, rest))
}

impl FromStr for TablePattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TablePattern::parse(s)
    }
}

impl fmt::Display for TablePattern {
    /// `*`, or `schema.name` with parts quoted when they need it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn part(p: &str) -> String {
            let plain = !p.is_empty()
                && p.chars().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || !c.is_ascii()
                })
                && !p.starts_with(|c: char| c.is_ascii_digit());
            if plain {
                p.to_string()
            } else {
                format!("\"{}\"", p.replace('"', "\"\""))
            }
        }
        match &self.parts {
            None => f.write_str("*"),
            Some((schema, name)) => write!(f, "{}.{}", part(schema), part(name)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for TablePattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
        TablePattern::parse(&s)
            .map_err(|e| serde::de::Error::custom(format_args!("table {s:?}: {e}")))
    }
}

/// `COPY` details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CopyInfo {
    /// True for `COPY ... TO` (data leaves the database).
    pub to: bool,
    /// Where the data goes or comes from.
    pub target: CopyTarget,
}

/// One statement, analysed by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Statement {
    /// What kind of statement.
    pub kind: StatementKind,
    /// The first keyword, lower-cased (useful for unparsed statements).
    pub leading_keyword: String,
    /// Literal-free fingerprint of the statement: literals become `?`, comments vanish,
    /// whitespace collapses, unquoted words are lower-cased.
    pub fingerprint: String,
    /// The SQL text as the client sent it (the whole string for multi-statement
    /// strings).
    pub sql: String,
    /// Tables touched, with access mode.
    pub tables: Vec<TableRef>,
    /// Columns referenced, `table.column` where known.
    pub columns: Vec<String>,
    /// Functions called, lower-cased, schema-qualified as written.
    pub functions: Vec<String>,
    /// For statements containing UPDATE or DELETE: whether every one has a WHERE
    /// clause (`Some(false)`: at least one has none).
    pub has_where: Option<bool>,
    /// For COPY: direction and target.
    pub copy: Option<CopyInfo>,
    /// Why the statement did not parse, if it did not.
    pub parse_error: Option<String>,
    /// True when the string held several statements.
    pub multi_statement: bool,
    /// Position of this statement in the string, from 0.
    pub index: u32,
}

impl Statement {
    /// A statement of `kind` touching nothing, with every text field empty.
    pub fn new(kind: StatementKind) -> Self {
        Statement {
            kind,
            leading_keyword: String::new(),
            fingerprint: String::new(),
            sql: String::new(),
            tables: Vec::new(),
            columns: Vec::new(),
            functions: Vec::new(),
            has_where: None,
            copy: None,
            parse_error: None,
            multi_statement: false,
            index: 0,
        }
    }

    /// The tables this statement touches that match `pattern` (see [`TablePattern`]).
    pub fn tables_matching<'a>(
        &'a self,
        pattern: &'a TablePattern,
    ) -> impl Iterator<Item = &'a TableRef> {
        self.tables.iter().filter(move |t| t.matches(pattern))
    }

    /// Whether the statement calls a function matching `pattern` (see
    /// [`function_matches`]): `calls_function("pg_read_file")` is true for
    /// `SELECT pg_catalog.pg_read_file('/etc/passwd')`.
    pub fn calls_function(&self, pattern: &str) -> bool {
        self.functions.iter().any(|f| function_matches(f, pattern))
    }
}

/// Whether a called function `called` (as the gateway reports it: lower-cased,
/// schema-qualified as written) matches `pattern`, compared case-insensitively.
///
/// - An unqualified pattern (`"pg_read_file"`) matches the function in any schema:
///   `pg_read_file`, `pg_catalog.pg_read_file`, `public.dblink` for `"dblink"`
///   (extensions install into arbitrary schemas).
/// - A qualified pattern (`"public.dblink"`) matches that schema, or a call written
///   without a schema (which may resolve to it).
pub fn function_matches(called: &str, pattern: &str) -> bool {
    let called = called.to_ascii_lowercase();
    let pattern = pattern.to_ascii_lowercase();
    let (c_schema, c_name) = match called.rsplit_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, called.as_str()),
    };
    match pattern.rsplit_once('.') {
        None => c_name == pattern,
        Some((p_schema, p_name)) => c_name == p_name && c_schema.is_none_or(|s| s == p_schema),
    }
}

/// A bound parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamValue {
    /// SQL NULL.
    Null,
    /// A value in text format.
    Text(String),
    /// A value in binary format.
    Binary(Vec<u8>),
}

/// Everything [`crate::Policy::authorize`] is told about one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// Who.
    pub identity: Identity,
    /// The database name the client connected to.
    pub database: String,
    /// What.
    pub statement: Statement,
    /// Bound parameters, when known (extended protocol after Bind).
    pub params: Option<Vec<ParamValue>>,
    /// How it arrived.
    pub protocol: Protocol,
    /// Transaction state.
    pub transaction: TransactionState,
    /// The gateway's session id.
    pub session_id: u64,
}

impl Request {
    /// A simple-protocol request outside a transaction, without parameters, in
    /// session 0.
    pub fn new(identity: Identity, database: impl Into<String>, statement: Statement) -> Self {
        Request {
            identity,
            database: database.into(),
            statement,
            params: None,
            protocol: Protocol::Simple,
            transaction: TransactionState::Idle,
            session_id: 0,
        }
    }
}

/// A refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Message for the client.
    pub message: String,
    /// SQLSTATE for the client; [`DEFAULT_SQLSTATE`] (`42501`) when `None`.
    pub sqlstate: Option<String>,
}

impl Denial {
    /// A denial with the default SQLSTATE.
    pub fn new(message: impl Into<String>) -> Self {
        Denial {
            message: message.into(),
            sqlstate: None,
        }
    }

    /// A denial with a SQLSTATE of its own.
    pub fn with_sqlstate(sqlstate: impl Into<String>, message: impl Into<String>) -> Self {
        Denial {
            message: message.into(),
            sqlstate: Some(sqlstate.into()),
        }
    }

    /// The SQLSTATE the client receives.
    pub fn sqlstate(&self) -> &str {
        self.sqlstate.as_deref().unwrap_or(DEFAULT_SQLSTATE)
    }

    /// Whether `code` is a well-formed SQLSTATE for an error: five characters from
    /// `0-9A-Z`, and not in the success, warning or no-data classes (`00`, `01`, `02`).
    pub fn is_valid_sqlstate(code: &str) -> bool {
        code.len() == 5
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            && !matches!(&code[..2], "00" | "01" | "02")
    }
}

/// A statement that must wait for a human.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequirement {
    /// Why approval is needed (shown to reviewers and the client).
    pub reason: String,
    /// Groups (`group:dba`) or users (`user:bob`) who may approve.
    pub approvers: Vec<String>,
}

/// What [`crate::Policy::authorize`] decides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Decision {
    /// Let it run (subject to the other policies in the chain).
    #[default]
    Allow,
    /// Refuse it.
    Deny(Denial),
    /// Hold it until approved.
    RequireApproval(ApprovalRequirement),
}

impl Decision {
    /// Deny with `message` and SQLSTATE `42501` (insufficient_privilege).
    pub fn deny(message: impl Into<String>) -> Self {
        Decision::Deny(Denial::new(message))
    }

    /// Deny with `message` and the given SQLSTATE (e.g. `"42501"`, `"P0001"`).
    pub fn deny_with(sqlstate: impl Into<String>, message: impl Into<String>) -> Self {
        Decision::Deny(Denial::with_sqlstate(sqlstate, message))
    }

    /// Hold the statement until approved by `approvers` (`"group:dba"`, `"user:bob"`).
    pub fn require_approval<I, S>(reason: impl Into<String>, approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Decision::RequireApproval(ApprovalRequirement {
            reason: reason.into(),
            approvers: approvers.into_iter().map(Into::into).collect(),
        })
    }

    /// Whether this is [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// Whether this is a [`Decision::Deny`].
    pub fn is_deny(&self) -> bool {
        matches!(self, Decision::Deny(_))
    }

    /// The denial, if this is one.
    pub fn denial(&self) -> Option<&Denial> {
        match self {
            Decision::Deny(d) => Some(d),
            _ => None,
        }
    }
}

/// Where a result column's values come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ColumnSource {
    /// Schema.
    pub schema: String,
    /// Table or view.
    pub table: String,
    /// Column.
    pub column: String,
}

impl ColumnSource {
    /// A column of `schema.table`.
    pub fn new(
        schema: impl Into<String>,
        table: impl Into<String>,
        column: impl Into<String>,
    ) -> Self {
        ColumnSource {
            schema: schema.into(),
            table: table.into(),
            column: column.into(),
        }
    }
}

/// Provenance of a result column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provenance {
    /// A plain column of a table.
    Direct(ColumnSource),
    /// Computed from these columns (expressions, aggregates, casts, row_to_json, ...).
    Derived(Vec<ColumnSource>),
    /// Not derived from any column (a literal, `now()`, a parameter).
    Constant,
    /// Not established; carries the tables the statement reads so a policy can fail
    /// closed when any of them is sensitive.
    Unknown(Vec<TableRef>),
}

impl Provenance {
    /// The source columns: one for `Direct`, several for `Derived`, none otherwise.
    pub fn sources(&self) -> &[ColumnSource] {
        match self {
            Provenance::Direct(s) => std::slice::from_ref(s),
            Provenance::Derived(v) => v,
            Provenance::Constant | Provenance::Unknown(_) => &[],
        }
    }
}

/// A result column.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResultColumn {
    /// Position in the row, from 0.
    pub index: u32,
    /// Column name as the client sees it (the alias, if any).
    pub name: String,
    /// PostgreSQL type OID.
    pub type_oid: u32,
    /// Wire format.
    pub format: ValueFormat,
    /// Where the values come from.
    pub provenance: Provenance,
}

impl ResultColumn {
    /// A text-format column.
    pub fn new(index: u32, name: impl Into<String>, type_oid: u32, provenance: Provenance) -> Self {
        ResultColumn {
            index,
            name: name.into(),
            type_oid,
            format: ValueFormat::Text,
            provenance,
        }
    }
}

/// Context for masking one result set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResultContext {
    /// Who receives the rows.
    pub identity: Identity,
    /// The database.
    pub database: String,
    /// The statement producing them, when known.
    pub statement: Option<Statement>,
    /// The columns of the result.
    pub columns: Vec<ResultColumn>,
}

impl ResultContext {
    /// A context without a statement.
    pub fn new(
        identity: Identity,
        database: impl Into<String>,
        columns: Vec<ResultColumn>,
    ) -> Self {
        ResultContext {
            identity,
            database: database.into(),
            statement: None,
            columns,
        }
    }
}

/// Keep some characters and replace the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartialMask {
    /// Characters kept at the start.
    pub keep_first: u32,
    /// Characters kept at the end.
    pub keep_last: u32,
    /// Replacement for each hidden character.
    pub fill: String,
}

/// A mask the gateway applies natively, without calling the policy per row.
#[derive(Debug, Clone, PartialEq)]
pub enum MaskFunction {
    /// Replace with a constant (type-checked; NULL if invalid for the type).
    Redact(String),
    /// Replace with NULL.
    Null,
    /// Keep first/last characters.
    Partial(PartialMask),
    /// Keep the domain of an e-mail address.
    Email,
    /// Deterministic keyed pseudonym: equal inputs give equal tokens.
    Pseudonym,
    /// Replace digits, keeping the last N and the formatting.
    Digits(u32),
    /// Generalise a date.
    Date(DatePart),
    /// Round a number to a multiple of this step.
    Round(f64),
    /// Custom logic: the gateway calls [`crate::Policy::mask_rows`] for this column,
    /// in batches.
    Custom,
}

impl MaskFunction {
    /// [`MaskFunction::Partial`]: keep `keep_first` and `keep_last` characters, replace
    /// each other one with `fill`.
    pub fn partial(keep_first: u32, keep_last: u32, fill: impl Into<String>) -> Self {
        MaskFunction::Partial(PartialMask {
            keep_first,
            keep_last,
            fill: fill.into(),
        })
    }
}

/// A mask for one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMask {
    /// Column position.
    pub index: u32,
    /// The mask.
    pub mask: MaskFunction,
}

/// How to mask a result set: decided once, applied to every row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MaskPlan {
    /// Masked columns; unlisted columns pass unchanged.
    pub columns: Vec<ColumnMask>,
    /// Refuse the whole result instead.
    pub refuse: Option<Denial>,
}

impl MaskPlan {
    /// Mask nothing.
    pub fn none() -> Self {
        MaskPlan::default()
    }

    /// Refuse the whole result with `message` and SQLSTATE `42501`.
    pub fn refuse(message: impl Into<String>) -> Self {
        MaskPlan {
            columns: Vec::new(),
            refuse: Some(Denial::new(message)),
        }
    }

    /// Refuse the whole result with `message` and the given SQLSTATE.
    pub fn refuse_with(sqlstate: impl Into<String>, message: impl Into<String>) -> Self {
        MaskPlan {
            columns: Vec::new(),
            refuse: Some(Denial::with_sqlstate(sqlstate, message)),
        }
    }

    /// Adds a mask for column `index` (builder style).
    pub fn mask(mut self, index: u32, mask: MaskFunction) -> Self {
        self.columns.push(ColumnMask { index, mask });
        self
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.refuse.is_none()
    }
}

/// A row for [`crate::Policy::mask_rows`]: only the `custom` columns, in plan order,
/// in text format (`None` is SQL NULL).
pub type Row = Vec<Option<String>>;

/// An approval request, for routing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// Request id.
    pub id: String,
    /// The statement and who asked.
    pub request: Request,
    /// The reason `authorize` gave.
    pub reason: String,
    /// Approvers `authorize` suggested.
    pub approvers: Vec<String>,
    /// When it was made, in milliseconds since the Unix epoch.
    pub requested_at_ms: u64,
}

impl ApprovalRequest {
    /// An approval request for `request`, made at time 0.
    pub fn new(
        id: impl Into<String>,
        request: Request,
        reason: impl Into<String>,
        approvers: Vec<String>,
    ) -> Self {
        ApprovalRequest {
            id: id.into(),
            request,
            reason: reason.into(),
            approvers,
            requested_at_ms: 0,
        }
    }
}

/// How an approval request is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRouting {
    /// Groups (`group:x`) or users (`user:y`) who may approve.
    pub approvers: Vec<String>,
    /// Approvals needed.
    pub required_approvals: u32,
    /// Seconds the request (and an approval) stays valid.
    pub ttl_seconds: u32,
    /// Notification channel name from the gateway config, if any.
    pub channel: Option<String>,
}

impl ApprovalRouting {
    /// Routing to `approvers`, needing one approval, valid for an hour, without a
    /// notification channel.
    pub fn new<I, S>(approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ApprovalRouting {
            approvers: approvers.into_iter().map(Into::into).collect(),
            required_approvals: 1,
            ttl_seconds: 3600,
            channel: None,
        }
    }

    /// Sets the number of approvals needed.
    pub fn approvals(mut self, n: u32) -> Self {
        self.required_approvals = n;
        self
    }

    /// Sets how long the request (and an approval) stays valid.
    pub fn ttl_seconds(mut self, seconds: u32) -> Self {
        self.ttl_seconds = seconds;
        self
    }

    /// Sets the notification channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }
}

/// The routing outcome of [`crate::Policy::approve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalRoute {
    /// Wait for reviewers.
    Route(ApprovalRouting),
    /// Approve at once (e.g. an incident window), with a reason.
    AutoApprove(String),
    /// Reject at once, with a reason.
    AutoReject(String),
}

impl ApprovalRoute {
    /// Wait for `approvers` with the defaults of [`ApprovalRouting::new`].
    pub fn route<I, S>(approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ApprovalRoute::Route(ApprovalRouting::new(approvers))
    }

    /// Approve at once.
    pub fn auto_approve(reason: impl Into<String>) -> Self {
        ApprovalRoute::AutoApprove(reason.into())
    }

    /// Reject at once.
    pub fn auto_reject(reason: impl Into<String>) -> Self {
        ApprovalRoute::AutoReject(reason.into())
    }
}

impl From<ApprovalRouting> for ApprovalRoute {
    fn from(r: ApprovalRouting) -> Self {
        ApprovalRoute::Route(r)
    }
}

/// What a policy says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metadata {
    /// Policy name.
    pub name: String,
    /// Policy version (semver).
    pub version: String,
    /// Hooks it implements; the gateway calls only these.
    pub hooks: Vec<Hook>,
}

/// Settings for a policy that takes none: accepts an empty object (what the gateway
/// sends for a manifest entry without settings), `null` or nothing, and rejects anything
/// else, so a misplaced setting is an error rather than silently ignored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoSettings;

impl<'de> serde::Deserialize<'de> for NoSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = NoSettings;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("no settings (an empty object)")
            }
            fn visit_unit<E: serde::de::Error>(self) -> Result<NoSettings, E> {
                Ok(NoSettings)
            }
            fn visit_none<E: serde::de::Error>(self) -> Result<NoSettings, E> {
                Ok(NoSettings)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<NoSettings, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoSettings),
                    Some(k) => Err(serde::de::Error::custom(format_args!(
                        "unknown setting `{k}`: this policy takes no settings"
                    ))),
                }
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_names_round_trip_and_accept_snake_case() {
        for k in StatementKind::ALL {
            assert_eq!(k.as_str().parse::<StatementKind>(), Ok(*k));
            assert_eq!(
                k.as_str()
                    .replace('-', "_")
                    .to_uppercase()
                    .parse::<StatementKind>(),
                Ok(*k)
            );
        }
        assert_eq!(StatementKind::ALL.len(), 41);
        assert_eq!("server_file".parse(), Ok(CopyTarget::ServerFile));
        let e = "dorp".parse::<StatementKind>().unwrap_err().to_string();
        assert!(
            e.starts_with("unknown statement kind `dorp`, expected one of: select"),
            "{e}"
        );
        assert_eq!(StatementKind::CreateTable.sql_words(), "CREATE TABLE");
        assert_eq!(StatementKind::Drop.to_string(), "drop");
    }

    #[test]
    fn enums_deserialize_from_json_with_a_clear_error() {
        let v: Vec<Access> = serde_json::from_str(r#"["read", "DDL"]"#).unwrap();
        assert_eq!(v, vec![Access::Read, Access::Ddl]);
        let e = serde_json::from_str::<Vec<Access>>(r#"["reed"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown variant `reed`, expected one of `read`, `write`, `ddl`"),
            "{e}"
        );
        assert_eq!(
            serde_json::to_string(&CopyTarget::ServerFile).unwrap(),
            r#""server-file""#
        );
    }

    #[test]
    fn table_patterns() {
        let p = |s: &str| TablePattern::parse(s).unwrap();
        let bare = TableRef::new("secrets", Access::Read);
        let public = TableRef::qualified("public", "secrets", Access::Read);
        let other = TableRef::qualified("hr", "secrets", Access::Read);
        let quoted = TableRef::new("Secrets", Access::Read);
        for t in [&bare, &public] {
            assert!(t.matches(&p("secrets")) && t.matches(&p("public.secrets")));
            assert!(t.matches(&p("*")) && t.matches(&p("SECRETS")) && t.matches(&p("\"secrets\"")));
        }
        assert!(!other.matches(&p("secrets")) && !other.matches(&p("public.secrets")));
        assert!(other.matches(&p("hr.secrets")) && bare.matches(&p("hr.secrets")));
        assert!(!public.matches(&p("hr.secrets")));
        assert!(!quoted.matches(&p("secrets")) && !quoted.matches(&p("Secrets")));
        assert!(quoted.matches(&p("\"Secrets\"")) && quoted.matches(&p("public.\"Secrets\"")));
        let all = TableRef::qualified("public", "*", Access::Ddl);
        assert!(all.matches(&p("secrets")) && !all.matches(&p("hr.x")));
        // Quoted parts may hold dots and quotes; display quotes what needs it.
        let dotted = p("\"My.Schema\".\"a\"\"b\"");
        assert!(dotted.matches(&TableRef::qualified("My.Schema", "a\"b", Access::Read)));
        assert_eq!(dotted.to_string(), "\"My.Schema\".\"a\"\"b\"");
        assert_eq!(p(" Public.Secrets ").to_string(), "public.secrets");
        // Long names are cut as PostgreSQL cuts them.
        let long = "x".repeat(70);
        assert!(p(&long).matches(&TableRef::new("x".repeat(63), Access::Read)));
        for (bad, why) in [
            ("", "an empty name"),
            ("a..b", "an empty name"),
            ("a.b.c", "has more than a schema and a name"),
            ("hr.*", "a partial wildcard"),
            ("\"abc", "unterminated quoted name"),
            ("my table", "a quote or a space"),
            ("\"a\"b", "unexpected \"b\" after a name"),
        ] {
            let e = TablePattern::parse(bad).unwrap_err();
            assert!(e.starts_with(why), "{bad}: {e}");
        }
        let e = serde_json::from_str::<Vec<TablePattern>>(r#"["ok", "a.b.c"]"#).unwrap_err();
        assert!(
            e.to_string().starts_with(r#"table "a.b.c": has more than"#),
            "{e}"
        );
    }

    #[test]
    fn function_patterns() {
        assert!(function_matches("pg_read_file", "pg_read_file"));
        assert!(function_matches("pg_catalog.pg_read_file", "pg_read_file"));
        assert!(function_matches("public.dblink", "DBLINK"));
        assert!(!function_matches("pg_read_file_x", "pg_read_file"));
        assert!(function_matches("dblink", "public.dblink"));
        assert!(function_matches("public.dblink", "public.dblink"));
        assert!(!function_matches("ext.dblink", "public.dblink"));
    }

    #[test]
    fn sqlstates() {
        assert!(Denial::is_valid_sqlstate("42501"));
        assert!(Denial::is_valid_sqlstate("P0001"));
        for bad in [
            "4250", "425011", "42a01", "00000", "01000", "02000", "4250é",
        ] {
            assert!(!Denial::is_valid_sqlstate(bad), "{bad}");
        }
        assert_eq!(Decision::deny("x").denial().unwrap().sqlstate(), "42501");
        assert_eq!(
            Decision::deny_with("P0001", "x")
                .denial()
                .unwrap()
                .sqlstate(),
            "P0001"
        );
    }
}
