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

mod placeholder;
pub use placeholder::{BodyDecoder, ContentEncoding, Limits};
