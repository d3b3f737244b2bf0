//! The built-in mask functions, applied natively to one value of a known type in text
//! or binary format.
//!
//! Every function returns a value valid for the column's type in the column's format,
//! or `None` (SQL NULL) when no valid value exists (e.g. `email` on an integer,
//! `partial` on a date, a redaction constant that is not a valid integer).
//! Text-format dates and timestamps are read in the ISO `DateStyle` only (the
//! PostgreSQL default); anything else becomes NULL.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A mask the host applies (the native cases of the WIT `mask-function`).
#[derive(Debug, Clone, PartialEq)]
pub enum NativeMask {
    /// Replace with a constant (NULL if invalid for the type).
    Redact(String),
    /// Replace with NULL.
    Null,
    /// Keep `first` and `last` characters, replace each other one with `fill`.
    Partial {
        /// Characters kept at the start.
        first: usize,
        /// Characters kept at the end.
        last: usize,
        /// Replacement for each hidden character.
        fill: String,
    },
    /// Keep the domain of an e-mail address.
    Email,
    /// Deterministic keyed pseudonym.
    Pseudonym,
    /// Replace digits with `*`, keeping the last N digits and the formatting.
    Digits(usize),
    /// Generalise a date or timestamp to its year (`true`) or month (`false`).
    Date {
        /// Year only (else year and month).
        year: bool,
    },
    /// Round a number to a multiple of this step.
    Round(f64),
}

/// The type classes the mask functions understand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeClass {
    /// text, varchar, bpchar, name (text and binary formats are the same bytes).
    Text,
    /// int2.
    Int2,
    /// int4.
    Int4,
    /// int8.
    Int8,
    /// float4.
    Float4,
    /// float8.
    Float8,
    /// numeric.
    Numeric,
    /// bool.
    Bool,
    /// date.
    Date,
    /// timestamp.
    Timestamp,
    /// timestamptz.
    Timestamptz,
    /// json.
    Json,
    /// jsonb.
    Jsonb,
    /// Anything else: only `null` and NULL-producing masks apply.
    Other,
}

impl TypeClass {
    /// The class of a type OID.
    pub fn of(oid: u32) -> TypeClass {
        match oid {
            25 | 1043 | 1042 | 19 => TypeClass::Text,
            21 => TypeClass::Int2,
            23 => TypeClass::Int4,
            20 => TypeClass::Int8,
            700 => TypeClass::Float4,
            701 => TypeClass::Float8,
            1700 => TypeClass::Numeric,
            16 => TypeClass::Bool,
            1082 => TypeClass::Date,
            1114 => TypeClass::Timestamp,
            1184 => TypeClass::Timestamptz,
            114 => TypeClass::Json,
            3802 => TypeClass::Jsonb,
            _ => TypeClass::Other,
        }
    }

    fn int_range(self) -> Option<(i64, i64)> {
        match self {
            TypeClass::Int2 => Some((i16::MIN as i64, i16::MAX as i64)),
            TypeClass::Int4 => Some((i32::MIN as i64, i32::MAX as i64)),
            TypeClass::Int8 => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }
}

/// A column's type and wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnType {
    /// The type class.
    pub class: TypeClass,
    /// Binary (`true`) or text format.
    pub binary: bool,
}

impl ColumnType {
    /// From a type OID and a format code (1 binary, else text).
    pub fn new(type_oid: u32, format: i16) -> Self {
        ColumnType {
            class: TypeClass::of(type_oid),
            binary: format == 1,
        }
    }
}

/// The key of deterministic pseudonyms (from the gateway configuration).
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl std::fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PseudonymKey(..)")
    }
}

impl PseudonymKey {
    /// A key from secret bytes.
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        PseudonymKey(key.into())
    }

    /// A random key (pseudonyms are then stable only for this gateway's lifetime).
    pub fn random() -> Self {
        PseudonymKey(rand::random::<[u8; 32]>().to_vec())
    }

    fn digest(&self, domain: &[u8], value: &[u8]) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts any key");
        mac.update(domain);
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

