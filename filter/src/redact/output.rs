//! Output redaction of a streamed (SSE) response on its way to the client.
//!
//! Each complete event's generated-text string (`choices[].delta.content`, Anthropic `delta.text`, Gemini
//! `parts[].text`, Responses `delta`, …) goes through one [`StreamRedactor`], and the event is forwarded
//! with that string replaced by what the redactor released (possibly ""), every other byte as it was. The
//! held-back text is released as an extra event, a copy of the last text event carrying it, just before
//! the next event without text (the finish chunk, `content_block_stop`, `[DONE]`, …) or at the end of the
//! stream, or when the text moves to another field (content → tool arguments). So a match split across
//! events and chunks is caught as long as it fits the hold-back window.
//!
//! An event with several text strings (n > 1 choices in one chunk) is redacted one-shot per string after
//! flushing the window. Only an unfinished trailing event is held as bytes (bounded by `MAX_PENDING`).

use super::json::map_json_strings;
use super::{FieldSelector, Findings, Redactor, StreamRedactor};
use crate::stream::sse_edit::{event_data, event_end};

/// An unfinished event larger than this is forwarded redacted as plain text and editing stops.
pub const MAX_PENDING: usize = 1 << 20;

/// The strings in stream events that carry generated text.
const TEXT_KEYS: &[&str] = &[
    "content",
    "text",
    "refusal",
    "arguments",
    "partial_json",
    "delta",
    "thinking",
    "response",
];

fn is_text_key(k: &str) -> bool {
    TEXT_KEYS.contains(&k)
}

pub struct SseOutputRedactor {
    pending: Vec<u8>,
    stream: StreamRedactor,
    /// The last single-text event (raw bytes), the template for released held-back text.
    template: Option<Vec<u8>>,
    /// Key of the text being held back.
    held_key: String,
    bypass: bool,
    /// Findings of the one-shot paths (the stream redactor keeps its own).
    extra: Findings,
}

/// `raw` with its data line(s) replaced by one `data: <data>` line at the first data line's place.
fn with_data(raw: &[u8], data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + data.len());
    let mut wrote = false;
    let mut rest = raw;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .unwrap_or(rest.len());
        let (line, tail) = rest.split_at(end);
        let nl = match tail {
            [b'\r', b'\n', ..] => 2,
            [] => 0,
            _ => 1,
        };
        let (sep, after) = tail.split_at(nl);
        if line.starts_with(b"data:") {
            if !wrote {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data);
                out.extend_from_slice(sep);
                wrote = true;
            }
        } else {
            out.extend_from_slice(line);
            out.extend_from_slice(sep);
        }
        rest = after;
    }
    out
}

impl SseOutputRedactor {
    pub fn new(hold_back: usize) -> Self {
        SseOutputRedactor {
            pending: Vec::new(),
            stream: StreamRedactor::new(hold_back),
            template: None,
            held_key: String::new(),
            bypass: false,
            extra: Findings::default(),
        }
    }

    /// Everything redacted so far.
    pub fn findings(&self) -> Findings {
        let mut f = self.stream.findings().clone();
        f.merge(&self.extra);
        f
    }

    /// Feed client-bound bytes; returns the bytes to forward now.
    pub fn push(&mut self, r: &Redactor, chunk: &[u8]) -> Vec<u8> {
        if self.bypass {
            return self.plain(r, chunk);
        }
        self.pending.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(self.pending.len());
        let mut start = 0usize;
        let pending = std::mem::take(&mut self.pending);
        while let Some(rest) = pending.get(start..) {
            let Some(len) = event_end(rest) else { break };
            let event = rest.get(..len).unwrap_or_default();
            self.event(r, event, &mut out);
            start += len;
        }
        self.pending = pending.get(start..).unwrap_or_default().to_vec();
        if self.pending.len() > MAX_PENDING {
            self.bypass = true;
            self.flush(r, &mut out);
            let p = std::mem::take(&mut self.pending);
            out.extend(self.plain(r, &p));
        }
        out
    }

