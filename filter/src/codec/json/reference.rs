//! The reference the lenient readers are checked against: serde's reading of the same provider types, each
//! `Lenient<T>` value parsed from its raw text with serde_json. Unit tests and the `lenient` fuzz target
//! only (`cfg(any(test, fuzzing))`); the module never contains it. `json_struct!` derives every provider
//! type's `Deserialize` here (`deserialize_struct!`), and `lenient::read` reads with serde instead of the
//! tape while `with_serde` or `with_reference` runs.

use super::lenient::{Lenient, LenientRaw, LenientStr, OneOrMany, Raw, TextContent, TextPart};
use super::skim::Reader;
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::cell::Cell;

/// serde's `Deserialize` for a `json_struct!` type, with the same keys: each field read by its type's
/// own `Deserialize` from the raw text of the member `members` chooses.
macro_rules! deserialize_struct {
    ($name:ident $(<$lt:lifetime>)? { $($field:ident = $key:literal $(| $alias:literal)*),* }) => {
        impl<'de $(, $lt)?> serde::Deserialize<'de> for $name $(<$lt>)?
        $(where 'de: $lt)?
        {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                const KEYS: &[&[&str]] = &[$(&[$key $(, $alias)*]),*];
                let mut chosen = $crate::codec::json::reference::members(d, KEYS)?.into_iter();
                let mut out = Self::default();
                $(
                    if let Some(raw) = chosen.next().flatten() {
                        out.$field = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
                    }
                )*
                Ok(out)
            }
        }
    };
}
pub(crate) use deserialize_struct;

/// The reference reader's view of a struct (tests and the `lenient` fuzz target): the raw text of the
/// member chosen for each field of `keys`, read with serde_json. From an object, the last member naming a
/// field by its own name, else the last naming it by an alias (what `tape::Value::fields` reads); from an
/// array, element `i` for field `i`, and more elements than fields fail; any other value fails.
pub fn members<'de, D: Deserializer<'de>>(
    d: D,
    keys: &'static [&'static [&'static str]],
) -> Result<Vec<Option<&'de RawValue>>, D::Error> {
    use serde::de::{Error, MapAccess, SeqAccess, Visitor};
    struct Members(&'static [&'static [&'static str]]);
    impl<'de> Visitor<'de> for Members {
        type Value = Vec<Option<&'de RawValue>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object or an array")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut chosen: Vec<Option<(&'de RawValue, usize)>> = vec![None; self.0.len()];
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let value: &'de RawValue = map.next_value()?;
                for (names, slot) in self.0.iter().zip(chosen.iter_mut()) {
                    let Some(rank) = names.iter().position(|n| *n == key) else {
                        continue;
                    };
                    if slot.is_none_or(|(_, r)| rank <= r) {
                        *slot = Some((value, rank));
                    }
                }
            }
            Ok(chosen.into_iter().map(|c| c.map(|(v, _)| v)).collect())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = vec![None; self.0.len()];
            for slot in out.iter_mut() {
                match seq.next_element::<&'de RawValue>()? {
                    Some(v) => *slot = Some(v),
                    None => return Ok(out),
                }
            }
            if seq.next_element::<IgnoredAny>()?.is_some() {
                return Err(A::Error::invalid_length(self.0.len() + 1, &self));
            }
            Ok(out)
        }
    }
    d.deserialize_any(Members(keys))
}

/// Which reader `lenient::read` uses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The tape (what the module does).
    Tape,
    /// serde, for every document.
    Serde,
    /// serde for every document it reads as the tape does; the tape for one holding a token serde_json
    /// refuses (a number beyond f64, a lone surrogate escape), which serde would read on its sanitised
    /// copy (`sanitised`): callers hand over the sanitised copies of the documents they have, and the few
    /// read inside one (a Bedrock event inside its base64 `bytes`) stay the tape's.
    Reference,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Tape) };
}

/// Sets the mode for its lifetime.
struct Guard(Mode);

