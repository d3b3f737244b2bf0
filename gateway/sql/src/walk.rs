//! The AST walk that collects tables (with access), columns, functions,
//! WHERE presence and COPY details from one parsed statement.
//!
//! `sqlparser`'s generic [`Visitor`] drives the walk, so every expression and
//! every relation the AST marks as one is seen, however deeply nested
//! (subqueries, CTEs, `LATERAL`, set operations, `PREPARE`/`EXPLAIN` bodies,
//! data-modifying CTEs, defaults, `RETURNING`, ...). On top of that:
//!
//! * statement hooks mark DML/DDL *targets* (by node identity) so the generic
//!   relation hook reports them as `Write`/`Ddl` instead of `Read`, and add the
//!   object names the AST does not mark as relations (`DROP`, `GRANT`,
//!   `REVOKE`, `COPY`, `COMMENT`, `VACUUM`, `SELECT INTO`, ...);
//! * table functions in `FROM` (`pg_read_file(...)`, `dblink(...)`) are
//!   reported as functions, not relations;
//! * CTE names are tracked with PostgreSQL's scoping (a non-recursive CTE is
//!   visible to later CTEs and the main query, not to its own body), so
//!   `WITH secrets AS (SELECT * FROM secrets) ...` still reports `secrets`;
//! * misparse guards refuse statements where `sqlparser` produced something
//!   PostgreSQL could not mean (a reserved keyword as a relation name or table
//!   alias, the `TABLE name` shorthand).

use std::collections::{HashMap, HashSet};
use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, CopyTarget as SqlCopyTarget, Expr, GrantObjects, ObjectName, ObjectType, Query,
    Select, SelectItem, SelectItemQualifiedWildcardKind, SetExpr, Statement, TableFactor,
    TableObject, Visitor,
};

use crate::kind::Access;
use crate::names;
use crate::summary::{ColumnRef, CopyInfo, CopyTarget, TableRef};

#[inline]
fn addr<T>(r: &T) -> usize {
    r as *const T as usize
}

/// CTEs declared by one `WITH` clause.
struct CteFrame {
    /// The query owning the `WITH` clause.
    owner: usize,
    /// Folded CTE name -> index of its first declaration.
    names: HashMap<String, usize>,
    /// Address of each CTE body -> its index.
    bodies: HashMap<usize, usize>,
    recursive: bool,
    /// Index of the CTE whose body is being visited, if any.
    current: Option<usize>,
}

impl CteFrame {
    /// Whether CTE `name` is visible at the current point of the walk.
    fn sees(&self, name: &str) -> bool {
        match (self.names.get(name), self.current) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(_), Some(_)) if self.recursive => true,
            (Some(&j), Some(i)) => j < i,
        }
    }
}

/// Collected facts about one statement. All bookkeeping is hash-based so the
/// walk stays linear on statements with very many names.
#[derive(Default)]
pub(crate) struct Walk {
    pub tables: Vec<TableRef>,
    pub columns: Vec<ColumnRef>,
    pub functions: Vec<String>,
    /// Operator symbols used (see [`crate::StatementSummary::operators`]).
    pub operators: Vec<String>,
    /// One entry per UPDATE/DELETE seen: whether it had a WHERE clause.
    pub where_flags: Vec<bool>,
    pub copy: Option<CopyInfo>,
    /// Set when the statement must be refused as unparsed.
    pub reject: Option<String>,
    seen_tables: HashSet<TableRef>,
    seen_columns: HashSet<ColumnRef>,
    seen_functions: HashSet<String>,
    /// Relation nodes with a non-default access.
    targets: HashMap<usize, Access>,
    /// Relation nodes that are not relations (table functions).
    not_relations: HashSet<usize>,
    /// Expression nodes that are not column references (`SELECT INTO` targets).
    not_columns: HashSet<usize>,
    frames: Vec<CteFrame>,
}

impl Walk {
    fn reject(&mut self, why: impl Into<String>) {
        if self.reject.is_none() {
            self.reject = Some(why.into());
        }
    }

    fn target(&mut self, name: &ObjectName, access: Access) {
        self.targets.insert(addr(name), access);
    }

