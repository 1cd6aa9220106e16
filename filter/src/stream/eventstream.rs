//! `application/vnd.amazon.eventstream` (Bedrock `ConverseStream`, `InvokeModelWithResponseStream`).
//!
//! Message layout (all integers big-endian):
//! `total_len u32 | headers_len u32 | prelude_crc u32 | headers | payload | message_crc u32`,
//! where `prelude_crc` is the CRC32 of the first 8 bytes and `message_crc` the CRC32 of everything before it.
//! Only the unfinished message is carried between chunks.

use super::Frame;

const PRELUDE_LEN: usize = 12;
/// Prelude plus the trailing message CRC.
const OVERHEAD: usize = 16;
/// The protocol's own ceiling on one message; larger lengths mean a corrupt or hostile stream.
pub const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct EventStreamDecoder {
    max_event: usize,
    /// The unfinished message: its prelude, then the rest once the prelude proved sane.
    buf: Vec<u8>,
    /// Bytes of an oversize (but well-framed) message still to discard.
    skip: usize,
    /// The stream lost framing (bad prelude): nothing after it can be trusted.
    stopped: bool,
    oversize_skipped: u64,
    malformed: u64,
    crc_errors: u64,
}

/// What the prelude says about the message that follows.
enum Prelude {
    /// Keep `total` bytes and decode them.
    Message { total: usize },
    /// Well framed but larger than `max_event`: discard `total` bytes.
    Oversize { total: usize },
    /// Framing is lost.
    Stop,
}

impl EventStreamDecoder {
    pub fn new(max_event: usize) -> EventStreamDecoder {
        EventStreamDecoder {
            max_event,
            buf: Vec::new(),
            skip: 0,
            stopped: false,
            oversize_skipped: 0,
            malformed: 0,
            crc_errors: 0,
        }
    }

    pub fn oversize_skipped(&self) -> u64 {
        self.oversize_skipped
    }

    /// Messages with broken framing or headers, bad preludes (which stop the stream) and a message cut
    /// off by the end of the body.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    pub fn crc_errors(&self) -> u64 {
        self.crc_errors
    }

    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The stream lost framing and the rest of the body is ignored.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() && !self.stopped {
            if self.skip > 0 {
                let n = self.skip.min(rest.len());
                self.skip -= n;
                rest = rest.get(n..).unwrap_or(&[]);
                continue;
            }
            if self.buf.is_empty() {
                // Fast path: a whole message inside this chunk is decoded in place.
                if let Some(prelude) = rest.get(..PRELUDE_LEN) {
                    match self.prelude(prelude) {
                        Prelude::Message { total } => {
                            if let Some(msg) = rest.get(..total) {
                                self.message(msg, on);
                                rest = rest.get(total..).unwrap_or(&[]);
                                continue;
                            }
                        }
                        Prelude::Oversize { total } => {
                            self.skip = total;
                            continue;
                        }
                        Prelude::Stop => return self.stop(),
                    }
                }
            }
            // Slow path: gather the prelude, then the rest of the message, in `buf`.
            if self.buf.len() < PRELUDE_LEN {
                let want = PRELUDE_LEN - self.buf.len();
                let n = want.min(rest.len());
                let (head, tail) = rest.split_at_checked(n).unwrap_or((rest, &[]));
                self.buf.extend_from_slice(head);
                rest = tail;
                if self.buf.len() < PRELUDE_LEN {
                    return;
                }
                // The prelude is complete: judge it before buffering anything more.
                let mut p = [0u8; PRELUDE_LEN];
                if let Some(b) = self.buf.get(..PRELUDE_LEN) {
                    p.copy_from_slice(b);
                }
                let verdict = self.prelude(&p);
                match verdict {
                    Prelude::Message { .. } => {}
                    Prelude::Oversize { total } => {
                        self.buf.clear();
                        self.skip = total.saturating_sub(PRELUDE_LEN);
                        continue;
                    }
                    Prelude::Stop => return self.stop(),
                }
            }
            let total = read_u32(&self.buf, 0) as usize;
            let want = total.saturating_sub(self.buf.len());
            let n = want.min(rest.len());
            let (head, tail) = rest.split_at_checked(n).unwrap_or((rest, &[]));
            self.buf.extend_from_slice(head);
            rest = tail;
            if self.buf.len() >= total {
                let msg = std::mem::take(&mut self.buf);
                self.message(&msg, on);
                self.buf = msg;
                self.buf.clear();
            }
        }
    }

    /// End of body: a message still incomplete was cut off.
    pub fn finish(&mut self, _on: &mut dyn FnMut(Frame<'_>)) {
        if !self.stopped && (!self.buf.is_empty() || self.skip > 0) {
            self.malformed = self.malformed.saturating_add(1);
        }
        self.buf = Vec::new();
        self.skip = 0;
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.buf = Vec::new();
        self.skip = 0;
    }

    fn prelude(&mut self, p: &[u8]) -> Prelude {
        let total = read_u32(p, 0) as usize;
        let headers = read_u32(p, 4) as usize;
        let crc = read_u32(p, 8);
        if crate::codec::crc32::hash(p.get(..8).unwrap_or(&[])) != crc {
            self.crc_errors = self.crc_errors.saturating_add(1);
            return Prelude::Stop;
        }
        if total < OVERHEAD || headers > total - OVERHEAD || total > MAX_MESSAGE {
            self.malformed = self.malformed.saturating_add(1);
            return Prelude::Stop;
        }
        if total > self.max_event {
            self.oversize_skipped = self.oversize_skipped.saturating_add(1);
            return Prelude::Oversize { total };
        }
        Prelude::Message { total }
    }

    /// One complete message whose prelude already checked out.
    fn message(&mut self, msg: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let Some((body, crc)) = msg.split_last_chunk::<4>() else {
            self.malformed = self.malformed.saturating_add(1);
            return;
        };
        if crate::codec::crc32::hash(body) != u32::from_be_bytes(*crc) {
            // The lengths were vouched for by the prelude CRC, so the next message is still in sync.
            self.crc_errors = self.crc_errors.saturating_add(1);
            return;
        }
        let headers_len = read_u32(msg, 4) as usize;
        let headers_end = PRELUDE_LEN.saturating_add(headers_len);
        let (Some(headers), Some(payload)) =
            (body.get(PRELUDE_LEN..headers_end), body.get(headers_end..))
        else {
            self.malformed = self.malformed.saturating_add(1);
            return;
        };
        match parse_headers(headers) {
            Some(h) => on(Frame::Aws {
                message_type: h.message_type,
                event_type: h.event_type,
                exception_type: h.exception_type,
                payload,
            }),
            None => self.malformed = self.malformed.saturating_add(1),
        }
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at.saturating_add(4)) {
        w.copy_from_slice(s);
    }
    u32::from_be_bytes(w)
}

