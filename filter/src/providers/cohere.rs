//! Cohere Chat v2 (`POST /v2/chat` on api.cohere.com / api.cohere.ai). Cohere echoes no model.

use super::common::prompt_hash;
use super::common::{count_chars, set_if_nonempty, ChatMessage, FunctionTool, Named, Typed};
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::capture::{self, Input};
use crate::codec::json::lenient::items;
use crate::codec::json::lenient::{json_struct, read, Lenient, LenientStr, OneOrMany};
use crate::codec::json::skim::{generated, once, Reader, Str};
use crate::codec::json::Json;
use crate::reply::Refusal;
use crate::stream::Frame;
use std::borrow::Cow;

pub fn detect(host: &str, path: &str) -> Option<Route> {
    let host = host.to_ascii_lowercase();
    // `/v2/chat` is too generic to claim on any host; "" = a configured route asked for inference.
    if !matches!(host.as_str(), "" | "api.cohere.com" | "api.cohere.ai") {
        return None;
    }
    if path.split('?').next().unwrap_or("") != "/v2/chat" {
        return None;
    }
    Some(Route {
        api: Api::CohereChat,
        provider: "cohere".to_owned(),
        path_model: None,
        path_stream: false,
    })
}

json_struct! {
    struct ChatRequest<'a> {
        model: LenientStr<'a> = "model",
        stream: Lenient<bool> = "stream",
        max_tokens: Lenient<u64> = "max_tokens",
        temperature: Lenient<f64> = "temperature",
        k: Lenient<f64> = "k",
        p: Lenient<f64> = "p",
        seed: Lenient<i64> = "seed",
        stop_sequences: Lenient<OneOrMany> = "stop_sequences",
        frequency_penalty: Lenient<f64> = "frequency_penalty",
        presence_penalty: Lenient<f64> = "presence_penalty",
        tools: Lenient<Vec<Lenient<FunctionTool<'a>>>> = "tools",
        response_format: Lenient<Typed<'a>> = "response_format",
        messages: Lenient<Vec<Lenient<ChatMessage<'a>>>> = "messages",
    }
}

pub fn request(_route: &Route, body: &[u8], req: &mut Request) {
    let Some(r) = read::<ChatRequest<'_>>(body) else {
        return;
    };
    req.model = r.model.get().map(Cow::into_owned).or(req.model.take());
    req.stream = r.stream.get().unwrap_or(false);
    req.max_tokens = r.max_tokens.get();
    req.temperature = r.temperature.get();
    req.top_k = r.k.get();
    req.top_p = r.p.get();
    req.seed = r.seed.get();
    req.stop_sequences = r.stop_sequences.get().map(|s| s.0).unwrap_or_default();
    req.frequency_penalty = r.frequency_penalty.get();
    req.presence_penalty = r.presence_penalty.get();
    req.tool_names = r
        .tools
        .get()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.get()?.function.get()?.name.get().map(Cow::into_owned))
        .collect();
    req.output_type = match r
        .response_format
        .get()
        .and_then(|f| f.kind.get())
        .as_deref()
    {
        Some("json_object") => Some("json"),
        Some("text") => Some("text"),
        _ => None,
    };
    let mut system = String::new();
    let mut chars: u64 = 0;
    for m in items(r.messages) {
        let text = m.content.get().map(|c| c.0).unwrap_or_default();
        chars = chars.saturating_add(text.chars().count() as u64);
        if m.role.get().as_deref() == Some("system") {
            if !system.is_empty() {
                system.push('\n');
            }
            system.push_str(&text);
        }
    }
    req.prompt_chars = chars;
    if !system.is_empty() {
        req.system_prompt_hash = Some(prompt_hash(&system));
    }
}

json_struct! {
    struct WireUsage {
        billed_units: Lenient<Tokens> = "billed_units",
        tokens: Lenient<Tokens> = "tokens",
    }
}

json_struct! {
    struct Tokens {
        input_tokens: Lenient<u64> = "input_tokens",
        output_tokens: Lenient<u64> = "output_tokens",
    }
}

