//! AWS Bedrock Runtime: Converse / ConverseStream (one shape for every model) and InvokeModel /
//! InvokeModelWithResponseStream, whose bodies are each model family's own (`bedrock/invoke.rs`; Claude's
//! are Anthropic Messages, read by `anthropic.rs`). Bedrock bodies carry neither a response id nor a model:
//! the id is the `x-amzn-requestid` response header and the model comes from the path.

use super::anthropic;
use super::common::prompt_hash;
use super::common::{count_chars, set_if_nonempty, Named};
use super::gemini::percent_decode;
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::capture::{self, Input};
use crate::codec::headers::Headers;
use crate::codec::json::lenient::{items, Read};
use crate::codec::json::lenient::{json_struct, read, Lenient, LenientStr};
use crate::codec::json::skim::{once, Reader};
use crate::codec::json::tape;
use crate::codec::json::Json;
use crate::reply::Refusal;
use crate::stream::{Frame, Framing};
use std::borrow::Cow;

mod invoke;

pub fn detect(host: &str, path: &str) -> Option<Route> {
    // `bedrock-runtime.{region}.amazonaws.com`, `bedrock-runtime-fips.{region}…`, VPC endpoints
    // (`vpce-….bedrock-runtime.{region}.vpce.amazonaws.com`); "" when a configured route asks for inference.
    let host = host.to_ascii_lowercase();
    let aws = host.contains("bedrock-runtime") && host.contains(".amazonaws.com");
    if !host.is_empty() && !aws {
        return None;
    }
    let path = path.split('?').next().unwrap_or("");
    let (model, op) = path.strip_prefix("/model/")?.rsplit_once('/')?;
    let (api, stream) = match op {
        "converse" => (Api::BedrockConverse, false),
        "converse-stream" => (Api::BedrockConverse, true),
        // Embedding models answer InvokeModel with vectors: `gen_ai.operation.name` is `embeddings`.
        "invoke" if model.to_ascii_lowercase().contains("embed") => (Api::BedrockEmbeddings, false),
        "invoke" => (Api::BedrockInvoke, false),
        "invoke-with-response-stream" => (Api::BedrockInvoke, true),
        _ => return None,
    };
    if model.is_empty() {
        return None;
    }
    Some(Route {
        api,
        provider: "aws.bedrock".to_owned(),
        // Model ids and ARNs arrive escaped (`arn%3Aaws%3Abedrock…%2F…`).
        path_model: Some(percent_decode(model)),
        path_stream: stream,
    })
}

json_struct! {
    /// A Converse request, and the InvokeModel request of every model family but Claude's (the Bedrock user
    /// guide's inference parameters pages): Nova's is Converse's shape with its own `inferenceConfig` names,
    /// the others name their few parameters each their own way, and no two families give one name
    /// different meanings.
    pub(super) struct BedrockRequest<'a> {
        messages: Lenient<Vec<Lenient<Message<'a>>>> = "messages",
        system: Lenient<Vec<Lenient<Block<'a>>>> = "system",
        /// Converse and Nova `inferenceConfig`, Titan Text `textGenerationConfig`.
        inference_config: Lenient<InferenceConfig> = "inferenceConfig" | "textGenerationConfig",
        tool_config: Lenient<ToolConfig<'a>> = "toolConfig",
        additional: Lenient<Additional> = "additionalModelRequestFields",
        /// Titan `inputText`; Llama, Mistral, Cohere Command, AI21 `prompt`; Cohere Command R `message`.
        prompt: LenientStr<'a> = "inputText" | "prompt" | "message",
    }
}

/// A Bedrock request body: its `BedrockRequest` members, and the model parameters that Llama, Mistral,
/// Cohere and AI21 write at the top level, read as an `InferenceConfig` of the same object.
pub(super) struct RequestBody<'a> {
    pub(super) body: BedrockRequest<'a>,
    pub(super) top: InferenceConfig,
}

impl<'de: 'a, 'a> Read<'de> for RequestBody<'a> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        Some(RequestBody {
            body: BedrockRequest::read(v)?,
            top: InferenceConfig::read(v)?,
        })
    }
}

json_struct! {
    struct Message<'a> {
        content: Lenient<Vec<Lenient<Block<'a>>>> = "content",
    }
}

json_struct! {
    /// A Converse content block: exactly one member is set (`text`, `toolUse`, `image`, `cachePoint`, ...).
    struct Block<'a> {
        text: LenientStr<'a> = "text",
        tool_use: Lenient<ToolUse<'a>> = "toolUse",
        reasoning: Lenient<Reasoning<'a>> = "reasoningContent",
    }
}

json_struct! {
    struct ToolUse<'a> {
        id: LenientStr<'a> = "toolUseId",
        name: LenientStr<'a> = "name",
        /// A string of partial JSON in stream deltas.
        input: LenientStr<'a> = "input",
    }
}

json_struct! {
    struct Reasoning<'a> {
        text: LenientStr<'a> = "text",
        reasoning_text: Lenient<ReasoningText<'a>> = "reasoningText",
    }
}

json_struct! {
    struct ReasoningText<'a> {
        text: LenientStr<'a> = "text",
    }
}

json_struct! {
    /// Model parameters: Converse `inferenceConfig` (`maxTokens`, `topP`), Nova's (`max_new_tokens`,
    /// `top_p`, `top_k`, or Converse's names), Titan's `textGenerationConfig` (`maxTokenCount`), and the
    /// top level of Llama (`max_gen_len`), Mistral (`max_tokens`, `stop`), Cohere (`p`, `k`,
    /// `stop_sequences`, Command R's `seed`) and AI21 (`maxTokens`, `topP`) bodies.
    pub(super) struct InferenceConfig {
        max_tokens: Lenient<u64> =
            "maxTokens" | "max_new_tokens" | "maxTokenCount" | "max_tokens" | "max_gen_len",
        temperature: Lenient<f64> = "temperature",
        top_p: Lenient<f64> = "topP" | "top_p" | "p",
        top_k: Lenient<f64> = "topK" | "top_k" | "k",
        stop_sequences: Lenient<Vec<Lenient<String>>> = "stopSequences" | "stop" | "stop_sequences",
        seed: Lenient<i64> = "seed",
    }
}

json_struct! {
    struct ToolConfig<'a> {
        tools: Lenient<Vec<Lenient<ToolEntry<'a>>>> = "tools",
    }
}

json_struct! {
    struct ToolEntry<'a> {
        tool_spec: Lenient<Named<'a>> = "toolSpec",
    }
}

