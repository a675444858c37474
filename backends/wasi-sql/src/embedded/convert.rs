//! Values to SQLite and back: the table in the [`embedded`](super) docs.

use crate::{Kind, Value};
use anyhow::{Result, bail};
use rusqlite::types::{ToSqlOutput, ValueRef};

/// A parameter as SQLite stores it.
pub(crate) fn to_sql(v: &Value) -> Result<ToSqlOutput<'_>> {
    Ok(ToSqlOutput::Borrowed(match v {
        Value::Null => ValueRef::Null,
        Value::Int32(v) => ValueRef::Integer(i64::from(*v)),
        Value::Int64(v) => ValueRef::Integer(*v),
        Value::Uint32(v) => ValueRef::Integer(i64::from(*v)),
        Value::Uint64(v) => match i64::try_from(*v) {
            Ok(v) => ValueRef::Integer(v),
            Err(_) => bail!(
                "uint64 {v} is larger than SQLite's largest integer ({})",
                i64::MAX
            ),
        },
        Value::Float(v) => ValueRef::Real(f64::from(*v)),
        Value::Double(v) => ValueRef::Real(*v),
        Value::Boolean(v) => ValueRef::Integer(i64::from(*v)),
        Value::Str(v) | Value::Date(v) | Value::Time(v) | Value::Timestamp(v) => {
            ValueRef::Text(v.as_bytes())
        }
        Value::Binary(v) => ValueRef::Blob(v),
    }))
}

/// The kind a declared column type asks for; `None` leaves the value's
/// storage class to decide (`NUMERIC`, `DECIMAL`, no declared type).
pub(crate) fn declared(decl: &str) -> Option<Kind> {
    // `VARCHAR(20)` is a VARCHAR; `timestamp  with time zone` a TIMESTAMP WITH TIME ZONE.
    let base = decl
        .split('(')
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    let words: Vec<&str> = base.split_whitespace().collect();
    let name = words.join(" ");
    let exact = match name.as_str() {
        "BOOLEAN" | "BOOL" => Some(Kind::Boolean),
        "DATE" => Some(Kind::Date),
        "TIME" | "TIMETZ" | "TIME WITH TIME ZONE" | "TIME WITHOUT TIME ZONE" => Some(Kind::Time),
        "TIMESTAMP"
        | "TIMESTAMPTZ"
        | "DATETIME"
        | "TIMESTAMP WITH TIME ZONE"
        | "TIMESTAMP WITHOUT TIME ZONE" => Some(Kind::Timestamp),
        "INT2" | "INT4" | "SMALLINT" | "TINYINT" | "MEDIUMINT" => Some(Kind::Int32),
        "FLOAT4" => Some(Kind::Float),
        _ => None,
    };
    if exact.is_some() {
        return exact;
    }
    if words.contains(&"UNSIGNED") {
        return Some(if name.contains("BIG") || name.contains("INT8") {
            Kind::Uint64
        } else {
            Kind::Uint32
        });
    }
    // SQLite's own affinity rules, in its order.
    if name.contains("INT") {
        Some(Kind::Int64)
    } else if name.contains("CHAR") || name.contains("CLOB") || name.contains("TEXT") {
        Some(Kind::Str)
    } else if name.contains("BLOB") {
        Some(Kind::Binary)
    } else if name.contains("REAL") || name.contains("FLOA") || name.contains("DOUB") {
        Some(Kind::Double)
    } else {
        None
    }
}

/// A result value, typed by its column's declared kind where the stored
/// value fits it, else by the value's storage class.
pub(crate) fn from_sql(v: ValueRef<'_>, kind: Option<Kind>) -> Value {
    match (kind, v) {
        (_, ValueRef::Null) => Value::Null,
        (Some(Kind::Int32), ValueRef::Integer(i)) if i32::try_from(i).is_ok() => {
            Value::Int32(i as i32)
        }
        (Some(Kind::Uint32), ValueRef::Integer(i)) if u32::try_from(i).is_ok() => {
            Value::Uint32(i as u32)
        }
        (Some(Kind::Uint64), ValueRef::Integer(i)) if i >= 0 => Value::Uint64(i as u64),
        (Some(Kind::Float), ValueRef::Real(f)) => Value::Float(f as f32),
        (Some(Kind::Float), ValueRef::Integer(i)) => Value::Float(i as f32),
        (Some(Kind::Double), ValueRef::Integer(i)) => Value::Double(i as f64),
        (Some(Kind::Boolean), ValueRef::Integer(i)) => Value::Boolean(i != 0),
        (Some(Kind::Boolean), ValueRef::Text(t)) => match boolean(t) {
            Some(b) => Value::Boolean(b),
            None => storage(v),
        },
        (Some(k @ (Kind::Date | Kind::Time | Kind::Timestamp)), ValueRef::Text(t)) => {
            match std::str::from_utf8(t) {
                Ok(s) => match k {
                    Kind::Date => Value::Date(s.to_string()),
                    Kind::Time => Value::Time(s.to_string()),
                    _ => Value::Timestamp(s.to_string()),
                },
                Err(_) => Value::Binary(t.to_vec()),
            }
        }
        _ => storage(v),
    }
}

