//! OpenAI Responses API (`POST /v1/responses`; Azure `/openai/v1/responses`). Detection lives in
//! `openai::detect` / `azure::detect`: the path is what tells this shape apart.
//!
//! The Responses API has no finish_reason; one is derived from `status` so that dashboards keyed on
//! `gen_ai.response.finish_reasons` read the same values as for Chat Completions.

use super::common::prompt_hash;
use super::openai::{add_tool_call_once, ErrorBody};
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Request, Response, Route};
use crate::capture;
use crate::codec::json::lenient::{
    items, json_struct, read, Lenient, LenientStr, Read, TextContent,
};
use crate::codec::json::skim::char_count;
use crate::codec::json::skim::{generated, once, Reader};
use crate::codec::json::tape;
use crate::codec::json::Json;
use crate::reply::Refusal;
use crate::stream::Frame;
use std::borrow::Cow;

json_struct! {
    struct ResponsesRequest<'a> {
        model: LenientStr<'a> = "model",
        stream: Lenient<bool> = "stream",
        max_output_tokens: Lenient<u64> = "max_output_tokens",
        temperature: Lenient<f64> = "temperature",
        top_p: Lenient<f64> = "top_p",
        service_tier: Lenient<String> = "service_tier",
        instructions: Lenient<TextContent<'a>> = "instructions",
        input: Lenient<Input> = "input",
        tools: Lenient<Vec<Lenient<RequestTool<'a>>>> = "tools",
        reasoning: Lenient<Reasoning> = "reasoning",
        text: Lenient<TextOptions<'a>> = "text",
    }
}

json_struct! {
    struct RequestTool<'a> {
        kind: LenientStr<'a> = "type",
        name: LenientStr<'a> = "name",
    }
}

json_struct! {
    struct Reasoning {
        effort: Lenient<String> = "effort",
    }
}

json_struct! {
    struct TextOptions<'a> {
        format: Lenient<Format<'a>> = "format",
    }
}

json_struct! {
    struct Format<'a> {
        kind: LenientStr<'a> = "type",
    }
}

/// `input`: a plain string (one user message) or a list of items. Only message items carry prompt text.
#[derive(Default)]
pub(super) struct Input {
    /// (role, text) per message item; a string input is one `user` message.
    pub(super) messages: Vec<(String, String)>,
}

json_struct! {
    pub(super) struct InputItem<'a> {
        role: LenientStr<'a> = "role",
        /// A string or a list of `input_text` parts (`{"type":"input_text","text":…}`).
        content: Lenient<TextContent<'a>> = "content",
    }
}

impl Input {
    pub(super) fn push_items<'a>(&mut self, items: impl Iterator<Item = InputItem<'a>>) {
        for item in items {
            let role = item.role.get().map(Cow::into_owned).unwrap_or_default();
            let content = item
                .content
                .get()
                .map(|c| c.0.into_owned())
                .unwrap_or_default();
            self.messages.push((role, content));
        }
    }
}

