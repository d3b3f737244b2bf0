//! Native test harness: run a policy's `configure` and hooks in a plain `cargo test`,
//! through the same glue the component uses, with builders for the values the gateway
//! sends.
//!
//! ```
//! use portcullis_sdk::testing::{RequestBuilder, TestHost};
//! use portcullis_sdk::{Access, Decision, NoSettings, Policy, Request, StatementKind};
//!
//! struct ReadOnly;
//! impl Policy for ReadOnly {
//!     type Settings = NoSettings;
//!     fn configure(_: NoSettings) -> Result<Self, String> {
//!         Ok(ReadOnly)
//!     }
//!     fn authorize(&self, req: &Request) -> Decision {
//!         match req.statement.tables.iter().find(|t| t.access != Access::Read) {
//!             Some(t) => Decision::deny(format!("{} is read-only", t.qualified_name())),
//!             None => Decision::Allow,
//!         }
//!     }
//! }
//!
//! let host = TestHost::<ReadOnly>::with_json("{}").unwrap();
//! let req = RequestBuilder::new("alice")
//!     .groups(["analysts"])
//!     .kind(StatementKind::Delete)
//!     .table("public.orders", Access::Write)
//!     .has_where(false)
//!     .build();
//! assert_eq!(host.authorize(&req), Decision::deny("public.orders is read-only"));
//! ```

use std::cell::RefCell;

use crate::__private::{self as rt, Exported};
use crate::*;

/// Runs a policy natively, the way the gateway runs the component: `configure` with
/// settings JSON, then hooks. Hooks called before a successful configure fail closed,
/// exactly as in the component.
pub struct TestHost<P: Policy> {
    slot: RefCell<Option<P>>,
}

impl<P: Policy> Default for TestHost<P> {
    fn default() -> Self {
        TestHost::new()
    }
}

impl<P: Policy> TestHost<P> {
    /// An unconfigured host.
    pub fn new() -> Self {
        TestHost {
            slot: RefCell::new(None),
        }
    }

    /// A host configured with settings JSON (as the gateway passes them).
    pub fn with_json(settings_json: &str) -> Result<Self, String> {
        let host = TestHost::new();
        host.configure_json(settings_json)?;
        Ok(host)
    }

    /// A host configured with settings values (skips JSON parsing).
    pub fn with_settings(settings: P::Settings) -> Result<Self, String> {
        let host = TestHost::new();
        host.configure(settings)?;
        Ok(host)
    }

    /// Calls `configure` with settings JSON, as the `configure` export does (including
    /// the `invalid settings: ...` error and the empty/`null` defaults).
    pub fn configure_json(&self, settings_json: &str) -> Result<(), String> {
        rt::configure(&self.slot, settings_json)
    }

    /// Calls `configure` with settings values.
    pub fn configure(&self, settings: P::Settings) -> Result<(), String> {
        *self.slot.borrow_mut() = None;
        let policy = P::configure(settings)?;
        *self.slot.borrow_mut() = Some(policy);
        Ok(())
    }

    /// Whether the last configure succeeded.
    pub fn is_configured(&self) -> bool {
        self.slot.borrow().is_some()
    }

    /// Runs `f` on the configured policy value (`None` when unconfigured).
    pub fn with_policy<R>(&self, f: impl FnOnce(Option<&P>) -> R) -> R {
        f(self.slot.borrow().as_ref())
    }

    /// The `authorize` hook.
    pub fn authorize(&self, req: &Request) -> Decision {
        rt::authorize(&self.slot, req)
    }

    /// The `plan-masks` hook.
    pub fn plan_masks(&self, ctx: &ResultContext) -> MaskPlan {
        rt::plan_masks(&self.slot, ctx)
    }

    /// The `mask-rows` hook.
    pub fn mask_rows(&self, ctx: &ResultContext, rows: Vec<Row>) -> Result<Vec<Row>, String> {
        rt::mask_rows(&self.slot, ctx, rows)
    }

    /// The `mask-cells` hook (what the component runs for a packed batch, with the
    /// count check of its export).
    pub fn mask_cells(&self, ctx: &ResultContext, cells: &Cells) -> Result<Cells, String> {
        rt::mask_cells(&self.slot, ctx, cells)
    }