#[derive(Default)]
struct Headers<'a> {
    message_type: &'a str,
    event_type: &'a str,
    exception_type: &'a str,
}

/// Walk every header (all types must be skipped correctly to reach the next); keep the three we report.
/// `None` if a header runs past the end, has an unknown type, or one of ours is not a UTF-8 string.
fn parse_headers(mut h: &[u8]) -> Option<Headers<'_>> {
    let mut out = Headers::default();
    while let Some((&name_len, rest)) = h.split_first() {
        let (name, rest) = rest.split_at_checked(usize::from(name_len))?;
        let (&ty, rest) = rest.split_first()?;
        let value_len = match ty {
            0 | 1 => 0,
            2 => 1,
            3 => 2,
            4 => 4,
            5 | 8 => 8,
            9 => 16,
            6 | 7 => {
                let (len, _) = rest.split_first_chunk::<2>()?;
                2 + usize::from(u16::from_be_bytes(*len))
            }
            _ => return None,
        };
        let (value, rest) = rest.split_at_checked(value_len)?;
        h = rest;
        let slot = match name {
            b":message-type" => &mut out.message_type,
            b":event-type" => &mut out.event_type,
            b":exception-type" => &mut out.exception_type,
            _ => continue,
        };
        if ty != 7 {
            return None;
        }
        *slot = std::str::from_utf8(value.get(2..)?).ok()?;
    }
    Some(out)
}

