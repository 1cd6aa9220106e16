//! Ollama native API: `POST /api/chat` and `/api/generate` (any host; Ollama's `/v1/*` is OpenAI-shaped
//! and handled by `openai.rs`). Streaming is the DEFAULT: NDJSON, one object per line, the last with
//! `done: true` and the counts. A whole response is that same final object.

use super::common::prompt_hash;
use super::common::{count_chars, set_if_nonempty, ChatMessage, FunctionTool, Named};
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::capture::{self, Input};
use crate::codec::json::lenient::items;
use crate::codec::json::lenient::{json_struct, read, Lenient, LenientRaw, LenientStr, OneOrMany};
use crate::codec::json::skim::{generated, once, set_changed, Reader, Str};
use crate::codec::json::Json;
use crate::reply::Refusal;
use crate::stream::{Frame, Framing};
use std::borrow::Cow;

pub fn detect(_host: &str, path: &str) -> Option<Route> {
    let api = match path.split('?').next().unwrap_or("") {
        "/api/chat" => Api::OllamaChat,
        "/api/generate" => Api::OllamaGenerate,
        _ => return None,
    };
    Some(Route {
        api,
        provider: "ollama".to_owned(),
        path_model: None,
        path_stream: false,
    })
}

json_struct! {
    struct OllamaRequest<'a> {
        model: LenientStr<'a> = "model",
        stream: Lenient<bool> = "stream",
        options: Lenient<Options> = "options",
        /// `"json"` or a JSON schema object: either way structured JSON output.
        format: LenientRaw<'a> = "format",
        system: LenientStr<'a> = "system",
        prompt: LenientStr<'a> = "prompt",
        messages: Lenient<Vec<Lenient<ChatMessage<'a>>>> = "messages",
        tools: Lenient<Vec<Lenient<FunctionTool<'a>>>> = "tools",
    }
}

json_struct! {
    struct Options {
        temperature: Lenient<f64> = "temperature",
        top_p: Lenient<f64> = "top_p",
        top_k: Lenient<f64> = "top_k",
        /// -1 (unbounded) and -2 (fill context) are not limits: Lenient<u64> drops them.
        num_predict: Lenient<u64> = "num_predict",
        stop: Lenient<OneOrMany> = "stop",
        seed: Lenient<i64> = "seed",
    }
}

pub fn request(_route: &Route, body: &[u8], req: &mut Request) {
    let Some(r) = read::<OllamaRequest<'_>>(body) else {
        // Even an unreadable body streams by default.
        req.stream = true;
        return;
    };
    req.model = r.model.get().map(Cow::into_owned).or(req.model.take());
    req.stream = r.stream.get().unwrap_or(true);
    if let Some(o) = r.options.get() {
        req.temperature = o.temperature.get();
        req.top_p = o.top_p.get();
        req.top_k = o.top_k.get();
        req.max_tokens = o.num_predict.get();
        req.stop_sequences = o.stop.get().map(|s| s.0).unwrap_or_default();
        req.seed = o.seed.get();
    }
    req.output_type = match r.format.get() {
        Some(f) if f.starts_with('{') || f == "\"json\"" => Some("json"),
        _ => None,
    };
    req.tool_names = r
        .tools
        .get()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.get()?.function.get()?.name.get().map(Cow::into_owned))
        .collect();
    let mut system = r.system.get().map(Cow::into_owned).unwrap_or_default();
    let mut chars = (system.chars().count() as u64)
        .saturating_add(r.prompt.get().map_or(0, |p| p.chars().count() as u64));
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
    struct Chunk<'a> {
        model: LenientStr<'a> = "model",
        message: Lenient<ChunkMessage<'a>> = "message",
        /// `/api/generate` text.
        response: LenientStr<'a> = "response",
        thinking: LenientStr<'a> = "thinking",
        done: Lenient<bool> = "done",
        done_reason: LenientStr<'a> = "done_reason",
        prompt_eval_count: Lenient<u64> = "prompt_eval_count",
        eval_count: Lenient<u64> = "eval_count",
        error: LenientRaw<'a> = "error",
    }
}