impl WireUsage {
    /// Semconv asks for Cohere's billed units. `tokens` (the raw counts, including prompt-template tokens)
    /// is only a fallback when no billed units are reported.
    fn apply(self, resp: &mut Response) {
        let billed = self.billed_units.get().unwrap_or_default();
        let raw = self.tokens.get().unwrap_or_default();
        let u = &mut resp.usage;
        u.input = billed
            .input_tokens
            .get()
            .or(raw.input_tokens.get())
            .or(u.input);
        u.output = billed
            .output_tokens
            .get()
            .or(raw.output_tokens.get())
            .or(u.output);
    }
}

json_struct! {
    struct ChatResponse<'a> {
        id: LenientStr<'a> = "id",
        finish_reason: LenientStr<'a> = "finish_reason",
        message: Lenient<AssistantMessage<'a>> = "message",
        usage: Lenient<WireUsage> = "usage",
    }
}

json_struct! {
    struct AssistantMessage<'a> {
        content: Lenient<Vec<Lenient<ContentPart<'a>>>> = "content",
        tool_calls: Lenient<Vec<Lenient<WireToolCall<'a>>>> = "tool_calls",
    }
}

json_struct! {
    struct ContentPart<'a> {
        text: LenientStr<'a> = "text",
    }
}

json_struct! {
    struct WireToolCall<'a> {
        id: LenientStr<'a> = "id",
        function: Lenient<Named<'a>> = "function",
    }
}

fn add_tool_call(call: WireToolCall<'_>, resp: &mut Response) -> bool {
    let id = call.id.get().unwrap_or_default();
    let name = call
        .function
        .get()
        .and_then(|f| f.name.get())
        .unwrap_or_default();
    if id.is_empty() && name.is_empty() {
        return false;
    }
    resp.add_tool_call(&id, &name);
    true
}

pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    let Some(c) = read::<ChatResponse<'_>>(body) else {
        return;
    };
    set_if_nonempty(&mut resp.id, c.id.get());
    if let Some(reason) = c.finish_reason.get() {
        resp.set_finish_reason(0, &reason);
    }
    if let Some(u) = c.usage.get() {
        u.apply(resp);
    }
    if let Some(m) = c.message.get() {
        for part in items(m.content) {
            if let Some(t) = part.text.get() {
                resp.content.text(0, &t);
                count_chars(resp, &t);
            }
        }
        for call in items(m.tool_calls) {
            add_tool_call(call, resp);
        }
    }
}

json_struct! {
    struct StreamEvent<'a> {
        kind: LenientStr<'a> = "type",
        id: LenientStr<'a> = "id",
        delta: Lenient<StreamDelta<'a>> = "delta",
    }
}

json_struct! {
    struct StreamDelta<'a> {
        message: Lenient<DeltaMessage<'a>> = "message",
        finish_reason: LenientStr<'a> = "finish_reason",
        usage: Lenient<WireUsage> = "usage",
    }
}

json_struct! {
    /// In stream deltas `content` and `tool_calls` are single objects, not lists.
    struct DeltaMessage<'a> {
        content: Lenient<ContentPart<'a>> = "content",
        tool_plan: LenientStr<'a> = "tool_plan",
        tool_calls: Lenient<WireToolCall<'a>> = "tool_calls",
    }
}

pub fn fast_frame(
    _route: &Route,
    frame: &Frame<'_>,
    _st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    super::common::frame_text(frame).and_then(|t| fast_event(t, resp))
}

pub fn frame(
    _route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    let data = match frame {
        Frame::Sse { data, .. } => data.as_bytes(),
        Frame::Json(bytes) => bytes,
        Frame::Aws { .. } => return FrameOutcome::default(),
    };
    let Some(ev) = read::<StreamEvent<'_>>(data) else {
        return FrameOutcome::default();
    };
    let mut content = false;
    let delta = ev.delta.get();
    match ev.kind.as_ref().map(|k| k.as_ref()).unwrap_or("") {
        "message-start" => set_if_nonempty(&mut resp.id, ev.id.get()),
        "content-delta" | "tool-plan-delta" | "tool-call-delta" => {
            let msg = delta.and_then(|d| d.message.get()).unwrap_or_default();
            let text = msg.content.get().and_then(|c| c.text.get());
            if let Some(t) = text.as_ref() {
                resp.content.text(0, t);
            }
            for t in [text, msg.tool_plan.get()].into_iter().flatten() {
                if !t.is_empty() {
                    count_chars(resp, &t);
                    content = true;
                }
            }
        }
        "tool-call-start" => {
            if let Some(call) = delta
                .and_then(|d| d.message.get())
                .and_then(|m| m.tool_calls.get())
            {
                content = add_tool_call(call, resp);
            }
        }
        "message-end" => {
            if let Some(d) = delta {
                if let Some(reason) = d.finish_reason.get() {
                    resp.set_finish_reason(0, &reason);
                }
                if let Some(u) = d.usage.get() {
                    u.apply(resp);
                }
            }
            st.finished = true;
        }
        _ => {}
    }
    FrameOutcome {
        content,
        usage_only: false,
    }
}

