//! Property and fuzz tests over generated statements (test-only).
//!
//! The central property: a literal's *value* never changes the analysis. For
//! every generated statement shape, a variant with plain literals and variants
//! with hostile literals (containing quotes, `;`, comment markers, dollar
//! tags, backslashes, newlines) must analyse identically, must share one cache
//! key, and the cached analysis must equal a fresh one.

use std::sync::Arc;

use sqlparser::ast::Visit;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::canon::{Style, render};
use crate::walk::Walk;
use crate::{Analyzer, analyze_uncached, fingerprint, kind};

/// xorshift64* — deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const TEMPLATES: &[&str] = &[
    "SELECT {c} FROM {t} WHERE {c} = {l}",
    "SELECT * FROM {t} WHERE {c} IN ({l}, {l}, {l}) ORDER BY {c} LIMIT {n}",
    "UPDATE {t} SET {c} = {l}",
    "UPDATE {t} SET {c} = {l} WHERE {c} > {l}",
    "DELETE FROM {t} WHERE {c} = {l}",
    "DELETE FROM {t}",
    "INSERT INTO {t} ({c}) VALUES ({l}), ({l}) RETURNING {c}",
    "WITH x AS (SELECT {c} FROM {t} WHERE {c} = {l}) SELECT * FROM x",
    "WITH d AS (DELETE FROM {t} WHERE {c} = {l} RETURNING *) SELECT * FROM d",
    "SELECT f({l}), pg_catalog.pg_read_file({l}) FROM {t}",
    "SELECT * FROM {t} a JOIN {t2} b ON a.{c} = b.{c} WHERE b.{c} <> {l}",
    "SELECT * FROM {t} WHERE {c} = {l} UNION ALL SELECT * FROM {t2} WHERE {c} = {l}",
    "SELECT (SELECT max({c}) FROM {t2} WHERE {c} < {l}) FROM {t}",
    "SELECT * FROM dblink({l}, {l}) AS r(a int)",
    "COPY {t} TO {l}",
    "COPY {t} TO PROGRAM {l}",
    "COPY {t} FROM STDIN",
    "COPY (SELECT * FROM {t} WHERE {c} = {l}) TO STDOUT",
    "DROP TABLE {t}",
    "TRUNCATE {t}",
    "CREATE TABLE n AS SELECT {l} AS v FROM {t}",
    "CREATE VIEW v AS SELECT * FROM {t} WHERE {c} = {l}",
    "PREPARE p AS DELETE FROM {t} WHERE {c} = $1",
    "EXPLAIN ANALYZE UPDATE {t} SET {c} = {l}",
    "SELECT {l}; DROP TABLE {t}",
    "SELECT {l} AS a; SELECT {l}; UPDATE {t} SET {c} = {l} WHERE {c} = {l}",
    "SELECT * FROM {t} WHERE {c} BETWEEN {l} AND {l} AND {c} LIKE {l}",
    "SELECT CAST({l} AS text), {l}::int, ARRAY[{l}, {l}] FROM {t}",
    "CALL proc({l}, {l})",
    "SET search_path = {l}",
    "LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE",
    "GRANT SELECT ON {t} TO bob",
    "INSERT INTO {t} SELECT * FROM {t2} WHERE {c} = {l} ON CONFLICT DO NOTHING",
];

const TABLES: &[&str] = &[
    "t",
    "secrets",
    "public.orders",
    "\"Mixed\"",
    "s.\"T b\"",
    "CUSTOMERS",
    "db.sch.tab",
];
const COLUMNS: &[&str] = &["a", "id", "\"Col\"", "x1"];
const SEPARATORS: &[&str] = &[
    " ",
    "  ",
    "\n",
    "\t",
    " /* c */ ",
    " -- c\n",
    " /* /* nested */ ; */ ",
    "\r\n",
    " --x\r",
];

/// Literal contents chosen to confuse a naive lexer.
const NASTY: &[&str] = &[
    "",
    ";",
    "'",
    "''",
    "--",
    "/*",
    "*/",
    "$$",
    "$a$",
    "\\",
    "\\'",
    "\n",
    "\r",
    "\"",
    "drop table x",
    "; drop table secrets; --",
    "é",
    "\u{2028}",
    "U&",
    "E'",
    "?",
    "$1",
];

fn simple_literal(rng: &mut Rng) -> String {
    match rng.below(3) {
        0 => rng.below(1000).to_string(),
        1 => "'abc'".to_owned(),
        _ => "1.5".to_owned(),
    }
}

