//! Literal-free renderings of SQL text: the public fingerprint and the
//! internal cache key.
//!
//! Both are produced by one pass over the [`Lexer`] token stream and differ
//! only in how literals are written:
//!
//! | token                         | fingerprint       | cache key / parse text |
//! |-------------------------------|-------------------|------------------------|
//! | string literal (any form)     | `?`               | `''`                   |
//! | numeric literal               | `?`               | `0`                    |
//! | unquoted identifier / keyword | lowercased        | lowercased             |
//! | `"quoted identifier"`         | verbatim          | verbatim               |
//! | valid `U&"..."` identifier    | decoded, `"..."`  | decoded, `"..."`       |
//! | `$n`, operators, punctuation  | verbatim          | verbatim               |
//! | whitespace and comments       | one space         | one space              |
//!
//! A space is also inserted between a literal placeholder and an adjacent
//! token unless that token is punctuation (`( ) [ ] , ; :`) or an operator, so
//! that placeholders can never merge with their neighbours (`e'x'` is an
//! `E''` string while `e 'x'` is not; `1abc` must not become `0abc`).
//!
//! ## Why the cache is sound
//!
//! The analysis of a query is computed **only from its cache key** (see
//! `analyze::analyze_key`): the key is split, the literal-free text is handed
//! to `sqlparser`, and the per-statement fingerprints are re-rendered from it.
//! So two queries with the same key get the same analysis by construction,
//! whatever their literal values were. Literal values that *do* change meaning
//! are resolved before the key is built: a `U&"..." UESCAPE '!'` identifier is
//! decoded into a plain quoted identifier, so the escape literal's value is
//! reflected in the key. Rendering is idempotent (`key(key(x)) == key(x)`) and
//! `fingerprint(key(x)) == fingerprint(x)`; both are property-tested.

use crate::lexer::{Lexer, Token, TokenKind, Unterminated, decode_unicode_ident};

/// Which literal placeholders to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// `?` for every literal (the public fingerprint).
    Fingerprint,
    /// `''` for strings and `0` for numbers: valid SQL for `sqlparser`.
    Key,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Placeholder,
    Tight,
    Normal,
}

#[inline]
fn class(kind: TokenKind) -> Class {
    match kind {
        TokenKind::String | TokenKind::Number => Class::Placeholder,
        TokenKind::Op => Class::Tight,
        TokenKind::Punct(c) if c != b'.' => Class::Tight,
        _ => Class::Normal,
    }
}

/// Renders `sql` in `style`, appending to `out`.
pub(crate) fn render_into(sql: &str, style: Style, out: &mut String) {
    let mut prev: Option<Class> = None;
    let mut pending_space = false;
    for tok in Lexer::new(sql) {
        if tok.kind == TokenKind::Space {
            pending_space = true;
            continue;
        }
        let cls = class(tok.kind);
        if let Some(p) = prev {
            let ph = p == Class::Placeholder || cls == Class::Placeholder;
            let tight = p == Class::Tight || cls == Class::Tight;
            if pending_space || (ph && !tight) {
                out.push(' ');
            }
        }
        pending_space = false;
        prev = Some(cls);
        write_token(sql, tok, style, out);
    }
}

/// Renders `sql` in `style` into a new string.
pub(crate) fn render(sql: &str, style: Style) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    render_into(sql, style, &mut out);
    out
}

#[inline]
fn write_token(sql: &str, tok: Token, style: Style, out: &mut String) {
    let text = sql.get(tok.start..tok.end).unwrap_or("");
    match tok.kind {
        TokenKind::Word => {
            let at = out.len();
            out.push_str(text);
            if let Some(tail) = out.get_mut(at..) {
                tail.make_ascii_lowercase();
            }
        }
        TokenKind::String => out.push_str(match style {
            Style::Fingerprint => "?",
            Style::Key => "''",
        }),
        TokenKind::Number => out.push(match style {
            Style::Fingerprint => '?',
            Style::Key => '0',
        }),
        TokenKind::UnicodeIdent { esc, body_end } => {
            let decoded = esc.and_then(|e| {
                sql.get(tok.start + 3..body_end)
                    .and_then(|body| decode_unicode_ident(body, e))
            });
            match decoded {
                Some(name) => {
                    out.push('"');
                    for c in name.chars() {
                        if c == '"' {
                            out.push('"');
                        }
                        out.push(c);
                    }
                    out.push('"');
                }
                // PostgreSQL rejects it; keep it verbatim so the analysis
                // can recognise and refuse it.
                None => out.push_str(text),
            }
        }
        TokenKind::Unterminated(u) => out.push_str(match u {
            Unterminated::String => "'",
            Unterminated::Dollar => "$$",
            Unterminated::Ident => "\"",
            Unterminated::Comment => "/*",
        }),
        TokenKind::Space => {}
        TokenKind::QuotedIdent
        | TokenKind::Param
        | TokenKind::Op
        | TokenKind::Punct(_)
        | TokenKind::Other => out.push_str(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(s: &str) -> String {
        render(s, Style::Fingerprint)
    }
    fn key(s: &str) -> String {
        render(s, Style::Key)
    }

    #[test]
    fn basic_fingerprints() {
        assert_eq!(
            fp("SELECT abalance FROM pgbench_accounts WHERE aid = 1"),
            "select abalance from pgbench_accounts where aid = ?"
        );
        assert_eq!(
            fp("select   abalance\n\tFROM pgbench_accounts /* hi */ where aid=2"),
            "select abalance from pgbench_accounts where aid=?"
        );
        assert_eq!(
            fp("select 'a', E'b\\'', $$c$$, B'1', X'f', 1.5e3, $1"),
            "select ?, ?, ?, ?, ?, ?, $1"
        );
        assert_eq!(fp("select \"Mixed\" from T"), "select \"Mixed\" from t");
        assert_eq!(fp("DROP/**/TABLE customers"), "drop table customers");
        assert_eq!(fp("a IN (1, 2,3)"), "a in (?, ?,?)");
        assert_eq!(fp("select e'x', e 'x', 1abc"), "select ?, e ?, ? abc");
        assert_eq!(fp("x::int, 'a'::text, a[1:2]"), "x::int, ?::text, a[?:?]");
        assert_eq!(fp(""), "");
        assert_eq!(fp("  -- only a comment\n"), "");
        assert_eq!(fp("select 1 -- c\r drop"), "select ? drop");
    }

    #[test]
    fn keys() {
        assert_eq!(
            key("select 'x' || e'\\n', 1.5 from t"),
            "select '' || '', 0 from t"
        );
        assert_eq!(
            key(r#"select U&"d\0061ta" from x"#),
            r#"select "data" from x"#
        );
        assert_eq!(
            key(r#"select U&"d!0061ta" UESCAPE '!' from x"#),
            r#"select "data" from x"#
        );
        assert_eq!(
            key(r#"select U&"a""\0022" from x"#),
            r#"select "a""""" from x"#
        );
        assert_eq!(key("select 'abc"), "select '");
        assert_eq!(key("select 1 /* abc"), "select 0 /*");
    }

    #[test]
    fn idempotent_examples() {
        for s in [
            "select 'a'\n'b', e'x' from t where a=-1 and b<>'' ; select $$x$$",
            "select 1abc, e 'x', \"A\"\"b\" , U&\"\\0041\" , 1..2",
            "select 'unterminated",
            "select /* unterminated",
            "select $q$ unterminated",
        ] {
            let k = key(s);
            assert_eq!(key(&k), k, "{s}");
            assert_eq!(fp(&k), fp(s), "{s}");
        }
    }
}