/// A delta's `message` for the fast path: `content.text` and `tool_plan` (None: not handled here).
fn fast_message<'a>(r: &mut Reader<'a>) -> Option<(Option<Str<'a>>, Option<Str<'a>>)> {
    let (mut text, mut plan) = (None, None);
    // Arrays would be read as structs in sequence form by serde: not handled here.
    if !r.object_or_null()? {
        return Some((text, plan));
    }
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"content" => {
                once(&mut seen, 1)?;
                if r.object_or_null()? {
                    let (mut seen_part, mut first_key) = (0u32, true);
                    while let Some(key) = r.next_key(first_key)? {
                        first_key = false;
                        if key == b"text" {
                            once(&mut seen_part, 1)?;
                            text = r.str_or_null()?;
                        } else {
                            r.skip()?;
                        }
                    }
                }
            }
            b"tool_plan" => {
                once(&mut seen, 2)?;
                plan = r.str_or_null()?;
            }
            b"tool_calls" => {
                once(&mut seen, 4)?;
                r.skip()?;
            }
            _ => {
                r.skip()?;
            }
        }
    }
    Some((text, plan))
}

/// The fast path for the per-token events (`content-delta`, `tool-plan-delta`, `tool-call-delta`) and
/// the no-op `content-start` / `content-end`, read with the skimmer. Anything else (other types, an
/// escaped or missing `type`, duplicate members, odd types, escapes serde would refuse) returns None and
/// takes the serde path; nothing is applied unless the whole event was read.
pub(crate) fn fast_event(data: &str, resp: &mut Response) -> Option<FrameOutcome> {
    let mut r = Reader::new(data);
    r.begin_object()?;
    let mut kind = None;
    let (mut text, mut plan) = (None, None);
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"type" => {
                once(&mut seen, 1)?;
                kind = r.string()?.plain();
            }
            b"id" => {
                once(&mut seen, 2)?;
                r.skip()?;
            }
            b"delta" => {
                once(&mut seen, 4)?;
                if r.object_or_null()? {
                    let (mut seen_delta, mut first_key) = (0u32, true);
                    while let Some(key) = r.next_key(first_key)? {
                        first_key = false;
                        let bit = match key {
                            b"message" => 1,
                            b"finish_reason" => 2,
                            b"usage" => 4,
                            _ => 0,
                        };
                        if bit != 0 {
                            once(&mut seen_delta, bit)?;
                        }
                        if bit == 1 {
                            (text, plan) = fast_message(&mut r)?;
                        } else {
                            r.skip()?;
                        }
                    }
                }
            }
            _ => {
                r.skip()?;
            }
        }
    }
    if !r.at_end() {
        return None;
    }
    match kind? {
        "content-delta" | "tool-plan-delta" | "tool-call-delta" => {}
        "content-start" | "content-end" => return Some(FrameOutcome::default()),
        _ => return None,
    }
    let capture = resp.content.enabled();
    let text = generated(text, capture)?;
    let plan = generated(plan, capture)?;
    if let Some((_, t)) = &text {
        resp.content.text(0, t);
    }
    let mut content = false;
    for (chars, _) in [text, plan].into_iter().flatten() {
        if chars > 0 {
            resp.output_chars = resp.output_chars.saturating_add(chars);
            content = true;
        }
    }
    Some(FrameOutcome {
        content,
        usage_only: false,
    })
}

/// Cohere's Chat API (v2).
pub struct Cohere;

