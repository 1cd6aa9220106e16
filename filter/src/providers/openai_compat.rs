//! OpenAI-compatible servers tollgate knows by host: the `gen_ai.provider.name` each is reported as, and
//! whether tollgate asks its streams for usage (`stream_options.include_usage`).
//!
//! Names: the semantic conventions' well-known values where one exists (`groq`, `deepseek`, `x_ai`,
//! `perplexity`, `gcp.gemini`, `aws.bedrock`); otherwise the provider's name in lowercase, words joined
//! by `_` (the conventions' fallback, as in `mistral_ai`). A host not listed is reported as `openai`: the
//! API's flavour, which is what the conventions ask for when the actual provider is unknown. A configured
//! `routes` entry names any host (`providers::detect`).
//!
//! Usage in streams: OpenAI sends none unless the request sets `stream_options.include_usage`, so tollgate
//! sets it for the client and removes the extra usage-only chunk before the client sees it. It does so only
//! where the server is documented to take the option and reports no usage without it; a server that
//! rejects unknown fields would fail the request, and one that always reports usage would lose its usage
//! chunk to the removal.

use crate::call::{Api, Route};

/// Known hosts and the provider each is reported as.
static SERVERS: [(&str, &str); 11] = [
    ("api.openai.com", "openai"),
    ("api.groq.com", "groq"),
    ("api.deepseek.com", "deepseek"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("openrouter.ai", "openrouter"),
    ("api.together.xyz", "together_ai"),
    ("api.together.ai", "together_ai"),
    ("api.fireworks.ai", "fireworks_ai"),
    ("api.cerebras.ai", "cerebras"),
    // Gemini's OpenAI-compatible endpoint (`/v1beta/openai/chat/completions`).
    ("generativelanguage.googleapis.com", "gcp.gemini"),
];

/// `gen_ai.provider.name` for an OpenAI-shaped request to `host` (without port, any case).
pub fn provider(host: &str) -> &'static str {
    let host = host.to_ascii_lowercase();
    // Bedrock's OpenAI-compatible endpoint: `bedrock-mantle.{region}.api.aws`.
    if host.starts_with("bedrock-mantle.") && host.ends_with(".api.aws") {
        return "aws.bedrock";
    }
    SERVERS
        .iter()
        .find(|(h, _)| *h == host)
        .map_or("openai", |&(_, name)| name)
}

