//! Identifier normalisation, the PostgreSQL way.

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

/// PostgreSQL's `NAMEDATALEN - 1`: longer identifiers are truncated.
pub(crate) const MAX_IDENT_BYTES: usize = 63;

/// Folds an identifier: unquoted → ASCII-lowercased (PostgreSQL folds only
/// ASCII in a UTF-8 database), quoted → kept; then truncated to 63 bytes on a
/// character boundary, as PostgreSQL does.
pub(crate) fn fold(ident: &Ident) -> String {
    let mut s = if ident.quote_style.is_none() {
        ident.value.to_ascii_lowercase()
    } else {
        ident.value.clone()
    };
    if s.len() > MAX_IDENT_BYTES {
        let mut cut = MAX_IDENT_BYTES;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The folded parts of an object name; `None` if a part is not a plain
/// identifier (dialect-specific forms PostgreSQL does not have).
pub(crate) fn parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(id) => Some(fold(id)),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The first identifier of an object name, if it is a plain one.
pub(crate) fn first_ident(name: &ObjectName) -> Option<&Ident> {
    match name.0.first() {
        Some(ObjectNamePart::Identifier(id)) => Some(id),
        _ => None,
    }
}

/// PostgreSQL keywords that can never be an unquoted table, alias or schema
/// name: the `RESERVED_KEYWORD` and `TYPE_FUNC_NAME_KEYWORD` categories of
/// `kwlist.h`. If `sqlparser` hands us one of these as a relation or table
/// alias, it has misread the statement (e.g. `FROM only secrets` read as table
/// `only` aliased `secrets`), so the statement is refused as unparsed.
const NOT_A_RELATION_NAME: &[&str] = &[
    // RESERVED_KEYWORD
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "both",
    "case",
    "cast",
    "check",
    "collate",
    "column",
    "constraint",
    "create",
    "current_catalog",
    "current_date",
    "current_role",
    "current_time",
    "current_timestamp",
    "current_user",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "false",
    "fetch",
    "for",
    "foreign",
    "from",
    "grant",
    "group",
    "having",
    "in",
    "initially",
    "intersect",
    "into",
    "lateral",
    "leading",
    "limit",
    "localtime",
    "localtimestamp",
    "not",
    "null",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "placing",
    "primary",
    "references",
    "returning",
    "select",
    "session_user",
    "some",
    "symmetric",
    "system_user",
    "table",
    "then",
    "to",
    "trailing",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "variadic",
    "when",
    "where",
    "window",
    "with",
    // TYPE_FUNC_NAME_KEYWORD
    "authorization",
    "binary",
    "collation",
    "concurrently",
    "cross",
    "current_schema",
    "freeze",
    "full",
    "ilike",
    "inner",
    "is",
    "isnull",
    "join",
    "left",
    "like",
    "natural",
    "notnull",
    "outer",
    "overlaps",
    "right",
    "similar",
    "tablesample",
    "verbose",
];

/// Whether an *unquoted* identifier is a keyword PostgreSQL never accepts as
/// a relation name, schema name or table alias.
pub(crate) fn is_reserved_unquoted(ident: &Ident) -> bool {
    ident.quote_style.is_none()
        && NOT_A_RELATION_NAME
            .iter()
            .any(|k| ident.value.eq_ignore_ascii_case(k))
}

/// The operator `e` applies itself (not in its operands), by symbol (`=`, `->`, `###`;
/// `OPERATOR(s.###)` gives `###`; an explicit cast [`crate::CAST_SYMBOL`]); `None`
/// for other expressions and the keyword operators (`AND`, `OR`, ...), which are not
/// `pg_operator` entries.
pub(crate) fn operator_of(e: &sqlparser::ast::Expr) -> Option<String> {
    use sqlparser::ast::Expr;
    match e {
        Expr::BinaryOp { op, .. } => binary_op_symbol(op),
        Expr::UnaryOp { op, .. } => symbol(op.to_string()),
        Expr::Cast { .. } => Some(crate::CAST_SYMBOL.to_owned()),
        Expr::AnyOp { compare_op, .. } | Expr::AllOp { compare_op, .. } => {
            binary_op_symbol(compare_op)
        }
        _ => None,
    }
}

fn binary_op_symbol(op: &sqlparser::ast::BinaryOperator) -> Option<String> {
    match op {
        sqlparser::ast::BinaryOperator::PGCustomBinaryOperator(parts) => parts.last().cloned(),
        op => symbol(op.to_string()),
    }
}

/// `text` if it is an operator symbol, not a keyword.
fn symbol(text: String) -> Option<String> {
    (!text.is_empty() && !text.bytes().any(|b| b.is_ascii_alphanumeric() || b == b' '))
        .then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_and_truncation() {
        assert_eq!(fold(&Ident::new("CusTomers")), "customers");
        assert_eq!(fold(&Ident::with_quote('"', "CusTomers")), "CusTomers");
        assert_eq!(fold(&Ident::new("ÉTÉ")), "ÉtÉ");
        let long = "a".repeat(70);
        assert_eq!(fold(&Ident::new(&long)).len(), 63);
        let multi = format!("{}é", "a".repeat(62));
        assert_eq!(fold(&Ident::with_quote('"', &multi)), "a".repeat(62));
        assert!(is_reserved_unquoted(&Ident::new("ONLY")));
        assert!(!is_reserved_unquoted(&Ident::with_quote('"', "only")));
        assert!(!is_reserved_unquoted(&Ident::new("secrets")));
    }
}
