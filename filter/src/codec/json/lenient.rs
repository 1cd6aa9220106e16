//! Lenient JSON reading for provider bodies. Provider bodies change often and clients send odd types;
//! one unexpected field must never cost us the rest of the body, and nothing here can panic.

use super::tape;
use serde::de::IgnoredAny;
use std::borrow::Cow;

/// Declare a provider struct read leniently: every field optional (`Default` when absent), each with the
/// JSON keys it is read from (`= "key" | "alias"`). It implements `Read` (one small function: the member's
/// key is found in a hash table built at compile time, `tape::Value::fields`). Tests and fuzzing also get
/// serde's `Deserialize` with the same keys, the reference the reader is checked against (`reference.rs`).
macro_rules! json_struct {
    (
        $(#[$sattr:meta])*
        $vis:vis struct $name:ident $(<$lt:lifetime>)? {
            $(
                $(#[$fattr:meta])*
                $fvis:vis $field:ident : $ty:ty = $key:literal $(| $alias:literal)*
            ),* $(,)?
        }
    ) => {
        $(#[$sattr])*
        #[derive(Default)]
        $vis struct $name $(<$lt>)? {
            $(
                $(#[$fattr])*
                $fvis $field: $ty,
            )*
        }

        impl<'de $(, $lt)?> $crate::codec::json::lenient::Read<'de> for $name $(<$lt>)?
        $(where 'de: $lt)?
        {
            fn read(v: $crate::codec::json::tape::Value<'_, 'de>) -> Option<Self> {
                use $crate::codec::json::lenient::{field_index, Read};
                const KEYS: &[&[&str]] = &[$(&[$key $(, $alias)*]),*];
                const FIELDS: &[&str] = &[$(stringify!($field)),*];
                const _: () = assert!(FIELDS.len() <= 64);
                const TABLE: [(u32, usize); $crate::codec::json::tape::key_table_size(KEYS)] =
                    $crate::codec::json::tape::key_table(KEYS);
                let mut out = Self::default();
                v.fields(KEYS, &TABLE, &mut |i, value| {
                    $(if i == { const I: usize = field_index(FIELDS, stringify!($field)); I } {
                        out.$field = Read::read(value)?;
                        return Some(());
                    })*
                    Some(())
                })?;
                Some(out)
            }
        }

        #[cfg(any(test, fuzzing))]
        $crate::codec::json::reference::deserialize_struct! {
            $name $(<$lt>)? { $($field = $key $(| $alias)*),* }
        }
    };
}
pub(crate) use json_struct;

/// The position of `field` in `fields` (`json_struct!`, evaluated at compile time only: a field that is
/// not there fails the build).
#[allow(clippy::panic, clippy::indexing_slicing)]
pub const fn field_index(fields: &[&str], field: &str) -> usize {
    let mut i = 0;
    while i < fields.len() {
        let (a, b) = (fields[i].as_bytes(), field.as_bytes());
        if a.len() == b.len() {
            let mut j = 0;
            while j < a.len() && a[j] == b[j] {
                j += 1;
            }
            if j == a.len() {
                return i;
            }
        }
        i += 1;
    }
    panic!("no such field")
}

// How the lenient types read.
//
// `read` reads the body into a tape (`tape.rs`) and the provider type from it with its `Read` impl (most
// through `json_struct!`). On the tape any value can be read on its own, so `Lenient<T>` simply asks `T`
// for its value and keeps None when `T` rejects it: a mismatch costs that value only, and every byte is
// scanned once, whatever the nesting.
//
// The tokens serde_json refuses to read though the grammar allows them (a number beyond f64, a string
// with a lone UTF-16 surrogate escape) read as `null`, so the field holding one is absent and the rest
// reads as usual: what serde_json makes of the body's sanitised copy (`reference::sanitised`).
//
// The reference the tests and the `lenient` fuzz target check this against is serde's reading of the same
// types, each `Lenient<T>` value parsed from its raw text with serde_json (`reference.rs`, never in the
// module).

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

/// How a provider type is read from the tape (`tape::Value`): as serde's reader of that type would read
/// the value from serde_json, None where that reader fails. The provider types implement it through
/// `json_struct!`. One small function per type, with no visitor machinery: the module's size
/// (`docs/performance.md`). In tests and fuzzing every such type is also serde's `Deserialize`, the reference the
/// readers are compared with (`reference.rs`).
#[cfg(not(any(test, fuzzing)))]
pub trait Read<'de>: Sized {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self>;
}

/// See above; tests and fuzzing only.
#[cfg(any(test, fuzzing))]
pub trait Read<'de>: Sized + serde::Deserialize<'de> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self>;
}

impl<'de> Read<'de> for u64 {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.u64()
    }
}

impl<'de> Read<'de> for u32 {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.u64().and_then(|n| u32::try_from(n).ok())
    }
}

impl<'de> Read<'de> for i64 {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.i64()
    }
}

