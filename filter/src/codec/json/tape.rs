//! A JSON document read once into a flat list of tokens (the tape), and the accessors the readers of the
//! provider types (`json::Read`, `json_struct!`) and of the configuration (`config.rs`) take values with.
//!
//! Why: serde's derived readers were compiled several times per provider type against serde_json's
//! streaming parser, each copy with its number parsing and positioned error messages inlined (~435 KB of
//! the module). On the tape a type's reader is one small function, and leniency is simple: any value can
//! be read again or skipped, so a type that rejects a value costs nothing but that value
//! (`json::Lenient`), with no parser position to recover. A struct's keys are found through a hash table
//! built at compile time (`key_table`).
//!
//! The tape's serde `Deserializer` (tests only) checks the tape against serde_json itself.
//!
//! What it accepts and how it hands values over is serde_json's behaviour (the `lenient` fuzz target and
//! `lenient_test.rs` compare the readers with serde's over serde_json):
//! - the grammar of RFC 8259, UTF-8 checked by the caller; only whitespace after the value;
//! - strings: borrowed when they have no escape, unescaped otherwise; a string with a lone
//!   UTF-16 surrogate escape, which serde_json refuses to read, is `null` (as a key, a key that names no
//!   field);
//! - numbers: a plain integer that fits u64 as u64, a negative one that fits i64 as i64, anything else
//!   (fraction, exponent, overflow, `-0`) as the f64 serde_json itself reads; a number beyond f64, which
//!   serde_json refuses, is `null`;
//! - `raw_text` is the value as written (what `&RawValue` borrows).
//!
//! Nothing here can panic: the builder is iterative (no recursion, so no nesting limit is needed; the
//! tape is at most one token per two bytes of input), and every index goes through `get`.

use super::skim;
#[cfg(test)]
use serde::de::value::BorrowedStrDeserializer;
#[cfg(test)]
use serde::de::{DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
#[cfg(test)]
use serde::Deserializer;
use std::borrow::Cow;
use std::cell::RefCell;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Null,
    True,
    False,
    Num,
    /// A string without escapes.
    Str,
    /// A string with escapes.
    Escaped,
    Arr,
    Obj,
}

/// One value: its kind, its text (`start..end`, quotes and brackets included) and the index of the token
/// after it and everything it contains. An object's tokens are its keys and values in turn.
#[derive(Clone, Copy, Debug)]
struct Tok {
    kind: Kind,
    start: u32,
    end: u32,
    next: u32,
}

/// Tapes longer than this (in tokens, 16 bytes each) are not kept for the next document.
const KEEP_TOKENS: usize = 16 * 1024;

/// The tape and the builder's stack of open containers, kept between documents so that reading one
/// allocates nothing once warm.
#[derive(Default)]
struct Tape {
    toks: Vec<Tok>,
    open: Vec<u32>,
}

thread_local! {
    static TAPE: RefCell<Tape> = RefCell::new(Tape::default());
}

/// Read `text` into a tape and hand its root value to `f`; None when `text` is not one JSON value.
pub fn read<'de, R>(text: &'de str, f: impl FnOnce(Value<'_, 'de>) -> R) -> Option<R> {
    TAPE.with(|cell| {
        // Only if a reader ever read a document from inside another: a tape of its own.
        let (mut shared, mut own) = (cell.try_borrow_mut().ok(), None);
        let tape = match shared.as_deref_mut() {
            Some(tape) => tape,
            None => own.insert(Tape::default()),
        };
        let out = build(text, tape).ok().map(|()| {
            let doc = Doc {
                text,
                toks: &tape.toks,
            };
            f(Value {
                doc: &doc,
                at: 0,
                #[cfg(test)]
                key: false,
            })
        });
        if tape.toks.capacity() > KEEP_TOKENS {
            *tape = Tape::default();
        }
        out
    })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

/// The first byte at or after `i` that is not whitespace.
fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while s.get(i).copied().is_some_and(is_ws) {
        i += 1;
    }
    i
}

