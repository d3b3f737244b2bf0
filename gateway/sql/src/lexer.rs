//! A single-pass SQL lexer that follows PostgreSQL's own scanner (`scan.l`).
//!
//! This lexer is the crate's source of truth for *where tokens begin and end*:
//! string literals (all forms, including `E''` backslash escapes, `U&''`,
//! `B''`, `X''`, `N''`, dollar quotes and newline-separated continuation),
//! quoted identifiers (including `U&""` with `UESCAPE`), comments (nested
//! `/* */` and `--` ending at `\n` **or** `\r`), numbers (including the
//! PostgreSQL 16 forms `0x1F`, `0o17`, `0b101`, `1_000`), `$n` parameters and
//! operators (which stop at an embedded `/*` or `--`, as PostgreSQL's do).
//!
//! Everything downstream (fingerprints, cache keys, statement splitting and the
//! text handed to `sqlparser`) is derived from this token stream, so that a
//! disagreement between `sqlparser`'s tokenizer and PostgreSQL about where a
//! literal or comment ends cannot hide code from the analysis: by the time
//! `sqlparser` sees a statement, every literal has been replaced by a fixed
//! placeholder and every comment by a space.
//!
//! The lexer assumes `standard_conforming_strings = on` (the default since
//! PostgreSQL 9.1) and a UTF-8 client encoding; see the crate docs.
//!
//! The lexer never fails and never panics: malformed input yields
//! [`TokenKind::Unterminated`] or [`TokenKind::Other`] tokens.

/// What an unterminated token was trying to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unterminated {
    /// A string literal (`'`, `E'`, `B'`, `X'`, `N'`, `U&'`).
    String,
    /// A dollar-quoted string.
    Dollar,
    /// A quoted identifier (`"` or `U&"`).
    Ident,
    /// A block comment.
    Comment,
}

/// The kind of a token. Whitespace and comments are folded into [`TokenKind::Space`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokenKind {
    /// One or more whitespace characters and/or comments.
    Space,
    /// An unquoted identifier or keyword.
    Word,
    /// A `"quoted identifier"` (kept verbatim).
    QuotedIdent,
    /// A `U&"..."` identifier, optionally followed by `UESCAPE '<c>'`.
    /// `esc` is the escape character (`\` by default) or `None` if the
    /// `UESCAPE` clause is present but invalid/unsupported. `body_end` is the
    /// byte offset of the closing double quote.
    UnicodeIdent { esc: Option<u8>, body_end: usize },
    /// Any string literal (including dollar-quoted and bit strings).
    String,
    /// A numeric literal.
    Number,
    /// A `$n` parameter.
    Param,
    /// A run of operator characters.
    Op,
    /// A single punctuation character: `, ( ) [ ] . ; :`.
    Punct(u8),
    /// Any other single character (e.g. a lone `$` or `\`).
    Other,
    /// An unterminated literal, identifier or comment (runs to end of input).
    Unterminated(Unterminated),
}

/// A token: its kind and byte range in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// PostgreSQL's `ident_start`: ASCII letters, `_`, and any byte >= 0x80.
#[inline]
pub(crate) fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

/// PostgreSQL's `ident_cont`: `ident_start`, digits and `$`.
#[inline]
pub(crate) fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

/// PostgreSQL's `dolq_cont`: like `ident_cont` but without `$`.
#[inline]
fn is_dolq_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit()
}

/// PostgreSQL's `op_chars`.
#[inline]
pub(crate) fn is_op_char(b: u8) -> bool {
    matches!(
        b,
        b'~' | b'!'
            | b'@'
            | b'#'
            | b'^'
            | b'&'
            | b'|'
            | b'`'
            | b'?'
            | b'+'
            | b'-'
            | b'*'
            | b'/'
            | b'%'
            | b'<'
            | b'>'
            | b'='
    )
}