impl<'de> Read<'de> for f64 {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.f64()
    }
}

impl<'de> Read<'de> for bool {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.bool()
    }
}

impl<'de> Read<'de> for String {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.str().map(Cow::into_owned)
    }
}

/// serde's `Cow<str>` always copies.
impl<'de> Read<'de> for Cow<'_, str> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.str().map(|s| Cow::Owned(s.into_owned()))
    }
}

/// serde borrows a `&str` only from a string without escapes.
impl<'de: 'a, 'a> Read<'de> for &'a str {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.plain_str()
    }
}

/// Any value.
impl<'de> Read<'de> for IgnoredAny {
    fn read(_: tape::Value<'_, 'de>) -> Option<Self> {
        Some(IgnoredAny)
    }
}

impl<'de, T: Read<'de>> Read<'de> for Option<T> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        if v.is_null() {
            Some(None)
        } else {
            T::read(v).map(Some)
        }
    }
}

impl<'de, T: Read<'de>> Read<'de> for Vec<T> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        let mut out = Vec::new();
        for item in v.elements()? {
            out.push(T::read(item)?);
        }
        Some(out)
    }
}

impl<'de, T: Read<'de>> Read<'de> for Lenient<T> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        Some(Lenient(if v.is_null() { None } else { T::read(v) }))
    }
}

impl<'de: 'a, 'a> Read<'de> for LenientStr<'a> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        Some(LenientStr(v.str()))
    }
}

impl<'de: 'a, 'a> Read<'de> for LenientRaw<'a> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        if v.is_null() {
            return Some(LenientRaw(None));
        }
        Some(LenientRaw(Some(v.raw_text()?)))
    }
}

/// A value's JSON text as written (what serde_json's `&RawValue` borrows), for the few fields kept raw.
#[derive(Debug, Clone, Copy)]
pub struct Raw<'a>(pub &'a str);

impl<'de: 'a, 'a> Read<'de> for Raw<'a> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        v.raw_text().map(Raw)
    }
}

impl<'de> Read<'de> for OneOrMany {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        if let Some(s) = v.str() {
            return Some(OneOrMany(vec![s.into_owned()]));
        }
        let items = v.elements()?;
        Some(OneOrMany(
            items
                .filter_map(|item| item.str().map(Cow::into_owned))
                .collect(),
        ))
    }
}

impl<'de: 'a, 'a> Read<'de> for TextContent<'a> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        if let Some(s) = v.str() {
            return Some(TextContent(s));
        }
        let mut out = TextContent::default();
        // Anything else than text or a list of parts is empty text.
        for item in v.elements().into_iter().flatten() {
            if let Some(part) = Lenient::<TextPart<'a>>::read(item).and_then(Lenient::get) {
                out.push_part(part);
            }
        }
        Some(out)
    }
}

/// Read `body` as `T`; None on any error (never panics, never partially fails): one pass over the bytes
/// into the tape (`tape.rs`), one over the tape.
pub fn read<'a, T: Read<'a>>(body: &'a [u8]) -> Option<T> {
    let text = std::str::from_utf8(body).ok()?;
    #[cfg(any(test, fuzzing))]
    if let Some(read) = super::reference::instead(text) {
        return read;
    }
    tape::read(text, T::read).flatten()
}

