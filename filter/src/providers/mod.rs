//! One file per API shape. Each provider module offers the same four functions:
//! - `detect(host, path) -> Option<Route>`: does this request belong to me?
//! - `request(route, body, &mut Request)`: read the request JSON.
//! - `response(route, body, &mut Response)`: read a whole (non-streamed) response body.
//! - `frame(route, frame, &mut StreamState, &mut Response) -> FrameOutcome`: read one streamed event.
//!
//! This module only dispatches; provider knowledge lives in the provider's file.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
#[cfg(test)]
mod fixtures_b_test;
pub mod gemini;
pub mod gemini_live;
pub mod json;
pub mod mcp;
pub mod mistral;
pub mod ollama;
pub mod openai;
pub mod openai_realtime;
pub mod openai_responses;
pub mod realtime;
pub mod skim;
#[cfg(test)]
mod skim_test;
pub mod tape;
pub mod template;

#[cfg(test)]
mod corpus_test;
#[cfg(test)]
mod fixtures_test;
#[cfg(test)]
mod lenient_test;

use crate::call::{Api, Request, Response, Route};
use crate::stream::Frame;

/// How a response body is framed, decided from the route, the request and the response content type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One JSON document (non-streamed).
    Whole,
    Sse,
    Ndjson,
    /// A JSON array delivered incrementally (Gemini `streamGenerateContent` without `alt=sse`).
    JsonArray,
    /// `application/vnd.amazon.eventstream`.
    AwsEventStream,
}

/// Per-response parse state that a provider may keep between frames.
#[derive(Clone, Debug, Default)]
pub struct StreamState {
    /// A terminal event was seen (`[DONE]`, `message_stop`, `response.completed`, `done:true`, ...).
    pub finished: bool,
    /// Number of frames seen.
    pub frames: u64,
    /// The last event that may repeat with another generated string (`template.rs`).
    pub template: template::Template,
}

/// What one frame meant, for the host: TTFT and include_usage stripping need it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameOutcome {
    /// The frame carried real generated content (text, tool call or refusal delta), not just a role header.
    pub content: bool,
    /// The frame is OpenAI's usage-only chunk (`choices: []` + usage) that only exists because tollgate
    /// injected `stream_options.include_usage`; the host removes it before the client sees it.
    pub usage_only: bool,
}

/// A configured mapping of a host (and optional path prefix) to an API shape, for self-hosted servers.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteRule {
    /// Exact host (without port) to match, lowercase.
    pub host: String,
    /// Path prefix to match ("" matches all).
    pub path_prefix: String,
    /// API shape; None = infer from the path as for the built-in providers.
    pub api: Option<Api>,
    /// `gen_ai.provider.name` to report.
    pub provider: String,
}

/// Decide what API a request speaks, from configured routes first, then the built-in providers.
pub fn detect(host: &str, path: &str, rules: &[RouteRule]) -> Option<Route> {
    let host = strip_port(host);
    for rule in rules {
        if rule.host.eq_ignore_ascii_case(host) && path.starts_with(rule.path_prefix.as_str()) {
            let mut route = match rule.api {
                Some(api) => Route {
                    api,
                    provider: String::new(),
                    path_model: None,
                    path_stream: false,
                },
                None => detect_builtin("", path)?,
            };
            route.provider.clone_from(&rule.provider);
            return Some(route);
        }
    }
    detect_builtin(host, path)
}

fn detect_builtin(host: &str, path: &str) -> Option<Route> {
    // Host-specific OpenAI dialects before the path-only OpenAI match, which would also take their paths.
    if let Some(route) = azure::detect(host, path) {
        return Some(route);
    }
    if let Some(route) = mistral::detect(host, path) {
        return Some(route);
    }
    openai::detect(host, path)
        .or_else(|| anthropic::detect(host, path))
        .or_else(|| gemini::detect(host, path))
        .or_else(|| bedrock::detect(host, path))
        .or_else(|| cohere::detect(host, path))
        .or_else(|| ollama::detect(host, path))
}

/// Read the request body into `req`. Unknown or malformed bodies leave `req` as it was.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    match route.api {
        Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings => {
            openai::request(route, body, req)
        }
        Api::OpenAiResponses => openai_responses::request(route, body, req),
        Api::AnthropicMessages => anthropic::request(route, body, req),
        Api::Gemini => gemini::request(route, body, req),
        Api::BedrockConverse | Api::BedrockInvoke => bedrock::request(route, body, req),
        Api::CohereChat => cohere::request(route, body, req),
        Api::OllamaChat | Api::OllamaGenerate => ollama::request(route, body, req),
    }
}

