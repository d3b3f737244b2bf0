//! Diagnostics for masked identities: values can leave in an ErrorResponse or a
//! NoticeResponse instead of a row (`RAISE NOTICE '%', ssn` in a function,
//! `invalid input syntax for type integer: "123-45-6789"`, `large object 123456789
//! does not exist`). An identity is masked when its masking policies mask a column of
//! unknown provenance (so the rule follows the policies, not a list of names); for it
//! every error and notice the server sends is scrubbed by [`scrub_for_masked`].

use portcullis_wire::backend::ErrorFields;

/// The message that replaces one withheld whole.
pub const WITHHELD: &str = "message withheld by the Portcullis gateway (masking)";

/// The detail added to every scrubbed error or notice.
pub const WITHHELD_DETAIL: &str =
    "Values in this message were withheld by the Portcullis gateway (masking).";

/// Scrubs an error (`notice` false) or a notice for a masked identity:
/// - the whole message is withheld for every notice, warning or other non-error
///   report, for data exceptions (class 22), integrity violations (23), PL/pgSQL
///   errors (P0: `RAISE EXCEPTION`), and any error raised inside a function, `DO`
///   block or trigger (it has a context or an internal query): these can carry any
///   value, quoted or not;
/// - otherwise every double-quoted part and every run of digits of the message
///   become `…` (`relation "…" does not exist`);
/// - detail, hint, context and internal query are dropped; the SQLSTATE, severity,
///   position and the schema/table/column/type/constraint names stay.
pub fn scrub_for_masked(e: &ErrorFields, notice: bool) -> ErrorFields {
    let code = e.code().unwrap_or("");
    let nested = e.fields.iter().any(|(f, _)| matches!(f, b'W' | b'q'));
    let whole = notice
        || nested
        || code.starts_with("22")
        || code.starts_with("23")
        || code.starts_with("P0")
        || code.starts_with("00")
        || code.starts_with("01")
        || code.starts_with("02");
    let mut out = ErrorFields::default();
    for (f, v) in &e.fields {
        match f {
            b'M' if whole => out.fields.push((b'M', WITHHELD.into())),
            b'M' => out.fields.push((b'M', withhold_values(v))),
            b'S' | b'V' | b'C' | b'P' | b's' | b't' | b'c' | b'd' | b'n' | b'F' | b'L' | b'R' => {
                out.fields.push((*f, v.clone()))
            }
            _ => {}
        }
    }
    out.fields.push((b'D', WITHHELD_DETAIL.into()));
    out
}

/// A message with its double-quoted parts and runs of digits replaced by `…`.
pub fn withhold_values(m: &str) -> String {
    let mut out = String::with_capacity(m.len());
    let mut quoted = false;
    let mut digits = false;
    for c in m.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…");
            }
            quoted = !quoted;
            if !quoted {
                out.push('"');
            }
            digits = false;
        } else if quoted {
        } else if c.is_ascii_digit() {
            if !digits {
                out.push('…');
            }
            digits = true;
        } else {
            digits = false;
            out.push(c);
        }
    }
    if quoted {
        out.push('"');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_wire::backend::Severity;

    #[test]
    fn messages_lose_quoted_values_and_numbers() {
        let e = ErrorFields::new(
            Severity::Error,
            "42704",
            "large object 123456789 does not exist",
        );
        assert_eq!(
            scrub_for_masked(&e, false).message(),
            Some("large object … does not exist")
        );
        let e = ErrorFields::new(
            Severity::Error,
            "42P01",
            "relation \"123-45-6789\" does not exist",
        );
        assert_eq!(
            scrub_for_masked(&e, false).message(),
            Some("relation \"…\" does not exist")
        );
    }

    #[test]
    fn raised_values_are_withheld_whole() {
        let raised = ErrorFields::new(Severity::Error, "P0001", "123-45-6789");
        assert_eq!(scrub_for_masked(&raised, false).message(), Some(WITHHELD));
        let mut nested = ErrorFields::new(Severity::Error, "42P01", "123 45 abc");
        nested
            .fields
            .push((b'W', "PL/pgSQL function f() line 1 at RAISE".into()));
        let s = scrub_for_masked(&nested, false);
        assert_eq!(s.message(), Some(WITHHELD));
        assert!(s.fields.iter().all(|(f, _)| *f != b'W'));
        let notice =
            ErrorFields::new(Severity::Notice, "00000", "alice@example.com").detail("123-45-6789");
        let s = scrub_for_masked(&notice, true);
        assert_eq!(s.message(), Some(WITHHELD));
        assert_eq!(s.get(b'D'), Some(WITHHELD_DETAIL));
        assert_eq!(s.code(), Some("00000"));
    }
}