impl<'de> Read<'de> for Input {
    /// Text is one user message, a list its items; anything else no input.
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        let mut input = Input::default();
        if let Some(s) = v.str() {
            input.messages.push(("user".to_owned(), s.into_owned()));
            return Some(input);
        }
        let items = v.elements().into_iter().flatten();
        input.push_items(items.filter_map(|item| Lenient::<InputItem<'de>>::read(item)?.get()));
        Some(input)
    }
}

/// Read a Responses request. The system prompt hash covers `instructions` followed by any `system` or
/// `developer` input messages (the two ways the API takes a system prompt), joined as for Chat.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    let Some(r) = read::<ResponsesRequest<'_>>(body) else {
        return;
    };
    req.model = r
        .model
        .get()
        .filter(|m| !m.is_empty())
        .map(Cow::into_owned)
        .or(req.model.take())
        .or_else(|| route.path_model.clone());
    req.stream = r.stream.get().unwrap_or(false);
    req.max_tokens = r.max_output_tokens.get();
    req.temperature = r.temperature.get();
    req.top_p = r.top_p.get();
    req.service_tier = r.service_tier.get();
    req.reasoning_effort = r.reasoning.get().and_then(|x| x.effort.get());
    req.tool_names = items(r.tools)
        // Built-in tools (web_search, file_search, ...) have a type but no name.
        .filter(|t| {
            matches!(
                t.kind.as_ref().map(|k| k.as_ref()),
                Some("function" | "custom")
            )
        })
        .filter_map(|t| t.name.get().map(Cow::into_owned))
        .collect();
    req.output_type = match r
        .text
        .get()
        .and_then(|t| t.format.get())
        .and_then(|f| f.kind.get())
        .as_deref()
    {
        Some("json_schema" | "json_object") => Some("json"),
        Some("text") => Some("text"),
        _ => None,
    };
    let mut system = r
        .instructions
        .get()
        .map(|t| t.0.into_owned())
        .unwrap_or_default();
    let mut chars = char_count(&system);
    for (role, text) in r.input.get().map(|i| i.messages).unwrap_or_default() {
        chars = chars.saturating_add(char_count(&text));
        if matches!(role.as_str(), "system" | "developer") {
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
    /// The response object: a whole body, or the `response` member of a stream event.
    struct ResponseObject<'a> {
        id: LenientStr<'a> = "id",
        model: LenientStr<'a> = "model",
        status: LenientStr<'a> = "status",
        service_tier: LenientStr<'a> = "service_tier",
        incomplete_details: Lenient<IncompleteDetails<'a>> = "incomplete_details",
        /// `{code, message}` on a failed response; `{type, code, message, param}` on an HTTP error body.
        error: Lenient<ErrorBody<'a>> = "error",
        usage: Lenient<ResponsesUsage> = "usage",
        output: Lenient<Vec<Lenient<OutputItem<'a>>>> = "output",
    }
}

json_struct! {
    struct IncompleteDetails<'a> {
        reason: LenientStr<'a> = "reason",
    }
}

json_struct! {
    struct ResponsesUsage {
        input_tokens: Lenient<u64> = "input_tokens",
        output_tokens: Lenient<u64> = "output_tokens",
        input_tokens_details: Lenient<InputDetails> = "input_tokens_details",
        output_tokens_details: Lenient<OutputDetails> = "output_tokens_details",
    }
}

json_struct! {
    struct InputDetails {
        cached_tokens: Lenient<u64> = "cached_tokens",
    }
}

json_struct! {
    struct OutputDetails {
        reasoning_tokens: Lenient<u64> = "reasoning_tokens",
    }
}

impl ResponsesUsage {
    /// As for Chat, cached ⊂ input and reasoning ⊂ output already: copy as is.
    fn apply(self, resp: &mut Response) {
        let u = &mut resp.usage;
        u.input = self.input_tokens.get().or(u.input);
        u.output = self.output_tokens.get().or(u.output);
        if let Some(d) = self.input_tokens_details.get() {
            u.cache_read = d.cached_tokens.get().or(u.cache_read);
        }
        if let Some(d) = self.output_tokens_details.get() {
            u.reasoning = d.reasoning_tokens.get().or(u.reasoning);
        }
    }
}

json_struct! {
    struct OutputItem<'a> {
        kind: LenientStr<'a> = "type",
        call_id: LenientStr<'a> = "call_id",
        name: LenientStr<'a> = "name",
        content: Lenient<Vec<Lenient<OutputPart<'a>>>> = "content",
    }
}

json_struct! {
    struct OutputPart<'a> {
        text: LenientStr<'a> = "text",
        refusal: LenientStr<'a> = "refusal",
    }
}