/// A value by its storage class alone.
fn storage(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Int64(i),
        ValueRef::Real(f) => Value::Double(f),
        // Text that is not UTF-8 (bytes CAST to TEXT) is handed over unaltered, as bytes.
        ValueRef::Text(t) => match std::str::from_utf8(t) {
            Ok(s) => Value::Str(s.to_string()),
            Err(_) => Value::Binary(t.to_vec()),
        },
        ValueRef::Blob(b) => Value::Binary(b.to_vec()),
    }
}

/// PostgreSQL's spellings of a boolean as text (`t`, `true`, `f`, `false`, …).
fn boolean(t: &[u8]) -> Option<bool> {
    match t.to_ascii_lowercase().as_slice() {
        b"t" | b"true" | b"y" | b"yes" | b"on" | b"1" => Some(true),
        b"f" | b"false" | b"n" | b"no" | b"off" | b"0" => Some(false),
        _ => None,
    }
}

/// Roughly how many bytes a value takes in memory, to bound a result's size.
pub(crate) fn size(v: &Value) -> usize {
    const BASE: usize = std::mem::size_of::<Value>();
    match v {
        Value::Str(s) | Value::Date(s) | Value::Time(s) | Value::Timestamp(s) => BASE + s.len(),
        Value::Binary(b) => BASE + b.len(),
        _ => BASE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_choose_the_kind() {
        let table = [
            ("INTEGER", Some(Kind::Int64)),
            ("int", Some(Kind::Int64)),
            ("BIGINT", Some(Kind::Int64)),
            ("INT8", Some(Kind::Int64)),
            ("INT4", Some(Kind::Int32)),
            ("smallint", Some(Kind::Int32)),
            ("INT UNSIGNED", Some(Kind::Uint32)),
            ("UNSIGNED BIG INT", Some(Kind::Uint64)),
            ("bigint unsigned", Some(Kind::Uint64)),
            ("REAL", Some(Kind::Double)),
            ("DOUBLE PRECISION", Some(Kind::Double)),
            ("FLOAT", Some(Kind::Double)),
            ("FLOAT4", Some(Kind::Float)),
            ("TEXT", Some(Kind::Str)),
            ("VARCHAR(20)", Some(Kind::Str)),
            ("character varying (10)", Some(Kind::Str)),
            ("CLOB", Some(Kind::Str)),
            ("BLOB", Some(Kind::Binary)),
            ("BOOLEAN", Some(Kind::Boolean)),
            ("bool", Some(Kind::Boolean)),
            ("DATE", Some(Kind::Date)),
            ("TIME", Some(Kind::Time)),
            ("TIMESTAMP", Some(Kind::Timestamp)),
            ("timestamp  with time zone", Some(Kind::Timestamp)),
            ("DATETIME", Some(Kind::Timestamp)),
            ("NUMERIC", None),
            ("DECIMAL(10,2)", None),
            ("", None),
        ];
        for (decl, want) in table {
            assert_eq!(declared(decl), want, "{decl:?}");
        }
    }

    #[test]
    fn values_outside_the_declared_kind_fall_back_to_their_storage_class() {
        let big = i64::from(i32::MAX) + 1;
        assert_eq!(
            from_sql(ValueRef::Integer(big), Some(Kind::Int32)),
            Value::Int64(big)
        );
        assert_eq!(
            from_sql(ValueRef::Integer(-1), Some(Kind::Uint64)),
            Value::Int64(-1)
        );
        assert_eq!(
            from_sql(ValueRef::Text(b"abc"), Some(Kind::Int64)),
            Value::Str("abc".into())
        );
        assert_eq!(
            from_sql(ValueRef::Integer(1_700_000_000), Some(Kind::Timestamp)),
            Value::Int64(1_700_000_000)
        );
        assert_eq!(
            from_sql(ValueRef::Text(b"maybe"), Some(Kind::Boolean)),
            Value::Str("maybe".into())
        );
        assert_eq!(
            from_sql(ValueRef::Text(b"TRUE"), Some(Kind::Boolean)),
            Value::Boolean(true)
        );
        assert_eq!(
            from_sql(ValueRef::Text(b"\xff"), None),
            Value::Binary(vec![0xff])
        );
    }

    #[test]
    fn uint64_above_i64_max_is_refused() {
        assert!(to_sql(&Value::Uint64(i64::MAX as u64)).is_ok());
        let e = to_sql(&Value::Uint64(u64::MAX))
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some(
                "uint64 18446744073709551615 is larger than SQLite's largest integer \
                 (9223372036854775807)"
            )
        );
    }
}
