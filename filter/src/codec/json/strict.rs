//! Strict JSON reading for the plugin configuration: values taken as serde's derived readers with
//! `deny_unknown_fields` took them from serde_json, with serde's wording for the errors users see most,
//! at a fraction of the module size. Every error names the key path of the value it is about.

use super::tape::{self, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// A configuration error: the key path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.key.is_empty() {
            write!(f, "invalid tollgate configuration: {}", self.reason)
        } else {
            write!(
                f,
                "invalid tollgate configuration: {}: {}",
                self.key, self.reason
            )
        }
    }
}

pub fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

/// An error's key is relative to the value read; each enclosing reader puts its own part in front (`under`).
///
/// `e` one level down: its key under `head` (a member's name, or `[i]`).
pub fn under(mut e: ConfigError, head: &str) -> ConfigError {
    let dot = if e.key.is_empty() || e.key.starts_with('[') {
        ""
    } else {
        "."
    };
    e.key = format!("{head}{dot}{}", e.key);
    e
}

/// What `v` is, as serde's `Unexpected` says it.
fn unexpected(v: Value) -> String {
    let raw = v.raw_text().unwrap_or_default();
    match raw.as_bytes().first() {
        Some(b'n') => "null".into(),
        Some(b't' | b'f') => format!("boolean `{raw}`"),
        Some(b'"') => match v.str() {
            Some(s) => format!("string {s:?}"),
            // The tape keeps what serde_json refuses to read.
            None => "string with a lone UTF-16 surrogate escape".into(),
        },
        Some(b'[') => "sequence".into(),
        Some(b'{') => "map".into(),
        _ if v.i64().is_some() || v.u64().is_some() => format!("integer `{raw}`"),
        _ => format!("floating point `{raw}`"),
    }
}

/// `v` is not what was `expected`: serde's "invalid type".
pub fn invalid_type(v: Value, expected: &str) -> ConfigError {
    invalid(v, "type", expected)
}

fn invalid(v: Value, what: &str, expected: &str) -> ConfigError {
    err(
        "",
        format!("invalid {what}: {}, expected {expected}", unexpected(v)),
    )
}

/// serde's list of what would have been accepted.
fn one_of(names: &[&str]) -> String {
    match names {
        [a] => format!("expected `{a}`"),
        [a, b] => format!("expected `{a}` or `{b}`"),
        _ => format!("expected one of `{}`", names.join("`, `")),
    }
}

/// A required field, or serde's "missing field".
pub fn required<T>(v: Option<T>, name: &str) -> Result<T, ConfigError> {
    v.ok_or_else(|| err("", format!("missing field `{name}`")))
}

/// An `Option`: `null` is absent.
pub fn opt<'t, 'de, T>(
    v: Value<'t, 'de>,
    read: fn(Value<'t, 'de>) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    if v.raw_text() == Some("null") {
        return Ok(None);
    }
    read(v).map(Some)
}

pub fn string(v: Value) -> Result<String, ConfigError> {
    v.str()
        .map(Cow::into_owned)
        .ok_or_else(|| invalid_type(v, "a string"))
}

pub fn boolean(v: Value) -> Result<bool, ConfigError> {
    v.bool().ok_or_else(|| invalid_type(v, "a boolean"))
}

pub fn uint(v: Value) -> Result<u64, ConfigError> {
    // serde: a negative integer is of the right type, with a wrong value.
    v.u64().ok_or_else(|| {
        let what = if v.i64().is_some() { "value" } else { "type" };
        invalid(v, what, "u64")
    })
}

pub fn float(v: Value) -> Result<f64, ConfigError> {
    v.f64().ok_or_else(|| invalid_type(v, "f64"))
}

/// A unit variant named by a string: its index in `names`.
pub fn variant(v: Value, names: &[&str]) -> Result<usize, ConfigError> {
    let s = v.str().ok_or_else(|| invalid_type(v, "a string"))?;
    names
        .iter()
        .position(|n| *n == s)
        .ok_or_else(|| err("", format!("unknown variant `{s}`, {}", one_of(names))))
}