impl OutputItem<'_> {
    fn is_tool_call(&self) -> bool {
        matches!(
            self.kind.as_ref().map(|k| k.as_ref()),
            Some("function_call" | "custom_tool_call")
        )
    }

    fn record_tool_call(&self, resp: &mut Response) {
        if self.is_tool_call() {
            let id = self.call_id.as_ref().map(|s| s.as_ref()).unwrap_or("");
            let name = self.name.as_ref().map(|s| s.as_ref()).unwrap_or("");
            add_tool_call_once(resp, id, name);
        }
    }
}

/// The finish reason Chat Completions would have reported for this status.
fn finish_reason(
    status: &str,
    incomplete_reason: Option<&str>,
    tool_calls: bool,
) -> Option<String> {
    let reason = match status {
        "completed" if tool_calls => "tool_calls",
        "completed" => "stop",
        "incomplete" => match incomplete_reason.filter(|r| !r.is_empty()) {
            Some("max_output_tokens") => "length",
            Some(other) => other,
            None => "incomplete",
        },
        "failed" => "error",
        "cancelled" => "cancelled",
        // queued / in_progress: not finished yet.
        _ => return None,
    };
    Some(reason.to_owned())
}

/// Fold a response object into `resp`. `count_text` is false for stream terminal events, whose text was
/// already counted from the deltas.
fn apply_object(o: ResponseObject<'_>, resp: &mut Response, count_text: bool) {
    if let Some(v) = o.id.get().filter(|v| !v.is_empty()) {
        resp.id = Some(v.into_owned());
    }
    if let Some(v) = o.model.get().filter(|v| !v.is_empty()) {
        resp.model = Some(v.into_owned());
    }
    if let Some(v) = o.service_tier.get().filter(|v| !v.is_empty()) {
        resp.service_tier = Some(v.into_owned());
    }
    if let Some(u) = o.usage.get() {
        u.apply(resp);
    }
    let status = o.status.get();
    if let Some(e) = o.error.get() {
        resp.error_type = e.error_type().or_else(|| Some("_OTHER".to_owned()));
    } else if status.as_deref() == Some("failed") {
        resp.error_type = Some("_OTHER".to_owned());
    }
    let mut tool_calls = false;
    for item in items(o.output) {
        tool_calls |= item.is_tool_call();
        item.record_tool_call(resp);
        if count_text {
            for part in items(item.content) {
                for text in [part.text.get(), part.refusal.get()].into_iter().flatten() {
                    resp.output_chars = resp.output_chars.saturating_add(char_count(&text));
                    resp.content.text(0, &text);
                }
            }
        }
    }
    let reason = o.incomplete_details.get().and_then(|d| d.reason.get());
    if let Some(r) = status
        .as_deref()
        .and_then(|s| finish_reason(s, reason.as_deref(), tool_calls))
    {
        resp.set_finish_reason(0, &r);
    }
}

/// Read a whole Responses body or an error body.
pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    if let Some(o) = read::<ResponseObject<'_>>(body) {
        apply_object(o, resp, true);
    }
}

json_struct! {
    /// One streamed event: `event: <type>` + `data: {"type":<type>, "sequence_number":…, …}`.
    struct Event<'a> {
        kind: LenientStr<'a> = "type",
        response: Lenient<ResponseObject<'a>> = "response",
        delta: LenientStr<'a> = "delta",
        item: Lenient<OutputItem<'a>> = "item",
        /// The `error` event: `{"type":"error","code":…,"message":…,"param":…}`.
        code: LenientStr<'a> = "code",
        /// Some gateways nest it: `{"type":"error","error":{"type":…,"code":…}}`.
        error: Lenient<ErrorBody<'a>> = "error",
    }
}

/// The fast path for the delta events.
pub fn fast_frame(
    _route: &Route,
    frame: &Frame<'_>,
    _st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    super::common::frame_text(frame).and_then(|t| fast_event(t, resp))
}