json_struct! {
    struct ChunkMessage<'a> {
        content: LenientStr<'a> = "content",
        thinking: LenientStr<'a> = "thinking",
        tool_calls: Lenient<Vec<Lenient<WireToolCall<'a>>>> = "tool_calls",
    }
}

json_struct! {
    struct WireToolCall<'a> {
        id: LenientStr<'a> = "id",
        function: Lenient<Named<'a>> = "function",
    }
}

/// Ollama's `{"error":"…"}` has only a free-text message (model not found, out of memory, …), no code:
/// report semconv's catch-all rather than inventing a classification from the prose.
const ERROR_TYPE: &str = "_OTHER";

/// Fold one object; returns (generated content seen, terminal object).
fn apply_chunk(c: Chunk<'_>, resp: &mut Response) -> (bool, bool) {
    set_if_nonempty(&mut resp.model, c.model.get());
    if c.error.0.is_some() {
        resp.error_type = Some(ERROR_TYPE.to_owned());
        return (false, true);
    }
    let mut content = false;
    let mut texts = vec![c.response.get(), c.thinking.get()];
    if let Some(t) = texts.first().and_then(Option::as_ref) {
        resp.content.text(0, t);
    }
    if let Some(m) = c.message.get() {
        if let Some(t) = m.content.as_ref() {
            resp.content.text(0, t);
        }
        texts.push(m.content.get());
        texts.push(m.thinking.get());
        for call in items(m.tool_calls) {
            let id = call.id.get().unwrap_or_default();
            let name = call
                .function
                .get()
                .and_then(|f| f.name.get())
                .unwrap_or_default();
            if !name.is_empty() {
                resp.add_tool_call(&id, &name);
                content = true;
            }
        }
    }
    for t in texts.into_iter().flatten() {
        if !t.is_empty() {
            count_chars(resp, &t);
            content = true;
        }
    }
    let done = c.done.get().unwrap_or(false);
    if done {
        // Counts are only meaningful on the final object, where an absent count means 0 (Ollama omits
        // zero values, e.g. prompt_eval_count when the whole prompt came from its KV cache).
        resp.usage.input = Some(c.prompt_eval_count.get().unwrap_or(0));
        resp.usage.output = Some(c.eval_count.get().unwrap_or(0));
        if let Some(reason) = c.done_reason.get().filter(|r| !r.is_empty()) {
            resp.set_finish_reason(0, &reason);
        }
    }
    (content, done)
}

pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    if let Some(c) = read::<Chunk<'_>>(body) {
        apply_chunk(c, resp);
    }
}

pub fn fast_frame(
    _route: &Route,
    frame: &Frame<'_>,
    _st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    super::common::frame_text(frame).and_then(|t| fast_chunk(t, resp))
}

pub fn frame(
    _route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    let data = match frame {
        Frame::Json(bytes) => bytes,
        Frame::Sse { data, .. } => data.as_bytes(),
        Frame::Aws { .. } => return FrameOutcome::default(),
    };
    let Some(c) = read::<Chunk<'_>>(data) else {
        return FrameOutcome::default();
    };
    let (content, terminal) = apply_chunk(c, resp);
    if terminal {
        // `done:true` or an error line: Ollama closes the stream after either.
        st.finished = true;
    }
    FrameOutcome {
        content,
        usage_only: false,
    }
}

/// The strings of a token chunk the fast path keeps, in `apply_chunk`'s order.
#[derive(Clone, Copy, Default)]
struct FastTexts<'a> {
    response: Option<Str<'a>>,
    thinking: Option<Str<'a>>,
    content: Option<Str<'a>>,
    message_thinking: Option<Str<'a>>,
}

