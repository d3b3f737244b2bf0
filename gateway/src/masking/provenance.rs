//! Provenance of result columns: from the RowDescription's table OID and attribute
//! number through the catalog, and from the statement's lineage for expressions.
//!
//! Fail closed: a relation the catalog does not know, a view whose definition does
//! not parse, or an expression whose lineage cannot be aligned with the result yields
//! `unknown`; with no statement tables to name (FETCH from a cursor the session did
//! not declare, EXECUTE, a catalog miss) the list is empty, which the standard
//! masking policy treats as sensitive.
//!
//! Functions: a statement that calls a function whose body the gateway cannot see (a
//! user-defined one in any language, `SECURITY DEFINER` or not, scalar or in `FROM`;
//! a name shared with one, whatever `search_path`; a name the catalog does not know)
//! may compute any column from any data, so every column it computes (no table OID in
//! the RowDescription) is `unknown` with no tables: sensitive. So is a column read
//! through a view whose definition calls one (its lineage is unknown). Columns
//! PostgreSQL itself names by table OID keep their provenance.

use portcullis_sql::{Access, OutputItem, RelName, Source, StatementSummary};
use portcullis_wire::backend::RowDescription;

use super::catalog::DbCatalog;
use crate::policy::bindings::portcullis::policy::types as wit;

/// How deep view lineage is followed (views over views).
const MAX_VIEW_DEPTH: usize = 8;

/// The result columns with provenance. `missed` is set when the catalog did not know
/// a relation named by the RowDescription (the caller refreshes it).
pub fn result_columns(
    fields: &RowDescription,
    statement: Option<&StatementSummary>,
    cat: &DbCatalog,
    missed: &mut bool,
) -> Vec<wit::ResultColumn> {
    let opaque = statement.is_some_and(|s| calls_opaque(s, cat, missed));
    let aligned = statement
        .filter(|_| !opaque)
        .and_then(|s| s.lineage.output.as_ref())
        .and_then(|items| expand(items, cat))
        .filter(|v| v.len() == fields.fields.len());
    let tables: Vec<wit::TableRef> = statement
        .filter(|_| !opaque)
        .map(|s| {
            s.tables
                .iter()
                .map(|t| wit::TableRef {
                    schema: t.schema.clone(),
                    name: t.name.clone(),
                    access: match t.access {
                        Access::Read => wit::Access::Read,
                        Access::Write => wit::Access::Write,
                        Access::Ddl => wit::Access::Ddl,
                    },
                })
                .collect()
        })
        .unwrap_or_default();
    fields
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let provenance = if f.table_oid != 0 {
                match cat.relation(f.table_oid) {
                    None => {
                        *missed = true;
                        wit::Provenance::Unknown(Vec::new())
                    }
                    Some(rel) => match rel.column(f.column_attr) {
                        None => {
                            *missed = true;
                            wit::Provenance::Unknown(Vec::new())
                        }
                        Some(col) => {
                            let me = wit::ColumnSource {
                                schema: rel.schema.clone(),
                                table: rel.name.clone(),
                                column: col.to_owned(),
                            };
                            match &rel.view {
                                None => wit::Provenance::Direct(me),
                                Some(_) => {
                                    let src = vec![Source::Column {
                                        table: RelName {
                                            schema: Some(rel.schema.clone()),
                                            name: rel.name.clone(),
                                        },
                                        column: col.to_owned(),
                                    }];
                                    let mut blind = false;
                                    match resolve(&src, cat, &mut blind) {
                                        Some(v) => wit::Provenance::Derived(v),
                                        None => wit::Provenance::Unknown(Vec::new()),
                                    }
                                }
                            }
                        }
                    },
                }
            } else {
                let mut blind = false;
                match aligned.as_ref().map(|a| &a[i]) {
                    Some(sources) => match resolve(sources, cat, &mut blind) {
                        Some(v) if v.is_empty() => wit::Provenance::Constant,
                        Some(v) => wit::Provenance::Derived(v),
                        // Through a view of unknown lineage the statement's tables
                        // do not name what was read.
                        None if blind => wit::Provenance::Unknown(Vec::new()),
                        None => wit::Provenance::Unknown(tables.clone()),
                    },
                    None => wit::Provenance::Unknown(tables.clone()),
                }
            };
            wit::ResultColumn {
                index: i as u32,
                name: f.name.clone(),
                type_oid: f.type_oid,
                format: if f.format == 1 {
                    wit::ValueFormat::Binary
                } else {
                    wit::ValueFormat::Text
                },
                provenance,
            }
        })
        .collect()
}

