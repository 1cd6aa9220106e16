//! Framing decoders: response bytes in (any chunking), complete events out. Pure, bounded, total.
//! The decoders carry only the unfinished event between chunks; an event larger than the cap is skipped and
//! counted rather than buffered.

/// One complete unit of a streamed (or whole) response body, borrowed from the decoder's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A server-sent event. `event` is "" when the event carried no `event:` line; several `data:` lines
    /// are joined with "\n".
    Sse { event: &'a str, data: &'a str },
    /// One JSON document: a whole non-streamed body, an NDJSON line or one element of a streamed JSON array.
    Json(&'a [u8]),
    /// One AWS event-stream message whose CRCs checked out. Header values default to "".
    Aws {
        message_type: &'a str,
        event_type: &'a str,
        exception_type: &'a str,
        payload: &'a [u8],
    },
}

pub mod eventstream;
pub mod inflate;
pub mod json_array;
pub mod ndjson;
pub mod sse;

pub use eventstream::{encode_message, EventStreamDecoder};
pub use inflate::{ContentEncoding, InflateError, Inflater};
pub use json_array::JsonArrayDecoder;
pub use ndjson::NdjsonDecoder;
pub use sse::SseDecoder;

use crate::providers::Framing;

/// Memory caps for decoding one response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest single streamed event (SSE event, NDJSON line, array element, event-stream message).
    pub max_event: usize,
    /// Largest whole (non-streamed) body, and largest non-array body in `JsonArray` framing.
    pub max_body: usize,
    /// Largest inflated output of a compressed body (decompression-bomb guard).
    pub max_inflated: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event: 256 * 1024,
            max_body: 4 * 1024 * 1024,
            max_inflated: 16 * 1024 * 1024,
        }
    }
}

/// Counters of what a framer dropped, plus what it holds right now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Events (or whole bodies) larger than their cap, skipped without buffering.
    pub oversize_skipped: u64,
    /// Events that were not well formed (bad UTF-8, bad headers, cut off by the end of the body).
    pub malformed: u64,
    /// Event-stream messages whose prelude or message CRC did not match.
    pub crc_errors: u64,
    /// Bytes currently carried between chunks.
    pub buffered: usize,
}

/// A non-streamed body, collected up to its cap and emitted once at the end.
#[derive(Debug)]
pub struct WholeBody {
    max_body: usize,
    buf: Vec<u8>,
    oversize: bool,
}

impl WholeBody {
    pub fn new(max_body: usize) -> WholeBody {
        WholeBody {
            max_body,
            buf: Vec::new(),
            oversize: false,
        }
    }

    pub fn push(&mut self, chunk: &[u8]) {
        if self.oversize {
            return;
        }
        if self.buf.len().saturating_add(chunk.len()) > self.max_body {
            self.oversize = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Emits the body unless it was empty (e.g. 204) or over the cap.
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        if !self.oversize && !self.buf.trim_ascii().is_empty() {
            on(Frame::Json(&self.buf));
        }
        self.buf = Vec::new();
    }

    pub fn oversize(&self) -> bool {
        self.oversize
    }
}

/// The framing decoder for one response body.
#[derive(Debug)]
pub enum Framer {
    Whole(WholeBody),
    Sse(SseDecoder),
    Ndjson(NdjsonDecoder),
    JsonArray(JsonArrayDecoder),
    Aws(EventStreamDecoder),
}

impl Framer {
    pub fn new(framing: Framing, limits: &Limits) -> Framer {
        match framing {
            Framing::Whole => Framer::Whole(WholeBody::new(limits.max_body)),
            Framing::Sse => Framer::Sse(SseDecoder::new(limits.max_event)),
            Framing::Ndjson => Framer::Ndjson(NdjsonDecoder::new(limits.max_event)),
            Framing::JsonArray => {
                Framer::JsonArray(JsonArrayDecoder::new(limits.max_event, limits.max_body))
            }
            Framing::AwsEventStream => Framer::Aws(EventStreamDecoder::new(limits.max_event)),
        }
    }

    /// Feed the next chunk of the (decoded) body; complete frames are handed to `on` immediately.
    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        match self {
            Framer::Whole(w) => w.push(chunk),
            Framer::Sse(d) => d.push(chunk, on),
            Framer::Ndjson(d) => d.push(chunk, on),
            Framer::JsonArray(d) => d.push(chunk, on),
            Framer::Aws(d) => d.push(chunk, on),
        }
    }

    /// End of body: flush what is complete, drop (and count) what is not.
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        match self {
            Framer::Whole(w) => w.finish(on),
            Framer::Sse(d) => d.finish(on),
            Framer::Ndjson(d) => d.finish(on),
            Framer::JsonArray(d) => d.finish(on),
            Framer::Aws(d) => d.finish(on),
        }
    }

    pub fn stats(&self) -> FramerStats {
        match self {
            Framer::Whole(w) => FramerStats {
                oversize_skipped: u64::from(w.oversize()),
                buffered: w.buf.len(),
                ..FramerStats::default()
            },
            Framer::Sse(d) => FramerStats {
                oversize_skipped: d.oversize_skipped(),
                malformed: d.malformed(),
                crc_errors: 0,
                buffered: d.buffered(),
            },
            Framer::Ndjson(d) => FramerStats {
                oversize_skipped: d.oversize_skipped(),
                buffered: d.buffered(),
                ..FramerStats::default()
            },
            Framer::JsonArray(d) => FramerStats {
                oversize_skipped: d.oversize_skipped(),
                malformed: d.malformed(),
                crc_errors: 0,
                buffered: d.buffered(),
            },
            Framer::Aws(d) => FramerStats {
                oversize_skipped: d.oversize_skipped(),
                malformed: d.malformed(),
                crc_errors: d.crc_errors(),
                buffered: d.buffered(),
            },
        }
    }
}