/// The elements of a lenient list that could be read: an absent, `null` or mistyped list has none, and a
/// mistyped element is left out.
pub fn items<T>(list: Lenient<Vec<Lenient<T>>>) -> impl Iterator<Item = T> {
    list.get()
        .unwrap_or_default()
        .into_iter()
        .filter_map(Lenient::get)
}

/// A string field, borrowed from the body when it has no escapes; None when absent, `null` or not a string.
/// The same contract as `Lenient<Cow<str>>` (which always copies, because `Cow`'s own `Deserialize` does).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LenientStr<'a>(pub Option<Cow<'a, str>>);

impl<'a> LenientStr<'a> {
    pub fn get(self) -> Option<Cow<'a, str>> {
        self.0
    }
    pub fn as_ref(&self) -> Option<&Cow<'a, str>> {
        self.0.as_ref()
    }
}

/// A field's raw JSON text; None when absent or `null`. Any value is taken, so nothing is parsed twice.
#[derive(Debug, Clone, Copy, Default)]
pub struct LenientRaw<'a>(pub Option<&'a str>);

impl<'a> LenientRaw<'a> {
    pub fn get(self) -> Option<&'a str> {
        self.0
    }
}

/// A string that may also be written as an array of strings (`stop`, `input` ...).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OneOrMany(pub Vec<String>);

/// Text content written either as a string or as a list of typed parts (`[{"type":"text","text":…}]`).
/// Only text parts are kept; their texts are joined with "\n". Any other value is empty text. Borrowed from
/// the body when it is one string (or one text part) without escapes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TextContent<'a>(pub Cow<'a, str>);

json_struct! {
    pub(crate) struct TextPart<'a> {
        pub(crate) text: LenientStr<'a> = "text",
    }
}

impl<'a> TextContent<'a> {
    pub(crate) fn push_part(&mut self, part: TextPart<'a>) {
        if let Some(t) = part.text.get() {
            join_line(&mut self.0, t);
        }
    }
}

