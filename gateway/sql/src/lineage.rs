//! Column lineage: which source columns each output column of a statement is computed
//! from, which columns are compared with literals or with other columns in
//! predicates, and what a statement does to a cursor.
//!
//! The analysis is syntactic and over-approximates: a column reference that cannot be
//! bound with certainty (an unqualified name with several relations in scope, a name
//! that may be an outer reference) is attributed to every relation it could come from.
//! Callers with a catalog drop the candidates that do not exist. Anything not
//! understood yields [`Source::Unknown`] (or no lineage at all), never an empty list:
//! an empty source list means "computed from no column" (a constant).

use std::collections::HashMap;
use std::ops::ControlFlow;

use sqlparser::ast::{
    CloseCursor, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Join, JoinConstraint,
    JoinOperator, ObjectName, Query, Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr,
    Statement, TableAlias, TableFactor, TableWithJoins, ValueWithSpan, Visit, Visitor,
};

use crate::names::{fold, parts};

/// Nesting depth beyond which lineage gives up (reports unknown).
const MAX_DEPTH: usize = 64;

/// A relation as the statement names it (a table or view; not a CTE or alias).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelName {
    /// Schema, if the name was qualified.
    pub schema: Option<String>,
    /// Relation name, folded.
    pub name: String,
}

/// Where an output value may come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    /// A column of a relation.
    Column {
        /// The relation.
        table: RelName,
        /// The column name, folded.
        column: String,
    },
    /// Every column of a relation (a whole-row reference: `row_to_json(c)`, `c.*`).
    WholeRow(RelName),
    /// Could not be established.
    Unknown,
}

/// One item of a statement's output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputItem {
    /// One output column; `sources` empty means a constant.
    Column {
        /// The output name when the analysis knows it.
        name: Option<String>,
        /// Where its values come from (deduplicated, sorted).
        sources: Vec<Source>,
    },
    /// `*` or `t.*` over a base relation: one output column per column of the
    /// relation, in attribute order (the caller's catalog knows how many).
    AllColumns(RelName),
}

/// What a statement does to a cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorOp {
    /// `DECLARE name CURSOR FOR query`.
    Declare {
        /// The cursor name, folded.
        name: String,
        /// The output lineage of the cursor's query (`None`: not understood).
        output: Option<Vec<OutputItem>>,
    },
    /// `FETCH ... FROM name`: rows of the cursor's query.
    Fetch(String),
    /// `CLOSE name`.
    Close(String),
    /// `CLOSE ALL`.
    CloseAll,
}

/// The lineage of one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// The output columns of a row-returning statement (a query, or RETURNING);
    /// `None` when the statement returns no rows or its shape is not understood.
    pub output: Option<Vec<OutputItem>>,
    /// Every column referenced anywhere, resolved through aliases (deduplicated).
    pub referenced: Vec<Source>,
    /// Columns used in a WHERE / HAVING / JOIN condition next to a literal or a
    /// parameter (`WHERE ssn LIKE '1%'`): the conditions that can probe a value.
    pub literal_predicates: Vec<Source>,
    /// Columns whose values flow into stored data: the rows of INSERT ... SELECT /
    /// VALUES, UPDATE's SET values, CREATE TABLE AS, SELECT INTO, CREATE VIEW.
    pub written_from: Vec<Source>,
    /// Columns a result is sorted or grouped by (ORDER BY, GROUP BY; output names and
    /// positions resolved): the order of rows can reveal masked values.
    pub ordered: Vec<Source>,
    /// Columns used in a WHERE / HAVING / JOIN condition that reads two or more column
    /// references or a subquery (`ON s.ssn = c.ssn_guess`, `JOIN t USING (ssn)`,
    /// `WHERE ssn IN (SELECT ...)`; `NATURAL JOIN`: the whole rows of its relations):
    /// comparing a column with another reveals whether their values are equal.
    pub compared: Vec<Source>,
    /// Functions called anywhere in a WHERE / HAVING / JOIN condition, subqueries
    /// included (names as in [`crate::StatementSummary::functions`]; operators as
    /// [`crate::operator_call`]): a function whose body the gateway cannot see may
    /// read a masked value and test it there (`WHERE lookup_ssn(id) LIKE '1%'`).
    pub condition_calls: Vec<String>,
    /// Functions called in a GROUP BY / ORDER BY expression, or in the output item it
    /// names by alias or position.
    pub ordered_calls: Vec<String>,
    /// Functions called anywhere but in the statement's own output list: in a derived
    /// table, a CTE, a subquery, a condition, a set-returning function in FROM. What
    /// such a call returns may reach a condition through an alias
    /// (`FROM (SELECT lookup_ssn(id) AS s ...) x WHERE s LIKE '1%'`).
    pub nested_calls: Vec<String>,
    /// Whether the statement has a WHERE, HAVING or JOIN condition anywhere.
    pub has_condition: bool,
    /// Whether the statement has an ORDER BY or GROUP BY anywhere.
    pub has_ordering: bool,
    /// What the statement does to a cursor, if anything.
    pub cursor: Option<CursorOp>,
}

/// Lineage of a statement.
pub(crate) fn statement(stmt: &Statement) -> Lineage {
    let mut w = Walker::default();
    let output = w.statement(stmt);
    let mut nested = CallCollector::default();
    let _ = stmt.visit(&mut nested);
    if let Statement::Query(q) = stmt {
        let mut top = CallCollector {
            outside_queries: true,
            ..CallCollector::default()
        };
        top_projection_calls(&q.body, &mut top);
        for f in top.names {
            if let Some(i) = nested.names.iter().position(|n| *n == f) {
                nested.names.swap_remove(i);
            }
        }
    }
    nested.names.append(&mut w.from_calls);
    Lineage {
        output,
        referenced: finish(w.referenced),
        literal_predicates: finish(w.literal_predicates),
        written_from: finish(w.written_from),
        ordered: finish(w.ordered),
        compared: finish(w.compared),
        condition_calls: finish_names(w.condition_calls),
        ordered_calls: finish_names(w.ordered_calls),
        nested_calls: finish_names(nested.names),
        has_condition: w.has_condition,
        has_ordering: w.has_ordering,
        cursor: w.cursor,
    }
}

/// The output lineage of a stand-alone query text (e.g. a view definition from
/// `pg_get_viewdef`). `None` if it does not parse or its shape is not understood.
pub fn query_lineage(sql: &str) -> Option<Vec<OutputItem>> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;
    let parsed = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_statements())
        .ok()?;
    let [stmt] = parsed.as_slice() else {
        return None;
    };
    statement(stmt).output
}

fn finish_names(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v.dedup();
    v
}

fn finish(mut v: Vec<Source>) -> Vec<Source> {
    v.sort();
    v.dedup();
    v
}