    /// Adds a relation by name with `access`.
    fn add_table(&mut self, name: &ObjectName, access: Access) {
        if let Some(first) = names::first_ident(name)
            && names::is_reserved_unquoted(first)
        {
            self.reject(format!(
                "misparse guard: reserved keyword `{}` used as a relation name",
                first.value
            ));
            return;
        }
        let Some(mut parts) = names::parts(name) else {
            self.reject("unsupported object name form");
            return;
        };
        let Some(last) = parts.pop() else { return };
        self.push_table(parts.pop(), last, access);
    }

    fn push_table(&mut self, schema: Option<String>, name: String, access: Access) {
        let t = TableRef {
            schema,
            name,
            access,
        };
        if self.seen_tables.insert(t.clone()) {
            self.tables.push(t);
        }
    }

    fn add_function(&mut self, name: &ObjectName) {
        match names::parts(name) {
            Some(parts) if !parts.is_empty() => self.push_function(parts.join(".")),
            _ => self.reject("unsupported function name form"),
        }
    }

    fn push_function(&mut self, name: String) {
        if self.seen_functions.insert(name.clone()) {
            self.functions.push(name);
        }
    }

    fn push_operator(&mut self, symbol: Option<String>) {
        if let Some(s) = symbol
            && !self.operators.contains(&s)
        {
            self.operators.push(s);
        }
    }

    fn push_column(&mut self, table: Option<String>, name: String) {
        let c = ColumnRef { table, name };
        if self.seen_columns.insert(c.clone()) {
            self.columns.push(c);
        }
    }

    fn column_from_name(&mut self, name: &ObjectName) {
        if let Some(mut parts) = names::parts(name)
            && let Some(col) = parts.pop()
        {
            self.push_column(parts.pop(), col);
        }
    }

    fn check_alias(&mut self, alias: Option<&sqlparser::ast::TableAlias>) {
        if let Some(a) = alias
            && names::is_reserved_unquoted(&a.name)
        {
            self.reject(format!(
                "misparse guard: reserved keyword `{}` used as a table alias",
                a.name.value
            ));
        }
    }

    /// Whether an unqualified relation name refers to a CTE in scope.
    fn is_cte_ref(&self, name: &ObjectName) -> bool {
        let [_] = name.0.as_slice() else {
            return false;
        };
        let Some(parts) = names::parts(name) else {
            return false;
        };
        let Some(n) = parts.first() else { return false };
        self.frames.iter().rev().any(|f| f.sees(n))
    }

    /// Refuses set-expression forms `sqlparser` mis-handles (iteratively, as
    /// set-operation chains can be very deep).
    fn check_set_exprs(&mut self, body: &SetExpr) {
        let mut stack = vec![body];
        while let Some(e) = stack.pop() {
            match e {
                SetExpr::SetOperation { left, right, .. } => {
                    stack.push(left);
                    stack.push(right);
                }
                SetExpr::Table(_) => {
                    self.reject("the `TABLE name` shorthand is not supported; use SELECT * FROM");
                }
                _ => {}
            }
        }
    }