/// `request`, with (`fast`) or without the request skimmer (OpenAI-shaped bodies); the tests and the `skim`
/// fuzz target check that both give the same.
pub fn request_with(route: &Route, body: &[u8], req: &mut Request, fast: bool) {
    match route.api {
        Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings => {
            openai::request_with(route, body, req, fast)
        }
        _ => request(route, body, req),
    }
}

/// Read a whole response body into `resp` (also used for error bodies of streamed calls).
pub fn response(route: &Route, body: &[u8], resp: &mut Response) {
    match route.api {
        Api::OpenAiChat => openai::response(route, body, resp),
        Api::OpenAiCompletions | Api::OpenAiEmbeddings => openai::response(route, body, resp),
        Api::OpenAiResponses => openai_responses::response(route, body, resp),
        Api::AnthropicMessages => anthropic::response(route, body, resp),
        Api::Gemini => gemini::response(route, body, resp),
        Api::BedrockConverse | Api::BedrockInvoke => bedrock::response(route, body, resp),
        Api::CohereChat => cohere::response(route, body, resp),
        Api::OllamaChat | Api::OllamaGenerate => ollama::response(route, body, resp),
    }
}

/// Read one streamed frame.
pub fn frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    frame_with(route, frame, st, resp, true)
}

/// `frame`, with (`fast`) or without the providers' fast paths for common stream events (the skimmer,
/// `skim.rs`); without them every event goes through serde. The tests and the `skim` fuzz target check that
/// both give the same.
pub fn frame_with(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
    fast: bool,
) -> FrameOutcome {
    st.frames = st.frames.saturating_add(1);
    if fast {
        if let Some(out) = st.template.replay(frame, resp) {
            return out;
        }
    }
    // Whatever this frame is, it is not the template's event again: the provider may record a new one.
    st.template.clear();
    match route.api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            openai::frame_with(route, frame, st, resp, fast)
        }
        Api::OpenAiResponses => openai_responses::frame_with(frame, st, resp, fast),
        Api::AnthropicMessages => anthropic::frame_with(frame, st, resp, fast),
        Api::Gemini => gemini::frame_with(frame, st, resp, fast),
        Api::BedrockConverse | Api::BedrockInvoke => {
            bedrock::frame_with(route, frame, st, resp, fast)
        }
        Api::CohereChat => cohere::frame_with(frame, st, resp, fast),
        Api::OllamaChat | Api::OllamaGenerate => ollama::frame_with(frame, st, resp, fast),
        // Embeddings never stream.
        Api::OpenAiEmbeddings => FrameOutcome::default(),
    }
}

/// How the response body is framed.
pub fn framing(route: &Route, req: &Request, content_type: &str) -> Framing {
    let ct = content_type.to_ascii_lowercase();
    if ct.starts_with("text/event-stream") {
        return Framing::Sse;
    }
    if ct.starts_with("application/vnd.amazon.eventstream") {
        return Framing::AwsEventStream;
    }
    if ct.starts_with("application/x-ndjson") {
        return Framing::Ndjson;
    }
    // Ollama streams NDJSON by default, labelled application/json by some versions and proxies.
    if matches!(route.api, Api::OllamaChat | Api::OllamaGenerate) && req.stream {
        return Framing::Ndjson;
    }
    // Gemini `streamGenerateContent` without `alt=sse`: one JSON array delivered element by element.
    if route.api == Api::Gemini && route.path_stream {
        return Framing::JsonArray;
    }
    // Bedrock stream operations answer in event-stream frames; a JSON body there is an error document.
    if matches!(route.api, Api::BedrockConverse | Api::BedrockInvoke)
        && route.path_stream
        && !ct.starts_with("application/json")
    {
        return Framing::AwsEventStream;
    }
    let _ = (route, req);
    Framing::Whole
}

/// `host` without a trailing `:port` (IPv6 literals keep their brackets).
pub fn strip_port(host: &str) -> &str {
    if host.ends_with(']') {
        return host;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_ports() {
        assert_eq!(strip_port("api.openai.com:443"), "api.openai.com");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a"), "a");
    }

    #[test]
    fn configured_route_wins() {
        let rules = vec![RouteRule {
            host: "vllm.internal".into(),
            path_prefix: "/v1/".into(),
            api: None,
            provider: "vllm".into(),
        }];
        let r = detect("vllm.internal:8000", "/v1/chat/completions", &rules).unwrap();
        assert_eq!((r.api, r.provider.as_str()), (Api::OpenAiChat, "vllm"));
    }
}