/// A relation visible in a FROM scope.
#[derive(Debug, Clone)]
enum RelKind {
    Base(RelName),
    Derived(Option<Vec<OutputItem>>),
    Opaque,
}

#[derive(Debug, Clone)]
struct Rel {
    alias: String,
    kind: RelKind,
}

#[derive(Default)]
struct Walker {
    scopes: Vec<Vec<Rel>>,
    ctes: Vec<HashMap<String, Option<Vec<OutputItem>>>>,
    referenced: Vec<Source>,
    literal_predicates: Vec<Source>,
    written_from: Vec<Source>,
    ordered: Vec<Source>,
    compared: Vec<Source>,
    condition_calls: Vec<String>,
    ordered_calls: Vec<String>,
    /// Set-returning functions called in FROM (not expressions: no `Expr::Function`).
    from_calls: Vec<String>,
    has_condition: bool,
    has_ordering: bool,
    cursor: Option<CursorOp>,
    depth: usize,
}

fn rel_name(name: &ObjectName) -> Option<RelName> {
    let p = parts(name)?;
    match p.as_slice() {
        [n] => Some(RelName {
            schema: None,
            name: n.clone(),
        }),
        [s, n] | [_, s, n] => Some(RelName {
            schema: Some(s.clone()),
            name: n.clone(),
        }),
        _ => None,
    }
}

fn column_item(name: Option<String>, mut sources: Vec<Source>) -> OutputItem {
    sources.sort();
    sources.dedup();
    OutputItem::Column { name, sources }
}

/// Every source of a list of items (a whole relation for `AllColumns`).
fn all_sources(items: &Option<Vec<OutputItem>>) -> Vec<Source> {
    match items {
        None => vec![Source::Unknown],
        Some(items) => items
            .iter()
            .flat_map(|i| match i {
                OutputItem::Column { sources, .. } => sources.clone(),
                OutputItem::AllColumns(t) => vec![Source::WholeRow(t.clone())],
            })
            .collect(),
    }
}

fn apply_alias_columns(
    items: Option<Vec<OutputItem>>,
    alias: Option<&TableAlias>,
) -> Option<Vec<OutputItem>> {
    let Some(alias) = alias else { return items };
    if alias.columns.is_empty() {
        return items;
    }
    let mut items = items?;
    if items.iter().any(|i| matches!(i, OutputItem::AllColumns(_))) {
        // Renaming columns of an expansion we cannot count: names stay unknown,
        // which only matters for lookups by name (they fall back to all sources).
        return Some(items);
    }
    for (item, col) in items.iter_mut().zip(&alias.columns) {
        if let OutputItem::Column { name, .. } = item {
            *name = Some(fold(&col.name));
        }
    }
    Some(items)
}

