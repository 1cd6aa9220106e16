//! Anthropic Messages (`POST /v1/messages`), also served by Vertex AI
//! (`…/publishers/anthropic/models/{model}:rawPredict|streamRawPredict`) and, with the same bodies, by
//! Bedrock InvokeModel for Claude (see `bedrock.rs`, which reuses `request`, `response` and `event`).

use super::common::{count_chars, prompt_hash, set_if_nonempty, Named};
use super::template::Sink;
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::capture::{self, Input};
use crate::codec::json::lenient::{
    items, json_struct, read, Lenient, LenientStr, OneOrMany, TextContent,
};
use crate::codec::json::skim::{generated, once, Reader, Str};
use crate::codec::json::Json;
use crate::reply::Refusal;
use crate::stream::Frame;
use std::borrow::Cow;

pub fn detect(host: &str, path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or("");
    if let Some((prefix, method)) = path.rsplit_once(':') {
        // Vertex AI partner model: the model is only in the path, the body carries `anthropic_version`.
        let stream = match method {
            "rawPredict" => false,
            "streamRawPredict" => true,
            _ => return None,
        };
        let (_, model) = prefix.split_once("/publishers/anthropic/models/")?;
        if model.is_empty() || model.contains('/') {
            return None;
        }
        return Some(Route {
            api: Api::AnthropicMessages,
            provider: "gcp.vertex_ai".to_owned(),
            path_model: Some(super::gemini::percent_decode(model)),
            path_stream: stream,
        });
    }
    // `/v1/messages` on any host: api.anthropic.com or an Anthropic-compatible server.
    // (`/v1/messages/count_tokens` and batches do not end with it.)
    if !path.ends_with("/v1/messages") {
        return None;
    }
    let _ = host;
    Some(Route {
        api: Api::AnthropicMessages,
        provider: "anthropic".to_owned(),
        path_model: None,
        path_stream: false,
    })
}

json_struct! {
    struct MessagesRequest<'a> {
        model: LenientStr<'a> = "model",
        max_tokens: Lenient<u64> = "max_tokens",
        temperature: Lenient<f64> = "temperature",
        top_p: Lenient<f64> = "top_p",
        top_k: Lenient<f64> = "top_k",
        stop_sequences: Lenient<OneOrMany> = "stop_sequences",
        stream: Lenient<bool> = "stream",
        tools: Lenient<Vec<Lenient<Named<'a>>>> = "tools",
        system: Lenient<TextContent<'a>> = "system",
        messages: Lenient<Vec<Lenient<Message<'a>>>> = "messages",
        thinking: Lenient<Thinking<'a>> = "thinking",
        output_config: Lenient<OutputConfig<'a>> = "output_config",
    }
}

json_struct! {
    struct Message<'a> {
        content: Lenient<TextContent<'a>> = "content",
    }
}

json_struct! {
    struct Thinking<'a> {
        kind: LenientStr<'a> = "type",
    }
}

json_struct! {
    struct OutputConfig<'a> {
        effort: LenientStr<'a> = "effort",
    }
}