    fn statement(&mut self, stmt: &Statement) {
        match stmt {
            Statement::Insert(ins) => {
                match &ins.table {
                    TableObject::TableName(n) => self.target(n, Access::Write),
                    TableObject::TableFunction(f) => self.add_function(&f.name),
                    TableObject::TableQuery(_) => {}
                }
                for c in &ins.columns {
                    self.column_from_name(c);
                }
                if let Some(sqlparser::ast::OnInsert::OnConflict(oc)) = &ins.on
                    && let sqlparser::ast::OnConflictAction::DoUpdate(du) = &oc.action
                {
                    self.assignment_columns(&du.assignments);
                }
            }
            Statement::Update(u) => {
                if let TableFactor::Table { name, .. } = &u.table.relation {
                    self.target(name, Access::Write);
                } else {
                    self.reject("unsupported UPDATE target");
                }
                self.where_flags.push(u.selection.is_some());
                self.assignment_columns(&u.assignments);
            }
            Statement::Delete(d) => {
                if d.tables.is_empty() {
                    let from = match &d.from {
                        sqlparser::ast::FromTable::WithFromKeyword(v)
                        | sqlparser::ast::FromTable::WithoutKeyword(v) => v,
                    };
                    for twj in from {
                        if let TableFactor::Table { name, .. } = &twj.relation {
                            self.target(name, Access::Write);
                        } else {
                            self.reject("unsupported DELETE target");
                        }
                    }
                } else {
                    for n in &d.tables {
                        self.add_table(n, Access::Write);
                    }
                }
                self.where_flags.push(d.selection.is_some());
            }
            Statement::Merge(m) => {
                if let TableFactor::Table { name, .. } = &m.table {
                    self.target(name, Access::Write);
                } else {
                    self.reject("unsupported MERGE target");
                }
            }
            Statement::Copy {
                source, to, target, ..
            } => {
                if let CopySource::Table {
                    table_name,
                    columns,
                } = source
                {
                    self.add_table(table_name, if *to { Access::Read } else { Access::Write });
                    for c in columns {
                        self.push_column(None, names::fold(c));
                    }
                }
                let target = match target {
                    SqlCopyTarget::Stdin | SqlCopyTarget::Stdout => CopyTarget::Client,
                    SqlCopyTarget::File { .. } => CopyTarget::ServerFile,
                    SqlCopyTarget::Program { .. } => CopyTarget::Program,
                };
                self.copy.get_or_insert(CopyInfo { to: *to, target });
            }
            Statement::CreateTable(ct) => {
                self.target(&ct.name, Access::Ddl);
                if let Some(p) = &ct.partition_of {
                    self.target(p, Access::Ddl);
                }
                for p in ct.inherits.iter().flatten() {
                    self.add_table(p, Access::Ddl);
                }
                if let Some(like) = &ct.like {
                    let l = match like {
                        sqlparser::ast::CreateTableLikeKind::Parenthesized(l)
                        | sqlparser::ast::CreateTableLikeKind::Plain(l) => l,
                    };
                    self.add_table(&l.name, Access::Read);
                }
                if let Some(c) = &ct.clone {
                    self.add_table(c, Access::Read);
                }
                for col in &ct.columns {
                    self.column_foreign_keys(col);
                }
                for c in &ct.constraints {
                    self.constraint_foreign_key(c);
                }
            }
            Statement::CreateView(cv) => self.target(&cv.name, Access::Ddl),
            Statement::CreateIndex(ci) => self.target(&ci.table_name, Access::Ddl),
            Statement::AlterTable(at) => {
                self.target(&at.name, Access::Ddl);
                for op in &at.operations {
                    use sqlparser::ast::AlterTableOperation as Op;
                    match op {
                        Op::RenameTable { table_name } => {
                            let n = match table_name {
                                sqlparser::ast::RenameTableNameKind::As(n)
                                | sqlparser::ast::RenameTableNameKind::To(n) => n,
                            };
                            self.add_table(n, Access::Ddl);
                        }
                        Op::AddConstraint { constraint, .. } => {
                            self.constraint_foreign_key(constraint)
                        }
                        Op::AddColumn { column_def, .. } => self.column_foreign_keys(column_def),
                        _ => {}
                    }
                }
            }
            Statement::AlterView { name, .. } => self.target(name, Access::Ddl),
            Statement::AlterIndex { name, .. } => self.add_table(name, Access::Ddl),
            Statement::RenameTable(v) => {
                for r in v {
                    self.add_table(&r.old_name, Access::Ddl);
                    self.add_table(&r.new_name, Access::Ddl);
                }
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                if matches!(
                    object_type,
                    ObjectType::Table
                        | ObjectType::View
                        | ObjectType::MaterializedView
                        | ObjectType::Index
                        | ObjectType::Sequence
                ) {
                    for n in names {
                        self.add_table(n, Access::Ddl);
                    }
                }
                if let Some(t) = table {
                    self.add_table(t, Access::Ddl);
                }
            }
            Statement::Truncate(t) => {
                for tt in &t.table_names {
                    self.target(&tt.name, Access::Ddl);
                }
            }
            Statement::Lock(l) => {
                for lt in &l.tables {
                    self.target(&lt.name, Access::Ddl);
                }
            }
            Statement::Grant(g) => self.grant_objects(g.objects.as_ref()),
            Statement::Revoke(r) => self.grant_objects(r.objects.as_ref()),
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => {
                use sqlparser::ast::CommentObject as C;
                match object_type {
                    C::Table | C::View | C::MaterializedView | C::Index | C::Sequence => {
                        self.add_table(object_name, Access::Ddl)
                    }
                    C::Column => {
                        // table.column or schema.table.column
                        let mut n = object_name.clone();
                        n.0.pop();
                        if !n.0.is_empty() {
                            self.add_table(&n, Access::Ddl);
                        }
                    }
                    _ => {}
                }
            }
            Statement::Analyze(a) => {
                if let Some(n) = &a.table_name {
                    self.target(n, Access::Ddl);
                }
            }
            Statement::Vacuum(v) => {
                if let Some(n) = &v.table_name {
                    self.add_table(n, Access::Ddl);
                }
            }
            Statement::CreateTrigger(ct) => {
                self.add_table(&ct.table_name, Access::Ddl);
                if let Some(r) = &ct.referenced_table_name {
                    self.add_table(r, Access::Read);
                }
                if let Some(body) = &ct.exec_body {
                    self.add_function(&body.func_desc.name);
                }
            }
            Statement::DropTrigger(dt) => {
                if let Some(t) = &dt.table_name {
                    self.add_table(t, Access::Ddl);
                }
            }
            Statement::CreatePolicy(p) => self.target(&p.table_name, Access::Ddl),
            Statement::DropPolicy(p) => self.target(&p.table_name, Access::Ddl),
            Statement::AlterPolicy(p) => self.target(&p.table_name, Access::Ddl),
            Statement::CreateSequence { name, owned_by, .. } => {
                self.add_table(name, Access::Ddl);
                // OWNED BY table.column ties the sequence to that table.
                if let Some(o) = owned_by {
                    let mut t = o.clone();
                    t.0.pop();
                    if !t.0.is_empty() {
                        self.add_table(&t, Access::Ddl);
                    }
                }
            }
            Statement::Call(f) => self.add_function(&f.name),
            _ => {}
        }
    }

