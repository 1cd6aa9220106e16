//! A top-level JSON array delivered incrementally (Gemini `streamGenerateContent` without `alt=sse` sends
//! `[{…}\r\n,{…}\r\n]` as the response grows). Each element is emitted as soon as its last byte arrives.
//!
//! The scanner is a byte-level state machine (string / escape / nesting depth) that survives chunk
//! boundaries, so every byte is looked at once: no re-scan of the carried element on each chunk.
//! It finds element boundaries only; the provider's JSON parser judges the element itself.

use super::Frame;
use memchr::memchr2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first non-whitespace byte.
    Start,
    /// Inside the array, between elements.
    Between,
    /// Inside an element.
    Element,
    /// After the closing `]`: the rest is ignored.
    After,
    /// The body is not an array (e.g. an error object): collect it whole, emit at finish.
    NotArray,
}

#[derive(Debug)]
pub struct JsonArrayDecoder {
    max_event: usize,
    max_body: usize,
    phase: Phase,
    /// The unfinished element (or the whole body in `NotArray`).
    buf: Vec<u8>,
    depth: u32,
    in_string: bool,
    /// The previous byte (maybe in the previous chunk) was a backslash inside a string.
    escape: bool,
    /// The element is a bare scalar (number, `true`, …) that ends at `,`, `]` or whitespace.
    scalar: bool,
    /// The current element (or non-array body) outgrew its cap: track it to its end without keeping it.
    skipping: bool,
    oversize_skipped: u64,
    malformed: u64,
}

impl JsonArrayDecoder {
    pub fn new(max_event: usize, max_body: usize) -> JsonArrayDecoder {
        JsonArrayDecoder {
            max_event,
            max_body,
            phase: Phase::Start,
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escape: false,
            scalar: false,
            skipping: false,
            oversize_skipped: 0,
            malformed: 0,
        }
    }

    pub fn oversize_skipped(&self) -> u64 {
        self.oversize_skipped
    }