/// Read a Messages request. On Vertex (and Bedrock) the model and the stream flag come from the URL; a
/// model named in the body still wins.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    if req.model.is_none() {
        req.model.clone_from(&route.path_model);
    }
    req.stream = route.path_stream;
    let Some(r) = read::<MessagesRequest<'_>>(body) else {
        return;
    };
    req.model = r.model.get().map(Cow::into_owned).or(req.model.take());
    req.stream = r.stream.get().unwrap_or(false) || route.path_stream;
    req.max_tokens = r.max_tokens.get();
    req.temperature = r.temperature.get();
    req.top_p = r.top_p.get();
    req.top_k = r.top_k.get();
    req.stop_sequences = r.stop_sequences.get().map(|s| s.0).unwrap_or_default();
    req.tool_names = r
        .tools
        .get()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.get()?.name.get().map(Cow::into_owned))
        .collect();
    // Anthropic has no `reasoning_effort`; `output_config.effort` is the closest, else the thinking mode
    // (`enabled` / `adaptive`) says at least that extended thinking was asked for.
    req.reasoning_effort = r
        .output_config
        .get()
        .and_then(|o| o.effort.get())
        .or_else(|| {
            r.thinking
                .get()
                .and_then(|t| t.kind.get())
                .filter(|k| k != "disabled")
        })
        .map(Cow::into_owned);
    let system = r.system.get().map(|s| s.0).unwrap_or_default();
    let mut chars = system.chars().count() as u64;
    for m in items(r.messages) {
        let text = m.content.get().map(|c| c.0).unwrap_or_default();
        chars = chars.saturating_add(text.chars().count() as u64);
    }
    req.prompt_chars = chars;
    if !system.is_empty() {
        req.system_prompt_hash = Some(prompt_hash(&system));
    }
}

json_struct! {
    struct WireUsage {
        input_tokens: Lenient<u64> = "input_tokens",
        output_tokens: Lenient<u64> = "output_tokens",
        cache_creation_input_tokens: Lenient<u64> = "cache_creation_input_tokens",
        cache_read_input_tokens: Lenient<u64> = "cache_read_input_tokens",
        output_tokens_details: Lenient<OutputDetails> = "output_tokens_details",
    }
}

json_struct! {
    struct OutputDetails {
        thinking_tokens: Lenient<u64> = "thinking_tokens",
    }
}

impl WireUsage {
    /// Anthropic's `input_tokens` EXCLUDES cache reads and writes; semconv input includes them, so
    /// input = input_tokens + cache_creation + cache_read. Counts are cumulative (message_start, then each
    /// message_delta repeats the totals so far): every field present overwrites, nothing is added up.
    /// A field a later event leaves out keeps its earlier value, so the raw (uncached) input is recovered
    /// from the stored sum before recomputing it.
    fn apply(self, resp: &mut Response) {
        let u = &mut resp.usage;
        let old_read = u.cache_read.unwrap_or(0);
        let old_write = u.cache_write.unwrap_or(0);
        let old_raw = u
            .input
            .map(|i| i.saturating_sub(old_read).saturating_sub(old_write));
        let raw = self.input_tokens.get().or(old_raw);
        let read = self.cache_read_input_tokens.get().or(u.cache_read);
        let write = self.cache_creation_input_tokens.get().or(u.cache_write);
        if raw.is_some() || read.is_some() || write.is_some() {
            u.input = Some(
                raw.unwrap_or(0)
                    .saturating_add(read.unwrap_or(0))
                    .saturating_add(write.unwrap_or(0)),
            );
        }
        u.cache_read = read;
        u.cache_write = write;
        u.output = self.output_tokens.get().or(u.output);
        if let Some(d) = self.output_tokens_details.get() {
            u.reasoning = d.thinking_tokens.get().or(u.reasoning);
        }
    }
}

json_struct! {
    struct MessageBody<'a> {
        kind: LenientStr<'a> = "type",
        id: LenientStr<'a> = "id",
        model: LenientStr<'a> = "model",
        content: Lenient<Vec<Lenient<Block<'a>>>> = "content",
        stop_reason: LenientStr<'a> = "stop_reason",
        usage: Lenient<WireUsage> = "usage",
        error: Lenient<ErrorBody<'a>> = "error",
    }
}

json_struct! {
    struct Block<'a> {
        kind: LenientStr<'a> = "type",
        id: LenientStr<'a> = "id",
        name: LenientStr<'a> = "name",
        text: LenientStr<'a> = "text",
        thinking: LenientStr<'a> = "thinking",
    }
}

json_struct! {
    struct ErrorBody<'a> {
        kind: LenientStr<'a> = "type",
    }
}

fn apply_error(e: Option<ErrorBody<'_>>, resp: &mut Response) {
    if let Some(e) = e {
        resp.error_type = Some(
            e.kind
                .get()
                .filter(|k| !k.is_empty())
                .map_or_else(|| "_OTHER".to_owned(), Cow::into_owned),
        );
    }
}