/// Whether `s` calls a function the gateway cannot see into; `missed` is set when it
/// calls one the catalog does not know (the caller refreshes it).
pub fn calls_opaque(s: &StatementSummary, cat: &DbCatalog, missed: &mut bool) -> bool {
    let mut opaque = false;
    for f in &s.functions {
        if cat.function_is_opaque(f) {
            opaque = true;
            if !cat.knows_function(f) && !cat.is_empty() {
                *missed = true;
            }
        }
    }
    opaque || s.operators.iter().any(|o| cat.operator_is_opaque(o))
}

/// One source list per output column, expanding `*` through the catalog. `None` when
/// an expansion names a relation the catalog does not know unambiguously.
fn expand(items: &[OutputItem], cat: &DbCatalog) -> Option<Vec<Vec<Source>>> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            OutputItem::Column { sources, .. } => out.push(sources.clone()),
            OutputItem::AllColumns(t) => {
                let rels = cat.named(t.schema.as_deref(), &t.name);
                let [rel] = rels.as_slice() else {
                    return None;
                };
                for (_, c) in &rel.columns {
                    out.push(vec![Source::Column {
                        table: RelName {
                            schema: Some(rel.schema.clone()),
                            name: rel.name.clone(),
                        },
                        column: c.clone(),
                    }]);
                }
            }
        }
    }
    Some(out)
}

/// Resolves sources to catalog columns, following views. `None`: not established;
/// then `blind` tells whether it was a view of unknown lineage (or one nested too
/// deep), whose base relations the statement does not name.
fn resolve(
    sources: &[Source],
    cat: &DbCatalog,
    blind: &mut bool,
) -> Option<Vec<wit::ColumnSource>> {
    resolve_at(sources, cat, 0, blind)
}

/// [`resolve`] at view depth `depth`.
fn resolve_at(
    sources: &[Source],
    cat: &DbCatalog,
    depth: usize,
    blind: &mut bool,
) -> Option<Vec<wit::ColumnSource>> {
    if depth > MAX_VIEW_DEPTH {
        *blind = true;
        return None;
    }
    let mut out: Vec<wit::ColumnSource> = Vec::new();
    for s in sources {
        match s {
            Source::Unknown => return None,
            Source::Column { table, column } => {
                let rels = cat.named(table.schema.as_deref(), &table.name);
                if rels.is_empty() {
                    // Not in the catalog (a temporary table, a relation created since
                    // the last load): report it as named; a policy matches by name.
                    out.push(wit::ColumnSource {
                        schema: table.schema.clone().unwrap_or_default(),
                        table: table.name.clone(),
                        column: column.clone(),
                    });
                    continue;
                }
                for rel in rels {
                    let Some(pos) = rel.position(column) else {
                        continue;
                    };
                    out.push(wit::ColumnSource {
                        schema: rel.schema.clone(),
                        table: rel.name.clone(),
                        column: column.clone(),
                    });
                    if let Some(view) = &rel.view {
                        let Some(items) = view.as_ref() else {
                            *blind = true;
                            return None;
                        };
                        let Some(expanded) = expand(items, cat) else {
                            *blind = true;
                            return None;
                        };
                        let inner = expanded.get(pos)?;
                        out.extend(resolve_at(inner, cat, depth + 1, blind)?);
                    }
                }
            }
            Source::WholeRow(table) => {
                let rels = cat.named(table.schema.as_deref(), &table.name);
                if rels.is_empty() {
                    return None;
                }
                for rel in rels {
                    let cols: Vec<Source> = rel
                        .columns
                        .iter()
                        .map(|(_, c)| Source::Column {
                            table: RelName {
                                schema: Some(rel.schema.clone()),
                                name: rel.name.clone(),
                            },
                            column: c.clone(),
                        })
                        .collect();
                    out.extend(resolve_at(&cols, cat, depth + 1, blind)?);
                }
            }
        }
    }
    if out.is_empty() && !sources.is_empty() {
        // It read something, but nothing it could have read exists: not established.
        return None;
    }
    out.sort_by(|a, b| (&a.schema, &a.table, &a.column).cmp(&(&b.schema, &b.table, &b.column)));
    out.dedup_by(|a, b| a.schema == b.schema && a.table == b.table && a.column == b.column);
    Some(out)
}