fn nasty_text(rng: &mut Rng) -> String {
    (0..rng.below(4)).map(|_| rng.pick(NASTY)).collect()
}

/// A random literal of the same *kind* as `simple` (string vs number), so
/// both variants are the same statement shape.
fn nasty_literal(rng: &mut Rng, simple: &str) -> String {
    if !simple.starts_with('\'') {
        return rng
            .pick(&[
                "0",
                "123456789012345678901234567890",
                "1e-7",
                ".5",
                "0x1F",
                "1_000",
                "5.",
            ])
            .to_owned();
    }
    let body = nasty_text(rng);
    match rng.below(9) {
        0 => format!("'{}'", body.replace('\'', "''")),
        1 => {
            let e = body.replace('\\', "\\\\").replace('\'', "\\'");
            format!("E'{e}'")
        }
        2 => {
            let mut tag = "q".to_owned();
            while body.contains(&format!("${tag}$")) {
                tag.push('q');
            }
            format!("${tag}${body}${tag}$")
        }
        3 if !body.contains("$$") && !body.ends_with('$') => format!("$${body}$$"),
        4 => format!(
            "'{}'\n'{}'",
            body.replace('\'', "''"),
            body.replace('\'', "''")
        ),
        5 => "B'0101'".to_owned(),
        6 => "X'1F'".to_owned(),
        7 => format!("U&'{}'", body.replace('\'', "''")),
        _ => format!("N'{}'", body.replace('\'', "''")),
    }
}

/// Case-flips ASCII letters of template words (not placeholders).
fn random_case(rng: &mut Rng, s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() && rng.below(3) == 0 {
                if c.is_ascii_lowercase() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            } else {
                c
            }
        })
        .collect()
}

/// One statement shape with parallel plain and hostile literal variants.
struct Shape {
    plain: String,
    nasty: Vec<String>,
}

fn shape(rng: &mut Rng) -> Shape {
    let template = rng.pick(TEMPLATES);
    let t = rng.pick(TABLES);
    let t2 = rng.pick(TABLES);
    let c = rng.pick(COLUMNS);
    // Split the template into fixed text and literal slots.
    let mut fixed: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        cur.push_str(&rest[..i]);
        let close = rest[i..].find('}').map_or(rest.len(), |j| i + j);
        match &rest[i + 1..close] {
            "t" => cur.push_str(t),
            "t2" => cur.push_str(t2),
            "c" => cur.push_str(c),
            "n" => cur.push_str("10"),
            _ => {
                fixed.push(std::mem::take(&mut cur));
            }
        }
        rest = &rest[(close + 1).min(rest.len())..];
    }
    cur.push_str(rest);
    fixed.push(cur);
    // Randomise keyword case only in the template's own words: identifiers in
    // quotes must keep their case, so flip only outside double quotes.
    let fixed: Vec<String> = fixed
        .into_iter()
        .map(|f| {
            let mut out = String::new();
            for (i, part) in f.split('"').enumerate() {
                if i > 0 {
                    out.push('"');
                }
                if i % 2 == 0 {
                    let sep = rng.pick(SEPARATORS);
                    out.push_str(&random_case(rng, part).replace(' ', sep));
                } else {
                    out.push_str(part);
                }
            }
            out
        })
        .collect();
    let slots = fixed.len() - 1;
    let simple: Vec<String> = (0..slots).map(|_| simple_literal(rng)).collect();
    let assemble = |lits: &[String]| {
        let mut s = String::new();
        for (i, f) in fixed.iter().enumerate() {
            s.push_str(f);
            if let Some(l) = lits.get(i) {
                s.push_str(l);
            }
        }
        s
    };
    let nasty = (0..3)
        .map(|_| {
            let lits: Vec<String> = simple.iter().map(|s| nasty_literal(rng, s)).collect();
            assemble(&lits)
        })
        .collect();
    Shape {
        plain: assemble(&simple),
        nasty,
    }
}

#[test]
fn literal_values_never_change_the_analysis() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let an = Analyzer::new(64);
    for _ in 0..1500 {
        let s = shape(&mut rng);
        let base = analyze_uncached(&s.plain);
        assert!(!base.statements.is_empty(), "{}", s.plain);
        for v in &s.nasty {
            let fresh = analyze_uncached(v);
            assert_eq!(fresh, base, "\nplain: {:?}\nnasty: {v:?}", s.plain);
            assert_eq!(render(v, Style::Key), render(&s.plain, Style::Key), "{v:?}");
            let cached = an.analyze(v);
            assert_eq!(*cached, fresh, "{v:?}");
            assert_eq!(fingerprint(v), fresh.fingerprint, "{v:?}");
        }
    }
    assert!(an.stats().hits > 0);
}

