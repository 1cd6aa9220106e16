//! Writing JSON: an owned value (`Json`) for what tollgate builds and sends (content capture's attributes,
//! local replies), and string escaping. Reading JSON is `tape.rs`.

/// A JSON value to write: a number or literal keeps its text, an object its members in order (a repeated
/// key included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Json {
    Null,
    /// `true`, `false` or a number, as written.
    Lit(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: &str) -> Json {
        Json::Str(s.to_owned())
    }

    pub fn obj<const N: usize>(members: [(&str, Json); N]) -> Json {
        Json::Obj(
            members
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        )
    }

    /// The JSON text.
    pub fn text(&self) -> String {
        let mut out = Vec::new();
        self.write(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    fn write(&self, out: &mut Vec<u8>) {
        let string = |out: &mut Vec<u8>, s: &str| {
            out.push(b'"');
            escape_into(out, s);
            out.push(b'"');
        };
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Lit(s) => out.extend_from_slice(s.as_bytes()),
            Json::Str(s) => string(out, s),
            Json::Arr(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write(out);
                }
                out.push(b']');
            }
            Json::Obj(members) => {
                out.push(b'{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    string(out, k);
                    out.push(b':');
                    v.write(out);
                }
                out.push(b'}');
            }
        }
    }
}

/// Write `s` as the contents of a JSON string (without quotes): runs that need no escape are copied whole,
/// found eight bytes at a time by the lexer's `skim::special` (`"`, `\\` and control characters: exactly
/// the bytes JSON requires escaped).
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len());
    let mut run = 0;
    while let Some(i) = b.get(run..).and_then(crate::codec::json::skim::special) {
        let i = run + i;
        out.extend_from_slice(b.get(run..i).unwrap_or_default());
        run = i + 1;
        let c = b.get(i).copied().unwrap_or_default();
        let short: &[u8] = match c {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            _ => {
                out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    crate::codec::hex::digit(c >> 4),
                    crate::codec::hex::digit(c),
                ]);
                continue;
            }
        };
        out.extend_from_slice(short);
    }
    out.extend_from_slice(b.get(run..).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_serde_json_writes() {
        let all: String = (0u32..0x80).filter_map(char::from_u32).collect();
        for s in [
            all.as_str(),
            "",
            "plain",
            "é😀\u{2028}",
            "\"\\",
            "a\u{1}b\u{1f}c\u{7f}",
        ] {
            assert_eq!(
                Json::str(s).text(),
                serde_json::to_string(s).unwrap(),
                "{s:?}"
            );
        }
        let v = Json::obj([
            ("a", Json::Arr(vec![Json::Null, Json::Lit("1.50".into())])),
            ("b\n", Json::Obj(vec![])),
        ]);
        assert_eq!(v.text(), r#"{"a":[null,1.50],"b\n":{}}"#);
    }

    /// Runs are found a word at a time: every byte that needs escaping, at every offset around the word
    /// boundaries, next to multi-byte characters, and one or two per string.
    #[test]
    fn escapes_at_every_offset() {
        for c in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{8}', 'é'] {
            for len in 0..40 {
                for at in 0..=len {
                    let mut s: String = "abcdefgh".chars().cycle().take(len).collect();
                    s.insert(at, c);
                    for t in [s.clone(), format!("{s}{c}😀{s}")] {
                        assert_eq!(
                            Json::str(&t).text(),
                            serde_json::to_string(&t).unwrap(),
                            "{t:?}"
                        );
                    }
                }
            }
        }
    }
}