/// A mask ready for one column: constants pre-encoded, so applying it per row only
/// does the per-value work.
#[derive(Debug, Clone)]
pub struct CompiledMask {
    mask: NativeMask,
    ty: ColumnType,
    /// For `redact`: the encoded constant (`None`: NULL).
    constant: Option<Vec<u8>>,
}

impl CompiledMask {
    /// Prepares `mask` for a column of type `ty`.
    pub fn new(mask: NativeMask, ty: ColumnType) -> Self {
        let constant = match &mask {
            NativeMask::Redact(c) => encode_constant(ty, c),
            _ => None,
        };
        CompiledMask { mask, ty, constant }
    }

    /// The mask.
    pub fn mask(&self) -> &NativeMask {
        &self.mask
    }

    /// Masks one non-NULL value into `out`. Returns `false` for NULL (`out` is then
    /// left empty).
    pub fn apply(&self, value: &[u8], key: &PseudonymKey, out: &mut Vec<u8>) -> bool {
        out.clear();
        let ok = match &self.mask {
            NativeMask::Null => false,
            NativeMask::Redact(_) => match &self.constant {
                Some(c) => {
                    out.extend_from_slice(c);
                    true
                }
                None => false,
            },
            NativeMask::Partial { first, last, fill } => {
                self.ty.class == TypeClass::Text && partial(value, *first, *last, fill, out)
            }
            NativeMask::Email => self.ty.class == TypeClass::Text && email(value, out),
            NativeMask::Pseudonym => pseudonym(self.ty, value, key, out),
            NativeMask::Digits(n) => digits(self.ty, value, *n, out),
            NativeMask::Date { year } => date(self.ty, value, *year, out),
            NativeMask::Round(step) => round(self.ty, value, *step, out),
        };
        if !ok {
            out.clear();
        }
        ok
    }
}

/// [`encode_constant`], appending the value to `out`; `false` (and `out` unchanged)
/// when it is not a valid value of the type. Text needs no copy but this one.
pub fn encode_constant_into(ty: ColumnType, text: &str, out: &mut Vec<u8>) -> bool {
    if ty.class == TypeClass::Text {
        out.extend_from_slice(text.as_bytes());
        return true;
    }
    match encode_constant(ty, text) {
        Some(v) => {
            out.extend_from_slice(&v);
            true
        }
        None => false,
    }
}

/// Encodes a constant (given as text) for a column type, if it is a valid value.
pub fn encode_constant(ty: ColumnType, text: &str) -> Option<Vec<u8>> {
    let t = text.trim();
    match ty.class {
        TypeClass::Text => Some(text.as_bytes().to_vec()),
        c @ (TypeClass::Int2 | TypeClass::Int4 | TypeClass::Int8) => {
            let v: i64 = t.parse().ok()?;
            let (lo, hi) = c.int_range()?;
            (lo..=hi).contains(&v).then(|| encode_int(c, ty.binary, v))
        }
        TypeClass::Float4 | TypeClass::Float8 => {
            let v: f64 = t.parse().ok()?;
            Some(encode_float(ty, v))
        }
        TypeClass::Numeric => {
            let v: f64 = t.parse().ok()?;
            (!ty.binary && v.is_finite()).then(|| t.as_bytes().to_vec())
        }
        TypeClass::Bool => {
            let v = match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "on" | "1" => true,
                "f" | "false" | "no" | "off" | "0" => false,
                _ => return None,
            };
            Some(if ty.binary {
                vec![v as u8]
            } else {
                (if v { "t" } else { "f" }).as_bytes().to_vec()
            })
        }
        TypeClass::Date => {
            let (y, m, d) = parse_iso_date(t.as_bytes())?;
            if t.len() != 10 {
                return None;
            }
            Some(encode_date(ty.binary, y, m, d))
        }
        TypeClass::Json | TypeClass::Jsonb => {
            serde_json::from_str::<serde_json::Value>(t).ok()?;
            let mut v = Vec::with_capacity(t.len() + 1);
            if ty.binary && ty.class == TypeClass::Jsonb {
                v.push(1);
            }
            v.extend_from_slice(t.as_bytes());
            Some(v)
        }
        TypeClass::Timestamp | TypeClass::Timestamptz | TypeClass::Other => None,
    }
}

