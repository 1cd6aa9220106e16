//! The normalized record of one LLM call. Every provider fills in the same `Call`; telemetry, budgets and
//! redaction read only this. Field meanings follow the OpenTelemetry GenAI semantic conventions.

mod evidence;
mod output;

pub use evidence::{Evidence, Findings};
pub(crate) use output::floor_boundary;
pub use output::{ChoiceOut, OutputCapture, ToolCallOut, SLACK};

/// The API shape of a request: decides how request and response bodies are read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    OpenAiChat,
    OpenAiResponses,
    OpenAiEmbeddings,
    OpenAiCompletions,
    AnthropicMessages,
    Gemini,
    BedrockConverse,
    BedrockInvoke,
    /// InvokeModel with an embedding model (Titan, Cohere, Nova embeddings).
    BedrockEmbeddings,
    CohereChat,
    OllamaChat,
    OllamaGenerate,
}

impl Api {
    /// The name used in configuration (`routes[].api`) and docs.
    pub fn name(self) -> &'static str {
        match self {
            Api::OpenAiChat => "openai.chat",
            Api::OpenAiResponses => "openai.responses",
            Api::OpenAiEmbeddings => "openai.embeddings",
            Api::OpenAiCompletions => "openai.completions",
            Api::AnthropicMessages => "anthropic.messages",
            Api::Gemini => "gemini",
            Api::BedrockConverse => "bedrock.converse",
            Api::BedrockInvoke => "bedrock.invoke",
            Api::BedrockEmbeddings => "bedrock.embeddings",
            Api::CohereChat => "cohere.chat",
            Api::OllamaChat => "ollama.chat",
            Api::OllamaGenerate => "ollama.generate",
        }
    }

    pub const ALL: [Api; 12] = [
        Api::OpenAiChat,
        Api::OpenAiResponses,
        Api::OpenAiEmbeddings,
        Api::OpenAiCompletions,
        Api::AnthropicMessages,
        Api::Gemini,
        Api::BedrockConverse,
        Api::BedrockInvoke,
        Api::BedrockEmbeddings,
        Api::CohereChat,
        Api::OllamaChat,
        Api::OllamaGenerate,
    ];

    /// The API of a configuration name (`name`). A match, not a search of `ALL` by `name()`, which the
    /// compiler unrolls into a comparison per API (3 KB of the module).
    pub fn from_name(s: &str) -> Option<Api> {
        Some(match s {
            "openai.chat" => Api::OpenAiChat,
            "openai.responses" => Api::OpenAiResponses,
            "openai.embeddings" => Api::OpenAiEmbeddings,
            "openai.completions" => Api::OpenAiCompletions,
            "anthropic.messages" => Api::AnthropicMessages,
            "gemini" => Api::Gemini,
            "bedrock.converse" => Api::BedrockConverse,
            "bedrock.invoke" => Api::BedrockInvoke,
            "bedrock.embeddings" => Api::BedrockEmbeddings,
            "cohere.chat" => Api::CohereChat,
            "ollama.chat" => Api::OllamaChat,
            "ollama.generate" => Api::OllamaGenerate,
            _ => return None,
        })
    }
}

/// What request routing decided about a call before any body was seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub api: Api,
    /// `gen_ai.provider.name` (e.g. `openai`, `azure.ai.openai`, `gcp.vertex_ai`).
    pub provider: String,
    /// Model named by the URL (Gemini, Vertex, Bedrock, Azure deployment), if any.
    pub path_model: Option<String>,
    /// The URL itself asks for a stream (Gemini `streamGenerateContent`, Bedrock `converse-stream`, ...).
    pub path_stream: bool,
}

/// Token usage with semconv meaning: `input` INCLUDES cached tokens, `output` INCLUDES reasoning tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    pub cache_read: Option<u64>,
    pub cache_write: Option<u64>,
    pub reasoning: Option<u64>,
}

impl Usage {
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }
    pub fn total(&self) -> u64 {
        self.input
            .unwrap_or(0)
            .saturating_add(self.output.unwrap_or(0))
    }
}

/// A tool call the model asked for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
}

/// What the request body (and URL) said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    pub model: Option<String>,
    pub stream: bool,
    pub max_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub presence_penalty: Option<f64>,
    pub seed: Option<i64>,
    pub choice_count: Option<u64>,
    pub stop_sequences: Vec<String>,
    /// `gen_ai.output.type`: text | json | image | speech.
    pub output_type: Option<&'static str>,
    pub tool_names: Vec<String>,
    /// SHA-256 of the system prompt text, hex prefix.
    pub system_prompt_hash: Option<String>,
    pub service_tier: Option<String>,
    pub reasoning_effort: Option<String>,
    /// OpenAI-shaped streaming request that did not ask for usage; tollgate asked for it on the client's behalf.
    pub include_usage_injected: bool,
    /// Bytes of prompt text seen (for estimates when the provider reports no usage).
    pub prompt_chars: u64,
    /// Embeddings: `gen_ai.embeddings.dimension.count` (requested vector size).
    pub embedding_dimensions: Option<u64>,
    /// Embeddings: `gen_ai.request.encoding_formats`.
    pub encoding_formats: Vec<String>,
    /// `tollgate.request.signed`: a signature covers the request (AWS SigV4), so tollgate changed none of
    /// what it signs.
    pub signed: bool,
    /// `tollgate.request.unmodified`: why a rewrite that applied was not made (`signed`).
    pub rewrite_skipped: Option<&'static str>,
    /// `tollgate.request.uninspected`: why the body was not read before forwarding (`too_large`,
    /// `undeclared_length`, `encoding`).
    pub uninspected: Option<&'static str>,
}

