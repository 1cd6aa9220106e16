//! Azure OpenAI: `https://{resource}.openai.azure.com` (also `*.cognitiveservices.azure.com` and AI Foundry's
//! `*.services.ai.azure.com`). Two URL families:
//! - `/openai/deployments/{deployment}/chat/completions|completions|embeddings?api-version=…`: the model is
//!   the deployment in the path (the body usually has none); the response `model` is the underlying snapshot.
//! - v1: `/openai/v1/chat/completions|completions|embeddings|responses` with `model` (the deployment name) in
//!   the body; also the preview `/openai/responses?api-version=…`.
//!
//! Bodies are OpenAI's and are read by `openai.rs` / `openai_responses.rs` (dispatch is by API shape). The
//! Azure stream quirks (the leading `prompt_filter_results` chunk and asynchronous-filter chunks with
//! `id:""` and no delta) are handled there, so they are also handled when a configured route sends an
//! Azure endpoint behind a custom domain through the OpenAI reader.

use crate::call::{Api, Route};

pub const PROVIDER: &str = "azure.ai.openai";

const AZURE_HOST_SUFFIXES: [&str; 3] = [
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
];

fn is_azure_host(host: &str) -> bool {
    AZURE_HOST_SUFFIXES.iter().any(|suffix| {
        host.len()
            .checked_sub(suffix.len())
            .and_then(|start| host.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
    })
}

/// Deployment paths are recognised on any host: the `/openai/deployments/` prefix is Azure's alone, and
/// Azure is often reached through API Management or a private domain. The v1 paths need an Azure host,
/// because `/openai/v1/chat/completions` is also Groq's OpenAI-compatible path.
pub fn detect(host: &str, path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or("");
    let path = path.strip_suffix('/').unwrap_or(path);
    if let Some(rest) = path.strip_prefix("/openai/deployments/") {
        let (deployment, operation) = rest.split_once('/')?;
        let api = match operation {
            "chat/completions" | "extensions/chat/completions" => Api::OpenAiChat,
            "completions" => Api::OpenAiCompletions,
            "embeddings" => Api::OpenAiEmbeddings,
            _ => return None,
        };
        return Some(route(api, Some(deployment)));
    }
    if !is_azure_host(host) {
        return None;
    }
    let operation = path
        .strip_prefix("/openai/v1/")
        .or_else(|| path.strip_prefix("/openai/"))?;
    let api = match operation {
        "chat/completions" => Api::OpenAiChat,
        "completions" => Api::OpenAiCompletions,
        "embeddings" => Api::OpenAiEmbeddings,
        "responses" => Api::OpenAiResponses,
        _ => return None,
    };
    Some(route(api, None))
}

fn route(api: Api, deployment: Option<&str>) -> Route {
    Route {
        api,
        provider: PROVIDER.to_owned(),
        path_model: deployment.filter(|d| !d.is_empty()).map(str::to_owned),
        path_stream: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::call::{Request, Response};
    use crate::providers::{self, FrameOutcome, StreamState};
    use crate::stream::Frame;

    #[test]
    fn detects_deployment_paths() {
        let r = detect(
            "myres.openai.azure.com",
            "/openai/deployments/gpt4o-prod/chat/completions?api-version=2024-10-21",
        )
        .unwrap();
        assert_eq!(r.api, Api::OpenAiChat);
        assert_eq!(r.provider, "azure.ai.openai");
        assert_eq!(r.path_model.as_deref(), Some("gpt4o-prod"));
        let d = |h, p| detect(h, p).map(|r| (r.api, r.path_model));
        assert_eq!(
            d(
                "x.cognitiveservices.azure.com",
                "/openai/deployments/emb/embeddings"
            ),
            Some((Api::OpenAiEmbeddings, Some("emb".to_owned())))
        );
        assert_eq!(
            d("gw.corp.example", "/openai/deployments/inst/completions"),
            Some((Api::OpenAiCompletions, Some("inst".to_owned())))
        );
        assert_eq!(
            d(
                "x.openai.azure.com",
                "/openai/deployments//chat/completions"
            ),
            Some((Api::OpenAiChat, None))
        );
        assert_eq!(
            d(
                "x.openai.azure.com",
                "/openai/deployments/d/images/generations"
            ),
            None
        );
        assert_eq!(d("x.openai.azure.com", "/openai/deployments/d"), None);
        assert_eq!(d("x.openai.azure.com", "/openai/deployments/"), None);
    }

    #[test]
    fn detects_v1_paths_on_azure_hosts_only() {
        let d = |h, p| detect(h, p).map(|r| (r.api, r.path_model));
        assert_eq!(
            d("MyRes.OpenAI.Azure.com", "/openai/v1/chat/completions"),
            Some((Api::OpenAiChat, None))
        );
        assert_eq!(
            d("r.openai.azure.com", "/openai/v1/responses"),
            Some((Api::OpenAiResponses, None))
        );
        assert_eq!(
            d(
                "r.services.ai.azure.com",
                "/openai/responses?api-version=2025-03-01-preview"
            ),
            Some((Api::OpenAiResponses, None))
        );
        assert_eq!(
            d("r.openai.azure.com", "/openai/v1/embeddings"),
            Some((Api::OpenAiEmbeddings, None))
        );
        assert_eq!(d("api.groq.com", "/openai/v1/chat/completions"), None);
        assert_eq!(d("openai.azure.com", "/openai/v1/chat/completions"), None);
        assert_eq!(d("r.openai.azure.com", "/openai/v1/models"), None);
        assert_eq!(d("", ""), None);
        // Through the dispatcher, Groq's path still reads as OpenAI-compatible, Groq's.
        let r = providers::detect("api.groq.com", "/openai/v1/chat/completions", &[]).unwrap();
        assert_eq!((r.api, r.provider.as_str()), (Api::OpenAiChat, "groq"));
        let r = providers::detect("r.openai.azure.com:443", "/openai/v1/chat/completions", &[])
            .unwrap();
        assert_eq!(r.provider, PROVIDER);
    }

    #[test]
    fn deployment_is_the_request_model() {
        let r = detect(
            "r.openai.azure.com",
            "/openai/deployments/prod-4o/chat/completions",
        )
        .unwrap();
        let mut req = Request::default();
        providers::request(
            &r,
            br#"{"messages":[{"role":"user","content":"hi"}],"max_tokens":20}"#,
            &mut req,
        );
        assert_eq!(req.model.as_deref(), Some("prod-4o"));
        assert_eq!(req.max_tokens, Some(20));
    }

    #[test]
    fn stream_quirks() {
        let r = detect(
            "r.openai.azure.com",
            "/openai/deployments/prod-4o/chat/completions",
        )
        .unwrap();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let mut feed =
            |d: &str| providers::frame(&r, &Frame::Sse { event: "", data: d }, &mut st, &mut resp);
        let first = feed(
            r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"}}}]}"#,
        );
        assert_eq!(first, FrameOutcome::default());
        let role = feed(
            r#"{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},"finish_reason":null,"index":0,"logprobs":null}],"created":1,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","system_fingerprint":"fp_1","usage":null}"#,
        );
        assert!(!role.content);
        let text = feed(
            r#"{"choices":[{"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"delta":{"content":"Hi"},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","usage":null}"#,
        );
        assert!(text.content);
        let filter = feed(
            r#"{"choices":[{"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":2},"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":null,"index":0}],"created":0,"id":"","model":"","object":""}"#,
        );
        assert_eq!(filter, FrameOutcome::default());
        feed(
            r#"{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0}],"created":1,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","usage":null}"#,
        );
        let usage = feed(
            r#"{"choices":[],"created":1,"id":"chatcmpl-A","model":"gpt-4o-2024-11-20","object":"chat.completion.chunk","usage":{"completion_tokens":1,"prompt_tokens":9,"total_tokens":10}}"#,
        );
        assert!(usage.usage_only);
        assert_eq!(resp.id.as_deref(), Some("chatcmpl-A"));
        assert_eq!(resp.model.as_deref(), Some("gpt-4o-2024-11-20"));
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(9), Some(1)));
    }

    #[test]
    fn content_filter_error_body() {
        let r = detect(
            "r.openai.azure.com",
            "/openai/deployments/d/chat/completions",
        )
        .unwrap();
        let mut resp = Response::default();
        providers::response(
            &r,
            br#"{"error":{"message":"The response was filtered","type":null,"param":"prompt","code":"content_filter","status":400}}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("content_filter"));
    }
}
