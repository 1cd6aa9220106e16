//! Server-sent events (WHATWG HTML "event stream interpretation"), reassembled from arbitrary byte chunks.
//!
//! Only the unfinished line and the fields of the unfinished event are carried between chunks; UTF-8 is
//! checked once per assembled event, never per chunk (a chunk may end inside a code point).

use super::Frame;
use memchr::{memchr, memchr2};

/// The UTF-8 byte order mark; the spec ignores one at the very start of the stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

#[derive(Debug)]
pub struct SseDecoder {
    max_event: usize,
    /// Bytes of the current line that began in an earlier chunk (empty while skipping).
    line: Vec<u8>,
    /// Length of the current unfinished line, counted even while skipping (to recognise blank lines).
    line_len: usize,
    /// The unfinished line is a comment (starts with ':'): it is counted but never buffered.
    comment: bool,
    /// The previous chunk ended with `\r`: a `\n` opening the next chunk belongs to the same line ending.
    pending_cr: bool,
    /// How many BOM bytes matched at the start of the stream; `None` once the question is settled.
    bom: Option<usize>,
    /// Value of the last `event:` line of the current event.
    event: Vec<u8>,
    /// `data:` values joined with `\n`.
    data: Vec<u8>,
    has_data: bool,
    /// The current event outgrew `max_event`: discard its lines until the blank line that ends it.
    skipping: bool,
    oversize_skipped: u64,
    malformed: u64,
}

impl SseDecoder {
    pub fn new(max_event: usize) -> SseDecoder {
        SseDecoder {
            max_event,
            line: Vec::new(),
            line_len: 0,
            comment: false,
            pending_cr: false,
            bom: Some(0),
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
            skipping: false,
            oversize_skipped: 0,
            malformed: 0,
        }
    }

    /// Events skipped because they were larger than `max_event`.
    pub fn oversize_skipped(&self) -> u64 {
        self.oversize_skipped
    }