/// Build the tape of `text` into `tape`; Err(offset) where `text` stops being JSON. Offsets are u32:
/// longer texts are not read (Err(0)).
fn build(text: &str, tape: &mut Tape) -> Result<(), usize> {
    let s = text.as_bytes();
    u32::try_from(s.len()).map_err(|_| 0usize)?;
    let Tape { toks, open } = tape;
    toks.clear();
    open.clear();
    let push = |toks: &mut Vec<Tok>, kind: Kind, start: usize, end: usize| {
        let next = toks.len() as u32 + 1;
        toks.push(Tok {
            kind,
            start: start as u32,
            end: end as u32,
            next,
        });
    };
    // A member's key at `i` (after whitespace) and its colon: the offset of its value.
    let key = |toks: &mut Vec<Tok>, i: usize| -> Result<usize, usize> {
        let i = skip_ws(s, i);
        if s.get(i) != Some(&b'"') {
            return Err(i);
        }
        let (end, escaped) = skim::string_end(s, i).ok_or(i)?;
        push(
            toks,
            if escaped { Kind::Escaped } else { Kind::Str },
            i,
            end,
        );
        let colon = skip_ws(s, end);
        if s.get(colon) == Some(&b':') {
            Ok(colon + 1)
        } else {
            Err(colon)
        }
    };
    let mut i = 0usize;
    loop {
        // A value.
        let start = skip_ws(s, i);
        match *s.get(start).ok_or(start)? {
            c @ (b'{' | b'[') => {
                open.push(toks.len() as u32);
                let obj = c == b'{';
                push(toks, if obj { Kind::Obj } else { Kind::Arr }, start, start);
                i = skip_ws(s, start + 1);
                if s.get(i) != Some(if obj { &b'}' } else { &b']' }) {
                    if obj {
                        i = key(toks, i)?;
                    }
                    continue;
                }
                // Empty: closed below.
            }
            b'"' => {
                let (end, escaped) = skim::string_end(s, start).ok_or(start)?;
                push(
                    toks,
                    if escaped { Kind::Escaped } else { Kind::Str },
                    start,
                    end,
                );
                i = end;
            }
            c @ (b't' | b'f' | b'n') => {
                let (word, kind): (&[u8], Kind) = match c {
                    b't' => (b"true", Kind::True),
                    b'f' => (b"false", Kind::False),
                    _ => (b"null", Kind::Null),
                };
                if s.get(start..start + word.len()) != Some(word) {
                    return Err(start);
                }
                i = start + word.len();
                push(toks, kind, start, i);
            }
            _ => {
                i = skim::number_end(s, start).ok_or(start)?;
                push(toks, Kind::Num, start, i);
            }
        }
        // The value is complete: close what it completes, then find where the next value starts.
        loop {
            i = skip_ws(s, i);
            let Some(&at) = open.last() else {
                return if i == s.len() { Ok(()) } else { Err(i) };
            };
            let is_obj = toks.get(at as usize).ok_or(i)?.kind == Kind::Obj;
            match *s.get(i).ok_or(i)? {
                b',' => {
                    i += 1;
                    if is_obj {
                        i = key(toks, i)?;
                    }
                    break;
                }
                b'}' if is_obj => {}
                b']' if !is_obj => {}
                _ => return Err(i),
            }
            i += 1;
            let next = toks.len() as u32;
            let tok = toks.get_mut(at as usize).ok_or(i)?;
            tok.next = next;
            tok.end = i as u32;
            open.pop();
        }
    }
}

/// Where `text` stops being one JSON value (its byte offset), or None when it is one.
pub fn error_at(text: &str) -> Option<usize> {
    build(text, &mut Tape::default()).err()
}

/// `raw`, the text between a string's quotes, unescaped; None when it holds a lone UTF-16 surrogate
/// escape (serde_json refuses those). `raw` was checked by the builder: every escape is complete.
pub fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    unescape_into(raw, Some(&mut out))?;
    Some(out)
}

