//! [`Value`]s to PostgreSQL parameters and PostgreSQL's binary results back
//! to [`Value`]s.

use bytes::BytesMut;
use qwasr_wasi_sql::{Kind, Value};
use std::error::Error;
use std::fmt::Write;
use tokio_postgres::types::{Format, FromSql, IsNull, Kind as PgKind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn Error + Sync + Send>;

/// A parameter as it goes to the server: the value in the binary format of
/// the parameter's type, or as text the server parses with the type's own
/// input function.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Null,
    Binary(Vec<u8>),
    Text(String),
}

impl ToSql for Param {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Param::Null => return Ok(IsNull::Yes),
            Param::Binary(b) => out.extend_from_slice(b),
            Param::Text(s) => out.extend_from_slice(s.as_bytes()),
        }
        Ok(IsNull::No)
    }

    // Checked by `param` before binding, against the type the server inferred.
    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> Format {
        match self {
            Param::Text(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

/// A value as the server sent it, in its type's binary format.
pub(crate) struct Raw<'a>(pub(crate) &'a [u8]);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Raw<'a>, BoxError> {
        Ok(Raw(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The types this module knows the binary format of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Bool,
    Int2,
    Int4,
    Int8,
    Oid,
    Float4,
    Float8,
    Numeric,
    /// Text in its binary format too: text, varchar, char(n), name, enum
    /// labels, citext, void.
    Text,
    Json,
    Jsonb,
    Bytea,
    Date,
    Time,
    TimeTz,
    Timestamp,
    TimestampTz,
    Uuid,
    /// Anything else: read as the server's text for it.
    Other,
}

/// `ty`, or for a domain the type it is over.
fn base(ty: &Type) -> &Type {
    match ty.kind() {
        PgKind::Domain(inner) => base(inner),
        _ => ty,
    }
}

fn class(ty: &Type) -> Class {
    let t = base(ty);
    match t.kind() {
        PgKind::Enum(_) => return Class::Text,
        PgKind::Simple if t.name() == "citext" => return Class::Text,
        _ => {}
    }
    match t.oid() {
        16 => Class::Bool,
        17 => Class::Bytea,
        19 | 25 | 705 | 1042 | 1043 | 2278 => Class::Text,
        20 => Class::Int8,
        21 => Class::Int2,
        23 => Class::Int4,
        26 => Class::Oid,
        114 => Class::Json,
        700 => Class::Float4,
        701 => Class::Float8,
        1082 => Class::Date,
        1083 => Class::Time,
        1114 => Class::Timestamp,
        1184 => Class::TimestampTz,
        1266 => Class::TimeTz,
        1700 => Class::Numeric,
        2950 => Class::Uuid,
        3802 => Class::Jsonb,
        _ => Class::Other,
    }
}

/// The name a guest knows a value's type by.
fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Int32(_) => "int32",
        Value::Int64(_) => "int64",
        Value::Uint32(_) => "uint32",
        Value::Uint64(_) => "uint64",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Str(_) => "str",
        Value::Boolean(_) => "boolean",
        Value::Date(_) => "date",
        Value::Time(_) => "time",
        Value::Timestamp(_) => "timestamp",
        Value::Binary(_) => "binary",
    }
}

/// Value `v` for parameter `$n`, whose type the server inferred as `ty`.
///
/// A `str` goes as text whatever the type: the server parses it (`'42'`
/// for an `int4`, a UUID, JSON, an array literal). Numbers, booleans and
/// bytes go in the type's binary format, to the types they fit; dates and
/// times go as their ISO text to the date and time types.
pub(crate) fn param(n: usize, v: &Value, ty: &Type) -> Result<Param, String> {
    let c = class(ty);
    let mismatch = || {
        format!(
            "parameter ${n} is {} {}, but the statement takes {} there",
            if matches!(
                v,
                Value::Int32(_) | Value::Int64(_) | Value::Uint32(_) | Value::Uint64(_)
            ) {
                "an"
            } else {
                "a"
            },
            kind_name(v),
            ty.name()
        )
    };
    let as_text = matches!(c, Class::Text | Class::Json | Class::Jsonb);
    Ok(match v {
        Value::Null => Param::Null,
        Value::Str(s) => Param::Text(s.clone()),
        Value::Int32(i) => integer(n, i128::from(*i), v, ty, c).ok_or_else(mismatch)??,
        Value::Int64(i) => integer(n, i128::from(*i), v, ty, c).ok_or_else(mismatch)??,
        Value::Uint32(i) => integer(n, i128::from(*i), v, ty, c).ok_or_else(mismatch)??,
        Value::Uint64(i) => integer(n, i128::from(*i), v, ty, c).ok_or_else(mismatch)??,
        Value::Float(f) => float(n, f64::from(*f), v, ty, c).ok_or_else(mismatch)??,
        Value::Double(f) => float(n, *f, v, ty, c).ok_or_else(mismatch)??,
        Value::Boolean(b) => match c {
            Class::Bool => Param::Binary(vec![u8::from(*b)]),
            _ if as_text => Param::Text(b.to_string()),
            _ => return Err(mismatch()),
        },
        Value::Date(s) | Value::Time(s) | Value::Timestamp(s) => match c {
            Class::Date
            | Class::Time
            | Class::TimeTz
            | Class::Timestamp
            | Class::TimestampTz
            | Class::Text => Param::Text(s.clone()),
            _ => return Err(mismatch()),
        },
        Value::Binary(b) => match c {
            Class::Bytea => Param::Binary(b.clone()),
            _ => return Err(mismatch()),
        },
    })
}

/// An integer for a parameter of class `c`; `None` if the class takes no
/// integers, `Some(Err)` if it is out of the type's range.
fn integer(n: usize, i: i128, v: &Value, ty: &Type, c: Class) -> Option<Result<Param, String>> {
    let range = || {
        format!(
            "parameter ${n} is the {} {i}, out of range for {}",
            kind_name(v),
            ty.name()
        )
    };
    let bytes = |r: Option<Vec<u8>>| Some(r.ok_or_else(range).map(Param::Binary));
    match c {
        Class::Int2 => bytes(i16::try_from(i).ok().map(|i| i.to_be_bytes().to_vec())),
        Class::Int4 => bytes(i32::try_from(i).ok().map(|i| i.to_be_bytes().to_vec())),
        Class::Int8 => bytes(i64::try_from(i).ok().map(|i| i.to_be_bytes().to_vec())),
        Class::Oid => bytes(u32::try_from(i).ok().map(|i| i.to_be_bytes().to_vec())),
        // Nearest float, as PostgreSQL's own casts do.
        Class::Float4 => Some(Ok(Param::Binary((i as f32).to_be_bytes().to_vec()))),
        Class::Float8 => Some(Ok(Param::Binary((i as f64).to_be_bytes().to_vec()))),
        Class::Numeric | Class::Text | Class::Json | Class::Jsonb => {
            Some(Ok(Param::Text(i.to_string())))
        }
        _ => None,
    }
}

/// A float for a parameter of class `c`, like [`integer`].
fn float(n: usize, f: f64, v: &Value, ty: &Type, c: Class) -> Option<Result<Param, String>> {
    let text = || {
        if f.is_nan() {
            "NaN".to_string()
        } else if f.is_infinite() {
            if f > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
        } else if let Value::Float(x) = v {
            // The float's own shortest form (0.1, not 0.10000000149011612).
            x.to_string()
        } else {
            f.to_string()
        }
    };
    match c {
        Class::Float4 => {
            let x = f as f32;
            if x.is_infinite() && f.is_finite() {
                return Some(Err(format!(
                    "parameter ${n} is the {} {f}, out of range for {}",
                    kind_name(v),
                    ty.name()
                )));
            }
            Some(Ok(Param::Binary(x.to_be_bytes().to_vec())))
        }
        Class::Float8 => Some(Ok(Param::Binary(f.to_be_bytes().to_vec()))),
        Class::Numeric | Class::Text | Class::Json | Class::Jsonb => Some(Ok(Param::Text(text()))),
        _ => None,
    }
}

/// The kind of the values of a column of type `ty`.
pub(crate) fn kind(ty: &Type) -> Kind {
    match class(ty) {
        Class::Bool => Kind::Boolean,
        Class::Int2 | Class::Int4 => Kind::Int32,
        Class::Int8 => Kind::Int64,
        Class::Oid => Kind::Uint32,
        Class::Float4 => Kind::Float,
        Class::Float8 => Kind::Double,
        Class::Bytea => Kind::Binary,
        Class::Date => Kind::Date,
        Class::Time | Class::TimeTz => Kind::Time,
        Class::Timestamp | Class::TimestampTz => Kind::Timestamp,
        Class::Numeric | Class::Text | Class::Json | Class::Jsonb | Class::Uuid | Class::Other => {
            Kind::Str
        }
    }
}

/// Whether values of type `ty` are read as the server's text for them
/// (a second statement, `SELECT $1::text`), not decoded here.
pub(crate) fn needs_text(ty: &Type) -> bool {
    class(ty) == Class::Other
}

/// The value of a non-NULL field of type `ty` (not one [`needs_text`]).
pub(crate) fn value(ty: &Type, raw: &[u8]) -> Result<Value, String> {
    let bad = || format!("the server sent a malformed {} value", ty.name());
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec())
            .map_err(|_| format!("the server sent {} text that is not UTF-8", ty.name()))
    };
    Ok(match class(ty) {
        Class::Bool => Value::Boolean(*raw.first().ok_or_else(bad)? != 0),
        Class::Int2 => Value::Int32(i32::from(i16::from_be_bytes(fixed(raw).ok_or_else(bad)?))),
        Class::Int4 => Value::Int32(i32::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Class::Int8 => Value::Int64(i64::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Class::Oid => Value::Uint32(u32::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Class::Float4 => Value::Float(f32::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Class::Float8 => Value::Double(f64::from_be_bytes(fixed(raw).ok_or_else(bad)?)),
        Class::Text | Class::Json => Value::Str(text(raw)?),
        // Version 1 of jsonb's format: a version byte, then the JSON text.
        Class::Jsonb => match raw.split_first() {
            Some((1, json)) => Value::Str(text(json)?),
            _ => return Err(bad()),
        },
        Class::Bytea => Value::Binary(raw.to_vec()),
        Class::Numeric => Value::Str(numeric(raw).ok_or_else(bad)?),
        Class::Uuid => {
            let b: [u8; 16] = fixed(raw).ok_or_else(bad)?;
            let mut s = String::with_capacity(36);
            for (i, x) in b.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    s.push('-');
                }
                let _ = write!(s, "{x:02x}");
            }
            Value::Str(s)
        }
        Class::Date => Value::Date(date(i32::from_be_bytes(fixed(raw).ok_or_else(bad)?))),
        Class::Time => Value::Time(time(i64::from_be_bytes(fixed(raw).ok_or_else(bad)?))),
        Class::TimeTz => {
            let (t, zone) = raw.split_at_checked(8).ok_or_else(bad)?;
            let t = i64::from_be_bytes(fixed(t).ok_or_else(bad)?);
            let zone = i32::from_be_bytes(fixed(zone).ok_or_else(bad)?);
            Value::Time(format!("{}{}", time(t), offset(zone)))
        }
        Class::Timestamp => Value::Timestamp(timestamp(
            i64::from_be_bytes(fixed(raw).ok_or_else(bad)?),
            false,
        )),
        Class::TimestampTz => Value::Timestamp(timestamp(
            i64::from_be_bytes(fixed(raw).ok_or_else(bad)?),
            true,
        )),
        Class::Other => return Err(format!("{} values are read as text", ty.name())),
    })
}

fn fixed<const N: usize>(raw: &[u8]) -> Option<[u8; N]> {
    raw.try_into().ok()
}

/// Bytes a value takes in memory, near enough to bound a result's size.
pub(crate) fn size(v: &Value) -> usize {
    std::mem::size_of::<Value>()
        + match v {
            Value::Str(s) | Value::Date(s) | Value::Time(s) | Value::Timestamp(s) => s.len(),
            Value::Binary(b) => b.len(),
            _ => 0,
        }
}

/// `numeric`'s binary format as its text: a count of base-10000 digits,
/// the weight of the first, a sign and the display scale, then the digits.
fn numeric(raw: &[u8]) -> Option<String> {
    let word =
        |i: usize| -> Option<u16> { Some(u16::from_be_bytes(fixed(raw.get(i * 2..i * 2 + 2)?)?)) };
    let ndigits = usize::from(word(0)?);
    let weight = i64::from(word(1)? as i16);
    let sign = word(2)?;
    let dscale = usize::from(word(3)?);
    if raw.len() != 8 + 2 * ndigits {
        return None;
    }
    let mut s = String::new();
    match sign {
        0x0000 => {}
        0x4000 => s.push('-'),
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => return None,
    }
    let digit = |i: i64| -> u16 {
        usize::try_from(i)
            .ok()
            .filter(|&i| i < ndigits)
            .and_then(|i| word(4 + i))
            .unwrap_or(0)
    };
    if weight < 0 {
        s.push('0');
    } else {
        for i in 0..=weight {
            let d = digit(i);
            let _ = if i == 0 {
                write!(s, "{d}")
            } else {
                write!(s, "{d:04}")
            };
        }
    }
    if dscale > 0 {
        let mut frac = String::with_capacity(dscale + 4);
        let mut i = weight + 1;
        while frac.len() < dscale {
            let _ = write!(frac, "{:04}", digit(i));
            i += 1;
        }
        frac.truncate(dscale);
        s.push('.');
        s.push_str(&frac);
    }
    Some(s)
}

/// Days from 2000-01-01 (PostgreSQL's epoch) to 1970-01-01.
const EPOCH_DAYS: i64 = 10_957;
const DAY_MICROS: i64 = 86_400_000_000;

/// The proleptic Gregorian (year, month, day) `z` days after 1970-01-01
/// (Howard Hinnant's `civil_from_days`).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `YYYY-MM-DD` of `days` after 1970-01-01, and whether it is BC (the year
/// then counts back from 1 BC, as PostgreSQL writes it: `0044-03-15 BC`).
fn ymd(days: i64) -> (String, bool) {
    let (y, m, d) = civil(days);
    let (year, bc) = if y <= 0 { (1 - y, true) } else { (y, false) };
    (format!("{year:04}-{m:02}-{d:02}"), bc)
}

/// A `date` (days since 2000-01-01) as ISO text.
fn date(days: i32) -> String {
    match days {
        i32::MAX => "infinity".into(),
        i32::MIN => "-infinity".into(),
        d => match ymd(i64::from(d) + EPOCH_DAYS) {
            (s, false) => s,
            (s, true) => format!("{s} BC"),
        },
    }
}

/// A time of day in microseconds as `HH:MM:SS[.ffffff]`, trailing zeros of
/// the fraction left out.
fn time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let mut s = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    if frac != 0 {
        let f = format!(".{frac:06}");
        s.push_str(f.trim_end_matches('0'));
    }
    s
}