json_struct! {
    /// Model-specific parameters Converse passes through; top_k is the one semconv names.
    struct Additional {
        top_k: Lenient<f64> = "top_k" | "topK",
    }
}

fn blocks_text(blocks: Vec<Lenient<Block<'_>>>) -> String {
    let mut out = String::new();
    for t in blocks.into_iter().filter_map(|b| b.get()?.text.get()) {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&t);
    }
    out
}

pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    if req.model.is_none() {
        req.model.clone_from(&route.path_model);
    }
    // The URL says whether the call streams, and names the model.
    req.stream = route.path_stream;
    if route.api == Api::BedrockInvoke && invoke::format(route) == invoke::Format::Claude {
        // Anthropic Messages without `model` and `stream`.
        anthropic::request(route, body, req);
        req.stream = route.path_stream;
        return;
    }
    let Some(RequestBody { body: r, top }) = read::<RequestBody<'_>>(body) else {
        return;
    };
    let c = r.inference_config.get().unwrap_or_default();
    req.max_tokens = c.max_tokens.get().or(top.max_tokens.get());
    req.temperature = c.temperature.get().or(top.temperature.get());
    req.top_p = c.top_p.get().or(top.top_p.get());
    req.top_k = c
        .top_k
        .get()
        .or(top.top_k.get())
        .or(r.additional.get().and_then(|a| a.top_k.get()));
    let stop = c.stop_sequences.get().or(top.stop_sequences.get());
    req.stop_sequences = items(Lenient(stop)).collect();
    req.seed = top.seed.get();
    req.tool_names = r
        .tool_config
        .get()
        .and_then(|t| t.tools.get())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.get()?.tool_spec.get()?.name.get().map(Cow::into_owned))
        .collect();
    let system = blocks_text(r.system.get().unwrap_or_default());
    let mut chars = system.chars().count() as u64;
    for m in items(r.messages) {
        let text = blocks_text(m.content.get().unwrap_or_default());
        chars = chars.saturating_add(text.chars().count() as u64);
    }
    if let Some(p) = r.prompt.get() {
        chars = chars.saturating_add(p.chars().count() as u64);
    }
    req.prompt_chars = chars;
    if !system.is_empty() {
        req.system_prompt_hash = Some(prompt_hash(&system));
    }
}

json_struct! {
    /// Converse `usage` (Bedrock also writes the cache counters as `cacheReadInputTokenCount` /
    /// `cacheWriteInputTokenCount`, alone in InvokeModel Nova bodies, beside the documented names in many
    /// Converse answers), and `amazon-bedrock-invocationMetrics`.
    struct WireUsage {
        input: Lenient<u64> = "inputTokens" | "inputTokenCount",
        output: Lenient<u64> = "outputTokens" | "outputTokenCount",
        cache_read: Lenient<u64> = "cacheReadInputTokens" | "cacheReadInputTokenCount",
        cache_write: Lenient<u64> = "cacheWriteInputTokens" | "cacheWriteInputTokenCount",
    }
}

impl WireUsage {
    /// Bedrock reports `inputTokens` WITHOUT the cache reads and writes (AWS prompt-caching guide:
    /// totalTokens = inputTokens + cacheRead + cacheWrite + outputTokens), as Anthropic does, so semconv
    /// input = inputTokens + cacheReadInputTokens + cacheWriteInputTokens. The same holds for the
    /// `amazon-bedrock-invocationMetrics` counts and InvokeModel's headers, whose cache fields may be
    /// missing: then the cache counts already read (from Claude's events) are kept and added.
    fn apply(self, resp: &mut Response) {
        let u = &mut resp.usage;
        let read = self.cache_read.get().or(u.cache_read);
        let write = self.cache_write.get().or(u.cache_write);
        if let Some(raw) = self.input.get() {
            u.input = Some(
                raw.saturating_add(read.unwrap_or(0))
                    .saturating_add(write.unwrap_or(0)),
            );
        }
        u.cache_read = read;
        u.cache_write = write;
        u.output = self.output.get().or(u.output);
    }
}

json_struct! {
    /// A Converse answer, and the InvokeModel answer (whole or one stream chunk) of every model family but
    /// Claude's: Nova's is Converse's shape (and its stream chunks hold one Converse stream event each);
    /// the others name their generated text and stop reason each their own way, never one name for two
    /// things. Usage is Bedrock's own, in the last chunk's `amazon-bedrock-invocationMetrics` (and
    /// InvokeModel's response headers, `response_headers`).
    struct Body<'a> {
        output: Lenient<Output<'a>> = "output",
        /// Converse, Nova `stopReason`; Titan `completionReason`; Llama `stop_reason`; Cohere `finish_reason`.
        stop_reason: LenientStr<'a> = "stopReason" | "completionReason" | "stop_reason" | "finish_reason",
        usage: Lenient<WireUsage> = "usage",
        /// AWS JSON error bodies sometimes name their type (`ThrottlingException`, or a
        /// `namespace#ThrottlingException` shape id); usually the type is only in `x-amzn-errortype`.
        error_type: LenientStr<'a> = "__type",
        /// Titan stream chunks `outputText`, Llama `generation`, Cohere `text`.
        text: LenientStr<'a> = "outputText" | "generation" | "text",
        /// One per choice: Titan `results`, Mistral `outputs`, Cohere Command `generations`, AI21
        /// Jurassic-2 `completions`, AI21 Jamba `choices`.
        choices: Lenient<Vec<Lenient<Choice<'a>>>> =
            "results" | "outputs" | "generations" | "completions" | "choices",
        /// Nova stream chunks: one Converse stream event, keyed by its name.
        event: Lenient<StreamPayload<'a>> =
            "contentBlockDelta" | "contentBlockStart" | "messageStop" | "metadata",
        /// Bedrock's metering, on the last chunk of an InvokeModel stream of any family.
        metrics: Lenient<WireUsage> = "amazon-bedrock-invocationMetrics",
    }
}

json_struct! {
    struct Choice<'a> {
        text: LenientStr<'a> = "outputText" | "text",
        stop_reason: LenientStr<'a> = "completionReason" | "stop_reason" | "finish_reason",
        /// AI21 Jurassic-2: `{"reason": "endoftext"}`.
        reason: Lenient<Reason<'a>> = "finishReason",
    }
}

json_struct! {
    struct Reason<'a> {
        reason: LenientStr<'a> = "reason",
    }
}

json_struct! {
    struct Output<'a> {
        message: Lenient<Message<'a>> = "message",
    }
}