/// `unescape` into `out`, or (None) only whether it can be unescaped, without allocating.
fn unescape_into(raw: &str, mut out: Option<&mut String>) -> Option<()> {
    let mut rest = raw;
    while let Some(i) = memchr::memchr(b'\\', rest.as_bytes()) {
        let head = rest.get(..i)?;
        let esc = *rest.as_bytes().get(i + 1)?;
        rest = rest.get(i + 2..)?;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = skim::hex4(rest.get(..4)?.as_bytes())?;
                rest = rest.get(4..)?;
                match hi {
                    0xD800..=0xDBFF => {
                        let lo = rest
                            .strip_prefix("\\u")
                            .and_then(|t| t.get(..4))
                            .and_then(|h| skim::hex4(h.as_bytes()))
                            .filter(|lo| (0xDC00..=0xDFFF).contains(lo))?;
                        rest = rest.get(6..)?;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?
                    }
                    _ => char::from_u32(hi)?,
                }
            }
            _ => return None,
        };
        if let Some(out) = out.as_deref_mut() {
            out.push_str(head);
            out.push(c);
        }
    }
    if let Some(out) = out {
        out.push_str(rest);
    }
    Some(())
}

/// A number as serde_json hands it to a visitor.
enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

/// The value of number token `raw`; None beyond f64.
fn number(raw: &str) -> Option<Number> {
    let (neg, digits) = match raw.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, raw),
    };
    if let Some(n) = skim::plain_integer(digits.as_bytes()) {
        if !neg {
            return Some(Number::U64(n));
        }
        // serde_json: `-0` and negatives below i64 are floats.
        if n != 0 {
            if let Some(v) = 0i64.checked_sub_unsigned(n) {
                return Some(Number::I64(v));
            }
        }
    }
    // Everything else correctly rounded, as serde_json reads it with `float_roundtrip` (the tests' build);
    // beyond f64, which serde_json refuses, None.
    raw.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(Number::F64)
}

/// The f64 of number token `raw` (integers included); None beyond f64.
pub fn f64_of(raw: &str) -> Option<f64> {
    Some(match number(raw)? {
        Number::U64(n) => n as f64,
        Number::I64(n) => n as f64,
        Number::F64(n) => n,
    })
}

/// A member key's hash for `key_table`: its length and first and last bytes, which tell apart almost
/// all the keys of one struct at the cost of three loads (the table resolves the rest).
pub const fn key_hash(key: &[u8]) -> u32 {
    match key {
        [first, .., last] => (key.len() as u32) ^ (*first as u32) << 8 ^ (*last as u32) << 16,
        [only] => 1 ^ (*only as u32) << 8,
        [] => 0,
    }
}

/// The size of `key_table(keys)`: a power of two at least twice the number of keys (a struct's fields'
/// names and aliases), so that every probe sequence meets an empty slot.
pub const fn key_table_size(keys: &[&[&str]]) -> usize {
    let (mut n, mut rest) = (0usize, keys);
    while let [k, tail @ ..] = rest {
        n += k.len();
        rest = tail;
    }
    (2 * n + 1).next_power_of_two()
}

/// An open-addressing table of the keys' hashes: a slot holds a key's hash and its field + 1, or 0 when
/// empty (`json_struct!`; evaluated at compile time only, where an index out of bounds fails the build).
#[allow(clippy::indexing_slicing)]
pub const fn key_table<const N: usize>(keys: &[&[&str]]) -> [(u32, usize); N] {
    let mut out = [(0u32, 0usize); N];
    let mut i = 0;
    while i < keys.len() {
        let mut j = 0;
        while j < keys[i].len() {
            let h = key_hash(keys[i][j].as_bytes());
            let mut slot = h as usize & (N - 1);
            while out[slot].1 != 0 {
                slot = (slot + 1) & (N - 1);
            }
            out[slot] = (h, i + 1);
            j += 1;
        }
        i += 1;
    }
    out
}

/// The field a member's key names in `keys`, through its `key_table`, with the rank of the name among
/// the field's names (0: its own, then its aliases). A key that cannot be unescaped names no field.
fn find_key(
    keys: &[&[&str]],
    table: &[(u32, usize)],
    key: &Value<'_, '_>,
) -> Option<(usize, usize)> {
    let name = key.str()?;
    let h = key_hash(name.as_bytes());
    let mask = table.len().checked_sub(1)?;
    let mut slot = h as usize & mask;
    // At most half the slots are taken, so an empty one ends every probe; the bound is for totality.
    for _ in 0..table.len() {
        let &(kh, field) = table.get(slot)?;
        let i = field.checked_sub(1)?;
        if kh == h {
            if let Some(rank) = keys.get(i).and_then(|k| k.iter().position(|k| *k == name)) {
                return Some((i, rank));
            }
        }
        slot = (slot + 1) & mask;
    }
    None
}