    /// End of stream: release the held text and any unfinished trailing bytes (redacted as plain text).
    pub fn finish(&mut self, r: &Redactor) -> Vec<u8> {
        let mut out = Vec::new();
        self.flush(r, &mut out);
        let p = std::mem::take(&mut self.pending);
        out.extend(self.plain(r, &p));
        out
    }

    fn plain(&mut self, r: &Redactor, bytes: &[u8]) -> Vec<u8> {
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                let (t, f) = r.redact(s);
                self.extra.merge(&f);
                t.into_owned().into_bytes()
            }
            Err(_) => bytes.to_vec(),
        }
    }

    /// Release the held-back text as a copy of the template event.
    fn flush(&mut self, r: &Redactor, out: &mut Vec<u8>) {
        let rest = self.stream.finish(r);
        if rest.is_empty() {
            return;
        }
        let Some(t) = self.template.as_ref() else {
            out.extend_from_slice(rest.as_bytes());
            return;
        };
        let data = event_data(t);
        let mut once = Some(rest);
        let replaced = map_json_strings(&data, FieldSelector::ALL_STRINGS, &mut |k, _| {
            if is_text_key(k) {
                once.take()
            } else {
                None
            }
        });
        if let Some(Some(d)) = replaced {
            out.extend(with_data(t, &d));
        }
    }

    fn event(&mut self, r: &Redactor, raw: &[u8], out: &mut Vec<u8>) {
        let data = event_data(raw);
        let mut texts: Vec<(String, usize)> = Vec::new();
        let valid = map_json_strings(&data, FieldSelector::ALL_STRINGS, &mut |k, t| {
            if is_text_key(k) {
                texts.push((k.to_owned(), t.len()));
            }
            None
        });
        if valid.is_none() || texts.is_empty() {
            // No text ([DONE], finish chunk, block stop): the held text goes out first. Pings carry
            // nothing and may arrive mid-text, so they do not end the window.
            if !data.windows(6).any(|w| w == b"\"ping\"") {
                self.flush(r, out);
            }
            out.extend_from_slice(raw);
            return;
        }
        if texts.len() > 1 {
            self.flush(r, out);
            let mut f = Findings::default();
            let new = map_json_strings(&data, FieldSelector::ALL_STRINGS, &mut |k, t| {
                if !is_text_key(k) {
                    return None;
                }
                let (x, found) = r.redact(t);
                f.merge(&found);
                (!found.is_empty()).then(|| x.into_owned())
            });
            self.extra.merge(&f);
            match new {
                Some(Some(d)) => out.extend(with_data(raw, &d)),
                _ => out.extend_from_slice(raw),
            }
            return;
        }
        let key = texts.first().map(|(k, _)| k.clone()).unwrap_or_default();
        if key != self.held_key {
            self.flush(r, out);
            self.held_key = key;
        }
        let stream = &mut self.stream;
        let new = map_json_strings(&data, FieldSelector::ALL_STRINGS, &mut |k, t| {
            is_text_key(k).then(|| stream.push(r, t))
        });
        self.template = Some(raw.to_vec());
        match new {
            Some(Some(d)) => out.extend(with_data(raw, &d)),
            _ => out.extend_from_slice(raw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RedactionConfig;
    use super::*;
    use serde_json::Value;

    fn r() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    fn openai_event(text: &str) -> String {
        let chunk = serde_json::json!({"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":text},"finish_reason":null}]});
        format!("data: {chunk}\n\n")
    }

    fn stream(pieces: &[&str]) -> String {
        let mut body = String::new();
        body.push_str("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n");
        for p in pieces {
            body.push_str(&openai_event(p));
        }
        body.push_str("data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
        body.push_str("data: [DONE]\n\n");
        body
    }

    /// The text a client reassembles from the deltas, and the events.
    fn client_text(body: &[u8]) -> (String, Vec<Value>) {
        let mut text = String::new();
        let mut evs = Vec::new();
        for ev in std::str::from_utf8(body).unwrap().split("\n\n") {
            let Some(d) = ev.strip_prefix("data: ") else {
                continue;
            };
            if d == "[DONE]" {
                continue;
            }
            let v: Value = serde_json::from_str(d).unwrap();
            if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
                text.push_str(t);
            }
            evs.push(v);
        }
        (text, evs)
    }

    fn run(body: &str, chunk: usize) -> (Vec<u8>, Findings) {
        let r = r();
        let mut o = SseOutputRedactor::new(96);
        let mut out = Vec::new();
        for c in body.as_bytes().chunks(chunk) {
            out.extend(o.push(&r, c));
        }
        out.extend(o.finish(&r));
        (out, o.findings())
    }

    #[test]
    fn split_match_is_caught_whatever_the_chunking() {
        let pieces = [
            "Sure, write to ja",
            "ne.doe@exa",
            "mple.com or call ",
            "+44 20 79",
            "46 0958. Bye",
        ];
        let body = stream(&pieces);
        let want = r().redact(&pieces.concat()).0.into_owned();
        for chunk in [1usize, 3, 7, 50, 1000] {
            let (out, f) = run(&body, chunk);
            let s = String::from_utf8(out.clone()).unwrap();
            assert!(
                !s.contains("doe@") && !s.contains("7946"),
                "chunk {chunk}: {s}"
            );
            let (text, evs) = client_text(&out);
            assert_eq!(text, want, "chunk {chunk}");
            assert_eq!(f.types, vec!["email", "phone"]);
            // The finish chunk still comes last before [DONE], after the released text.
            assert_eq!(evs.last().unwrap()["choices"][0]["finish_reason"], "stop");
            assert!(s.ends_with("data: [DONE]\n\n"));
        }
    }

    #[test]
    fn other_bytes_are_kept() {
        let body = stream(&["nothing to see here"]);
        let (out, f) = run(&body, 5);
        assert!(f.is_empty());
        // Same events, except the text moved from its delta to the flushed copy before the finish chunk.
        let (text, _) = client_text(&out);
        assert_eq!(text, "nothing to see here");
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains(r#""object":"chat.completion.chunk""#));
    }

    #[test]
    fn anthropic_events_and_pings() {
        let ev = |name: &str, data: &str| format!("event: {name}\ndata: {data}\n\n");
        let mut body = ev(
            "message_start",
            r#"{"type":"message_start","message":{"id":"m","content":[]}}"#,
        );
        body += &ev(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        );
        body += &ev(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"key AKIAIOSFOD"}}"#,
        );
        body += &ev("ping", r#"{"type": "ping"}"#);
        body += &ev(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"NN7EXAMPLE ok"}}"#,
        );
        body += &ev(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        );
        body += &ev("message_stop", r#"{"type":"message_stop"}"#);
        let (out, f) = run(&body, 4);
        let s = String::from_utf8(out).unwrap();
        assert!(!s.contains("AKIA") && !s.contains("EXAMPLE"), "{s}");
        assert!(s.contains("[REDACTED:AWS_ACCESS_KEY]"));
        assert_eq!(f.types, vec!["aws_access_key"]);
        assert!(s.contains("event: content_block_delta\ndata: "));
        // The released text precedes the block stop.
        let stop = s.find("content_block_stop").unwrap();
        assert!(s.find("[REDACTED:AWS_ACCESS_KEY]").unwrap() < stop);
    }

    #[test]
    fn unfinished_tail_and_crlf() {
        let r = r();
        let mut o = SseOutputRedactor::new(96);
        let mut out = o.push(
            &r,
            openai_event("mail a@example.com")
                .replace("\n", "\r\n")
                .as_bytes(),
        );
        out.extend(o.push(&r, b"data: {\"partial\": \"b@example.com"));
        out.extend(o.finish(&r));
        let s = String::from_utf8(out).unwrap();
        assert!(
            !s.contains("a@example.com") && !s.contains("b@example.com"),
            "{s}"
        );
        assert!(s.contains("\r\n\r\n"));
    }

    #[test]
    fn with_data_replaces_only_data() {
        assert_eq!(
            with_data(b"event: x\r\ndata: {\"a\":1}\r\nid: 3\r\n\r\n", b"{}"),
            b"event: x\r\ndata: {}\r\nid: 3\r\n\r\n".to_vec()
        );
    }
}
