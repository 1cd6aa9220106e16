//! Removing whole events from an SSE stream that is being forwarded to the client. Used to hide the
//! usage-only chunk that exists only because tollgate asked for `include_usage`. Only the unfinished trailing
//! event is held back (an SSE client cannot use half an event anyway), so complete events are never delayed.

/// Holds back at most this much of an unfinished event; beyond it the filter gives up and forwards verbatim.
pub const MAX_PENDING: usize = 1 << 20;

#[derive(Default)]
pub struct SseEventFilter {
    pending: Vec<u8>,
    /// Too much unfinished data: stop editing and pass everything through.
    bypass: bool,
    pub dropped: u64,
}

/// End (exclusive) of the first complete event in `buf`, i.e. just past its terminating blank line.
/// A `\r` at the very end is ambiguous (a `\n` may follow in the next chunk), so it is not an end yet.
pub(crate) fn event_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while let Some(rel) = memchr::memchr2(b'\n', b'\r', buf.get(i..)?) {
        let at = i + rel;
        let len = match (buf.get(at), buf.get(at + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r'), None) => return None,
            _ => 1,
        };
        let next = at + len;
        if at == line_start {
            return Some(next);
        }
        line_start = next;
        i = next;
    }
    None
}

/// `event_end` for a buffer known to hold no `\r` (the usual stream): one `memchr` per line, for `\n` only.
fn event_end_lf(buf: &[u8]) -> Option<usize> {
    if buf.first() == Some(&b'\n') {
        return Some(1);
    }
    let mut i = 0;
    while let Some(rel) = memchr::memchr(b'\n', buf.get(i..)?) {
        let at = i + rel;
        if buf.get(at + 1) == Some(&b'\n') {
            return Some(at + 2);
        }
        i = at + 1;
    }
    None
}

/// Whether `raw` holds an empty JSON array (`[`, whitespace, `]`) anywhere: a cheap necessary condition
/// for an event whose member must be `[]`. (Brackets inside strings can only add false positives.)
pub fn has_empty_array(raw: &[u8]) -> bool {
    let mut seen = 0;
    while let Some(b) = raw.get(seen..).and_then(|r| memchr::memchr(b'[', r)) {
        let at = seen + b + 1;
        seen = at;
        let rest = raw.get(at..).unwrap_or_default();
        if rest.trim_ascii_start().first() == Some(&b']') {
            return true;
        }
    }
    false
}