/// Fold one content block (whole or a stream start/delta); returns whether it is generated content.
#[inline(never)]
fn apply_block(b: Block<'_>, resp: &mut Response) -> bool {
    let mut content = false;
    if let Some(t) = b.tool_use.get() {
        let id = t.id.get().unwrap_or_default();
        let name = t.name.get().unwrap_or_default();
        if !id.is_empty() || !name.is_empty() {
            resp.add_tool_call(&id, &name);
            content = true;
        }
        if let Some(input) = t.input.get().filter(|i| !i.is_empty()) {
            resp.content.tool_arguments(0, &input);
            count_chars(resp, &input);
            content = true;
        }
    }
    let reasoning = b
        .reasoning
        .get()
        .and_then(|r| r.text.get().or_else(|| r.reasoning_text.get()?.text.get()));
    if let Some(t) = b.text.as_ref() {
        resp.content.text(0, t);
    }
    for text in [b.text.get(), reasoning].into_iter().flatten() {
        content |= apply_text(text, resp);
    }
    content
}

/// Count generated text; whether there was any.
fn apply_text(text: Cow<'_, str>, resp: &mut Response) -> bool {
    if text.is_empty() {
        return false;
    }
    count_chars(resp, &text);
    true
}

/// Choice `i`'s stop reason and generated text; whether there was text.
#[inline(never)]
fn apply_choice(
    i: usize,
    stop: Option<Cow<'_, str>>,
    text: Option<Cow<'_, str>>,
    resp: &mut Response,
) -> bool {
    if let Some(reason) = stop {
        resp.set_finish_reason(i, &reason);
    }
    let Some(t) = text else { return false };
    resp.content.text(i, &t);
    apply_text(t, resp)
}

/// One Converse stream event (also the payload of a Nova InvokeModel chunk); whether it carried content.
fn apply_event(p: StreamPayload<'_>, resp: &mut Response) -> bool {
    let mut content = false;
    for b in [p.start.get(), p.delta.get()].into_iter().flatten() {
        content |= apply_block(b, resp);
    }
    if let Some(reason) = p.stop_reason.get() {
        resp.set_finish_reason(0, &reason);
    }
    if let Some(u) = p.usage.get() {
        u.apply(resp);
    }
    content
}

/// Fold a `Body` (a whole answer or an InvokeModel stream chunk); whether it carried generated content,
/// and whether it was the stream's last chunk (Bedrock's metering). `all`: false reads the metering only
/// (Claude's events, whose other members `anthropic.rs` reads).
fn apply_body(b: Body<'_>, all: bool, resp: &mut Response) -> (bool, bool) {
    let last = match b.metrics.get() {
        Some(m) => {
            m.apply(resp);
            true
        }
        None => false,
    };
    if !all {
        return (false, last);
    }
    let mut content = apply_choice(0, b.stop_reason.get(), b.text.get(), resp);
    if let Some(u) = b.usage.get() {
        u.apply(resp);
    }
    if let Some(t) = b.error_type.get() {
        set_if_nonempty(
            &mut resp.error_type,
            Some(Cow::Borrowed(error_type_name(&t))),
        );
    }
    for (i, c) in b.choices.get().unwrap_or_default().into_iter().enumerate() {
        let Some(c) = c.get() else { continue };
        let stop = c.stop_reason.get().or_else(|| c.reason.get()?.reason.get());
        content |= apply_choice(i, stop, c.text.get(), resp);
    }
    for blk in b
        .output
        .get()
        .and_then(|o| o.message.get())
        .and_then(|m| m.content.get())
        .unwrap_or_default()
        .into_iter()
        .filter_map(Lenient::get)
    {
        content |= apply_block(blk, resp);
    }
    if let Some(p) = b.event.get() {
        content |= apply_event(p, resp);
    }
    (content, last)
}

pub fn response(route: &Route, body: &[u8], resp: &mut Response) {
    if route.api == Api::BedrockInvoke {
        invoke::response(route, body, resp);
        return;
    }
    read_body(body, true, resp);
}

/// Read a `Body`; what `apply_body` says, or None when it is not one.
fn read_body(body: &[u8], all: bool, resp: &mut Response) -> Option<(bool, bool)> {
    read::<Body<'_>>(body).map(|b| apply_body(b, all, resp))
}

/// The bare error name from an `x-amzn-errortype` header or a `__type` field
/// (`ThrottlingException:http://internal.amazon.com/…` or `com.amazon…#ThrottlingException`).
pub fn error_type_name(value: &str) -> &str {
    let name = value.split(':').next().unwrap_or("");
    let name = name.rsplit('#').next().unwrap_or("");
    name.trim()
}

/// What the response head says: the request id (Bedrock bodies carry none) and, for InvokeModel, Bedrock's
/// own metering of every model family: `x-amzn-bedrock-input-token-count` / `-output-token-count`, with
/// prompt caching `-cache-read-input-token-count` / `-cache-write-input-token-count`. The input count
/// excludes cache reads and writes, as the Claude body's `input_tokens` does. Read before the body: a body
/// with its own usage (Claude, Nova) then sets the same counts again.
pub fn response_headers(route: &Route, headers: &Headers, resp: &mut Response) {
    resp.id = headers.get_string("x-amzn-requestid");
    // Error answers name their type in `x-amzn-errortype` (the body's `message` says why).
    if let Some(t) = headers.get_str("x-amzn-errortype") {
        set_if_nonempty(
            &mut resp.error_type,
            Some(Cow::Borrowed(error_type_name(&t))),
        );
    }
    if route.api == Api::BedrockConverse {
        return;
    }
    let [input, output, cache_read, cache_write] = [
        "x-amzn-bedrock-input-token-count",
        "x-amzn-bedrock-output-token-count",
        "x-amzn-bedrock-cache-read-input-token-count",
        "x-amzn-bedrock-cache-write-input-token-count",
    ]
    .map(|name| Lenient(header_count(headers, name)));
    WireUsage {
        input,
        output,
        cache_read,
        cache_write,
    }
    .apply(resp);
}

/// The count a header says.
fn header_count(headers: &Headers, name: &str) -> Option<u64> {
    headers.get_str(name)?.trim().parse().ok()
}

json_struct! {
    struct StreamPayload<'a> {
        start: Lenient<Block<'a>> = "start",
        delta: Lenient<Block<'a>> = "delta",
        stop_reason: LenientStr<'a> = "stopReason",
        usage: Lenient<WireUsage> = "usage",
        /// InvokeModelWithResponseStream `chunk` events: the model's own event, base64-encoded.
        bytes: LenientStr<'a> = "bytes",
    }
}