    /// A foreign key reads the referenced table (and needs the REFERENCES
    /// privilege on it), so it is reported as a read.
    fn column_foreign_keys(&mut self, col: &sqlparser::ast::ColumnDef) {
        for o in &col.options {
            if let sqlparser::ast::ColumnOption::ForeignKey(fk) = &o.option {
                self.add_table(&fk.foreign_table, Access::Read);
            }
        }
    }

    fn constraint_foreign_key(&mut self, c: &sqlparser::ast::TableConstraint) {
        if let sqlparser::ast::TableConstraint::ForeignKey(fk) = c {
            self.add_table(&fk.foreign_table, Access::Read);
        }
    }

    fn assignment_columns(&mut self, assignments: &[sqlparser::ast::Assignment]) {
        for a in assignments {
            match &a.target {
                sqlparser::ast::AssignmentTarget::ColumnName(n) => self.column_from_name(n),
                sqlparser::ast::AssignmentTarget::Tuple(ns) => {
                    for n in ns {
                        self.column_from_name(n);
                    }
                }
            }
        }
    }

    fn grant_objects(&mut self, objects: Option<&GrantObjects>) {
        let Some(objects) = objects else { return };
        match objects {
            GrantObjects::Tables(ns) | GrantObjects::Views(ns) | GrantObjects::Sequences(ns) => {
                for n in ns {
                    self.add_table(n, Access::Ddl);
                }
            }
            GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllViewsInSchema { schemas }
            | GrantObjects::AllMaterializedViewsInSchema { schemas }
            | GrantObjects::AllSequencesInSchema { schemas }
            | GrantObjects::AllExternalTablesInSchema { schemas }
            | GrantObjects::FutureTablesInSchema { schemas }
            | GrantObjects::FutureViewsInSchema { schemas }
            | GrantObjects::FutureSequencesInSchema { schemas }
            | GrantObjects::FutureMaterializedViewsInSchema { schemas }
            | GrantObjects::FutureExternalTablesInSchema { schemas } => {
                for s in schemas {
                    if let Some(parts) = names::parts(s)
                        && let Some(schema) = parts.last()
                    {
                        self.push_table(Some(schema.clone()), "*".to_owned(), Access::Ddl);
                    }
                }
            }
            GrantObjects::Function { name, .. } | GrantObjects::Procedure { name, .. } => {
                self.add_function(name);
            }
            _ => {}
        }
    }

    fn select(&mut self, select: &Select) {
        if let Some(into) = &select.into {
            for t in &into.targets {
                self.not_columns.insert(addr(t));
                match t {
                    Expr::Identifier(id) => self.push_table(None, names::fold(id), Access::Ddl),
                    Expr::CompoundIdentifier(ids) => {
                        let n = ObjectName::from(ids.clone());
                        self.add_table(&n, Access::Ddl);
                    }
                    _ => self.reject("unsupported SELECT INTO target"),
                }
            }
        }
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => self.push_column(None, "*".to_owned()),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => {
                    let table = names::parts(n).and_then(|mut p| p.pop());
                    self.push_column(table, "*".to_owned());
                }
                _ => {}
            }
        }
    }
}

