//! One file per API shape, each owning everything tollgate knows about its API: `detect(host, path)`
//! (does this request belong to me?), and the [`Provider`] trait (readers, framing, the max-tokens member,
//! the refusal dialect, the capture shape, include_usage). Azure OpenAI, Mistral and the OpenAI-compatible
//! servers (`openai_compat.rs`) are dialects of OpenAI's APIs: they detect their hosts and name their
//! provider, and read as OpenAI does.
//!
//! This module dispatches, once, on `Api` ([`provider`]); provider knowledge lives in the provider's file.

pub mod anthropic;
pub mod azure;
pub mod bedrock;
pub mod cohere;
pub mod common;
#[cfg(test)]
mod fixtures_b_test;
pub mod gemini;
pub mod mistral;
pub mod ollama;
pub mod openai;
pub mod openai_compat;
pub mod openai_responses;
pub mod reader;
#[cfg(any(test, fuzzing))]
pub mod reference;
#[cfg(test)]
mod skim_test;
pub mod template;
#[cfg(any(test, fuzzing))]
pub mod variants;

#[cfg(test)]
mod corpus_real_test;
#[cfg(test)]
mod corpus_test;
#[cfg(test)]
mod fixtures_test;
#[cfg(test)]
mod lenient_test;
#[cfg(test)]
mod robust_test;

use crate::call::{Api, Request, Response, Route};
use crate::capture::Input;
use crate::codec::headers::Headers;
use crate::codec::json::{edit, Json};
use crate::reply::{Denial, Refusal, Reply};
use crate::stream::{Frame, Framing};

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

/// Everything tollgate knows about one API shape, implemented in that provider's own file: how its bodies
/// and stream events read, how it frames a response, its max-output-tokens member, the error body its SDKs
/// recognise, the shape of its conversation for content capture, and whether tollgate may ask its streams
/// for usage. The rest of the crate reaches provider knowledge only through [`provider`].
pub trait Provider: Sync {
    /// `gen_ai.operation.name` of the route's operation.
    fn operation(&self, route: &Route) -> &'static str;

    /// Read the request body into `req` (every body; unknown or malformed ones leave `req` as it was).
    fn request(&self, route: &Route, body: &[u8], req: &mut Request);

    /// The fast path for the common request body: true when it read the body (exactly as `request` would
    /// have), false when it leaves it to `request`.
    fn fast_request(&self, _route: &Route, _body: &[u8], _req: &mut Request) -> bool {
        false
    }

    /// Read a whole response body (also the error body of a streamed call).
    fn response(&self, route: &Route, body: &[u8], resp: &mut Response);

    /// Read one streamed event (every event).
    fn frame(
        &self,
        route: &Route,
        frame: &Frame<'_>,
        st: &mut StreamState,
        resp: &mut Response,
    ) -> FrameOutcome;

    /// The fast path for the provider's per-token events, read with the skimmer: exactly what `frame`
    /// reads, or None to leave the event to `frame`. It may record a template (`template.rs`).
    fn fast_frame(
        &self,
        _route: &Route,
        _frame: &Frame<'_>,
        _st: &mut StreamState,
        _resp: &mut Response,
    ) -> Option<FrameOutcome> {
        None
    }

    /// An event that only keeps the connection alive: not a chunk of the response.
    fn is_keepalive(&self, _frame: &Frame<'_>) -> bool {
        false
    }

    /// The framing of a response whose content type (`ct`, lowercase) is none of the streaming ones.
    fn framing(&self, _route: &Route, _req: &Request, _ct: &str) -> Framing {
        Framing::Whole
    }

    /// What the response headers say (Bedrock's request id and InvokeModel metering).
    fn response_headers(&self, _route: &Route, _headers: &Headers, _resp: &mut Response) {}

    /// The request member that caps the output, for clamping (None: the API generates no text).
    fn max_tokens(&self, route: &Route) -> Option<MaxTokens>;

    /// The error body of a local reply, as this API's SDKs read errors; an API whose SDKs read the error
    /// type from a header adds it to `headers`.
    fn error_body(
        &self,
        refusal: Refusal,
        message: &str,
        headers: &mut Vec<(String, String)>,
    ) -> Json;

    /// The conversation in the request body, for content capture (None: not a conversation).
    fn capture_input(&self, route: &Route, body: &[u8]) -> Option<Input>;