/// Hand each element of an array to `f`, naming the index of any error.
pub fn items<'t, 'de>(
    v: Value<'t, 'de>,
    f: &mut dyn FnMut(Value<'t, 'de>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let elements = v.elements().ok_or_else(|| invalid_type(v, "a sequence"))?;
    for (i, item) in elements.enumerate() {
        f(item).map_err(|e| under(e, &format!("[{i}]")))?;
    }
    Ok(())
}

pub fn strings(v: Value) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    items(v, &mut |v| {
        out.push(string(v)?);
        Ok(())
    })?;
    Ok(out)
}

/// An object of strings (a later duplicate key wins, as in serde's map).
pub fn string_map(v: Value) -> Result<BTreeMap<String, String>, ConfigError> {
    let members = v.members().ok_or_else(|| invalid_type(v, "a map"))?;
    let mut out = BTreeMap::new();
    for (key, value) in members {
        let value = string(value).map_err(|e| under(e, &key))?;
        out.insert(key.into_owned(), value);
    }
    Ok(out)
}

/// A struct's members: the value of the member named `names[i]` goes to `f(i, _)`; an unknown or
/// repeated key fails. Required fields are the caller's (`required`). At most 64 fields.
pub fn object<'t, 'de>(
    v: Value<'t, 'de>,
    names: &[&str],
    f: &mut dyn FnMut(usize, Value<'t, 'de>) -> Result<(), ConfigError>,
) -> Result<(), ConfigError> {
    let members = v.members().ok_or_else(|| invalid_type(v, "an object"))?;
    let mut seen = 0u64;
    for (key, value) in members {
        let Some(i) = names.iter().position(|n| *n == key) else {
            return Err(err(
                key.as_ref(),
                format!("unknown field `{key}`, {}", one_of(names)),
            ));
        };
        let bit = 1u64.checked_shl(i as u32).unwrap_or(0);
        if seen & bit != 0 {
            return Err(err(key.as_ref(), format!("duplicate field `{key}`")));
        }
        seen |= bit;
        f(i, value).map_err(|e| under(e, &key))?;
    }
    Ok(())
}

/// Read `v` (tests: the readers take a tape value; tests build their input with `json!`).
#[cfg(test)]
pub fn read_json<T>(
    v: &serde_json::Value,
    read: impl for<'t, 'de> FnOnce(Value<'t, 'de>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let text = v.to_string();
    tape::read(&text, read).unwrap_or_else(|| Err(err("", "invalid JSON")))
}

/// Why `json`, which the tape refused, is not one JSON value, and where (line and column, 1-based).
pub fn syntax_error(json: &[u8]) -> ConfigError {
    let place = |at: usize| {
        let before = json.get(..at).unwrap_or(json);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |n| n + 1);
        let column = String::from_utf8_lossy(before.get(line_start..).unwrap_or_default())
            .chars()
            .count()
            + 1;
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        format!("at line {line} column {column}")
    };
    let text = match std::str::from_utf8(json) {
        Ok(text) => text,
        Err(e) => {
            let at = e.valid_up_to();
            return err("", format!("invalid JSON: not UTF-8 {}", place(at)));
        }
    };
    let Some(at) = tape::error_at(text) else {
        // Only a text beyond the tape's 4 GiB.
        return err("", "invalid JSON: too large");
    };
    // One complete value, then more text.
    if at > 0 && text.get(..at).is_some_and(|v| tape::error_at(v).is_none()) {
        return err(
            "",
            format!(
                "invalid JSON after the configuration object: trailing characters {}",
                place(at)
            ),
        );
    }
    let what = match text.get(at..).and_then(|t| t.chars().next()) {
        None => "unexpected end of input".to_owned(),
        Some('"') => "a string that is not closed or has an invalid escape".to_owned(),
        Some(c) => format!("unexpected `{}`", c.escape_debug()),
    };
    err("", format!("invalid JSON: {what} {}", place(at)))
}