/// A value on the tape. `key`: a member's key, which the tests' serde view hands over as a name that
/// matches no field, rather than as `null`, when it cannot be unescaped.
#[derive(Clone, Copy)]
pub struct Value<'t, 'de> {
    doc: &'t Doc<'t, 'de>,
    at: u32,
    #[cfg(test)]
    key: bool,
}

/// The text and its tape.
struct Doc<'t, 'de> {
    text: &'de str,
    toks: &'t [Tok],
}

impl<'t, 'de> Value<'t, 'de> {
    fn tok(&self) -> Option<Tok> {
        self.doc.toks.get(self.at as usize).copied()
    }

    fn at(&self, at: u32) -> Value<'t, 'de> {
        Value { at, ..*self }
    }

    /// The value's text.
    fn raw(&self, t: Tok) -> Option<&'de str> {
        self.doc.text.get(t.start as usize..t.end as usize)
    }

    /// A string token's text between its quotes.
    fn inner(&self, t: Tok) -> Option<&'de str> {
        self.doc
            .text
            .get(t.start as usize + 1..(t.end as usize).checked_sub(1)?)
    }

    /// Whether serde_json would read this value as `null` (sanitised tokens included).
    fn null_token(&self, t: Tok) -> bool {
        match t.kind {
            Kind::Null => true,
            Kind::Num => self.raw(t).and_then(number).is_none(),
            Kind::Escaped => self.inner(t).and_then(|r| unescape_into(r, None)).is_none(),
            _ => false,
        }
    }

    /// Visit a container's elements through `access`, then fail if the visitor left any unread.
    #[cfg(test)]
    fn container<V: Visitor<'de>>(self, t: Tok, v: V) -> Result<V::Value, Rejected> {
        let mut items = Items {
            value: self.at(self.at.checked_add(1).ok_or(Rejected)?),
            end: t.next,
            pending: None,
        };
        let out = if t.kind == Kind::Obj {
            v.visit_map(&mut items)?
        } else {
            v.visit_seq(&mut items)?
        };
        if items.value.at < items.end {
            return Err(Rejected);
        }
        Ok(out)
    }
}

/// What the provider types read (`json::Read`): each accessor takes the value as serde's reader of that type
/// takes it from serde_json, and is None where that reader fails.
impl<'t, 'de> Value<'t, 'de> {
    /// `null`, or a token serde_json refuses (read as `null`).
    pub fn is_null(&self) -> bool {
        self.tok().is_none_or(|t| self.null_token(t))
    }