/// Append `text` to `acc` on a new line; an empty `acc` takes `text` as it is (borrowed stays borrowed).
pub fn join_line<'a>(acc: &mut Cow<'a, str>, text: Cow<'a, str>) {
    if acc.is_empty() {
        *acc = text;
    } else {
        let out = acc.to_mut();
        out.push('\n');
        out.push_str(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::super::reference::{sanitised, with_reference, with_serde};
    use super::*;

    json_struct! {
        struct T<'a> {
            a: Lenient<u64> = "a",
            b: Lenient<String> = "b",
            stop: Lenient<OneOrMany> = "stop",
            c: Lenient<TextContent<'a>> = "c",
        }
    }

    #[test]
    fn wrong_type_is_local() {
        let t: T<'_> = super::read(br#"{"a":"x","b":"ok","stop":["s",1,"t"],"c":[{"type":"text","text":"h"},{"type":"image"}]}"#)
            .unwrap();
        assert_eq!(t.a.0, None);
        assert_eq!(t.b.0.as_deref(), Some("ok"));
        assert_eq!(t.stop.0.unwrap().0, vec!["s", "t"]);
        assert_eq!(t.c.0.unwrap().0, "h");
    }

    json_struct! {
        /// A response-shaped document with every kind of lenient field.
        #[derive(Debug, PartialEq)]
        struct Doc<'a> {
            id: LenientStr<'a> = "id",
            n: Lenient<u64> = "n",
            f: Lenient<f64> = "f",
            i: Lenient<i64> = "i",
            b: Lenient<bool> = "b",
            s: Lenient<String> = "s",
            stop: Lenient<OneOrMany> = "stop",
            text: Lenient<TextContent<'a>> = "text",
            choices: Lenient<Vec<Lenient<Choice<'a>>>> = "choices",
            usage: Lenient<Usage> = "usage",
            any: Lenient<IgnoredAny> = "any",
        }
    }

    json_struct! {
        #[derive(Debug, PartialEq)]
        struct Choice<'a> {
            index: Lenient<u64> = "index",
            finish_reason: LenientStr<'a> = "finish_reason",
            message: Lenient<Message<'a>> = "message",
        }
    }

    json_struct! {
        #[derive(Debug, PartialEq)]
        struct Message<'a> {
            content: Lenient<TextContent<'a>> = "content",
            tool_calls: Lenient<Vec<Lenient<ToolCall<'a>>>> = "tool_calls",
        }
    }

    json_struct! {
        #[derive(Debug, PartialEq)]
        struct ToolCall<'a> {
            id: LenientStr<'a> = "id",
            function: Lenient<Function<'a>> = "function",
        }
    }

    json_struct! {
        #[derive(Debug, PartialEq)]
        struct Function<'a> {
            name: LenientStr<'a> = "name",
        }
    }

    json_struct! {
        #[derive(Debug, PartialEq)]
        struct Usage {
            prompt_tokens: Lenient<u64> = "prompt_tokens",
            completion_tokens: Lenient<u64> = "completion_tokens",
            details: Lenient<Details> = "details",
        }
    }

    json_struct! {
        #[derive(Debug, PartialEq)]
        struct Details {
            cached_tokens: Lenient<u64> = "cached_tokens",
        }
    }

    /// Read `body` through the tape and check that the reference reader reads the same.
    fn read(body: &str) -> Option<Doc<'_>> {
        let doc = super::read::<Doc<'_>>(body.as_bytes());
        let old = with_serde(|| super::read::<Doc<'_>>(body.as_bytes()));
        assert_eq!(doc, old, "{body}");
        doc
    }

    /// `read`, asserting the document was read.
    fn read_doc(body: &str) -> Doc<'_> {
        read(body).unwrap_or_else(|| panic!("read: {body}"))
    }

    #[test]
    fn wrong_scalar_types_are_none_and_cost_nothing_else() {
        let d = read_doc(
            r#"{"id":5,"n":"7","f":true,"i":1.5,"b":"true","s":[],"stop":7,"text":false,
                "usage":{"prompt_tokens":"1","completion_tokens":2,"details":{"cached_tokens":-3}},"any":[1]}"#,
        );
        assert_eq!(
            (d.id.0, d.n.0, d.f.0, d.i.0, d.b.0, d.s.0, d.stop.0),
            (None, None, None, None, None, None, None)
        );
        // Text content of another type is empty text (as before), not absent.
        assert_eq!(d.text.0, Some(TextContent::default()));
        let u = d.usage.0.unwrap();
        assert_eq!((u.prompt_tokens.0, u.completion_tokens.0), (None, Some(2)));
        assert_eq!(u.details.0.unwrap().cached_tokens.0, None);
        assert!(d.any.0.is_some());
        let d = read_doc(r#"{"n":7,"f":7,"i":-7,"b":false,"s":"s"}"#);
        assert_eq!(
            (d.n.0, d.f.0, d.i.0, d.b.0, d.s.0.as_deref()),
            (Some(7), Some(7.0), Some(-7), Some(false), Some("s"))
        );
    }

    #[test]
    fn wrong_container_types_are_none_and_cost_nothing_else() {
        let d = read_doc(r#"{"choices":"x","usage":5,"id":"ok","stop":{"a":["b"]},"n":[1,{}]}"#);
        assert_eq!((d.choices.0, d.usage.0, d.n.0), (None, None, None));
        assert_eq!((d.id.0.as_deref(), d.stop.0), (Some("ok"), None));
        let d =
            read_doc(r#"{"choices":[{"index":1,"message":[],"finish_reason":"stop"}],"id":"ok"}"#);
        let c = d.choices.0.unwrap().remove(0).0.unwrap();
        // serde reads a struct from an array by position: `[]` is an empty message, as it always was.
        assert_eq!(c.message.0, Some(Message::default()));
        assert_eq!(
            (c.index.0, c.finish_reason.0.as_deref()),
            (Some(1), Some("stop"))
        );
        // More elements than fields is no struct at all.
        let d = read_doc(r#"{"choices":[{"message":[null,null,null],"finish_reason":"stop"}]}"#);
        let c = d.choices.0.unwrap().remove(0).0.unwrap();
        assert_eq!(
            (c.message.0, c.finish_reason.0.as_deref()),
            (None, Some("stop"))
        );
        let d = read_doc(r#"{"choices":{"0":{"index":0}},"usage":[],"text":{"text":"t"},"s":{}}"#);
        assert_eq!(d.choices.0, None);
        assert_eq!(d.usage.0, Some(Usage::default()));
        assert_eq!(d.text.0, Some(TextContent::default()));
        assert_eq!(d.s.0, None);
    }

    #[test]
    fn a_wrong_type_deep_inside_keeps_the_rest_of_the_body() {
        let d = read_doc(
            r#"{"id":"chatcmpl-1","choices":[
                {"index":0,"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":{"x":1}},{"text":"b"}],
                  "tool_calls":[{"id":"c1","function":5},{"id":{"x":[1,2,{"y":"z"}]},"function":{"name":"g"}},
                                {"id":"c3","function":{"name":["n"]}},7,null]},"finish_reason":"tool_calls"},
                {"index":"1","message":{"content":"hi"},"finish_reason":null}],
              "usage":{"prompt_tokens":19,"completion_tokens":10,"details":[{"cached_tokens":4}]},"n":3}"#,
        );
        assert_eq!(d.id.0.as_deref(), Some("chatcmpl-1"));
        assert_eq!(d.n.0, Some(3));
        let choices = d.choices.0.unwrap();
        let c0 = choices[0].0.as_ref().unwrap();
        let m0 = c0.message.0.as_ref().unwrap();
        assert_eq!(m0.content.0.as_ref().unwrap().0, "a\nb");
        let calls = m0.tool_calls.0.as_ref().unwrap();
        assert_eq!(calls.len(), 5);
        assert_eq!(calls[0].0.as_ref().unwrap().id.0.as_deref(), Some("c1"));
        assert_eq!(calls[0].0.as_ref().unwrap().function.0, None);
        let c1 = calls[1].0.as_ref().unwrap();
        assert_eq!(c1.id.0, None);
        assert_eq!(c1.function.0.as_ref().unwrap().name.0.as_deref(), Some("g"));
        assert_eq!(
            calls[2].0.as_ref().unwrap().function.0,
            Some(Function::default())
        );
        assert_eq!((&calls[3].0, &calls[4].0), (&None, &None));
        assert_eq!(c0.finish_reason.0.as_deref(), Some("tool_calls"));
        let c1 = choices[1].0.as_ref().unwrap();
        assert_eq!((c1.index.0, c1.finish_reason.0.as_deref()), (None, None));
        assert_eq!(
            c1.message.0.as_ref().unwrap().content.0.as_ref().unwrap().0,
            "hi"
        );
        let u = d.usage.0.unwrap();
        assert_eq!(
            (u.prompt_tokens.0, u.completion_tokens.0),
            (Some(19), Some(10))
        );
        // `details` as an array: read by position, its one element is not a number.
        assert_eq!(u.details.0, Some(Details::default()));
    }

    #[test]
    fn null_is_none() {
        let d = read_doc(
            r#"{"id":null,"n":null,"s":null,"stop":null,"text":null,"usage":null,"any":null,
                "choices":[null,{"index":null,"message":{"content":null,"tool_calls":[null]}}]}"#,
        );
        assert_eq!((d.id.0, d.n.0, d.s.0, d.stop.0), (None, None, None, None));
        assert_eq!(
            (d.text.0, d.usage.0, d.any.0.is_some()),
            (None, None, false)
        );
        let choices = d.choices.0.unwrap();
        assert_eq!(choices[0].0, None);
        let c = choices[1].0.as_ref().unwrap();
        assert_eq!(c.index.0, None);
        let m = c.message.0.as_ref().unwrap();
        assert_eq!(m.content.0, None);
        assert_eq!(m.tool_calls.0.as_ref().unwrap()[0].0, None);
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        let d = read_doc(r#"{"id":"plain é","s":"a\"b\u00e9\n\ud83d\ude00","stop":"x\ty"}"#);
        assert!(matches!(d.id.0, Some(Cow::Borrowed("plain é"))));
        assert_eq!(d.s.0.as_deref(), Some("a\"bé\n😀"));
        assert_eq!(d.stop.0.unwrap().0, vec!["x\ty"]);
        let d = read_doc(r#"{"id":"a\\b\/c","text":[{"text":"\u0041"},{"text":"B"}]}"#);
        assert!(matches!(&d.id.0, Some(Cow::Owned(s)) if s == r"a\b/c"));
        assert_eq!(d.text.0.unwrap().0, "A\nB");
        let t: TextPart<'_> = super::read(br#"{"text":"t"}"#).unwrap();
        assert!(matches!(t.text.0, Some(Cow::Borrowed("t"))));
    }

    #[test]
    fn numbers_out_of_range_are_none_and_cost_nothing_else() {
        let d = read_doc(r#"{"n":-1,"i":9223372036854775808,"f":18446744073709551616,"id":"x"}"#);
        assert_eq!(
            (d.n.0, d.i.0, d.f.0),
            (None, None, Some(18446744073709551616.0))
        );
        let d =
            read_doc(r#"{"n":18446744073709551616,"choices":[{"index":18446744073709551615}]}"#);
        assert_eq!(d.n.0, None);
        assert_eq!(
            d.choices.0.unwrap()[0].0.as_ref().unwrap().index.0,
            Some(u64::MAX)
        );
        let d = read_doc(r#"{"n":1e-400,"f":1e-400}"#);
        assert_eq!((d.n.0, d.f.0), (None, Some(0.0)));
        // Numbers beyond f64, which serde_json refuses to read, are `null`.
        for body in [
            r#"{"n":1e400,"id":"x","usage":{"prompt_tokens":1}}"#,
            r#"{"f":-1e400,"id":"x","usage":{"prompt_tokens":1}}"#,
            r#"{"n":1e99999999999,"id":"x","usage":{"prompt_tokens":1}}"#,
            r#"{"id":"x","usage":{"prompt_tokens":1,"completion_tokens":1e400}}"#,
            r#"{"id":"x","usage":{"prompt_tokens":1},"any":{"deep":[1e400]}}"#,
        ] {
            let d = read_doc(body);
            assert_eq!(
                (d.n.0, d.f.0, d.id.0.as_deref()),
                (None, None, Some("x")),
                "{body}"
            );
            assert_eq!(d.usage.0.unwrap().prompt_tokens.0, Some(1), "{body}");
        }
    }

    #[test]
    fn a_lone_surrogate_is_none_and_costs_nothing_else() {
        let d = read_doc(r#"{"id":"\ud800","s":"ok","text":[{"text":"\udc00"},{"text":"b"}]}"#);
        assert_eq!((d.id.0, d.s.0.as_deref()), (None, Some("ok")));
        assert_eq!(d.text.0.unwrap().0, "b");
    }

    /// The tape reads the token as `null`, the reference reader dropped the innermost lenient value holding
    /// it: the same where the token is that value (a lenient field or element: the usual case, and every
    /// case in the fixture corpus), different where a type inside takes `null` itself, and for keys. Raw
    /// values keep the token as written.
    #[test]
    fn unreadable_tokens_read_as_null() {
        json_struct! {
            #[derive(Debug)]
            struct O<'a> {
                v: Lenient<Vec<Option<u64>>> = "v",
                usage: Lenient<Usage> = "usage",
                raw: LenientRaw<'a> = "raw",
                id: LenientStr<'a> = "id",
            }
        }
        let read = |body: &'static str| super::read::<O<'_>>(body.as_bytes());
        let old = |body: &'static str| with_serde(|| read(body));

        let body =
            r#"{"v":[1,1e400],"usage":{"prompt_tokens":1e400,"completion_tokens":2},"id":"x"}"#;
        let (new, old_) = (read(body).unwrap(), old(body).unwrap());
        assert_eq!(new.v.0, Some(vec![Some(1), None]));
        assert_eq!(old_.v.0, None);
        assert_eq!(new.usage.0, old_.usage.0);
        assert_eq!(new.usage.0.unwrap().completion_tokens.0, Some(2));
        assert_eq!((new.id.0, old_.id.0), (Some("x".into()), Some("x".into())));

        // A key that cannot be read: its member is ignored (the serde reference drops the object).
        let body = r#"{"usage":{"\ud800":1,"prompt_tokens":2},"id":"x"}"#;
        assert_eq!(
            read(body).unwrap().usage.0.unwrap().prompt_tokens.0,
            Some(2)
        );
        assert_eq!(old(body).unwrap().usage.0, None);
        let body = r#"{"\ud800":1,"id":"x"}"#;
        assert_eq!(read(body).unwrap().id.0.as_deref(), Some("x"));
        assert!(old(body).is_none());

        let body = r#"{"raw":{"x":1e400},"id":"\ud800"}"#;
        let new = read(body).unwrap();
        assert_eq!(new.raw.get(), Some(r#"{"x":1e400}"#));
        assert_eq!(new.id.0, None);
        let old_ = old(body).unwrap();
        assert_eq!(old_.raw.get(), Some(r#"{"x":1e400}"#));
        assert_eq!(old_.id.0, None);

        // Broken elsewhere too: still nothing.
        assert!(read(r#"{"id":"\ud800","v":[1,]}"#).is_none());
    }

    #[test]
    fn offsets_of_borrowed_parts() {
        let body = br#"{"id":"\ud800","raw":{"a":1}}"#;
        json_struct! {
            struct R<'a> {
                raw: LenientRaw<'a> = "raw",
                #[allow(dead_code)]
                id: LenientStr<'a> = "id",
            }
        }
        let r: R<'_> = super::read(body).unwrap();
        let raw = r.raw.get().unwrap();
        let offset = super::super::edit::offset;
        assert_eq!(offset(body, raw), Some(21));
        assert_eq!(
            offset(body, std::str::from_utf8(&body[3..5]).unwrap()),
            Some(3)
        );
        assert_eq!(offset(body, "elsewhere"), None);
    }

    #[test]
    fn sanitised_copies_read_as_their_originals() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        let pieces = [
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"a\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "1e400",
            "-1e309",
            "1",
            "null",
            " ",
            "\"prompt_tokens\"",
            "\"usage\"",
            "\"id\"",
            "\"n\"",
        ];
        for _ in 0..20_000 {
            let mut t = String::new();
            for _ in 0..(s % 24) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                t.push_str(pieces[(s as usize) % pieces.len()]);
            }
            if let Some(c) = sanitised(&t) {
                assert_eq!(c.len(), t.len());
                assert!(sanitised(&c).is_none(), "{t} -> {c}");
                // Whatever the single pass makes of the copy is what the serde reference makes of it.
                let d = super::read::<Doc<'_>>(c.as_bytes());
                assert_eq!(
                    d,
                    with_serde(|| super::read::<Doc<'_>>(c.as_bytes())),
                    "{c}"
                );
            }
            // The tape reads the original as the reference reader reads its sanitised copy.
            let copy = sanitised(&t).unwrap_or_else(|| t.clone());
            assert_eq!(
                super::read::<Doc<'_>>(t.as_bytes()),
                with_reference(|| super::read::<Doc<'_>>(copy.as_bytes())),
                "{t}"
            );
        }
    }

    #[test]
    fn duplicate_keys() {
        // A repeated member costs nothing: the last one is read, at any depth.
        let d = read_doc(
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":3},"id":"x",
                "choices":[{"index":0,"index":1,"finish_reason":"stop"},{"index":2}]}"#,
        );
        let u = d.usage.0.unwrap();
        assert_eq!(
            (u.prompt_tokens.0, u.completion_tokens.0),
            (Some(2), Some(3))
        );
        let choices = d.choices.0.unwrap();
        let c0 = choices[0].0.as_ref().unwrap();
        assert_eq!(
            (c0.index.0, c0.finish_reason.0.as_deref()),
            (Some(1), Some("stop"))
        );
        assert_eq!(choices[1].0.as_ref().unwrap().index.0, Some(2));
        assert_eq!(
            read_doc(r#"{"id":"a","n":1,"id":"b"}"#).id.0.as_deref(),
            Some("b")
        );
        // The last one even when it is null or of another type, as JSON parsers read repeats.
        assert_eq!(read_doc(r#"{"id":"a","id":null}"#).id.0, None);
        assert_eq!(read_doc(r#"{"n":"x","n":1,"id":"a"}"#).n.0, Some(1));
        // Unknown keys may repeat.
        assert_eq!(
            read_doc(r#"{"zz":1,"zz":[2],"id":"a"}"#).id.0.as_deref(),
            Some("a")
        );
    }

    #[test]
    fn a_field_named_and_aliased_takes_its_own_name() {
        json_struct! {
            #[derive(Debug, PartialEq)]
            struct A {
                n: Lenient<u64> = "n" | "count" | "total",
                m: Lenient<u64> = "m",
            }
        }
        let read = |body: &str| {
            let a = super::read::<A>(body.as_bytes());
            let b = with_serde(|| super::read::<A>(body.as_bytes()));
            assert_eq!(a, b, "{body}");
            let a = a.unwrap();
            (a.n.0, a.m.0)
        };
        assert_eq!(read(r#"{"count":1}"#), (Some(1), None));
        assert_eq!(read(r#"{"n":1,"count":2,"m":3}"#), (Some(1), Some(3)));
        assert_eq!(read(r#"{"count":2,"n":1}"#), (Some(1), None));
        assert_eq!(read(r#"{"total":3,"count":2}"#), (Some(2), None));
        assert_eq!(
            read(r#"{"count":2,"total":3,"m":1,"m":4}"#),
            (Some(2), Some(4))
        );
        assert_eq!(read(r#"{"count":2,"n":null}"#), (None, None));
        // A struct written as an array is still read by position.
        assert_eq!(read(r#"[5,6]"#), (Some(5), Some(6)));
        assert_eq!(super::read::<A>(b"[5,6,7]").map(|a| a.n.0), None);
    }

    #[test]
    fn raw_values_and_garbage() {
        json_struct! {
            struct R<'a> {
                raw: LenientRaw<'a> = "raw",
                n: Lenient<u64> = "n",
            }
        }
        let r: R<'_> = super::read(br#"{"raw": {"type":"object", "x":[1e400]} ,"n":1}"#).unwrap();
        assert_eq!(r.raw.get(), Some(r#"{"type":"object", "x":[1e400]}"#));
        assert_eq!(r.n.0, Some(1));
        let r: R<'_> = super::read(br#"{"raw":null}"#).unwrap();
        assert!(r.raw.get().is_none());
        for body in [
            "",
            "{",
            r#"{"n":}"#,
            r#"{"n":1,}"#,
            r#"{"n":[1,]}"#,
            r#"{"n":tru}"#,
            "{\"id\":\"\u{1}\"}",
        ] {
            assert_eq!(read(body), None, "{body:?}");
        }
        // A body that is not UTF-8 is not read, even where the bytes are in a string no field reads.
        assert_eq!(super::read::<Doc<'_>>(b"{\"id\":\"\xff\"}"), None);
        assert_eq!(
            super::read::<Doc<'_>>(b"{\"zz\":\"\xff\",\"id\":\"a\"}"),
            None
        );
        let body = b"{\"usage\":{\"zz\":\"\xff\",\"prompt_tokens\":1},\"id\":\"a\"}";
        assert_eq!(super::read::<Doc<'_>>(body), None);
        assert_eq!(with_serde(|| super::read::<Doc<'_>>(body)), None);
    }
}