/// Read one streamed event. The terminal events carry the full response object (usage, status, output).
/// OpenAI sends no `[DONE]`; some gateways append one: it ends the stream too.
pub fn frame(
    _route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    let (name, data) = match frame {
        Frame::Sse { event, data } => (*event, data.as_bytes()),
        Frame::Json(bytes) => ("", *bytes),
        Frame::Aws { .. } => return FrameOutcome::default(),
    };
    if data.trim_ascii() == b"[DONE]" {
        st.finished = true;
        return FrameOutcome::default();
    }
    let Some(ev) = read::<Event<'_>>(data) else {
        return FrameOutcome::default();
    };
    // The data's `type` is authoritative; the SSE event name is the fallback.
    let kind = ev.kind.get().unwrap_or(Cow::Borrowed(name));
    let mut out = FrameOutcome::default();
    match kind.as_ref() {
        "response.output_text.delta"
        | "response.refusal.delta"
        | "response.function_call_arguments.delta" => {
            if let Some(delta) = ev.delta.get().filter(|d| !d.is_empty()) {
                if kind != "response.function_call_arguments.delta" {
                    resp.output_chars = resp.output_chars.saturating_add(char_count(&delta));
                    resp.content.text(0, &delta);
                } else {
                    resp.content.tool_arguments(0, &delta);
                }
                out.content = true;
            }
        }
        "response.output_item.added" | "response.output_item.done" => {
            if let Some(item) = ev.item.get() {
                item.record_tool_call(resp);
            }
        }
        "response.completed" | "response.incomplete" | "response.failed" => {
            if let Some(o) = ev.response.get() {
                apply_object(o, resp, false);
            }
            st.finished = true;
        }
        "error" => {
            resp.error_type = ev
                .code
                .get()
                .filter(|c| !c.is_empty())
                .map(Cow::into_owned)
                .or_else(|| ev.error.get().and_then(|e| e.error_type()))
                .or_else(|| Some("_OTHER".to_owned()));
        }
        // response.created / in_progress / queued and anything new: id and model, when present.
        _ => {
            if let Some(o) = ev.response.get() {
                apply_object(o, resp, false);
            }
        }
    }
    out
}

/// The fast path for the per-token events (`response.output_text.delta`, `response.refusal.delta`,
/// `response.function_call_arguments.delta`), read with the skimmer. Anything else (other types, an
/// escaped or missing `type`, duplicate members, a `delta` that is not a string, escapes serde would
/// refuse) returns None and takes the serde path; nothing is applied unless the whole event was read.
pub(crate) fn fast_event(data: &str, resp: &mut Response) -> Option<FrameOutcome> {
    let mut r = Reader::new(data);
    r.begin_object()?;
    let (mut kind, mut delta) = (None, None);
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"type" => {
                once(&mut seen, 1)?;
                kind = r.string()?.plain();
            }
            b"delta" => {
                once(&mut seen, 2)?;
                delta = r.str_or_null()?;
            }
            // Lenient members the serde path reads but ignores for these types (duplicates fail it).
            b"response" | b"item" | b"code" | b"error" => {
                let bit = match key {
                    b"response" => 4,
                    b"item" => 8,
                    b"code" => 16,
                    _ => 32,
                };
                once(&mut seen, bit)?;
                r.skip()?;
            }
            _ => {
                r.skip()?;
            }
        }
    }
    if !r.at_end() {
        return None;
    }
    let text = match kind? {
        "response.output_text.delta" | "response.refusal.delta" => true,
        "response.function_call_arguments.delta" => false,
        _ => return None,
    };
    let Some((chars, delta)) = generated(delta, resp.content.enabled())? else {
        return Some(FrameOutcome::default());
    };
    if chars == 0 {
        return Some(FrameOutcome::default());
    }
    if text {
        resp.output_chars = resp.output_chars.saturating_add(chars);
        resp.content.text(0, &delta);
    } else {
        resp.content.tool_arguments(0, &delta);
    }
    Some(FrameOutcome {
        content: true,
        usage_only: false,
    })
}