fn partial(value: &[u8], first: usize, last: usize, fill: &str, out: &mut Vec<u8>) -> bool {
    if value.is_ascii() {
        // One byte per character.
        let n = value.len();
        if n <= first.saturating_add(last) {
            for _ in 0..n {
                out.extend_from_slice(fill.as_bytes());
            }
        } else {
            out.extend_from_slice(&value[..first]);
            for _ in 0..n - first - last {
                out.extend_from_slice(fill.as_bytes());
            }
            out.extend_from_slice(&value[n - last..]);
        }
        return true;
    }
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    let n = s.chars().count();
    if n <= first.saturating_add(last) {
        // Too short to keep anything without revealing all of it.
        for _ in 0..n {
            out.extend_from_slice(fill.as_bytes());
        }
        return true;
    }
    for (i, c) in s.chars().enumerate() {
        if i < first || i >= n - last {
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        } else {
            out.extend_from_slice(fill.as_bytes());
        }
    }
    true
}

fn email(value: &[u8], out: &mut Vec<u8>) -> bool {
    out.extend_from_slice(b"****");
    if let Some(at) = value.iter().rposition(|b| *b == b'@') {
        out.extend_from_slice(&value[at..]);
    }
    true
}

fn digits(ty: ColumnType, value: &[u8], keep: usize, out: &mut Vec<u8>) -> bool {
    match ty.class {
        TypeClass::Text => {
            let total = value.iter().filter(|b| b.is_ascii_digit()).count();
            let mut seen = 0usize;
            for b in value {
                if b.is_ascii_digit() {
                    seen += 1;
                    out.push(if total - seen < keep { *b } else { b'*' });
                } else {
                    out.push(*b);
                }
            }
            true
        }
        c @ (TypeClass::Int2 | TypeClass::Int4 | TypeClass::Int8) => {
            let Some(v) = decode_int(c, ty.binary, value) else {
                return false;
            };
            let m = 10u64.checked_pow(keep.min(19) as u32).unwrap_or(u64::MAX);
            let kept = (v.unsigned_abs() % m) as i64;
            out.extend_from_slice(&encode_int(c, ty.binary, kept));
            true
        }
        _ => false,
    }
}

fn pseudonym(ty: ColumnType, value: &[u8], key: &PseudonymKey, out: &mut Vec<u8>) -> bool {
    match ty.class {
        TypeClass::Text => {
            let d = key.digest(b"text:", value);
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.extend_from_slice(b"pseu_");
            for b in &d[..8] {
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            true
        }
        c @ (TypeClass::Int2 | TypeClass::Int4 | TypeClass::Int8) => {
            let Some(v) = decode_int(c, ty.binary, value) else {
                return false;
            };
            let d = key.digest(b"int:", v.to_string().as_bytes());
            let raw = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
            let (_, hi) = c.int_range().expect("integer class");
            let token = 1 + (raw % (hi as u64)) as i64;
            out.extend_from_slice(&encode_int(c, ty.binary, token.min(hi)));
            true
        }
        _ => false,
    }
}

fn round(ty: ColumnType, value: &[u8], step: f64, out: &mut Vec<u8>) -> bool {
    if !(step.is_finite() && step > 0.0) {
        return false;
    }
    match ty.class {
        c @ (TypeClass::Int2 | TypeClass::Int4 | TypeClass::Int8) => {
            let Some(v) = decode_int(c, ty.binary, value) else {
                return false;
            };
            let step = step.round().max(1.0);
            let r = ((v as f64) / step).round() * step;
            let (lo, hi) = c.int_range().expect("integer class");
            let r = r.clamp(lo as f64, hi as f64) as i64;
            out.extend_from_slice(&encode_int(c, ty.binary, r));
            true
        }
        TypeClass::Float4 | TypeClass::Float8 => {
            let v = if ty.binary {
                match (ty.class, value.len()) {
                    (TypeClass::Float4, 4) => {
                        f32::from_be_bytes(value.try_into().expect("4 bytes")) as f64
                    }
                    (TypeClass::Float8, 8) => {
                        f64::from_be_bytes(value.try_into().expect("8 bytes"))
                    }
                    _ => return false,
                }
            } else {
                match std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.parse::<f64>().ok())
                {
                    Some(v) => v,
                    None => return false,
                }
            };
            if !v.is_finite() {
                return false;
            }
            out.extend_from_slice(&encode_float(ty, (v / step).round() * step));
            true
        }
        TypeClass::Numeric if !ty.binary => {
            let Some(v) = std::str::from_utf8(value)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
            else {
                return false;
            };
            if !v.is_finite() {
                return false;
            }
            let r = (v / step).round() * step;
            let text = if step.fract() == 0.0 {
                format!("{r:.0}")
            } else {
                let s = format!("{r:.10}");
                s.trim_end_matches('0').trim_end_matches('.').to_owned()
            };
            out.extend_from_slice(text.as_bytes());
            true
        }
        _ => false,
    }
}