/// Whether tollgate may add `stream_options.include_usage` to a streaming request on `route` (Chat and
/// Completions), by the provider it is reported as:
/// - `openai`: OpenAI documents the option (API reference, Chat Completions `stream_options`) and sends no
///   usage without it. Hosts tollgate does not recognise are reported as `openai` too and are asked as
///   well: they are OpenAI behind a proxy or self-hosted servers that follow its API (vLLM, LiteLLM,
///   llama.cpp, Ollama's `/v1`); map one with `routes` under another name to leave its requests alone.
/// - `vllm` (a `routes` name): documented (vLLM's OpenAI-compatible server: `stream_options`, and
///   `continuous_usage_stats`).
/// - Not asked, because usage comes anyway: `groq` (the last chunk's `x_groq.usage`, Groq API reference,
///   read by `openai.rs`), `deepseek` (the last chunk, DeepSeek API docs), `openrouter` (its docs:
///   `include_usage` has no effect, full usage is always included), `perplexity` (every chunk),
///   `mistral_ai` (the final chunk; its API also rejects unknown fields).
/// - Not asked, because the option is not documented for every version: `azure.ai.openai` (api-versions
///   before 2024-09-01-preview reject it), and every other name (`x_ai`, `together_ai`, `fireworks_ai`,
///   `cerebras`, ...): their streams report usage when the server sends it, and are estimated otherwise.
pub fn may_inject_usage(route: &Route) -> bool {
    matches!(route.api, Api::OpenAiChat | Api::OpenAiCompletions)
        && matches!(route.provider.as_str(), "openai" | "vllm")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{detect, RouteRule};

    #[test]
    fn providers_by_host() {
        for (host, path, want) in [
            ("api.openai.com", "/v1/chat/completions", "openai"),
            ("api.groq.com", "/openai/v1/chat/completions", "groq"),
            ("API.GROQ.COM:443", "/openai/v1/chat/completions", "groq"),
            ("api.deepseek.com", "/chat/completions", "deepseek"),
            ("api.deepseek.com", "/responses", "deepseek"),
            ("api.x.ai", "/v1/chat/completions", "x_ai"),
            ("api.perplexity.ai", "/chat/completions", "perplexity"),
            ("openrouter.ai", "/api/v1/chat/completions", "openrouter"),
            ("api.together.xyz", "/v1/completions", "together_ai"),
            (
                "api.fireworks.ai",
                "/inference/v1/chat/completions",
                "fireworks_ai",
            ),
            ("api.cerebras.ai", "/v1/chat/completions", "cerebras"),
            (
                "generativelanguage.googleapis.com",
                "/v1beta/openai/chat/completions",
                "gcp.gemini",
            ),
            (
                "bedrock-mantle.us-east-1.api.aws",
                "/openai/v1/responses",
                "aws.bedrock",
            ),
            ("api.mistral.ai", "/v1/chat/completions", "mistral_ai"),
            (
                "my-resource.openai.azure.com",
                "/openai/v1/chat/completions",
                "azure.ai.openai",
            ),
            ("llm-proxy.internal", "/v1/chat/completions", "openai"),
        ] {
            let r = detect(host, path, &[]).unwrap();
            assert_eq!(r.provider, want, "{host}{path}");
        }
        // A configured route still names the host.
        let rules = [RouteRule {
            host: "api.groq.com".into(),
            path_prefix: String::new(),
            api: None,
            provider: "groq-eu".into(),
        }];
        let r = detect("api.groq.com", "/openai/v1/chat/completions", &rules).unwrap();
        assert_eq!(r.provider, "groq-eu");
    }

    #[test]
    fn usage_is_asked_for_only_where_documented_and_needed() {
        let route = |host: &str, path: &str| detect(host, path, &[]).unwrap();
        assert!(may_inject_usage(&route(
            "api.openai.com",
            "/v1/chat/completions"
        )));
        assert!(may_inject_usage(&route(
            "api.openai.com",
            "/v1/completions"
        )));
        assert!(may_inject_usage(&route(
            "llm-proxy.internal",
            "/v1/chat/completions"
        )));
        assert!(!may_inject_usage(&route("api.openai.com", "/v1/responses")));
        assert!(!may_inject_usage(&route(
            "api.openai.com",
            "/v1/embeddings"
        )));
        for host in [
            "api.x.ai",
            "api.groq.com",
            "api.deepseek.com",
            "openrouter.ai",
            "api.perplexity.ai",
            "api.together.xyz",
            "api.fireworks.ai",
            "api.cerebras.ai",
            "api.mistral.ai",
            "generativelanguage.googleapis.com",
        ] {
            let path = if host == "api.groq.com" {
                "/openai/v1/chat/completions"
            } else {
                "/v1/chat/completions"
            };
            assert!(!may_inject_usage(&route(host, path)), "{host}");
        }
        let vllm = [RouteRule {
            host: "vllm.internal".into(),
            path_prefix: "/v1/".into(),
            api: None,
            provider: "vllm".into(),
        }];
        let r = detect("vllm.internal", "/v1/chat/completions", &vllm).unwrap();
        assert!(may_inject_usage(&r));
        let other = [RouteRule {
            provider: "llamacpp".into(),
            ..vllm[0].clone()
        }];
        let r = detect("vllm.internal", "/v1/chat/completions", &other).unwrap();
        assert!(!may_inject_usage(&r));
    }
}