    /// A string (`String`, `Cow<str>`): borrowed when it has no escapes.
    pub fn str(&self) -> Option<Cow<'de, str>> {
        let t = self.tok()?;
        match t.kind {
            Kind::Str => self.inner(t).map(Cow::Borrowed),
            Kind::Escaped => self.inner(t).and_then(unescape).map(Cow::Owned),
            _ => None,
        }
    }

    /// A string without escapes (what `&str` takes: serde borrows it only then).
    pub fn plain_str(&self) -> Option<&'de str> {
        let t = self.tok()?;
        (t.kind == Kind::Str).then(|| self.inner(t))?
    }

    pub fn bool(&self) -> Option<bool> {
        match self.tok()?.kind {
            Kind::True => Some(true),
            Kind::False => Some(false),
            _ => None,
        }
    }

    fn number(&self) -> Option<Number> {
        let t = self.tok()?;
        (t.kind == Kind::Num).then(|| self.raw(t).and_then(number))?
    }

    /// A non-negative integer (serde's u64 refuses floats and negatives).
    pub fn u64(&self) -> Option<u64> {
        match self.number()? {
            Number::U64(n) => Some(n),
            _ => None,
        }
    }

    pub fn i64(&self) -> Option<i64> {
        match self.number()? {
            Number::U64(n) => i64::try_from(n).ok(),
            Number::I64(n) => Some(n),
            Number::F64(_) => None,
        }
    }

    /// Any number (serde's f64 takes integers too).
    pub fn f64(&self) -> Option<f64> {
        let t = self.tok()?;
        (t.kind == Kind::Num).then(|| self.raw(t).and_then(f64_of))?
    }

    /// The value's JSON text (what `&RawValue` borrows).
    pub fn raw_text(&self) -> Option<&'de str> {
        self.raw(self.tok()?)
    }

    /// A struct's fields: from an object, the value of the member whose key is one of `keys[i]` (a field's
    /// name, then its aliases) goes to `f(i, _)`, and other members are skipped; from an array, element `i`
    /// goes to `f(i, _)`, and more elements than fields fail. Any other value fails, as does `f`. At most
    /// 64 fields. `table` (`key_table(keys)`) finds a key by its hash, so a member costs one string
    /// comparison at most.
    ///
    /// A field named by several members takes one of them: the last that uses the field's own name, else
    /// the last alias. JSON parsers keep the last of repeated names, and providers that write a counter
    /// under two names (Bedrock's `cacheReadInputTokens` and `cacheReadInputTokenCount`) write the same
    /// count: a repeat never costs the value. (serde's derived readers reject the whole struct instead.)
    pub fn fields(
        &self,
        keys: &[&[&str]],
        table: &[(u32, usize)],
        f: &mut dyn FnMut(usize, Value<'t, 'de>) -> Option<()>,
    ) -> Option<()> {
        if let Some(mut members) = self.children(Kind::Obj) {
            // One pass while no field repeats (nearly always); a repeat, or a value `f` refuses that a later
            // member might replace, goes to the pass that chooses first and reads after.
            let mut seen = 0u64;
            while let Some((key, value)) = members.next_pair() {
                let Some((i, _)) = find_key(keys, table, &key) else {
                    continue;
                };
                let bit = 1u64.checked_shl(u32::try_from(i).ok()?)?;
                if seen & bit != 0 || f(i, value).is_none() {
                    return self.chosen_fields(keys, table, f);
                }
                seen |= bit;
            }
            return Some(());
        }
        for (i, item) in self.elements()?.enumerate() {
            (i < keys.len()).then_some(())?;
            f(i, item)?;
        }
        Some(())
    }

    /// `fields` of an object in two passes: choose each field's member, then read the chosen ones.
    fn chosen_fields(
        &self,
        keys: &[&[&str]],
        table: &[(u32, usize)],
        f: &mut dyn FnMut(usize, Value<'t, 'de>) -> Option<()>,
    ) -> Option<()> {
        // Per field: the chosen value's token and the rank of the key naming it (0: the field's name).
        let mut chosen = [(0u32, usize::MAX); 64];
        let mut members = self.children(Kind::Obj)?;
        while let Some((key, value)) = members.next_pair() {
            let Some((i, rank)) = find_key(keys, table, &key) else {
                continue;
            };
            let slot = chosen.get_mut(i)?;
            if slot.1 == usize::MAX || rank <= slot.1 {
                *slot = (value.at, rank);
            }
        }
        for (i, &(at, rank)) in chosen.iter().enumerate().take(keys.len()) {
            if rank != usize::MAX {
                f(i, self.at(at))?;
            }
        }
        Some(())
    }
}

/// An array's elements (`Value::elements`).
pub struct Elements<'t, 'de> {
    next: Value<'t, 'de>,
    end: u32,
}

impl<'t, 'de> Iterator for Elements<'t, 'de> {
    type Item = Value<'t, 'de>;

    fn next(&mut self) -> Option<Value<'t, 'de>> {
        if self.next.at >= self.end {
            return None;
        }
        let here = self.next;
        self.next.at = here.tok()?.next;
        Some(here)
    }
}

/// An object's members (`Value::members`): its keys and values in turn on the tape.
pub struct Members<'t, 'de>(Elements<'t, 'de>);