    /// Whether tollgate may add `stream_options.include_usage` to a streaming request on `route`.
    fn may_inject_usage(&self, _route: &Route) -> bool {
        false
    }

    /// The request body asking the stream for usage; None when it is not a stream, already asks, or is
    /// not a JSON object.
    fn inject_usage(&self, _body: &[u8]) -> Option<Vec<u8>> {
        None
    }

    /// The SSE event (raw, with its terminating blank line) only exists because tollgate asked for usage.
    fn is_usage_only_event(&self, _raw: &[u8]) -> bool {
        false
    }

    /// `openai.api.type` for the OpenAI family's own APIs.
    fn openai_api_type(&self, _route: &Route) -> Option<&'static str> {
        None
    }
}

/// The `Provider` readers of a provider file's own `request`, `response`, `frame` and `fast_frame`
/// functions (each file has the four, with the trait's signatures).
macro_rules! readers {
    () => {
        fn request(&self, route: &Route, body: &[u8], req: &mut Request) {
            request(route, body, req);
        }

        fn response(&self, route: &Route, body: &[u8], resp: &mut Response) {
            response(route, body, resp);
        }

        fn frame(
            &self,
            route: &Route,
            f: &Frame<'_>,
            st: &mut StreamState,
            resp: &mut Response,
        ) -> FrameOutcome {
            frame(route, f, st, resp)
        }

        fn fast_frame(
            &self,
            route: &Route,
            f: &Frame<'_>,
            st: &mut StreamState,
            resp: &mut Response,
        ) -> Option<FrameOutcome> {
            fast_frame(route, f, st, resp)
        }
    };
}
use readers;

/// Where clamping writes the max output tokens: every member among `existing` the body has is rewritten;
/// when it has none, `default` is added (`&[]`: nothing may be added).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxTokens {
    pub existing: &'static [&'static [&'static str]],
    pub default: &'static [&'static str],
}

/// The provider of an API shape: the one place the crate dispatches on `Api`.
pub fn provider(api: Api) -> &'static dyn Provider {
    match api {
        Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings => &openai::OpenAi,
        Api::OpenAiResponses => &openai_responses::Responses,
        Api::AnthropicMessages => &anthropic::Anthropic,
        Api::Gemini => &gemini::Gemini,
        Api::BedrockConverse | Api::BedrockInvoke | Api::BedrockEmbeddings => &bedrock::Bedrock,
        Api::CohereChat => &cohere::Cohere,
        Api::OllamaChat | Api::OllamaGenerate => &ollama::Ollama,
    }
}

/// `gen_ai.operation.name` of a call on `route`.
pub fn operation(route: &Route) -> &'static str {
    provider(route.api).operation(route)
}

/// Read the request body into `req`. Unknown or malformed bodies leave `req` as it was.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    let p = provider(route.api);
    if !p.fast_request(route, body, req) {
        p.request(route, body, req);
    }
}

/// Read a whole response body into `resp` (also used for error bodies of streamed calls).
pub fn response(route: &Route, body: &[u8], resp: &mut Response) {
    provider(route.api).response(route, body, resp);
}

/// Read one streamed frame: a repeat of the last event's template (`template.rs`), else the provider's
/// fast path, else its general reader.
pub fn frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    st.frames = st.frames.saturating_add(1);
    if let Some(out) = st.template.replay(frame, resp) {
        return out;
    }
    // Whatever this frame is, it is not the template's event again: the provider may record a new one.
    st.template.clear();
    let p = provider(route.api);
    match p.fast_frame(route, frame, st, resp) {
        Some(out) => out,
        None => p.frame(route, frame, st, resp),
    }
}

/// A stream event that only keeps the connection alive (Anthropic's `ping`): not a chunk of the response
/// for `gen_ai.response.time_to_first_chunk` (the SDKs do not hand it to the application either).
pub fn is_keepalive(route: &Route, frame: &Frame<'_>) -> bool {
    provider(route.api).is_keepalive(frame)
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
    provider(route.api).framing(route, req, &ct)
}

/// The local reply refusing a request on `route`, in its API's dialect so that the client's SDK recognises
/// it: its retry logic backs off on a rate limit and surfaces a refusal as the provider's own error type.
pub fn reply(route: &Route, denial: &Denial) -> Reply {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let body = provider(route.api).error_body(denial.refusal, &denial.message, &mut headers);
    headers.extend(denial.headers.iter().cloned());
    Reply {
        status: denial.refusal.status(),
        headers,
        body: body.text().into_bytes(),
    }
}