    /// The `mask-cells` export on a batch as it crosses the boundary.
    pub fn mask_batch(&self, ctx: &ResultContext, batch: CellBatch) -> Result<CellBatch, String> {
        rt::mask_batch(&self.slot, ctx, batch)
    }

    /// The `approve-hook` hook.
    pub fn approve(&self, req: &ApprovalRequest) -> ApprovalRoute {
        rt::approve(&self.slot, req)
    }
}

impl<P: Exported> TestHost<P> {
    /// The `metadata` export, as the component reports it (needs the policy to be
    /// exported with [`crate::export_policy!`]).
    pub fn metadata(&self) -> Metadata {
        rt::metadata::<P>()
    }
}

/// Takes the messages logged through [`crate::log`] on this thread so far (native
/// builds only; in a component they go to the gateway).
#[cfg(not(target_arch = "wasm32"))]
pub fn take_logs() -> Vec<(LogLevel, String)> {
    crate::log::native::take()
}

/// Builds a [`Request`] as the gateway would send it.
///
/// Defaults: a person authenticated with SCRAM, in no group, from `127.0.0.1:40000`
/// with application `psql`; database `demo`; a `SELECT` touching nothing; simple
/// protocol, idle transaction, session 1.
///
/// [`sql`](Self::sql) also fills the fingerprint and leading keyword with an
/// approximation of the gateway's (words outside quotes lower-cased, string and number
/// literals as `?`, whitespace collapsed, comments dropped); set
/// [`fingerprint`](Self::fingerprint) to test an exact value. The builder never infers
/// the kind or the tables: set them as the gateway's analysis would.
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    req: Request,
    fingerprint_set: bool,
    keyword_set: bool,
}

impl RequestBuilder {
    /// A request from `user`.
    pub fn new(user: impl Into<String>) -> Self {
        let mut identity = Identity::new(user);
        identity.client_addr = "127.0.0.1:40000".into();
        identity.application_name = "psql".into();
        let mut req = Request::new(identity, "demo", Statement::new(StatementKind::Select));
        req.session_id = 1;
        RequestBuilder {
            req,
            fingerprint_set: false,
            keyword_set: false,
        }
    }

