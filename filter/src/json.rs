//! Writing JSON: an owned value (`Json`) for what tollgate builds and sends (content capture's attributes,
//! local replies), and string escaping. Reading JSON is `providers/tape.rs`.

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

/// Lowercase hex digit of the low nibble of `n`.
fn hex(n: u8) -> u8 {
    b"0123456789abcdef"
        .get(usize::from(n & 0xf))
        .copied()
        .unwrap_or(b'0')
}

/// Write `s` as the contents of a JSON string (without quotes).
pub fn escape_into(out: &mut Vec<u8>, s: &str) {
    for &c in s.as_bytes() {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(hex(c >> 4));
                out.push(hex(c));
            }
            _ => out.push(c),
        }
    }
}
