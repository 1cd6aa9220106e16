//! W3C Trace Context: parse the caller's `traceparent`, mint the gateway span's ids, and format the
//! `traceparent` sent upstream so provider-side spans join the caller's trace.

use crate::call::SpanIds;

/// Parsed `traceparent` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None, // The spec requires lowercase.
    }
}

fn decode_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = match pair {
            [h, l] => (hex_val(*h)?, hex_val(*l)?),
            _ => return None,
        };
        *o = (hi << 4) | lo;
    }
    Some(out)
}

/// Parse a `traceparent` value. Invalid values (wrong length, uppercase, all-zero ids, version ff) → None.
pub fn parse_traceparent(v: &str) -> Option<TraceParent> {
    let v = v.trim().as_bytes();
    let mut parts = v.split(|&b| b == b'-');
    let version = decode_hex::<1>(parts.next()?)?;
    let trace_id = decode_hex::<16>(parts.next()?)?;
    let parent_id = decode_hex::<8>(parts.next()?)?;
    let flags = decode_hex::<1>(parts.next()?)?;
    match version {
        [0xff] => return None,
        // Version 00 has exactly four fields; later versions may append more, which we ignore.
        [0x00] if parts.next().is_some() => return None,
        _ => {}
    }
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(TraceParent {
        trace_id,
        parent_id,
        flags: flags[0],
    })
}

/// The `traceparent` naming the gateway span as parent, for the upstream request (built without `format!`:
/// this runs for every call).
pub fn format_traceparent(ids: &SpanIds) -> String {
    let mut s = String::with_capacity(55);
    s.push_str("00-");
    crate::codec::hex::push(&mut s, &ids.trace_id);
    s.push('-');
    crate::codec::hex::push(&mut s, &ids.span_id);
    s.push_str(if ids.sampled { "-01" } else { "-00" });
    s
}

/// Keep at most 32 list members (the spec's limit) and drop an oversize header entirely.
pub fn sanitize_tracestate(v: &str) -> String {
    if v.len() > 512 {
        return String::new();
    }
    v.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .take(32)
        .collect::<Vec<_>>()
        .join(",")
}

/// Build the gateway span's ids: continue the caller's trace when `traceparent` is valid, else start one.
/// `random` supplies 24 random bytes (16 for a new trace id, 8 for the span id). Sampling: the caller's
/// sampled flag is honoured; a new trace is sampled when `sample_draw` (uniform in [0,1)) < `ratio`.
pub fn span_ids(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    random: [u8; 24],
    ratio: f64,
    sample_draw: f64,
) -> SpanIds {
    let (new_trace, span_bytes) = random.split_at(16);
    let mut span_id = [0u8; 8];
    span_id.copy_from_slice(span_bytes);
    if span_id == [0; 8] {
        span_id[7] = 1;
    }
    match traceparent.and_then(parse_traceparent) {
        Some(tp) => SpanIds {
            trace_id: tp.trace_id,
            span_id,
            parent_span_id: Some(tp.parent_id),
            sampled: tp.flags & 1 == 1,
            tracestate: tracestate.map(sanitize_tracestate).unwrap_or_default(),
        },
        None => {
            let mut trace_id = [0u8; 16];
            trace_id.copy_from_slice(new_trace);
            if trace_id == [0; 16] {
                trace_id[15] = 1;
            }
            SpanIds {
                trace_id,
                span_id,
                parent_span_id: None,
                sampled: sample_draw < ratio,
                tracestate: String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::hex::hex;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_valid() {
        let tp = parse_traceparent(TP).unwrap();
        assert_eq!(hex(&tp.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(hex(&tp.parent_id), "00f067aa0ba902b7");
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn rejects_invalid() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        assert!(parse_traceparent(
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"
        )
        .is_some());
    }

    #[test]
    fn continues_or_starts() {
        let rnd = [7u8; 24];
        let ids = span_ids(Some(TP), Some("a=1, b=2"), rnd, 0.0, 0.5);
        assert_eq!(hex(&ids.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            ids.parent_span_id.map(|p| hex(&p)).as_deref(),
            Some("00f067aa0ba902b7")
        );
        assert!(ids.sampled, "the caller's sampled flag wins over the ratio");
        assert_eq!(ids.tracestate, "a=1,b=2");
        assert_eq!(
            format_traceparent(&ids),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0707070707070707-01"
        );
        let fresh = span_ids(Some("garbage"), Some("a=1"), rnd, 0.25, 0.5);
        assert_eq!(fresh.trace_id, [7u8; 16]);
        assert!(fresh.parent_span_id.is_none() && !fresh.sampled && fresh.tracestate.is_empty());
        assert!(span_ids(None, None, [0; 24], 1.0, 0.99).sampled);
        assert_ne!(span_ids(None, None, [0; 24], 1.0, 0.0).trace_id, [0; 16]);
    }
}