impl Walker {
    fn statement(&mut self, stmt: &Statement) -> Option<Vec<OutputItem>> {
        match stmt {
            Statement::Query(q) => {
                let out = self.query(q);
                if matches!(&*q.body, SetExpr::Select(s) if s.into.is_some()) {
                    self.written_from.extend(all_sources(&out));
                    return None;
                }
                out
            }
            Statement::Insert(ins) => {
                if let Some(src) = &ins.source {
                    let rows = self.query(src);
                    self.written_from.extend(all_sources(&rows));
                }
                let target = match &ins.table {
                    sqlparser::ast::TableObject::TableName(n) => rel_name(n),
                    _ => None,
                };
                let returning = ins.returning.as_ref()?;
                let alias = ins
                    .table_alias
                    .as_ref()
                    .map(|a| fold(&a.alias))
                    .or_else(|| target.as_ref().map(|t| t.name.clone()))
                    .unwrap_or_default();
                let kind = match target {
                    Some(t) => RelKind::Base(t),
                    None => RelKind::Opaque,
                };
                self.scopes.push(vec![Rel { alias, kind }]);
                let out = self.projection(returning);
                self.scopes.pop();
                out
            }
            Statement::Update(u) => {
                let mut rels = Vec::new();
                self.table_with_joins(&u.table, &mut rels);
                if let Some(from) = &u.from {
                    let tables = match from {
                        sqlparser::ast::UpdateTableFromKind::BeforeSet(t)
                        | sqlparser::ast::UpdateTableFromKind::AfterSet(t) => t,
                    };
                    for t in tables {
                        self.table_with_joins(t, &mut rels);
                    }
                }
                self.scopes.push(rels);
                for a in &u.assignments {
                    let s = self.expr_sources(&a.value);
                    self.written_from.extend(s);
                }
                if let Some(sel) = &u.selection {
                    self.predicate(sel);
                }
                let out = u.returning.as_ref().and_then(|r| self.projection(r));
                self.scopes.pop();
                out
            }
            Statement::Delete(d) => {
                let mut rels = Vec::new();
                let from = match &d.from {
                    sqlparser::ast::FromTable::WithFromKeyword(t)
                    | sqlparser::ast::FromTable::WithoutKeyword(t) => t,
                };
                for t in from {
                    self.table_with_joins(t, &mut rels);
                }
                if let Some(using) = &d.using {
                    for t in using {
                        self.table_with_joins(t, &mut rels);
                    }
                }
                self.scopes.push(rels);
                if let Some(sel) = &d.selection {
                    self.predicate(sel);
                }
                let out = d.returning.as_ref().and_then(|r| self.projection(r));
                self.scopes.pop();
                out
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        let output = self.query(q);
                        if let [name] = d.names.as_slice() {
                            self.cursor = Some(CursorOp::Declare {
                                name: fold(name),
                                output,
                            });
                        }
                    }
                }
                None
            }
            Statement::Fetch { name, .. } => {
                self.cursor = Some(CursorOp::Fetch(fold(name)));
                None
            }
            Statement::Close { cursor } => {
                self.cursor = Some(match cursor {
                    CloseCursor::All => CursorOp::CloseAll,
                    CloseCursor::Specific { name } => CursorOp::Close(fold(name)),
                });
                None
            }
            Statement::Copy {
                source: sqlparser::ast::CopySource::Query(q),
                ..
            } => {
                self.query(q);
                None
            }
            Statement::CreateView(v) => {
                let out = self.query(&v.query);
                self.written_from.extend(all_sources(&out));
                None
            }
            Statement::CreateTable(t) => {
                if let Some(q) = &t.query {
                    let out = self.query(q);
                    self.written_from.extend(all_sources(&out));
                }
                None
            }
            Statement::Prepare { statement, .. } => {
                self.statement(statement);
                None
            }
            Statement::Explain { statement, .. } => {
                self.statement(statement);
                None
            }
            _ => None,
        }
    }

    fn query(&mut self, q: &Query) -> Option<Vec<OutputItem>> {
        if self.depth >= MAX_DEPTH {
            return None;
        }
        // A row count computed by a call (`LIMIT (SELECT length(lookup_ssn(1)))`)
        // tells its value, as a condition would.
        let mut limit = CallCollector::default();
        let _ = q.limit_clause.visit(&mut limit);
        let _ = q.fetch.visit(&mut limit);
        if !limit.names.is_empty() {
            self.has_condition = true;
            self.condition_calls.append(&mut limit.names);
        }
        self.depth += 1;
        self.ctes.push(HashMap::new());
        if let Some(with) = &q.with {
            for cte in &with.cte_tables {
                let name = fold(&cte.alias.name);
                // A recursive reference inside the CTE body sees the name as a base
                // relation (unresolvable: the caller keeps it as is).
                let items = self.query(&cte.query);
                let items = apply_alias_columns(items, Some(&cte.alias));
                if let Some(top) = self.ctes.last_mut() {
                    top.insert(name, items);
                }
            }
        }
        let order: Vec<&Expr> = match &q.order_by {
            Some(sqlparser::ast::OrderBy {
                kind: sqlparser::ast::OrderByKind::Expressions(v),
                ..
            }) => v.iter().map(|o| &o.expr).collect(),
            _ => Vec::new(),
        };
        let out = match &*q.body {
            // ORDER BY of a plain SELECT sees its FROM scope as well as its outputs.
            SetExpr::Select(s) => self.select_ordered(s, &order),
            body => {
                let out = self.set_expr(body);
                for e in order {
                    let src = self.order_sources(e, out.as_ref());
                    self.ordered.extend(src);
                    self.ordered_calls.extend(calls(e));
                    self.has_ordering = true;
                }
                out
            }
        };
        self.ctes.pop();
        self.depth -= 1;
        out
    }

    /// The columns an ORDER BY / GROUP BY item sorts by: an output position
    /// (`ORDER BY 2`), an output name, or an expression over the FROM scope.
    fn order_sources(&mut self, e: &Expr, out: Option<&Vec<OutputItem>>) -> Vec<Source> {
        let item_sources = |i: &OutputItem| match i {
            OutputItem::Column { sources, .. } => sources.clone(),
            OutputItem::AllColumns(t) => vec![Source::WholeRow(t.clone())],
        };
        if let Expr::Value(v) = e {
            return match (&v.value, out) {
                (sqlparser::ast::Value::Number(n, _), Some(items)) => match n.parse::<usize>() {
                    Ok(k) if k >= 1 && k <= items.len() => item_sources(&items[k - 1]),
                    // Literals are normalised before the walk (`ORDER BY 2` reads
                    // `ORDER BY 0`): the position is lost, so any output column may be
                    // the one.
                    Ok(0) => items.iter().flat_map(item_sources).collect(),
                    _ => vec![Source::Unknown],
                },
                (sqlparser::ast::Value::Placeholder(_), Some(items)) => {
                    items.iter().flat_map(item_sources).collect()
                }
                _ => vec![Source::Unknown],
            };
        }
        let mut sources = Vec::new();
        if let Expr::Identifier(id) = e
            && let Some(items) = out
        {
            let name = fold(id);
            for i in items {
                if matches!(i, OutputItem::Column { name: Some(n), .. } if *n == name) {
                    sources.extend(item_sources(i));
                }
            }
        }
        let from_scope = self.expr_sources(e);
        if sources.is_empty() || !from_scope.iter().all(|s| *s == Source::Unknown) {
            sources.extend(from_scope);
        }
        sources
    }

    fn set_expr(&mut self, body: &SetExpr) -> Option<Vec<OutputItem>> {
        match body {
            SetExpr::Select(s) => self.select(s),
            SetExpr::Query(q) => self.query(q),
            SetExpr::SetOperation { left, right, .. } => {
                let l = self.set_expr(left);
                let r = self.set_expr(right);
                let (l, r) = (l?, r?);
                let expandable =
                    |v: &Vec<OutputItem>| v.iter().all(|i| matches!(i, OutputItem::Column { .. }));
                if l.len() != r.len() || !expandable(&l) || !expandable(&r) {
                    return None;
                }
                Some(
                    l.into_iter()
                        .zip(r)
                        .map(|(a, b)| match (a, b) {
                            (
                                OutputItem::Column {
                                    name,
                                    sources: mut s1,
                                },
                                OutputItem::Column { sources: s2, .. },
                            ) => {
                                s1.extend(s2);
                                column_item(name, s1)
                            }
                            _ => column_item(None, vec![Source::Unknown]),
                        })
                        .collect(),
                )
            }
            SetExpr::Values(values) => {
                let mut cols: Vec<Vec<Source>> = Vec::new();
                for row in &values.rows {
                    for (i, e) in row.iter().enumerate() {
                        let s = self.expr_sources(e);
                        if cols.len() <= i {
                            cols.push(Vec::new());
                        }
                        cols[i].extend(s);
                    }
                }
                Some(cols.into_iter().map(|s| column_item(None, s)).collect())
            }
            SetExpr::Table(t) => {
                let name = t.table_name.as_ref()?;
                let rel = RelName {
                    schema: t.schema_name.as_ref().map(|s| s.to_ascii_lowercase()),
                    name: name.to_ascii_lowercase(),
                };
                self.referenced.push(Source::WholeRow(rel.clone()));
                Some(vec![OutputItem::AllColumns(rel)])
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                self.statement(s)
            }
        }
    }

    fn select(&mut self, s: &Select) -> Option<Vec<OutputItem>> {
        self.select_ordered(s, &[])
    }

    fn select_ordered(&mut self, s: &Select, order: &[&Expr]) -> Option<Vec<OutputItem>> {
        let mut rels = Vec::new();
        for t in &s.from {
            self.table_with_joins(t, &mut rels);
        }
        self.scopes.push(rels);
        // Join conditions.
        for t in &s.from {
            for j in &t.joins {
                self.join_condition(j);
            }
        }
        if let Some(sel) = &s.selection {
            self.predicate(sel);
        }
        if let Some(h) = &s.having {
            self.predicate(h);
        }
        let out = self.projection(&s.projection);
        if let sqlparser::ast::GroupByExpr::Expressions(exprs, _) = &s.group_by {
            for e in exprs {
                let src = self.order_sources(e, out.as_ref());
                self.ordered.extend(src);
                self.ordered_calls.extend(order_calls(e, &s.projection));
                self.has_ordering = true;
            }
        }
        for e in order {
            let src = self.order_sources(e, out.as_ref());
            self.ordered.extend(src);
            self.ordered_calls.extend(order_calls(e, &s.projection));
            self.has_ordering = true;
        }
        self.scopes.pop();
        out
    }

    fn projection(&mut self, items: &[SelectItem]) -> Option<Vec<OutputItem>> {
        let mut out = Vec::new();
        let mut known = true;
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = expr_name(e);
                    let s = self.expr_sources(e);
                    out.push(column_item(name, s));
                }
                SelectItem::ExprWithAlias { expr, alias } => {
                    let s = self.expr_sources(expr);
                    out.push(column_item(Some(fold(alias)), s));
                }
                SelectItem::ExprWithAliases { expr, .. } => {
                    let _ = self.expr_sources(expr);
                    known = false;
                }
                SelectItem::Wildcard(_) => {
                    let rels: Vec<Rel> = self.scopes.last().cloned().unwrap_or_default();
                    if rels.is_empty() {
                        known = false;
                    }
                    for r in &rels {
                        match self.expand(r) {
                            Some(items) => out.extend(items),
                            None => known = false,
                        }
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(n) => {
                        match self.find_rel(n).and_then(|r| self.expand(&r)) {
                            Some(items) => out.extend(items),
                            None => {
                                if let Some(rel) = rel_name(n) {
                                    self.referenced.push(Source::WholeRow(rel.clone()));
                                    out.push(OutputItem::AllColumns(rel));
                                } else {
                                    known = false;
                                }
                            }
                        }
                    }
                    SelectItemQualifiedWildcardKind::Expr(e) => {
                        let _ = self.expr_sources(e);
                        known = false;
                    }
                },
            }
        }
        known.then_some(out)
    }

    fn expand(&mut self, r: &Rel) -> Option<Vec<OutputItem>> {
        match &r.kind {
            RelKind::Base(t) => {
                self.referenced.push(Source::WholeRow(t.clone()));
                Some(vec![OutputItem::AllColumns(t.clone())])
            }
            RelKind::Derived(items) => items.clone(),
            RelKind::Opaque => None,
        }
    }

    /// The relation a qualifier (`c` in `c.*`, `s.c` in `s.c.*`) names.
    fn find_rel(&self, n: &ObjectName) -> Option<Rel> {
        let p = parts(n)?;
        let alias = p.last()?;
        self.lookup_alias(alias)
    }

    fn lookup_alias(&self, alias: &str) -> Option<Rel> {
        for scope in self.scopes.iter().rev() {
            if let Some(r) = scope.iter().find(|r| r.alias == alias) {
                return Some(r.clone());
            }
        }
        None
    }

    fn table_with_joins(&mut self, t: &TableWithJoins, rels: &mut Vec<Rel>) {
        self.table_factor(&t.relation, rels);
        for j in &t.joins {
            self.table_factor(&j.relation, rels);
        }
    }

    fn cte(&self, name: &str) -> Option<Option<Vec<OutputItem>>> {
        self.ctes.iter().rev().find_map(|f| f.get(name).cloned())
    }

    fn table_factor(&mut self, tf: &TableFactor, rels: &mut Vec<Rel>) {
        match tf {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let Some(rel) = rel_name(name) else {
                    rels.push(Rel {
                        alias: alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default(),
                        kind: RelKind::Opaque,
                    });
                    return;
                };
                let alias_name = alias
                    .as_ref()
                    .map(|a| fold(&a.name))
                    .unwrap_or_else(|| rel.name.clone());
                if let Some(a) = args {
                    // A set-returning function in FROM: its output is not a column
                    // of any table; its arguments may be.
                    if let Some(p) = parts(name) {
                        self.from_calls.push(p.join("."));
                    }
                    for arg in &a.args {
                        self.function_arg_sources(arg);
                    }
                    rels.push(Rel {
                        alias: alias_name,
                        kind: RelKind::Opaque,
                    });
                    return;
                }
                let kind = match (&rel.schema, self.cte(&rel.name)) {
                    (None, Some(items)) => {
                        RelKind::Derived(apply_alias_columns(items, alias.as_ref()))
                    }
                    _ => RelKind::Base(rel),
                };
                rels.push(Rel {
                    alias: alias_name,
                    kind,
                });
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                // LATERAL or not, the outer scopes are visible (over-approximation).
                let items = self.query(subquery);
                rels.push(Rel {
                    alias: alias.as_ref().map(|a| fold(&a.name)).unwrap_or_default(),
                    kind: RelKind::Derived(apply_alias_columns(items, alias.as_ref())),
                });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                let mut inner = Vec::new();
                self.table_with_joins(table_with_joins, &mut inner);
                for j in &table_with_joins.joins {
                    self.scopes.push(inner.clone());
                    self.join_condition(j);
                    self.scopes.pop();
                }
                match alias {
                    Some(a) => {
                        let mut items = Vec::new();
                        let mut known = true;
                        for r in &inner {
                            match self.expand(r) {
                                Some(i) => items.extend(i),
                                None => known = false,
                            }
                        }
                        rels.push(Rel {
                            alias: fold(&a.name),
                            kind: RelKind::Derived(known.then_some(items)),
                        });
                    }
                    None => rels.extend(inner),
                }
            }
            other => {
                // Table functions, UNNEST, JSON_TABLE, ...: values of unknown origin;
                // whatever they read counts as referenced.
                let mut v = ExprCollector::default();
                let _ = other.visit(&mut v);
                let alias = match other {
                    TableFactor::Function { alias, .. }
                    | TableFactor::UNNEST { alias, .. }
                    | TableFactor::TableFunction { alias, .. } => {
                        alias.as_ref().map(|a| fold(&a.name))
                    }
                    _ => None,
                };
                for e in v.exprs {
                    let _ = self.expr_sources(&e);
                }
                rels.push(Rel {
                    alias: alias.unwrap_or_default(),
                    kind: RelKind::Opaque,
                });
            }
        }
    }

    fn join_condition(&mut self, j: &Join) {
        let mut v = ExprCollector::default();
        let _ = j.join_operator.visit(&mut v);
        for e in v.exprs {
            self.predicate(&e);
        }
        match join_constraint(&j.join_operator) {
            // `USING (c)` compares `c` of the relations on both sides.
            Some(JoinConstraint::Using(names)) => {
                for n in names {
                    if let Some(p) = parts(n) {
                        let s = self.resolve(&p);
                        self.compared.extend(s);
                    }
                }
            }
            // `NATURAL` compares every column name the two sides share.
            Some(JoinConstraint::Natural) => {
                let rels: Vec<Rel> = self.scopes.last().cloned().unwrap_or_default();
                for r in &rels {
                    let s = match &r.kind {
                        RelKind::Base(t) => vec![Source::WholeRow(t.clone())],
                        RelKind::Derived(items) => all_sources(items),
                        RelKind::Opaque => vec![Source::Unknown],
                    };
                    self.compared.extend(s);
                }
            }
            _ => {}
        }
    }

    /// A WHERE / HAVING / ON condition: every conjunct or disjunct holding a literal
    /// or parameter marks its columns as compared with a literal; every function it
    /// calls, subqueries included, is a condition call.
    fn predicate(&mut self, e: &Expr) {
        self.has_condition = true;
        self.condition_calls.extend(calls(e));
        self.predicate_part(e);
    }

    fn predicate_part(&mut self, e: &Expr) {
        use sqlparser::ast::BinaryOperator as B;
        match e {
            Expr::BinaryOp {
                left,
                op: B::And | B::Or | B::Xor,
                right,
            } => {
                self.predicate_part(left);
                self.predicate_part(right);
            }
            Expr::Nested(inner) => self.predicate_part(inner),
            Expr::UnaryOp { expr, .. } => self.predicate_part(expr),
            _ => {
                let (sources, refs) = self.expr_sources_counted(e);
                let mut lit = LiteralFinder::default();
                let _ = e.visit(&mut lit);
                if refs >= 2 {
                    self.compared.extend(sources.iter().cloned());
                }
                if lit.found {
                    self.literal_predicates.extend(sources);
                }
            }
        }
    }

    fn function_arg_sources(&mut self, arg: &FunctionArg) -> Vec<Source> {
        let a = match arg {
            FunctionArg::Named { arg, .. }
            | FunctionArg::ExprNamed { arg, .. }
            | FunctionArg::Unnamed(arg) => arg,
        };
        match a {
            FunctionArgExpr::Expr(e) => self.expr_sources(e),
            FunctionArgExpr::QualifiedWildcard(n) => self.whole_row(n),
            FunctionArgExpr::Wildcard | FunctionArgExpr::WildcardWithOptions(_) => Vec::new(),
        }
    }

    fn whole_row(&mut self, n: &ObjectName) -> Vec<Source> {
        let out = match self.find_rel(n) {
            Some(r) => match &r.kind {
                RelKind::Base(t) => vec![Source::WholeRow(t.clone())],
                RelKind::Derived(items) => all_sources(items),
                RelKind::Opaque => vec![Source::Unknown],
            },
            None => match rel_name(n) {
                Some(t) => vec![Source::WholeRow(t)],
                None => vec![Source::Unknown],
            },
        };
        self.referenced.extend(out.iter().cloned());
        out
    }

    /// Every source an expression may read, subqueries included.
    fn expr_sources(&mut self, e: &Expr) -> Vec<Source> {
        self.expr_sources_counted(e).0
    }

    /// [`Walker::expr_sources`], with the number of column references, whole-row
    /// references and subqueries the expression holds (outside its subqueries).
    fn expr_sources_counted(&mut self, e: &Expr) -> (Vec<Source>, usize) {
        if self.depth >= MAX_DEPTH {
            return (vec![Source::Unknown], 2);
        }
        let mut c = RefCollector::default();
        let _ = e.visit(&mut c);
        let refs = c.refs.len();
        let mut out = Vec::new();
        for r in c.refs {
            match r {
                Ref::Name(p) => out.extend(self.resolve(&p)),
                Ref::WholeRow(n) => out.extend(self.whole_row(&n)),
                Ref::Subquery(q) => {
                    self.depth += 1;
                    let items = self.query(&q);
                    self.depth -= 1;
                    out.extend(all_sources(&items));
                }
                Ref::Unknown => out.push(Source::Unknown),
            }
        }
        out.sort();
        out.dedup();
        (out, refs)
    }

    /// Resolves a (possibly qualified) column reference.
    fn resolve(&mut self, p: &[String]) -> Vec<Source> {
        let out = match p {
            [] => Vec::new(),
            [name] => self.resolve_unqualified(name),
            [qual, col, ..] if p.len() == 2 || self.lookup_alias(qual).is_some() => {
                // `t.col`, or `t.col.field` (composite field access).
                match self.lookup_alias(qual) {
                    Some(r) => self.column_of(&r, col),
                    None => vec![Source::Column {
                        table: RelName {
                            schema: None,
                            name: qual.clone(),
                        },
                        column: col.clone(),
                    }],
                }
            }
            [schema, table, col, ..] => vec![Source::Column {
                table: RelName {
                    schema: Some(schema.clone()),
                    name: table.clone(),
                },
                column: col.clone(),
            }],
            _ => vec![Source::Unknown],
        };
        self.referenced.extend(out.iter().cloned());
        out
    }

    fn column_of(&self, r: &Rel, col: &str) -> Vec<Source> {
        match &r.kind {
            RelKind::Base(t) => vec![Source::Column {
                table: t.clone(),
                column: col.to_owned(),
            }],
            RelKind::Derived(None) | RelKind::Opaque => vec![Source::Unknown],
            RelKind::Derived(Some(items)) => {
                let mut out = Vec::new();
                let mut found = false;
                for i in items {
                    match i {
                        OutputItem::Column { name, sources } => {
                            if name.as_deref() == Some(col) {
                                found = true;
                                out.extend(sources.iter().cloned());
                            } else if name.is_none() {
                                // Unnamed output (a renamed expansion or an expression
                                // PostgreSQL names `?column?`): it could be this one.
                                out.extend(sources.iter().cloned());
                            }
                        }
                        OutputItem::AllColumns(t) => out.push(Source::Column {
                            table: t.clone(),
                            column: col.to_owned(),
                        }),
                    }
                }
                if !found && out.is_empty() {
                    out.push(Source::Unknown);
                }
                out
            }
        }
    }

    fn resolve_unqualified(&self, name: &str) -> Vec<Source> {
        let mut out = Vec::new();
        for scope in self.scopes.iter().rev() {
            for r in scope {
                match &r.kind {
                    RelKind::Base(t) => out.push(Source::Column {
                        table: t.clone(),
                        column: name.to_owned(),
                    }),
                    RelKind::Derived(Some(items)) => {
                        for i in items {
                            match i {
                                OutputItem::Column {
                                    name: Some(n),
                                    sources,
                                } if n == name => {
                                    out.extend(sources.iter().cloned());
                                }
                                OutputItem::Column {
                                    name: None,
                                    sources,
                                } => out.extend(sources.iter().cloned()),
                                OutputItem::AllColumns(t) => out.push(Source::Column {
                                    table: t.clone(),
                                    column: name.to_owned(),
                                }),
                                _ => {}
                            }
                        }
                    }
                    RelKind::Derived(None) | RelKind::Opaque => out.push(Source::Unknown),
                }
                // A bare relation alias is a whole-row reference.
                if r.alias == name {
                    match &r.kind {
                        RelKind::Base(t) => out.push(Source::WholeRow(t.clone())),
                        RelKind::Derived(items) => out.extend(all_sources(items)),
                        RelKind::Opaque => out.push(Source::Unknown),
                    }
                }
            }
        }
        if out.is_empty() && !self.scopes.iter().all(|s| s.is_empty()) {
            out.push(Source::Unknown);
        }
        out
    }
}