/// A `timetz` zone (seconds west of UTC) as an ISO offset (`+02:00`).
fn offset(west: i32) -> String {
    let east = -i64::from(west);
    let sign = if east < 0 { '-' } else { '+' };
    let a = east.abs();
    let mut s = format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60);
    if a % 60 != 0 {
        let _ = write!(s, ":{:02}", a % 60);
    }
    s
}

/// A `timestamp` (microseconds since 2000-01-01) as ISO text; with `utc`,
/// a `timestamptz`, ending in `Z`.
fn timestamp(micros: i64, utc: bool) -> String {
    match micros {
        i64::MAX => return "infinity".into(),
        i64::MIN => return "-infinity".into(),
        _ => {}
    }
    let (date, bc) = ymd(micros.div_euclid(DAY_MICROS) + EPOCH_DAYS);
    let mut s = format!("{date}T{}", time(micros.rem_euclid(DAY_MICROS)));
    if utc {
        s.push('Z');
    }
    if bc {
        s.push_str(" BC");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(digits: &[u16], weight: i16, sign: u16, dscale: u16) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as u16, weight as u16, sign, dscale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_read_as_their_text() {
        let cases: &[(&[u16], i16, u16, u16, &str)] = &[
            (&[], 0, 0, 0, "0"),
            (&[], 0, 0, 2, "0.00"),
            (&[1], 0, 0, 0, "1"),
            (&[12, 3456, 7800], 1, 0x4000, 2, "-123456.78"),
            (&[1], 2, 0, 0, "100000000"),
            (&[5000], -1, 0, 1, "0.5"),
            (&[5], -2, 0, 8, "0.00000005"),
            (&[1, 2345], 0, 0, 3, "1.234"),
        ];
        for (digits, weight, sign, dscale, text) in cases {
            assert_eq!(
                numeric(&numeric_bytes(digits, *weight, *sign, *dscale)).as_deref(),
                Some(*text)
            );
        }
        assert_eq!(
            numeric(&numeric_bytes(&[], 0, 0xC000, 0)).as_deref(),
            Some("NaN")
        );
        assert_eq!(numeric(&[0, 1]), None);
    }

    #[test]
    fn dates_and_times_read_as_iso_text() {
        assert_eq!(date(0), "2000-01-01");
        assert_eq!(date(-1), "1999-12-31");
        assert_eq!(date(8903), "2024-05-17");
        assert_eq!(date(i32::MAX), "infinity");
        assert_eq!(date(-(EPOCH_DAYS as i32) - 719_162 - 1), "0001-12-31 BC");
        assert_eq!(time(0), "00:00:00");
        assert_eq!(time(49_500_123_000), "13:45:00.123");
        assert_eq!(time(DAY_MICROS), "24:00:00");
        assert_eq!(offset(-7200), "+02:00");
        assert_eq!(offset(19_800), "-05:30");
        assert_eq!(
            timestamp(8903 * DAY_MICROS + 49_500_000_001, true),
            "2024-05-17T13:45:00.000001Z"
        );
        assert_eq!(timestamp(-1, false), "1999-12-31T23:59:59.999999");
        assert_eq!(timestamp(i64::MIN, true), "-infinity");
    }
}