/// Encode one message with string headers (test fixtures, mocks). Names longer than 255 bytes and values
/// longer than 65535 bytes are truncated to fit the format.
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut hdr = Vec::new();
    for (name, value) in headers {
        let name = name.as_bytes();
        let name = name.get(..name.len().min(255)).unwrap_or(&[]);
        let value = value.as_bytes();
        let value = value.get(..value.len().min(65535)).unwrap_or(&[]);
        hdr.push(name.len() as u8);
        hdr.extend_from_slice(name);
        hdr.push(7);
        hdr.extend_from_slice(&(value.len() as u16).to_be_bytes());
        hdr.extend_from_slice(value);
    }
    let total = OVERHEAD
        .saturating_add(hdr.len())
        .saturating_add(payload.len());
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(hdr.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crate::codec::crc32::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&hdr);
    out.extend_from_slice(payload);
    let crc = crate::codec::crc32::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testutil::{every_split, one_byte, xorshift_chunks, Owned};

    fn run(max: usize, chunks: &[&[u8]]) -> (Vec<Owned>, EventStreamDecoder) {
        let mut d = EventStreamDecoder::new(max);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |f| out.push(Owned::from(f)));
        }
        d.finish(&mut |f| out.push(Owned::from(f)));
        (out, d)
    }

    fn stats(d: &EventStreamDecoder) -> (u64, u64, u64) {
        (d.oversize_skipped(), d.malformed(), d.crc_errors())
    }

    fn decode_all_ways(input: &[u8], max: usize) -> (Vec<Owned>, (u64, u64, u64)) {
        let (whole, d) = run(max, &[input]);
        for chunks in every_split(input)
            .chain(std::iter::once(one_byte(input)))
            .chain(xorshift_chunks(input, 20))
        {
            let (got, d2) = run(max, &chunks);
            assert_eq!(got, whole, "chunking {chunks:?}");
            assert_eq!(stats(&d2), stats(&d));
        }
        (whole, stats(&d))
    }

    fn event(ty: &str, payload: &str) -> Vec<u8> {
        encode_message(
            &[
                (":event-type", ty),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        )
    }

    fn aws(mt: &str, et: &str, xt: &str, payload: &str) -> Owned {
        Owned::Aws {
            message_type: mt.into(),
            event_type: et.into(),
            exception_type: xt.into(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn known_vector_from_the_aws_spec() {
        // The "all headers" style check: a message with no headers and a short payload, laid out by hand.
        let m = encode_message(&[], b"{'foo':'bar'}");
        assert_eq!(&m[..8], &[0, 0, 0, 0x1d, 0, 0, 0, 0]);
        assert_eq!(&m[8..12], &crate::codec::crc32::hash(&m[..8]).to_be_bytes());
        assert_eq!(m.len(), 0x1d);
    }

    #[test]
    fn converse_stream_messages() {
        let mut input = Vec::new();
        input.extend(event("messageStart", r#"{"p":"abcd","role":"assistant"}"#));
        input.extend(event(
            "contentBlockDelta",
            r#"{"contentBlockIndex":0,"delta":{"text":"héllo 🌍"},"p":"ab"}"#,
        ));
        input.extend(event("messageStop", r#"{"p":"a","stopReason":"end_turn"}"#));
        input.extend(event(
            "metadata",
            r#"{"metrics":{"latencyMs":120},"p":"abc","usage":{"inputTokens":5,"outputTokens":9,"totalTokens":14}}"#,
        ));
        input.extend(encode_message(
            &[
                (":exception-type", "throttlingException"),
                (":content-type", "application/json"),
                (":message-type", "exception"),
            ],
            br#"{"message":"Too many requests"}"#,
        ));
        let (frames, st) = decode_all_ways(&input, 4096);
        assert_eq!(st, (0, 0, 0));
        assert_eq!(
            frames,
            vec![
                aws(
                    "event",
                    "messageStart",
                    "",
                    r#"{"p":"abcd","role":"assistant"}"#
                ),
                aws(
                    "event",
                    "contentBlockDelta",
                    "",
                    r#"{"contentBlockIndex":0,"delta":{"text":"héllo 🌍"},"p":"ab"}"#
                ),
                aws(
                    "event",
                    "messageStop",
                    "",
                    r#"{"p":"a","stopReason":"end_turn"}"#
                ),
                aws(
                    "event",
                    "metadata",
                    "",
                    r#"{"metrics":{"latencyMs":120},"p":"abc","usage":{"inputTokens":5,"outputTokens":9,"totalTokens":14}}"#
                ),
                aws(
                    "exception",
                    "",
                    "throttlingException",
                    r#"{"message":"Too many requests"}"#
                ),
            ]
        );
    }

    /// A message with every header type, built by hand: the decoder must step over each one.
    #[test]
    fn all_header_types_are_skipped_correctly() {
        let mut h = Vec::new();
        let mut add = |name: &str, ty: u8, value: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(ty);
            h.extend_from_slice(value);
        };
        add("t", 0, &[]);
        add("f", 1, &[]);
        add("b", 2, &[0xff]);
        add("s", 3, &[1, 2]);
        add("i", 4, &[1, 2, 3, 4]);
        add("l", 5, &[0; 8]);
        add("by", 6, &[0, 3, 0xff, 0xfe, 0xfd]);
        add(":event-type", 7, &[0, 5, b'c', b'h', b'u', b'n', b'k']);
        add("ts", 8, &[0; 8]);
        add("id", 9, &[7; 16]);
        add(":message-type", 7, &[0, 5, b'e', b'v', b'e', b'n', b't']);
        let payload = br#"{"bytes":"eyJ0eXBlIjoibWVzc2FnZV9zdG9wIn0="}"#;
        let total = 16 + h.len() + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_be_bytes());
        m.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let c = crate::codec::crc32::hash(&m);
        m.extend_from_slice(&c.to_be_bytes());
        m.extend_from_slice(&h);
        m.extend_from_slice(payload);
        let c = crate::codec::crc32::hash(&m);
        m.extend_from_slice(&c.to_be_bytes());
        let (frames, st) = decode_all_ways(&m, 4096);
        assert_eq!(st, (0, 0, 0));
        assert_eq!(
            frames,
            vec![aws(
                "event",
                "chunk",
                "",
                std::str::from_utf8(payload).unwrap()
            )]
        );
    }

    #[test]
    fn corrupt_message_crc_is_counted_and_stream_continues() {
        let a = event("messageStart", r#"{"role":"assistant"}"#);
        let mut b = event("contentBlockDelta", r#"{"delta":{"text":"x"}}"#);
        let c = event("messageStop", r#"{"stopReason":"end_turn"}"#);
        let n = b.len();
        b[n - 10] ^= 0x20; // flip a payload bit
        let input = [a, b, c].concat();
        let (frames, st) = decode_all_ways(&input, 4096);
        assert_eq!(frames.len(), 2);
        assert_eq!(st, (0, 0, 1));
    }

    #[test]
    fn corrupt_prelude_stops_the_stream() {
        let a = event("messageStart", "{}");
        let mut b = event("metadata", "{}");
        b[3] ^= 1; // total length no longer matches its CRC
        let c = event("messageStop", "{}");
        let input = [a, b, c].concat();
        let (frames, st) = decode_all_ways(&input, 4096);
        assert_eq!(frames.len(), 1);
        assert_eq!(st, (0, 0, 1));
    }

    #[test]
    fn impossible_lengths_stop_the_stream() {
        let fake = |total: u32, headers: u32| {
            let mut p = Vec::new();
            p.extend_from_slice(&total.to_be_bytes());
            p.extend_from_slice(&headers.to_be_bytes());
            let c = crate::codec::crc32::hash(&p);
            p.extend_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&[0; 64]);
            p
        };
        for (total, headers) in [
            (15, 0),
            (40, 25),
            (MAX_MESSAGE as u32 + 1, 0),
            (u32::MAX, 0),
        ] {
            let input = [event("a", "{}"), fake(total, headers), event("b", "{}")].concat();
            let (frames, st) = decode_all_ways(&input, 1 << 30);
            assert_eq!(frames.len(), 1, "{total} {headers}");
            assert_eq!(st, (0, 1, 0));
        }
    }

    #[test]
    fn oversize_message_skipped_next_kept() {
        let big = format!(r#"{{"p":"{}"}}"#, "z".repeat(500));
        let input = [
            event("a", "{}"),
            event("big", &big),
            event("b", "{}"),
            event("big", &big),
        ]
        .concat();
        let (frames, st) = decode_all_ways(&input, 200);
        assert_eq!(
            frames,
            vec![aws("event", "a", "", "{}"), aws("event", "b", "", "{}")]
        );
        assert_eq!(st, (2, 0, 0));
    }

    #[test]
    fn truncated_message_not_emitted() {
        let input = [event("a", "{}"), event("b", r#"{"usage":{}}"#)].concat();
        let cut = &input[..input.len() - 3];
        let (frames, st) = decode_all_ways(cut, 4096);
        assert_eq!(frames, vec![aws("event", "a", "", "{}")]);
        assert_eq!(st, (0, 1, 0));
    }

    #[test]
    fn bad_headers_with_good_crc_are_malformed() {
        // A header type 42 does not exist.
        let mut h = vec![2, b'x', b'y', 42];
        h.extend_from_slice(&[0; 4]);
        let total = 16 + h.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(total as u32).to_be_bytes());
        m.extend_from_slice(&(h.len() as u32).to_be_bytes());
        let c = crate::codec::crc32::hash(&m);
        m.extend_from_slice(&c.to_be_bytes());
        m.extend_from_slice(&h);
        let c = crate::codec::crc32::hash(&m);
        m.extend_from_slice(&c.to_be_bytes());
        let input = [m, event("ok", "{}")].concat();
        let (frames, st) = decode_all_ways(&input, 4096);
        assert_eq!(frames, vec![aws("event", "ok", "", "{}")]);
        assert_eq!(st, (0, 1, 0));
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..300 {
            let mut bytes = event("a", "{}");
            for _ in 0..(round % 97) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push((seed >> 24) as u8);
            }
            // Mutate one byte of a valid message too.
            let mut good = event("b", r#"{"x":1}"#);
            let at = (seed as usize) % good.len();
            good[at] = good[at].wrapping_add(1);
            bytes.extend(good);
            for chunks in xorshift_chunks(&bytes, 3) {
                run(64, &chunks);
            }
        }
    }
}
