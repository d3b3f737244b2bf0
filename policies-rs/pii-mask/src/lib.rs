//! # pii-mask — the standard Portcullis masking policy
//!
//! Masks sensitive columns in every result that leaves the gateway, by settings:
//! which columns are sensitive and how each is masked, who is exempt (sees values
//! whole), who sees deterministic pseudonyms instead (so joins and GROUP BY still
//! work). It also denies, in `authorize`, what would let a masked identity get around
//! the masks: conditions comparing a masked column with a literal (inference, one
//! character at a time), optionally with another column (a join against a table of
//! guesses), `COPY ... TO` of a sensitive table, and statements copying
//! sensitive columns into other tables, and DDL on tables holding sensitive columns
//! (a renamed column or a table moved to another schema would escape the settings).
//! A request `columns` entry `opaque:NAME` (a call of a function whose body the gateway
//! cannot see, `opaque:f()`, or a view calling one, `opaque:s.v`) counts as a
//! sensitive read for COPY TO, for the exfiltrating functions and for copies into
//! tables; in a condition (`predicate:opaque:f()`: `WHERE lookup_ssn(id) LIKE '1%'`)
//! or an ordering (`ordered:opaque:f()`) it counts as a masked column there.
//! It implements the `authorize` and `mask` hooks.
//!
//! The masks themselves run natively in the gateway (a plan per result set); only
//! `custom` columns come back to the policy, in packed batches (`mask_cells`, which
//! writes every masked cell into one buffer; `mask_rows` does the same for tests).
//!
//! ## Settings
//!
//! ```toml
//! exempt_groups = ["pii-readers"]   # see plain values (also exempt_users)
//! pseudonym_groups = ["pipelines"]  # see `pseudonym` for every sensitive value
//!                                   # (also pseudonym_users)
//! derived_mask = "redact(***)"      # for values computed from a sensitive column
//!                                   # and for unknown provenance over a sensitive
//!                                   # table (default redact(***): NULL for types
//!                                   # that cannot hold it)
//! deny_literal_predicates = true    # default true
//! deny_ordering = false             # default false: ORDER BY / GROUP BY of a masked
//!                                   # column (the row order reveals how its values
//!                                   # sort; a pseudonym still groups); true denies it
//! deny_column_comparisons = false   # default false: a WHERE / JOIN condition comparing
//!                                   # a masked column with another column or a
//!                                   # subquery (`JOIN guesses g ON g.ssn = c.ssn`,
//!                                   # `USING (ssn)`, `NATURAL JOIN`, `IN (SELECT ...)`)
//!                                   # tells whether values are equal, so a join with
//!                                   # a table of guesses confirms them; true denies it
//!                                   # for every non-exempt identity. Off by default:
//!                                   # pseudonym identities (pipelines) rely on such
//!                                   # joins, and masked ones join on keys far more
//!                                   # often than on masked columns
//! deny_copy_out = true              # default true
//! deny_tables = ["pg_stats", ...]   # default: the statistics catalogs and views
//!                                   # (sampled values); masked identities may not read
//! deny_functions_on_sensitive = ["set_config", "pg_notify", ...]  # default: functions
//!                                   # that store or send a value elsewhere, denied in
//!                                   # statements reading a sensitive column
//! deny_code_definitions = true      # default true: CREATE / ALTER of functions,
//!                                   # procedures, aggregates, operators, casts,
//!                                   # triggers, rules, extensions, languages,
//!                                   # transforms (code that could read masked
//!                                   # columns unseen)
//! deny_unparsed = true              # default true: DO blocks, unknown syntax
//!                                   # (a DO block could RAISE a value; the gateway
//!                                   # also withholds the messages of every error
//!                                   # and notice a masked identity gets)
//! deny_copies_into_tables = true    # default true: INSERT ... SELECT, CREATE TABLE AS,
//!                                   # SELECT INTO, CREATE VIEW, UPDATE ... SET whose
//!                                   # values come from a sensitive column (MERGE: any
//!                                   # sensitive column read)
//!
//! [columns]                         # "table.column" or "schema.table.column" = mask
//! "customers.email" = "email"
//! "customers.ssn" = "partial(last 4)"
//!
//! [name_patterns]                   # optional: columns nobody listed, by name glob
//! "*ssn*" = "partial(last 4)"
//!
//! detect_values = ["email", "card", "ssn"]   # optional: scan the values of text
//!                                   # columns nobody listed (not constants) and mask
//!                                   # what looks like an email (keeps the domain), a
//!                                   # Luhn-valid card number or an SSN (keep the last
//!                                   # 4 digits), anywhere in the value; runs as
//!                                   # `mask-rows` batches, so it costs per row
//! ```
//!
//! Masks: `null`, `redact` / `redact(TEXT)`, `partial(first N)`, `partial(last N)`,
//! `partial(first N, last M)`, `email`, `pseudonym`, `digits(N)`, `date(year)`,
//! `date(month)`, `round(STEP)`, `custom` (this policy's `mask-rows`: keeps the first
//! letter of each word).
//!
//! ## Provenance
//!
//! - `direct(t.c)`: the column's mask if `t.c` is listed (or matches a name pattern);
//! - `derived(...)`: `derived_mask` if any source is sensitive (its own mask is not
//!   safe on a computed value: `partial(last 4)` of `substr(ssn, 1, 3)` would show all
//!   of it);
//! - `unknown(tables)`: `derived_mask` if any table holds a sensitive column, or if
//!   the gateway could name no table (fail closed; it names none for a statement
//!   calling a user-defined function, or reading a view that calls one);
//! - `constant`: never masked.