/// PostgreSQL's `space` class (`\v` included as in PostgreSQL 16+).
#[inline]
pub(crate) fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// PostgreSQL's `horiz_space` class.
#[inline]
fn is_horiz_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x0b | 0x0c)
}

#[inline]
fn is_newline(b: u8) -> bool {
    b == b'\n' || b == b'\r'
}

/// How the body of a single-quoted string is scanned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QuoteMode {
    /// `'...'`, `N'...'`, `U&'...'`: `''` is an escaped quote, `\` is ordinary.
    Standard,
    /// `E'...'`: `''` and `\<any>` are escapes.
    Escape,
    /// `B'...'`, `X'...'`: no escapes at all.
    Bits,
}

/// The lexer: an iterator over [`Token`]s.
pub(crate) struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    /// Creates a lexer over `sql`.
    pub(crate) fn new(sql: &'a str) -> Self {
        Lexer {
            b: sql.as_bytes(),
            pos: 0,
        }
    }

    #[inline]
    fn at(&self, i: usize) -> Option<u8> {
        self.b.get(i).copied()
    }

    /// Skips whitespace and comments starting at `i`. Returns the new offset,
    /// or `Err(())` if an unterminated block comment is reached.
    fn skip_space(&self, mut i: usize) -> Result<usize, ()> {
        while let Some(j) = self.skip_space_one(i) {
            i = j;
        }
        if self.at(i) == Some(b'/') && self.at(i + 1) == Some(b'*') {
            Err(())
        } else {
            Ok(i)
        }
    }

    /// Given `i` at the `/` of `/*`, returns the offset just past the matching
    /// `*/` (comments nest), or `None` if unterminated.
    fn block_comment_end(&self, i: usize) -> Option<usize> {
        let mut depth = 1usize;
        let mut j = i + 2;
        while j < self.b.len() {
            let c = self.b[j];
            if c == b'*' && self.at(j + 1) == Some(b'/') {
                depth -= 1;
                j += 2;
                if depth == 0 {
                    return Some(j);
                }
            } else if c == b'/' && self.at(j + 1) == Some(b'*') {
                depth += 1;
                j += 2;
            } else {
                j += 1;
            }
        }
        None
    }

    /// PostgreSQL's `quotecontinue` without the final quote: given `i` just past
    /// a closing quote, returns the offset of the next segment's opening quote
    /// if the string continues (whitespace containing a newline, optionally with
    /// `--` comments, then a quote).
    fn quote_continue(&self, mut i: usize) -> Option<usize> {
        // {horiz_whitespace}*
        loop {
            match self.at(i) {
                Some(c) if is_horiz_space(c) => i += 1,
                Some(b'-') if self.at(i + 1) == Some(b'-') => {
                    i += 2;
                    while let Some(c) = self.at(i) {
                        if is_newline(c) {
                            break;
                        }
                        i += 1;
                    }
                }
                _ => break,
            }
        }
        // {newline}
        match self.at(i) {
            Some(c) if is_newline(c) => i += 1,
            _ => return None,
        }
        // {special_whitespace}*  = ({space}+ | {comment}{newline})*
        loop {
            match self.at(i) {
                Some(c) if is_space(c) => i += 1,
                Some(b'-') if self.at(i + 1) == Some(b'-') => {
                    let mut j = i + 2;
                    while let Some(c) = self.at(j) {
                        if is_newline(c) {
                            break;
                        }
                        j += 1;
                    }
                    if self.at(j).is_some_and(is_newline) {
                        i = j + 1;
                    } else {
                        return None;
                    }
                }
                _ => break,
            }
        }
        (self.at(i) == Some(b'\'')).then_some(i)
    }

    /// Scans a single-quoted string whose opening quote is at `q`. Returns the
    /// end offset, or `None` if unterminated.
    fn quoted_string_end(&self, q: usize, mode: QuoteMode) -> Option<usize> {
        let mut i = q + 1;
        loop {
            let c = self.at(i)?;
            if c == b'\'' {
                if mode != QuoteMode::Bits && self.at(i + 1) == Some(b'\'') {
                    i += 2;
                    continue;
                }
                i += 1;
                match self.quote_continue(i) {
                    Some(next_q) => {
                        i = next_q + 1;
                        continue;
                    }
                    None => return Some(i),
                }
            } else if c == b'\\' && mode == QuoteMode::Escape {
                // The escaped byte may be a quote or a backslash; skip it.
                self.at(i + 1)?;
                i += 2;
            } else {
                i += 1;
            }
        }
    }

    /// If a `$tag$` delimiter starts at `i`, returns the offset just past it.
    fn dollar_delim(&self, i: usize) -> Option<usize> {
        if self.at(i) != Some(b'$') {
            return None;
        }
        let mut j = i + 1;
        match self.at(j) {
            Some(b'$') => return Some(j + 1),
            Some(c) if is_ident_start(c) => j += 1,
            _ => return None,
        }
        while let Some(c) = self.at(j) {
            if c == b'$' {
                return Some(j + 1);
            }
            if !is_dolq_cont(c) {
                return None;
            }
            j += 1;
        }
        None
    }

    /// Value of a simple string literal starting at `i` (used for `UESCAPE`):
    /// a standard `'...'` literal (with continuation) or a dollar-quoted one.
    /// Returns `(value, end)`; `None` if there is no such literal at `i`.
    fn simple_string_value(&self, i: usize) -> Option<(Vec<u8>, usize)> {
        match self.at(i)? {
            b'\'' => {
                let end = self.quoted_string_end(i, QuoteMode::Standard)?;
                let mut val = Vec::new();
                let mut j = i + 1;
                while j < end {
                    let c = self.b[j];
                    if c == b'\'' {
                        if self.at(j + 1) == Some(b'\'') {
                            val.push(b'\'');
                            j += 2;
                        } else {
                            // End of a segment; skip to the next segment's quote.
                            j = self.quote_continue(j + 1).map_or(end, |q| q + 1);
                        }
                    } else {
                        val.push(c);
                        j += 1;
                    }
                }
                Some((val, end))
            }
            b'$' => {
                let open_end = self.dollar_delim(i)?;
                let tag = self.b.get(i..open_end)?;
                let rest = self.b.get(open_end..)?;
                let off = find(rest, tag)?;
                let body = rest.get(..off)?.to_vec();
                Some((body, open_end + off + tag.len()))
            }
            _ => None,
        }
    }

    /// After a `U&'...'` or `U&"..."` token ending at `end`, looks for
    /// `UESCAPE '<c>'`. Returns `(escape, new_end)`; escape is `Some(b'\\')`
    /// when there is no `UESCAPE` clause.
    fn uescape(&self, end: usize) -> (Option<u8>, usize) {
        let Ok(i) = self.skip_space(end) else {
            return (Some(b'\\'), end);
        };
        let kw = b"uescape";
        let is_kw = self
            .b
            .get(i..i + kw.len())
            .is_some_and(|w| w.eq_ignore_ascii_case(kw))
            && !self.at(i + kw.len()).is_some_and(is_ident_cont);
        if !is_kw {
            return (Some(b'\\'), end);
        }
        let after_kw = i + kw.len();
        let Ok(j) = self.skip_space(after_kw) else {
            return (None, self.b.len());
        };
        match self.simple_string_value(j) {
            Some((val, lit_end)) => {
                let esc = match val.as_slice() {
                    [c] if valid_uescape(*c) => Some(*c),
                    _ => None,
                };
                (esc, lit_end)
            }
            // `UESCAPE` not followed by a simple string: PostgreSQL rejects it.
            // Consume just the keyword and mark the escape invalid.
            None => (None, after_kw),
        }
    }

    fn string_token(&self, q: usize, mode: QuoteMode) -> (TokenKind, usize) {
        match self.quoted_string_end(q, mode) {
            Some(end) => (TokenKind::String, end),
            None => (TokenKind::Unterminated(Unterminated::String), self.b.len()),
        }
    }

    fn quoted_ident_end(&self, q: usize) -> Option<usize> {
        let mut i = q + 1;
        loop {
            let c = self.at(i)?;
            if c == b'"' {
                if self.at(i + 1) == Some(b'"') {
                    i += 2;
                    continue;
                }
                return Some(i + 1);
            }
            i += 1;
        }
    }

    fn number_end(&self, start: usize) -> usize {
        let b = self.b;
        let mut i = start;
        let digits = |mut i: usize, pred: fn(u8) -> bool| -> usize {
            // ( _? digit )* after a first digit has been consumed
            loop {
                match b.get(i) {
                    Some(&c) if pred(c) => i += 1,
                    Some(b'_') if b.get(i + 1).is_some_and(|&c| pred(c)) => i += 2,
                    _ => return i,
                }
            }
        };
        if b.get(i) == Some(&b'0') {
            let radix: Option<fn(u8) -> bool> = match b.get(i + 1) {
                Some(b'x' | b'X') => Some(|c: u8| c.is_ascii_hexdigit()),
                Some(b'o' | b'O') => Some(|c: u8| (b'0'..=b'7').contains(&c)),
                Some(b'b' | b'B') => Some(|c: u8| c == b'0' || c == b'1'),
                _ => None,
            };
            if let Some(pred) = radix {
                let j = i + 2;
                let first = match b.get(j) {
                    Some(&c) if pred(c) => Some(j + 1),
                    Some(b'_') if b.get(j + 1).is_some_and(|&c| pred(c)) => Some(j + 2),
                    _ => None,
                };
                if let Some(k) = first {
                    return digits(k, pred);
                }
            }
        }
        let dec = |c: u8| c.is_ascii_digit();
        if b.get(i) == Some(&b'.') {
            // `.5`
            i = digits(i + 2, dec);
        } else {
            i = digits(i + 1, dec);
            if b.get(i) == Some(&b'.') && b.get(i + 1) != Some(&b'.') {
                i += 1;
                if b.get(i).is_some_and(|&c| dec(c)) {
                    i = digits(i + 1, dec);
                }
            }
        }
        // Exponent: only if digits follow (otherwise PostgreSQL reports junk).
        if matches!(b.get(i), Some(b'e' | b'E')) {
            let mut j = i + 1;
            if matches!(b.get(j), Some(b'+' | b'-')) {
                j += 1;
            }
            if b.get(j).is_some_and(|&c| dec(c)) {
                i = digits(j + 1, dec);
            }
        }
        i
    }

    fn op_end(&self, start: usize) -> usize {
        let mut i = start;
        while let Some(c) = self.at(i) {
            if !is_op_char(c) {
                break;
            }
            // An operator never contains the start of a comment.
            if i > start {
                let n = self.at(i + 1);
                if (c == b'/' && n == Some(b'*')) || (c == b'-' && n == Some(b'-')) {
                    break;
                }
            }
            i += 1;
        }
        i
    }

    fn lex_at(&self, start: usize) -> (TokenKind, usize) {
        let b = self.b;
        let c = b[start];
        let next = self.at(start + 1);
        if is_space(c) || (c == b'-' && next == Some(b'-')) || (c == b'/' && next == Some(b'*')) {
            let mut i = start;
            while let Some(j) = self.skip_space_one(i) {
                i = j;
            }
            return if i > start {
                (TokenKind::Space, i)
            } else {
                (TokenKind::Unterminated(Unterminated::Comment), b.len())
            };
        }
        match c {
            b'\'' => self.string_token(start, QuoteMode::Standard),
            b'"' => match self.quoted_ident_end(start) {
                Some(end) => (TokenKind::QuotedIdent, end),
                None => (TokenKind::Unterminated(Unterminated::Ident), b.len()),
            },
            b'e' | b'E' if next == Some(b'\'') => self.string_token(start + 1, QuoteMode::Escape),
            b'b' | b'B' | b'x' | b'X' if next == Some(b'\'') => {
                self.string_token(start + 1, QuoteMode::Bits)
            }
            b'n' | b'N' if next == Some(b'\'') => self.string_token(start + 1, QuoteMode::Standard),
            b'u' | b'U' if next == Some(b'&') && self.at(start + 2) == Some(b'\'') => {
                match self.quoted_string_end(start + 2, QuoteMode::Standard) {
                    Some(end) => (TokenKind::String, self.uescape(end).1),
                    None => (TokenKind::Unterminated(Unterminated::String), b.len()),
                }
            }
            b'u' | b'U' if next == Some(b'&') && self.at(start + 2) == Some(b'"') => {
                match self.quoted_ident_end(start + 2) {
                    Some(end) => {
                        let (esc, end2) = self.uescape(end);
                        (
                            TokenKind::UnicodeIdent {
                                esc,
                                body_end: end - 1,
                            },
                            end2,
                        )
                    }
                    None => (TokenKind::Unterminated(Unterminated::Ident), b.len()),
                }
            }
            c if is_ident_start(c) => {
                let mut i = start + 1;
                while self.at(i).is_some_and(is_ident_cont) {
                    i += 1;
                }
                (TokenKind::Word, i)
            }
            b'0'..=b'9' => (TokenKind::Number, self.number_end(start)),
            b'.' if next.is_some_and(|n| n.is_ascii_digit()) => {
                (TokenKind::Number, self.number_end(start))
            }
            b'$' => {
                if next.is_some_and(|n| n.is_ascii_digit()) {
                    let mut i = start + 1;
                    while self.at(i).is_some_and(|d| d.is_ascii_digit()) {
                        i += 1;
                    }
                    (TokenKind::Param, i)
                } else if let Some(open_end) = self.dollar_delim(start) {
                    let tag = &b[start..open_end];
                    match b.get(open_end..).and_then(|rest| find(rest, tag)) {
                        Some(off) => (TokenKind::String, open_end + off + tag.len()),
                        None => (TokenKind::Unterminated(Unterminated::Dollar), b.len()),
                    }
                } else {
                    (TokenKind::Other, start + 1)
                }
            }
            c if is_op_char(c) => (TokenKind::Op, self.op_end(start)),
            b',' | b'(' | b')' | b'[' | b']' | b'.' | b';' | b':' => {
                (TokenKind::Punct(c), start + 1)
            }
            _ => (TokenKind::Other, start + 1),
        }
    }

    /// Skips exactly one whitespace char or one *terminated* comment.
    fn skip_space_one(&self, i: usize) -> Option<usize> {
        match self.at(i)? {
            c if is_space(c) => Some(i + 1),
            b'-' if self.at(i + 1) == Some(b'-') => {
                let mut j = i + 2;
                while self.at(j).is_some_and(|c| !is_newline(c)) {
                    j += 1;
                }
                Some(j)
            }
            b'/' if self.at(i + 1) == Some(b'*') => self.block_comment_end(i),
            _ => None,
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Token;

    #[inline]
    fn next(&mut self) -> Option<Token> {
        let start = self.pos;
        if start >= self.b.len() {
            return None;
        }
        let (kind, end) = self.lex_at(start);
        // Defensive: always make progress and never run past the input.
        let end = end.clamp(start + 1, self.b.len());
        self.pos = end;
        Some(Token { kind, start, end })
    }
}

/// PostgreSQL's `check_uescapechar`: not a hex digit, `+`, quote, double
/// quote or whitespace; and a single (ASCII) byte.
fn valid_uescape(c: u8) -> bool {
    c.is_ascii()
        && !c.is_ascii_hexdigit()
        && c != b'+'
        && c != b'\''
        && c != b'"'
        && !is_space(c)
        && !c.is_ascii_control()
}

/// Byte-substring search (first occurrence).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Decodes the body of a `U&"..."` identifier (between the quotes, with `""`
/// still doubled) using escape character `esc`. Returns `None` when
/// PostgreSQL would reject it (bad escape, invalid code point, bad surrogate
/// pair, or an empty result).
pub(crate) fn decode_unicode_ident(body: &str, esc: u8) -> Option<String> {
    let esc = char::from(esc);
    let raw = body.replace("\"\"", "\"");
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    let mut pending_high: Option<u32> = None;
    while let Some(c) = chars.next() {
        if c != esc {
            if pending_high.is_some() {
                return None;
            }
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&esc) {
            if pending_high.is_some() {
                return None;
            }
            chars.next();
            out.push(esc);
            continue;
        }
        let ndigits = if chars.peek() == Some(&'+') {
            chars.next();
            6
        } else {
            4
        };
        let mut cp: u32 = 0;
        for _ in 0..ndigits {
            let d = chars.next()?.to_digit(16)?;
            cp = cp * 16 + d;
        }
        if let Some(hi) = pending_high.take() {
            if !(0xDC00..=0xDFFF).contains(&cp) {
                return None;
            }
            cp = 0x10000 + ((hi - 0xD800) << 10) + (cp - 0xDC00);
        } else if (0xD800..=0xDBFF).contains(&cp) {
            pending_high = Some(cp);
            continue;
        } else if (0xDC00..=0xDFFF).contains(&cp) {
            return None;
        }
        if cp == 0 {
            return None;
        }
        out.push(char::from_u32(cp)?);
    }
    if pending_high.is_some() || out.is_empty() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(sql: &str) -> Vec<(TokenKind, &str)> {
        Lexer::new(sql)
            .map(|t| (t.kind, &sql[t.start..t.end]))
            .collect()
    }

    #[test]
    fn strings_and_escapes() {
        use TokenKind::*;
        assert_eq!(kinds("'a''b'"), vec![(String, "'a''b'")]);
        // standard_conforming_strings: backslash is ordinary in '...'
        assert_eq!(
            kinds(r"'a\' x"),
            vec![(String, r"'a\'"), (Space, " "), (Word, "x")]
        );
        // ... but escapes in E'...'
        assert_eq!(kinds(r"E'a\'b' x")[0], (String, r"E'a\'b'"));
        assert_eq!(kinds(r"e'\\' x")[0], (String, r"e'\\'"));
        assert_eq!(kinds("B'01' X'1f' N'x'").len(), 5);
        // bit strings have no '' escape
        assert_eq!(kinds("B'01''1'")[0], (String, "B'01'"));
        assert_eq!(kinds("abe'x'")[0], (Word, "abe"));
    }

    #[test]
    fn continuation() {
        use TokenKind::*;
        assert_eq!(kinds("'a'\n'b'"), vec![(String, "'a'\n'b'")]);
        assert_eq!(kinds("'a' -- c\n  'b'"), vec![(String, "'a' -- c\n  'b'")]);
        assert_eq!(kinds("'a' 'b'").len(), 3);
        assert_eq!(kinds("'a' /* c */\n'b'").len(), 3);
        assert_eq!(kinds("'a'\r\n-- x\n'b'").len(), 1);
    }

    #[test]
    fn dollar_quotes() {
        use TokenKind::*;
        assert_eq!(kinds("$$a;b$$"), vec![(String, "$$a;b$$")]);
        assert_eq!(kinds("$t$ $$ $t$ x")[0], (String, "$t$ $$ $t$"));
        assert_eq!(kinds("$ab$ $xab$ $ab$")[0], (String, "$ab$ $xab$ $ab$"));
        assert_eq!(kinds("a$b$c")[0], (Word, "a$b$c"));
        assert_eq!(kinds("$1")[0], (Param, "$1"));
        assert_eq!(kinds("$1$$x$$")[1], (String, "$$x$$"));
        assert_eq!(kinds("$x"), vec![(Other, "$"), (Word, "x")]);
        assert_eq!(
            kinds("$$ abc")[0],
            (Unterminated(self::Unterminated::Dollar), "$$ abc")
        );
    }

    #[test]
    fn comments() {
        use TokenKind::*;
        assert_eq!(
            kinds("/* /* */ x */y"),
            vec![(Space, "/* /* */ x */"), (Word, "y")]
        );
        assert_eq!(
            kinds("a--x\rb"),
            vec![(Word, "a"), (Space, "--x\r"), (Word, "b")]
        );
        assert_eq!(
            kinds("/*/ x")[0].0,
            Unterminated(self::Unterminated::Comment)
        );
        assert_eq!(kinds("a /* x")[1], (Space, " "));
        assert_eq!(kinds("1+--x\n2")[1], (Op, "+"));
        assert_eq!(kinds("2*/*c*/3")[1], (Op, "*"));
        assert_eq!(kinds("a**/b"), vec![(Word, "a"), (Op, "**/"), (Word, "b")]);
    }

    #[test]
    fn numbers() {
        use TokenKind::*;
        for n in [
            "1", "1.5", ".5", "1.", "1e10", "1.5E-3", "0x1F", "0o17", "0b101", "1_000",
        ] {
            assert_eq!(kinds(n), vec![(Number, n)], "{n}");
        }
        assert_eq!(
            kinds("1..2"),
            vec![(Number, "1"), (Punct(b'.'), "."), (Number, ".2")]
        );
        assert_eq!(kinds("1e"), vec![(Number, "1"), (Word, "e")]);
        assert_eq!(kinds("1abc"), vec![(Number, "1"), (Word, "abc")]);
    }

    #[test]
    fn unicode_idents() {
        let k = kinds(r#"U&"d\0061t\+000061" x"#);
        assert!(matches!(
            k[0].0,
            TokenKind::UnicodeIdent {
                esc: Some(b'\\'),
                ..
            }
        ));
        let k = kinds(r#"U&"d!0061ta" /* c */ UESCAPE '!' x"#);
        assert_eq!(k[0].1, r#"U&"d!0061ta" /* c */ UESCAPE '!'"#);
        assert!(matches!(
            k[0].0,
            TokenKind::UnicodeIdent {
                esc: Some(b'!'),
                ..
            }
        ));
        let k = kinds(r#"U&"x" UESCAPE 'a'"#);
        assert!(matches!(k[0].0, TokenKind::UnicodeIdent { esc: None, .. }));
        assert_eq!(
            decode_unicode_ident(r"d\0061t\+000061", b'\\').as_deref(),
            Some("data")
        );
        assert_eq!(
            decode_unicode_ident(r"\D83D\DE00", b'\\').as_deref(),
            Some("\u{1F600}")
        );
        assert_eq!(decode_unicode_ident(r"\D83D", b'\\'), None);
        assert_eq!(decode_unicode_ident(r"\0000", b'\\'), None);
        assert_eq!(decode_unicode_ident(r"\00", b'\\'), None);
        assert_eq!(
            decode_unicode_ident(r#"a""b\\"#, b'\\').as_deref(),
            Some("a\"b\\")
        );
        assert_eq!(
            kinds("u&x"),
            vec![
                (TokenKind::Word, "u"),
                (TokenKind::Op, "&"),
                (TokenKind::Word, "x")
            ]
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        let s = "SELECT E'a\\'b' || U&'x' UESCAPE '!' , $q$ $ $q$ /* /* */ */ -- \r\n \"a\"\"b\" 0x1_F 1.5e+3 $1";
        for i in 0..=s.len() {
            if s.is_char_boundary(i) {
                let toks: Vec<_> = Lexer::new(&s[..i]).collect();
                let mut pos = 0;
                for t in toks {
                    assert_eq!(t.start, pos);
                    assert!(t.end > t.start);
                    pos = t.end;
                }
                assert_eq!(pos, i);
            }
        }
    }
}
