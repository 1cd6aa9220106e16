//! An allocation-free JSON skimmer for the stream fast paths: walk object members and array items as raw
//! byte spans, skip values without building them, and count the characters of a string literal without
//! unescaping it.
//!
//! It is a validator as strict as serde_json (RFC 8259: no trailing commas, no leading zeros, no control
//! characters inside strings, only the defined escapes) and stricter where that is cheaper: a key written
//! with escapes, nesting deeper than `MAX_DEPTH`, or anything it does not know is refused (`None`), and the
//! caller then falls back to the serde path. So whatever the fast path accepts, serde accepts too.
//! Total: never panics, recursion bounded by `MAX_DEPTH`.

use std::borrow::Cow;

/// Characters (not bytes) in `s`, for usage estimates.
pub fn char_count(s: &str) -> u64 {
    u64::try_from(s.chars().count()).unwrap_or(u64::MAX)
}

/// Deepest nesting `skip` walks (serde_json's own limit is 128).
pub const MAX_DEPTH: u32 = 32;

/// A cursor over one JSON text.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    text: &'a str,
    s: &'a [u8],
    pos: usize,
}

/// A string literal: its raw text between the quotes, and whether that contains escapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Str<'a> {
    pub raw: &'a str,
    pub escaped: bool,
}

impl<'a> Str<'a> {
    /// The text, when it needs no unescaping (then it is exactly the raw bytes).
    pub fn plain(&self) -> Option<&'a str> {
        if self.escaped {
            None
        } else {
            Some(self.raw)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The unescaped text (borrowed when there are no escapes); None when serde would refuse to unescape
    /// it (a lone surrogate).
    pub fn text(&self) -> Option<Cow<'a, str>> {
        match self.plain() {
            Some(t) => Some(Cow::Borrowed(t)),
            None => super::tape::unescape(self.raw).map(Cow::Owned),
        }
    }

    /// Characters of the unescaped text (a surrogate pair counts once); None for a lone surrogate, which
    /// serde refuses to unescape.
    pub fn char_count(&self) -> Option<u64> {
        if !self.escaped {
            return Some(char_count(self.raw));
        }
        // Escapes are ASCII, so every split below falls on a character boundary (`get` checks anyway).
        let mut n: u64 = 0;
        let mut rest = self.raw;
        while let Some(i) = memchr::memchr(b'\\', rest.as_bytes()) {
            n = n.saturating_add(char_count(rest.get(..i)?));
            let esc = *rest.as_bytes().get(i + 1)?;
            rest = rest.get(i + 2..)?;
            n = n.saturating_add(1);
            if esc == b'u' {
                let cp = hex4(rest.as_bytes().get(..4)?)?;
                rest = rest.get(4..)?;
                if (0xD800..0xDC00).contains(&cp) {
                    let low = rest.as_bytes().get(..6)?;
                    let (pre, hex) = low.split_at_checked(2)?;
                    if pre != b"\\u" || !(0xDC00..0xE000).contains(&hex4(hex)?) {
                        return None;
                    }
                    rest = rest.get(6..)?;
                } else if (0xDC00..0xE000).contains(&cp) {
                    return None;
                }
            }
        }
        Some(n.saturating_add(char_count(rest)))
    }
}

impl<'a> Str<'a> {
    /// Characters of a generated string (None: a lone surrogate, which serde refuses to unescape), and its
    /// text when content capture needs it (unescaped only then; "" otherwise).
    pub fn generated(self, capture: bool) -> Option<(u64, Cow<'a, str>)> {
        let chars = self.char_count()?;
        let text = match self.plain() {
            Some(t) => Cow::Borrowed(t),
            None if capture => self.text()?,
            None => Cow::Borrowed(""),
        };
        Some((chars, text))
    }
}

/// `Str::generated` of an optional string: `Some(None)` when absent, None when serde would refuse it.
pub fn generated(s: Option<Str<'_>>, capture: bool) -> Option<Option<(u64, Cow<'_, str>)>> {
    match s {
        Some(s) => s.generated(capture).map(Some),
        None => Some(None),
    }
}

