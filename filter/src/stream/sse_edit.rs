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
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while let Some(rel) = buf.get(i..)?.iter().position(|&b| b == b'\n' || b == b'\r') {
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

impl SseEventFilter {
    /// Feed one chunk; returns the bytes to forward now. `drop` sees each complete raw event.
    pub fn push(&mut self, chunk: &[u8], drop: &dyn Fn(&[u8]) -> bool) -> Vec<u8> {
        if self.bypass {
            return chunk.to_vec();
        }
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0;
        while let Some(rest) = self.pending.get(start..) {
            let Some(len) = event_end(rest) else { break };
            let event = rest.get(..len).unwrap_or_default();
            if drop(event) {
                self.dropped += 1;
            } else {
                out.extend_from_slice(event);
            }
            start += len;
        }
        self.pending.drain(..start.min(self.pending.len()));
        if self.pending.len() > MAX_PENDING {
            self.bypass = true;
            out.append(&mut self.pending);
        }
        out
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

    #[test]
    fn drops_whole_events_at_every_split() {
        for cut in 0..=STREAM.len() {
            let (a, b) = STREAM.split_at(cut);
            let mut f = SseEventFilter::default();
            let mut out = f.push(a, &is_drop);
            out.extend(f.push(b, &is_drop));
            out.extend(f.finish());
            assert_eq!(out, KEPT, "split at {cut}");
            assert_eq!(f.dropped, 1);
        }
        let mut f = SseEventFilter::default();
        let mut out = Vec::new();
        for b in STREAM {
            out.extend(f.push(std::slice::from_ref(b), &is_drop));
        }
        out.extend(f.finish());
        assert_eq!(out, KEPT);
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
    fn oversize_pending_bypasses() {
        let mut f = SseEventFilter::default();
        let big = vec![b'x'; MAX_PENDING + 1];
        assert_eq!(f.push(&big, &is_drop).len(), big.len());
        assert_eq!(f.push(b"data: DROP\n\n", &is_drop), b"data: DROP\n\n");
    }
}