/// Completes request `columns` entries (`[prefix:]table.column`, `table.*`) that name
/// a view's columns with the columns they come from, with the same prefix, and adds
/// `opaque:schema.view` for a view whose lineage is unknown (and, for a prefixed entry,
/// `prefix:opaque:schema.view`: such a view in a condition may test a masked value).
pub fn expand_view_columns(columns: &mut Vec<String>, cat: &DbCatalog) {
    let mut extra: Vec<String> = Vec::new();
    for entry in columns.iter() {
        let (prefix, name) = match entry.split_once(':') {
            Some((p, n)) => (Some(p), n),
            None => (None, entry.as_str()),
        };
        let parts: Vec<&str> = name.split('.').collect();
        let (schema, table, column) = match parts.as_slice() {
            [t, c] => (None, *t, *c),
            [s, t, c] => (Some(*s), *t, *c),
            _ => continue,
        };
        let rel = RelName {
            schema: schema.map(str::to_owned),
            name: table.to_owned(),
        };
        if !cat.named(schema, table).iter().any(|r| r.view.is_some()) {
            continue;
        }
        let src = if column == "*" {
            Source::WholeRow(rel)
        } else {
            Source::Column {
                table: rel,
                column: column.to_owned(),
            }
        };
        // Unknown view lineage (a definition that does not parse or calls an opaque
        // function): what the view reads is not known, which `opaque:schema.view`
        // says (a masking policy treats it as sensitive).
        let mut blind = false;
        let resolved = resolve(&[src], cat, &mut blind);
        if blind {
            for r in cat.named(schema, table).iter().filter(|r| r.view.is_some()) {
                let e = format!("opaque:{}.{}", r.schema, r.name);
                // Used in a condition or an ordering, it is `predicate:opaque:s.v`, ...
                let used = prefix.map(|p| format!("{p}:{e}"));
                for e in [Some(e), used].into_iter().flatten() {
                    if !columns.contains(&e) && !extra.contains(&e) {
                        extra.push(e);
                    }
                }
            }
        }
        let resolved = resolved.unwrap_or_default();
        for c in resolved {
            let n = format!("{}.{}.{}", c.schema, c.table, c.column);
            let e = match prefix {
                Some(p) => format!("{p}:{n}"),
                None => n,
            };
            if !columns.contains(&e) && !extra.contains(&e) {
                extra.push(e);
            }
        }
    }
    columns.extend(extra);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::catalog::Functions;
    use portcullis_wire::backend::FieldDescription;

    fn catalog() -> DbCatalog {
        let col = |attnum: &str, name: &str| {
            vec![
                Some("100".into()),
                Some("public".into()),
                Some("customers".into()),
                Some("r".into()),
                Some(attnum.into()),
                Some(name.into()),
                None,
                Some("f".into()),
            ]
        };
        let f = |name: &str, builtin: bool| {
            vec![
                Some(name.into()),
                Some(if builtin { "pg_catalog" } else { "public" }.into()),
                Some(if builtin { "t" } else { "f" }.into()),
            ]
        };
        DbCatalog::from_rows(
            vec![col("1", "id"), col("2", "name"), col("3", "ssn")],
            Some(Functions::from_rows(vec![
                f("upper", true),
                f("lookup_ssn", false),
            ])),
        )
    }

    fn computed(names: &[&str], table_column: Option<usize>) -> RowDescription {
        RowDescription {
            fields: names
                .iter()
                .enumerate()
                .map(|(i, n)| FieldDescription {
                    name: (*n).into(),
                    table_oid: if table_column == Some(i) { 100 } else { 0 },
                    column_attr: if table_column == Some(i) { 2 } else { 0 },
                    type_oid: 25,
                    type_len: -1,
                    type_mod: -1,
                    format: 0,
                })
                .collect(),
        }
    }

    fn provenance(sql: &str, fields: &RowDescription) -> Vec<wit::Provenance> {
        let a = portcullis_sql::analyze_uncached(sql);
        let mut missed = false;
        result_columns(fields, a.statements.first(), &catalog(), &mut missed)
            .into_iter()
            .map(|c| c.provenance)
            .collect()
    }

    #[test]
    fn a_statement_calling_a_user_defined_function_computes_unknown_columns() {
        let p = provenance(
            "SELECT name, lookup_ssn(id::int), upper(name) FROM customers",
            &computed(&["name", "lookup_ssn", "upper"], Some(0)),
        );
        assert!(matches!(&p[0], wit::Provenance::Direct(c) if c.column == "name"));
        assert!(matches!(&p[1], wit::Provenance::Unknown(t) if t.is_empty()));
        assert!(matches!(&p[2], wit::Provenance::Unknown(t) if t.is_empty()));
        // Hidden in a subquery or called with constants only: still unknown.
        let p = provenance(
            "SELECT x FROM (SELECT lookup_ssn(1) AS x) s",
            &computed(&["x"], None),
        );
        assert!(matches!(&p[0], wit::Provenance::Unknown(t) if t.is_empty()));
        // Built-ins keep their lineage.
        let p = provenance(
            "SELECT upper(name), 'k' FROM customers",
            &computed(&["upper", "?column?"], None),
        );
        assert!(matches!(&p[0], wit::Provenance::Derived(v) if v[0].column == "name"));
        assert!(matches!(&p[1], wit::Provenance::Constant));
    }
}