impl Visitor for Walk {
    type Break = ();

    fn pre_visit_statement(&mut self, stmt: &Statement) -> ControlFlow<()> {
        self.statement(stmt);
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let qa = addr(q);
        if let Some(f) = self
            .frames
            .iter_mut()
            .rev()
            .find(|f| f.bodies.contains_key(&qa))
        {
            f.current = f.bodies.get(&qa).copied();
        }
        if let Some(with) = &q.with {
            let mut names = HashMap::new();
            let mut bodies = HashMap::new();
            for (i, c) in with.cte_tables.iter().enumerate() {
                names.entry(names::fold(&c.alias.name)).or_insert(i);
                bodies.insert(addr(&*c.query), i);
            }
            self.frames.push(CteFrame {
                owner: qa,
                names,
                bodies,
                recursive: with.recursive,
                current: None,
            });
        }
        self.check_set_exprs(&q.body);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, q: &Query) -> ControlFlow<()> {
        let qa = addr(q);
        if self.frames.last().is_some_and(|f| f.owner == qa) {
            self.frames.pop();
        }
        if let Some(f) = self
            .frames
            .iter_mut()
            .rev()
            .find(|f| f.bodies.contains_key(&qa))
        {
            f.current = None;
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        self.select(select);
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, name: &ObjectName) -> ControlFlow<()> {
        let a = addr(name);
        if self.not_relations.contains(&a) {
            return ControlFlow::Continue(());
        }
        let access = self.targets.get(&a).copied().unwrap_or(Access::Read);
        // Only reads can refer to a CTE: PostgreSQL never resolves a DML or
        // DDL target to a WITH query.
        if access == Access::Read && self.is_cte_ref(name) {
            return ControlFlow::Continue(());
        }
        self.add_table(name, access);
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, tf: &TableFactor) -> ControlFlow<()> {
        match tf {
            TableFactor::Table {
                name, args, alias, ..
            } => {
                if args.is_some() {
                    // `FROM f(...)`: a table function, not a relation.
                    self.not_relations.insert(addr(name));
                    self.add_function(name);
                }
                self.check_alias(alias.as_ref());
            }
            TableFactor::Function { name, alias, .. } => {
                self.add_function(name);
                self.check_alias(alias.as_ref());
            }
            TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::NestedJoin { alias, .. } => self.check_alias(alias.as_ref()),
            TableFactor::UNNEST { alias, .. } => {
                self.push_function("unnest".to_owned());
                self.check_alias(alias.as_ref());
            }
            TableFactor::JsonTable { alias, .. } => {
                self.push_function("json_table".to_owned());
                self.check_alias(alias.as_ref());
            }
            TableFactor::XmlTable { alias, .. } => {
                self.push_function("xmltable".to_owned());
                self.check_alias(alias.as_ref());
            }
            TableFactor::SemanticView { .. } => self.reject("unsupported table factor"),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.add_function(&f.name),
            Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::Cast { .. }
            | Expr::AnyOp { .. }
            | Expr::AllOp { .. } => self.push_operator(names::operator_of(expr)),
            Expr::Identifier(id) if !self.not_columns.contains(&addr(expr)) => {
                self.push_column(None, names::fold(id));
            }
            Expr::CompoundIdentifier(ids) => {
                if !self.not_columns.contains(&addr(expr))
                    && let [.., t, c] = ids.as_slice()
                {
                    self.push_column(Some(names::fold(t)), names::fold(c));
                }
            }
            // Function-call syntax with special grammar; PostgreSQL runs these
            // as ordinary functions.
            Expr::Substring { .. } => self.push_function("substring".to_owned()),
            Expr::Trim { .. } => self.push_function("trim".to_owned()),
            Expr::Position { .. } => self.push_function("position".to_owned()),
            Expr::Overlay { .. } => self.push_function("overlay".to_owned()),
            Expr::Extract { .. } => self.push_function("extract".to_owned()),
            Expr::Ceil { .. } => self.push_function("ceil".to_owned()),
            Expr::Floor { .. } => self.push_function("floor".to_owned()),
            Expr::Convert { .. } => self.push_function("convert".to_owned()),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