/// The body with its max output tokens set to `max` per choice, or None when it cannot be rewritten
/// safely (not an object, a level that is not an object, a duplicated key, or nothing the route may add).
pub fn set_max_output_tokens(route: &Route, body: &[u8], max: u64) -> Option<Vec<u8>> {
    let fields = provider(route.api).max_tokens(route)?;
    let value = max.to_string();
    let mut out: Option<Vec<u8>> = None;
    for path in fields.existing {
        let current = out.as_deref().unwrap_or(body);
        if edit::has_path(current, path) {
            out = Some(edit::set_path(current, path, &value)?);
        }
    }
    match out {
        Some(o) => Some(o),
        None if fields.default.is_empty() => None,
        None => edit::set_path(body, fields.default, &value),
    }
}

/// What content capture reads of the request body on `route`.
pub fn capture_input(route: &Route, body: &[u8]) -> Option<Input> {
    provider(route.api).capture_input(route, body)
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

#[cfg(test)]
mod dialect_tests {
    use super::*;
    use serde_json::{json, Value};

    fn r(api: Api, provider: &str) -> Route {
        Route {
            api,
            provider: provider.to_owned(),
            path_model: None,
            path_stream: false,
        }
    }

    /// The reply refusing a call of `api`.
    fn refuse(api: Api, refusal: Refusal, message: &str, extra: Vec<(String, String)>) -> Reply {
        let mut denial = Denial::new(refusal, message);
        denial.headers = extra;
        reply(&r(api, ""), &denial)
    }

    fn body(r: &Reply) -> Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    fn v(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    #[test]
    fn openai_shape_budget() {
        let r = refuse(
            Api::OpenAiChat,
            Refusal::BudgetExceeded,
            "budget",
            vec![("retry-after".into(), "12".into())],
        );
        assert_eq!(r.status, 429);
        let b = body(&r);
        assert_eq!(b["error"]["code"], "token_budget_exceeded");
        assert_eq!(b["error"]["type"], "rate_limit_error");
        assert_eq!(b["error"]["message"], "budget");
        assert!(r.headers.contains(&("retry-after".into(), "12".into())));
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/json".into())));
    }

    #[test]
    fn every_api_has_a_dialect() {
        for api in Api::ALL {
            for refusal in Refusal::ALL {
                let r = refuse(api, refusal, "m \"quoted\"", vec![]);
                assert_eq!(r.status, refusal.status());
                let b = body(&r);
                let text = b.to_string();
                assert!(text.contains("m \\\"quoted\\\""), "{api:?}: {text}");
            }
        }
    }

    #[test]
    fn anthropic_gemini_bedrock() {
        let a = body(&refuse(
            Api::AnthropicMessages,
            Refusal::BudgetExceeded,
            "x",
            vec![],
        ));
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "rate_limit_error");
        let g = body(&refuse(Api::Gemini, Refusal::BudgetExceeded, "x", vec![]));
        assert_eq!(g["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(g["error"]["code"], 429);
        let br = refuse(Api::BedrockConverse, Refusal::BudgetExceeded, "x", vec![]);
        assert!(br
            .headers
            .contains(&("x-amzn-errortype".into(), "ThrottlingException".into())));
        let blocked = refuse(Api::BedrockInvoke, Refusal::ContentBlocked, "x", vec![]);
        assert_eq!(blocked.status, 400);
        assert!(blocked
            .headers
            .contains(&("x-amzn-errortype".into(), "ValidationException".into())));
        let large = refuse(Api::AnthropicMessages, Refusal::TooLarge, "x", vec![]);
        assert_eq!(large.status, 413);
        assert_eq!(body(&large)["error"]["type"], "request_too_large");
        let signed = refuse(Api::BedrockConverse, Refusal::SignedRequest, "x", vec![]);
        assert_eq!(signed.status, 400);
        assert!(signed
            .headers
            .contains(&("x-amzn-errortype".into(), "ValidationException".into())));
    }

    #[test]
    fn rewrites_existing_fields_byte_preserving() {
        let body = br#"{ "model":"gpt-4o",  "max_tokens" : 500, "messages":[{"role":"user","content":"hi"}]}"#;
        let out = set_max_output_tokens(&r(Api::OpenAiChat, "vllm"), body, 64).unwrap();
        assert_eq!(
            out,
            br#"{ "model":"gpt-4o",  "max_tokens" : 64, "messages":[{"role":"user","content":"hi"}]}"#
        );
        let out = set_max_output_tokens(
            &r(Api::OpenAiChat, "openai"),
            br#"{"max_completion_tokens":9000,"max_tokens":9000}"#,
            10,
        )
        .unwrap();
        assert_eq!(
            v(&out),
            json!({"max_completion_tokens": 10, "max_tokens": 10})
        );
    }

    #[test]
    fn adds_missing_fields_per_api() {
        let cases: &[(Api, &str, &[u8], Value)] = &[
            (
                Api::OpenAiChat,
                "openai",
                br#"{"model":"o3"}"#,
                json!({"model":"o3","max_completion_tokens":7}),
            ),
            (
                Api::OpenAiChat,
                "mistral_ai",
                br#"{}"#,
                json!({"max_tokens":7}),
            ),
            (
                Api::OpenAiResponses,
                "openai",
                br#"{"input":"x"}"#,
                json!({"input":"x","max_output_tokens":7}),
            ),
            (
                Api::AnthropicMessages,
                "anthropic",
                br#"{"max_tokens":100}"#,
                json!({"max_tokens":7}),
            ),
            (
                Api::Gemini,
                "gcp.gemini",
                br#"{"contents":[]}"#,
                json!({"contents":[],"generationConfig":{"maxOutputTokens":7}}),
            ),
            (
                Api::Gemini,
                "gcp.gemini",
                br#"{"generationConfig":{"temperature":1}}"#,
                json!({"generationConfig":{"maxOutputTokens":7,"temperature":1}}),
            ),
            (
                Api::Gemini,
                "gcp.gemini",
                br#"{"generation_config":{"max_output_tokens":900}}"#,
                json!({"generation_config":{"max_output_tokens":7}}),
            ),
            (
                Api::BedrockConverse,
                "aws.bedrock",
                br#"{"inferenceConfig":{"maxTokens":900}}"#,
                json!({"inferenceConfig":{"maxTokens":7}}),
            ),
            (
                Api::BedrockConverse,
                "aws.bedrock",
                br#"{"messages":[]}"#,
                json!({"messages":[],"inferenceConfig":{"maxTokens":7}}),
            ),
            (
                Api::OllamaChat,
                "ollama",
                br#"{"options":{}}"#,
                json!({"options":{"num_predict":7}}),
            ),
            (
                Api::CohereChat,
                "cohere",
                br#" {"model":"c"} "#,
                json!({"model":"c","max_tokens":7}),
            ),
        ];
        for (api, provider, body, want) in cases {
            let out = set_max_output_tokens(&r(*api, provider), body, 7)
                .unwrap_or_else(|| panic!("{api:?} {}", String::from_utf8_lossy(body)));
            assert_eq!(&v(&out), want, "{api:?}");
        }
    }

    #[test]
    fn refuses_what_it_cannot_rewrite_safely() {
        assert_eq!(
            set_max_output_tokens(&r(Api::OpenAiEmbeddings, "openai"), b"{}", 1),
            None
        );
        assert_eq!(
            set_max_output_tokens(&r(Api::OpenAiChat, "openai"), b"[1]", 1),
            None
        );
        assert_eq!(
            set_max_output_tokens(&r(Api::OpenAiChat, "openai"), b"{bad", 1),
            None
        );
        // Duplicate keys: which one the provider honours is unknowable.
        assert_eq!(
            set_max_output_tokens(
                &r(Api::AnthropicMessages, "anthropic"),
                br#"{"max_tokens":1,"max_tokens":900}"#,
                5
            ),
            None
        );
        // A non-object level.
        assert_eq!(
            set_max_output_tokens(&r(Api::OllamaChat, "ollama"), br#"{"options":3}"#, 5),
            None
        );
        // Escaped keys are compared decoded.
        let out = set_max_output_tokens(
            &r(Api::CohereChat, "cohere"),
            br#"{"max\u005ftokens":900}"#,
            5,
        )
        .unwrap();
        assert_eq!(v(&out), json!({"max_tokens": 5}));
    }
}
