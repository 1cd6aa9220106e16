//! Lenient JSON helpers shared by the providers. Provider bodies change often and clients send odd types;
//! one unexpected field must never cost us the rest of the body, and nothing here can panic.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// A field taken when it has the expected type and ignored (None) otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Lenient<T>(pub Option<T>);

impl<T> Default for Lenient<T> {
    fn default() -> Self {
        Lenient(None)
    }
}

impl<T> Lenient<T> {
    pub fn get(self) -> Option<T> {
        self.0
    }
    pub fn as_ref(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Borrow the raw text of the value, then try the expected type on it: a type mismatch is local.
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        // `null` is absent; short-circuit it, since a failed typed parse builds a formatted error (costly
        // on stream chunks, which carry `"usage":null` and `"finish_reason":null` on every event).
        if raw.get() == "null" {
            return Ok(Lenient(None));
        }
        Ok(Lenient(serde_json::from_str(raw.get()).ok()))
    }
}

/// A string that may also be written as an array of strings (`stop`, `input` ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            Ok(OneOrMany(vec![s]))
        } else {
            let v: Vec<Lenient<String>> =
                serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            Ok(OneOrMany(v.into_iter().filter_map(Lenient::get).collect()))
        }
    }
}

/// Text content written either as a string or as a list of typed parts (`[{"type":"text","text":…}]`).
/// Only text parts are kept; their texts are joined with "\n".
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextContent(pub String);

#[derive(Deserialize)]
struct TextPart<'a> {
    #[serde(borrow, default)]
    text: Lenient<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for TextContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            return Ok(TextContent(s));
        }
        let mut out = String::new();
        if text.starts_with('[') {
            let parts: Vec<Lenient<TextPart<'_>>> =
                serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            for part in parts.into_iter().filter_map(Lenient::get) {
                if let Some(t) = part.text.get() {
                    if !out.is_empty() {
                        out.push('\n');
                    }
                    out.push_str(&t);
                }
            }
        }
        Ok(TextContent(out))
    }
}

/// SHA-256 of `text`, first 16 hex characters (64 bits): enough to correlate prompts, useless to reverse.
pub fn prompt_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(16);
    for b in digest.iter().take(8) {
        out.push(char::from(
            HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
        ));
        out.push(char::from(
            HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'),
        ));
    }
    out
}

const HEX: [u8; 16] = *b"0123456789abcdef";

/// Parse `body` as `T`; None on any error (never panics, never partially fails).
pub fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Option<T> {
    serde_json::from_slice(body).ok()
}

/// Store `value` unless it is absent or empty (providers repeat ids and models as "" on some chunks).
pub fn set_if_nonempty(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        *slot = Some(v.into_owned());
    }
}

/// Characters (not bytes) in `s`, for usage estimates.
pub fn char_count(s: &str) -> u64 {
    u64::try_from(s.chars().count()).unwrap_or(u64::MAX)
}

/// Add generated text to the response's character count.
pub fn count_chars(resp: &mut crate::call::Response, text: &str) {
    resp.output_chars = resp.output_chars.saturating_add(char_count(text));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct T {
        a: Lenient<u64>,
        b: Lenient<String>,
        stop: Lenient<OneOrMany>,
        c: Lenient<TextContent>,
    }

    #[test]
    fn wrong_type_is_local() {
        let t: T = parse(br#"{"a":"x","b":"ok","stop":["s",1,"t"],"c":[{"type":"text","text":"h"},{"type":"image"}]}"#)
            .unwrap();
        assert_eq!(t.a.0, None);
        assert_eq!(t.b.0.as_deref(), Some("ok"));
        assert_eq!(t.stop.0.unwrap().0, vec!["s", "t"]);
        assert_eq!(t.c.0.unwrap().0, "h");
    }

    #[test]
    fn hash_is_stable_prefix() {
        assert_eq!(prompt_hash(""), "e3b0c44298fc1c14");
    }
}
