//! Prints the analysis of each line read from stdin, for inspecting what
//! policies will see:
//!
//! ```text
//! echo "select * from only secrets; drop table t" | cargo run -p portcullis-sql --example analyze
//! ```
//!
//! `\n` and `\r` escapes in a line are turned into real newlines / carriage returns.

use std::io::Read;

fn main() {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read stdin: {e}");
        return;
    }
    for line in input.lines().filter(|l| !l.trim().is_empty()) {
        let sql = line.replace("\\n", "\n").replace("\\r", "\r");
        let a = portcullis_sql::analyze_uncached(&sql);
        println!("== {line}\n   fingerprint: {}", a.fingerprint);
        for s in &a.statements {
            let tables: Vec<String> = s
                .tables
                .iter()
                .map(|t| format!("{}:{}", t.qualified_name(), t.access))
                .collect();
            let columns: Vec<String> = s
                .columns
                .iter()
                .map(|c| match &c.table {
                    Some(t) => format!("{t}.{}", c.name),
                    None => c.name.clone(),
                })
                .collect();
            println!(
                "   {} [{}] tables={tables:?} functions={:?} has_where={:?} copy={:?} columns={columns:?}",
                s.kind, s.leading_keyword, s.functions, s.has_where, s.copy
            );
            if let Some(e) = &s.parse_error {
                println!("      parse_error: {e}");
            }
        }
    }
}