/// The base64 text of an InvokeModelWithResponseStream `chunk` payload (`{"bytes":"…"}`), read with the
/// skimmer; None for anything the serde path must judge (duplicates, odd types, escapes, no `bytes`).
pub(crate) fn fast_chunk_bytes(payload: &str) -> Option<&str> {
    let mut r = Reader::new(payload);
    r.begin_object()?;
    let mut bytes = None;
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        let bit = match key {
            b"start" => 1,
            b"delta" => 2,
            b"stopReason" => 4,
            b"usage" => 8,
            b"bytes" => 16,
            _ => 0,
        };
        if bit != 0 {
            once(&mut seen, bit)?;
        }
        if bit == 16 {
            bytes = Some(r.string()?.plain()?);
        } else {
            r.skip()?;
        }
    }
    if !r.at_end() {
        return None;
    }
    bytes
}

/// The fast path for InvokeModel's `chunk` events: the payload's base64 read with the skimmer, the model's
/// event inside with its own fast path (`invoke::chunk`).
pub fn fast_frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    let Frame::Aws {
        message_type,
        event_type: "chunk",
        payload,
        ..
    } = *frame
    else {
        return None;
    };
    if route.api != Api::BedrockInvoke || message_type == "exception" || message_type == "error" {
        return None;
    }
    let b64 = std::str::from_utf8(payload)
        .ok()
        .and_then(fast_chunk_bytes)?;
    Some(invoke::chunk(route, Some(b64), st, resp, anthropic::event))
}

/// Read one event-stream message (Converse's events, InvokeModel's chunks, exceptions).
pub fn frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    // Embeddings never stream.
    if route.api == Api::BedrockEmbeddings {
        return FrameOutcome::default();
    }
    let Frame::Aws {
        message_type,
        event_type,
        exception_type,
        payload,
    } = *frame
    else {
        return FrameOutcome::default();
    };
    if message_type == "exception" || message_type == "error" {
        // throttlingException, modelStreamErrorException, validationException, ...: the stream ends here.
        resp.error_type = Some(if exception_type.is_empty() {
            "_OTHER".to_owned()
        } else {
            exception_type.to_owned()
        });
        st.finished = true;
        return FrameOutcome::default();
    }
    let invoke_chunk_event = route.api == Api::BedrockInvoke && event_type == "chunk";
    let Some(p) = read::<StreamPayload<'_>>(payload) else {
        return FrameOutcome::default();
    };
    if invoke_chunk_event {
        let b64 = p.bytes.as_ref().map(|b| b.as_ref());
        return invoke::chunk(route, b64, st, resp, |event, st, resp| {
            (anthropic::read_event(event, st, resp), false)
        });
    }
    let mut content = false;
    match (route.api, event_type) {
        (Api::BedrockConverse, "contentBlockStart" | "contentBlockDelta" | "messageStop") => {
            content = apply_event(p, resp);
        }
        // `metadata` follows messageStop and is the only event with usage: the stream's last word.
        (Api::BedrockConverse, "metadata") => {
            apply_event(p, resp);
            st.finished = true;
        }
        // messageStart, contentBlockStop and future events carry nothing we read.
        _ => {}
    }
    FrameOutcome {
        content,
        usage_only: false,
    }
}

/// Amazon Bedrock: Converse, InvokeModel (each model family's own format) and their streams.
pub struct Bedrock;