    /// Replaces the user name.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.req.identity.user = user.into();
        self
    }

    /// Replaces the groups.
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.req.identity.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the principal kind.
    pub fn principal(mut self, kind: PrincipalKind) -> Self {
        self.req.identity.kind = kind;
        self
    }

    /// Makes the identity an agent acting for `person`.
    pub fn agent_for(mut self, person: impl Into<String>) -> Self {
        self.req.identity.kind = PrincipalKind::Agent;
        self.req.identity.acting_for = Some(person.into());
        self
    }

    /// Sets the groups of the person the agent acts for (see [`Self::agent_for`]).
    pub fn person_groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.req.identity.acting_for_groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the authentication method.
    pub fn auth_method(mut self, method: AuthMethod) -> Self {
        self.req.identity.auth_method = method;
        self
    }

    /// Sets the client address (`ip:port`).
    pub fn client_addr(mut self, addr: impl Into<String>) -> Self {
        self.req.identity.client_addr = addr.into();
        self
    }

    /// Sets the `application_name`.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.req.identity.application_name = name.into();
        self
    }

    /// Replaces the whole identity.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.req.identity = identity;
        self
    }

    /// Sets the database.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.req.database = db.into();
        self
    }

    /// Sets the statement kind.
    pub fn kind(mut self, kind: StatementKind) -> Self {
        self.req.statement.kind = kind;
        self
    }

    /// Sets the SQL text (and, unless set explicitly, an approximate fingerprint and
    /// the leading keyword).
    pub fn sql(mut self, sql: impl Into<String>) -> Self {
        self.req.statement.sql = sql.into();
        self
    }

    /// Sets the fingerprint exactly.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.req.statement.fingerprint = fingerprint.into();
        self.fingerprint_set = true;
        self
    }

    /// Sets the leading keyword exactly.
    pub fn leading_keyword(mut self, keyword: impl Into<String>) -> Self {
        self.req.statement.leading_keyword = keyword.into();
        self.keyword_set = true;
        self
    }

    /// Adds a table: `"customers"` or `"public.customers"` (split at the first dot;
    /// use [`table_ref`](Self::table_ref) for names containing dots).
    pub fn table(self, name: &str, access: Access) -> Self {
        let t = match name.split_once('.') {
            Some((schema, name)) => TableRef::qualified(schema, name, access),
            None => TableRef::new(name, access),
        };
        self.table_ref(t)
    }

    /// Adds a table reference as is.
    pub fn table_ref(mut self, table: TableRef) -> Self {
        self.req.statement.tables.push(table);
        self
    }

    /// Adds a referenced column (`table.column`).
    pub fn column(mut self, column: impl Into<String>) -> Self {
        self.req.statement.columns.push(column.into());
        self
    }

    /// Adds a called function (as the gateway reports it: lower-cased, schema-qualified
    /// as written).
    pub fn function(mut self, name: impl Into<String>) -> Self {
        self.req.statement.functions.push(name.into());
        self
    }

    /// Sets whether every UPDATE/DELETE has a WHERE clause.
    pub fn has_where(mut self, has_where: bool) -> Self {
        self.req.statement.has_where = Some(has_where);
        self
    }

    /// Makes the statement a COPY with this direction (`to`: data leaves the database)
    /// and target.
    pub fn copy(mut self, to: bool, target: CopyTarget) -> Self {
        self.req.statement.kind = StatementKind::Copy;
        self.req.statement.copy = Some(CopyInfo { to, target });
        self
    }

    /// Makes the statement unparsed, with this parse error.
    pub fn unparsed(mut self, parse_error: impl Into<String>) -> Self {
        self.req.statement.kind = StatementKind::Unparsed;
        self.req.statement.parse_error = Some(parse_error.into());
        self
    }

    /// Marks the statement as number `index` (from 0) of a multi-statement string.
    pub fn multi_statement(mut self, index: u32) -> Self {
        self.req.statement.multi_statement = true;
        self.req.statement.index = index;
        self
    }

    /// Adds a bound parameter (and switches to the extended protocol).
    pub fn param(mut self, value: ParamValue) -> Self {
        self.req.protocol = Protocol::Extended;
        self.req.params.get_or_insert_with(Vec::new).push(value);
        self
    }

    /// Sets the protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.req.protocol = protocol;
        self
    }

    /// Sets the transaction state.
    pub fn transaction(mut self, state: TransactionState) -> Self {
        self.req.transaction = state;
        self
    }

    /// Sets the session id.
    pub fn session_id(mut self, id: u64) -> Self {
        self.req.session_id = id;
        self
    }

    /// The statement so far (e.g. to build a [`ResultContext`]).
    pub fn statement(&self) -> Statement {
        self.clone().build().statement
    }

    /// The request.
    pub fn build(self) -> Request {
        let mut req = self.req;
        if !self.fingerprint_set && req.statement.fingerprint.is_empty() {
            req.statement.fingerprint = approximate_fingerprint(&req.statement.sql);
        }
        if !self.keyword_set && req.statement.leading_keyword.is_empty() {
            req.statement.leading_keyword = req
                .statement
                .fingerprint
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .next()
                .unwrap_or_default()
                .to_string();
        }
        req
    }
}

/// An approximation of the gateway's literal-free fingerprint, for tests: comments
/// dropped, string and number literals replaced by `?`, words outside double quotes
/// lower-cased, whitespace collapsed, a trailing `;` dropped.
pub fn approximate_fingerprint(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    let mut space = false;
    let push = |out: &mut String, s: &str, space: &mut bool| {
        if *space && !out.is_empty() {
            out.push(' ');
        }
        *space = false;
        out.push_str(s);
    };
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => space = true,
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                space = true;
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
                space = true;
            }
            '\'' => {
                while let Some(c) = chars.next() {
                    if c == '\'' {
                        if chars.peek() == Some(&'\'') {
                            chars.next();
                        } else {
                            break;
                        }
                    }
                }
                push(&mut out, "?", &mut space);
            }
            '"' => {
                let mut quoted = String::from('"');
                for c in chars.by_ref() {
                    quoted.push(c);
                    if c == '"' {
                        break;
                    }
                }
                push(&mut out, &quoted, &mut space);
            }
            c if c.is_ascii_digit()
                && !out.ends_with(|p: char| p.is_alphanumeric() || p == '_') =>
            {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
                {
                    chars.next();
                }
                push(&mut out, "?", &mut space);
            }
            c => {
                let mut buf = [0u8; 4];
                let lower = c.to_ascii_lowercase();
                push(&mut out, lower.encode_utf8(&mut buf), &mut space);
            }
        }
    }
    while out.ends_with(';') || out.ends_with(' ') {
        out.pop();
    }
    out
}