impl Guard {
    fn enter(mode: Mode) -> Guard {
        Guard(MODE.with(|m| m.replace(mode)))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let previous = self.0;
        MODE.with(|m| m.set(previous));
    }
}

/// What `lenient::read` returns instead of the tape's reading of `text`, when a reference mode is on.
pub(crate) fn instead<'a, T: Deserialize<'a>>(text: &'a str) -> Option<Option<T>> {
    match MODE.with(Cell::get) {
        Mode::Tape => None,
        Mode::Reference if sanitised(text).is_some() => None,
        Mode::Serde | Mode::Reference => Some(serde_json::from_str(text).ok()),
    }
}

/// Run `f` with serde reading every document: the reference reader's own results, whatever they are.
pub fn with_serde<R>(f: impl FnOnce() -> R) -> R {
    let _mode = Guard::enter(Mode::Serde);
    f()
}

/// Run `f` with serde reading every document it reads as the tape does (see `Mode::Reference`): handed
/// the sanitised copies of its documents, whatever they are, the same results as the tape's readers on the
/// originals (the `lenient` fuzz target).
pub fn with_reference<R>(f: impl FnOnce() -> R) -> R {
    let _mode = Guard::enter(Mode::Reference);
    f()
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Lenient<T> {
    /// The reference reader: borrow the raw text of the value, then try the expected type on it.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        // `null` is absent; short-circuit it, since a failed typed parse builds a formatted error.
        if raw.get() == "null" {
            return Ok(Lenient(None));
        }
        Ok(Lenient(serde_json::from_str(raw.get()).ok()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <&'de RawValue>::deserialize(d).map(|r| Raw(r.get()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        if raw.get() == "null" {
            return Ok(LenientStr(None));
        }
        Ok(LenientStr(
            serde_json::from_str::<Cow<'_, str>>(raw.get())
                .ok()
                .map(|s| Cow::Owned(s.into_owned())),
        ))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientRaw<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        Ok(LenientRaw(Some(raw.get()).filter(|r| *r != "null")))
    }
}

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            return Ok(OneOrMany(vec![s]));
        }
        let v: Vec<Lenient<String>> =
            serde_json::from_str(text).map_err(serde::de::Error::custom)?;
        Ok(OneOrMany(v.into_iter().filter_map(Lenient::get).collect()))
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for TextContent<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            return Ok(TextContent(Cow::Owned(s)));
        }
        if text.starts_with('[') {
            let parts: Vec<Lenient<TextPart<'de>>> =
                serde_json::from_str(text).map_err(serde::de::Error::custom)?;
            let mut out = TextContent::default();
            for part in parts.into_iter().filter_map(Lenient::get) {
                out.push_part(part);
            }
            return Ok(out);
        }
        Ok(TextContent::default())
    }
}

/// `text` with every token serde_json refuses to read though the grammar allows it rewritten in place, or
/// None when there is none (or the text stops being JSON before one): a number beyond f64 or a string
/// with a lone UTF-16 surrogate escape becomes `null`, a key with one a key of spaces (so that member is
/// ignored), each padded with spaces to its length (such a number has at least 5 bytes, such a string 8).
/// Lexical, one forward scan: no recursion, no nesting limit needed; the parser checks the structure.
pub fn sanitised(text: &str) -> Option<String> {
    let mut out: Option<Vec<u8>> = None;
    unreadable_tokens(text, &mut |start, end, key| {
        let buf = out.get_or_insert_with(|| text.as_bytes().to_vec());
        if let Some(token) = buf.get_mut(start..end) {
            token.fill(b' ');
            let (open, close): (&[u8], &[u8]) = if key { (b"\"", b"\"") } else { (b"null", b"") };
            if let Some(head) = token.get_mut(..open.len()) {
                head.copy_from_slice(open);
            }
            if let Some(tail) = token
                .len()
                .checked_sub(close.len())
                .and_then(|i| token.get_mut(i..))
            {
                tail.copy_from_slice(close);
            }
        }
    });
    String::from_utf8(out?).ok()
}