mod detect;
mod settings;
#[cfg(test)]
mod tests;

use portcullis_sdk::{
    CellMask, CellWriter, Cells, Decision, Identity, MaskFunction, MaskPlan, Policy, Provenance,
    Request, ResultColumn, ResultContext, Row, Statement, StatementKind,
};

pub use settings::{MaskSpec, Settings};

/// The policy.
pub struct PiiMask {
    detector: detect::Detector,
    settings: Settings,
    columns: Vec<(ColumnName, MaskSpec)>,
    patterns: Vec<(String, MaskSpec)>,
    derived: MaskSpec,
}

/// `schema.table.column` with an optional schema.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnName {
    schema: Option<String>,
    table: String,
    column: String,
}

impl ColumnName {
    fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('.').map(str::trim).collect();
        match parts.as_slice() {
            [t, c] if !t.is_empty() && !c.is_empty() => Ok(ColumnName {
                schema: None,
                table: t.to_string(),
                column: c.to_string(),
            }),
            [s, t, c] if !s.is_empty() && !t.is_empty() && !c.is_empty() => Ok(ColumnName {
                schema: Some(s.to_string()),
                table: t.to_string(),
                column: c.to_string(),
            }),
            _ => Err(format!(
                "column \"{s}\": expected table.column or schema.table.column"
            )),
        }
    }

    /// `schema` as the gateway reports it (`None`/empty: not known).
    fn matches(&self, schema: Option<&str>, table: &str, column: &str) -> bool {
        self.table == table
            && (self.column == column || column == "*")
            && match (&self.schema, schema) {
                (None, Some(s)) => s.is_empty() || s == "public",
                (None, None) => true,
                (Some(mine), Some(s)) => s.is_empty() || mine == s,
                (Some(_), None) => true,
            }
    }
}

/// How a result column is seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audience {
    Plain,
    Masked,
    Pseudonyms,
}

fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, p) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(p);
        } else {
            match rest.find(p) {
                Some(at) => rest = &rest[at + p.len()..],
                None => return false,
            }
        }
    }
    true
}

impl PiiMask {
    fn audience(&self, id: &Identity) -> Audience {
        let s = &self.settings;
        if s.exempt_users.contains(&id.user) || id.in_any_group(&s.exempt_groups) {
            Audience::Plain
        } else if s.pseudonym_users.contains(&id.user) || id.in_any_group(&s.pseudonym_groups) {
            Audience::Pseudonyms
        } else {
            Audience::Masked
        }
    }

    /// The mask of a listed (or pattern-matched) column.
    fn column_mask(&self, schema: Option<&str>, table: &str, column: &str) -> Option<&MaskSpec> {
        if let Some((_, m)) = self
            .columns
            .iter()
            .find(|(n, _)| n.matches(schema, table, column))
        {
            return Some(m);
        }
        if column == "*" {
            return None;
        }
        self.patterns
            .iter()
            .find(|(p, _)| glob(p, column))
            .map(|(_, m)| m)
    }

    fn table_is_sensitive(&self, schema: Option<&str>, table: &str) -> bool {
        self.columns
            .iter()
            .any(|(n, _)| n.matches(schema, table, "*"))
    }