impl<'t, 'de> Iterator for Members<'t, 'de> {
    type Item = (Cow<'de, str>, Value<'t, 'de>);

    fn next(&mut self) -> Option<Self::Item> {
        let (key, value) = self.0.next_pair()?;
        // A key that cannot be unescaped names nothing.
        Some((key.str().unwrap_or_default(), value))
    }
}

impl<'t, 'de> Members<'t, 'de> {
    /// The next member with its key as a value (for its text as written, `raw_text`).
    pub fn next_raw(&mut self) -> Option<(Value<'t, 'de>, Value<'t, 'de>)> {
        self.0.next_pair()
    }
}

impl<'t, 'de> Elements<'t, 'de> {
    fn next_pair(&mut self) -> Option<(Value<'t, 'de>, Value<'t, 'de>)> {
        let key = self.next()?;
        let value = self.next()?;
        Some((key, value))
    }
}

/// Containers read member by member (the configuration readers, which name the key of any error).
impl<'t, 'de> Value<'t, 'de> {
    fn children(&self, kind: Kind) -> Option<Elements<'t, 'de>> {
        let t = self.tok()?;
        (t.kind == kind).then_some(())?;
        Some(Elements {
            next: self.at(self.at.checked_add(1)?),
            end: t.next,
        })
    }

    /// An array's elements in order; None for any other value.
    pub fn elements(&self) -> Option<Elements<'t, 'de>> {
        self.children(Kind::Arr)
    }

    /// An object's members in order, keys unescaped; None for any other value.
    pub fn members(&self) -> Option<Members<'t, 'de>> {
        self.children(Kind::Obj).map(Members)
    }
}

/// The error of the tape's serde view (tests: it checks the tape against serde_json): it only says "not
/// this type".
#[cfg(test)]
#[derive(Debug)]
pub struct Rejected;

#[cfg(test)]
impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("rejected")
    }
}

#[cfg(test)]
impl std::error::Error for Rejected {}

#[cfg(test)]
impl serde::de::Error for Rejected {
    fn custom<M: std::fmt::Display>(_msg: M) -> Self {
        Rejected
    }
}

#[cfg(test)]
impl<'de> Deserializer<'de> for Value<'_, 'de> {
    type Error = Rejected;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Rejected> {
        let t = self.tok().ok_or(Rejected)?;
        match t.kind {
            Kind::Null => v.visit_unit(),
            Kind::True => v.visit_bool(true),
            Kind::False => v.visit_bool(false),
            Kind::Num => match self.raw(t).and_then(number) {
                Some(Number::U64(n)) => v.visit_u64(n),
                Some(Number::I64(n)) => v.visit_i64(n),
                Some(Number::F64(n)) => v.visit_f64(n),
                None => v.visit_unit(),
            },
            Kind::Str => v.visit_borrowed_str(self.inner(t).ok_or(Rejected)?),
            Kind::Escaped => match self.inner(t).and_then(unescape) {
                Some(s) => v.visit_str(&s),
                None if self.key => v.visit_borrowed_str(""),
                None => v.visit_unit(),
            },
            Kind::Arr | Kind::Obj => self.container(t, v),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Rejected> {
        let t = self.tok().ok_or(Rejected)?;
        if self.null_token(t) {
            v.visit_none()
        } else {
            v.visit_some(self)
        }
    }

    /// serde_json's raw-value protocol: a one-entry map from its token to the value's text.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        v: V,
    ) -> Result<V::Value, Rejected> {
        if name == RAW_VALUE_TOKEN {
            let t = self.tok().ok_or(Rejected)?;
            let raw = self.raw(t).ok_or(Rejected)?;
            return v.visit_map(RawMap(Some(raw)));
        }
        v.visit_newtype_struct(self)
    }

    /// A string names a unit variant, as in serde_json; other enum forms are not read.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Rejected> {
        let t = self.tok().ok_or(Rejected)?;
        match t.kind {
            Kind::Str => {
                let s = self.inner(t).ok_or(Rejected)?;
                BorrowedStrDeserializer::<Rejected>::new(s).deserialize_enum(name, variants, v)
            }
            Kind::Escaped => {
                let s = self.inner(t).and_then(unescape).ok_or(Rejected)?;
                IntoDeserializer::<Rejected>::into_deserializer(s.as_str())
                    .deserialize_enum(name, variants, v)
            }
            _ => Err(Rejected),
        }
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Rejected> {
        v.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct seq tuple tuple_struct map struct identifier
    }
}

#[cfg(test)]
/// serde_json's name for its raw value (`serde_json::value::RawValue`'s deserialization asks for a newtype
/// struct of this name, then for a map with this key and the raw text as its value).
#[cfg(test)]
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

#[cfg(test)]
struct RawMap<'de>(Option<&'de str>);