/// The tokens of `text` that the grammar allows but serde_json refuses to read, as `(start, end, is_key)`
/// byte ranges: a string with a lone UTF-16 surrogate escape, a number beyond f64 (serde_json's own test).
/// Lexical: one forward scan token by token, no recursion, so no nesting limit; a string followed by `:`
/// is a key. It stops at the first byte that starts no token (the parser stops there too). For the
/// reference reader's sanitised copy (`sanitised`).
pub(crate) fn unreadable_tokens(text: &str, on: &mut dyn FnMut(usize, usize, bool)) {
    let mut r = Reader::new(text);
    while let Some(b) = r.peek() {
        let start = r.position();
        match b {
            b'{' | b'}' | b'[' | b']' | b',' | b':' => r.advance(),
            b'"' => {
                let Some(s) = r.string() else { return };
                let end = r.position();
                if s.escaped && s.char_count().is_none() {
                    on(start, end, r.peek() == Some(b':'));
                }
            }
            b't' | b'f' | b'n' => {
                let word: &[u8] = match b {
                    b't' => b"true",
                    b'f' => b"false",
                    _ => b"null",
                };
                if r.literal(word).is_none() {
                    return;
                }
            }
            _ => {
                let Some(n) = r.number() else { return };
                let beyond = std::str::from_utf8(n)
                    .map_or(true, |n| serde_json::from_str::<f64>(n).is_err());
                if beyond {
                    on(start, r.position(), false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(t: &str) -> Vec<(&str, bool)> {
        let mut v = Vec::new();
        unreadable_tokens(t, &mut |a, b, key| v.push((&t[a..b], key)));
        v
    }

    #[test]
    fn finds_the_tokens_serde_cannot_read() {
        let t = r#"{"a":[1e400, -1E+309,1e-400, 1.5e308, 18446744073709551616, "\ud800", "\ud83d\ude00",
                     "\udc00\u0041", "\\ud800", true, false, null], "\ud800" : {"\udfff":"\ud800"}}"#;
        assert_eq!(
            unreadable(t),
            [
                ("1e400", false),
                ("-1E+309", false),
                (r#""\ud800""#, false),
                (r#""\udc00\u0041""#, false),
                (r#""\ud800""#, true),
                (r#""\udfff""#, true),
                (r#""\ud800""#, false),
            ]
        );
        for (token, _) in unreadable(t) {
            assert!(
                serde_json::from_str::<serde_json::Value>(token).is_err(),
                "{token}"
            );
        }
        // It stops at the first byte that starts no token.
        assert_eq!(unreadable("[1e400, x, 1e400]").len(), 1);
        assert_eq!(unreadable(r#"["\ud800", "\x", 1e400]"#).len(), 1);
        assert!(unreadable(r#"{"a":1,"b":"ok","c":[1e308,-0.0]}"#).is_empty());
        // Nesting costs no stack.
        let deep = format!("{}1e400{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(unreadable(&deep), [("1e400", false)]);
    }

    #[test]
    fn sanitised_rewrites_only_unreadable_tokens_in_place() {
        for (text, want) in [
            (
                r#"{"a":1e400,"b":"\ud800","c":[-1e99999,"ok\ud83d\ude00",1e-400,1.5]}"#,
                Some(r#"{"a":null ,"b":null    ,"c":[null    ,"ok\ud83d\ude00",1e-400,1.5]}"#),
            ),
            (r#"{"\udc00x":1, "y":2}"#, Some(r#"{"       ":1, "y":2}"#)),
            (r#"[1e400,,]"#, Some("[null ,,]")),
            (r#"{"a":1,"b":"\\ud800"}"#, None),
            (r#"{"a":tru,"b":1e400}"#, None),
            ("", None),
        ] {
            let got = sanitised(text);
            assert_eq!(got.as_deref(), want, "{text}");
            assert!(got.is_none_or(|g| g.len() == text.len()));
        }
    }
}