    /// Events dropped because their name or data was not UTF-8, or cut off by the end of the body.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Bytes currently carried between chunks.
    pub fn buffered(&self) -> usize {
        self.line
            .len()
            .saturating_add(self.event.len())
            .saturating_add(self.data.len())
    }

    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let mut chunk = chunk;
        if let Some(matched) = self.bom {
            // The BOM may itself be split across chunks; hold back the matching prefix until it is settled.
            let mut m = matched;
            let mut rest = chunk;
            while let (Some(&want), Some((&b, tail))) = (BOM.get(m), rest.split_first()) {
                if b != want {
                    break;
                }
                m += 1;
                rest = tail;
            }
            if m == BOM.len() {
                self.bom = None;
                chunk = rest;
            } else if rest.is_empty() {
                // Still a BOM prefix (possibly empty chunk): wait for more bytes.
                self.bom = Some(m);
                return;
            } else {
                // Not a BOM after all: the held-back bytes are ordinary stream content.
                self.bom = None;
                if let Some(held) = BOM.get(..matched) {
                    self.scan(held, on);
                }
            }
        }
        self.scan(chunk, on);
    }

    /// End of body. An event whose last line was terminated is dispatched even without the blank line
    /// (some servers close right after `data: [DONE]\n`); an unterminated last line means the body was cut
    /// off, so that event is dropped.
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        if let Some(matched) = self.bom.take() {
            if let Some(held) = BOM.get(..matched) {
                self.scan(held, on);
            }
        }
        if self.line_len > 0 {
            if !self.skipping && !self.comment {
                self.malformed = self.malformed.saturating_add(1);
            }
            self.reset_event();
        } else if !self.skipping {
            self.dispatch(on);
        }
        self.reset_event();
        self.line_len = 0;
        self.comment = false;
        self.line.clear();
        self.pending_cr = false;
    }

    fn scan(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let mut rest = chunk;
        if self.pending_cr && !rest.is_empty() {
            self.pending_cr = false;
            if let Some((&b'\n', tail)) = rest.split_first() {
                rest = tail;
            }
        }
        while let Some(i) = memchr2(b'\n', b'\r', rest) {
            let (body, after) = rest.split_at_checked(i).unwrap_or((rest, &[]));
            let (ending, mut tail) = after
                .split_first()
                .map_or((b'\n', &[][..]), |(e, t)| (*e, t));
            if ending == b'\r' {
                match tail.split_first() {
                    Some((&b'\n', t)) => tail = t,
                    Some(_) => {}
                    None => self.pending_cr = true,
                }
            }
            self.end_line(body, on);
            rest = tail;
        }
        self.carry(rest);
    }

    /// Keep the start of a line that continues in the next chunk, unless that would outgrow the cap.
    fn carry(&mut self, part: &[u8]) {
        if part.is_empty() {
            return;
        }
        if self.line_len == 0 && part.first() == Some(&b':') {
            self.comment = true;
        }
        self.line_len = self.line_len.saturating_add(part.len());
        if self.skipping || self.comment {
            return;
        }
        if self.buffered().saturating_add(part.len()) > self.max_event {
            self.start_skipping();
            return;
        }
        self.line.extend_from_slice(part);
    }

    /// A line ended; `tail` is its part in the current chunk (the rest, if any, is in `self.line`).
    fn end_line(&mut self, tail: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let total = self.line_len.saturating_add(tail.len());
        self.line_len = 0;
        let comment = std::mem::take(&mut self.comment);
        if total == 0 {
            // Blank line: the event is complete.
            if self.skipping {
                self.skipping = false;
            } else {
                self.dispatch(on);
            }
            self.reset_event();
            return;
        }
        // A comment is recognised by its first byte, wherever that arrived; it is never stored.
        let comment = comment || (self.line.is_empty() && tail.first() == Some(&b':'));
        if self.skipping || comment {
            return;
        }
        // The cap is on the raw line (the same quantity whether it came whole or in pieces), so the
        // verdict never depends on the chunking.
        if self.buffered().saturating_add(tail.len()) > self.max_event {
            self.start_skipping();
            return;
        }
        if self.line.is_empty() {
            self.field(tail);
        } else {
            let mut line = std::mem::take(&mut self.line);
            line.extend_from_slice(tail);
            self.field(&line);
            line.clear();
            // Give the allocation back so the next split line reuses it.
            if !self.skipping {
                self.line = line;
            }
        }
    }

    fn field(&mut self, line: &[u8]) {
        let (name, value) = match memchr(b':', line) {
            // A line starting with ':' is a comment (servers use them as keep-alive pings).
            Some(0) => return,
            Some(i) => {
                let (name, v) = line.split_at_checked(i).unwrap_or((line, &[]));
                let v = v.get(1..).unwrap_or(&[]);
                // One optional space after the colon belongs to the syntax, not the value.
                (name, v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let extra = value.len().saturating_add(usize::from(self.has_data));
                if self.buffered().saturating_add(extra) > self.max_event {
                    self.start_skipping();
                    return;
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                let grown = self.buffered().saturating_sub(self.event.len());
                if grown.saturating_add(value.len()) > self.max_event {
                    self.start_skipping();
                    return;
                }
                self.event.clear();
                self.event.extend_from_slice(value);
            }
            // id, retry and unknown fields do not affect what we report.
            _ => {}
        }
    }

    fn dispatch(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        if !self.has_data {
            return;
        }
        match (
            std::str::from_utf8(&self.event),
            std::str::from_utf8(&self.data),
        ) {
            (Ok(event), Ok(data)) => on(Frame::Sse { event, data }),
            _ => self.malformed = self.malformed.saturating_add(1),
        }
    }

    fn start_skipping(&mut self) {
        self.oversize_skipped = self.oversize_skipped.saturating_add(1);
        self.skipping = true;
        self.reset_event();
        self.line = Vec::new();
    }

    fn reset_event(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        // An oversize event may have grown the buffers to the cap; don't keep that much between events.
        if self.data.capacity() > 16 * 1024 {
            self.data.shrink_to(16 * 1024);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testutil::{every_split, one_byte, xorshift_chunks, Owned};

    fn run(input: &[u8], max: usize, chunks: &[&[u8]], finish: bool) -> (Vec<Owned>, SseDecoder) {
        let _ = input;
        let mut d = SseDecoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |f| out.push(Owned::from(f)));
        }
        if finish {
            d.finish(&mut |f| out.push(Owned::from(f)));
        }
        (out, d)
    }

    /// Decode `input` whole, split at every offset, byte by byte and in pseudo-random chunks; all must agree.
    fn decode_all_ways(input: &[u8], max: usize) -> (Vec<Owned>, u64, u64) {
        let (whole, d) = run(input, max, &[input], true);
        let stats = (d.oversize_skipped(), d.malformed());
        for chunks in every_split(input)
            .chain(std::iter::once(one_byte(input)))
            .chain(xorshift_chunks(input, 20))
        {
            let (got, d) = run(input, max, &chunks, true);
            assert_eq!(got, whole, "chunking {chunks:?}");
            assert_eq!(
                (d.oversize_skipped(), d.malformed()),
                stats,
                "stats for {chunks:?}"
            );
            assert_eq!(d.buffered(), 0);
        }
        (whole, stats.0, stats.1)
    }

    fn sse(event: &str, data: &str) -> Owned {
        Owned::Sse {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn openai_chat_stream() {
        let input = b"data: {\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n\n\
data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}\n\n\
data: [DONE]\n\n";
        let (frames, o, m) = decode_all_ways(input, 1024);
        assert_eq!(
            frames,
            vec![
                sse(
                    "",
                    "{\"id\":\"c1\",\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}"
                ),
                sse(
                    "",
                    "{\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3}}"
                ),
                sse("", "[DONE]"),
            ]
        );
        assert_eq!((o, m), (0, 0));
    }

    #[test]
    fn anthropic_named_events_with_ping() {
        let input = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
event: ping\ndata: {\"type\": \"ping\"}\n\n\
: keep-alive\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
        let (frames, _, _) = decode_all_ways(input, 1024);
        assert_eq!(
            frames,
            vec![
                sse("message_start", "{\"type\":\"message_start\"}"),
                sse("ping", "{\"type\": \"ping\"}"),
                sse("message_stop", "{\"type\":\"message_stop\"}"),
            ]
        );
    }

    #[test]
    fn crlf_and_lone_cr_line_endings() {
        let crlf = b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\r\n\r\n";
        let cr = b"data: {\"a\":1}\r\rdata: {\"b\":2}\r\r";
        let mixed = b"data: {\"a\":1}\r\n\ndata: {\"b\":2}\n\r";
        let want = vec![sse("", "{\"a\":1}"), sse("", "{\"b\":2}")];
        assert_eq!(decode_all_ways(crlf, 1024).0, want);
        assert_eq!(decode_all_ways(cr, 1024).0, want);
        assert_eq!(decode_all_ways(mixed, 1024).0, want);
    }

    #[test]
    fn cr_then_lf_across_chunks_is_one_line_ending() {
        let (frames, _) = run(
            b"",
            1024,
            &[b"data: x\r", b"\ndata: y\r", b"\n\r", b"\n"],
            true,
        );
        assert_eq!(frames, vec![sse("", "x\ny")]);
    }

    #[test]
    fn multi_line_data_and_field_syntax() {
        let input = b"data: line one\ndata:line two\ndata:  two spaces\ndata\nid: 7\nretry: 100\nfoo: bar\n\n";
        let (frames, _, _) = decode_all_ways(input, 1024);
        assert_eq!(frames, vec![sse("", "line one\nline two\n two spaces\n")]);
    }

    #[test]
    fn events_without_data_are_not_emitted() {
        let input = b"event: ping\n\nid: 3\n\n: comment\n\ndata:\n\n";
        let (frames, _, _) = decode_all_ways(input, 1024);
        // `data:` with an empty value still makes an event with empty data (spec).
        assert_eq!(frames, vec![sse("", "")]);
    }

    #[test]
    fn multibyte_utf8_split_anywhere() {
        let input = "event: délta\ndata: {\"text\":\"héllo 🌍\"}\n\n".as_bytes();
        let (frames, _, m) = decode_all_ways(input, 1024);
        assert_eq!(frames, vec![sse("délta", "{\"text\":\"héllo 🌍\"}")]);
        assert_eq!(m, 0);
    }

    #[test]
    fn bom_is_skipped_once() {
        let input = b"\xEF\xBB\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n";
        let (frames, _, _) = decode_all_ways(input, 1024);
        // Only the leading BOM is dropped; the second one makes an unknown field name.
        assert_eq!(frames, vec![sse("", "a")]);
        // A partial BOM is ordinary (invalid UTF-8) content.
        let (frames, _, m) = decode_all_ways(b"\xEF\xBBdata: a\n\ndata: b\n\n", 1024);
        assert_eq!(frames, vec![sse("", "b")]);
        assert_eq!(m, 0, "an unknown field is not malformed");
        let (frames, _, m) = decode_all_ways(b"data: \xEF\xBB\n\ndata: b\n\n", 1024);
        assert_eq!(frames, vec![sse("", "b")]);
        assert_eq!(m, 1);
        // A stream that is only a BOM prefix yields nothing and doesn't panic.
        assert_eq!(decode_all_ways(b"\xEF\xBB", 1024).0, vec![]);
    }

    #[test]
    fn invalid_utf8_event_is_counted_and_skipped() {
        let input = b"data: ok1\n\ndata: bad \xFF\xFE\n\nevent: \xC3\ndata: x\n\ndata: ok2\n\n";
        let (frames, _, m) = decode_all_ways(input, 1024);
        assert_eq!(frames, vec![sse("", "ok1"), sse("", "ok2")]);
        assert_eq!(m, 2);
    }

    #[test]
    fn finish_emits_terminated_event_but_not_truncated_one() {
        let (frames, _, m) = decode_all_ways(b"data: a\n\ndata: [DONE]\n", 1024);
        assert_eq!(frames, vec![sse("", "a"), sse("", "[DONE]")]);
        assert_eq!(m, 0);
        let (frames, _, m) = decode_all_ways(b"data: a\n\ndata: {\"usage\":{\"in", 1024);
        assert_eq!(frames, vec![sse("", "a")]);
        assert_eq!(m, 1);
        // Without finish nothing partial is emitted either.
        let (frames, _) = run(b"", 1024, &[b"data: a\n\ndata: b\n"], false);
        assert_eq!(frames, vec![sse("", "a")]);
    }

    #[test]
    fn oversize_event_is_skipped_and_next_one_kept() {
        let big = "x".repeat(300);
        let input = format!(
            "data: small\n\nevent: big\ndata: {big}\ndata: more\n\ndata: {big}{big}\n\ndata: after\n\n"
        );
        let (frames, o, m) = decode_all_ways(input.as_bytes(), 100);
        assert_eq!(frames, vec![sse("", "small"), sse("", "after")]);
        assert_eq!((o, m), (2, 0));
        // Many small data lines adding up past the cap count as well.
        let many = "data: 0123456789\n".repeat(20) + "\ndata: tail\n\n";
        let (frames, o, _) = decode_all_ways(many.as_bytes(), 100);
        assert_eq!(frames, vec![sse("", "tail")]);
        assert_eq!(o, 1);
        // Comment lines are never buffered, so even a long one is not oversize.
        let comment = format!(": {big}\n\ndata: z\n\n:{big}");
        let (frames, o, m) = decode_all_ways(comment.as_bytes(), 100);
        assert_eq!(frames, vec![sse("", "z")]);
        assert_eq!((o, m), (0, 0));
    }

    #[test]
    fn cap_boundary_does_not_depend_on_chunking() {
        for n in 85..100 {
            let input = format!("event: e\ndata: {}\n\ndata: next\n\n", "v".repeat(n));
            let (frames, o, _) = decode_all_ways(input.as_bytes(), 100);
            assert_eq!(frames.len() as u64 + o, 2, "{n}");
        }
    }

    #[test]
    fn oversize_memory_stays_bounded() {
        let mut d = SseDecoder::new(1000);
        let mut n = 0;
        d.push(b"data: ", &mut |_| n += 1);
        for _ in 0..1000 {
            d.push(&[b'a'; 997], &mut |_| n += 1);
            assert!(d.buffered() <= 1000);
        }
        d.push(b"\n\ndata: ok\n\n", &mut |_| n += 1);
        assert_eq!((n, d.oversize_skipped()), (1, 1));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0_u64;
        for round in 0..200 {
            let mut bytes = Vec::new();
            for _ in 0..(round * 7 % 300) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Bias towards the interesting bytes.
                let b = match seed % 8 {
                    0 => b'\n',
                    1 => b'\r',
                    2 => b':',
                    3 => b' ',
                    _ => (seed >> 8) as u8,
                };
                bytes.push(b);
            }
            for chunks in xorshift_chunks(&bytes, 3) {
                run(&bytes, 64, &chunks, true);
            }
        }
    }
}