#[cfg(test)]
impl<'de> MapAccess<'de> for RawMap<'de> {
    type Error = Rejected;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Rejected> {
        if self.0.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(RAW_VALUE_TOKEN))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Rejected> {
        let raw = self.0.take().ok_or(Rejected)?;
        seed.deserialize(BorrowedStrDeserializer::new(raw))
    }
}

#[cfg(test)]
/// The elements of an array, or the members of an object (key and value tokens in turn).
struct Items<'t, 'de> {
    /// The next element, or key.
    value: Value<'t, 'de>,
    /// The token after the container.
    end: u32,
    /// The value of the key just read.
    pending: Option<u32>,
}

#[cfg(test)]
impl<'t, 'de> Items<'t, 'de> {
    /// The next token, stepping over it.
    fn step(&mut self) -> Option<Value<'t, 'de>> {
        if self.value.at >= self.end {
            return None;
        }
        let here = self.value;
        self.value.at = here.tok()?.next;
        Some(here)
    }
}

#[cfg(test)]
impl<'de> SeqAccess<'de> for Items<'_, 'de> {
    type Error = Rejected;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Rejected> {
        match self.step() {
            Some(v) => seed.deserialize(v).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
impl<'de> MapAccess<'de> for Items<'_, 'de> {
    type Error = Rejected;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Rejected> {
        let Some(key) = self.step() else {
            return Ok(None);
        };
        // Step over the value too: a visitor that does not ask for it has skipped it.
        let value = self.step().ok_or(Rejected)?;
        self.pending = Some(value.at);
        seed.deserialize(Value { key: true, ..key }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Rejected> {
        let at = self.pending.take().ok_or(Rejected)?;
        seed.deserialize(self.value.at(at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::value::RawValue;

    /// What serde_json's own `Value` makes of `text` through the tape, or None.
    fn via_tape(text: &str) -> Option<serde_json::Value> {
        read(text, |v| serde_json::Value::deserialize(v).ok()).flatten()
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            "null",
            " true ",
            "false",
            "0",
            "-0",
            "12",
            "-12",
            "1.5e3",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            r#""plain""#,
            r#""a\"b\\c\/\b\f\n\r\t\u00e9\ud83d\ude00""#,
            "[]",
            "{}",
            "[1,[2,[3,{}]],{\"a\":[]}]",
            r#"{"a":1,"b":{"c":[true,null,"x"]},"d":"e"}"#,
            r#" { "k" : [ 1 , 2 ] } "#,
        ] {
            let want: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(via_tape(text), Some(want), "{text}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for text in [
            "",
            " ",
            "nul",
            "[1,]",
            "[1 2]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "{\"a\":1]",
            "[1}",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"tab\there\"",
            "1 2",
            "[",
            "{",
            "[[[]]",
        ] {
            assert!(
                serde_json::from_str::<serde_json::Value>(text).is_err(),
                "{text}"
            );
            assert!(read(text, |_| ()).is_none(), "{text}");
        }
    }

    #[test]
    fn tokens_serde_json_cannot_hold_read_as_null() {
        assert_eq!(via_tape("1e400"), Some(serde_json::Value::Null));
        assert_eq!(via_tape(r#""\ud800""#), Some(serde_json::Value::Null));
        assert_eq!(via_tape(r#""\ud800\u0041""#), Some(serde_json::Value::Null));
        assert_eq!(via_tape(r#""\udc00""#), Some(serde_json::Value::Null));
        // A key with one names no field; the other members are read.
        let v = via_tape(r#"{"\ud800":1,"a":2}"#).unwrap();
        assert_eq!(v["a"], 2);
        #[derive(Deserialize, Debug, PartialEq)]
        struct T {
            a: Option<u64>,
        }
        let t = read(r#"{"a":1e999}"#, |v| T::deserialize(v).ok()).flatten();
        assert_eq!(t, Some(T { a: None }));
    }

    #[test]
    fn numbers_reach_visitors_as_serde_json_hands_them() {
        #[derive(Deserialize, Debug)]
        struct U {
            u: u64,
        }
        let u = |text: &str| read(text, |v| U::deserialize(v).ok().map(|u| u.u)).flatten();
        assert_eq!(u(r#"{"u":7}"#), Some(7));
        for bad in ["-0", "-1", "7.0", "1e2", "18446744073709551616"] {
            let doc = format!(r#"{{"u":{bad}}}"#);
            assert_eq!(
                u(&doc),
                serde_json::from_str::<U>(&doc).ok().map(|u| u.u),
                "{bad}"
            );
        }
        let f = |t: &str| read(t, |v| f64::deserialize(v).ok()).flatten();
        assert_eq!(f("-0").map(f64::to_bits), Some((-0.0f64).to_bits()));
        assert_eq!(f("0.1"), Some(0.1));
        // Correctly rounded, as serde_json with `float_roundtrip` (the tests' build) reads them.
        let mut rng = crate::rng::SplitMix64::new(3);
        let mut hard: Vec<String> = [
            "2.2250738585072011e-308",
            "2.2250738585072012e-308",
            "4.9e-324",
            "2.4e-324",
            "1.7976931348623157e308",
            "1.7976931348623158e308",
            "9007199254740993",
            "0.30000000000000004441",
            "123456789012345678901234567890e-10",
            "1e23",
            "8.533e+68",
            "4.1006e-184",
            "9.998e+307",
            "9.9538452227e-280",
            "6.47660115e-260",
            "7.4e+47",
            "5.92e+48",
            "7.35e+66",
            "8.32116e+55",
            "0.0000000000000000000000000000000000001",
            "-1.5e-10",
        ]
        .map(String::from)
        .to_vec();
        for _ in 0..20_000 {
            let (m, e) = (rng.next_u64(), rng.next_u64() % 700);
            hard.push(format!("{m}.{}e{}", m % 1000, e as i64 - 350));
            hard.push(format!("0.{m}{m}"));
        }
        for t in &hard {
            assert_eq!(
                f(t).map(f64::to_bits),
                serde_json::from_str::<f64>(t).ok().map(f64::to_bits),
                "{t}"
            );
            assert_eq!(f64_of(t).map(f64::to_bits), f(t).map(f64::to_bits), "{t}");
        }
        assert_eq!(f("1e400"), None);
        assert!(serde_json::from_str::<f64>("1e400").is_err());
    }

    #[test]
    fn a_visitor_that_leaves_elements_unread_fails() {
        let pair = |t: &str| read(t, |v| <(u64, u64)>::deserialize(v).ok()).flatten();
        assert_eq!(pair("[1,2]"), Some((1, 2)));
        assert_eq!(pair("[1,2,3]"), None);
        assert!(serde_json::from_str::<(u64, u64)>("[1,2,3]").is_err());
    }

    #[test]
    fn raw_values_borrow_the_text() {
        #[derive(Deserialize)]
        struct R<'a> {
            #[serde(borrow)]
            r: &'a RawValue,
            n: u64,
        }
        let text = r#"{"r": [1, {"x" : "y"}] ,"n":3}"#;
        let (raw, n) = read(text, |v| {
            R::deserialize(v).ok().map(|r| (r.r.get().to_owned(), r.n))
        })
        .flatten()
        .unwrap();
        assert_eq!(raw, r#"[1, {"x" : "y"}]"#);
        assert_eq!(n, 3);
    }

    #[test]
    fn deep_nesting_needs_no_recursion() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(read(&deep, |_| ()).is_some());
    }

    #[test]
    fn unescape_matches_serde_json() {
        for raw in [
            r"a\u00e9b",
            r"\ud83d\ude00",
            r#"\"\\\/\b\f\n\r\t"#,
            r"\u0000",
        ] {
            let want: String = serde_json::from_str(&format!("\"{raw}\"")).unwrap();
            assert_eq!(unescape(raw), Some(want), "{raw}");
        }
        for raw in [r"\ud800", r"\udbff\u0041", r"\udc00", r"\ud800x"] {
            assert!(serde_json::from_str::<String>(&format!("\"{raw}\"")).is_err());
            assert_eq!(unescape(raw), None, "{raw}");
        }
    }
}