/// Fold a whole message (a response body or `message_start.message`) into `resp`.
fn apply_message(m: MessageBody<'_>, resp: &mut Response) {
    set_if_nonempty(&mut resp.id, m.id.get());
    set_if_nonempty(&mut resp.model, m.model.get());
    if let Some(reason) = m.stop_reason.get() {
        resp.set_finish_reason(0, &reason);
    }
    if let Some(u) = m.usage.get() {
        u.apply(resp);
    }
    if m.kind.as_ref().is_some_and(|k| k == "error") || m.error.as_ref().is_some() {
        apply_error(Some(m.error.get().unwrap_or_default()), resp);
    }
    for block in items(m.content) {
        apply_block_start(block, resp);
    }
}

/// A content block (whole, or as announced by `content_block_start`). Returns whether it is generated
/// content: a tool call's name is the model's first output for that block, as OpenAI's first tool-call
/// fragment is.
fn apply_block_start(b: Block<'_>, resp: &mut Response) -> bool {
    let mut content = false;
    if matches!(
        b.kind.as_ref().map(|k| k.as_ref()),
        Some("tool_use" | "server_tool_use" | "mcp_tool_use")
    ) {
        let id = b.id.get().unwrap_or_default();
        let name = b.name.get().unwrap_or_default();
        if !id.is_empty() || !name.is_empty() {
            resp.add_tool_call(&id, &name);
            content = true;
        }
    }
    if let Some(t) = b.text.as_ref() {
        resp.content.text(0, t);
    }
    for text in [b.text.get(), b.thinking.get()].into_iter().flatten() {
        if !text.is_empty() {
            count_chars(resp, &text);
            content = true;
        }
    }
    content
}

pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    if let Some(m) = read::<MessageBody<'_>>(body) {
        apply_message(m, resp);
    }
}

json_struct! {
    struct StreamEvent<'a> {
        kind: LenientStr<'a> = "type",
        message: Lenient<MessageBody<'a>> = "message",
        content_block: Lenient<Block<'a>> = "content_block",
        delta: Lenient<Delta<'a>> = "delta",
        usage: Lenient<WireUsage> = "usage",
        error: Lenient<ErrorBody<'a>> = "error",
    }
}

json_struct! {
    struct Delta<'a> {
        text: LenientStr<'a> = "text",
        partial_json: LenientStr<'a> = "partial_json",
        thinking: LenientStr<'a> = "thinking",
        stop_reason: LenientStr<'a> = "stop_reason",
    }
}

/// One Messages stream event (the JSON `data` of an SSE event, or a decoded Bedrock chunk): the fast path
/// for the per-token events, else the general reader; the flag says whether the fast path read it. The
/// `type` field inside the data decides; the SSE `event:` name is redundant.
pub(crate) fn event(
    data: &[u8],
    st: &mut StreamState,
    resp: &mut Response,
) -> (FrameOutcome, bool) {
    if let Some(out) = std::str::from_utf8(data)
        .ok()
        .and_then(|t| fast_event(t, resp))
    {
        return (out, true);
    }
    (read_event(data, st, resp), false)
}