fn date(ty: ColumnType, value: &[u8], year: bool, out: &mut Vec<u8>) -> bool {
    const DAY_US: i64 = 86_400_000_000;
    let trunc = |y: i64, m: u32, _d: u32| if year { (y, 1, 1) } else { (y, m, 1) };
    match (ty.class, ty.binary) {
        (TypeClass::Date, true) => {
            let Ok(b) = <[u8; 4]>::try_from(value) else {
                return false;
            };
            let days = i32::from_be_bytes(b);
            if days == i32::MAX || days == i32::MIN {
                return false;
            }
            let (y, m, d) = civil_from_days(days as i64 + PG_EPOCH_DAYS);
            let (y, m, d) = trunc(y, m, d);
            out.extend_from_slice(&encode_date(true, y, m, d));
            true
        }
        (TypeClass::Timestamp | TypeClass::Timestamptz, true) => {
            let Ok(b) = <[u8; 8]>::try_from(value) else {
                return false;
            };
            let us = i64::from_be_bytes(b);
            if us == i64::MAX || us == i64::MIN {
                return false;
            }
            let (y, m, d) = civil_from_days(us.div_euclid(DAY_US) + PG_EPOCH_DAYS);
            let (y, m, d) = trunc(y, m, d);
            let days = days_from_civil(y, m, d) - PG_EPOCH_DAYS;
            out.extend_from_slice(&(days * DAY_US).to_be_bytes());
            true
        }
        (TypeClass::Date, false) => {
            let Some((y, m, d)) = parse_iso_date(value) else {
                return false;
            };
            if value.len() != 10 {
                return false;
            }
            let (y, m, d) = trunc(y, m, d);
            out.extend_from_slice(&encode_date(false, y, m, d));
            true
        }
        (TypeClass::Timestamp | TypeClass::Timestamptz, false) => {
            // YYYY-MM-DD HH:MM:SS[.ffffff][zone]
            let Some((y, m, d)) = parse_iso_date(value) else {
                return false;
            };
            let rest = &value[10..];
            if rest.len() < 9 || rest[0] != b' ' || rest[3] != b':' || rest[6] != b':' {
                return false;
            }
            let mut i = 9;
            if rest.get(i) == Some(&b'.') {
                i += 1;
                while rest.get(i).is_some_and(|b| b.is_ascii_digit()) {
                    i += 1;
                }
            }
            let zone = &rest[i..];
            if zone.ends_with(b"BC") {
                return false;
            }
            let (y, m, d) = trunc(y, m, d);
            out.extend_from_slice(format!("{y:04}-{m:02}-{d:02} 00:00:00").as_bytes());
            out.extend_from_slice(zone);
            true
        }
        _ => false,
    }
}

/// Days from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch).
const PG_EPOCH_DAYS: i64 = 10_957;

