//! Redaction inside JSON bodies without re-serialising them: a small linear tokenizer walks the document,
//! tracks which top-level field each string sits under, and rewrites only the string values that are user
//! text. Every other byte (keys, numbers, whitespace, untouched strings with their original escapes) is
//! copied as it was, so the upstream sees the client's body except for the redacted spans.

use super::{Findings, Redactor};
use crate::codec::json::escape_into;
use crate::codec::json::skim::{self, string_end};

/// Which JSON strings are user text.
///
/// The *root key* of a string is the first object key on its path: the top-level key for an object body,
/// the key inside each element for a top-level array (Gemini's streamed array). Strings under a root key in
/// `roots` are redacted (all strings when `roots` is empty), except the direct value of a `structural` key
/// (`"role": "user"`, `"type": "text"`, ids, model names) and anything under an `opaque` key (inline binary
/// payloads: scanning base64 costs time and finds nothing). Object keys are never rewritten.
#[derive(Clone, Copy, Debug)]
pub struct FieldSelector<'a> {
    pub roots: &'a [&'a str],
    pub structural: &'a [&'a str],
    pub opaque: &'a [&'a str],
}

const STRUCTURAL: &[&str] = &[
    "role",
    "type",
    "model",
    "id",
    "name",
    "tool_call_id",
    "tool_use_id",
    "call_id",
    "object",
    "mimeType",
    "mime_type",
    "media_type",
    "finish_reason",
    "finishReason",
    "stop_reason",
    "status",
];

const OPAQUE: &[&str] = &[
    "image_url",
    "inlineData",
    "inline_data",
    "input_audio",
    "file_data",
    "fileData",
];

impl FieldSelector<'static> {
    /// User text in request bodies of the supported APIs (OpenAI chat/responses/completions/embeddings,
    /// Anthropic, Gemini, Bedrock, Cohere, Ollama).
    pub const REQUEST: FieldSelector<'static> = FieldSelector {
        roots: &[
            "messages",
            "system",
            "input",
            "prompt",
            "contents",
            "instructions",
            "systemInstruction",
            "system_instruction",
            "message",
            "chat_history",
            "preamble",
            "documents",
            "texts",
            "inputText",
        ],
        structural: STRUCTURAL,
        opaque: OPAQUE,
    };

    /// Generated text in response bodies and stream events of the supported APIs.
    pub const RESPONSE: FieldSelector<'static> = FieldSelector {
        roots: &[
            "choices",
            "content",
            "candidates",
            "output",
            "output_text",
            "message",
            "response",
            "completion",
            "text",
            "delta",
            "content_block",
            "item",
            "part",
            "generations",
            "outputs",
        ],
        structural: STRUCTURAL,
        opaque: OPAQUE,
    };

    /// Every string value except structural ones.
    pub const ALL_STRINGS: FieldSelector<'static> = FieldSelector {
        roots: &[],
        structural: STRUCTURAL,
        opaque: OPAQUE,
    };
}

/// Deeper documents are refused (serde_json refuses beyond 128 too).
const MAX_DEPTH: usize = 128;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Value,
    /// Just after `[`.
    ValueOrEnd,
    /// Just after `{`.
    KeyOrEnd,
    /// After `,` in an object.
    Key,
    Colon,
    CommaOrEnd,
}

/// Selection state of a container, inherited by its children.
#[derive(Clone, Copy)]
struct Ctx {
    obj: bool,
    active: bool,
    rooted: bool,
    /// Raw byte range of the key this container is the value of ((0, 0) for none).
    key: (usize, usize),
}