    /// A `columns` entry of a request (`t.c`, `s.t.c`, `t.*`) names a sensitive column.
    fn entry_is_sensitive(&self, entry: &str) -> bool {
        let parts: Vec<&str> = entry.split('.').collect();
        let (schema, table, column) = match parts.as_slice() {
            [t, c] => (None, *t, *c),
            [s, t, c] => (Some(*s), *t, *c),
            _ => return false,
        };
        if column == "*" {
            self.table_is_sensitive(schema, table)
        } else {
            self.column_mask(schema, table, column).is_some()
        }
    }

    /// The first `columns` entry with `prefix` (`predicate:`, ...) that names a
    /// sensitive column or an opaque call or view (`opaque:f()`: what it reads is
    /// unknown), without the prefix.
    fn sensitive_entry<'a>(&self, st: &'a Statement, prefix: &str) -> Option<&'a str> {
        st.columns
            .iter()
            .filter_map(|c| c.strip_prefix(prefix))
            .find(|c| c.starts_with("opaque:") || self.entry_is_sensitive(c))
    }

    fn plan_column(&self, col: &ResultColumn) -> Option<&MaskSpec> {
        match &col.provenance {
            Provenance::Constant => None,
            Provenance::Direct(s) => self.column_mask(Some(&s.schema), &s.table, &s.column),
            Provenance::Derived(sources) => sources
                .iter()
                .any(|s| {
                    self.column_mask(Some(&s.schema), &s.table, &s.column)
                        .is_some()
                })
                .then_some(&self.derived),
            Provenance::Unknown(tables) => (tables.is_empty()
                || tables
                    .iter()
                    .any(|t| self.table_is_sensitive(t.schema.as_deref(), &t.name)))
            .then_some(&self.derived),
        }
    }
}

/// The words naming code the gateway cannot see into, after `CREATE [OR REPLACE]` or
/// `ALTER` (`CONSTRAINT`/`EVENT` triggers, `TRUSTED`/`PROCEDURAL` languages skipped).
const CODE_OBJECTS: &[&str] = &[
    "function",
    "procedure",
    "routine",
    "aggregate",
    "operator",
    "cast",
    "trigger",
    "rule",
    "extension",
    "language",
    "transform",
];

/// `Some("CREATE FUNCTION")` (and the like) when the statement defines or changes code.
fn defines_code(fingerprint: &str) -> Option<String> {
    let lower = fingerprint.to_ascii_lowercase();
    let mut words = lower.split_whitespace().peekable();
    let verb = words.next()?;
    if verb != "create" && verb != "alter" {
        return None;
    }
    let mut object = words.next()?;
    if object == "or" {
        words.next(); // replace
        object = words.next()?;
    }
    if matches!(object, "constraint" | "event" | "trusted" | "procedural") {
        object = words.next()?;
    }
    if matches!(object, "trusted" | "procedural") {
        object = words.next()?;
    }
    CODE_OBJECTS
        .contains(&object)
        .then(|| format!("{} {}", verb.to_uppercase(), object.to_uppercase()))
}

/// What a `custom` column of the plan is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Custom {
    /// The settings asked for `custom`: initials.
    Initials,
    /// An unlisted text column scanned for value patterns.
    Detect,
}

/// The `custom` mask: the first letter of each word, then `.`.
fn initials(s: &str) -> String {
    let mut out = String::new();
    initials_into(s, &mut out);
    out
}

/// [`initials`], appended to `out` (no allocation when `out` has room).
fn initials_into(s: &str, out: &mut String) {
    for (i, w) in s.split_whitespace().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.extend(w.chars().next());
        out.push('.');
    }
}

impl PiiMask {
    /// The mask of one result column for `audience`, and what a `custom` one is for.
    fn planned(&self, audience: Audience, col: &ResultColumn) -> Option<(MaskFunction, Custom)> {
        if audience == Audience::Plain {
            return None;
        }
        if let Some(spec) = self.plan_column(col) {
            let f = match audience {
                Audience::Pseudonyms => MaskFunction::Pseudonym,
                _ => spec.function(),
            };
            return Some((f, Custom::Initials));
        }
        (self.detector.enabled()
            && !matches!(col.provenance, Provenance::Constant)
            && detect::TEXT_TYPES.contains(&col.type_oid))
        .then_some((MaskFunction::Custom, Custom::Detect))
    }
}