/// Store `value` unless it is absent, empty or already there (the outcome of `json::set_if_nonempty`,
/// without an allocation per chunk for repeated ids).
pub fn set_changed(slot: &mut Option<String>, value: Option<&str>) {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return;
    };
    match slot {
        Some(s) if s == v => {}
        Some(s) => v.clone_into(s),
        None => *slot = Some(v.to_owned()),
    }
}

/// Mark member `bit` as seen; None when it already was: serde refuses a duplicated field, so the fast
/// paths hand such an object to it.
pub fn once(seen: &mut u32, bit: u32) -> Option<()> {
    if *seen & bit != 0 {
        return None;
    }
    *seen |= bit;
    Some(())
}

/// The bit of `key` for `Reader::members`: `1 << i` for `keys[i]`, 0 for any other key (at most 32 keys).
pub fn key_bit(keys: &[&[u8]], key: &[u8]) -> u32 {
    keys.iter()
        .position(|&k| k == key)
        .and_then(|i| 1u32.checked_shl(u32::try_from(i).ok()?))
        .unwrap_or(0)
}

/// The value of a plain integer token (digits only), if it fits u64. serde_json reads any other number
/// (sign, fraction, exponent, overflow, and `-0`) as a float or a negative, which its u64 refuses.
pub fn plain_integer(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |v, &c| {
        c.is_ascii_digit().then_some(())?;
        v.checked_mul(10)?.checked_add(u64::from(c - b'0'))
    })
}

pub(crate) fn hex4(h: &[u8]) -> Option<u32> {
    let mut v: u32 = 0;
    for &c in h {
        let d = char::from(c).to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(d)?;
    }
    Some(v)
}

/// Offset of the first `"`, `\\` or control character (< 0x20) in `b`, eight bytes at a time (the
/// classic has-zero-byte word test, SWAR: plain integer code, as fast in Wasm as natively).
pub(crate) fn special(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let is_special = |c: u8| c == b'"' || c == b'\\' || c < 0x20;
    let mut words = b.chunks_exact(8);
    let mut off = 0usize;
    for w in &mut words {
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        let x = u64::from_le_bytes(word);
        let q = x ^ (LO * u64::from(b'"'));
        let bs = x ^ (LO * u64::from(b'\\'));
        let hit = (q.wrapping_sub(LO) & !q)
            | (bs.wrapping_sub(LO) & !bs)
            | (x.wrapping_sub(LO * 0x20) & !x);
        let hit = hit & HI;
        if hit != 0 {
            // A borrow can only mark bytes above a real match, so the lowest mark is exact.
            return usize::try_from(hit.trailing_zeros() / 8)
                .ok()
                .map(|i| off + i);
        }
        off += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&c| is_special(c))
        .map(|i| off + i)
}

/// The end of the escape whose backslash is at `i` (the reader's rules: one of the JSON escapes, `\u`
/// with four hex digits).
fn escape_end(s: &[u8], i: usize) -> Option<usize> {
    match *s.get(i + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(i + 2),
        b'u' => {
            hex4(s.get(i + 2..i + 6)?)?;
            Some(i + 6)
        }
        _ => None,
    }
}

/// The string whose opening quote is at `i`: the offset past its closing quote, and whether it has escapes.
/// No control characters (serde_json's rule). The one JSON string lexer: the skimmer's `Reader::string`,
/// the tape's builder and redaction's JSON walk (`redact/json.rs`).
pub(crate) fn string_end(s: &[u8], i: usize) -> Option<(usize, bool)> {
    let (mut j, mut escaped) = (i + 1, false);
    loop {
        j += special(s.get(j..)?)?;
        match *s.get(j)? {
            b'"' => return Some((j + 1, escaped)),
            b'\\' => {
                escaped = true;
                j = escape_end(s, j)?;
            }
            _ => return None,
        }
    }
}

