//! Provenance of result columns: from the RowDescription's table OID and attribute
//! number through the catalog, and from the statement's lineage for expressions.
//!
//! Fail closed: a relation the catalog does not know, a view whose definition does
//! not parse, or an expression whose lineage cannot be aligned with the result yields
//! `unknown`; with no statement tables to name (FETCH from a cursor the session did
//! not declare, EXECUTE, a catalog miss) the list is empty, which the standard
//! masking policy treats as sensitive.

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
    let aligned = statement
        .and_then(|s| s.lineage.output.as_ref())
        .and_then(|items| expand(items, cat))
        .filter(|v| v.len() == fields.fields.len());
    let tables: Vec<wit::TableRef> = statement
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
                                    match resolve(&src, cat) {
                                        Some(v) => wit::Provenance::Derived(v),
                                        None => wit::Provenance::Unknown(Vec::new()),
                                    }
                                }
                            }
                        }
                    },
                }
            } else {
                match aligned.as_ref().map(|a| &a[i]) {
                    Some(sources) => match resolve(sources, cat) {
                        Some(v) if v.is_empty() => wit::Provenance::Constant,
                        Some(v) => wit::Provenance::Derived(v),
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

/// Resolves sources to catalog columns, following views. `None`: not established.
fn resolve(sources: &[Source], cat: &DbCatalog) -> Option<Vec<wit::ColumnSource>> {
    resolve_at(sources, cat, 0)
}

/// [`resolve`] at view depth `depth`.
fn resolve_at(sources: &[Source], cat: &DbCatalog, depth: usize) -> Option<Vec<wit::ColumnSource>> {
    if depth > MAX_VIEW_DEPTH {
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
                        let items = view.as_ref()?;
                        let expanded = expand(items, cat)?;
                        let inner = expanded.get(pos)?;
                        out.extend(resolve_at(inner, cat, depth + 1)?);
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
                    out.extend(resolve_at(&cols, cat, depth + 1)?);
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
/// a view's columns with the columns they come from, with the same prefix.
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
        // Unknown view lineage: every column of the view's base relations is not known,
        // so name the view's columns as a whole (a policy may treat it as sensitive).
        let resolved = resolve(&[src], cat).unwrap_or_default();
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