impl PiiMask {
    /// What each custom column of the plan (in plan order) is for.
    fn custom_roles(&self, ctx: &ResultContext) -> Vec<Custom> {
        let audience = self.audience(&ctx.identity);
        ctx.columns
            .iter()
            .filter_map(|c| match self.planned(audience, c) {
                Some((MaskFunction::Custom, role)) => Some(role),
                _ => None,
            })
            .collect()
    }
}

impl Policy for PiiMask {
    type Settings = Settings;

    fn configure(settings: Settings) -> Result<Self, String> {
        let mut columns = Vec::new();
        for (name, spec) in &settings.columns {
            let n = ColumnName::parse(name)?;
            let m = MaskSpec::parse(spec).map_err(|e| format!("columns.\"{name}\": {e}"))?;
            columns.push((n, m));
        }
        let mut patterns = Vec::new();
        for (p, spec) in &settings.name_patterns {
            let m = MaskSpec::parse(spec).map_err(|e| format!("name_patterns.\"{p}\": {e}"))?;
            patterns.push((p.clone(), m));
        }
        let derived =
            MaskSpec::parse(&settings.derived_mask).map_err(|e| format!("derived_mask: {e}"))?;
        if matches!(
            derived.function(),
            MaskFunction::Partial(_) | MaskFunction::Email
        ) {
            return Err("derived_mask: must hide the whole value (null, redact, pseudonym, digits(0), custom)".into());
        }
        let mut detector = detect::Detector::default();
        for d in &settings.detect_values {
            match d.as_str() {
                "email" => detector.email = true,
                "card" => detector.card = true,
                "ssn" => detector.ssn = true,
                other => {
                    return Err(format!(
                        "detect_values: unknown pattern \"{other}\" (email, card, ssn)"
                    ));
                }
            }
        }
        Ok(PiiMask {
            detector,
            settings,
            columns,
            patterns,
            derived,
        })
    }