impl super::Provider for Cohere {
    fn operation(&self, _route: &Route) -> &'static str {
        "chat"
    }

    super::readers!();

    fn max_tokens(&self, _route: &Route) -> Option<MaxTokens> {
        Some(MaxTokens {
            existing: &[&["max_tokens"]],
            default: &["max_tokens"],
        })
    }

    fn error_body(
        &self,
        _refusal: Refusal,
        message: &str,
        _headers: &mut Vec<(String, String)>,
    ) -> Json {
        Json::obj([("message", Json::str(message))])
    }

    fn capture_input(&self, _route: &Route, body: &[u8]) -> Option<Input> {
        capture::read(body, capture::chat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        detect("api.cohere.com", "/v2/chat").unwrap()
    }

    #[test]
    fn detects_only_cohere_hosts() {
        assert_eq!(route().provider, "cohere");
        assert!(detect("api.cohere.ai", "/v2/chat?x=1").is_some());
        assert!(detect("example.com", "/v2/chat").is_none());
        assert!(detect("api.cohere.com", "/v1/chat").is_none());
    }

    #[test]
    fn reads_request() {
        let body = br#"{"model":"command-a-03-2025","stream":true,"max_tokens":300,"temperature":0.3,"k":10,"p":0.75,
          "seed":42,"stop_sequences":["END"],"frequency_penalty":0.1,"presence_penalty":0.2,
          "response_format":{"type":"json_object"},
          "tools":[{"type":"function","function":{"name":"get_weather","parameters":{}}}],
          "messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
        let mut req = Request::default();
        request(&route(), body, &mut req);
        assert_eq!(req.model.as_deref(), Some("command-a-03-2025"));
        assert!(req.stream);
        assert_eq!(req.max_tokens, Some(300));
        assert_eq!(
            (req.top_k, req.top_p, req.seed),
            (Some(10.0), Some(0.75), Some(42))
        );
        assert_eq!(req.stop_sequences, vec!["END"]);
        assert_eq!(
            (req.frequency_penalty, req.presence_penalty),
            (Some(0.1), Some(0.2))
        );
        assert_eq!(req.output_type, Some("json"));
        assert_eq!(req.tool_names, vec!["get_weather"]);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("be brief")));
        assert_eq!(req.prompt_chars, 10);
        let mut req2 = Request::default();
        request(&route(), br#"{"model":5,"k":"x","messages":{}}"#, &mut req2);
        assert_eq!(req2, Request::default());
    }

    #[test]
    fn reads_response_billed_units() {
        let body = br#"{"id":"c-1","finish_reason":"TOOL_CALL","message":{"role":"assistant","tool_plan":"I will",
          "tool_calls":[{"id":"get_weather_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},
          "usage":{"billed_units":{"input_tokens":17,"output_tokens":9},"tokens":{"input_tokens":880,"output_tokens":40}}}"#;
        let mut resp = Response::default();
        response(&route(), body, &mut resp);
        assert_eq!(resp.id.as_deref(), Some("c-1"));
        assert_eq!(resp.finish_reasons, vec!["TOOL_CALL"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(17), Some(9)));
        assert_eq!(resp.tool_calls[0].id, "get_weather_1");
        assert_eq!(resp.model, None);
        let mut resp = Response::default();
        response(&route(), b"[]", &mut resp);
        assert_eq!(resp, Response::default());
    }

    #[test]
    fn stream_events() {
        let r = route();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let evs = [
            r#"{"type":"message-start","id":"c-2","delta":{"message":{"role":"assistant","content":[],"tool_plan":"","tool_calls":[]}}}"#,
            r#"{"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}"#,
            r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello"}}}}"#,
            r#"{"type":"tool-call-start","index":0,"delta":{"message":{"tool_calls":{"id":"t_1","type":"function","function":{"name":"f","arguments":""}}}}}"#,
            r#"garbage"#,
            r#"{"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":3,"output_tokens":5},"tokens":{"input_tokens":70,"output_tokens":5}}}}"#,
        ];
        let content: Vec<bool> = evs
            .iter()
            .map(|d| frame(&r, &Frame::Sse { event: "", data: d }, &mut st, &mut resp).content)
            .collect();
        assert_eq!(content, vec![false, false, true, true, false, false]);
        assert!(st.finished);
        assert_eq!(resp.id.as_deref(), Some("c-2"));
        assert_eq!(resp.finish_reasons, vec!["COMPLETE"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(3), Some(5)));
        assert_eq!(resp.tool_calls.len(), 1);
    }
}
