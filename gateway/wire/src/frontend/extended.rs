use bytes::{BufMut, BytesMut};

use crate::{Cursor, WireError};

use super::tag;

/// A Parse: creates a prepared statement (`name` empty for the unnamed one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name; empty is the unnamed statement.
    pub name: &'a str,
    /// The SQL text, with `$n` placeholders.
    pub sql: &'a str,
    /// Parameter type OIDs the client specified (0 = unspecified).
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    /// Reads a Parse body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::PARSE, body);
        let name = c.cstr("statement name")?;
        let sql = c.cstr("query string")?;
        let n = c.count16("parameter type count")?;
        let mut param_types = Vec::with_capacity(n.min(c.remaining().len() / 4));
        for _ in 0..n {
            param_types.push(c.i32("parameter type")? as u32);
        }
        Ok(Parse {
            name,
            sql,
            param_types,
        })
    }

    /// Appends a Parse message.
    pub fn encode(name: &str, sql: &str, param_types: &[u32], out: &mut BytesMut) {
        crate::put_message(out, tag::PARSE, |b| {
            crate::put_cstr(b, name);
            crate::put_cstr(b, sql);
            b.put_i16(param_types.len() as i16);
            for t in param_types {
                b.put_u32(*t);
            }
        });
    }
}

/// A Bind: creates a portal from a prepared statement and parameter values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal name; empty is the unnamed portal.
    pub portal: &'a str,
    /// Source statement name.
    pub statement: &'a str,
    /// Parameter format codes (0 text, 1 binary), as sent.
    pub param_formats: Vec<i16>,
    /// Parameter values; `None` is NULL.
    pub params: Vec<Option<&'a [u8]>>,
    /// Result-column format codes, as sent.
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    /// Reads a Bind body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::BIND, body);
        let portal = c.cstr("portal name")?;
        let statement = c.cstr("statement name")?;
        let n = c.count16("parameter format count")?;
        let mut param_formats = Vec::with_capacity(n.min(c.remaining().len() / 2));
        for _ in 0..n {
            param_formats.push(c.i16("parameter format")?);
        }
        let n = c.count16("parameter count")?;
        let mut params = Vec::with_capacity(n.min(c.remaining().len() / 4));
        for _ in 0..n {
            params.push(c.value("parameter value")?);
        }
        let n = c.count16("result format count")?;
        let mut result_formats = Vec::with_capacity(n.min(c.remaining().len() / 2));
        for _ in 0..n {
            result_formats.push(c.i16("result format")?);
        }
        Ok(Bind {
            portal,
            statement,
            param_formats,
            params,
            result_formats,
        })
    }

    /// The format of parameter `i` (the protocol allows 0, 1 or n format codes).
    pub fn param_format(&self, i: usize) -> i16 {
        match self.param_formats.len() {
            0 => 0,
            1 => self.param_formats[0],
            _ => self.param_formats.get(i).copied().unwrap_or(0),
        }
    }

    /// Appends a Bind with text parameters and default result formats.
    pub fn encode(portal: &str, statement: &str, params: &[Option<&[u8]>], out: &mut BytesMut) {
        crate::put_message(out, tag::BIND, |b| {
            crate::put_cstr(b, portal);
            crate::put_cstr(b, statement);
            b.put_i16(0);
            b.put_i16(params.len() as i16);
            for p in params {
                match p {
                    Some(v) => {
                        b.put_i32(v.len() as i32);
                        b.put_slice(v);
                    }
                    None => b.put_i32(-1),
                }
            }
            b.put_i16(0);
        });
    }
}

/// Whether a Describe or Close names a statement or a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A prepared statement (`S`).
    Statement,
    /// A portal (`P`).
    Portal,
}

fn target(c: &mut Cursor<'_>, tag: u8) -> Result<Target, WireError> {
    match c.u8("target type")? {
        b'S' => Ok(Target::Statement),
        b'P' => Ok(Target::Portal),
        _ => Err(WireError::Invalid {
            tag: tag as char,
            what: "target type",
        }),
    }
}

/// A Describe of a statement or portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Describe<'a> {
    /// What is described.
    pub target: Target,
    /// Its name.
    pub name: &'a str,
}

impl<'a> Describe<'a> {
    /// Reads a Describe body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::DESCRIBE, body);
        let target = target(&mut c, tag::DESCRIBE)?;
        Ok(Describe {
            target,
            name: c.cstr("name")?,
        })
    }

    /// Appends a Describe.
    pub fn encode(target: Target, name: &str, out: &mut BytesMut) {
        crate::put_message(out, tag::DESCRIBE, |b| {
            b.put_u8(if target == Target::Statement {
                b'S'
            } else {
                b'P'
            });
            crate::put_cstr(b, name);
        });
    }
}

/// A Close of a statement or portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// What is closed.
    pub target: Target,
    /// Its name.
    pub name: &'a str,
}

impl<'a> Close<'a> {
    /// Reads a Close body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::CLOSE, body);
        let target = target(&mut c, tag::CLOSE)?;
        Ok(Close {
            target,
            name: c.cstr("name")?,
        })
    }
}

/// An Execute of a portal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Portal name.
    pub portal: &'a str,
    /// Row limit; 0 means no limit.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    /// Reads an Execute body.
    pub fn decode(body: &'a [u8]) -> Result<Self, WireError> {
        let mut c = Cursor::new(tag::EXECUTE, body);
        Ok(Execute {
            portal: c.cstr("portal name")?,
            max_rows: c.i32("row limit")?,
        })
    }

    /// Appends an Execute.
    pub fn encode(portal: &str, max_rows: i32, out: &mut BytesMut) {
        crate::put_message(out, tag::EXECUTE, |b| {
            crate::put_cstr(b, portal);
            b.put_i32(max_rows);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_round_trip_and_truncation() {
        let mut out = BytesMut::new();
        Bind::encode("p1", "s1", &[Some(b"42"), None], &mut out);
        let b = Bind::decode(&out[5..]).unwrap();
        assert_eq!(b.portal, "p1");
        assert_eq!(b.statement, "s1");
        assert_eq!(b.params, vec![Some(&b"42"[..]), None]);
        for cut in 5..out.len() - 1 {
            assert!(Bind::decode(&out[5..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn parse_round_trip() {
        let mut out = BytesMut::new();
        Parse::encode("", "select $1", &[23], &mut out);
        let p = Parse::decode(&out[5..]).unwrap();
        assert_eq!((p.name, p.sql, p.param_types), ("", "select $1", vec![23]));
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        // A Bind claiming 32767 params with no bytes behind them must fail, not allocate.
        let body = [0u8, 0, 0, 0, 0x7f, 0xff];
        assert!(Bind::decode(&body).is_err());
        let body = [0u8, 0, 0, 0, 0xff, 0xff];
        assert!(Bind::decode(&body).is_err());
    }
}