/// Selection state for the value about to be read.
#[derive(Clone, Copy)]
struct Next {
    active: bool,
    rooted: bool,
    structural: bool,
    key: (usize, usize),
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Decode the contents of a validated string (between the quotes). Lone surrogates become U+FFFD.
fn unescape(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut j = 0usize;
    while let Some(&c) = raw.get(j) {
        if c != b'\\' {
            out.push(c);
            j += 1;
            continue;
        }
        let e = *raw.get(j + 1)?;
        j += 2;
        let simple = match e {
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => 0,
            _ => return None,
        };
        if e != b'u' {
            out.push(simple);
            continue;
        }
        let hi = skim::hex4(raw.get(j..j + 4)?)?;
        j += 4;
        let cp = if (0xD800..0xDC00).contains(&hi) {
            // A high surrogate pairs with a following `\uDC00`–`\uDFFF`.
            let lo = raw
                .get(j..j + 6)
                .filter(|s| s.starts_with(b"\\u"))
                .and_then(|s| skim::hex4(s.get(2..)?))
                .filter(|lo| (0xDC00..0xE000).contains(lo));
            match lo {
                Some(lo) => {
                    j += 6;
                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                }
                None => 0xFFFD,
            }
        } else if (0xDC00..0xE000).contains(&hi) {
            0xFFFD
        } else {
            hi
        };
        let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    }
    String::from_utf8(out).ok()
}

impl Redactor {
    /// Redact the user-text string values of a JSON document, keeping every other byte identical.
    /// `None` when nothing matched or the input is not valid JSON (the caller forwards the original).
    pub fn redact_json_strings(
        &self,
        json: &[u8],
        fields: FieldSelector<'_>,
    ) -> Option<(Vec<u8>, Findings)> {
        self.redact_json_strings_observed(json, fields, &mut |_| {})
    }