#[test]
fn canonical_form_is_idempotent() {
    let mut rng = Rng(7);
    for _ in 0..1500 {
        let s = shape(&mut rng);
        for v in std::iter::once(&s.plain).chain(&s.nasty) {
            let k = render(v, Style::Key);
            assert_eq!(render(&k, Style::Key), k, "{v:?}");
            assert_eq!(render(&k, Style::Fingerprint), fingerprint(v), "{v:?}");
        }
    }
}

/// Summary facts computed by parsing the ORIGINAL text directly.
fn direct(sql: &str) -> Option<(kind::StatementKind, Vec<crate::TableRef>, Vec<String>)> {
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
    let [stmt] = parsed.as_slice() else {
        return None;
    };
    let mut w = Walk::default();
    let _ = stmt.visit(&mut w);
    w.reject
        .is_none()
        .then(|| (kind::classify(stmt), w.tables, w.functions))
}

#[test]
fn canonical_text_means_what_the_original_means() {
    // For statements sqlparser can parse as written, analysing the canonical
    // text must give the same kind, tables and functions.
    let mut rng = Rng(42);
    let mut compared = 0;
    for _ in 0..1500 {
        let s = shape(&mut rng);
        let a = analyze_uncached(&s.plain);
        if a.statements.len() != 1 {
            continue;
        }
        if let Some((k, tables, functions)) = direct(&s.plain) {
            let st = &a.statements[0];
            assert_eq!(
                (st.kind, &st.tables, &st.functions),
                (k, &tables, &functions),
                "{:?}",
                s.plain
            );
            compared += 1;
        }
    }
    assert!(compared > 500, "only {compared} compared");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xDEAD_BEEF);
    let an = Analyzer::new(16);
    let alphabet: &[u8] = b"selctfromwhe;'\"$()*/-_1eEuU&\\\n\r\t .,:=<>?!|@#%^~[]{}0x";
    for i in 0..4000 {
        let len = rng.below(48);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                if i % 4 == 0 {
                    (rng.next() & 0xff) as u8
                } else {
                    alphabet[rng.below(alphabet.len())]
                }
            })
            .collect();
        let s = String::from_utf8_lossy(&bytes);
        let a = an.analyze(&s);
        assert_eq!(*a, analyze_uncached(&s), "{s:?}");
        let _ = crate::split_statements(&s);
        let k = render(&s, Style::Key);
        assert_eq!(render(&k, Style::Key), k, "{s:?}");
    }
}

#[test]
fn truncated_statements_never_panic() {
    let corpus = [
        "SELECT E'a\\'b' || U&'x' UESCAPE '!' , $q$ $ $q$ /* /* */ */ -- \r\n \"a\"\"b\" FROM t",
        "WITH RECURSIVE x(a) AS (SELECT 1 UNION ALL SELECT a+1 FROM x WHERE a < 10) SELECT * FROM x",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT 2",
        "COPY (SELECT * FROM secrets) TO PROGRAM 'gzip > /tmp/x' WITH (FORMAT csv)",
        "select * from U&\"d!0061ta\" UESCAPE '!' where x = B'01' and y = X'ff'",
    ];
    for sql in corpus {
        for i in 0..=sql.len() {
            if let Some(prefix) = sql.get(..i) {
                let a = analyze_uncached(prefix);
                assert_eq!(a.fingerprint, fingerprint(prefix));
            }
        }
    }
}

#[test]
fn deep_nesting_is_survived() {
    // Long operator and set-operation chains build deep left-leaning trees
    // that sqlparser's recursion limit does not bound.
    let an = Arc::new(Analyzer::new(4));
    let cases = [
        format!("select {}1", "1+".repeat(20_000)),
        format!("select 1{}", " union select 1".repeat(8_000)),
        format!("select {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
    ];
    for sql in cases {
        // Run on a thread with a small stack to model a runtime worker.
        let an2 = Arc::clone(&an);
        let h = std::thread::Builder::new()
            .stack_size(512 * 1024)
            .spawn(move || an2.analyze(&sql))
            .expect("spawn");
        let a = h.join().expect("no panic");
        assert_eq!(a.statements.len(), 1);
    }
}
