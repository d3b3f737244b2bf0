//! Settings and mask specifications.

use std::collections::BTreeMap;

use portcullis_sdk::{DatePart, MaskFunction};
use serde::Deserialize;

/// The policy's settings (see the crate documentation).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Sensitive columns: `table.column` or `schema.table.column` → mask.
    pub columns: BTreeMap<String, String>,
    /// Column-name globs (`*ssn*`) → mask, for columns nobody listed.
    pub name_patterns: BTreeMap<String, String>,
    /// Groups that see plain values.
    pub exempt_groups: Vec<String>,
    /// Users that see plain values.
    pub exempt_users: Vec<String>,
    /// Groups that see pseudonyms instead of masks.
    pub pseudonym_groups: Vec<String>,
    /// Users that see pseudonyms instead of masks.
    pub pseudonym_users: Vec<String>,
    /// Mask for values computed from sensitive columns and for unknown provenance.
    pub derived_mask: String,
    /// Deny conditions comparing a masked column with a literal.
    pub deny_literal_predicates: bool,
    /// Deny ORDER BY / GROUP BY of a masked column.
    pub deny_ordering: bool,
    /// Deny conditions comparing a masked column with another column or a subquery
    /// (`JOIN s ON s.ssn = c.ssn`, `USING (ssn)`, `NATURAL JOIN`, `IN (SELECT ...)`).
    pub deny_column_comparisons: bool,
    /// Deny `COPY ... TO` of sensitive tables or columns.
    pub deny_copy_out: bool,
    /// Deny statements copying sensitive columns into tables or views.
    pub deny_copies_into_tables: bool,
    /// Relations masked identities may not read at all (by name, any schema): by
    /// default the statistics catalogs and views, which hold sampled column values.
    pub deny_tables: Vec<String>,
    /// Functions that store or send a value elsewhere (a session setting, a
    /// notification, a large object, another server): denied for masked identities
    /// when the statement reads a sensitive column.
    pub deny_functions_on_sensitive: Vec<String>,
    /// Deny statements the gateway could not analyse (`DO` blocks, unknown syntax) to
    /// masked identities: nobody can tell what they read or where it goes.
    pub deny_unparsed: bool,
    /// Value patterns to detect in text columns nobody listed (`email`, `card`,
    /// `ssn`).
    pub detect_values: Vec<String>,
    /// Deny masked identities statements that define or change code the gateway
    /// cannot see into (functions, procedures, aggregates, operators, casts,
    /// triggers, rules, extensions, languages, transforms): such code could read
    /// masked columns unseen, store them elsewhere or raise them.
    pub deny_code_definitions: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            columns: BTreeMap::new(),
            name_patterns: BTreeMap::new(),
            exempt_groups: Vec::new(),
            exempt_users: Vec::new(),
            pseudonym_groups: Vec::new(),
            pseudonym_users: Vec::new(),
            derived_mask: "redact(***)".into(),
            deny_literal_predicates: true,
            deny_ordering: false,
            deny_column_comparisons: false,
            deny_copy_out: true,
            deny_copies_into_tables: true,
            deny_tables: [
                "pg_stats",
                "pg_stats_ext",
                "pg_stats_ext_exprs",
                "pg_statistic",
                "pg_statistic_ext_data",
            ]
            .map(String::from)
            .to_vec(),
            deny_functions_on_sensitive: [
                "set_config",
                "pg_notify",
                "lo_from_bytea",
                "lo_put",
                "dblink",
                "dblink_exec",
                "pg_logical_emit_message",
            ]
            .map(String::from)
            .to_vec(),
            deny_unparsed: true,
            detect_values: Vec::new(),
            deny_code_definitions: true,
        }
    }
}

/// A parsed mask specification.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskSpec(MaskFunction);

impl MaskSpec {
    /// The mask function it stands for.
    pub fn function(&self) -> MaskFunction {
        self.0.clone()
    }

    /// Parses `email`, `partial(last 4)`, `digits(4)`, `redact(***)`, ...
    pub fn parse(spec: &str) -> Result<MaskSpec, String> {
        let spec = spec.trim();
        let (name, arg) = match spec.find('(') {
            Some(open) => {
                let Some(inner) = spec[open + 1..].strip_suffix(')') else {
                    return Err(format!("\"{spec}\": missing `)`"));
                };
                (spec[..open].trim(), Some(inner.trim()))
            }
            None => (spec, None),
        };
        let num = |a: Option<&str>| -> Result<u32, String> {
            a.ok_or_else(|| format!("\"{spec}\": needs a number"))?
                .parse::<u32>()
                .map_err(|_| format!("\"{spec}\": not a number"))
        };
        let f = match name {
            "null" => MaskFunction::Null,
            "redact" => MaskFunction::Redact(arg.unwrap_or("***").to_owned()),
            "email" => MaskFunction::Email,
            "pseudonym" => MaskFunction::Pseudonym,
            "custom" => MaskFunction::Custom,
            "digits" => MaskFunction::Digits(num(arg)?),
            "round" => {
                let step: f64 = arg
                    .ok_or_else(|| format!("\"{spec}\": needs a step"))?
                    .parse()
                    .map_err(|_| format!("\"{spec}\": not a number"))?;
                if !(step.is_finite() && step > 0.0) {
                    return Err(format!("\"{spec}\": the step must be positive"));
                }
                MaskFunction::Round(step)
            }
            "date" => match arg {
                Some("year") => MaskFunction::Date(DatePart::Year),
                Some("month") => MaskFunction::Date(DatePart::Month),
                _ => return Err(format!("\"{spec}\": date(year) or date(month)")),
            },
            "partial" => {
                let (mut first, mut last) = (0u32, 0u32);
                let arg = arg.ok_or_else(|| format!("\"{spec}\": partial(first N, last M)"))?;
                for part in arg.split(',') {
                    let mut w = part.split_whitespace();
                    match (w.next(), w.next(), w.next()) {
                        (Some("first"), Some(n), None) => first = num(Some(n))?,
                        (Some("last"), Some(n), None) => last = num(Some(n))?,
                        _ => return Err(format!("\"{spec}\": partial(first N, last M)")),
                    }
                }
                MaskFunction::partial(first, last, "*")
            }
            _ => return Err(format!("unknown mask \"{spec}\"")),
        };
        Ok(MaskSpec(f))
    }
}