fn parse_iso_date(v: &[u8]) -> Option<(i64, u32, u32)> {
    if v.len() < 10 || v[4] != b'-' || v[7] != b'-' {
        return None;
    }
    let num = |s: &[u8]| -> Option<i64> {
        if s.iter().all(|b| b.is_ascii_digit()) {
            std::str::from_utf8(s).ok()?.parse().ok()
        } else {
            None
        }
    };
    let y = num(&v[0..4])?;
    let m = num(&v[5..7])? as u32;
    let d = num(&v[8..10])? as u32;
    ((1..=12).contains(&m) && (1..=31).contains(&d)).then_some((y, m, d))
}

fn encode_date(binary: bool, y: i64, m: u32, d: u32) -> Vec<u8> {
    if binary {
        let days = (days_from_civil(y, m, d) - PG_EPOCH_DAYS) as i32;
        days.to_be_bytes().to_vec()
    } else {
        format!("{y:04}-{m:02}-{d:02}").into_bytes()
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn decode_int(c: TypeClass, binary: bool, v: &[u8]) -> Option<i64> {
    if binary {
        match (c, v.len()) {
            (TypeClass::Int2, 2) => Some(i16::from_be_bytes(v.try_into().ok()?) as i64),
            (TypeClass::Int4, 4) => Some(i32::from_be_bytes(v.try_into().ok()?) as i64),
            (TypeClass::Int8, 8) => Some(i64::from_be_bytes(v.try_into().ok()?)),
            _ => None,
        }
    } else {
        std::str::from_utf8(v).ok()?.trim().parse().ok()
    }
}

fn encode_int(c: TypeClass, binary: bool, v: i64) -> Vec<u8> {
    if !binary {
        return v.to_string().into_bytes();
    }
    match c {
        TypeClass::Int2 => (v as i16).to_be_bytes().to_vec(),
        TypeClass::Int4 => (v as i32).to_be_bytes().to_vec(),
        _ => v.to_be_bytes().to_vec(),
    }
}

fn encode_float(ty: ColumnType, v: f64) -> Vec<u8> {
    match (ty.class, ty.binary) {
        (TypeClass::Float4, true) => (v as f32).to_be_bytes().to_vec(),
        (_, true) => v.to_be_bytes().to_vec(),
        (TypeClass::Float4, false) => (v as f32).to_string().into_bytes(),
        _ => v.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PseudonymKey {
        PseudonymKey::new(b"test-key".to_vec())
    }

    fn text(mask: NativeMask, oid: u32, v: &str) -> Option<String> {
        let m = CompiledMask::new(mask, ColumnType::new(oid, 0));
        let mut out = Vec::new();
        m.apply(v.as_bytes(), &key(), &mut out)
            .then(|| String::from_utf8(out).unwrap())
    }

    fn bin(mask: NativeMask, oid: u32, v: &[u8]) -> Option<Vec<u8>> {
        let m = CompiledMask::new(mask, ColumnType::new(oid, 1));
        let mut out = Vec::new();
        m.apply(v, &key(), &mut out).then_some(out)
    }

    #[test]
    fn text_masks() {
        assert_eq!(
            text(NativeMask::Email, 25, "alice@example.com").unwrap(),
            "****@example.com"
        );
        assert_eq!(text(NativeMask::Email, 25, "nodomain").unwrap(), "****");
        let last4 = NativeMask::Partial {
            first: 0,
            last: 4,
            fill: "*".into(),
        };
        assert_eq!(
            text(last4.clone(), 25, "123-45-6789").unwrap(),
            "*******6789"
        );
        assert_eq!(text(last4.clone(), 25, "123").unwrap(), "***");
        assert_eq!(text(last4, 25, "é-12345").unwrap(), "***2345");
        let ends = NativeMask::Partial {
            first: 2,
            last: 1,
            fill: "#".into(),
        };
        assert_eq!(text(ends, 25, "abcdef").unwrap(), "ab###f");
        assert_eq!(
            text(NativeMask::Digits(4), 1043, "4111-1111-1111-1234").unwrap(),
            "****-****-****-1234"
        );
        assert_eq!(
            text(NativeMask::Digits(4), 25, "555-0101").unwrap(),
            "***-0101"
        );
        assert_eq!(
            text(NativeMask::Redact("x".into()), 25, "secret").unwrap(),
            "x"
        );
        assert_eq!(text(NativeMask::Null, 25, "secret"), None);
        // Text masks on non-text types have no valid value.
        assert_eq!(text(NativeMask::Email, 23, "42"), None);
        assert_eq!(text(NativeMask::Redact("***".into()), 23, "42"), None);
    }

    #[test]
    fn pseudonyms_are_deterministic_across_formats() {
        let a = text(NativeMask::Pseudonym, 25, "alice@example.com").unwrap();
        let b = text(NativeMask::Pseudonym, 25, "alice@example.com").unwrap();
        let c = text(NativeMask::Pseudonym, 25, "bob@example.com").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(!a.contains("alice"));
        let t: i64 = text(NativeMask::Pseudonym, 23, "42")
            .unwrap()
            .parse()
            .unwrap();
        let b = bin(NativeMask::Pseudonym, 23, &42i32.to_be_bytes()).unwrap();
        assert_eq!(i32::from_be_bytes(b.try_into().unwrap()) as i64, t);
        assert!(t > 0 && t <= i32::MAX as i64);
        // The same text value gives the same token in binary format.
        assert_eq!(
            bin(NativeMask::Pseudonym, 25, b"alice@example.com").unwrap(),
            a.into_bytes()
        );
    }

    #[test]
    fn binary_values_stay_valid() {
        let v = bin(NativeMask::Digits(2), 20, &1234567i64.to_be_bytes()).unwrap();
        assert_eq!(i64::from_be_bytes(v.try_into().unwrap()), 67);
        let v = bin(NativeMask::Round(100.0), 23, &1234i32.to_be_bytes()).unwrap();
        assert_eq!(i32::from_be_bytes(v.try_into().unwrap()), 1200);
        let v = bin(NativeMask::Round(0.5), 701, &1.3f64.to_be_bytes()).unwrap();
        assert_eq!(f64::from_be_bytes(v.try_into().unwrap()), 1.5);
        let v = bin(NativeMask::Redact("7".into()), 21, &[0, 9]).unwrap();
        assert_eq!(v, 7i16.to_be_bytes());
        assert_eq!(bin(NativeMask::Email, 23, &1i32.to_be_bytes()), None);
        assert_eq!(bin(NativeMask::Redact("x".into()), 1082, &[0; 4]), None);
        let v = bin(
            NativeMask::Redact("{\"masked\":true}".into()),
            3802,
            b"\x01{}",
        )
        .unwrap();
        assert_eq!(v[0], 1);
    }

    #[test]
    fn dates_generalise() {
        let year = NativeMask::Date { year: true };
        let month = NativeMask::Date { year: false };
        assert_eq!(
            text(year.clone(), 1082, "2024-07-19").unwrap(),
            "2024-01-01"
        );
        assert_eq!(
            text(month.clone(), 1082, "2024-07-19").unwrap(),
            "2024-07-01"
        );
        assert_eq!(
            text(month.clone(), 1184, "2024-07-19 13:45:12.123+02").unwrap(),
            "2024-07-01 00:00:00+02"
        );
        assert_eq!(text(year.clone(), 1082, "07/19/2024"), None);
        // 2024-07-19 is day 8966 after 2000-01-01.
        let d = days_from_civil(2024, 7, 19) - PG_EPOCH_DAYS;
        let v = bin(month.clone(), 1082, &(d as i32).to_be_bytes()).unwrap();
        let back = i32::from_be_bytes(v.try_into().unwrap()) as i64;
        assert_eq!(civil_from_days(back + PG_EPOCH_DAYS), (2024, 7, 1));
        let us = d * 86_400_000_000 + 3_600_000_000;
        let v = bin(year, 1114, &us.to_be_bytes()).unwrap();
        let back = i64::from_be_bytes(v.try_into().unwrap());
        assert_eq!(
            civil_from_days(back / 86_400_000_000 + PG_EPOCH_DAYS),
            (2024, 1, 1)
        );
        assert_eq!(back % 86_400_000_000, 0);
        assert_eq!(
            civil_from_days(days_from_civil(1999, 12, 31)),
            (1999, 12, 31)
        );
    }
}