impl super::Provider for Bedrock {
    fn operation(&self, route: &Route) -> &'static str {
        match route.api {
            Api::BedrockEmbeddings => "embeddings",
            _ => "chat",
        }
    }

    super::readers!();

    /// The stream operations answer in event-stream frames; a JSON body there is an error document.
    fn framing(&self, route: &Route, _req: &Request, ct: &str) -> Framing {
        if route.api != Api::BedrockEmbeddings
            && route.path_stream
            && !ct.starts_with("application/json")
        {
            Framing::AwsEventStream
        } else {
            Framing::Whole
        }
    }

    fn response_headers(&self, route: &Route, headers: &Headers, resp: &mut Response) {
        response_headers(route, headers, resp);
    }

    fn max_tokens(&self, route: &Route) -> Option<MaxTokens> {
        Some(match route.api {
            Api::BedrockConverse => MaxTokens {
                existing: &[&["inferenceConfig", "maxTokens"]],
                default: &["inferenceConfig", "maxTokens"],
            },
            // Each model family names its own (`bedrock/invoke.rs`); for a model that names no family only
            // the members its body already has are rewritten (`&[]`: nothing to add).
            Api::BedrockInvoke => MaxTokens {
                existing: invoke::MAX_TOKENS,
                default: invoke::max_tokens_member(route).unwrap_or(&[]),
            },
            _ => return None,
        })
    }

    /// AWS SDKs take the error type from `x-amzn-errortype` and the message from the body.
    fn error_body(
        &self,
        refusal: Refusal,
        message: &str,
        headers: &mut Vec<(String, String)>,
    ) -> Json {
        let kind = if refusal == Refusal::BudgetExceeded {
            "ThrottlingException"
        } else {
            "ValidationException"
        };
        headers.push(("x-amzn-errortype".to_string(), kind.to_string()));
        Json::obj([("message", Json::str(message))])
    }

    fn capture_input(&self, route: &Route, body: &[u8]) -> Option<Input> {
        match route.api {
            // Embedding inputs are not conversation messages.
            Api::BedrockEmbeddings => None,
            _ => capture::read(body, capture::blocks),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    const HOST: &str = "bedrock-runtime.us-east-1.amazonaws.com";

    fn aws<'a>(event_type: &'a str, payload: &'a str) -> Frame<'a> {
        Frame::Aws {
            message_type: "event",
            event_type,
            exception_type: "",
            payload: payload.as_bytes(),
        }
    }

    #[test]
    fn detects_operations() {
        let r = detect(
            HOST,
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        )
        .unwrap();
        assert_eq!(
            (r.api, r.provider.as_str(), r.path_stream),
            (Api::BedrockConverse, "aws.bedrock", false)
        );
        assert_eq!(
            r.path_model.as_deref(),
            Some("anthropic.claude-3-haiku-20240307-v1:0")
        );
        let r = detect(
            "bedrock-runtime-fips.us-west-2.amazonaws.com:443",
            "/model/m/converse-stream",
        )
        .unwrap();
        assert!(r.path_stream);
        let r = detect(HOST, "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fus.x/invoke-with-response-stream").unwrap();
        assert_eq!((r.api, r.path_stream), (Api::BedrockInvoke, true));
        assert_eq!(
            r.path_model.as_deref(),
            Some("arn:aws:bedrock:us-east-1:1:inference-profile/us.x")
        );
        assert!(detect("", "/model/m/invoke").is_some());
        assert!(detect("bedrock.us-east-1.amazonaws.com", "/model/m/invoke").is_none());
        assert!(detect(HOST, "/model//invoke").is_none());
        assert!(detect(HOST, "/model/m/apply-guardrail").is_none());
        assert!(detect(HOST, "/guardrail/g/version/1/apply").is_none());
    }

    #[test]
    fn reads_converse_request() {
        let r = detect(HOST, "/model/amazon.nova-pro-v1%3A0/converse").unwrap();
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hello"},{"image":{}}]}],
          "system":[{"text":"be brief"},{"cachePoint":{"type":"default"}}],
          "inferenceConfig":{"maxTokens":512,"temperature":0.7,"topP":0.9,"stopSequences":["STOP"]},
          "toolConfig":{"tools":[{"toolSpec":{"name":"get_weather","inputSchema":{"json":{}}}},{"cachePoint":{}}]},
          "additionalModelRequestFields":{"top_k":50}}"#;
        let mut req = Request::default();
        request(&r, body, &mut req);
        assert_eq!(req.model.as_deref(), Some("amazon.nova-pro-v1:0"));
        assert!(!req.stream);
        assert_eq!(req.max_tokens, Some(512));
        assert_eq!(
            (req.temperature, req.top_p, req.top_k),
            (Some(0.7), Some(0.9), Some(50.0))
        );
        assert_eq!(req.stop_sequences, vec!["STOP"]);
        assert_eq!(req.tool_names, vec!["get_weather"]);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("be brief")));
        assert_eq!(req.prompt_chars, 13);
        let mut req = Request::default();
        request(&r, b"\x00garbage", &mut req);
        assert_eq!(req.model.as_deref(), Some("amazon.nova-pro-v1:0"));
    }

    #[test]
    fn reads_invoke_request_as_anthropic() {
        let r = detect(
            HOST,
            "/model/anthropic.claude-sonnet-4-5/invoke-with-response-stream",
        )
        .unwrap();
        let mut req = Request::default();
        request(
            &r,
            br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}"#,
            &mut req,
        );
        assert_eq!(req.model.as_deref(), Some("anthropic.claude-sonnet-4-5"));
        assert!(req.stream);
        assert_eq!(req.max_tokens, Some(100));
    }

    #[test]
    fn reads_converse_response() {
        let r = detect(HOST, "/model/m/converse").unwrap();
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"ok"},{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Paris"}}}]}},
          "stopReason":"tool_use","usage":{"inputTokens":4,"outputTokens":187,"totalTokens":7105,"cacheReadInputTokens":6914,"cacheWriteInputTokens":0},
          "metrics":{"latencyMs":1200}}"#;
        let mut resp = Response::default();
        response(&r, body, &mut resp);
        assert_eq!(resp.finish_reasons, vec!["tool_use"]);
        assert_eq!(resp.usage.input, Some(6918));
        assert_eq!(resp.usage.output, Some(187));
        assert_eq!(
            (resp.usage.cache_read, resp.usage.cache_write),
            (Some(6914), Some(0))
        );
        assert_eq!(resp.tool_calls[0].id, "tooluse_1");
        assert_eq!(resp.id, None);
        let mut resp = Response::default();
        response(
            &r,
            br#"{"__type":"com.amazon.coral#ThrottlingException","message":"slow"}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("ThrottlingException"));
        assert_eq!(
            error_type_name(
                "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/"
            ),
            "ValidationException"
        );
    }

    fn head(pairs: &[(&str, &str)]) -> Headers {
        Headers::new(crate::codec::headers::serialize(pairs))
    }

    #[test]
    fn invoke_headers_then_body() {
        let mut resp = Response::default();
        let r = detect(HOST, "/model/anthropic.claude/invoke").unwrap();
        let h = head(&[
            ("x-amzn-requestid", "req-1"),
            ("x-amzn-bedrock-input-token-count", " 3 "),
            ("x-amzn-bedrock-output-token-count", "x"),
            ("x-amzn-bedrock-cache-read-input-token-count", "9"),
        ]);
        response_headers(&r, &h, &mut resp);
        assert_eq!(resp.id.as_deref(), Some("req-1"));
        assert_eq!((resp.usage.input, resp.usage.output), (Some(12), None));
        assert_eq!(resp.usage.cache_read, Some(9));
        response(
            &r,
            br#"{"id":"msg_bdrk_1","type":"message","model":"claude","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn",
                 "usage":{"input_tokens":3,"cache_read_input_tokens":9,"output_tokens":2}}"#,
            &mut resp,
        );
        assert_eq!((resp.usage.input, resp.usage.output), (Some(12), Some(2)));
        assert_eq!(resp.id.as_deref(), Some("msg_bdrk_1"));
    }

    #[test]
    fn converse_stream() {
        let r = detect(HOST, "/model/m/converse-stream").unwrap();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let frames = [
            aws("messageStart", r#"{"p":"abc","role":"assistant"}"#),
            aws(
                "contentBlockDelta",
                r#"{"contentBlockIndex":0,"delta":{"text":"Hi"},"p":"x"}"#,
            ),
            aws("contentBlockStop", r#"{"contentBlockIndex":0}"#),
            aws(
                "contentBlockStart",
                r#"{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"t1","name":"f"}}}"#,
            ),
            aws(
                "contentBlockDelta",
                r#"{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"a\":1}"}}}"#,
            ),
            aws("messageStop", r#"{"stopReason":"tool_use"}"#),
            aws(
                "metadata",
                r#"{"usage":{"inputTokens":10,"outputTokens":5,"totalTokens":15,"cacheWriteInputTokens":3},"metrics":{"latencyMs":9}}"#,
            ),
        ];
        let content: Vec<bool> = frames
            .iter()
            .map(|f| frame(&r, f, &mut st, &mut resp).content)
            .collect();
        assert_eq!(content, vec![false, true, false, true, true, false, false]);
        assert!(st.finished);
        assert_eq!(resp.finish_reasons, vec!["tool_use"]);
        assert_eq!(
            (resp.usage.input, resp.usage.output, resp.usage.cache_write),
            (Some(13), Some(5), Some(3))
        );
        assert_eq!(resp.tool_calls.len(), 1);
        assert_eq!(resp.output_chars, 2 + 7);
    }

    #[test]
    fn stream_exception_and_garbage() {
        let r = detect(HOST, "/model/m/converse-stream").unwrap();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        frame(&r, &aws("contentBlockDelta", "{{{"), &mut st, &mut resp);
        frame(&r, &Frame::Json(b"{}"), &mut st, &mut resp);
        assert!(!st.finished);
        let ex = Frame::Aws {
            message_type: "exception",
            event_type: "",
            exception_type: "throttlingException",
            payload: br#"{"message":"Too many requests"}"#,
        };
        frame(&r, &ex, &mut st, &mut resp);
        assert!(st.finished);
        assert_eq!(resp.error_type.as_deref(), Some("throttlingException"));
    }

    #[test]
    fn invoke_stream_decodes_claude_events() {
        let r = detect(HOST, "/model/anthropic.claude/invoke-with-response-stream").unwrap();
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let enc = |s: &str| {
            format!(
                r#"{{"bytes":"{}","p":"abcd"}}"#,
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        let events = [
            enc(
                r#"{"type":"message_start","message":{"id":"msg_bdrk_1","model":"claude-x","usage":{"input_tokens":7,"cache_read_input_tokens":20,"output_tokens":1}}}"#,
            ),
            enc(
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hey"}}"#,
            ),
            enc(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":4}}"#,
            ),
            enc(
                r#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":7,"outputTokenCount":4,"invocationLatency":500,"firstByteLatency":200}}"#,
            ),
            r#"{"bytes":"!!!not base64"}"#.to_owned(),
        ];
        let content: Vec<bool> = events
            .iter()
            .map(|p| frame(&r, &aws("chunk", p), &mut st, &mut resp).content)
            .collect();
        assert_eq!(content, vec![false, true, false, false, false]);
        assert!(st.finished);
        assert_eq!(resp.id.as_deref(), Some("msg_bdrk_1"));
        assert_eq!(resp.finish_reasons, vec!["end_turn"]);
        assert_eq!(
            (resp.usage.input, resp.usage.output, resp.usage.cache_read),
            (Some(27), Some(4), Some(20))
        );
    }

    /// Read an InvokeModel request of `model`.
    fn invoke_request(model: &str, body: &str) -> Request {
        let r = detect(HOST, &format!("/model/{model}/invoke")).unwrap();
        let mut req = Request::default();
        request(&r, body.as_bytes(), &mut req);
        req
    }

    /// Read a whole InvokeModel answer of `model`, after its metering headers.
    fn invoke_answer(model: &str, body: &str) -> Response {
        let r = detect(HOST, &format!("/model/{model}/invoke")).unwrap();
        let mut resp = Response::default();
        let h = head(&[
            ("x-amzn-bedrock-input-token-count", "11"),
            ("x-amzn-bedrock-output-token-count", "22"),
        ]);
        response_headers(&r, &h, &mut resp);
        response(&r, body.as_bytes(), &mut resp);
        resp
    }

    /// Stream InvokeModel chunks (the model's events, base64-encoded by the harness) of `model`.
    fn invoke_stream(model: &str, events: &[&str]) -> (Vec<bool>, Response, bool) {
        let r = detect(HOST, &format!("/model/{model}/invoke-with-response-stream")).unwrap();
        let (mut st, mut resp) = (StreamState::default(), Response::default());
        let content = events
            .iter()
            .map(|e| {
                let b64 = base64::engine::general_purpose::STANDARD.encode(e);
                let payload = format!(r#"{{"bytes":"{b64}","p":"abc"}}"#);
                frame(&r, &aws("chunk", &payload), &mut st, &mut resp).content
            })
            .collect();
        (content, resp, st.finished)
    }

    const METRICS: &str = r#""amazon-bedrock-invocationMetrics":{"inputTokenCount":11,"outputTokenCount":22,"invocationLatency":900,"firstByteLatency":300}"#;

    #[test]
    fn titan_text() {
        let req = invoke_request(
            "amazon.titan-text-express-v1",
            r#"{"inputText":"Tell me a joke","textGenerationConfig":{"maxTokenCount":200,"temperature":0.5,"topP":0.9,"stopSequences":["User:"]}}"#,
        );
        assert_eq!(
            (req.max_tokens, req.temperature, req.top_p),
            (Some(200), Some(0.5), Some(0.9))
        );
        assert_eq!(
            (req.stop_sequences, req.prompt_chars),
            (vec!["User:".to_owned()], 14)
        );
        let resp = invoke_answer(
            "amazon.titan-text-express-v1",
            r#"{"inputTextTokenCount":11,"results":[{"tokenCount":22,"outputText":"Why?","completionReason":"FINISH"}]}"#,
        );
        assert_eq!(resp.finish_reasons, ["FINISH"]);
        assert_eq!(
            (resp.usage.input, resp.usage.output, resp.output_chars),
            (Some(11), Some(22), 4)
        );
        let (content, resp, finished) = invoke_stream(
            "amazon.titan-text-express-v1",
            &[
                r#"{"outputText":"Why","index":0,"totalOutputTextTokenCount":1,"completionReason":null,"inputTextTokenCount":11}"#,
                &format!(
                    r#"{{"outputText":"?","index":0,"totalOutputTextTokenCount":22,"completionReason":"LENGTH",{METRICS}}}"#
                ),
            ],
        );
        assert_eq!(content, [true, true]);
        assert!(finished, "the chunk with Bedrock's metering is the last");
        assert_eq!((resp.usage.input, resp.usage.output), (Some(11), Some(22)));
        assert_eq!(resp.finish_reasons, ["LENGTH"]);
    }

    #[test]
    fn nova() {
        for config in [
            r#"{"max_new_tokens":300,"temperature":0.7,"top_p":0.9,"top_k":40,"stopSequences":["END"]}"#,
            r#"{"maxTokens":300,"temperature":0.7,"topP":0.9,"topK":40,"stopSequences":["END"]}"#,
        ] {
            let req = invoke_request(
                "us.amazon.nova-lite-v1%3A0",
                &format!(
                    r#"{{"schemaVersion":"messages-v1","system":[{{"text":"Be brief"}}],"messages":[{{"role":"user","content":[{{"text":"Hi"}}]}}],
                        "inferenceConfig":{config},"toolConfig":{{"tools":[{{"toolSpec":{{"name":"weather"}}}}]}}}}"#
                ),
            );
            assert_eq!(
                (req.max_tokens, req.temperature),
                (Some(300), Some(0.7)),
                "{config}"
            );
            assert_eq!((req.top_p, req.top_k), (Some(0.9), Some(40.0)), "{config}");
            assert_eq!(req.stop_sequences, ["END"]);
            assert_eq!(req.tool_names, ["weather"]);
            assert_eq!(req.system_prompt_hash, Some(prompt_hash("Be brief")));
        }
        // Nova's whole answer is Converse's, its cache counters under the `…Count` names alone.
        let resp = invoke_answer(
            "us.amazon.nova-lite-v1%3A0",
            r#"{"output":{"message":{"role":"assistant","content":[{"text":"Hello"}]}},"stopReason":"end_turn",
                "usage":{"inputTokens":5,"outputTokens":22,"totalTokens":33,"cacheReadInputTokenCount":6,"cacheWriteInputTokenCount":0}}"#,
        );
        assert_eq!(resp.finish_reasons, ["end_turn"]);
        assert_eq!(
            (
                resp.usage.input,
                resp.usage.output,
                resp.usage.cache_read,
                resp.usage.cache_write
            ),
            (Some(11), Some(22), Some(6), Some(0))
        );
        // Its stream: one Converse event per chunk, keyed by name.
        let (content, resp, finished) = invoke_stream(
            "us.amazon.nova-lite-v1%3A0",
            &[
                r#"{"messageStart":{"role":"assistant"}}"#,
                r#"{"contentBlockDelta":{"delta":{"text":"Hel"},"contentBlockIndex":0}}"#,
                r#"{"contentBlockStart":{"start":{"toolUse":{"toolUseId":"t1","name":"weather"}},"contentBlockIndex":1}}"#,
                r#"{"contentBlockStop":{"contentBlockIndex":1}}"#,
                r#"{"messageStop":{"stopReason":"tool_use"}}"#,
                &format!(
                    r#"{{"metadata":{{"usage":{{"inputTokens":11,"outputTokens":22}},"metrics":{{}}}},{METRICS}}}"#
                ),
            ],
        );
        assert_eq!(content, [false, true, true, false, false, false]);
        assert!(finished);
        assert_eq!(resp.finish_reasons, ["tool_use"]);
        assert_eq!(resp.tool_calls.len(), 1);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(11), Some(22)));
    }

    #[test]
    fn llama_mistral_cohere_ai21() {
        let req = invoke_request(
            "meta.llama3-70b-instruct-v1%3A0",
            r#"{"prompt":"Hi","max_gen_len":128,"temperature":0.1,"top_p":0.9}"#,
        );
        assert_eq!(
            (req.max_tokens, req.top_p, req.prompt_chars),
            (Some(128), Some(0.9), 2)
        );
        let resp = invoke_answer(
            "meta.llama3-70b-instruct-v1%3A0",
            r#"{"generation":"Hello!","prompt_token_count":11,"generation_token_count":22,"stop_reason":"stop"}"#,
        );
        assert_eq!(
            (resp.finish_reasons.as_slice(), resp.output_chars),
            (&["stop".to_owned()][..], 6)
        );
        let (content, resp, finished) = invoke_stream(
            "meta.llama3-70b-instruct-v1%3A0",
            &[
                r#"{"generation":"Hel","prompt_token_count":11,"generation_token_count":1,"stop_reason":null}"#,
                &format!(
                    r#"{{"generation":"","prompt_token_count":null,"generation_token_count":22,"stop_reason":"length",{METRICS}}}"#
                ),
            ],
        );
        assert_eq!((content, finished), (vec![true, false], true));
        assert_eq!(
            (resp.finish_reasons, resp.usage.output),
            (vec!["length".to_owned()], Some(22))
        );

        let req = invoke_request(
            "mistral.mistral-7b-instruct-v0%3A2",
            r#"{"prompt":"<s>[INST] Hi [/INST]","max_tokens":50,"temperature":0.5,"top_p":1,"top_k":50,"stop":["\n"]}"#,
        );
        assert_eq!(
            (req.max_tokens, req.top_k, req.stop_sequences),
            (Some(50), Some(50.0), vec!["\n".to_owned()])
        );
        let resp = invoke_answer(
            "mistral.mistral-7b-instruct-v0%3A2",
            r#"{"outputs":[{"text":"Hello","stop_reason":"stop"},{"text":"Hey","stop_reason":"length"}]}"#,
        );
        assert_eq!(resp.finish_reasons, ["stop", "length"]);

        let req = invoke_request(
            "cohere.command-r-v1%3A0",
            r#"{"message":"Hi","max_tokens":10,"p":0.75,"k":5,"seed":7,"stop_sequences":["|"]}"#,
        );
        assert_eq!(
            (req.top_p, req.top_k, req.seed, req.stop_sequences),
            (Some(0.75), Some(5.0), Some(7), vec!["|".to_owned()])
        );
        let resp = invoke_answer(
            "cohere.command-r-v1%3A0",
            r#"{"response_id":"r1","text":"Hello","generation_id":"g1","chat_history":[],"finish_reason":"MAX_TOKENS"}"#,
        );
        assert_eq!(resp.finish_reasons, ["MAX_TOKENS"]);
        let resp = invoke_answer(
            "cohere.command-text-v14",
            r#"{"generations":[{"id":"g","text":"Hi","finish_reason":"COMPLETE"}],"id":"x","prompt":"Hi"}"#,
        );
        assert_eq!(resp.finish_reasons, ["COMPLETE"]);
        let (content, resp, finished) = invoke_stream(
            "cohere.command-r-v1%3A0",
            &[
                r#"{"event_type":"text-generation","text":"Hel","is_finished":false}"#,
                &format!(
                    r#"{{"event_type":"stream-end","finish_reason":"COMPLETE","is_finished":true,{METRICS}}}"#
                ),
            ],
        );
        assert_eq!((content, finished), (vec![true, false], true));
        assert_eq!(resp.finish_reasons, ["COMPLETE"]);

        let resp = invoke_answer(
            "ai21.j2-mid-v1",
            r#"{"id":1234,"prompt":{"text":"Hi"},"completions":[{"data":{"text":"Hello"},"finishReason":{"reason":"endoftext"}}]}"#,
        );
        assert_eq!(resp.finish_reasons, ["endoftext"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(11), Some(22)));
    }

    #[test]
    fn an_arn_naming_no_family_is_read_by_both_readers() {
        let model = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Aprovisioned-model%2Fabc";
        let resp = invoke_answer(
            model,
            r#"{"id":"msg_1","type":"message","model":"claude-x","content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn",
                "usage":{"input_tokens":4,"cache_read_input_tokens":7,"output_tokens":22}}"#,
        );
        assert_eq!(
            (resp.model.as_deref(), resp.usage.input),
            (Some("claude-x"), Some(11))
        );
        assert_eq!(resp.finish_reasons, ["end_turn"]);
        let resp = invoke_answer(model, r#"{"generation":"Hi","stop_reason":"stop"}"#);
        assert_eq!(resp.finish_reasons, ["stop"]);
    }

    #[test]
    fn embedding_models_are_embeddings() {
        for model in [
            "amazon.titan-embed-text-v2%3A0",
            "cohere.embed-english-v3",
            "amazon.nova-2-multimodal-embeddings-v1%3A0",
        ] {
            let r = detect(HOST, &format!("/model/{model}/invoke")).unwrap();
            assert_eq!(
                (r.api, crate::providers::operation(&r)),
                (Api::BedrockEmbeddings, "embeddings"),
                "{model}"
            );
        }
        let r = detect(HOST, "/model/amazon.titan-embed-text-v2%3A0/invoke").unwrap();
        let mut resp = Response::default();
        response_headers(
            &r,
            &head(&[("x-amzn-bedrock-input-token-count", "7")]),
            &mut resp,
        );
        response(
            &r,
            br#"{"embedding":[0.1,0.2],"inputTextTokenCount":7}"#,
            &mut resp,
        );
        assert_eq!((resp.usage.input, resp.usage.output), (Some(7), None));
        assert!(resp.finish_reasons.is_empty());
        let mut req = Request::default();
        request(&r, br#"{"inputText":"hello","dimensions":256}"#, &mut req);
        assert_eq!((req.prompt_chars, req.max_tokens), (5, None));
    }

    #[test]
    fn converse_counters_written_twice_keep_exact_usage() {
        // As about half of real Converse answers write them: each cache counter under both its names,
        // in any order, zeros included.
        let r = detect(HOST, "/model/m/converse").unwrap();
        for usage in [
            r#"{"cacheReadInputTokenCount":0,"cacheReadInputTokens":0,"cacheWriteInputTokenCount":1322,"cacheWriteInputTokens":1322,"inputTokens":2,"outputTokens":5,"serverToolUsage":{},"totalTokens":1329}"#,
            r#"{"inputTokens":2,"outputTokens":5,"totalTokens":1329,"cacheReadInputTokens":0,"cacheWriteInputTokens":1322,"cacheReadInputTokenCount":0,"cacheWriteInputTokenCount":1322}"#,
            r#"{"inputTokens":2,"inputTokens":2,"outputTokens":5,"cacheWriteInputTokenCount":1322,"cacheReadInputTokenCount":0}"#,
        ] {
            let mut resp = Response::default();
            let body = format!(
                r#"{{"output":{{"message":{{"content":[{{"text":"21"}}]}}}},"stopReason":"end_turn","usage":{usage}}}"#
            );
            response(&r, body.as_bytes(), &mut resp);
            assert_eq!(
                (
                    resp.usage.input,
                    resp.usage.output,
                    resp.usage.cache_read,
                    resp.usage.cache_write
                ),
                (Some(1324), Some(5), Some(0), Some(1322)),
                "{usage}"
            );
        }
        // The documented name wins over the other when both are written and differ.
        let mut resp = Response::default();
        response(
            &r,
            br#"{"usage":{"cacheReadInputTokenCount":1,"cacheReadInputTokens":9,"inputTokens":1}}"#,
            &mut resp,
        );
        assert_eq!(resp.usage.cache_read, Some(9));
    }

    #[test]
    fn error_type_from_the_header() {
        let r = detect(HOST, "/model/m/converse").unwrap();
        let mut resp = Response::default();
        response_headers(
            &r,
            &head(&[(
                "x-amzn-errortype",
                "ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/",
            )]),
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("ThrottlingException"));
    }

    #[test]
    fn clamping_writes_each_family_its_own_max_tokens() {
        use crate::providers::set_max_output_tokens;
        let clamp = |model: &str, body: &str| {
            let r = detect(HOST, &format!("/model/{model}/invoke")).unwrap();
            set_max_output_tokens(&r, body.as_bytes(), 7)
                .map(|b| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
        };
        use serde_json::json;
        for (model, body, want) in [
            (
                "anthropic.claude-3-haiku",
                r#"{"messages":[]}"#,
                json!({"max_tokens":7,"messages":[]}),
            ),
            (
                "amazon.titan-text-express-v1",
                r#"{"inputText":"x"}"#,
                json!({"textGenerationConfig":{"maxTokenCount":7},"inputText":"x"}),
            ),
            (
                "amazon.titan-text-express-v1",
                r#"{"inputText":"x","textGenerationConfig":{"maxTokenCount":900}}"#,
                json!({"inputText":"x","textGenerationConfig":{"maxTokenCount":7}}),
            ),
            (
                "us.amazon.nova-lite-v1%3A0",
                r#"{"messages":[]}"#,
                json!({"inferenceConfig":{"max_new_tokens":7},"messages":[]}),
            ),
            (
                "us.amazon.nova-lite-v1%3A0",
                r#"{"inferenceConfig":{"maxTokens":900}}"#,
                json!({"inferenceConfig":{"maxTokens":7}}),
            ),
            (
                "meta.llama3-70b-instruct-v1%3A0",
                r#"{"prompt":"x"}"#,
                json!({"max_gen_len":7,"prompt":"x"}),
            ),
            (
                "mistral.mistral-7b-instruct-v0%3A2",
                r#"{"prompt":"x","max_tokens":900}"#,
                json!({"prompt":"x","max_tokens":7}),
            ),
            (
                "ai21.j2-mid-v1",
                r#"{"prompt":"x"}"#,
                json!({"maxTokens":7,"prompt":"x"}),
            ),
            (
                "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprovisioned-model%2Fx",
                r#"{"max_gen_len":900}"#,
                json!({"max_gen_len":7}),
            ),
        ] {
            assert_eq!(clamp(model, body), Some(want), "{model} {body}");
        }
        // A model that names no family and a body without a known member: nothing safe to add.
        assert_eq!(
            clamp(
                "arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprovisioned-model%2Fx",
                r#"{"prompt":"x"}"#
            ),
            None
        );
        assert_eq!(
            clamp("amazon.titan-embed-text-v2%3A0", r#"{"inputText":"x"}"#),
            None
        );
    }
}