/// Builds a [`ResultContext`]: who receives which columns.
///
/// Defaults: the identity of [`RequestBuilder::new`], database `demo`, no statement,
/// no columns. Column indexes are assigned in the order added.
#[derive(Debug, Clone)]
pub struct ResultContextBuilder {
    ctx: ResultContext,
}

impl ResultContextBuilder {
    /// A result for `user`.
    pub fn new(user: impl Into<String>) -> Self {
        let identity = RequestBuilder::new(user).build().identity;
        ResultContextBuilder {
            ctx: ResultContext::new(identity, "demo", Vec::new()),
        }
    }

    /// Replaces the groups.
    pub fn groups<I, S>(mut self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.ctx.identity.groups = groups.into_iter().map(Into::into).collect();
        self
    }

    /// Replaces the whole identity.
    pub fn identity(mut self, identity: Identity) -> Self {
        self.ctx.identity = identity;
        self
    }

    /// Sets the database.
    pub fn database(mut self, db: impl Into<String>) -> Self {
        self.ctx.database = db.into();
        self
    }

    /// Sets the statement producing the rows.
    pub fn statement(mut self, statement: Statement) -> Self {
        self.ctx.statement = Some(statement);
        self
    }

    /// Adds a column with the given provenance (text format).
    pub fn column(
        mut self,
        name: impl Into<String>,
        type_oid: u32,
        provenance: Provenance,
    ) -> Self {
        let index = self.ctx.columns.len() as u32;
        self.ctx
            .columns
            .push(ResultColumn::new(index, name, type_oid, provenance));
        self
    }

    /// Adds a plain `text` column (OID 25) read directly from `schema.table.column`.
    pub fn direct_column(self, schema: &str, table: &str, column: &str) -> Self {
        self.column(
            column.to_string(),
            25,
            Provenance::Direct(ColumnSource::new(schema, table, column)),
        )
    }

    /// The context.
    pub fn build(self) -> ResultContext {
        self.ctx
    }
}

/// Builds an [`ApprovalRequest`] for a request `authorize` held.
#[derive(Debug, Clone)]
pub struct ApprovalRequestBuilder {
    req: ApprovalRequest,
}

impl ApprovalRequestBuilder {
    /// An approval request with id `req-1`, made at time 0.
    pub fn new(request: Request, reason: impl Into<String>) -> Self {
        ApprovalRequestBuilder {
            req: ApprovalRequest::new("req-1", request, reason, Vec::new()),
        }
    }

    /// Sets the id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.req.id = id.into();
        self
    }

    /// Sets the approvers `authorize` suggested.
    pub fn approvers<I, S>(mut self, approvers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.req.approvers = approvers.into_iter().map(Into::into).collect();
        self
    }

    /// Sets when it was made (milliseconds since the Unix epoch).
    pub fn requested_at_ms(mut self, ms: u64) -> Self {
        self.req.requested_at_ms = ms;
        self
    }

    /// The approval request.
    pub fn build(self) -> ApprovalRequest {
        self.req
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_approximation() {
        assert_eq!(
            approximate_fingerprint("  SET  ROLE /* c */ 'Admin';"),
            "set role ?"
        );
        assert_eq!(
            approximate_fingerprint("select \"Q\", x1 from t where a = 42 -- x\n"),
            "select \"Q\", x1 from t where a = ?"
        );
        assert_eq!(approximate_fingerprint("select 'it''s'"), "select ?");
    }

    #[test]
    fn builder_defaults_and_keyword() {
        let r = RequestBuilder::new("alice")
            .sql("DROP TABLE x")
            .kind(StatementKind::Drop)
            .table("public.x", Access::Ddl)
            .build();
        assert_eq!(r.statement.fingerprint, "drop table x");
        assert_eq!(r.statement.leading_keyword, "drop");
        assert_eq!(r.statement.tables[0].schema.as_deref(), Some("public"));
        assert_eq!(r.database, "demo");
    }
}