/// The general reader of every event.
pub(crate) fn read_event(data: &[u8], st: &mut StreamState, resp: &mut Response) -> FrameOutcome {
    let Some(ev) = read::<StreamEvent<'_>>(data) else {
        return FrameOutcome::default();
    };
    let mut content = false;
    match ev.kind.as_ref().map(|k| k.as_ref()).unwrap_or("") {
        "message_start" => {
            if let Some(m) = ev.message.get() {
                apply_message(m, resp);
            }
        }
        "content_block_start" => {
            if let Some(b) = ev.content_block.get() {
                content = apply_block_start(b, resp);
            }
        }
        "content_block_delta" => {
            if let Some(d) = ev.delta.get() {
                if let Some(t) = d.text.as_ref() {
                    resp.content.text(0, t);
                }
                if let Some(j) = d.partial_json.as_ref() {
                    resp.content.tool_arguments(0, j);
                }
                for text in [d.text.get(), d.partial_json.get(), d.thinking.get()]
                    .into_iter()
                    .flatten()
                {
                    if !text.is_empty() {
                        count_chars(resp, &text);
                        content = true;
                    }
                }
            }
        }
        "message_delta" => {
            if let Some(reason) = ev.delta.get().and_then(|d| d.stop_reason.get()) {
                resp.set_finish_reason(0, &reason);
            }
            if let Some(u) = ev.usage.get() {
                u.apply(resp);
            }
        }
        "message_stop" => st.finished = true,
        "error" => {
            // `overloaded_error` and friends end the stream: nothing follows the error event.
            apply_error(Some(ev.error.get().unwrap_or_default()), resp);
            st.finished = true;
        }
        // ping, content_block_stop and event types added later carry nothing we read.
        _ => {}
    }
    FrameOutcome {
        content,
        usage_only: false,
    }
}

/// `event: ping` (its data is `{"type": "ping"}`), which Anthropic sends to keep a stream alive.
pub fn is_ping(frame: &Frame<'_>) -> bool {
    match frame {
        Frame::Sse { event, data } => {
            let compact = data.bytes().filter(|b| !b.is_ascii_whitespace());
            *event == "ping"
                || (event.is_empty() && compact.eq(br#"{"type":"ping"}"#.iter().copied()))
        }
        _ => false,
    }
}

/// The fast path for the per-token events; a repeated one leaves a template (`template.rs`).
pub fn fast_frame(
    _route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    match frame {
        Frame::Sse { data, .. } => {
            let (out, repeat) = fast_event_with(data, resp)?;
            if let Some((s, sink)) = repeat {
                st.template.record(frame, data, s, sink);
            }
            Some(out)
        }
        Frame::Json(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|t| fast_event(t, resp)),
        Frame::Aws { .. } => None,
    }
}

pub fn frame(
    _route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    match frame {
        Frame::Sse { data, .. } => read_event(data.as_bytes(), st, resp),
        Frame::Json(bytes) => read_event(bytes, st, resp),
        Frame::Aws { .. } => FrameOutcome::default(),
    }
}

/// What the fast path keeps of a `content_block_delta`'s `delta`.
#[derive(Clone, Copy, Default)]
struct FastDelta<'a> {
    text: Option<Str<'a>>,
    partial_json: Option<Str<'a>>,
    thinking: Option<Str<'a>>,
}

fn fast_delta<'a>(r: &mut Reader<'a>) -> Option<FastDelta<'a>> {
    let mut d = FastDelta::default();
    // An array would be read as a struct in sequence form by serde: not handled here.
    if !r.object_or_null()? {
        return Some(d);
    }
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"text" => {
                once(&mut seen, 1)?;
                d.text = r.str_or_null()?;
            }
            b"partial_json" => {
                once(&mut seen, 2)?;
                d.partial_json = r.str_or_null()?;
            }
            b"thinking" => {
                once(&mut seen, 4)?;
                d.thinking = r.str_or_null()?;
            }
            b"stop_reason" => {
                once(&mut seen, 8)?;
                r.skip()?;
            }
            _ => {
                r.skip()?;
            }
        }
    }
    Some(d)
}

/// The fast path for the per-token event, `content_block_delta` (text, thinking or tool-argument deltas),
/// and the no-op `ping` and `content_block_stop`: read with the skimmer, without the serde structs.
/// Anything else (other event types, an escaped or missing `type`, duplicate members, odd types, Bedrock's
/// metering member, escapes serde would refuse) returns None and takes the serde path; nothing is applied
/// unless the whole event was read, so the result is always the serde path's.
pub(crate) fn fast_event(data: &str, resp: &mut Response) -> Option<FrameOutcome> {
    fast_event_with(data, resp).map(|(out, _)| out)
}