    /// `redact_json_strings`, also showing `observe` each selected string (decoded, before redaction), so
    /// a caller that needs the user text too (the prompt-injection flags) walks the document once.
    pub fn redact_json_strings_observed(
        &self,
        json: &[u8],
        fields: FieldSelector<'_>,
        observe: &mut dyn FnMut(&str),
    ) -> Option<(Vec<u8>, Findings)> {
        let mut findings = Findings::default();
        let out = map_json_strings(json, fields, &mut |_, text| {
            observe(text);
            let hits = self.hits(text);
            if hits.is_empty() {
                return None;
            }
            let mut redacted = String::with_capacity(text.len());
            self.write_redacted(&mut redacted, text, &hits, &mut findings);
            Some(redacted)
        })??;
        Some((out, findings))
    }
}

/// Walk the selected string values of a JSON document; `visit(key, text)` sees each one decoded, with the
/// (unescaped) object key it is the value of ("" at the top level), and may return a replacement.
/// `None`: not valid JSON. `Some(None)`: valid, nothing replaced. `Some(Some(body))`: the document with the
/// replacements, every other byte as it was.
pub fn map_json_strings(
    json: &[u8],
    fields: FieldSelector<'_>,
    visit: &mut dyn FnMut(&str, &str) -> Option<String>,
) -> Option<Option<Vec<u8>>> {
    {
        // Validating UTF-8 once lets every raw string slice below be a &str without rechecking.
        let doc = std::str::from_utf8(json).ok()?;
        let b = json;
        let mut out: Option<Vec<u8>> = None;
        let mut copied = 0usize;
        let mut stack: Vec<Ctx> = Vec::new();
        let mut expect = Expect::Value;
        let mut next = Next {
            active: fields.roots.is_empty(),
            rooted: false,
            structural: false,
            key: (0, 0),
        };
        let mut done = false;
        let mut i = 0usize;
        loop {
            i = skip_ws(b, i);
            let Some(&c) = b.get(i) else {
                break;
            };
            if done {
                return None; // trailing bytes after the top-level value
            }
            let mut value_done = false;
            match expect {
                Expect::Value | Expect::ValueOrEnd => {
                    if expect == Expect::ValueOrEnd && c == b']' {
                        stack.pop();
                        i += 1;
                        value_done = true;
                    } else {
                        match c {
                            b'{' | b'[' => {
                                if stack.len() >= MAX_DEPTH {
                                    return None;
                                }
                                let obj = c == b'{';
                                stack.push(Ctx {
                                    obj,
                                    active: next.active,
                                    rooted: next.rooted,
                                    key: next.key,
                                });
                                expect = if obj {
                                    Expect::KeyOrEnd
                                } else {
                                    Expect::ValueOrEnd
                                };
                                next.structural = false;
                                i += 1;
                            }
                            b'"' => {
                                let (end, escaped) = string_end(b, i)?;
                                if next.active && !next.structural {
                                    let raw = doc.get(i + 1..end - 1)?;
                                    let key = decode(doc.get(next.key.0..next.key.1)?)?;
                                    if let Some(rewritten) =
                                        rewrite_string(raw, escaped, &key, visit)
                                    {
                                        let o =
                                            out.get_or_insert_with(|| Vec::with_capacity(b.len()));
                                        o.extend_from_slice(b.get(copied..i)?);
                                        o.push(b'"');
                                        o.extend_from_slice(&rewritten);
                                        o.push(b'"');
                                        copied = end;
                                    }
                                }
                                i = end;
                                value_done = true;
                            }
                            b'-' | b'0'..=b'9' => {
                                i = skim::number_end(b, i)?;
                                value_done = true;
                            }
                            b't' | b'f' | b'n' => {
                                let lit: &[u8] = match c {
                                    b't' => b"true",
                                    b'f' => b"false",
                                    _ => b"null",
                                };
                                if !b.get(i..)?.starts_with(lit) {
                                    return None;
                                }
                                i += lit.len();
                                value_done = true;
                            }
                            _ => return None,
                        }
                    }
                }
                Expect::KeyOrEnd | Expect::Key => {
                    if expect == Expect::KeyOrEnd && c == b'}' {
                        stack.pop();
                        i += 1;
                        value_done = true;
                    } else {
                        if c != b'"' {
                            return None;
                        }
                        let (end, escaped) = string_end(b, i)?;
                        let raw = doc.get(i + 1..end - 1)?;
                        let key = if escaped {
                            std::borrow::Cow::Owned(unescape(raw.as_bytes())?)
                        } else {
                            std::borrow::Cow::Borrowed(raw)
                        };
                        let parent = *stack.last()?;
                        let key = key.as_ref();
                        let mut active = if parent.rooted {
                            parent.active
                        } else {
                            fields.roots.is_empty() || fields.roots.contains(&key)
                        };
                        if fields.opaque.contains(&key) {
                            active = false;
                        }
                        next = Next {
                            active,
                            rooted: true,
                            structural: fields.structural.contains(&key),
                            key: (i + 1, end - 1),
                        };
                        expect = Expect::Colon;
                        i = end;
                    }
                }
                Expect::Colon => {
                    if c != b':' {
                        return None;
                    }
                    expect = Expect::Value;
                    i += 1;
                }
                Expect::CommaOrEnd => {
                    let top = *stack.last()?;
                    i += 1;
                    match (c, top.obj) {
                        (b',', true) => expect = Expect::Key,
                        (b',', false) => {
                            expect = Expect::Value;
                            next = Next {
                                active: top.active,
                                rooted: top.rooted,
                                structural: false,
                                key: top.key,
                            };
                        }
                        (b'}', true) | (b']', false) => {
                            stack.pop();
                            value_done = true;
                        }
                        _ => return None,
                    }
                }
            }
            if value_done {
                match stack.last() {
                    None => done = true,
                    Some(top) => {
                        expect = Expect::CommaOrEnd;
                        next = Next {
                            active: top.active,
                            rooted: top.rooted,
                            structural: false,
                            key: top.key,
                        };
                    }
                }
            } else if expect == Expect::ValueOrEnd {
                // Elements of a new array inherit the array's selection.
                if let Some(top) = stack.last() {
                    next = Next {
                        active: top.active,
                        rooted: top.rooted,
                        structural: false,
                        key: top.key,
                    };
                }
            }
        }
        if !done {
            return None;
        }
        let Some(mut o) = out else {
            return Some(None);
        };
        o.extend_from_slice(b.get(copied..)?);
        Some(Some(o))
    }
}

/// A raw key (between its quotes) decoded.
fn decode(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    if raw.contains('\\') {
        unescape(raw.as_bytes()).map(std::borrow::Cow::Owned)
    } else {
        Some(std::borrow::Cow::Borrowed(raw))
    }
}

/// The re-escaped contents of one string as `visit` rewrote it, or None when it was left alone.
fn rewrite_string(
    raw: &str,
    escaped: bool,
    key: &str,
    visit: &mut dyn FnMut(&str, &str) -> Option<String>,
) -> Option<Vec<u8>> {
    let decoded;
    let text: &str = if escaped {
        decoded = unescape(raw.as_bytes())?;
        &decoded
    } else {
        raw
    };
    let new = visit(key, text)?;
    let mut out = Vec::with_capacity(new.len() + 8);
    escape_into(&mut out, &new);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::RedactionConfig;
    use super::*;
    use serde_json::{json, Value};

    fn r() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    fn rewrite(body: &str, sel: FieldSelector<'_>) -> Option<(String, Findings)> {
        r().redact_json_strings(body.as_bytes(), sel)
            .map(|(o, f)| (String::from_utf8(o).unwrap(), f))
    }

    /// Everything outside the rewritten strings is byte-identical: remove the string literals from both
    /// sides and compare what remains.
    fn skeleton(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = String::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'"' {
                let (end, _) = string_end(b, i).unwrap();
                out.push_str("\"\"");
                i = end;
            } else {
                out.push(b[i] as char);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn openai_chat_request() {
        let body = r#"{ "model" : "gpt-4o",
  "messages": [
    {"role":"system","content":"You are helpful."},
    {"role":"user","content":"Email jane@example.com, card 4111 1111 1111 1111", "name":"jane@example.com"}
  ],
  "temperature": 0.7, "user": "bob@example.com", "n": 1e3, "stream": true, "stop": null }"#;
        let (out, f) = rewrite(body, FieldSelector::REQUEST).unwrap();
        assert_eq!(skeleton(&out), skeleton(body));
        let v: Value = serde_json::from_str(&out).unwrap();
        let mut want: Value = serde_json::from_str(body).unwrap();
        want["messages"][1]["content"] =
            json!("Email [REDACTED:EMAIL], card [REDACTED:CREDIT_CARD]");
        assert_eq!(v, want);
        // The `user` field is not under a root; `name` is structural; both kept.
        assert!(out.contains(r#""user": "bob@example.com""#));
        assert_eq!(f.count, 2);
        assert_eq!(f.types, vec!["credit_card", "email"]);
    }

    #[test]
    fn untouched_body_is_none() {
        assert!(rewrite(
            r#"{"messages":[{"role":"user","content":"hi"}]}"#,
            FieldSelector::REQUEST
        )
        .is_none());
        // Matches outside the selected roots do not count.
        assert!(rewrite(
            r#"{"metadata":{"email":"a@example.com"}}"#,
            FieldSelector::REQUEST
        )
        .is_none());
    }

    #[test]
    fn escapes_are_decoded_and_preserved() {
        let body = r#"{"prompt":"caf\u00e9 \"quoted\" back\\slash \ud83d\ude00 mail jane@example.com\n","other":"caf\u00e9 \/"}"#;
        let (out, _) = rewrite(body, FieldSelector::REQUEST).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["prompt"],
            json!("café \"quoted\" back\\slash 😀 mail [REDACTED:EMAIL]\n")
        );
        // The untouched string keeps its original escapes byte for byte.
        assert!(out.ends_with(r#","other":"caf\u00e9 \/"}"#), "{out}");
        // A match built from escapes is found after decoding: `\u0040` is `@`.
        let body = r#"{"input":["jane\u0040example.com", "x"]}"#;
        let (out, _) = rewrite(body, FieldSelector::REQUEST).unwrap();
        assert_eq!(out, r#"{"input":["[REDACTED:EMAIL]", "x"]}"#);
        // Lone surrogates decode to U+FFFD without failing.
        let body = r#"{"input":"\ud800 a@example.com"}"#;
        let (out, _) = rewrite(body, FieldSelector::REQUEST).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["input"], json!("\u{FFFD} [REDACTED:EMAIL]"));
    }

    #[test]
    fn keys_structural_and_opaque() {
        let body = r#"{"contents":[{"role":"user","parts":[{"text":"a@example.com"},{"inlineData":{"mimeType":"image/png","data":"a@example.com"}}]}],
"jane@example.com":"x","systemInstruction":{"parts":[{"text":"call 555-123-4567"}]}}"#;
        let (out, f) = rewrite(body, FieldSelector::REQUEST).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["contents"][0]["parts"][0]["text"],
            json!("[REDACTED:EMAIL]")
        );
        assert_eq!(
            v["contents"][0]["parts"][1]["inlineData"]["data"],
            json!("a@example.com")
        );
        assert_eq!(v["jane@example.com"], json!("x"));
        assert_eq!(
            v["systemInstruction"]["parts"][0]["text"],
            json!("call [REDACTED:PHONE]")
        );
        assert_eq!(f.count, 2);
        // A key under a root is never rewritten either.
        let body = r#"{"messages":[{"a@example.com":"b@example.com"}]}"#;
        let (out, _) = rewrite(body, FieldSelector::REQUEST).unwrap();
        assert_eq!(
            out,
            r#"{"messages":[{"a@example.com":"[REDACTED:EMAIL]"}]}"#
        );
    }

    #[test]
    fn top_level_arrays_and_scalars() {
        // Gemini streamed array: each element's keys act as roots.
        let body = r#"[{"candidates":[{"content":{"parts":[{"text":"x a@example.com"}]}}]},
 {"usageMetadata":{"promptTokenCount":3}}]"#;
        let (out, _) = rewrite(body, FieldSelector::RESPONSE).unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v[0]["candidates"][0]["content"]["parts"][0]["text"],
            json!("x [REDACTED:EMAIL]")
        );
        assert_eq!(
            rewrite(r#""a@example.com""#, FieldSelector::ALL_STRINGS)
                .unwrap()
                .0,
            r#""[REDACTED:EMAIL]""#
        );
        assert!(rewrite(r#""a@example.com""#, FieldSelector::REQUEST).is_none());
    }

    #[test]
    fn invalid_json_is_none_and_never_panics() {
        let bad = [
            "",
            "{",
            "}",
            r#"{"prompt":"a@example.com""#,
            r#"{"prompt":"a@example.com"} x"#,
            r#"{"prompt":"a@example.com",}"#,
            r#"{"prompt" "a@example.com"}"#,
            r#"{"prompt":"a@example.com\x"}"#,
            r#"{"prompt":"a@example.com\u12"}"#,
            "{\"prompt\":\"a@example.com\n\"}",
            r#"{"prompt":["a@example.com",]}"#,
            r#"{"prompt":01}"#,
            r#"{"prompt":1.}"#,
            r#"{"prompt":tru}"#,
            r#"{"prompt":-}"#,
            r#"[1,2]]"#,
            r#"{"a":1}{"b":2}"#,
            r#"{1:2}"#,
        ];
        for s in bad {
            assert!(rewrite(s, FieldSelector::ALL_STRINGS).is_none(), "{s}");
        }
        assert!(r()
            .redact_json_strings(
                b"{\"prompt\":\"\xff a@example.com\"}",
                FieldSelector::ALL_STRINGS
            )
            .is_none());
        let deep = format!("{}\"a@example.com\"{}", "[".repeat(200), "]".repeat(200));
        assert!(rewrite(&deep, FieldSelector::ALL_STRINGS).is_none());
        // Every prefix of a valid body: no panic.
        let body = r#"{"messages":[{"role":"user","content":"a@example.com \u00e9 \"x\" 1.5e-3"}],"n":-0.5E+2,"b":[true,false,null]}"#;
        assert!(rewrite(body, FieldSelector::ALL_STRINGS).is_some());
        for k in 0..body.len() {
            let _ = rewrite(&body[..k], FieldSelector::ALL_STRINGS);
        }
    }

    #[test]
    fn rewritten_strings_are_re_escaped() {
        let body = "{\"prompt\":\"line1\\nline2\\t\\\"a@example.com\\\" \\u0001\"}";
        let (out, _) = rewrite(body, FieldSelector::REQUEST).unwrap();
        assert_eq!(
            out,
            "{\"prompt\":\"line1\\nline2\\t\\\"[REDACTED:EMAIL]\\\" \\u0001\"}"
        );
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["prompt"],
            json!("line1\nline2\t\"[REDACTED:EMAIL]\" \u{1}")
        );
    }
}
