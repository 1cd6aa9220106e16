//! Repeated stream events, recognised without reading them again.
//!
//! Almost every event of a streamed answer is the same JSON text with a different generated string in one
//! place: OpenAI's `{"id":..,"choices":[{"index":0,"delta":{"content":"<token>"},..}]..}`, Anthropic's
//! `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"<token>"}}`. When a
//! provider's fast path has read a whole event whose only effect was one generated string, it records the
//! event as a `Template`: the bytes before the string's opening quote's end (`prefix`) and from its closing
//! quote on (`suffix`). The next event that starts with exactly `prefix`, ends with exactly `suffix`, and
//! between them holds one valid JSON string that closes exactly where `suffix` begins, is the same document
//! apart from that string's value: it is valid wherever the template was, has the same members and the same
//! meaning, so only the string is read (`replay`). Two `memcmp`s and one string scan instead of a parse.
//!
//! Exactness rests on two rules, enforced by `providers::frame`:
//! - a template is recorded only after its event was wholly read and applied, and only for events whose
//!   other effects on the call record are idempotent (ids, model names: setting them again changes nothing);
//! - any event that does not replay the template clears it first, so between the template's event and a
//!   replay nothing else has touched the call record.
//!
//! The tests and the `skim` fuzz target check that a stream read this way leaves exactly the call record the
//! serde path leaves.

use super::FrameOutcome;
use crate::call::Response;
use crate::codec::json::skim::Str;
use crate::stream::Frame;

/// Events longer than this are not kept as templates (memory per stream stays small).
pub const MAX_TEMPLATE: usize = 2048;

/// Where the generated string of a templated event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sink {
    /// Generated text of choice `index` (counted, and captured when capture is on).
    Text(usize),
    /// A tool call's argument fragment for choice `index` (counted, captured).
    ToolArguments(usize),
    /// Counted only (reasoning text).
    Count,
}

/// The last event that may repeat (see the module documentation). Its buffer is reused from event to event.
#[derive(Clone, Debug, Default)]
pub struct Template {
    /// The frame was an SSE event (true) or a JSON frame (false).
    sse: bool,
    /// The SSE event's `event:` name.
    name: Vec<u8>,
    /// `prefix` followed by `suffix`.
    bytes: Vec<u8>,
    /// Length of the prefix: the event's bytes up to and including the string's opening quote.
    split: usize,
    /// Where the string goes; None: there is no template.
    sink: Option<Sink>,
}

impl Template {
    /// Forget the template (any event that does not replay it).
    pub fn clear(&mut self) {
        self.sink = None;
    }

    /// Record `frame`, whose text `data` holds the generated string `s` (a slice of `data`) going to `sink`.
    /// Events that are too long, or whose `s` is not a slice of `data`, are not recorded.
    pub fn record(&mut self, frame: &Frame<'_>, data: &str, s: Str<'_>, sink: Sink) {
        self.sink = None;
        let (sse, name) = match frame {
            Frame::Sse { event, .. } => (true, event.as_bytes()),
            Frame::Json(_) => (false, &b""[..]),
            Frame::Aws { .. } => return,
        };
        // Offsets of the string within `data`, from the addresses of the two slices.
        let base = data.as_ptr() as usize;
        let Some(start) = (s.raw.as_ptr() as usize).checked_sub(base) else {
            return;
        };
        let Some(end) = start.checked_add(s.raw.len()) else {
            return;
        };
        let bytes = data.as_bytes();
        if end > bytes.len() || bytes.len() > MAX_TEMPLATE || name.len() > MAX_TEMPLATE {
            return;
        }
        // The string's own quotes: the prefix ends with the opening one, the suffix starts with the closing.
        if start == 0 || bytes.get(start - 1) != Some(&b'"') || bytes.get(end) != Some(&b'"') {
            return;
        }
        let (Some(prefix), Some(suffix)) = (bytes.get(..start), bytes.get(end..)) else {
            return;
        };
        self.sse = sse;
        self.name.clear();
        self.name.extend_from_slice(name);
        self.bytes.clear();
        self.bytes.extend_from_slice(prefix);
        self.bytes.extend_from_slice(suffix);
        self.split = start;
        self.sink = Some(sink);
    }