/// The fast path for a token chunk (`"done":false`): model, `response` / `thinking` text, `message`
/// content and thinking. Anything else (the final `done:true` object, errors, tool calls, duplicate
/// members, odd types, escaped models, escapes serde would refuse) returns None and takes the serde path;
/// nothing is applied unless the whole chunk was read.
pub(crate) fn fast_chunk(data: &str, resp: &mut Response) -> Option<FrameOutcome> {
    let mut r = Reader::new(data);
    r.begin_object()?;
    let mut model = None;
    let mut t = FastTexts::default();
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"model" => {
                once(&mut seen, 1)?;
                model = r.plain_or_null()?;
            }
            b"response" => {
                once(&mut seen, 2)?;
                t.response = r.str_or_null()?;
            }
            b"thinking" => {
                once(&mut seen, 4)?;
                t.thinking = r.str_or_null()?;
            }
            b"done" => {
                once(&mut seen, 8)?;
                // The final object (usage, done reason) takes the serde path.
                (r.bool_or_null()? != Some(true)).then_some(())?;
            }
            b"error" => {
                once(&mut seen, 16)?;
                r.null()?.then_some(())?;
            }
            b"done_reason" | b"prompt_eval_count" | b"eval_count" => {
                let bit = match key {
                    b"done_reason" => 32,
                    b"prompt_eval_count" => 64,
                    _ => 128,
                };
                once(&mut seen, bit)?;
                r.skip()?;
            }
            b"message" => {
                once(&mut seen, 256)?;
                // An array would be read as a struct in sequence form by serde: not handled here.
                if r.object_or_null()? {
                    let (mut seen_msg, mut first_key) = (0u32, true);
                    while let Some(key) = r.next_key(first_key)? {
                        first_key = false;
                        match key {
                            b"content" => {
                                once(&mut seen_msg, 1)?;
                                t.content = r.str_or_null()?;
                            }
                            b"thinking" => {
                                once(&mut seen_msg, 2)?;
                                t.message_thinking = r.str_or_null()?;
                            }
                            b"tool_calls" => {
                                once(&mut seen_msg, 4)?;
                                r.null()?.then_some(())?;
                            }
                            _ => {
                                r.skip()?;
                            }
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
    let capture = resp.content.enabled();
    let response = generated(t.response, capture)?;
    let thinking = generated(t.thinking, capture)?;
    let content = generated(t.content, capture)?;
    let message_thinking = generated(t.message_thinking, capture)?;
    set_changed(&mut resp.model, model);
    if let Some((_, s)) = &response {
        resp.content.text(0, s);
    }
    if let Some((_, s)) = &content {
        resp.content.text(0, s);
    }
    let mut generated_any = false;
    for (chars, _) in [response, thinking, content, message_thinking]
        .into_iter()
        .flatten()
    {
        if chars > 0 {
            resp.output_chars = resp.output_chars.saturating_add(chars);
            generated_any = true;
        }
    }
    Some(FrameOutcome {
        content: generated_any,
        usage_only: false,
    })
}

/// Ollama's native chat and generate APIs.
pub struct Ollama;

impl super::Provider for Ollama {
    fn operation(&self, route: &Route) -> &'static str {
        match route.api {
            Api::OllamaGenerate => "text_completion",
            _ => "chat",
        }
    }

    super::readers!();

    /// Ollama streams NDJSON by default, labelled application/json by some versions and proxies.
    fn framing(&self, _route: &Route, req: &Request, _ct: &str) -> Framing {
        if req.stream {
            Framing::Ndjson
        } else {
            Framing::Whole
        }
    }

    fn max_tokens(&self, _route: &Route) -> Option<MaxTokens> {
        Some(MaxTokens {
            existing: &[&["options", "num_predict"]],
            default: &["options", "num_predict"],
        })
    }

    fn error_body(
        &self,
        _refusal: Refusal,
        message: &str,
        _headers: &mut Vec<(String, String)>,
    ) -> Json {
        Json::obj([("error", Json::str(message))])
    }

    fn capture_input(&self, route: &Route, body: &[u8]) -> Option<Input> {
        match route.api {
            Api::OllamaGenerate => capture::read(body, capture::prompt),
            _ => capture::read(body, capture::chat),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat() -> Route {
        detect("localhost:11434", "/api/chat").unwrap()
    }

    #[test]
    fn detects() {
        assert_eq!(chat().api, Api::OllamaChat);
        assert_eq!(
            detect("x", "/api/generate").unwrap().api,
            Api::OllamaGenerate
        );
        assert!(detect("x", "/api/embed").is_none());
        assert_eq!(chat().provider, "ollama");
    }

    #[test]
    fn reads_request_and_stream_default() {
        let body = br#"{"model":"llama3.2","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],
          "options":{"temperature":0.1,"top_p":0.5,"top_k":7,"num_predict":64,"stop":["\n"],"seed":3},
          "format":{"type":"object"},"tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;
        let mut req = Request::default();
        request(&chat(), body, &mut req);
        assert!(req.stream, "stream defaults to true");
        assert_eq!(req.model.as_deref(), Some("llama3.2"));
        assert_eq!(
            (req.temperature, req.top_p, req.top_k),
            (Some(0.1), Some(0.5), Some(7.0))
        );
        assert_eq!((req.max_tokens, req.seed), (Some(64), Some(3)));
        assert_eq!(req.stop_sequences, vec!["\n"]);
        assert_eq!(req.output_type, Some("json"));
        assert_eq!(req.tool_names, vec!["get_weather"]);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("be brief")));
        assert_eq!(req.prompt_chars, 10);

        let mut req = Request::default();
        request(
            &chat(),
            br#"{"model":"m","prompt":"why","system":"sys","stream":false,"format":"json","options":{"num_predict":-1}}"#,
            &mut req,
        );
        assert!(!req.stream);
        assert_eq!(req.max_tokens, None);
        assert_eq!(req.output_type, Some("json"));
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("sys")));
        assert_eq!(req.prompt_chars, 6);
    }

    #[test]
    fn reads_whole_response() {
        let body = br#"{"model":"llama3.2","created_at":"2026-01-01T00:00:00Z","message":{"role":"assistant","content":"",
          "tool_calls":[{"function":{"name":"get_weather","arguments":{"city":"Paris"}}}]},
          "done":true,"done_reason":"stop","total_duration":1,"prompt_eval_count":26,"eval_count":12}"#;
        let mut resp = Response::default();
        response(&chat(), body, &mut resp);
        assert_eq!(resp.model.as_deref(), Some("llama3.2"));
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(26), Some(12)));
        assert_eq!(
            (
                resp.tool_calls[0].id.as_str(),
                resp.tool_calls[0].name.as_str()
            ),
            ("", "get_weather")
        );
    }

    #[test]
    fn stream_with_counts_absent_and_error() {
        let r = detect("x", "/api/generate").unwrap();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let lines = [
            r#"{"model":"m","response":"","done":false,"prompt_eval_count":99}"#,
            r#"{"model":"m","response":"Hi","done":false}"#,
            r#"{"model":"m","response":"","done":true,"done_reason":"length","eval_count":2}"#,
        ];
        let content: Vec<bool> = lines
            .iter()
            .map(|l| frame(&r, &Frame::Json(l.as_bytes()), &mut st, &mut resp).content)
            .collect();
        assert_eq!(content, vec![false, true, false]);
        assert!(st.finished);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(0), Some(2)));
        assert_eq!(resp.finish_reasons, vec!["length"]);

        let mut st = StreamState::default();
        let mut resp = Response::default();
        frame(
            &r,
            &Frame::Json(br#"{"model":"m","response":"a","done":false}"#),
            &mut st,
            &mut resp,
        );
        frame(&r, &Frame::Json(b"{oops"), &mut st, &mut resp);
        assert!(!st.finished);
        frame(
            &r,
            &Frame::Json(br#"{"error":"an error was encountered while running the model"}"#),
            &mut st,
            &mut resp,
        );
        assert!(st.finished);
        assert_eq!(resp.error_type.as_deref(), Some("_OTHER"));
        assert!(resp.usage.is_empty());
    }
}