/// OpenAI's Responses API.
pub struct Responses;

impl super::Provider for Responses {
    fn operation(&self, _route: &Route) -> &'static str {
        "chat"
    }

    super::readers!();

    fn max_tokens(&self, _route: &Route) -> Option<MaxTokens> {
        Some(MaxTokens {
            existing: &[&["max_output_tokens"]],
            default: &["max_output_tokens"],
        })
    }

    fn error_body(
        &self,
        refusal: Refusal,
        message: &str,
        _headers: &mut Vec<(String, String)>,
    ) -> Json {
        super::openai::error_body(refusal, message)
    }

    /// `instructions` and `input`: a string, or items that are chat messages (with a `role`) or typed
    /// items (function calls and their outputs).
    fn capture_input(&self, _route: &Route, body: &[u8]) -> Option<capture::Input> {
        capture::read(body, |v, inp| {
            capture::system_parts(capture::get(v, "instructions"), &mut inp.system);
            let input = capture::get(v, "input");
            if let Some(s) = input.and_then(|i| i.str()) {
                inp.messages
                    .push(capture::message("user", vec![capture::text_part(&s)], None));
            }
            for item in input.and_then(|i| i.elements()).into_iter().flatten() {
                if capture::get(item, "role").is_some() {
                    inp.messages.extend(capture::chat_message(item));
                } else if let Some(kind) = capture::get_str(item, "type") {
                    let mut parts = Vec::new();
                    capture::block_part(&kind, item, &mut parts);
                    let role = if kind == "function_call_output" {
                        "tool"
                    } else {
                        "assistant"
                    };
                    inp.messages.push(capture::message(role, parts, None));
                }
            }
        })
    }

    fn openai_api_type(&self, _route: &Route) -> Option<&'static str> {
        Some("responses")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::Api;

    fn route() -> Route {
        Route {
            api: Api::OpenAiResponses,
            provider: "openai".into(),
            path_model: None,
            path_stream: false,
        }
    }

    fn run(events: &[(&str, &str)]) -> (Response, StreamState, Vec<FrameOutcome>) {
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let outs = events
            .iter()
            .map(|(e, d)| {
                frame(
                    &route(),
                    &Frame::Sse { event: e, data: d },
                    &mut st,
                    &mut resp,
                )
            })
            .collect();
        (resp, st, outs)
    }

    #[test]
    fn reads_request() {
        let body = br#"{"model":"o4-mini","instructions":"Be terse.","stream":true,"max_output_tokens":300,
            "temperature":0.5,"top_p":0.8,"service_tier":"flex","reasoning":{"effort":"high","summary":"auto"},
            "text":{"format":{"type":"json_schema","name":"x","schema":{}}},
            "tools":[{"type":"function","name":"get_weather","parameters":{}},{"type":"web_search"}],
            "input":[{"role":"developer","content":"No emojis."},
                     {"role":"user","content":[{"type":"input_text","text":"hi"},{"type":"input_image","image_url":"x"}]},
                     {"type":"function_call_output","call_id":"c","output":"{}"}]}"#;
        let mut req = Request::default();
        request(&route(), body, &mut req);
        assert_eq!(req.model.as_deref(), Some("o4-mini"));
        assert!(req.stream);
        assert_eq!(req.max_tokens, Some(300));
        assert_eq!((req.temperature, req.top_p), (Some(0.5), Some(0.8)));
        assert_eq!(req.service_tier.as_deref(), Some("flex"));
        assert_eq!(req.reasoning_effort.as_deref(), Some("high"));
        assert_eq!(req.output_type, Some("json"));
        assert_eq!(req.tool_names, vec!["get_weather"]);
        assert_eq!(
            req.system_prompt_hash.as_deref(),
            Some(prompt_hash("Be terse.\nNo emojis.").as_str())
        );
        assert_eq!(req.prompt_chars, 9 + 10 + 2);
    }

    #[test]
    fn string_input_and_odd_types() {
        let mut req = Request::default();
        request(
            &route(),
            br#"{"model":"gpt-4.1","input":"Tell me a joke"}"#,
            &mut req,
        );
        assert_eq!(req.prompt_chars, 14);
        assert_eq!(req.system_prompt_hash, None);
        assert!(!req.stream);
        let mut req = Request::default();
        request(
            &route(),
            br#"{"model":["x"],"input":7,"tools":"all","reasoning":"high","text":{"format":"json"},"instructions":null}"#,
            &mut req,
        );
        assert_eq!(req, Request::default());
        request(&route(), b"\x00", &mut req);
        assert_eq!(req, Request::default());
    }

    const COMPLETED: &str = r#"{"id":"resp_1","object":"response","status":"completed","model":"gpt-4.1-2025-04-14",
        "service_tier":"default","incomplete_details":null,"error":null,
        "output":[{"type":"reasoning","id":"rs_1","summary":[]},
                  {"type":"message","id":"msg_1","role":"assistant","status":"completed","content":[{"type":"output_text","text":"Hello!","annotations":[]}]}],
        "usage":{"input_tokens":36,"input_tokens_details":{"cached_tokens":8},"output_tokens":87,"output_tokens_details":{"reasoning_tokens":64},"total_tokens":123}}"#;

    #[test]
    fn reads_response() {
        let mut resp = Response::default();
        response(&route(), COMPLETED.as_bytes(), &mut resp);
        assert_eq!(resp.id.as_deref(), Some("resp_1"));
        assert_eq!(resp.model.as_deref(), Some("gpt-4.1-2025-04-14"));
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!(resp.usage.input, Some(36));
        assert_eq!(resp.usage.cache_read, Some(8));
        assert_eq!(resp.usage.output, Some(87));
        assert_eq!(resp.usage.reasoning, Some(64));
        assert_eq!(resp.output_chars, 6);
        assert_eq!(resp.service_tier.as_deref(), Some("default"));
        assert_eq!(resp.error_type, None);
    }

    #[test]
    fn derives_finish_reasons() {
        let one = |body: &str| {
            let mut resp = Response::default();
            response(&route(), body.as_bytes(), &mut resp);
            resp
        };
        let r = one(
            r#"{"id":"resp_2","status":"completed","output":[{"type":"function_call","id":"fc_1","call_id":"call_1","name":"get_weather","arguments":"{}","status":"completed"}]}"#,
        );
        assert_eq!(r.finish_reasons, vec!["tool_calls"]);
        assert_eq!(r.tool_calls[0].id, "call_1");
        assert_eq!(r.tool_calls[0].name, "get_weather");
        let r =
            one(r#"{"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}}"#);
        assert_eq!(r.finish_reasons, vec!["length"]);
        let r = one(r#"{"status":"incomplete","incomplete_details":{"reason":"content_filter"}}"#);
        assert_eq!(r.finish_reasons, vec!["content_filter"]);
        let r = one(r#"{"status":"failed","error":{"code":"server_error","message":"boom"}}"#);
        assert_eq!(r.finish_reasons, vec!["error"]);
        assert_eq!(r.error_type.as_deref(), Some("server_error"));
        let r = one(r#"{"status":"in_progress"}"#);
        assert!(r.finish_reasons.is_empty());
        let r = one(
            r#"{"error":{"message":"Rate limit reached","type":"tokens","code":"rate_limit_exceeded"}}"#,
        );
        assert_eq!(r.error_type.as_deref(), Some("rate_limit_exceeded"));
        let r = one(r#"{"status":7,"output":{"a":1},"usage":{"input_tokens":"many"}}"#);
        assert_eq!(r, Response::default());
    }

    #[test]
    fn stream_text() {
        let completed = format!(
            r#"{{"type":"response.completed","sequence_number":9,"response":{COMPLETED}}}"#
        );
        let (resp, st, outs) = run(&[
            (
                "response.created",
                r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_1","object":"response","status":"in_progress","model":"gpt-4.1-2025-04-14","output":[],"usage":null}}"#,
            ),
            (
                "response.in_progress",
                r#"{"type":"response.in_progress","sequence_number":1,"response":{"id":"resp_1","status":"in_progress","usage":null}}"#,
            ),
            (
                "response.output_item.added",
                r#"{"type":"response.output_item.added","sequence_number":2,"output_index":0,"item":{"id":"msg_1","type":"message","status":"in_progress","role":"assistant","content":[]}}"#,
            ),
            (
                "response.content_part.added",
                r#"{"type":"response.content_part.added","sequence_number":3,"item_id":"msg_1","output_index":0,"content_index":0,"part":{"type":"output_text","text":"","annotations":[]}}"#,
            ),
            (
                "response.output_text.delta",
                r#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hello"}"#,
            ),
            (
                "response.output_text.delta",
                r#"{"type":"response.output_text.delta","sequence_number":5,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"!"}"#,
            ),
            (
                "response.output_text.done",
                r#"{"type":"response.output_text.done","sequence_number":6,"item_id":"msg_1","output_index":0,"content_index":0,"text":"Hello!"}"#,
            ),
            ("response.completed", &completed),
        ]);
        let first = outs.iter().position(|o| o.content);
        assert_eq!(first, Some(4));
        assert!(st.finished);
        assert_eq!(resp.id.as_deref(), Some("resp_1"));
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(36), Some(87)));
        assert_eq!(
            resp.output_chars, 6,
            "deltas counted once, not again at the end"
        );
        assert!(outs.iter().all(|o| !o.usage_only));
    }

    #[test]
    fn stream_tool_call_incomplete_error_done() {
        let (resp, st, outs) = run(&[
            (
                "",
                r#"{"type":"response.output_item.added","item":{"type":"function_call","id":"fc_1","call_id":"call_9","name":"lookup","arguments":""}}"#,
            ),
            (
                "",
                r#"{"type":"response.function_call_arguments.delta","item_id":"fc_1","delta":"{\"q\""}"#,
            ),
            (
                "",
                r#"{"type":"response.output_item.done","item":{"type":"function_call","id":"fc_1","call_id":"call_9","name":"lookup","arguments":"{\"q\":1}"}}"#,
            ),
            (
                "",
                r#"{"type":"response.incomplete","response":{"id":"resp_3","status":"incomplete","incomplete_details":{"reason":"max_output_tokens"},"output":[{"type":"function_call","call_id":"call_9","name":"lookup"}],"usage":{"input_tokens":5,"output_tokens":16}}}"#,
            ),
            ("", "[DONE]"),
        ]);
        assert!(outs[1].content);
        assert!(st.finished);
        assert_eq!(resp.tool_calls.len(), 1);
        assert_eq!(resp.finish_reasons, vec!["length"]);
        assert_eq!(resp.usage.output, Some(16));
        // The error event, named only by the SSE event line in a variant without `type`.
        let (resp, st, _) = run(&[(
            "error",
            r#"{"code":"rate_limit_exceeded","message":"slow down","param":null,"sequence_number":1}"#,
        )]);
        assert_eq!(resp.error_type.as_deref(), Some("rate_limit_exceeded"));
        assert!(!st.finished);
        let (resp, _, _) = run(&[("", r#"{"type":"error","message":"?"}"#)]);
        assert_eq!(resp.error_type.as_deref(), Some("_OTHER"));
        let (resp, st, outs) = run(&[("", "{"), ("", "null"), ("", r#"{"type":1,"delta":2}"#)]);
        assert_eq!(resp, Response::default());
        assert!(!st.finished && outs.iter().all(|o| !o.content));
    }
}