/// `fast_event`, and for a delta with one string (text, tool arguments or thinking) that string and where it
/// goes: a template for the next deltas.
fn fast_event_with<'a>(
    data: &'a str,
    resp: &mut Response,
) -> Option<(FrameOutcome, Option<(Str<'a>, Sink)>)> {
    let mut r = Reader::new(data);
    r.begin_object()?;
    let mut kind = None;
    let mut delta = FastDelta::default();
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
                delta = fast_delta(&mut r)?;
            }
            // Lenient members the serde path reads but ignores for these types (duplicates fail it).
            b"message" => {
                once(&mut seen, 4)?;
                r.skip()?;
            }
            b"content_block" => {
                once(&mut seen, 8)?;
                r.skip()?;
            }
            b"usage" => {
                once(&mut seen, 16)?;
                r.skip()?;
            }
            b"error" => {
                once(&mut seen, 32)?;
                r.skip()?;
            }
            // Bedrock appends its metering to an event; `bedrock.rs` reads it with serde.
            b"amazon-bedrock-invocationMetrics" => return None,
            _ => {
                r.skip()?;
            }
        }
    }
    if !r.at_end() {
        return None;
    }
    match kind? {
        "content_block_delta" => {}
        "ping" | "content_block_stop" => return Some((FrameOutcome::default(), None)),
        _ => return None,
    }
    let repeat = match (delta.text, delta.partial_json, delta.thinking) {
        (Some(s), None, None) => Some((s, Sink::Text(0))),
        (None, Some(s), None) => Some((s, Sink::ToolArguments(0))),
        (None, None, Some(s)) => Some((s, Sink::Count)),
        _ => None,
    };
    // Check every string before anything is applied (escapes serde would refuse).
    let capture = resp.content.enabled();
    let text = generated(delta.text, capture)?;
    let partial = generated(delta.partial_json, capture)?;
    let thinking = generated(delta.thinking, capture)?;
    // Applied in `read_event`'s order.
    if let Some((_, t)) = &text {
        resp.content.text(0, t);
    }
    if let Some((_, j)) = &partial {
        resp.content.tool_arguments(0, j);
    }
    let mut content = false;
    for (chars, _) in [text, partial, thinking].into_iter().flatten() {
        if chars > 0 {
            resp.output_chars = resp.output_chars.saturating_add(chars);
            content = true;
        }
    }
    let out = FrameOutcome {
        content,
        usage_only: false,
    };
    Some((out, repeat))
}

/// Anthropic's Messages API (direct, on Vertex AI, and the Claude models on Bedrock InvokeModel).
pub struct Anthropic;