/// Framer stats plus what happened to the content coding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    pub oversize_skipped: u64,
    pub malformed: u64,
    pub crc_errors: u64,
    pub buffered: usize,
    /// 1 when the compressed body was corrupt or cut off (decoding stopped there).
    pub inflate_errors: u64,
    /// 1 when the inflated body reached `max_inflated` (decoding stopped there).
    pub inflate_capped: u64,
}

/// A response body decoder: undo the content coding (if any), then frame.
#[derive(Debug)]
pub struct BodyDecoder {
    inflater: Option<Inflater>,
    framer: Framer,
    inflate_errors: u64,
    inflate_capped: u64,
}

impl BodyDecoder {
    pub fn new(encoding: ContentEncoding, framing: Framing, limits: &Limits) -> BodyDecoder {
        let inflater = match encoding {
            ContentEncoding::Identity => None,
            other => Some(Inflater::new(other, limits.max_inflated)),
        };
        BodyDecoder {
            inflater,
            framer: Framer::new(framing, limits),
            inflate_errors: 0,
            inflate_capped: 0,
        }
    }

    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(Frame<'_>)) {
        let framer = &mut self.framer;
        match self.inflater.as_mut() {
            None => framer.push(chunk, on),
            Some(inf) => {
                if inf.error().is_some() {
                    return;
                }
                let r = inf.push(chunk, &mut |piece| framer.push(piece, on));
                if let Err(e) = r {
                    self.note(e);
                }
            }
        }
    }

    /// End of body. If the coding failed, only the frames completed before the failure count: a partial
    /// body would not be the document the server sent.
    pub fn finish(&mut self, on: &mut dyn FnMut(Frame<'_>)) {
        if let Some(inf) = self.inflater.as_mut() {
            if inf.error().is_some() {
                return;
            }
            if let Err(e) = inf.finish() {
                self.note(e);
                return;
            }
        }
        self.framer.finish(on);
    }

    fn note(&mut self, e: InflateError) {
        match e {
            InflateError::Capped => self.inflate_capped = 1,
            InflateError::Corrupt | InflateError::Truncated => self.inflate_errors = 1,
        }
    }

    pub fn stats(&self) -> DecoderStats {
        let f = self.framer.stats();
        DecoderStats {
            oversize_skipped: f.oversize_skipped,
            malformed: f.malformed,
            crc_errors: f.crc_errors,
            buffered: f.buffered,
            inflate_errors: self.inflate_errors,
            inflate_capped: self.inflate_capped,
        }
    }
}

/// Shared helpers for the decoder tests: owned frames and the chunkings every input is fed in.
#[cfg(test)]
pub(crate) mod testutil {
    use super::Frame;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Owned {
        Sse {
            event: String,
            data: String,
        },
        Json(Vec<u8>),
        Aws {
            message_type: String,
            event_type: String,
            exception_type: String,
            payload: Vec<u8>,
        },
    }

    impl From<Frame<'_>> for Owned {
        fn from(f: Frame<'_>) -> Self {
            match f {
                Frame::Sse { event, data } => Owned::Sse {
                    event: event.into(),
                    data: data.into(),
                },
                Frame::Json(j) => Owned::Json(j.to_vec()),
                Frame::Aws {
                    message_type,
                    event_type,
                    exception_type,
                    payload,
                } => Owned::Aws {
                    message_type: message_type.into(),
                    event_type: event_type.into(),
                    exception_type: exception_type.into(),
                    payload: payload.to_vec(),
                },
            }
        }
    }

    /// `input` split into two chunks at every offset (both ends included: one chunk may be empty).
    pub fn every_split(input: &[u8]) -> impl Iterator<Item = Vec<&[u8]>> {
        (0..=input.len()).map(move |i| {
            let (a, b) = input.split_at(i);
            vec![a, b]
        })
    }

    pub fn one_byte(input: &[u8]) -> Vec<&[u8]> {
        input.chunks(1).collect()
    }

    /// `rounds` deterministic pseudo-random chunkings (xorshift64), chunk sizes 0..=17 with empty chunks too.
    pub fn xorshift_chunks(input: &[u8], rounds: u64) -> impl Iterator<Item = Vec<&[u8]>> {
        (0..rounds).map(move |r| {
            let mut s = 0x2545_f491_4f6c_dd1d_u64 ^ r.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut out = Vec::new();
            let mut rest = input;
            while !rest.is_empty() {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                // Mostly small chunks, sometimes a large one.
                let n = if s % 8 == 0 {
                    (s >> 8) as usize % 512
                } else {
                    (s >> 8) as usize % 18
                };
                let (a, b) = rest.split_at(n.min(rest.len()));
                out.push(a);
                rest = b;
            }
            out
        })
    }
}
