//! OpenAI Chat Completions (`/v1/chat/completions`) and OpenAI-compatible servers.

use super::json::{parse, prompt_hash, Lenient, OneOrMany, TextContent};
use super::{FrameOutcome, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::stream::Frame;
use serde::Deserialize;
use std::borrow::Cow;

pub fn detect(host: &str, path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or("");
    let api = if path.ends_with("/chat/completions") {
        Api::OpenAiChat
    } else {
        return None;
    };
    let provider = if host.is_empty() || host.eq_ignore_ascii_case("api.openai.com") {
        "openai"
    } else {
        // An OpenAI-shaped path on an unknown host: an OpenAI-compatible server.
        "openai"
    };
    Some(Route {
        api,
        provider: provider.to_owned(),
        path_model: None,
        path_stream: false,
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    model: Lenient<Cow<'a, str>>,
    stream: Lenient<bool>,
    temperature: Lenient<f64>,
    top_p: Lenient<f64>,
    top_k: Lenient<f64>,
    n: Lenient<u64>,
    seed: Lenient<i64>,
    stop: Lenient<OneOrMany>,
    frequency_penalty: Lenient<f64>,
    presence_penalty: Lenient<f64>,
    max_completion_tokens: Lenient<u64>,
    max_tokens: Lenient<u64>,
    reasoning_effort: Lenient<String>,
    service_tier: Lenient<String>,
    tools: Lenient<Vec<Lenient<Tool<'a>>>>,
    response_format: Lenient<ResponseFormat<'a>>,
    messages: Lenient<Vec<Lenient<Message<'a>>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Tool<'a> {
    #[serde(borrow)]
    function: Lenient<Named<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Named<'a> {
    #[serde(borrow)]
    name: Lenient<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ResponseFormat<'a> {
    #[serde(borrow, rename = "type")]
    kind: Lenient<Cow<'a, str>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Message<'a> {
    #[serde(borrow)]
    role: Lenient<Cow<'a, str>>,
    content: Lenient<TextContent>,
}

pub fn request(_route: &Route, body: &[u8], req: &mut Request) {
    let Some(r) = parse::<ChatRequest<'_>>(body) else {
        return;
    };
    req.model = r.model.get().map(Cow::into_owned).or(req.model.take());
    req.stream = r.stream.get().unwrap_or(false);
    req.temperature = r.temperature.get();
    req.top_p = r.top_p.get();
    req.top_k = r.top_k.get();
    req.choice_count = r.n.get();
    req.seed = r.seed.get();
    req.stop_sequences = r.stop.get().map(|s| s.0).unwrap_or_default();
    req.frequency_penalty = r.frequency_penalty.get();
    req.presence_penalty = r.presence_penalty.get();
    req.max_tokens = r.max_completion_tokens.get().or(r.max_tokens.get());
    req.reasoning_effort = r.reasoning_effort.get();
    req.service_tier = r.service_tier.get();
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
        Some("json_object" | "json_schema") => Some("json"),
        Some("text") => Some("text"),
        _ => None,
    };
    let mut system = String::new();
    let mut chars: u64 = 0;
    for m in r
        .messages
        .get()
        .unwrap_or_default()
        .into_iter()
        .filter_map(Lenient::get)
    {
        let text = m.content.get().map(|c| c.0).unwrap_or_default();
        chars = chars.saturating_add(text.chars().count() as u64);
        if matches!(m.role.get().as_deref(), Some("system" | "developer")) {
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

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct WireUsage {
    prompt_tokens: Lenient<u64>,
    completion_tokens: Lenient<u64>,
    prompt_tokens_details: Lenient<PromptDetails>,
    completion_tokens_details: Lenient<CompletionDetails>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct PromptDetails {
    cached_tokens: Lenient<u64>,
    cache_write_tokens: Lenient<u64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CompletionDetails {
    reasoning_tokens: Lenient<u64>,
}

impl WireUsage {
    /// OpenAI already counts cached tokens inside prompt_tokens and reasoning inside completion_tokens,
    /// which is the semconv meaning: copy as is.
    pub(crate) fn apply(self, resp: &mut Response) {
        let u = &mut resp.usage;
        u.input = self.prompt_tokens.get().or(u.input);
        u.output = self.completion_tokens.get().or(u.output);
        if let Some(d) = self.prompt_tokens_details.get() {
            u.cache_read = d.cached_tokens.get().or(u.cache_read);
            u.cache_write = d.cache_write_tokens.get().or(u.cache_write);
        }
        if let Some(d) = self.completion_tokens_details.get() {
            u.reasoning = d.reasoning_tokens.get().or(u.reasoning);
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChatResponse<'a> {
    #[serde(borrow)]
    id: Lenient<Cow<'a, str>>,
    model: Lenient<Cow<'a, str>>,
    service_tier: Lenient<Cow<'a, str>>,
    system_fingerprint: Lenient<Cow<'a, str>>,
    choices: Lenient<Vec<Lenient<Choice<'a>>>>,
    usage: Lenient<WireUsage>,
    error: Lenient<ErrorBody<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Choice<'a> {
    index: Lenient<u64>,
    #[serde(borrow)]
    finish_reason: Lenient<Cow<'a, str>>,
    message: Lenient<ChoiceMessage<'a>>,
    delta: Lenient<ChoiceMessage<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChoiceMessage<'a> {
    #[serde(borrow)]
    content: Lenient<Cow<'a, str>>,
    refusal: Lenient<Cow<'a, str>>,
    tool_calls: Lenient<Vec<Lenient<WireToolCall<'a>>>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct WireToolCall<'a> {
    #[serde(borrow)]
    id: Lenient<Cow<'a, str>>,
    function: Lenient<Named<'a>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub(crate) struct ErrorBody<'a> {
    #[serde(borrow, rename = "type")]
    kind: Lenient<Cow<'a, str>>,
    code: Lenient<Cow<'a, str>>,
}

impl ErrorBody<'_> {
    /// The provider's error type: `type` when present, else `code`.
    pub(crate) fn error_type(&self) -> Option<String> {
        self.kind
            .as_ref()
            .or(self.code.as_ref())
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
    }
}

fn set_if_nonempty(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        *slot = Some(v.into_owned());
    }
}

/// Fold one chat response object (a whole body or one stream chunk) into `resp`.
/// Returns whether the object carried generated content.
fn apply_chunk(c: ChatResponse<'_>, resp: &mut Response) -> bool {
    set_if_nonempty(&mut resp.id, c.id.get());
    set_if_nonempty(&mut resp.model, c.model.get());
    set_if_nonempty(&mut resp.service_tier, c.service_tier.get());
    set_if_nonempty(&mut resp.system_fingerprint, c.system_fingerprint.get());
    if let Some(u) = c.usage.get() {
        u.apply(resp);
    }
    if let Some(e) = c.error.get() {
        resp.error_type = e.error_type().or_else(|| Some("_OTHER".to_owned()));
    }
    let mut content = false;
    for (pos, choice) in c.choices.get().unwrap_or_default().into_iter().enumerate() {
        let Some(choice) = choice.get() else { continue };
        let index = choice
            .index
            .get()
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(pos);
        if let Some(reason) = choice.finish_reason.get() {
            resp.set_finish_reason(index, &reason);
        }
        for msg in [choice.message.get(), choice.delta.get()]
            .into_iter()
            .flatten()
        {
            if let Some(text) = msg.content.get().filter(|t| !t.is_empty()) {
                resp.output_chars = resp
                    .output_chars
                    .saturating_add(text.chars().count() as u64);
                content = true;
            }
            if msg.refusal.get().is_some_and(|t| !t.is_empty()) {
                content = true;
            }
            for call in msg
                .tool_calls
                .get()
                .unwrap_or_default()
                .into_iter()
                .filter_map(Lenient::get)
            {
                content = true;
                // Streamed tool calls name id and function only in their first fragment.
                let id = call.id.get().unwrap_or_default();
                let name = call
                    .function
                    .get()
                    .and_then(|f| f.name.get())
                    .unwrap_or_default();
                if !id.is_empty() || !name.is_empty() {
                    resp.add_tool_call(&id, &name);
                }
            }
        }
    }
    content
}

pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    if let Some(c) = parse::<ChatResponse<'_>>(body) {
        apply_chunk(c, resp);
    }
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
    if data.trim_ascii() == b"[DONE]" {
        st.finished = true;
        return FrameOutcome::default();
    }
    let Some(c) = parse::<ChatResponse<'_>>(data) else {
        return FrameOutcome::default();
    };
    let usage_only =
        c.usage.as_ref().is_some() && matches!(c.choices.as_ref(), Some(v) if v.is_empty());
    let content = apply_chunk(c, resp);
    FrameOutcome {
        content,
        usage_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        detect("api.openai.com", "/v1/chat/completions").unwrap()
    }

    #[test]
    fn reads_request() {
        let body = br#"{"model":"gpt-4o","temperature":0.2,"top_p":0.9,"max_completion_tokens":50,"n":2,
            "stop":"END","seed":7,"response_format":{"type":"json_object"},
            "tools":[{"type":"function","function":{"name":"get_weather"}}],
            "messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"}]}]}"#;
        let mut req = Request::default();
        request(&route(), body, &mut req);
        assert_eq!(req.model.as_deref(), Some("gpt-4o"));
        assert_eq!(req.temperature, Some(0.2));
        assert_eq!(req.top_p, Some(0.9));
        assert_eq!(req.max_tokens, Some(50));
        assert_eq!(req.choice_count, Some(2));
        assert_eq!(req.stop_sequences, vec!["END"]);
        assert_eq!(req.seed, Some(7));
        assert_eq!(req.output_type, Some("json"));
        assert_eq!(req.tool_names, vec!["get_weather"]);
        assert_eq!(
            req.system_prompt_hash.as_deref(),
            Some(prompt_hash("be brief").as_str())
        );
        assert_eq!(req.prompt_chars, 10);
        assert!(!req.stream);
    }

    #[test]
    fn reads_response() {
        let body = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-2024-08-06",
          "system_fingerprint":"fp_1","service_tier":"default",
          "choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"},
                     {"index":1,"message":{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],
          "usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
                   "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":3}}}"#;
        let mut resp = Response::default();
        response(&route(), body, &mut resp);
        assert_eq!(resp.id.as_deref(), Some("chatcmpl-1"));
        assert_eq!(resp.model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(resp.finish_reasons, vec!["stop", "tool_calls"]);
        assert_eq!(resp.usage.input, Some(19));
        assert_eq!(resp.usage.output, Some(10));
        assert_eq!(resp.usage.cache_read, Some(4));
        assert_eq!(resp.usage.reasoning, Some(3));
        assert_eq!(resp.tool_calls.len(), 1);
        assert_eq!(resp.tool_calls[0].name, "f");
        assert_eq!(resp.system_fingerprint.as_deref(), Some("fp_1"));
    }

    #[test]
    fn reads_error_body() {
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"error":{"message":"slow down","type":"rate_limit_error","code":null}}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("rate_limit_error"));
    }

    #[test]
    fn stream_frames() {
        let r = route();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let ev = |d: &'static str| Frame::Sse { event: "", data: d };
        let o = frame(
            &r,
            &ev(
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
            ),
            &mut st,
            &mut resp,
        );
        assert!(!o.content, "the role header is not content");
        let o = frame(
            &r,
            &ev(
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#,
            ),
            &mut st,
            &mut resp,
        );
        assert!(o.content);
        frame(
            &r,
            &ev(
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
            ),
            &mut st,
            &mut resp,
        );
        let o = frame(
            &r,
            &ev(
                r#"{"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
            ),
            &mut st,
            &mut resp,
        );
        assert!(o.usage_only && !o.content);
        frame(&r, &ev("[DONE]"), &mut st, &mut resp);
        assert!(st.finished);
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(5), Some(1)));
        assert_eq!(resp.output_chars, 2);
    }

    #[test]
    fn garbage_is_ignored() {
        let mut resp = Response::default();
        response(&route(), b"\xff\x00not json", &mut resp);
        assert_eq!(resp, Response::default());
    }
}