/// The constraint of a join (`ON`, `USING`, `NATURAL`), if it has one.
fn join_constraint(op: &JoinOperator) -> Option<&JoinConstraint> {
    use JoinOperator as J;
    match op {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::CrossJoin(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c)
        | J::StraightJoin(c)
        | J::AsOf { constraint: c, .. } => Some(c),
        J::CrossApply | J::OuterApply | J::ArrayJoin | J::LeftArrayJoin | J::InnerArrayJoin => None,
    }
}

/// The name PostgreSQL gives an unaliased output expression, when it is a column.
fn expr_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(fold(i)),
        Expr::CompoundIdentifier(p) => p.last().map(fold),
        _ => None,
    }
}

enum Ref {
    Name(Vec<String>),
    WholeRow(ObjectName),
    Subquery(Box<Query>),
    Unknown,
}

/// Collects the column references of an expression, not descending into subqueries
/// (which are returned whole, to be analysed in their own scope).
#[derive(Default)]
struct RefCollector {
    refs: Vec<Ref>,
    query_depth: usize,
}

impl Visitor for RefCollector {
    type Break = ();

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        if self.query_depth == 0 {
            self.refs.push(Ref::Subquery(Box::new(q.clone())));
        }
        self.query_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.query_depth > 0 {
            return ControlFlow::Continue(());
        }
        match e {
            Expr::Identifier(i) => self.refs.push(Ref::Name(vec![fold(i)])),
            Expr::CompoundIdentifier(p) => self.refs.push(Ref::Name(p.iter().map(fold).collect())),
            Expr::QualifiedWildcard(n, _) => self.refs.push(Ref::WholeRow(n.clone())),
            Expr::Wildcard(_) => self.refs.push(Ref::Unknown),
            Expr::Function(f) => {
                if let FunctionArguments::List(list) = &f.args {
                    for a in &list.args {
                        let a = match a {
                            FunctionArg::Named { arg, .. }
                            | FunctionArg::ExprNamed { arg, .. }
                            | FunctionArg::Unnamed(arg) => arg,
                        };
                        if let FunctionArgExpr::QualifiedWildcard(n) = a {
                            self.refs.push(Ref::WholeRow(n.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// The calls in the output list of a query body (both sides of a set operation),
/// outside its subqueries: a subquery there may filter on a call's value
/// (`SELECT (SELECT count(*) FROM (SELECT lookup_ssn(id) s ...) x WHERE s LIKE '1%')`).
fn top_projection_calls(body: &SetExpr, c: &mut CallCollector) {
    match body {
        SetExpr::Select(s) => {
            for item in &s.projection {
                let _ = item.visit(c);
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            top_projection_calls(left, c);
            top_projection_calls(right, c);
        }
        SetExpr::Query(q) => top_projection_calls(&q.body, c),
        _ => {}
    }
}

/// Every function an expression calls, subqueries included.
fn calls(e: &Expr) -> Vec<String> {
    let mut c = CallCollector::default();
    let _ = e.visit(&mut c);
    c.names
}

/// The functions a GROUP BY / ORDER BY expression calls, and those of the output items
/// it may name: by alias or by a function's default output name (`ORDER BY s` for
/// `SELECT lookup_ssn(id) AS s`, `ORDER BY lookup_ssn`), or by position (`ORDER BY 1`;
/// literals are normalised before the walk, so a position names any item).
fn order_calls(e: &Expr, projection: &[SelectItem]) -> Vec<String> {
    let mut out = calls(e);
    fn item_expr(p: &SelectItem) -> Option<&Expr> {
        match p {
            SelectItem::ExprWithAlias { expr, .. } | SelectItem::UnnamedExpr(expr) => Some(expr),
            _ => None,
        }
    }
    match e {
        Expr::Identifier(i) => {
            let name = fold(i);
            for p in projection {
                let item_calls = item_expr(p).map(calls).unwrap_or_default();
                let named = match p {
                    SelectItem::ExprWithAlias { alias, .. } => fold(alias) == name,
                    SelectItem::UnnamedExpr(_) => item_calls
                        .iter()
                        .any(|f| f.rsplit('.').next() == Some(name.as_str())),
                    _ => false,
                };
                if named {
                    out.extend(item_calls);
                }
            }
        }
        Expr::Value(v) if !matches!(v.value, sqlparser::ast::Value::SingleQuotedString(_)) => {
            out.extend(projection.iter().filter_map(item_expr).flat_map(calls));
        }
        _ => {}
    }
    out
}

/// Collects the names of called functions (as [`crate::names::parts`] joined by `.`).
#[derive(Default)]
struct CallCollector {
    names: Vec<String>,
    /// Skip the calls inside subqueries.
    outside_queries: bool,
    query_depth: usize,
}

impl Visitor for CallCollector {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.query_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.outside_queries && self.query_depth > 0 {
            return ControlFlow::Continue(());
        }
        if let Expr::Function(f) = e {
            // A name it cannot spell makes the analysis reject the statement.
            if let Some(p) = parts(&f.name).filter(|p| !p.is_empty()) {
                self.names.push(p.join("."));
            }
        } else if let Some(op) = crate::names::operator_of(e) {
            self.names.push(crate::operator_call(&op));
        }
        ControlFlow::Continue(())
    }
}

/// Finds a literal or parameter outside subqueries.
#[derive(Default)]
struct LiteralFinder {
    found: bool,
    query_depth: usize,
}

impl Visitor for LiteralFinder {
    type Break = ();

    fn pre_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.query_depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _q: &Query) -> ControlFlow<()> {
        self.query_depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_value(&mut self, _v: &ValueWithSpan) -> ControlFlow<()> {
        if self.query_depth == 0 {
            self.found = true;
        }
        ControlFlow::Continue(())
    }
}

/// Collects the outermost expressions of a node (e.g. a join's ON condition).
#[derive(Default)]
struct ExprCollector {
    exprs: Vec<Expr>,
    depth: usize,
}

impl Visitor for ExprCollector {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &Expr) -> ControlFlow<()> {
        if self.depth == 0 {
            self.exprs.push(e.clone());
        }
        self.depth += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _e: &Expr) -> ControlFlow<()> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lin(sql: &str) -> Lineage {
        let a = crate::analyze_uncached(sql);
        assert_eq!(a.statements.len(), 1, "{sql}");
        assert!(a.statements[0].parse_error.is_none(), "{sql}");
        a.statements[0].lineage.clone()
    }

    fn col(t: &str, c: &str) -> Source {
        Source::Column {
            table: RelName {
                schema: None,
                name: t.into(),
            },
            column: c.into(),
        }
    }

    fn whole(t: &str) -> Source {
        Source::WholeRow(RelName {
            schema: None,
            name: t.into(),
        })
    }

    /// Same length, and each expected source list is covered (the analysis may
    /// over-approximate: candidates a catalog would drop are allowed).
    fn covers(actual: Vec<Vec<Source>>, expected: Vec<Vec<Source>>) {
        assert_eq!(actual.len(), expected.len(), "{actual:?}");
        for (a, e) in actual.iter().zip(&expected) {
            covers1(a, e);
        }
    }

    fn covers1(actual: &[Source], expected: &[Source]) {
        for e in expected {
            assert!(actual.contains(e), "{e:?} missing from {actual:?}");
        }
        if expected.is_empty() {
            assert!(actual.is_empty(), "expected a constant, got {actual:?}");
        }
    }

    fn sources(sql: &str) -> Vec<Vec<Source>> {
        lin(sql)
            .output
            .unwrap_or_else(|| panic!("no output for {sql}"))
            .into_iter()
            .map(|i| match i {
                OutputItem::Column { sources, .. } => sources,
                OutputItem::AllColumns(t) => vec![Source::WholeRow(t)],
            })
            .collect()
    }

    #[test]
    fn expressions_derive_from_their_columns() {
        let email = col("customers", "email");
        covers(
            sources("select upper(email) from customers"),
            vec![vec![email.clone()]],
        );
        covers(
            sources("select email || '' from customers c"),
            vec![vec![email.clone()]],
        );
        covers(
            sources("select substr(c.ssn, 1, 3), 1 from customers c"),
            vec![vec![col("customers", "ssn")], vec![]],
        );
        covers(
            sources("select coalesce(email, name)::text from customers"),
            vec![vec![col("customers", "email"), col("customers", "name")]],
        );
        covers(
            sources("select string_agg(email, ',') from customers"),
            vec![vec![email.clone()]],
        );
        covers(
            sources("select row_to_json(c) from customers c"),
            vec![vec![whole("customers")]],
        );
        covers(
            sources("select to_jsonb(c.*) from customers c"),
            vec![vec![whole("customers")]],
        );
    }

    #[test]
    fn subqueries_ctes_and_unions_are_followed() {
        let email = col("customers", "email");
        covers(
            sources("select lower(e) from (select email as e from customers) s"),
            vec![vec![email.clone()]],
        );
        covers(
            sources("with x as (select email e from customers) select e || '!' from x"),
            vec![vec![email.clone()]],
        );
        covers(
            sources("select name from orders union select email from customers"),
            vec![vec![email.clone(), col("orders", "name")]],
        );
        covers(
            sources("select (select max(ssn) from customers) from orders"),
            vec![vec![col("customers", "ssn")]],
        );
        covers(
            sources("select x.* from (select upper(ssn) from customers) x"),
            vec![vec![col("customers", "ssn")]],
        );
    }

    #[test]
    fn returning_and_wildcards() {
        covers(
            sources("update customers set name = 'x' where id = 1 returning upper(email)"),
            vec![vec![col("customers", "email")]],
        );
        let l = lin("select *, upper(email) from customers");
        let out = l.output.unwrap();
        assert!(matches!(&out[0], OutputItem::AllColumns(t) if t.name == "customers"));
        assert_eq!(out.len(), 2);
        // A set-returning function's output is of unknown origin.
        covers(
            sources("select u from unnest(array['a']) u"),
            vec![vec![Source::Unknown]],
        );
    }

    #[test]
    fn order_and_group_columns_are_reported() {
        let l = lin("select name from customers order by ssn desc");
        covers1(&l.ordered, &[col("customers", "ssn")]);
        let l = lin("select ssn as s, name from customers c order by s, 2");
        covers1(
            &l.ordered,
            &[col("customers", "ssn"), col("customers", "name")],
        );
        let l = lin("select email, count(*) from customers group by email");
        covers1(&l.ordered, &[col("customers", "email")]);
        let l = lin("select substr(ssn, 1, 3) from customers group by 1 order by 1");
        covers1(&l.ordered, &[col("customers", "ssn")]);
        let l = lin("select name from customers union select email from customers order by 1");
        covers1(
            &l.ordered,
            &[col("customers", "name"), col("customers", "email")],
        );
        let l = lin("select name from customers where id = 1");
        assert!(l.ordered.is_empty(), "{:?}", l.ordered);
    }

    #[test]
    fn functions_called_in_conditions_and_orderings_are_reported() {
        // Operators count as calls (`operator(=)`): a user-defined one runs a function.
        let c = |sql: &str| -> Vec<String> {
            lin(sql)
                .condition_calls
                .into_iter()
                .filter(|f| !f.starts_with("operator("))
                .collect()
        };
        assert_eq!(
            c("select id from customers where lookup_ssn(id) like '1%'"),
            ["lookup_ssn"]
        );
        // A boolean function alone, a join condition, a correlated subquery, HAVING.
        assert_eq!(
            c("select id from customers where app.has_prefix(id)"),
            ["app.has_prefix"]
        );
        assert_eq!(
            c("select 1 from customers c join guesses g on f(c.id) = g.v"),
            ["f"]
        );
        assert_eq!(
            c("select id from customers c where (select lookup_ssn(c.id)) like '1%'"),
            ["lookup_ssn"]
        );
        assert_eq!(
            c("select name, count(*) from customers group by name having max(g(id)) > 1"),
            ["g", "max"]
        );
        assert_eq!(
            c("update customers set name = f(name) where lower(email) = 'x'"),
            ["lower"]
        );
        assert!(c("select f(ssn) from customers where id = 1").is_empty());
        let ops = |sql: &str| lin(sql).condition_calls;
        assert_eq!(
            ops("select id from customers where id ### 0 like '1%' and id = any($1)"),
            ["operator(###)", "operator(=)"]
        );
        assert_eq!(
            ops("select id from customers where id operator(public.###) 0 = 'x'"),
            ["operator(###)", "operator(=)"]
        );
        assert!(ops("select id ### 0 from customers").is_empty());
        let o = |sql: &str| lin(sql).ordered_calls;
        assert_eq!(
            o("select id from customers order by lookup_ssn(id)"),
            ["lookup_ssn"]
        );
        assert_eq!(
            o("select lookup_ssn(id) as s from customers order by s"),
            ["lookup_ssn"]
        );
        assert_eq!(o("select id, f(id) from customers group by 1, 2"), ["f"]);
        assert_eq!(o("select f(id) from customers order by f"), ["f"]);
        assert_eq!(
            o("select id from customers order by id ### 1"),
            ["operator(###)"]
        );
        assert!(o("select f(id) from customers order by id").is_empty());
    }

    #[test]
    fn calls_outside_the_output_list_are_nested() {
        let n = |sql: &str| {
            let l = lin(sql);
            let calls: Vec<String> = l
                .nested_calls
                .into_iter()
                .filter(|f| !f.starts_with("operator("))
                .collect();
            (calls, l.has_condition)
        };
        assert_eq!(
            n(
                "select count(*) from (select lookup_ssn(id) as s from customers) x where s like '1%'"
            ),
            (vec!["lookup_ssn".to_owned()], true)
        );
        assert_eq!(
            n("with x as (select lookup_ssn(id) s from customers) select s from x"),
            (vec!["lookup_ssn".to_owned()], false)
        );
        assert_eq!(
            n("select * from all_ssns() t where t.s like '1%'"),
            (vec!["all_ssns".to_owned()], true)
        );
        let l = lin("select s from (select lookup_ssn(id) s from customers) x order by s");
        assert!(l.has_ordering && !l.has_condition && l.nested_calls == ["lookup_ssn"]);
        let l = lin("select id from customers limit (select length(lookup_ssn(1)))");
        assert!(l.has_condition && l.condition_calls.contains(&"lookup_ssn".to_owned()));
        // In the output list only: not nested.
        assert_eq!(
            n("select lookup_ssn(id) from customers where id = 5"),
            (Vec::new(), true)
        );
        assert_eq!(
            n("select lookup_ssn(id) from customers union select f(1)"),
            (Vec::new(), false)
        );
        // In a subquery of the output list, filtered there: nested.
        assert_eq!(
            n(
                "select (select count(*) from (select lookup_ssn(id) s from customers) x where s like '1%')"
            ),
            (vec!["count".to_owned(), "lookup_ssn".to_owned()], true)
        );
        // Once in the output, once in a derived table: nested once.
        assert_eq!(
            n("select lookup_ssn(x.id), s from (select id, lookup_ssn(id) s from customers) x"),
            (vec!["lookup_ssn".to_owned()], false)
        );
    }

    #[test]
    fn operators_are_listed_by_symbol() {
        let a = crate::analyze_uncached(
            "select a -> 'k', b ### 1, c operator(public.@@) d, -e from t where x = any(y) and not z",
        );
        assert_eq!(a.statements[0].operators, ["->", "###", "@@", "-", "="]);
        let a = crate::analyze_uncached("select id::text, cast(id as int) from t where n::int > 1");
        assert_eq!(a.statements[0].operators, ["::", ">"]);
        assert!(
            a.statements[0]
                .lineage
                .condition_calls
                .contains(&"operator(::)".to_owned())
        );
    }

    #[test]
    fn literal_predicates_are_reported() {
        let l = lin("select id from customers where ssn like '1%' and id = other_id");
        covers1(&l.literal_predicates, &[col("customers", "ssn")]);
        let l = lin(
            "select id from customers c join orders o on o.customer_id = c.id and c.email = $1",
        );
        covers1(&l.literal_predicates, &[col("customers", "email")]);
        let l = lin(
            "select id from orders where customer_id in (select id from customers where substr(ssn,1,1) = '1')",
        );
        covers1(&l.literal_predicates, &[col("customers", "ssn")]);
        let l = lin("delete from customers where email = 'a@b' returning id");
        covers1(&l.literal_predicates, &[col("customers", "email")]);
    }

    #[test]
    fn column_comparisons_are_reported() {
        let c = |sql: &str| lin(sql).compared;
        let (ssn, other_ssn) = (col("customers", "ssn"), col("secrets", "ssn"));
        let cases = [
            (
                "select c.id from customers c join secrets s on s.ssn = c.ssn_guess",
                vec![other_ssn.clone(), col("customers", "ssn_guess")],
            ),
            (
                "select c.id from customers c, secrets o where c.ssn = o.ssn and c.id = 1",
                vec![ssn.clone(), other_ssn.clone()],
            ),
            // A self-join compares a column with itself.
            (
                "select a.id from customers a join customers b on a.ssn = b.ssn",
                vec![ssn.clone()],
            ),
            (
                "select id from customers join secrets using (ssn)",
                vec![ssn.clone(), other_ssn.clone()],
            ),
            (
                "select id from customers natural join secrets",
                vec![whole("customers"), whole("secrets")],
            ),
            (
                "select id from customers where ssn in (select ssn from secrets)",
                vec![ssn.clone(), other_ssn.clone()],
            ),
            // A constant hidden in a derived table is still another reference.
            (
                "select c.id from customers c join (values ('x')) g(v) on g.v = c.ssn",
                vec![ssn.clone()],
            ),
            (
                "select id from customers c where exists (select 1 from secrets s where s.ssn = c.ssn)",
                vec![ssn.clone(), other_ssn.clone()],
            ),
        ];
        for (sql, expected) in cases {
            covers1(&c(sql), &expected);
        }
        // One column against literals, or alone, is not a column comparison.
        assert!(c("select id from customers where ssn like '1%'").is_empty());
        assert!(c("select id from customers where active").is_empty());
        assert!(c("select id from customers order by ssn").is_empty());
    }

    #[test]
    fn cursor_statements_are_reported() {
        let l = lin("declare c cursor for select id, upper(email) from customers");
        match l.cursor {
            Some(CursorOp::Declare { name, output }) => {
                assert_eq!(name, "c");
                assert_eq!(output.map(|o| o.len()), Some(2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            lin("fetch 2 from C").cursor,
            Some(CursorOp::Fetch("c".into()))
        );
        assert_eq!(
            lin("fetch next in \"Cur\"").cursor,
            Some(CursorOp::Fetch("Cur".into()))
        );
        assert_eq!(lin("close c").cursor, Some(CursorOp::Close("c".into())));
        assert_eq!(lin("close all").cursor, Some(CursorOp::CloseAll));
        assert_eq!(lin("select 1").cursor, None);
    }

    #[test]
    fn written_columns_are_reported() {
        let w = |sql: &str| lin(sql).written_from;
        covers1(
            &w("insert into t select upper(ssn) from customers"),
            &[col("customers", "ssn")],
        );
        covers1(
            &w("update customers set name = ssn where id = 1"),
            &[col("customers", "ssn")],
        );
        covers1(
            &w("create table t as select email from customers"),
            &[col("customers", "email")],
        );
        covers1(
            &w("select email into t from customers"),
            &[col("customers", "email")],
        );
        assert!(w("update customers set name = 'x' where id = 1 returning email").is_empty());
    }

    #[test]
    fn view_definitions_parse() {
        let v = query_lineage(" SELECT c.id, upper(c.email) AS e FROM customers c;").unwrap();
        assert_eq!(v.len(), 2);
    }
}
