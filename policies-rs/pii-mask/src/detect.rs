//! Value-pattern detection for text columns nobody listed: emails, card numbers
//! (13–19 digits, spaces or dashes allowed, Luhn-valid) and US SSNs (`123-45-6789`),
//! found anywhere in a value and masked in place.

/// Which patterns to look for, and how a match is replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Detector {
    /// Emails: keep the domain (`***@example.com`).
    pub email: bool,
    /// Card numbers: keep the last 4 digits.
    pub card: bool,
    /// SSNs: keep the last 4 digits.
    pub ssn: bool,
}

/// Text-like type OIDs whose values are scanned: text, varchar, bpchar, name, char,
/// unknown.
pub const TEXT_TYPES: [u32; 6] = [25, 1043, 1042, 19, 18, 705];

impl Detector {
    /// True when at least one pattern is enabled.
    pub fn enabled(&self) -> bool {
        self.email || self.card || self.ssn
    }

    /// `value` with every match masked.
    pub fn mask(&self, value: &str) -> String {
        let mut out = value.to_owned();
        if self.card {
            out = mask_cards(&out);
        }
        if self.ssn {
            out = mask_ssns(&out);
        }
        if self.email {
            out = mask_emails(&out);
        }
        out
    }
}

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(*d);
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// Masks Luhn-valid runs of 13–19 digits (single spaces or dashes between them),
/// keeping the last 4 digits and the separators.
fn mask_cards(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_digit()) {
            // Copy one whole character.
            let ch = s[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
            continue;
        }
        // A run of digits with single separators.
        let start = i;
        let mut end = i;
        let mut digits = Vec::new();
        let mut j = i;
        while j < b.len() {
            if b[j].is_ascii_digit() {
                digits.push(b[j] - b'0');
                j += 1;
                end = j;
            } else if (b[j] == b' ' || b[j] == b'-') && j + 1 < b.len() && b[j + 1].is_ascii_digit()
            {
                j += 1;
            } else {
                break;
            }
        }
        let run = &s[start..end];
        if (13..=19).contains(&digits.len()) && luhn(&digits) {
            let keep_from = digits.len() - 4;
            let mut n = 0;
            for ch in run.chars() {
                if ch.is_ascii_digit() {
                    out.push(if n < keep_from { '*' } else { ch });
                    n += 1;
                } else {
                    out.push(ch);
                }
            }
        } else {
            out.push_str(run);
        }
        i = end;
    }
    out
}

/// Masks `ddd-dd-dddd` not inside a longer run of digits: `***-**-6789`.
fn mask_ssns(s: &str) -> String {
    let b = s.as_bytes();
    let shape = |i: usize| -> bool {
        i + 11 <= b.len()
            && b[i..i + 3].iter().all(u8::is_ascii_digit)
            && b[i + 3] == b'-'
            && b[i + 4..i + 6].iter().all(u8::is_ascii_digit)
            && b[i + 6] == b'-'
            && b[i + 7..i + 11].iter().all(u8::is_ascii_digit)
            && (i == 0 || !b[i - 1].is_ascii_digit())
            && (i + 11 == b.len() || !b[i + 11].is_ascii_digit())
    };
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if shape(i) {
            out.push_str("***-**-");
            out.push_str(&s[i + 7..i + 11]);
            i += 11;
        } else {
            let ch = s[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn email_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._%+-".contains(c)
}

/// Masks `local@domain.tld`, keeping the domain: `***@domain.tld`.
fn mask_emails(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '@' && i > 0 && email_char(chars[i - 1]) {
            // The local part already copied: take it back.
            let mut start = i;
            while start > 0 && email_char(chars[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < chars.len()
                && (chars[end].is_ascii_alphanumeric() || chars[end] == '.' || chars[end] == '-')
            {
                end += 1;
            }
            let domain: String = chars[i + 1..end].iter().collect();
            let domain = domain.trim_end_matches('.');
            let tld_ok = domain.rsplit_once('.').is_some_and(|(host, tld)| {
                !host.is_empty() && tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())
            });
            if tld_ok {
                let local_len = i - start;
                for _ in 0..local_len {
                    out.pop();
                }
                out.push_str("***@");
                out.push_str(domain);
                i += 1 + domain.chars().count();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Detector {
        Detector {
            email: true,
            card: true,
            ssn: true,
        }
    }

    #[test]
    fn finds_values_inside_text() {
        let d = all();
        assert_eq!(
            d.mask("call 123-45-6789 or mail ada.l@example.com, card 4111 1111 1111 1111."),
            "call ***-**-6789 or mail ***@example.com, card **** **** **** 1111."
        );
        assert_eq!(d.mask("4111-1111-1111-1111"), "****-****-****-1111");
        assert_eq!(d.mask("4111111111111111"), "************1111");
    }

    #[test]
    fn leaves_lookalikes_alone() {
        let d = all();
        // Not Luhn-valid, too short, a longer digit run, no TLD.
        assert_eq!(d.mask("4111 1111 1111 1112"), "4111 1111 1111 1112");
        assert_eq!(d.mask("order 12345"), "order 12345");
        assert_eq!(d.mask("1123-45-67890"), "1123-45-67890");
        assert_eq!(d.mask("user@localhost"), "user@localhost");
        assert_eq!(d.mask("@handle"), "@handle");
        assert_eq!(d.mask("ünïcode ✓ 123-45-6789"), "ünïcode ✓ ***-**-6789");
    }

    #[test]
    fn only_enabled_patterns() {
        let d = Detector {
            email: true,
            ..Detector::default()
        };
        assert_eq!(d.mask("a@b.io 123-45-6789"), "***@b.io 123-45-6789");
    }
}