    fn authorize(&self, req: &Request) -> Decision {
        if self.audience(&req.identity) == Audience::Plain {
            return Decision::Allow;
        }
        let st = &req.statement;
        let s = &self.settings;
        if s.deny_unparsed && matches!(st.kind, StatementKind::Unparsed | StatementKind::Do) {
            return Decision::deny(format!(
                "statements the gateway cannot analyse are not allowed for {}: it sees masked values",
                req.identity.user
            ));
        }
        if s.deny_code_definitions
            && let Some(what) = defines_code(&st.fingerprint)
        {
            return Decision::deny(format!(
                "{what} is not allowed for {}: the gateway cannot see what such code reads, and it sees masked values",
                req.identity.user
            ));
        }
        if let Some(t) = st.tables.iter().find(|t| {
            t.access == portcullis_sdk::Access::Ddl
                && (t.name == "*" || self.table_is_sensitive(t.schema.as_deref(), &t.name))
        }) {
            // Renaming a column, moving the table to another schema, ... would change
            // what the settings match.
            return Decision::deny(format!(
                "{} of {} is not allowed for {}: it holds masked columns",
                st.kind.sql_words(),
                t.qualified_name(),
                req.identity.user
            ));
        }
        if let Some(t) = st.tables.iter().find(|t| s.deny_tables.contains(&t.name)) {
            return Decision::deny(format!(
                "reading {} is not allowed for {}: it exposes sampled values of masked columns",
                t.qualified_name(),
                req.identity.user
            ));
        }
        // Inference controls: how a masked column is used, by `columns` prefix.
        let controls = [
            (
                s.deny_literal_predicates,
                "predicate:",
                "a condition comparing it with a literal or parameter would reveal it",
                "a condition on",
            ),
            (
                s.deny_ordering,
                "ordered:",
                "sorting or grouping by it would reveal the order of its values",
                "sorting or grouping by",
            ),
            (
                s.deny_column_comparisons,
                "compared:",
                "a condition comparing it with another column or a subquery (JOIN ... ON, USING, IN (SELECT ...)) would reveal which values match",
                "a condition on",
            ),
        ];
        for (on, prefix, why, use_of) in controls {
            let Some(c) = self.sensitive_entry(st, prefix).filter(|_| on) else {
                continue;
            };
            return Decision::deny(match c.strip_prefix("opaque:") {
                Some(f) => format!(
                    "{use_of} {f} is not allowed for {}: the gateway cannot see what it reads, so it could test a masked value",
                    req.identity.user
                ),
                None => format!("{c} is masked for {}: {why}", req.identity.user),
            });
        }
        let sensitive_read = || {
            st.columns
                .iter()
                .filter(|c| !c.contains(':'))
                .find(|c| self.entry_is_sensitive(c))
        };
        let sensitive_written = || self.sensitive_entry(st, "written:");
        // A function whose body the gateway cannot see (or a view calling one): what
        // it reads is unknown, so it counts as sensitive.
        let opaque = st.columns.iter().find_map(|c| c.strip_prefix("opaque:"));
        if s.deny_copy_out
            && st.kind == StatementKind::Copy
            && st.copy.as_ref().is_some_and(|c| c.to)
        {
            let table = st
                .tables
                .iter()
                .find(|t| self.table_is_sensitive(t.schema.as_deref(), &t.name));
            if let Some(t) = table {
                return Decision::deny(format!(
                    "COPY of {} is not allowed for {}: it holds masked columns",
                    t.qualified_name(),
                    req.identity.user
                ));
            }
            if let Some(c) = sensitive_read() {
                return Decision::deny(format!(
                    "COPY of {c} is not allowed for {}: it is masked",
                    req.identity.user
                ));
            }
            if let Some(f) = opaque {
                return Decision::deny(format!(
                    "COPY of a query reading {f} is not allowed for {}: rows are not masked in COPY and the gateway cannot see what it reads",
                    req.identity.user
                ));
            }
            if st.fingerprint.starts_with("copy (") && st.columns.iter().any(|c| c.ends_with(".*"))
            {
                return Decision::deny(format!(
                    "COPY of a query over whole rows is not allowed for {}: rows are not masked in COPY",
                    req.identity.user
                ));
            }
        }
        if let Some(f) = s
            .deny_functions_on_sensitive
            .iter()
            .find(|f| st.calls_function(f))
            && let Some(c) = st
                .columns
                .iter()
                .map(|c| c.split_once(':').map_or(c.as_str(), |(_, n)| n))
                .find(|c| self.entry_is_sensitive(c))
                .or(opaque)
        {
            return Decision::deny(format!(
                "{f}() in a statement reading {c} is not allowed for {}: it could carry a masked value elsewhere",
                req.identity.user
            ));
        }
        let copied = match st.kind {
            // MERGE's data flow is not analysed: any sensitive column read counts.
            StatementKind::Merge => sensitive_read().map(String::as_str).or(opaque),
            // An opaque call's value may be anything; in a statement storing data it
            // counts as copied.
            StatementKind::Insert
            | StatementKind::Update
            | StatementKind::CreateTable
            | StatementKind::CreateView
            | StatementKind::CreateOther => sensitive_written().or(opaque),
            StatementKind::Select if st.fingerprint.contains(" into ") => {
                sensitive_written().or(opaque)
            }
            _ => sensitive_written(),
        };
        if s.deny_copies_into_tables
            && let Some(c) = copied
        {
            return Decision::deny(format!(
                "{} reading {c} is not allowed for {}: it would copy a masked column",
                st.kind.sql_words(),
                req.identity.user
            ));
        }
        Decision::Allow
    }

    fn plan_masks(&self, ctx: &ResultContext) -> MaskPlan {
        let audience = self.audience(&ctx.identity);
        if audience == Audience::Plain {
            return MaskPlan::none();
        }
        let mut plan = MaskPlan::none();
        for col in &ctx.columns {
            if let Some((f, _)) = self.planned(audience, col) {
                plan = plan.mask(col.index, f);
            }
        }
        plan
    }

    fn mask_cells(
        &self,
        ctx: &ResultContext,
        cells: &Cells,
        out: &mut CellWriter,
    ) -> Result<(), String> {
        let roles = self.custom_roles(ctx);
        cells.mask_each(out, |column, value, buf| {
            match roles.get(column) {
                Some(Custom::Detect) => {
                    let masked = self.detector.mask(value);
                    if masked == value {
                        return Ok(CellMask::Unchanged);
                    }
                    buf.push_str(&masked);
                }
                _ => initials_into(value, buf),
            }
            Ok(CellMask::Value)
        })
    }

    fn mask_rows(&self, ctx: &ResultContext, rows: Vec<Row>) -> Result<Vec<Row>, String> {
        let roles = self.custom_roles(ctx);
        Ok(rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.map(|s| match roles.get(i) {
                            Some(Custom::Detect) => self.detector.mask(&s),
                            _ => initials(&s),
                        })
                    })
                    .collect()
            })
            .collect())
    }
}

portcullis_sdk::export_policy!(PiiMask, hooks: [authorize, mask]);
