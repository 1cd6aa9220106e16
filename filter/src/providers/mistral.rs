//! Mistral AI (`api.mistral.ai`, `codestral.mistral.ai`): OpenAI-shaped bodies, read by `openai.rs`.
//! Mistral differences handled there: the seed is `random_seed`; a stream's usage arrives on the final
//! chunk together with the finish_reason (not as a separate `choices: []` chunk, so it is never
//! "usage-only" and must not be stripped); message content may be a list of typed parts; finish reasons
//! add `model_length` and `error`. Mistral always reports stream usage: never inject `stream_options`.

use crate::call::{Api, Route};

pub const PROVIDER: &str = "mistral_ai";

pub fn detect(host: &str, path: &str) -> Option<Route> {
    if !(host.eq_ignore_ascii_case("api.mistral.ai")
        || host.eq_ignore_ascii_case("codestral.mistral.ai"))
    {
        return None;
    }
    let path = path.split('?').next().unwrap_or("");
    let path = path.strip_suffix('/').unwrap_or(path);
    let api = match path {
        // Agents take `messages` and answer like chat.
        "/v1/chat/completions" | "/v1/agents/completions" => Api::OpenAiChat,
        // Fill-in-the-middle: `prompt` (+ `suffix`) in, chat-shaped choices out; read as a completion.
        "/v1/fim/completions" => Api::OpenAiCompletions,
        "/v1/embeddings" => Api::OpenAiEmbeddings,
        _ => return None,
    };
    Some(Route {
        api,
        provider: PROVIDER.to_owned(),
        path_model: None,
        path_stream: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Request, Response};
    use crate::providers::{self, StreamState};
    use crate::stream::Frame;

    #[test]
    fn detects() {
        let r = providers::detect("api.mistral.ai:443", "/v1/chat/completions", &[]).unwrap();
        assert_eq!(
            (r.api, r.provider.as_str()),
            (Api::OpenAiChat, "mistral_ai")
        );
        let d = |h, p| detect(h, p).map(|r| r.api);
        assert_eq!(
            d("codestral.mistral.ai", "/v1/fim/completions"),
            Some(Api::OpenAiCompletions)
        );
        assert_eq!(
            d("api.mistral.ai", "/v1/embeddings"),
            Some(Api::OpenAiEmbeddings)
        );
        assert_eq!(d("api.mistral.ai", "/v1/models"), None);
        assert_eq!(d("api.openai.com", "/v1/chat/completions"), None);
    }

    #[test]
    fn random_seed_is_the_seed() {
        let r = detect("api.mistral.ai", "/v1/chat/completions").unwrap();
        let mut req = Request::default();
        providers::request(
            &r,
            br#"{"model":"mistral-large-latest","random_seed":42,"max_tokens":64,"safe_prompt":false,"messages":[{"role":"user","content":"hi"}]}"#,
            &mut req,
        );
        assert_eq!(req.seed, Some(42));
        assert_eq!(req.max_tokens, Some(64));
        assert_eq!(req.model.as_deref(), Some("mistral-large-latest"));
    }

    #[test]
    fn usage_on_the_final_chunk_is_kept_for_the_client() {
        let r = detect("api.mistral.ai", "/v1/chat/completions").unwrap();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let mut feed =
            |d: &str| providers::frame(&r, &Frame::Sse { event: "", data: d }, &mut st, &mut resp);
        let o = feed(
            r#"{"id":"a1","object":"chat.completion.chunk","created":1,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
        );
        assert!(!o.content);
        assert!(feed(r#"{"id":"a1","object":"chat.completion.chunk","created":1,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":"Bonjour"},"finish_reason":null}]}"#).content);
        let last = feed(
            r#"{"id":"a1","object":"chat.completion.chunk","created":1,"model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"total_tokens":10,"completion_tokens":3}}"#,
        );
        assert!(!last.usage_only);
        feed("[DONE]");
        assert!(st.finished);
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(7), Some(3)));
    }

    #[test]
    fn content_parts_and_fim() {
        let r = detect("api.mistral.ai", "/v1/chat/completions").unwrap();
        let mut resp = Response::default();
        providers::response(
            &r,
            br#"{"id":"b","model":"magistral-medium-latest","choices":[{"index":0,"message":{"role":"assistant","content":[{"type":"thinking","thinking":[{"type":"text","text":"hmm"}]},{"type":"text","text":"42"}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":9,"total_tokens":14}}"#,
            &mut resp,
        );
        assert_eq!(resp.output_chars, 2);
        let r = detect("codestral.mistral.ai", "/v1/fim/completions").unwrap();
        let mut req = Request::default();
        providers::request(&r, br#"{"model":"codestral-latest","prompt":"def f(","suffix":"return x","max_tokens":16}"#, &mut req);
        assert_eq!((req.prompt_chars, req.max_tokens), (6, Some(16)));
        let mut resp = Response::default();
        providers::response(
            &r,
            br#"{"id":"c","object":"chat.completion","model":"codestral-latest","choices":[{"index":0,"message":{"role":"assistant","content":"x):"},"finish_reason":"stop"}],"usage":{"prompt_tokens":4,"completion_tokens":3,"total_tokens":7}}"#,
            &mut resp,
        );
        assert_eq!((resp.output_chars, resp.usage.output), (3, Some(3)));
    }

    #[test]
    fn top_level_error_object() {
        let r = detect("api.mistral.ai", "/v1/chat/completions").unwrap();
        let mut resp = Response::default();
        providers::response(
            &r,
            br#"{"object":"error","message":{"detail":[{"type":"missing","loc":["body","model"]}]},"type":"invalid_request_error","param":null,"code":null}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("invalid_request_error"));
    }
}