    /// The generated string of `frame` if it is the template's event with another string, else None.
    pub fn matches<'a>(&self, frame: &Frame<'a>) -> Option<Str<'a>> {
        self.sink?;
        let data = match frame {
            Frame::Sse { event, data } if self.sse && event.as_bytes() == self.name => *data,
            Frame::Json(bytes) if !self.sse => std::str::from_utf8(bytes).ok()?,
            _ => return None,
        };
        let (prefix, suffix) = self.bytes.split_at_checked(self.split)?;
        let d = data.as_bytes();
        let close = d.len().checked_sub(suffix.len())?;
        if close < prefix.len() || !d.starts_with(prefix) || !d.ends_with(suffix) {
            return None;
        }
        // The string that opens at the end of the prefix must close exactly where the suffix begins.
        let (s, end) =
            crate::codec::json::skim::Reader::string_at(data, prefix.len().checked_sub(1)?)?;
        (end == close.checked_add(1)?).then_some(s)
    }

    /// Apply `frame` if it repeats the template: the outcome its full reading would have had. None: read it
    /// the usual way (not the template's shape, or a string serde would refuse, which the usual way handles).
    pub fn replay(&self, frame: &Frame<'_>, resp: &mut Response) -> Option<FrameOutcome> {
        let s = self.matches(frame)?;
        let sink = self.sink?;
        let (chars, text) = s.generated(resp.content.enabled())?;
        if chars > 0 {
            resp.output_chars = resp.output_chars.saturating_add(chars);
            match sink {
                Sink::Text(i) => resp.content.text(i, &text),
                Sink::ToolArguments(i) => resp.content.tool_arguments(i, &text),
                Sink::Count => {}
            }
        }
        Some(FrameOutcome {
            content: chars > 0,
            usage_only: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::OutputCapture;
    use crate::call::{Api, Route};
    use crate::providers::{frame, reference, StreamState};

    fn route(api: Api) -> Route {
        Route {
            api,
            provider: String::new(),
            path_model: None,
            path_stream: true,
        }
    }

    /// Feed the events through the fast path (with templates) and the serde path; they must agree on every
    /// outcome and on the final call record. Returns how many events replayed a template.
    fn agree(api: Api, events: &[(&str, &str)], capture: bool) -> usize {
        let route = route(api);
        let mut base = Response::default();
        if capture {
            base.content = OutputCapture::new(4096);
        }
        let (mut st_f, mut resp_f) = (StreamState::default(), base.clone());
        let (mut st_s, mut resp_s) = (StreamState::default(), base);
        let mut replayed = 0;
        for (name, data) in events {
            let f = Frame::Sse { event: name, data };
            if st_f.template.matches(&f).is_some() {
                replayed += 1;
            }
            let a = frame(&route, &f, &mut st_f, &mut resp_f);
            let b = reference::frame(&route, &f, &mut st_s, &mut resp_s);
            assert_eq!(a, b, "outcome of {data}");
            assert_eq!(resp_f, resp_s, "call record after {data}");
        }
        replayed
    }

    const P: &str = r#"{"id":"c1","object":"chat.completion.chunk","model":"m","choices":[{"index":0,"delta":{"content":""#;
    const S: &str = r#""},"finish_reason":null}],"usage":null}"#;

    fn chunk(s: &str) -> String {
        format!("{P}{s}{S}")
    }

    #[test]
    fn openai_deltas_replay_the_template() {
        let evs: Vec<String> = ["Hel", "lo", " wor\\\"ld", "", "\\ud83d\\ude00", "é"]
            .iter()
            .map(|s| chunk(s))
            .collect();
        let events: Vec<(&str, &str)> = evs.iter().map(|e| ("", e.as_str())).collect();
        for capture in [false, true] {
            assert_eq!(agree(Api::OpenAiChat, &events, capture), 5);
        }
    }

    #[test]
    fn lookalikes_are_read_in_full() {
        let evs = [
            chunk("a"),
            // The string closes early: the rest is more members, not the same document.
            format!(r#"{P}b","x":"{S}"#),
            chunk("c"),
            // An escaped quote right before the suffix: the string does not close there.
            format!(r#"{P}d\{S}"#),
            chunk("e"),
            // A control character, and a lone surrogate serde refuses.
            format!("{P}f\u{1}{S}"),
            chunk("g"),
            format!(r#"{P}\ud800{S}"#),
            chunk("h"),
            // Another choice index, a finish reason, a usage chunk.
            chunk("i").replace("\"index\":0", "\"index\":1"),
            chunk("j").replace("\"finish_reason\":null", "\"finish_reason\":\"stop\""),
            r#"{"id":"c1","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}"#
                .to_owned(),
            chunk("k"),
            chunk("l"),
        ];
        let events: Vec<(&str, &str)> = evs.iter().map(|e| ("", e.as_str())).collect();
        for capture in [false, true] {
            agree(Api::OpenAiChat, &events, capture);
        }
    }

    #[test]
    fn anthropic_deltas_replay_and_respect_the_event_name() {
        let text = |s: &str| {
            format!(
                r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{s}"}}}}"#
            )
        };
        let json = |s: &str| {
            format!(
                r#"{{"type":"content_block_delta","index":1,"delta":{{"type":"input_json_delta","partial_json":"{s}"}}}}"#
            )
        };
        let start = r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"f","input":{}}}"#;
        let evs = [
            ("content_block_delta", text("a")),
            ("content_block_delta", text("b")),
            ("other", text("c")),
            ("content_block_delta", text("d")),
            ("content_block_delta", text("e")),
            ("content_block_start", start.to_owned()),
            ("content_block_delta", json("{\\\"x\\\"")),
            ("content_block_delta", json(":1}")),
        ];
        let events: Vec<(&str, &str)> = evs.iter().map(|(n, e)| (*n, e.as_str())).collect();
        for capture in [false, true] {
            assert_eq!(agree(Api::AnthropicMessages, &events, capture), 3);
        }
    }

    fn sse<'a>(event: &'a str, data: &'a str) -> Frame<'a> {
        Frame::Sse { event, data }
    }

    /// A template recorded from the SSE chunk holding `text`.
    fn recorded(data: &str) -> Template {
        let mut t = Template::default();
        let s = Str {
            raw: &data[P.len()..data.len() - S.len()],
            escaped: false,
        };
        t.record(&sse("", data), data, s, Sink::Text(0));
        t
    }

    #[test]
    fn a_json_frame_never_replays_an_sse_template() {
        let mut t = recorded(&chunk("x"));
        let y = chunk("y");
        assert!(t.matches(&sse("", &y)).is_some());
        assert!(t.matches(&Frame::Json(y.as_bytes())).is_none());
        assert!(t.matches(&sse("e", &y)).is_none());
        t.clear();
        assert!(t.matches(&sse("", &y)).is_none());
    }

    #[test]
    fn oversized_events_are_not_recorded() {
        let long = chunk(&"x".repeat(MAX_TEMPLATE));
        assert!(recorded(&long).matches(&sse("", &long)).is_none());
        let short = chunk("x");
        assert!(recorded(&short).matches(&sse("", &short)).is_some());
    }
}