/// The end of the number token starting at `i` (RFC 8259's grammar; `Reader::number`, the tape and
/// redaction's JSON walk).
pub(crate) fn number_end(s: &[u8], mut i: usize) -> Option<usize> {
    let digits = |s: &[u8], mut i: usize| {
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    if s.get(i) == Some(&b'-') {
        i += 1;
    }
    match *s.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(s, i + 1),
        _ => return None,
    }
    if s.get(i) == Some(&b'.') {
        s.get(i + 1)?.is_ascii_digit().then_some(())?;
        i = digits(s, i + 1);
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        s.get(i)?.is_ascii_digit().then_some(())?;
        i = digits(s, i);
    }
    Some(i)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

impl<'a> Reader<'a> {
    pub fn new(text: &'a str) -> Reader<'a> {
        Reader {
            text,
            s: text.as_bytes(),
            pos: 0,
        }
    }

    /// The string literal whose opening quote is at byte `quote` of `text`, and the offset just past its
    /// closing quote.
    pub fn string_at(text: &'a str, quote: usize) -> Option<(Str<'a>, usize)> {
        let mut r = Reader {
            text,
            s: text.as_bytes(),
            pos: quote,
        };
        (r.s.get(quote) == Some(&b'"')).then_some(())?;
        let s = r.string()?;
        Some((s, r.pos))
    }

    fn ws(&mut self) {
        while let Some(&b) = self.s.get(self.pos) {
            if !is_ws(b) {
                break;
            }
            self.pos += 1;
        }
    }

    /// The first byte of the next value (after whitespace), without consuming it.
    /// The byte offset the cursor is at.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Step over one byte.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn advance(&mut self) {
        self.pos += 1;
    }

    pub fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> Option<()> {
        if self.peek()? == b {
            self.pos += 1;
            Some(())
        } else {
            None
        }
    }

    /// Only whitespace is left.
    pub fn at_end(&mut self) -> bool {
        self.peek().is_none()
    }

    /// Consume `{`.
    pub fn begin_object(&mut self) -> Option<()> {
        self.eat(b'{')
    }

    /// The next member's key (raw, unescaped keys only), positioned at its value; `Ok(None)` past the `}`.
    /// `first` is true right after `begin_object`.
    pub fn next_key(&mut self, first: bool) -> Option<Option<&'a [u8]>> {
        match self.peek()? {
            b'}' => {
                self.pos += 1;
                return Some(None);
            }
            b',' if !first => self.pos += 1,
            b'"' if first => {}
            _ => return None,
        }
        let key = self.string()?;
        if key.escaped {
            return None;
        }
        self.eat(b':')?;
        Some(Some(key.raw.as_bytes()))
    }

    /// Consume `[`.
    pub fn begin_array(&mut self) -> Option<()> {
        self.eat(b'[')
    }

    /// Positioned at the next item: `Some(true)`; past the `]`: `Some(false)`.
    pub fn next_item(&mut self, first: bool) -> Option<bool> {
        match self.peek()? {
            b']' => {
                self.pos += 1;
                Some(false)
            }
            b',' if !first => {
                self.pos += 1;
                // A value must follow (no trailing comma).
                (self.peek()? != b']').then_some(true)
            }
            _ if first => Some(true),
            _ => None,
        }
    }

    /// A string value.
    pub fn string(&mut self) -> Option<Str<'a>> {
        (self.peek()? == b'"').then_some(())?;
        let (end, escaped) = string_end(self.s, self.pos)?;
        let raw = self.text.get(self.pos + 1..end - 1)?;
        self.pos = end;
        Some(Str { raw, escaped })
    }

    /// `null` (consumed) or not (nothing consumed).
    pub fn null(&mut self) -> Option<bool> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            Some(true)
        } else {
            Some(false)
        }
    }

    pub(crate) fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        if self.s.get(self.pos..end)? != word {
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// A string or null; None (not handled here) for any other type.
    pub fn str_or_null(&mut self) -> Option<Option<Str<'a>>> {
        if self.null()? {
            Some(None)
        } else {
            self.string().map(Some)
        }
    }

    /// A string without escapes, or null; None for anything else.
    pub fn plain_or_null(&mut self) -> Option<Option<&'a str>> {
        match self.str_or_null()? {
            Some(s) => s.plain().map(Some),
            None => Some(None),
        }
    }

    /// A plain non-negative integer (see `u64`) or null; None for anything else.
    pub fn u64_or_null(&mut self) -> Option<Option<u64>> {
        if self.null()? {
            Some(None)
        } else {
            self.u64().map(Some)
        }
    }

    /// `true`, `false` or null; None for anything else.
    pub fn bool_or_null(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            b'n' => self.literal(b"null").map(|()| None),
            _ => None,
        }
    }

    /// Null, or an object (only `{` consumed): `Some(true)`; None for any other type.
    pub fn object_or_null(&mut self) -> Option<bool> {
        if self.null()? {
            Some(false)
        } else {
            self.begin_object()?;
            Some(true)
        }
    }

    /// Null, or an array (only `[` consumed): `Some(true)`; None for any other type.
    pub fn array_or_null(&mut self) -> Option<bool> {
        if self.null()? {
            Some(false)
        } else {
            self.begin_array()?;
            Some(true)
        }
    }

    /// A number's raw text, validated against the JSON grammar.
    pub fn number(&mut self) -> Option<&'a [u8]> {
        self.ws();
        let start = self.pos;
        self.pos = number_end(self.s, start)?;
        self.s.get(start..self.pos)
    }

    /// A non-negative integer that fits u64 (what serde's u64 accepts from a plain integer); None for
    /// anything else (sign, fraction, exponent, overflow).
    pub fn u64(&mut self) -> Option<u64> {
        plain_integer(self.number()?)
    }

    /// The items of an array whose `[` was consumed, each read by `each`.
    pub fn items(&mut self, each: &mut dyn FnMut(&mut Reader<'a>) -> Option<()>) -> Option<()> {
        let mut first = true;
        while self.next_item(first)? {
            first = false;
            each(self)?;
        }
        Some(())
    }

    /// The members of an object whose `{` was consumed: `each` reads the value of every member `bit` names
    /// (a non-zero bit, each at most once: serde refuses a duplicated field, so a repeat is None), the
    /// others are skipped.
    pub fn members(
        &mut self,
        bit: &dyn Fn(&[u8]) -> u32,
        each: &mut dyn FnMut(&mut Reader<'a>, u32) -> Option<()>,
    ) -> Option<()> {
        let (mut seen, mut first) = (0u32, true);
        while let Some(key) = self.next_key(first)? {
            first = false;
            match bit(key) {
                0 => {
                    self.skip()?;
                }
                b => {
                    once(&mut seen, b)?;
                    each(self, b)?;
                }
            }
        }
        Some(())
    }

    /// Skip one value of any type, validating it; returns its raw text.
    pub fn skip(&mut self) -> Option<&'a [u8]> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: u32) -> Option<&'a [u8]> {
        let first = self.peek()?;
        let start = self.pos;
        match first {
            b'"' => {
                self.string()?;
            }
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                let mut first = true;
                while self.next_key(first)?.is_some() {
                    first = false;
                    self.skip_at(depth + 1)?;
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.pos += 1;
                let mut first = true;
                while self.next_item(first)? {
                    first = false;
                    self.skip_at(depth + 1)?;
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
            }
        }
        self.s.get(start..self.pos)
    }
}

/// Whether `raw` is one valid JSON value (surrounded by whitespace only), as far as the skimmer can tell.
pub fn is_valid(raw: &str) -> bool {
    let mut r = Reader::new(raw);
    r.skip().is_some() && r.at_end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_ok(s: &[u8]) -> bool {
        serde_json::from_slice::<serde::de::IgnoredAny>(s).is_ok()
    }

    #[test]
    fn accepts_only_what_serde_accepts() {
        let cases: &[&str] = &[
            "{}",
            " [ ] ",
            "{\"a\":[1,2.5,-0,1e3,1E+2,-3.25e-4,true,false,null,\"x\\\"\\u00e9\\ud83c\\udf0d\"]}",
            "{\"a\":1,}",
            "[1,]",
            "[,1]",
            "01",
            "1.",
            "-",
            ".5",
            "1e",
            "\"\\x\"",
            "\"\\u12\"",
            "\"a\tb\"",
            "{\"a\" 1}",
            "{\"a\":1 \"b\":2}",
            "{1:2}",
            "nul",
            "truex",
            "[1] [2]",
            "",
            "   ",
            "{\"a\":{\"b\":[{\"c\":null}]}}",
        ];
        for c in cases {
            if is_valid(c) {
                assert!(
                    serde_ok(c.as_bytes()),
                    "skimmer accepted what serde refuses: {c:?}"
                );
            }
        }
        assert!(is_valid(cases[2]));
        assert!(!is_valid("[1,]"));
    }

    #[test]
    fn finds_special_bytes_at_every_position() {
        for len in 0..20 {
            for at in 0..len {
                for c in [b'"', b'\\', 0x00, 0x1f] {
                    let mut v = vec![b'a'; len];
                    v[at] = c;
                    // Bytes that look close to the specials in a word test must not count.
                    if at > 0 {
                        v[at - 1] = 0xff;
                    }
                    assert_eq!(special(&v), Some(at), "{v:?}");
                }
            }
            let v: Vec<u8> = (0..len)
                .map(|i| [b'a', 0x20, 0x80, 0x21, 0x5b, 0xa2][i % 6])
                .collect();
            assert_eq!(special(&v), None, "{v:?}");
        }
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        assert!(!is_valid(&deep));
        let ok = format!("{}{}", "[".repeat(20), "]".repeat(20));
        assert!(is_valid(&ok));
        let huge = "[".repeat(100_000);
        assert!(!is_valid(&huge));
    }

    #[test]
    fn counts_characters_like_serde() {
        for lit in [
            r#""""#,
            r#""héllo 🌍""#,
            r#""a\"b\\c\/d\n\t""#,
            r#""\u00e9\u0000""#,
            r#""\ud83c\udf0d x""#,
            r#""\ud83c""#,
            r#""\udf0d""#,
            r#""\ud83c\u0041""#,
        ] {
            let mut r = Reader::new(lit);
            let s = r.string().unwrap();
            let want = serde_json::from_str::<String>(lit)
                .ok()
                .map(|t| t.chars().count() as u64);
            assert_eq!(s.char_count(), want, "{lit}");
        }
    }

    #[test]
    fn walks_members_and_items() {
        let mut r = Reader::new(r#" {"a": [1, {"b":"c"}], "d" : null} "#);
        r.begin_object().unwrap();
        assert_eq!(r.next_key(true), Some(Some(&b"a"[..])));
        r.begin_array().unwrap();
        assert_eq!(r.next_item(true), Some(true));
        assert_eq!(r.u64(), Some(1));
        assert_eq!(r.next_item(false), Some(true));
        assert_eq!(r.skip(), Some(&br#"{"b":"c"}"#[..]));
        assert_eq!(r.next_item(false), Some(false));
        assert_eq!(r.next_key(false), Some(Some(&b"d"[..])));
        assert_eq!(r.null(), Some(true));
        assert_eq!(r.next_key(false), Some(None));
        assert!(r.at_end());
    }

    fn unreadable(t: &str) -> Vec<(&str, bool)> {
        let mut v = Vec::new();
        super::super::reference::unreadable_tokens(t, &mut |a, b, key| v.push((&t[a..b], key)));
        v
    }

    #[test]
    fn garbage_never_panics() {
        let mut s = 0x1234_5678_9abc_def0_u64;
        let alphabet = b"{}[]\",:\\ \t\nu0123456789abcdefeEn.-+tr";
        for _ in 0..20_000 {
            let len = (s % 40) as usize;
            let mut v = Vec::with_capacity(len);
            for _ in 0..len {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                v.push(alphabet[(s as usize) % alphabet.len()]);
            }
            let v = String::from_utf8(v).unwrap();
            if is_valid(&v) {
                assert!(serde_ok(v.as_bytes()), "{v:?}");
            }
            let mut r = Reader::new(&v);
            let _ = r.string().map(|s| s.char_count());
            for (token, _) in unreadable(&v) {
                assert!(
                    !serde_ok(token.as_bytes()) || !token.starts_with('"'),
                    "{v:?}"
                );
            }
        }
    }
}