/// What the response said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Response {
    pub id: Option<String>,
    pub model: Option<String>,
    /// One per choice, in choice order.
    pub finish_reasons: Vec<String>,
    pub usage: Usage,
    pub tool_calls: Vec<ToolCall>,
    /// Provider error type (`rate_limit_error`, `ThrottlingException`, ...) from an error body or stream event.
    pub error_type: Option<String>,
    pub service_tier: Option<String>,
    pub system_fingerprint: Option<String>,
    /// Characters of generated text seen (for output estimates).
    pub output_chars: u64,
    /// The stream ended without its terminal event (aborted, reset, truncated).
    pub incomplete: bool,
    /// Generated text and tool calls, kept only when content capture is on (bounded).
    pub content: OutputCapture,
}

impl Response {
    /// Record the finish reason of choice `index`, growing the list as needed (bounded).
    pub fn set_finish_reason(&mut self, index: usize, reason: &str) {
        const MAX_CHOICES: usize = 128;
        if index >= MAX_CHOICES {
            return;
        }
        if self.finish_reasons.len() <= index {
            self.finish_reasons.resize(index + 1, String::new());
        }
        if let Some(slot) = self.finish_reasons.get_mut(index) {
            reason.clone_into(slot);
        }
    }

    pub fn add_tool_call(&mut self, id: &str, name: &str) {
        const MAX_TOOL_CALLS: usize = 128;
        self.content.tool_call(0, id, name);
        if self.tool_calls.len() < MAX_TOOL_CALLS {
            self.tool_calls.push(ToolCall {
                id: id.to_owned(),
                name: name.to_owned(),
            });
        }
    }
}

/// The decision recorded on the span (`tollgate.budget.decision`) and in Envoy counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    Denied,
    Clamped,
    DryRunDenied,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
            Verdict::Clamped => "clamped",
            Verdict::DryRunDenied => "dry_run_denied",
        }
    }
}

/// What the span reports about a call's budget check.
#[derive(Clone, Debug, PartialEq)]
pub struct BudgetOutcome {
    pub verdict: Verdict,
    /// `rules[i]` of the tightest rule.
    pub rule: Option<String>,
    pub remaining_tokens: Option<u64>,
}

/// W3C trace identity of the gateway span.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, when the request carried a valid `traceparent`.
    pub parent_span_id: Option<[u8; 8]>,
    pub sampled: bool,
    pub tracestate: String,
}

/// Everything tollgate learned about one LLM call; built up by the host as the exchange proceeds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Call {
    pub route: Option<Route>,
    pub request: Request,
    pub response: Response,
    pub http_status: Option<u16>,
    /// `server.address` / `server.port`: the provider host the request was addressed to.
    pub server_address: String,
    pub server_port: Option<u16>,
    pub conversation_id: Option<String>,
    pub ids: SpanIds,
    /// Wall clock (ns since the Unix epoch).
    pub start_ns: u64,
    pub end_ns: u64,
    /// When the first chunk of a streamed response arrived (any event but a keep-alive).
    pub first_chunk_ns: Option<u64>,
    /// When the first generated content of a streamed response arrived (text, tool call, refusal or
    /// reasoning).
    pub first_content_ns: Option<u64>,
    /// Output (and possibly input) tokens were estimated because the provider reported none.
    pub usage_estimated: bool,
    /// Transport-level failure (client abort, upstream reset, timeout) rather than a provider error.
    pub transport_error: Option<&'static str>,
    /// `tollgate.tenant`: who the call is attributed to (when tenants or budgets are configured).
    pub tenant: Option<String>,
    /// The budget check's result, when budgets apply to the call.
    pub budget: Option<BudgetOutcome>,
    /// `tollgate.cost.usd` from the `pricing` table, when a price matches the model.
    pub cost_usd: Option<f64>,
    /// Redaction results, security flags and captured content.
    pub evidence: Evidence,
}

impl Call {
    /// `gen_ai.request.model`, falling back to the model named in the URL.
    pub fn request_model(&self) -> Option<&str> {
        self.request
            .model
            .as_deref()
            .or(self.route.as_ref().and_then(|r| r.path_model.as_deref()))
    }

    /// `error.type` per semconv: the provider's error type, else the HTTP status class, else a transport error.
    pub fn error_type(&self) -> Option<String> {
        if let Some(t) = &self.response.error_type {
            return Some(t.clone());
        }
        match self.http_status {
            Some(s) if s >= 400 => return Some(s.to_string()),
            _ => {}
        }
        self.transport_error.map(str::to_owned)
    }

    /// When the provider reported no output tokens, estimate them from the generated text (≈ 4 chars a token)
    /// and mark the usage estimated; never report 0 as if it were exact.
    pub fn estimate_missing_usage(&mut self) {
        let u = &mut self.response.usage;
        if u.output.is_none() && self.response.output_chars > 0 {
            u.output = Some(self.response.output_chars.div_ceil(4));
            self.usage_estimated = true;
        }
        if u.input.is_none() && self.request.prompt_chars > 0 && u.output.is_some() {
            u.input = Some(self.request.prompt_chars.div_ceil(4));
            self.usage_estimated = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_read_back() {
        for api in Api::ALL {
            assert_eq!(Api::from_name(api.name()), Some(api));
        }
        assert_eq!(Api::from_name("openai"), None);
    }
}