/// The `data:` payload of one raw event (data lines joined with "\n").
pub fn event_data(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    for line in raw.split(|&b| b == b'\n' || b == b'\r') {
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !first {
                out.push(b'\n');
            }
            first = false;
            out.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    out
}

/// Whether `raw` may hold a JSON object member `"key": {` anywhere. A cheap necessary condition checked
/// before parsing an event: inside JSON strings quotes are escaped, so `"key"` followed by `:` only occurs
/// as a member name. (A name spelled with `\u` escapes is not recognised: such an event is kept.)
pub fn has_object_member(raw: &[u8], key: &[u8]) -> bool {
    // Anchored on the `{` of the value rather than on quotes: an event has a few braces and dozens of
    // quotes, and each memchr call has a fixed cost. (memchr rather than memmem: memmem's searchers add
    // ~40 KB to the Wasm module.)
    let mut seen = 0;
    while let Some(b) = raw.get(seen..).and_then(|r| memchr::memchr(b'{', r)) {
        let at = seen + b;
        seen = at + 1;
        let Some(before) = raw.get(..at) else { break };
        let named = before
            .trim_ascii_end()
            .strip_suffix(b":")
            .map(<[u8]>::trim_ascii_end)
            .and_then(|t| t.strip_suffix(b"\""))
            .and_then(|t| t.strip_suffix(key))
            .is_some_and(|t| t.ends_with(b"\""));
        if named {
            return true;
        }
    }
    false
}

impl SseEventFilter {
    /// Feed one chunk; returns the bytes to forward now. `drop` sees each complete raw event.
    pub fn push(&mut self, chunk: &[u8], drop: &dyn Fn(&[u8]) -> bool) -> Vec<u8> {
        self.push_changed(chunk, drop)
            .unwrap_or_else(|| chunk.to_vec())
    }

    /// As `push`, but `None` when the bytes to forward are exactly `chunk` (no copy, nothing to rewrite).
    /// When nothing is held back from earlier chunks the events are scanned in `chunk` itself; only an
    /// unfinished trailing event is copied.
    pub fn push_changed(&mut self, chunk: &[u8], drop: &dyn Fn(&[u8]) -> bool) -> Option<Vec<u8>> {
        if self.bypass {
            return None;
        }
        let carried = !self.pending.is_empty();
        if carried {
            self.pending.extend_from_slice(chunk);
        }
        let pending = std::mem::take(&mut self.pending);
        let buf: &[u8] = if carried { &pending } else { chunk };
        // Without any `\r` the events end at the first `\n\n`: one `memchr` per line, for one byte.
        let lf_only = memchr::memchr(b'\r', buf).is_none();
        let mut out: Option<Vec<u8>> = None;
        let mut start = 0;
        while let Some(rest) = buf.get(start..) {
            let end = if lf_only {
                event_end_lf(rest)
            } else {
                event_end(rest)
            };
            let Some(len) = end else { break };
            let event = rest.get(..len).unwrap_or_default();
            if drop(event) {
                self.dropped += 1;
                // From the first dropped event on, the output is an edited copy.
                out.get_or_insert_with(|| buf.get(..start).unwrap_or_default().to_vec());
            } else if let Some(o) = out.as_mut() {
                o.extend_from_slice(event);
            }
            start += len;
        }
        let tail = buf.get(start..).unwrap_or_default();
        let out = if carried || !tail.is_empty() || out.is_some() {
            let mut o = out.unwrap_or_else(|| buf.get(..start).unwrap_or_default().to_vec());
            if tail.len() > MAX_PENDING {
                self.bypass = true;
                o.extend_from_slice(tail);
            } else {
                self.pending = if carried {
                    let mut p = pending;
                    p.drain(..start.min(p.len()));
                    p
                } else {
                    tail.to_vec()
                };
            }
            Some(o)
        } else {
            None
        };
        out
    }

    /// Bytes of an unfinished event held back right now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// End of stream: whatever is left is forwarded as it is.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[u8] =
        b"data: {\"a\":1}\r\n\r\ndata: DROP\n\ndata: {\"b\":2}\n\n: ping\r\r\ndata: [DONE]\n\n";
    const KEPT: &[u8] = b"data: {\"a\":1}\r\n\r\ndata: {\"b\":2}\n\n: ping\r\r\ndata: [DONE]\n\n";

    fn is_drop(ev: &[u8]) -> bool {
        event_data(ev) == b"DROP"
    }

    /// `stream` through a filter in two chunks split at every offset: each time exactly `kept` comes out.
    fn every_split(stream: &[u8], kept: &[u8]) {
        for cut in 0..=stream.len() {
            let (a, b) = stream.split_at(cut);
            let mut f = SseEventFilter::default();
            let mut out = f.push(a, &is_drop);
            out.extend(f.push(b, &is_drop));
            out.extend(f.finish());
            assert_eq!(out, kept, "split at {cut}");
            assert_eq!(f.dropped, 1);
        }
    }

    #[test]
    fn drops_whole_events_at_every_split() {
        every_split(STREAM, KEPT);
        let mut f = SseEventFilter::default();
        let mut out = Vec::new();
        for b in STREAM {
            out.extend(f.push(std::slice::from_ref(b), &is_drop));
        }
        out.extend(f.finish());
        assert_eq!(out, KEPT);
    }

    #[test]
    fn lf_only_streams_take_the_one_byte_scan_and_agree() {
        // Every buffer over {a, \n} up to 10 bytes: the LF-only scan finds the same event end.
        for len in 0..=10u32 {
            for bits in 0..(1u32 << len) {
                let buf: Vec<u8> = (0..len)
                    .map(|i| if bits >> i & 1 == 1 { b'\n' } else { b'a' })
                    .collect();
                assert_eq!(event_end_lf(&buf), event_end(&buf), "{buf:?}");
            }
        }
        let stream: &[u8] = b"data: {\"a\":1}\n\ndata: DROP\n\n: ping\n\ndata: [DONE]\n\n";
        let kept: &[u8] = b"data: {\"a\":1}\n\n: ping\n\ndata: [DONE]\n\n";
        every_split(stream, kept);
    }

    #[test]
    fn empty_array_prefilter() {
        assert!(has_empty_array(br#"data: {"choices":[],"usage":{}}"#));
        assert!(has_empty_array(b"data: {\"choices\":[ \r\n\t]}"));
        assert!(has_empty_array(br#"data: {"a":[1],"choices":[]}"#));
        assert!(!has_empty_array(
            br#"data: {"choices":[{"index":0}],"usage":null}"#
        ));
        assert!(!has_empty_array(b"data: {\"choices\":["));
        assert!(!has_empty_array(b""));
    }

    #[test]
    fn complete_events_are_not_held() {
        let mut f = SseEventFilter::default();
        assert_eq!(
            f.push(b"data: x\n\ndata: partial", &is_drop),
            b"data: x\n\n"
        );
        assert_eq!(f.finish(), b"data: partial");
    }

    #[test]
    fn unchanged_chunks_are_not_copied() {
        let mut f = SseEventFilter::default();
        assert_eq!(f.push_changed(b"data: a\n\ndata: b\n\n", &is_drop), None);
        assert_eq!(
            f.push_changed(b"data: DROP\n\ndata: c\n\n", &is_drop),
            Some(b"data: c\n\n".to_vec())
        );
        // A held-back partial event makes the output differ from the chunk, then completes.
        assert_eq!(
            f.push_changed(b"data: d\n\ndata: e", &is_drop),
            Some(b"data: d\n\n".to_vec())
        );
        assert_eq!(
            f.push_changed(b"\n\n", &is_drop),
            Some(b"data: e\n\n".to_vec())
        );
        assert_eq!(f.finish(), b"");
    }

    #[test]
    fn object_member_prefilter() {
        assert!(has_object_member(
            br#"data: {"choices":[],"usage":{"a":1}}"#,
            b"usage"
        ));
        assert!(has_object_member(b"data: {\"usage\" :\r\n {}}", b"usage"));
        assert!(!has_object_member(br#"data: {"usage":null}"#, b"usage"));
        assert!(!has_object_member(
            br#"data: {"content":"say \"usage\": {"}"#,
            b"usage"
        ));
        assert!(!has_object_member(br#"data: {"usages":{}}"#, b"usage"));
        assert!(!has_object_member(
            br#"data: {"x":"usage","y":{}}"#,
            b"usage"
        ));
        assert!(!has_object_member(b"data: {\"usage", b"usage"));
        assert!(!has_object_member(b"", b"usage"));
    }

    /// A quote-anchored scan, the reference the brace-anchored prefilter must agree with.
    fn reference(raw: &[u8], key: &[u8]) -> bool {
        let mut rest = raw;
        while let Some(q) = memchr::memchr(b'"', rest) {
            rest = &rest[q + 1..];
            let Some(tail) = rest.strip_prefix(key).and_then(|t| t.strip_prefix(b"\"")) else {
                continue;
            };
            if tail
                .trim_ascii_start()
                .strip_prefix(b":")
                .is_some_and(|t| t.trim_ascii_start().first() == Some(&b'{'))
            {
                return true;
            }
        }
        false
    }

    #[test]
    fn object_member_prefilter_agrees_with_quote_scan() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        let pieces: [&[u8]; 12] = [
            b"\"usage\"",
            b"usage",
            b"\"",
            b":",
            b"{",
            b" ",
            b"\r\n",
            b"\\",
            b"}",
            b"\"u",
            b"x",
            b"\t",
        ];
        let mut hits = 0;
        for round in 0..50_000u64 {
            let mut v = Vec::new();
            s ^= round.wrapping_mul(0x2545_f491_4f6c_dd1d);
            for _ in 0..(round % 9) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                v.extend_from_slice(pieces[(s >> 3) as usize % pieces.len()]);
            }
            assert_eq!(
                has_object_member(&v, b"usage"),
                reference(&v, b"usage"),
                "{:?}",
                String::from_utf8_lossy(&v)
            );
            hits += usize::from(reference(&v, b"usage"));
        }
        assert!(hits > 50, "{hits}");
    }

    #[test]
    fn oversize_pending_bypasses() {
        let mut f = SseEventFilter::default();
        let big = vec![b'x'; MAX_PENDING + 1];
        assert_eq!(f.push(&big, &is_drop).len(), big.len());
        assert_eq!(f.push(b"data: DROP\n\n", &is_drop), b"data: DROP\n\n");
    }
}