    /// Stray bytes between elements and elements cut off by the end of the body.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let mut i = 0usize;
        // Where the current element starts in this chunk (0 when it began in an earlier chunk).
        let mut start = 0usize;
        while let Some(&b) = chunk.get(i) {
            match self.phase {
                Phase::Start => {
                    if b.is_ascii_whitespace() {
                        i += 1;
                    } else if b == b'[' {
                        self.phase = Phase::Between;
                        i += 1;
                    } else {
                        self.phase = Phase::NotArray;
                        self.collect_body(chunk.get(i..).unwrap_or(&[]));
                        return;
                    }
                }
                Phase::Between => {
                    match b {
                        b' ' | b'\t' | b'\r' | b'\n' | b',' => {}
                        b']' => self.phase = Phase::After,
                        b'}' | b':' => self.malformed = self.malformed.saturating_add(1),
                        _ => {
                            self.phase = Phase::Element;
                            start = i;
                            self.scalar = false;
                            self.in_string = false;
                            self.depth = 0;
                            match b {
                                b'{' | b'[' => self.depth = 1,
                                b'"' => self.in_string = true,
                                _ => self.scalar = true,
                            }
                        }
                    }
                    i += 1;
                }
                Phase::Element => {
                    if let Some(end) = self.scan_element(chunk, &mut i) {
                        let part = chunk.get(start..end).unwrap_or(&[]);
                        self.element_done(part, on);
                        self.phase = Phase::Between;
                    }
                }
                Phase::After => return,
                Phase::NotArray => {
                    self.collect_body(chunk.get(i..).unwrap_or(&[]));
                    return;
                }
            }
        }
        if self.phase == Phase::Element {
            self.carry(chunk.get(start..).unwrap_or(&[]));
        }
    }

    /// Advance `i` through the element; returns the exclusive end offset once the element is complete.
    fn scan_element(&mut self, chunk: &[u8], i: &mut usize) -> Option<usize> {
        while let Some(&b) = chunk.get(*i) {
            if self.in_string {
                if self.escape {
                    self.escape = false;
                    *i += 1;
                    continue;
                }
                // Jump over string content: only `"` and `\` matter inside a string.
                let rest = chunk.get(*i..).unwrap_or(&[]);
                match memchr2(b'"', b'\\', rest) {
                    None => {
                        *i = chunk.len();
                        return None;
                    }
                    Some(p) => {
                        *i = i.saturating_add(p).saturating_add(1);
                        if rest.get(p) == Some(&b'\\') {
                            self.escape = true;
                        } else {
                            self.in_string = false;
                            if self.depth == 0 {
                                return Some(*i);
                            }
                        }
                    }
                }
                continue;
            }
            if self.scalar {
                if matches!(b, b',' | b']' | b' ' | b'\t' | b'\r' | b'\n') {
                    // Leave the delimiter for `Between`.
                    return Some(*i);
                }
                *i += 1;
                continue;
            }
            *i += 1;
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth = self.depth.saturating_add(1),
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(*i);
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn element_done(&mut self, tail: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        if self.skipping {
            self.skipping = false;
            return;
        }
        if self.buf.len().saturating_add(tail.len()) > self.max_event {
            self.oversize_skipped = self.oversize_skipped.saturating_add(1);
            self.buf.clear();
        } else if self.buf.is_empty() {
            on(Frame::Json(tail));
        } else {
            self.buf.extend_from_slice(tail);
            on(Frame::Json(&self.buf));
            self.buf.clear();
        }
    }

    fn carry(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.buf.len().saturating_add(part.len()) > self.max_event {
            self.oversize_skipped = self.oversize_skipped.saturating_add(1);
            self.skipping = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    fn collect_body(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.buf.len().saturating_add(part.len()) > self.max_body {
            self.oversize_skipped = self.oversize_skipped.saturating_add(1);
            self.skipping = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    /// End of body: a non-array body is emitted whole; an element cut off by the end is dropped and counted.
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        match self.phase {
            Phase::NotArray if !self.skipping => {
                let body = self.buf.trim_ascii();
                if !body.is_empty() {
                    on(Frame::Json(body));
                }
            }
            Phase::Element if !self.skipping => {
                self.malformed = self.malformed.saturating_add(1);
            }
            _ => {}
        }
        self.buf.clear();
        self.skipping = false;
        self.phase = Phase::After;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testutil::{every_split, one_byte, xorshift_chunks, Owned};

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Owned>, JsonArrayDecoder) {
        let mut d = JsonArrayDecoder::new(max, 4 * max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |f| out.push(Owned::from(f)));
        }
        d.finish(&mut |f| out.push(Owned::from(f)));
        (out, d)
    }

    fn decode_all_ways(input: &[u8], max: usize) -> (Vec<Owned>, u64, u64) {
        let (whole, d) = run(max, &[input]);
        for chunks in every_split(input)
            .chain(std::iter::once(one_byte(input)))
            .chain(xorshift_chunks(input, 20))
        {
            let (got, d2) = run(max, &chunks);
            assert_eq!(got, whole, "chunking {chunks:?}");
            assert_eq!(
                (d2.oversize_skipped(), d2.malformed()),
                (d.oversize_skipped(), d.malformed())
            );
        }
        (whole, d.oversize_skipped(), d.malformed())
    }

    fn json(s: &str) -> Owned {
        Owned::Json(s.as_bytes().to_vec())
    }

    #[test]
    fn gemini_stream_with_tricky_strings() {
        let e1 = r#"{"candidates":[{"content":{"parts":[{"text":"a ] b } c [ { \"q\" \\"}]}}]}"#;
        let e2 = r#"{"candidates":[{"content":{"parts":[{"text":"héllo 🌍 \\\" ]"}]}}],"usageMetadata":{"promptTokenCount":4}}"#;
        let input = format!("[{e1}\r\n,{e2}\r\n]");
        let (frames, o, m) = decode_all_ways(input.as_bytes(), 1024);
        assert_eq!(frames, vec![json(e1), json(e2)]);
        assert_eq!((o, m), (0, 0));
    }

    #[test]
    fn scalars_nested_arrays_and_whitespace() {
        let input = b" \n[ 1 , \"s,]\\\\\" ,true,[1,[2]],{} ,null]  trailing";
        let (frames, _, _) = decode_all_ways(input, 1024);
        assert_eq!(
            frames,
            vec![
                json("1"),
                json("\"s,]\\\\\""),
                json("true"),
                json("[1,[2]]"),
                json("{}"),
                json("null")
            ]
        );
        assert_eq!(decode_all_ways(b"[]", 1024).0, vec![]);
        assert_eq!(decode_all_ways(b"", 1024).0, vec![]);
    }

    #[test]
    fn elements_emitted_as_soon_as_complete() {
        let mut d = JsonArrayDecoder::new(1024, 1024);
        let mut n = 0;
        d.push(b"[{\"a\":1}", &mut |_| n += 1);
        assert_eq!(n, 1);
        d.push(b",{\"b\":", &mut |_| n += 1);
        assert_eq!((n, d.buffered()), (1, 5));
        d.push(b"2}", &mut |_| n += 1);
        assert_eq!((n, d.buffered()), (2, 0));
    }

    #[test]
    fn error_object_instead_of_array() {
        let body = "{\"error\":{\"code\":429,\"message\":\"Resource exhausted\",\"status\":\"RESOURCE_EXHAUSTED\"}}";
        let input = format!("\n{body}\n");
        let (frames, _, _) = decode_all_ways(input.as_bytes(), 1024);
        assert_eq!(frames, vec![json(body)]);
        // Too big for max_body: counted, nothing emitted.
        let (frames, o, _) = decode_all_ways(input.as_bytes(), 10);
        assert_eq!((frames, o), (vec![], 1));
    }

    #[test]
    fn truncated_element_not_emitted() {
        let (frames, o, m) = decode_all_ways(b"[{\"a\":1},{\"b\":\"x]}", 1024);
        assert_eq!(frames, vec![json("{\"a\":1}")]);
        assert_eq!((o, m), (0, 1));
    }

    #[test]
    fn oversize_element_skipped_next_kept() {
        let big = format!("{{\"t\":\"{}\",\"n\":[1,2,{{}}]}}", "] \\\" [".repeat(50));
        let input = format!("[{{\"a\":1}},{big},{{\"b\":2}},{big}]");
        let (frames, o, m) = decode_all_ways(input.as_bytes(), 100);
        assert_eq!(frames, vec![json("{\"a\":1}"), json("{\"b\":2}")]);
        assert_eq!((o, m), (2, 0));
    }

    #[test]
    fn stray_bytes_between_elements_counted() {
        let (frames, _, m) = decode_all_ways(b"[{\"a\":1}}:,{\"b\":2}]", 1024);
        assert_eq!(frames, vec![json("{\"a\":1}"), json("{\"b\":2}")]);
        assert_eq!(m, 2);
    }
}