impl super::Provider for Anthropic {
    fn operation(&self, _route: &Route) -> &'static str {
        "chat"
    }

    super::readers!();

    fn is_keepalive(&self, f: &Frame<'_>) -> bool {
        is_ping(f)
    }

    fn max_tokens(&self, _route: &Route) -> Option<MaxTokens> {
        Some(MaxTokens {
            existing: &[&["max_tokens"]],
            default: &["max_tokens"],
        })
    }

    /// Anthropic's SDKs read `error.type`: 429 is `rate_limit_error`, 413 `request_too_large`, 400
    /// `invalid_request_error`.
    fn error_body(
        &self,
        refusal: Refusal,
        message: &str,
        _headers: &mut Vec<(String, String)>,
    ) -> Json {
        let kind = match refusal {
            Refusal::BudgetExceeded => "rate_limit_error",
            Refusal::TooLarge => "request_too_large",
            Refusal::ContentBlocked | Refusal::SignedRequest => "invalid_request_error",
        };
        Json::obj([
            ("type", Json::str("error")),
            (
                "error",
                Json::obj([("type", Json::str(kind)), ("message", Json::str(message))]),
            ),
        ])
    }

    fn capture_input(&self, _route: &Route, body: &[u8]) -> Option<Input> {
        capture::read(body, capture::blocks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        detect("api.anthropic.com", "/v1/messages").unwrap()
    }

    fn run(events: &[&str]) -> (StreamState, Response, Vec<bool>) {
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let r = route();
        let outs = events
            .iter()
            .map(|d| frame(&r, &Frame::Sse { event: "", data: d }, &mut st, &mut resp).content)
            .collect();
        (st, resp, outs)
    }

    #[test]
    fn detects_direct_and_vertex() {
        let r = route();
        assert_eq!(
            (r.api, r.provider.as_str()),
            (Api::AnthropicMessages, "anthropic")
        );
        let r = detect(
            "us-east5-aiplatform.googleapis.com",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4%405:streamRawPredict",
        )
        .unwrap();
        assert_eq!(r.provider, "gcp.vertex_ai");
        assert_eq!(r.path_model.as_deref(), Some("claude-sonnet-4@5"));
        assert!(r.path_stream);
        assert!(detect("x", "/v1/messages/count_tokens").is_none());
        assert!(detect(
            "x",
            "/v1/projects/p/publishers/anthropic/models/m:countTokens"
        )
        .is_none());
        assert!(detect(
            "x",
            "/v1/projects/p/publishers/anthropic/models/:rawPredict"
        )
        .is_none());
        assert!(detect("x", "/v1/chat/completions").is_none());
    }

    #[test]
    fn reads_request() {
        let body = br#"{"model":"claude-sonnet-4-5","max_tokens":1024,"temperature":0.5,"top_p":0.9,
            "top_k":40,"stop_sequences":["END"],"stream":true,
            "system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],
            "tools":[{"name":"get_weather","input_schema":{}},{"nope":1}],
            "thinking":{"type":"enabled","budget_tokens":2000},
            "messages":[{"role":"user","content":"hi"},{"role":"assistant","content":[{"type":"text","text":"yo"},{"type":"tool_use","id":"t","name":"n","input":{}}]}]}"#;
        let mut req = Request::default();
        request(&route(), body, &mut req);
        assert_eq!(req.model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(req.max_tokens, Some(1024));
        assert_eq!(
            (req.temperature, req.top_p, req.top_k),
            (Some(0.5), Some(0.9), Some(40.0))
        );
        assert_eq!(req.stop_sequences, vec!["END"]);
        assert!(req.stream);
        assert_eq!(req.tool_names, vec!["get_weather"]);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("be brief")));
        assert_eq!(req.reasoning_effort.as_deref(), Some("enabled"));
        assert_eq!(req.prompt_chars, 8 + 2 + 2);
    }

    #[test]
    fn request_keeps_path_model_and_tolerates_odd_types() {
        let mut req = Request {
            model: Some("claude-from-path".into()),
            ..Request::default()
        };
        request(
            &route(),
            br#"{"anthropic_version":"vertex-2023-10-16","max_tokens":"many","system":"sys","messages":"x","tools":7}"#,
            &mut req,
        );
        assert_eq!(req.model.as_deref(), Some("claude-from-path"));
        assert_eq!(req.max_tokens, None);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("sys")));
        assert!(req.tool_names.is_empty());
        let before = req.clone();
        request(&route(), b"{not json", &mut req);
        assert_eq!(req, before);
    }

    #[test]
    fn vertex_request_takes_model_and_stream_from_path() {
        let r = detect(
            "aiplatform.googleapis.com",
            "/v1/projects/p/locations/global/publishers/anthropic/models/claude-x:streamRawPredict",
        )
        .unwrap();
        let mut req = Request::default();
        request(
            &r,
            br#"{"anthropic_version":"vertex-2023-10-16","max_tokens":5}"#,
            &mut req,
        );
        assert_eq!(req.model.as_deref(), Some("claude-x"));
        assert!(req.stream);
    }

    #[test]
    fn reads_response_with_cache_and_tools() {
        let body = br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
          "content":[{"type":"thinking","thinking":"hmm","signature":"s"},{"type":"text","text":"Let me check"},
                     {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}],
          "stop_reason":"tool_use","stop_sequence":null,
          "usage":{"input_tokens":10,"cache_creation_input_tokens":200,"cache_read_input_tokens":1800,"output_tokens":50,
                   "output_tokens_details":{"thinking_tokens":12}}}"#;
        let mut resp = Response::default();
        response(&route(), body, &mut resp);
        assert_eq!(resp.id.as_deref(), Some("msg_1"));
        assert_eq!(resp.model.as_deref(), Some("claude-sonnet-4-5-20250929"));
        assert_eq!(resp.finish_reasons, vec!["tool_use"]);
        assert_eq!(resp.usage.input, Some(2010));
        assert_eq!(resp.usage.cache_read, Some(1800));
        assert_eq!(resp.usage.cache_write, Some(200));
        assert_eq!(resp.usage.output, Some(50));
        assert_eq!(resp.usage.reasoning, Some(12));
        assert_eq!(resp.tool_calls.len(), 1);
        assert_eq!(
            (
                resp.tool_calls[0].id.as_str(),
                resp.tool_calls[0].name.as_str()
            ),
            ("toolu_1", "get_weather")
        );
        assert_eq!(resp.output_chars, 3 + 12);
        assert_eq!(resp.error_type, None);
    }

    #[test]
    fn reads_error_bodies() {
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow"},"request_id":"req_1"}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("rate_limit_error"));
        let mut resp = Response::default();
        response(&route(), br#"{"type":"error","error":"weird"}"#, &mut resp);
        assert_eq!(resp.error_type.as_deref(), Some("_OTHER"));
        let mut resp = Response::default();
        response(&route(), b"\xff\xfe", &mut resp);
        assert_eq!(resp, Response::default());
    }

    #[test]
    fn stream_usage_is_overwritten_not_added() {
        let (st, resp, content) = run(&[
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[],"stop_reason":null,"usage":{"input_tokens":5,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
            r#"{"type":"ping"}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
            r#"{"type":"content_block_stop","index":0}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_9","name":"f","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":7}}"#,
            r#"{"type":"message_delta","delta":{},"usage":{"output_tokens":9,"input_tokens":6}}"#,
            r#"{"type":"message_stop"}"#,
        ]);
        assert_eq!(
            content,
            vec![false, false, false, true, false, true, false, false, false, false]
        );
        assert!(st.finished);
        assert_eq!(resp.id.as_deref(), Some("msg_1"));
        assert_eq!(resp.finish_reasons, vec!["tool_use"]);
        assert_eq!(resp.usage.output, Some(9));
        assert_eq!(resp.usage.input, Some(106));
        assert_eq!(resp.usage.cache_read, Some(100));
        assert_eq!(resp.usage.cache_write, Some(0));
        assert_eq!(resp.tool_calls[0].id, "toolu_9");
        assert_eq!(resp.output_chars, 2);
    }

    #[test]
    fn stream_error_event() {
        let (st, resp, _) = run(&[
            r#"{"type":"message_start","message":{"id":"msg_2","model":"m","usage":{"input_tokens":3,"output_tokens":1}}}"#,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ]);
        assert!(st.finished);
        assert_eq!(resp.error_type.as_deref(), Some("overloaded_error"));
        assert_eq!(resp.usage.input, Some(3));
    }

    #[test]
    fn stream_garbage_and_thinking() {
        let (st, resp, content) = run(&[
            "",
            "not json",
            r#"{"type":42}"#,
            r#"{"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":"so"}}"#,
            r#"{"type":"content_block_delta","delta":{"type":"signature_delta","signature":"abc"}}"#,
            r#"{"type":"message_delta","usage":"bad"}"#,
        ]);
        assert_eq!(content, vec![false, false, false, true, false, false]);
        assert!(!st.finished);
        assert!(resp.usage.is_empty());
    }
}
