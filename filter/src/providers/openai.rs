//! OpenAI Chat Completions (`/v1/chat/completions`), legacy Completions (`/v1/completions`) and Embeddings
//! (`/v1/embeddings`), on api.openai.com and on every OpenAI-compatible server (vLLM, Ollama `/v1/*`, Azure,
//! Mistral, ...). The readers here take the union of the known dialects' quirks, because `mod.rs` dispatches
//! by API shape and a configured route may send any provider's traffic here:
//! - Azure: a leading `prompt_filter_results` chunk and asynchronous-filter chunks with `id:""` and no delta;
//! - vLLM: usage on every chunk with `continuous_usage_stats` (the last wins), `stop_reason` on choices,
//!   top-level `{"object":"error",...}` error bodies;
//! - Mistral: `random_seed`, usage on the final chunk that also carries the finish_reason, content as parts.

use super::common::{prompt_hash, set_if_nonempty, ChatMessage, Typed};
use super::template::Sink;
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::capture::{self, Input};
use crate::codec::json::lenient::{
    items, join_line, json_struct, read, Lenient, LenientStr, OneOrMany, Raw, Read, TextContent,
};
use crate::codec::json::skim::char_count;
use crate::codec::json::skim::{key_bit, plain_integer, set_changed, Reader, Str};
use crate::codec::json::Json;
use crate::codec::json::{edit, tape};
use crate::reply::Refusal;
use crate::stream::sse_edit::{event_data, has_empty_array, has_object_member};
use crate::stream::Frame;
use serde::de::IgnoredAny;
use std::borrow::Cow;

/// Built-in detection by path, on api.openai.com and every OpenAI-compatible server; the provider name
/// comes from the host (`openai_compat.rs`). A configured `RouteRule` for a host replaces it (see
/// `providers::detect`).
pub fn detect(host: &str, path: &str) -> Option<Route> {
    let api = api_for_path(path)?;
    Some(Route {
        api,
        provider: super::openai_compat::provider(host).to_owned(),
        path_model: None,
        path_stream: false,
    })
}

/// The OpenAI API shape named by the end of a path (query string ignored). Shared with Azure and Mistral,
/// whose paths end the same way under a different prefix.
pub(crate) fn api_for_path(path: &str) -> Option<Api> {
    let path = path.split('?').next().unwrap_or("");
    let path = path.strip_suffix('/').unwrap_or(path);
    if path.ends_with("/chat/completions") {
        Some(Api::OpenAiChat)
    } else if path.ends_with("/completions") {
        Some(Api::OpenAiCompletions)
    } else if path.ends_with("/embeddings") {
        Some(Api::OpenAiEmbeddings)
    } else if path.ends_with("/responses") {
        Some(Api::OpenAiResponses)
    } else {
        None
    }
}

json_struct! {
    /// One request struct for the three shapes: fields a shape does not use are simply absent.
    struct OpenAiRequest<'a> {
        model: LenientStr<'a> = "model",
        stream: Lenient<bool> = "stream",
        temperature: Lenient<f64> = "temperature",
        top_p: Lenient<f64> = "top_p",
        /// Not OpenAI's; vLLM and other compatible servers accept it.
        top_k: Lenient<f64> = "top_k",
        n: Lenient<u64> = "n",
        seed: Lenient<i64> = "seed",
        /// Mistral's name for the seed.
        random_seed: Lenient<i64> = "random_seed",
        stop: Lenient<OneOrMany> = "stop",
        frequency_penalty: Lenient<f64> = "frequency_penalty",
        presence_penalty: Lenient<f64> = "presence_penalty",
        max_completion_tokens: Lenient<u64> = "max_completion_tokens",
        max_tokens: Lenient<u64> = "max_tokens",
        reasoning_effort: Lenient<String> = "reasoning_effort",
        service_tier: Lenient<String> = "service_tier",
        tools: Lenient<Vec<Lenient<Tool<'a>>>> = "tools",
        response_format: Lenient<Typed<'a>> = "response_format",
        /// Chat.
        messages: Lenient<Vec<Lenient<ChatMessage<'a>>>> = "messages",
        /// Legacy Completions: a string, an array of strings, or token arrays (which carry no text to count).
        prompt: Lenient<OneOrMany> = "prompt",
        /// Embeddings: same forms as `prompt`.
        input: Lenient<OneOrMany> = "input",
        /// Embeddings: requested vector size.
        dimensions: Lenient<u64> = "dimensions",
        /// Embeddings: `float` or `base64`.
        encoding_format: Lenient<String> = "encoding_format",
    }
}

json_struct! {
    struct Tool<'a> {
        function: Lenient<Named<'a>> = "function",
    }
}

json_struct! {
    struct Named<'a> {
        name: LenientStr<'a> = "name",
        /// Tool-call arguments (JSON text, a fragment in streams); read for content capture only.
        arguments: LenientStr<'a> = "arguments",
    }
}

/// Read a Chat, Completions or Embeddings request body. The model falls back to what the caller already
/// set and then to the route's path model (the Azure deployment), because Azure bodies usually have none.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    if let Some(r) = read::<OpenAiRequest<'_>>(body) {
        apply_request(route, RequestFields::from(r), req);
    }
}

/// The skimmer for the common request body: true when it read the body (as `request` reads it).
pub fn fast_request_body(route: &Route, body: &[u8], req: &mut Request) -> bool {
    match std::str::from_utf8(body).ok().and_then(fast_request) {
        Some(f) => {
            apply_request(route, f, req);
            true
        }
        None => false,
    }
}

/// What a request body says, read by either path.
#[derive(Default)]
struct RequestFields<'a> {
    model: Option<Cow<'a, str>>,
    stream: Option<bool>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    top_k: Option<f64>,
    n: Option<u64>,
    seed: Option<i64>,
    random_seed: Option<i64>,
    stop: Option<Vec<String>>,
    frequency_penalty: Option<f64>,
    presence_penalty: Option<f64>,
    max_completion_tokens: Option<u64>,
    max_tokens: Option<u64>,
    reasoning_effort: Option<String>,
    service_tier: Option<String>,
    tool_names: Vec<String>,
    output_kind: Option<Cow<'a, str>>,
    /// Characters of the messages' text, and the system/developer messages' text joined by lines.
    message_chars: u64,
    system: Cow<'a, str>,
    prompt: Option<Vec<String>>,
    input: Option<Vec<String>>,
    dimensions: Option<u64>,
    encoding_format: Option<String>,
}

impl<'a> RequestFields<'a> {
    /// One message, in order: its text counts, and a system or developer message's text joins the prompt.
    fn message(&mut self, role: Option<&str>, text: Cow<'a, str>) {
        self.message_chars = self.message_chars.saturating_add(char_count(&text));
        if matches!(role, Some("system" | "developer")) {
            join_line(&mut self.system, text);
        }
    }
}

impl<'a> From<OpenAiRequest<'a>> for RequestFields<'a> {
    fn from(r: OpenAiRequest<'a>) -> Self {
        let mut f = RequestFields {
            model: r.model.get(),
            stream: r.stream.get(),
            temperature: r.temperature.get(),
            top_p: r.top_p.get(),
            top_k: r.top_k.get(),
            n: r.n.get(),
            seed: r.seed.get(),
            random_seed: r.random_seed.get(),
            stop: r.stop.get().map(|s| s.0),
            frequency_penalty: r.frequency_penalty.get(),
            presence_penalty: r.presence_penalty.get(),
            max_completion_tokens: r.max_completion_tokens.get(),
            max_tokens: r.max_tokens.get(),
            reasoning_effort: r.reasoning_effort.get(),
            service_tier: r.service_tier.get(),
            tool_names: r
                .tools
                .get()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.get()?.function.get()?.name.get().map(Cow::into_owned))
                .collect(),
            output_kind: r.response_format.get().and_then(|f| f.kind.get()),
            prompt: r.prompt.get().map(|t| t.0),
            input: r.input.get().map(|t| t.0),
            dimensions: r.dimensions.get(),
            encoding_format: r.encoding_format.get(),
            ..RequestFields::default()
        };
        for m in items(r.messages) {
            let text = m.content.get().map(|c| c.0).unwrap_or_default();
            f.message(m.role.get().as_deref(), text);
        }
        f
    }
}

fn apply_request(route: &Route, r: RequestFields<'_>, req: &mut Request) {
    req.model = r
        .model
        .filter(|m| !m.is_empty())
        .map(Cow::into_owned)
        .or(req.model.take())
        .or_else(|| route.path_model.clone());
    req.stream = r.stream.unwrap_or(false);
    req.temperature = r.temperature;
    req.top_p = r.top_p;
    req.top_k = r.top_k;
    req.choice_count = r.n;
    req.seed = r.seed.or(r.random_seed);
    req.stop_sequences = r.stop.unwrap_or_default();
    req.frequency_penalty = r.frequency_penalty;
    req.presence_penalty = r.presence_penalty;
    req.max_tokens = r.max_completion_tokens.or(r.max_tokens);
    req.reasoning_effort = r.reasoning_effort;
    req.service_tier = r.service_tier;
    req.tool_names = r.tool_names;
    req.output_type = match r.output_kind.as_deref() {
        Some("json_object" | "json_schema") => Some("json"),
        Some("text") => Some("text"),
        _ => None,
    };
    let mut chars = r.message_chars;
    let texts = match route.api {
        Api::OpenAiCompletions => r.prompt,
        Api::OpenAiEmbeddings => r.input,
        _ => None,
    };
    for t in texts.unwrap_or_default() {
        chars = chars.saturating_add(char_count(&t));
    }
    req.prompt_chars = chars;
    if route.api == Api::OpenAiEmbeddings {
        req.embedding_dimensions = r.dimensions;
        req.encoding_formats = r.encoding_format.into_iter().collect();
    }
    if !r.system.is_empty() {
        req.system_prompt_hash = Some(prompt_hash(&r.system));
    }
}

// The request skimmer. Each reader below gives exactly what the `Lenient` type of the same field gives
// (`codec/json/lenient.rs`): a value of another type is None and skipped, `null` is None. Whatever it does not read as
// serde would (a duplicated member, an object written as an array, a string serde refuses to unescape,
// nesting beyond `skim::MAX_DEPTH`, trailing text), it refuses (None), and the body goes to serde.

/// `LenientStr`: a string (unescaped), else None.
fn lenient_str<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    if r.peek()? != b'"' {
        r.skip()?;
        return Some(None);
    }
    r.string()?.text().map(Some)
}

/// `Lenient<bool>`.
fn lenient_bool(r: &mut Reader<'_>) -> Option<Option<bool>> {
    match r.peek()? {
        b't' | b'f' | b'n' => r.bool_or_null(),
        _ => {
            r.skip()?;
            Some(None)
        }
    }
}

/// A number's text (validated), or None after skipping a value of another type.
fn number_text<'a>(r: &mut Reader<'a>) -> Option<Option<&'a [u8]>> {
    if matches!(r.peek()?, b'-' | b'0'..=b'9') {
        return r.number().map(Some);
    }
    r.skip()?;
    Some(None)
}

/// `Lenient<f64>`: the number's text through the tape's own conversion (the same rounding and range).
fn lenient_f64(r: &mut Reader<'_>) -> Option<Option<f64>> {
    Some(number_text(r)?.and_then(|raw| tape::f64_of(std::str::from_utf8(raw).ok()?)))
}

/// `Lenient<u64>`: a non-negative integer that fits, else None.
fn lenient_u64(r: &mut Reader<'_>) -> Option<Option<u64>> {
    Some(number_text(r)?.and_then(plain_integer))
}

/// `Lenient<i64>`: an integer that fits i64, else None (`-0` too: serde_json reads it as a float).
fn lenient_i64(r: &mut Reader<'_>) -> Option<Option<i64>> {
    Some(number_text(r)?.and_then(|raw| {
        match raw.strip_prefix(b"-") {
            Some(digits) => plain_integer(digits)
                .filter(|&m| m != 0)
                .and_then(|m| 0i64.checked_sub_unsigned(m)),
            None => plain_integer(raw).and_then(|m| i64::try_from(m).ok()),
        }
    }))
}

/// `Lenient<OneOrMany>`: a string, or the strings of an array (other items skipped); else None.
fn one_or_many(r: &mut Reader<'_>) -> Option<Option<Vec<String>>> {
    match r.peek()? {
        b'"' => Some(Some(vec![r.string()?.text()?.into_owned()])),
        b'[' => {
            r.begin_array()?;
            let mut out = Vec::new();
            r.items(&mut |r| {
                out.extend(lenient_str(r)?.map(Cow::into_owned));
                Some(())
            })?;
            Some(Some(out))
        }
        _ => {
            r.skip()?;
            Some(None)
        }
    }
}

/// Where a `Lenient` struct is expected: an object (`{` consumed): `Some(true)`; null or a scalar (skipped):
/// `Some(false)`; an array (serde reads a struct from one) is refused.
fn lenient_object(r: &mut Reader<'_>) -> Option<bool> {
    match r.peek()? {
        b'{' => r.begin_object().map(|()| true),
        b'[' => None,
        _ => r.skip().map(|_| false),
    }
}

/// A `Lenient<Vec<_>>`: an array (`[` consumed): `Some(true)`; anything else (skipped): `Some(false)`.
fn lenient_array(r: &mut Reader<'_>) -> Option<bool> {
    if r.peek()? == b'[' {
        r.begin_array().map(|()| true)
    } else {
        r.skip().map(|_| false)
    }
}

/// `Lenient<TextContent>`: a string, the text parts of an array joined by lines, or "" (anything else).
fn fast_content<'a>(r: &mut Reader<'a>) -> Option<Cow<'a, str>> {
    match r.peek()? {
        b'"' => r.string()?.text(),
        b'[' => {
            r.begin_array()?;
            let mut out = Cow::Borrowed("");
            r.items(&mut |r| {
                if lenient_object(r)? {
                    let mut text = None;
                    r.members(&|k| u32::from(k == b"text"), &mut |r, _| {
                        text = lenient_str(r)?;
                        Some(())
                    })?;
                    if let Some(t) = text {
                        join_line(&mut out, t);
                    }
                }
                Some(())
            })?;
            Some(out)
        }
        _ => r.skip().map(|_| Cow::Borrowed("")),
    }
}

/// `Lenient<Tool>`: its function's name, if the tool is an object with one.
fn fast_tool_name<'a>(r: &mut Reader<'a>) -> Option<Option<Cow<'a, str>>> {
    let mut name = None;
    if lenient_object(r)? {
        r.members(&|k| u32::from(k == b"function"), &mut |r, _| {
            if lenient_object(r)? {
                r.members(&|k| key_bit(&[b"name", b"arguments"], k), &mut |r, b| {
                    if b == 1 {
                        name = lenient_str(r)?;
                    } else {
                        r.skip()?;
                    }
                    Some(())
                })?;
            }
            Some(())
        })?;
    }
    Some(name)
}

/// `Lenient<ChatMessage>`: when it is an object, its role and text (content absent or null is "") go to `f`.
fn fast_request_message<'a>(r: &mut Reader<'a>, f: &mut RequestFields<'a>) -> Option<()> {
    if !lenient_object(r)? {
        return Some(());
    }
    let (mut role, mut content) = (None, None);
    r.members(&|k| key_bit(&[b"role", b"content"], k), &mut |r, b| {
        if b == 1 {
            role = lenient_str(r)?;
        } else {
            content = Some(fast_content(r)?);
        }
        Some(())
    })?;
    f.message(role.as_deref(), content.unwrap_or_default());
    Some(())
}

/// Whether the skimmer reads `text` (tests).
#[cfg(test)]
pub(crate) fn fast_request_reads(text: &str) -> bool {
    fast_request(text).is_some()
}

/// The common Chat, Completions or Embeddings request without the serde structs.
fn fast_request(text: &str) -> Option<RequestFields<'_>> {
    const KEYS: [&[u8]; 22] = [
        b"model",
        b"stream",
        b"temperature",
        b"top_p",
        b"top_k",
        b"n",
        b"seed",
        b"random_seed",
        b"stop",
        b"frequency_penalty",
        b"presence_penalty",
        b"max_completion_tokens",
        b"max_tokens",
        b"reasoning_effort",
        b"service_tier",
        b"tools",
        b"response_format",
        b"messages",
        b"prompt",
        b"input",
        b"dimensions",
        b"encoding_format",
    ];
    let mut r = Reader::new(text);
    r.begin_object()?;
    let mut f = RequestFields::default();
    r.members(&|k| key_bit(&KEYS, k), &mut |r, b| {
        match b.trailing_zeros() {
            0 => f.model = lenient_str(r)?,
            1 => f.stream = lenient_bool(r)?,
            2 => f.temperature = lenient_f64(r)?,
            3 => f.top_p = lenient_f64(r)?,
            4 => f.top_k = lenient_f64(r)?,
            5 => f.n = lenient_u64(r)?,
            6 => f.seed = lenient_i64(r)?,
            7 => f.random_seed = lenient_i64(r)?,
            8 => f.stop = one_or_many(r)?,
            9 => f.frequency_penalty = lenient_f64(r)?,
            10 => f.presence_penalty = lenient_f64(r)?,
            11 => f.max_completion_tokens = lenient_u64(r)?,
            12 => f.max_tokens = lenient_u64(r)?,
            13 => f.reasoning_effort = lenient_str(r)?.map(Cow::into_owned),
            14 => f.service_tier = lenient_str(r)?.map(Cow::into_owned),
            15 => {
                if lenient_array(r)? {
                    r.items(&mut |r| {
                        f.tool_names.extend(fast_tool_name(r)?.map(Cow::into_owned));
                        Some(())
                    })?;
                }
            }
            16 => {
                if lenient_object(r)? {
                    r.members(&|k| u32::from(k == b"type"), &mut |r, _| {
                        f.output_kind = lenient_str(r)?;
                        Some(())
                    })?;
                }
            }
            17 => {
                if lenient_array(r)? {
                    r.items(&mut |r| fast_request_message(r, &mut f))?;
                }
            }
            18 => f.prompt = one_or_many(r)?,
            19 => f.input = one_or_many(r)?,
            20 => f.dimensions = lenient_u64(r)?,
            _ => f.encoding_format = lenient_str(r)?.map(Cow::into_owned),
        }
        Some(())
    })?;
    r.at_end().then_some(f)
}

json_struct! {
    /// The part of a streaming request that decides whether usage must be asked for.
    struct StreamFlags<'a> {
        stream: Lenient<bool> = "stream",
        stream_options: Present<'a> = "stream_options",
    }
}

/// A field's raw text when the key is present, even when its value is `null` (an `Option` would fold
/// `null` into "absent", and adding a second `stream_options` key next to a `null` one makes a duplicate).
#[derive(Default)]
pub(super) struct Present<'a>(pub(super) Option<Raw<'a>>);

impl<'de: 'a, 'a> Read<'de> for Present<'a> {
    fn read(v: tape::Value<'_, 'de>) -> Option<Self> {
        Raw::read(v).map(|r| Present(Some(r)))
    }
}

const INCLUDE_USAGE_MEMBER: &[u8] = br#""stream_options":{"include_usage":true},"#;

/// Rewrite a streaming Chat or Completions request so the provider reports usage: OpenAI sends no usage at
/// all in a stream unless `stream_options.include_usage` is true. Returns the new body, or None when the
/// request is not a stream, already asks for usage, or is not a JSON object (then it is forwarded untouched).
///
/// The edit is minimal: without a `stream_options` key, the member is inserted right after the opening `{`
/// and every other byte is kept; with one, only that value is re-serialized (its own keys may be reordered).
/// A key written twice is read as JSON parsers read it, the last one, and that one is rewritten.
///
/// The caller decides whether the route takes the option (Chat and Completions only; not Mistral, which
/// always reports usage and rejects unknown fields; not Azure api-versions before 2024-09-01-preview),
/// sets `Request::include_usage_injected` when it forwards the new body, and then removes the chunks whose
/// `FrameOutcome::usage_only` is set, since the client did not ask for them.
pub fn inject_include_usage(body: &[u8]) -> Option<Vec<u8>> {
    let flags = read::<StreamFlags<'_>>(body)?;
    if flags.stream.get() != Some(true) {
        return None;
    }
    let Some(raw) = flags.stream_options.0 else {
        let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
        if body.get(open) != Some(&b'{') {
            return None;
        }
        let (head, tail) = body.split_at_checked(open.checked_add(1)?)?;
        let mut out = Vec::with_capacity(body.len().saturating_add(INCLUDE_USAGE_MEMBER.len()));
        out.extend_from_slice(head);
        out.extend_from_slice(INCLUDE_USAGE_MEMBER);
        out.extend_from_slice(tail);
        return Some(out);
    };
    let text = raw.0;
    // The new `stream_options`: `include_usage` true, and every other member as written. `null` or a wrong
    // type, which the provider would reject anyway, becomes a valid object.
    let mut value = Vec::with_capacity(text.len().saturating_add(INCLUDE_USAGE_MEMBER.len()));
    value.extend_from_slice(br#"{"include_usage":true"#);
    let asked = tape::read(text, |opts| {
        let mut asked = false;
        let Some(mut members) = opts.members() else {
            return false;
        };
        while let Some((k, v)) = members.next_raw() {
            if k.str().as_deref() == Some("include_usage") {
                asked |= v.bool() == Some(true);
            } else if let (Some(k), Some(v)) = (k.raw_text(), v.raw_text()) {
                value.push(b',');
                value.extend_from_slice(k.as_bytes());
                value.push(b':');
                value.extend_from_slice(v.as_bytes());
            }
        }
        asked
    })?;
    if asked {
        return None;
    }
    value.push(b'}');
    // The raw value borrows from `body`: its address gives its position.
    let start = edit::offset(body, text)?;
    let (head, rest) = body.split_at_checked(start)?;
    let tail = rest.strip_prefix(text.as_bytes())?;
    let mut out = Vec::with_capacity(
        head.len()
            .saturating_add(value.len())
            .saturating_add(tail.len()),
    );
    out.extend_from_slice(head);
    out.extend_from_slice(&value);
    out.extend_from_slice(tail);
    Some(out)
}

json_struct! {
    pub(crate) struct WireUsage {
        prompt_tokens: Lenient<u64> = "prompt_tokens",
        completion_tokens: Lenient<u64> = "completion_tokens",
        total_tokens: Lenient<u64> = "total_tokens",
        prompt_tokens_details: Lenient<PromptDetails> = "prompt_tokens_details",
        completion_tokens_details: Lenient<CompletionDetails> = "completion_tokens_details",
    }
}

json_struct! {
    struct PromptDetails {
        cached_tokens: Lenient<u64> = "cached_tokens",
        cache_write_tokens: Lenient<u64> = "cache_write_tokens",
    }
}

json_struct! {
    struct CompletionDetails {
        reasoning_tokens: Lenient<u64> = "reasoning_tokens",
    }
}

impl WireUsage {
    /// OpenAI already counts cached tokens inside prompt_tokens and reasoning inside completion_tokens,
    /// which is the semconv meaning: copy as is. Each report overwrites the previous one, so with vLLM's
    /// `continuous_usage_stats` (cumulative usage on every chunk) the last chunk wins.
    ///
    /// By OpenAI's definition total_tokens is prompt_tokens plus completion_tokens. Some compatible servers
    /// leave reasoning out of completion_tokens but not out of the total (xAI adds its reasoning_tokens to
    /// the total; Gemini's OpenAI endpoint counts thinking in the total only); the conventions' output
    /// includes reasoning, so a total above prompt + completion makes the output total - prompt.
    pub(crate) fn apply(self, resp: &mut Response) {
        let u = &mut resp.usage;
        let (prompt, completion) = (self.prompt_tokens.get(), self.completion_tokens.get());
        u.input = prompt.or(u.input);
        u.output = match (prompt, completion, self.total_tokens.get()) {
            (Some(p), Some(c), Some(t)) if t > p.saturating_add(c) => Some(t - p),
            _ => completion.or(u.output),
        };
        if let Some(d) = self.prompt_tokens_details.get() {
            u.cache_read = d.cached_tokens.get().or(u.cache_read);
            u.cache_write = d.cache_write_tokens.get().or(u.cache_write);
        }
        if let Some(d) = self.completion_tokens_details.get() {
            u.reasoning = d.reasoning_tokens.get().or(u.reasoning);
        }
    }
}

json_struct! {
    struct ChatResponse<'a> {
        id: LenientStr<'a> = "id",
        model: LenientStr<'a> = "model",
        /// `"error"` on vLLM's older top-level error body `{"object":"error","type":…,"code":400}`.
        object: LenientStr<'a> = "object",
        kind: LenientStr<'a> = "type",
        service_tier: LenientStr<'a> = "service_tier",
        system_fingerprint: LenientStr<'a> = "system_fingerprint",
        choices: Lenient<Vec<Lenient<Choice<'a>>>> = "choices",
        usage: Lenient<WireUsage> = "usage",
        error: Lenient<ErrorBody<'a>> = "error",
        /// Azure's first chunk: prompt filter verdicts, no choices, no usage.
        prompt_filter_results: Lenient<IgnoredAny> = "prompt_filter_results",
        /// Groq: `x_groq.usage` on the last chunk of a stream, where OpenAI's `usage` is not sent.
        x_groq: Lenient<XGroq> = "x_groq",
    }
}

json_struct! {
    struct XGroq {
        usage: Lenient<WireUsage> = "usage",
    }
}

json_struct! {
    struct Choice<'a> {
        index: Lenient<u64> = "index",
        finish_reason: LenientStr<'a> = "finish_reason",
        message: Lenient<ChoiceMessage<'a>> = "message",
        delta: Lenient<ChoiceMessage<'a>> = "delta",
        /// Legacy Completions (and Mistral FIM in its completion form).
        text: LenientStr<'a> = "text",
    }
}

json_struct! {
    struct ChoiceMessage<'a> {
        /// A string for OpenAI; Mistral may send a list of typed parts.
        content: Lenient<TextContent<'a>> = "content",
        refusal: LenientStr<'a> = "refusal",
        tool_calls: Lenient<Vec<Lenient<WireToolCall<'a>>>> = "tool_calls",
    }
}

json_struct! {
    struct WireToolCall<'a> {
        id: LenientStr<'a> = "id",
        function: Lenient<Named<'a>> = "function",
    }
}

json_struct! {
    pub(crate) struct ErrorBody<'a> {
        kind: LenientStr<'a> = "type",
        code: LenientStr<'a> = "code",
    }
}

impl ErrorBody<'_> {
    /// The provider's error type: a string `code` when present, else `type`. OpenAI's 429 says
    /// `"type":"tokens"` (or `"requests"`) with `"code":"rate_limit_exceeded"`, and its 400s say
    /// `invalid_request_error` with codes such as `context_length_exceeded`: the code is the specific one.
    /// Numeric codes (vLLM's HTTP status) fail the string type and leave `type`.
    pub(crate) fn error_type(&self) -> Option<String> {
        self.code
            .as_ref()
            .filter(|s| !s.is_empty())
            .or(self.kind.as_ref().filter(|s| !s.is_empty()))
            .map(|s| s.to_string())
    }
}

/// Record a tool call unless one with the same id is already recorded. Streams name a call's id and
/// function in its first fragment only, but some compatible servers repeat the id on every fragment, and
/// some send the name in a later fragment than the id.
pub(crate) fn add_tool_call_once(resp: &mut Response, id: &str, name: &str) {
    if id.is_empty() && name.is_empty() {
        return;
    }
    if !id.is_empty() {
        if let Some(known) = resp.tool_calls.iter_mut().find(|t| t.id == id) {
            if known.name.is_empty() {
                name.clone_into(&mut known.name);
            }
            return;
        }
    }
    resp.add_tool_call(id, name);
}

/// Fold one chat/completions response object (a whole body or one stream chunk) into `resp`.
/// Returns whether the object carried generated content.
fn apply_chunk(c: ChatResponse<'_>, resp: &mut Response) -> bool {
    // Azure's prompt-filter and asynchronous-filter chunks carry `id:""` and `model:""`: skipped here.
    set_if_nonempty(&mut resp.id, c.id.get());
    set_if_nonempty(&mut resp.model, c.model.get());
    set_if_nonempty(&mut resp.service_tier, c.service_tier.get());
    set_if_nonempty(&mut resp.system_fingerprint, c.system_fingerprint.get());
    for u in [c.x_groq.get().and_then(|x| x.usage.get()), c.usage.get()]
        .into_iter()
        .flatten()
    {
        u.apply(resp);
    }
    if let Some(e) = c.error.get() {
        resp.error_type = e.error_type().or_else(|| Some("_OTHER".to_owned()));
    } else if c.object.as_ref().is_some_and(|o| o == "error") {
        resp.error_type = c
            .kind
            .get()
            .filter(|k| !k.is_empty())
            .map(Cow::into_owned)
            .or_else(|| Some("_OTHER".to_owned()));
    }
    let mut content = false;
    for (pos, choice) in c.choices.get().unwrap_or_default().into_iter().enumerate() {
        let Some(choice) = choice.get() else { continue };
        let index = choice
            .index
            .get()
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(pos);
        if let Some(reason) = choice.finish_reason.get().filter(|r| !r.is_empty()) {
            resp.set_finish_reason(index, &reason);
        }
        if let Some(text) = choice.text.get().filter(|t| !t.is_empty()) {
            resp.output_chars = resp.output_chars.saturating_add(char_count(&text));
            resp.content.text(index, &text);
            content = true;
        }
        for msg in [choice.message.get(), choice.delta.get()]
            .into_iter()
            .flatten()
        {
            if let Some(text) = msg.content.get().filter(|t| !t.0.is_empty()) {
                resp.output_chars = resp.output_chars.saturating_add(char_count(&text.0));
                resp.content.text(index, &text.0);
                content = true;
            }
            if let Some(text) = msg.refusal.get().filter(|t| !t.is_empty()) {
                resp.output_chars = resp.output_chars.saturating_add(char_count(&text));
                resp.content.text(index, &text);
                content = true;
            }
            for call in items(msg.tool_calls) {
                // An arguments-only fragment is still generated output.
                content = true;
                let id = call.id.get().unwrap_or_default();
                let (name, args) = call
                    .function
                    .get()
                    .map(|f| (f.name.get(), f.arguments.get()))
                    .unwrap_or_default();
                let name = name.unwrap_or_default();
                add_tool_call_once(resp, &id, &name);
                if let Some(args) = args {
                    resp.content.tool_arguments(index, &args);
                }
            }
        }
    }
    content
}

/// Read a whole Chat, Completions or Embeddings response body, or an error body.
pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    // The common response (text answer, integer usage) without the serde structs; see `fast_chunk_with`.
    if let Ok(text) = std::str::from_utf8(body) {
        if fast_chunk_with(text, resp).is_some() {
            return;
        }
    }
    if let Some(c) = read::<ChatResponse<'_>>(body) {
        apply_chunk(c, resp);
    }
}

/// The fast path for the common chunk (`fast_chunk`); a chunk that repeats with another generated string
/// leaves a template (`template.rs`).
pub fn fast_frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    if route.api == Api::OpenAiEmbeddings {
        return None;
    }
    let t = super::common::frame_text(frame)?;
    let (out, repeat) = fast_chunk_with(t, resp)?;
    if let Some((s, index)) = repeat {
        st.template.record(frame, t, s, Sink::Text(index));
    }
    Some(out)
}

/// Read one streamed Chat or Completions chunk (`data: {...}`; `data: [DONE]` ends the stream).
pub fn frame(
    route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> FrameOutcome {
    // Embeddings never stream.
    if route.api == Api::OpenAiEmbeddings {
        return FrameOutcome::default();
    }
    let data = match frame {
        Frame::Sse { data, .. } => data.as_bytes(),
        Frame::Json(bytes) => bytes,
        Frame::Aws { .. } => return FrameOutcome::default(),
    };
    if data.trim_ascii() == b"[DONE]" {
        st.finished = true;
        return FrameOutcome::default();
    }
    let Some(c) = read::<ChatResponse<'_>>(data) else {
        return FrameOutcome::default();
    };
    // The include_usage chunk: `choices: []` plus a usage object. Azure's prompt-filter chunk also has
    // empty choices but no usage; it is excluded explicitly in case a server adds `usage` to it.
    let usage_only = c.usage.as_ref().is_some()
        && matches!(c.choices.as_ref(), Some(v) if v.is_empty())
        && c.prompt_filter_results.as_ref().is_none();
    let content = apply_chunk(c, resp);
    FrameOutcome {
        content,
        usage_only,
    }
}

/// What the fast path keeps of a choice's `message` or `delta`.
#[derive(Clone, Copy, Default)]
struct FastMessage<'a> {
    content: Option<Str<'a>>,
    refusal: Option<Str<'a>>,
}

/// What the fast path keeps of one choice.
#[derive(Clone, Copy, Default)]
struct FastChoice<'a> {
    index: Option<u64>,
    finish_reason: Option<&'a str>,
    text: Option<Str<'a>>,
    message: FastMessage<'a>,
    delta: FastMessage<'a>,
}

/// Choices per chunk the fast path handles (a stream chunk has one, `n>1` streams one per chunk too).
const FAST_CHOICES: usize = 4;

fn fast_message<'a>(r: &mut Reader<'a>) -> Option<FastMessage<'a>> {
    let mut m = FastMessage::default();
    if r.null()? {
        return Some(m);
    }
    r.begin_object()?;
    let (mut seen, mut first) = (0u8, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        let bit = match key {
            b"content" => 1,
            b"refusal" => 2,
            b"tool_calls" => 4,
            _ => 0,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match key {
            b"content" => m.content = r.str_or_null()?,
            b"refusal" => m.refusal = r.str_or_null()?,
            // Tool calls take the serde path.
            b"tool_calls" => r.null()?.then_some(())?,
            _ => {
                r.skip()?;
            }
        }
    }
    Some(m)
}

fn fast_choice<'a>(r: &mut Reader<'a>) -> Option<FastChoice<'a>> {
    let mut c = FastChoice::default();
    r.begin_object()?;
    let (mut seen, mut first) = (0u8, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        let bit = match key {
            b"index" => 1,
            b"finish_reason" => 2,
            b"message" => 4,
            b"delta" => 8,
            b"text" => 16,
            _ => 0,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match key {
            b"index" => {
                if !r.null()? {
                    c.index = Some(r.u64()?);
                }
            }
            b"finish_reason" => c.finish_reason = r.plain_or_null()?,
            b"message" => c.message = fast_message(r)?,
            b"delta" => c.delta = fast_message(r)?,
            b"text" => c.text = r.str_or_null()?,
            _ => {
                r.skip()?;
            }
        }
    }
    Some(c)
}

/// A choice's strings that may carry generated text (present ones, empty or not), in `apply_chunk`'s order.
fn strings<'a>(c: &FastChoice<'a>) -> impl Iterator<Item = Str<'a>> {
    [
        c.text,
        c.message.content,
        c.message.refusal,
        c.delta.content,
        c.delta.refusal,
    ]
    .into_iter()
    .flatten()
}

/// A choice's generated strings, in `apply_chunk`'s order.
fn parts<'a>(c: &FastChoice<'a>) -> impl Iterator<Item = Str<'a>> {
    strings(c).filter(|s| !s.is_empty())
}

/// The fast path for the common stream chunk and the common whole response: id/model/fingerprint, choices
/// with text, content or refusal deltas or messages and finish reasons, `usage` with integer counts, `error`
/// absent or null. It reads the JSON with the skimmer, without building the serde structs; anything else
/// (tool calls, errors, content parts, escaped ids, non-integer counts, Azure's filter chunks, duplicate
/// keys, odd types) returns None and the chunk takes the serde path. Nothing is applied unless the whole
/// chunk was read, so the result is always the serde path's.
#[cfg(test)]
pub(crate) fn fast_chunk(data: &str, resp: &mut Response) -> Option<FrameOutcome> {
    fast_chunk_with(data, resp).map(|(out, _)| out)
}

/// `fast_chunk`, and the chunk's generated string with its choice index when that string was the chunk's
/// only effect besides ids (one choice, no finish reason, one text part): a template for the next chunks.
fn fast_chunk_with<'a>(
    data: &'a str,
    resp: &mut Response,
) -> Option<(FrameOutcome, Option<(Str<'a>, usize)>)> {
    let mut r = Reader::new(data);
    r.begin_object()?;
    let (mut id, mut model, mut tier, mut fingerprint) = (None, None, None, None);
    let mut choices = [FastChoice::default(); FAST_CHOICES];
    let mut n = 0usize;
    // `choices` present as an array (possibly empty), and the `usage` object if any.
    let (mut listed, mut usage) = (false, None);
    let (mut seen, mut first) = (0u16, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        let bit = match key {
            b"id" => 1,
            b"model" => 2,
            b"service_tier" => 4,
            b"system_fingerprint" => 8,
            b"object" => 16,
            b"type" => 32,
            b"choices" => 64,
            b"usage" => 128,
            b"error" => 256,
            b"prompt_filter_results" => 512,
            _ => 0,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        match key {
            b"id" => id = r.plain_or_null()?,
            b"model" => model = r.plain_or_null()?,
            b"service_tier" => tier = r.plain_or_null()?,
            b"system_fingerprint" => fingerprint = r.plain_or_null()?,
            b"object" => {
                if r.plain_or_null()? == Some("error") {
                    return None;
                }
            }
            b"usage" => usage = fast_usage(&mut r)?,
            b"error" => r.null()?.then_some(())?,
            // Azure's filter results and Groq's usage take the serde path.
            b"prompt_filter_results" | b"x_groq" => return None,
            b"choices" => {
                if !r.null()? {
                    r.begin_array()?;
                    listed = true;
                    let mut first = true;
                    while r.next_item(first)? {
                        first = false;
                        *choices.get_mut(n)? = fast_choice(&mut r)?;
                        n += 1;
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
    // Check every generated string before anything is applied (escapes serde would refuse).
    let capture = resp.content.enabled();
    for c in choices.iter().take(n) {
        for p in parts(c) {
            if p.escaped {
                p.generated(capture)?;
            }
        }
    }
    // Everything was read: apply in `apply_chunk`'s order.
    set_changed(&mut resp.id, id);
    set_changed(&mut resp.model, model);
    set_changed(&mut resp.service_tier, tier);
    set_changed(&mut resp.system_fingerprint, fingerprint);
    // The include_usage chunk: an empty `choices` list beside a usage object (see `frame`).
    let usage_only = usage.is_some() && listed && n == 0;
    let counted = usage.is_some();
    if let Some(u) = usage {
        u.apply(resp);
    }
    let mut content = false;
    let mut repeat = None;
    for (pos, c) in choices.iter().take(n).enumerate() {
        let index = c.index.and_then(|i| usize::try_from(i).ok()).unwrap_or(pos);
        if n == 1 && c.finish_reason.is_none() && !counted {
            let mut all = strings(c);
            if let (Some(s), None) = (all.next(), all.next()) {
                repeat = Some((s, index));
            }
        }
        if let Some(reason) = c.finish_reason.filter(|r| !r.is_empty()) {
            resp.set_finish_reason(index, reason);
        }
        for p in parts(c) {
            let Some((chars, text)) = p.generated(capture) else {
                continue;
            };
            resp.output_chars = resp.output_chars.saturating_add(chars);
            resp.content.text(index, &text);
            content = true;
        }
    }
    let out = FrameOutcome {
        content,
        usage_only,
    };
    Some((out, repeat))
}

/// `usage` (an object or null) as serde reads `WireUsage`; None (the serde path) for anything else,
/// including counts that are not plain integers.
fn fast_usage(r: &mut Reader<'_>) -> Option<Option<WireUsage>> {
    // An array would be read as a struct in sequence form by serde: not handled here.
    if !r.object_or_null()? {
        return Some(None);
    }
    const KEYS: [&[u8]; 5] = [
        b"prompt_tokens",
        b"completion_tokens",
        b"prompt_tokens_details",
        b"completion_tokens_details",
        b"total_tokens",
    ];
    let mut u = WireUsage::default();
    r.members(&|k| key_bit(&KEYS, k), &mut |r, b| {
        match b.trailing_zeros() {
            0 => u.prompt_tokens = Lenient(r.u64_or_null()?),
            1 => u.completion_tokens = Lenient(r.u64_or_null()?),
            4 => u.total_tokens = Lenient(r.u64_or_null()?),
            2 => {
                let counts = fast_counts(r, [b"cached_tokens", b"cache_write_tokens"])?;
                u.prompt_tokens_details = Lenient(counts.map(|[c, w]| PromptDetails {
                    cached_tokens: Lenient(c),
                    cache_write_tokens: Lenient(w),
                }));
            }
            _ => {
                u.completion_tokens_details =
                    Lenient(fast_counts(r, [b"reasoning_tokens"])?.map(|[reasoning]| {
                        CompletionDetails {
                            reasoning_tokens: Lenient(reasoning),
                        }
                    }));
            }
        }
        Some(())
    })?;
    Some(Some(u))
}

/// A details object (or null) of integer counts: the `keys`' values, other members skipped.
fn fast_counts<const N: usize>(
    r: &mut Reader<'_>,
    keys: [&[u8]; N],
) -> Option<Option<[Option<u64>; N]>> {
    if !r.object_or_null()? {
        return Some(None);
    }
    let mut out = [None; N];
    r.members(&|k| key_bit(&keys, k), &mut |r, b| {
        *out.get_mut(usize::try_from(b.trailing_zeros()).ok()?)? = r.u64_or_null()?;
        Some(())
    })?;
    Some(Some(out))
}

/// Whether one raw SSE event (as `SseEventFilter` hands it over, `data:` lines and all) is the usage-only
/// chunk. Two cheap necessary conditions on the raw bytes come first, so ordinary chunks are never parsed
/// here: an empty array (the empty `choices`) and a `"usage": {` member. (A usage chunk whose JSON is split
/// over several `data:` lines right there fails them and is forwarded: harmless, the client may read it.)
pub fn is_usage_only_event(raw: &[u8]) -> bool {
    has_empty_array(raw)
        && has_object_member(raw, b"usage")
        && is_usage_only_chunk(&event_data(raw))
}

/// Whether one SSE data payload is the usage-only chunk (see `frame`); used to hide it from the client.
pub fn is_usage_only_chunk(data: &[u8]) -> bool {
    let mut scratch = Response::default();
    let route = Route {
        api: Api::OpenAiChat,
        provider: String::new(),
        path_model: None,
        path_stream: false,
    };
    let mut st = StreamState::default();
    frame(&route, &Frame::Json(data), &mut st, &mut scratch).usage_only
}

/// OpenAI's Chat Completions, Completions and Embeddings, and every server that speaks them.
pub struct OpenAi;

impl super::Provider for OpenAi {
    fn operation(&self, route: &Route) -> &'static str {
        match route.api {
            Api::OpenAiEmbeddings => "embeddings",
            Api::OpenAiCompletions => "text_completion",
            _ => "chat",
        }
    }

    super::readers!();

    fn fast_request(&self, route: &Route, body: &[u8], req: &mut Request) -> bool {
        fast_request_body(route, body, req)
    }

    fn max_tokens(&self, route: &Route) -> Option<MaxTokens> {
        const BOTH: &[&[&str]] = &[&["max_completion_tokens"], &["max_tokens"]];
        Some(match route.api {
            // OpenAI's reasoning models reject `max_tokens`; other servers (vLLM, Mistral, Azure) know it.
            Api::OpenAiChat if route.provider == "openai" => MaxTokens {
                existing: BOTH,
                default: &["max_completion_tokens"],
            },
            Api::OpenAiChat => MaxTokens {
                existing: BOTH,
                default: &["max_tokens"],
            },
            Api::OpenAiCompletions => MaxTokens {
                existing: &[&["max_tokens"]],
                default: &["max_tokens"],
            },
            _ => return None,
        })
    }

    fn error_body(
        &self,
        refusal: Refusal,
        message: &str,
        _headers: &mut Vec<(String, String)>,
    ) -> Json {
        error_body(refusal, message)
    }

    fn capture_input(&self, route: &Route, body: &[u8]) -> Option<Input> {
        match route.api {
            Api::OpenAiChat => capture::read(body, capture::chat),
            Api::OpenAiCompletions => capture::read(body, capture::prompt),
            // Embedding inputs are not conversation messages.
            _ => None,
        }
    }

    fn may_inject_usage(&self, route: &Route) -> bool {
        super::openai_compat::may_inject_usage(route)
    }

    fn inject_usage(&self, body: &[u8]) -> Option<Vec<u8>> {
        inject_include_usage(body)
    }

    fn is_usage_only_event(&self, raw: &[u8]) -> bool {
        is_usage_only_event(raw)
    }

    fn openai_api_type(&self, route: &Route) -> Option<&'static str> {
        (route.api == Api::OpenAiChat).then_some("chat_completions")
    }
}

/// The error body OpenAI's APIs answer with, which its SDKs turn into their error types (`error.type`
/// and `error.code`).
pub(crate) fn error_body(refusal: Refusal, message: &str) -> Json {
    let kind = if refusal == Refusal::BudgetExceeded {
        "rate_limit_error"
    } else {
        "invalid_request_error"
    };
    Json::obj([(
        "error",
        Json::obj([
            ("message", Json::str(message)),
            ("type", Json::str(kind)),
            ("param", Json::Null),
            ("code", Json::str(refusal.code())),
        ]),
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route() -> Route {
        detect("api.openai.com", "/v1/chat/completions").unwrap()
    }

    fn ev(d: &str) -> Frame<'_> {
        Frame::Sse { event: "", data: d }
    }

    /// Feed `chunks` as one stream; returns the response and every frame's outcome.
    fn stream(r: &Route, chunks: &[&str]) -> (Response, StreamState, Vec<FrameOutcome>) {
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let outs = chunks
            .iter()
            .map(|c| frame(r, &ev(c), &mut st, &mut resp))
            .collect();
        (resp, st, outs)
    }

    #[test]
    fn detects_paths() {
        let d = |p| detect("api.openai.com", p).map(|r| r.api);
        assert_eq!(d("/v1/chat/completions"), Some(Api::OpenAiChat));
        assert_eq!(d("/v1/chat/completions?x=1"), Some(Api::OpenAiChat));
        assert_eq!(d("/v1/completions"), Some(Api::OpenAiCompletions));
        assert_eq!(d("/v1/embeddings"), Some(Api::OpenAiEmbeddings));
        assert_eq!(d("/v1/responses"), Some(Api::OpenAiResponses));
        assert_eq!(d("/v1/responses/resp_1"), None);
        assert_eq!(d("/v1/models"), None);
        assert_eq!(d(""), None);
        // Unknown host, OpenAI path: OpenAI-compatible, reported as `openai` until a route names it.
        let r = detect("vllm.internal", "/v1/chat/completions").unwrap();
        assert_eq!(r.provider, "openai");
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
    fn request_odd_types_are_local() {
        let body =
            br#"{"model":42,"stream":"yes","temperature":"hot","max_tokens":-1,"random_seed":9,
            "messages":{"role":"user"},"tools":[1,{"function":{"name":["x"]}}]}"#;
        let mut req = Request {
            model: Some("from-path".into()),
            ..Request::default()
        };
        request(&route(), body, &mut req);
        assert_eq!(req.model.as_deref(), Some("from-path"));
        assert!(!req.stream);
        assert_eq!((req.temperature, req.max_tokens), (None, None));
        assert_eq!(req.seed, Some(9), "Mistral's random_seed");
        assert!(req.tool_names.is_empty());
        let mut req = Request::default();
        request(&route(), b"[1,2]", &mut req);
        request(&route(), b"{\"model\":", &mut req);
        assert_eq!(req, Request::default());
    }

    #[test]
    fn path_model_is_the_fallback_model() {
        let r = Route {
            path_model: Some("my-deployment".into()),
            ..route()
        };
        let mut req = Request::default();
        request(&r, br#"{"messages":[]}"#, &mut req);
        assert_eq!(req.model.as_deref(), Some("my-deployment"));
        request(&r, br#"{"model":"gpt-4o"}"#, &mut req);
        assert_eq!(req.model.as_deref(), Some("gpt-4o"));
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
        assert_eq!(resp.service_tier.as_deref(), Some("default"));
        assert_eq!(resp.output_chars, 5);
    }

    #[test]
    fn reads_refusal() {
        let body = br#"{"id":"c","choices":[{"index":0,"message":{"role":"assistant","content":null,"refusal":"No."},"finish_reason":"stop"}]}"#;
        let mut resp = Response::default();
        response(&route(), body, &mut resp);
        assert_eq!(resp.output_chars, 3);
        let (_, _, outs) = stream(
            &route(),
            &[
                r#"{"id":"c","choices":[{"index":0,"delta":{"refusal":"No"},"finish_reason":null}]}"#,
            ],
        );
        assert!(outs[0].content, "a refusal delta is the first token");
    }

    #[test]
    fn reads_error_bodies() {
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"error":{"message":"slow down","type":"rate_limit_error","code":null}}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("rate_limit_error"));
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"error":{"message":"Rate limit reached","type":"tokens","param":null,"code":"rate_limit_exceeded"}}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("rate_limit_exceeded"));
        // vLLM's top-level error object with a numeric code.
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"object":"error","message":"too long","type":"BadRequestError","param":null,"code":400}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("BadRequestError"));
        let mut resp = Response::default();
        response(&route(), br#"{"error":{"message":"?"}}"#, &mut resp);
        assert_eq!(resp.error_type.as_deref(), Some("_OTHER"));
    }

    #[test]
    fn stream_frames() {
        let (resp, st, outs) = stream(
            &route(),
            &[
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#,
                r#"{"id":"c1","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#,
                r#"{"id":"c1","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1}}"#,
                "[DONE]",
            ],
        );
        assert!(!outs[0].content, "the role header is not content");
        assert!(outs[1].content && !outs[1].usage_only);
        assert!(outs[3].usage_only && !outs[3].content);
        assert!(st.finished);
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(5), Some(1)));
        assert_eq!(resp.output_chars, 2);
    }

    #[test]
    fn groq_streams_are_exact_without_include_usage() {
        // Groq's last chunk: `x_groq.usage`, no OpenAI `usage` (recorded shape, timings included).
        let groq = detect("api.groq.com", "/openai/v1/chat/completions").unwrap();
        let chunks = [
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama-3.3-70b-versatile","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"x_groq":{"id":"req_1","seed":7}}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama-3.3-70b-versatile","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","model":"llama-3.3-70b-versatile","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"x_groq":{"id":"req_1","usage":{"queue_time":0.19,"prompt_tokens":20,"prompt_time":0.01,"completion_tokens":4,"completion_time":0.009,"total_tokens":24,"total_time":0.02}}}"#,
            "[DONE]",
        ];
        for fast in [true, false] {
            let mut st = StreamState::default();
            let mut resp = Response::default();
            let outs: Vec<_> = chunks
                .iter()
                .map(|c| {
                    if fast {
                        super::super::frame(&groq, &ev(c), &mut st, &mut resp)
                    } else {
                        super::super::reference::frame(&groq, &ev(c), &mut st, &mut resp)
                    }
                })
                .collect();
            assert!(st.finished && !outs[2].usage_only);
            assert_eq!(
                (resp.usage.input, resp.usage.output),
                (Some(20), Some(4)),
                "fast {fast}"
            );
            assert_eq!(resp.finish_reasons, ["stop"]);
        }
        // With include_usage Groq also sends OpenAI's usage chunk: the same counts, read once each.
        let (resp, _, outs) = stream(
            &groq,
            &[
                chunks[2],
                r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":20,"completion_tokens":4,"total_tokens":24}}"#,
            ],
        );
        assert!(outs[1].usage_only);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(20), Some(4)));
    }

    #[test]
    fn output_left_out_of_completion_tokens_but_in_the_total_is_counted() {
        // xAI: total = prompt + completion + reasoning, so completion excludes the reasoning.
        let xai = br#"{"id":"x","model":"grok-4-fast-reasoning","choices":[{"index":0,"message":{"role":"assistant","content":"Ola"},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":165,"completion_tokens":2,"total_tokens":296,"prompt_tokens_details":{"text_tokens":165,"cached_tokens":164},
            "completion_tokens_details":{"reasoning_tokens":129,"audio_tokens":0},"num_sources_used":0}}"#;
        // OpenAI: total = prompt + completion, which includes the reasoning.
        let openai = br#"{"id":"c","model":"o3","choices":[],
            "usage":{"prompt_tokens":165,"completion_tokens":131,"total_tokens":296,"completion_tokens_details":{"reasoning_tokens":129}}}"#;
        for body in [&xai[..], &openai[..]] {
            let mut resp = Response::default();
            response(&route(), body, &mut resp);
            let u = resp.usage;
            assert_eq!(
                (u.input, u.output, u.reasoning),
                (Some(165), Some(131), Some(129))
            );
        }
        // Gemini's OpenAI endpoint: the thinking tokens are only in the total.
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"usage":{"completion_tokens":12,"prompt_tokens":35,"total_tokens":109}}"#,
            &mut resp,
        );
        assert_eq!(
            (resp.usage.input, resp.usage.output, resp.usage.reasoning),
            (Some(35), Some(74), None)
        );
        // A total below the sum changes nothing.
        let mut resp = Response::default();
        response(
            &route(),
            br#"{"usage":{"prompt_tokens":10,"completion_tokens":2,"total_tokens":3}}"#,
            &mut resp,
        );
        assert_eq!(resp.usage.output, Some(2));
    }

    #[test]
    fn stream_tool_call_fragments_record_each_call_once() {
        let (resp, _, outs) = stream(
            &route(),
            &[
                r#"{"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"loc"}}]},"finish_reason":null}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]},"finish_reason":null}]}"#,
                // A compatible server repeating the id on a later fragment.
                r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"arguments":"{}"}}]},"finish_reason":null}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            ],
        );
        assert!(outs[0].content && outs[1].content);
        let calls: Vec<_> = resp
            .tool_calls
            .iter()
            .map(|t| (t.id.as_str(), t.name.as_str()))
            .collect();
        assert_eq!(
            calls,
            vec![("call_a", "get_weather"), ("call_b", "get_time")]
        );
        assert_eq!(resp.finish_reasons, vec!["tool_calls"]);
    }

    #[test]
    fn stream_n2_finish_reasons_by_index() {
        let (resp, _, _) = stream(
            &route(),
            &[
                r#"{"id":"c","choices":[{"index":1,"delta":{"content":"b"},"finish_reason":null}]}"#,
                r#"{"id":"c","choices":[{"index":1,"delta":{},"finish_reason":"length"}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            ],
        );
        assert_eq!(resp.finish_reasons, vec!["stop", "length"]);
    }

    #[test]
    fn stream_error_chunk() {
        let (resp, st, _) = stream(
            &route(),
            &[
                r#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}]}"#,
                r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#,
            ],
        );
        assert_eq!(resp.error_type.as_deref(), Some("server_error"));
        assert!(!st.finished);
        assert_eq!(resp.id.as_deref(), Some("c"));
    }

    #[test]
    fn vllm_continuous_usage_takes_the_last_and_ignores_stop_reason() {
        let (resp, _, outs) = stream(
            &route(),
            &[
                r#"{"id":"cmpl-1","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":12,"total_tokens":12,"completion_tokens":0}}"#,
                r#"{"id":"cmpl-1","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":12,"total_tokens":13,"completion_tokens":1}}"#,
                r#"{"id":"cmpl-1","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":"stop","stop_reason":128009}],"usage":{"prompt_tokens":12,"total_tokens":14,"completion_tokens":2}}"#,
                r#"{"id":"cmpl-1","model":"meta-llama/Llama-3.1-8B-Instruct","choices":[],"usage":{"prompt_tokens":12,"total_tokens":14,"completion_tokens":2}}"#,
            ],
        );
        assert!(
            !outs[1].usage_only,
            "usage beside choices is not the usage-only chunk"
        );
        assert!(outs[3].usage_only);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(12), Some(2)));
        assert_eq!(resp.finish_reasons, vec!["stop"]);
    }

    #[test]
    fn whole_text_responses_and_usage_chunks_take_the_skimmer() {
        let body = r#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        let mut resp = Response::default();
        let (out, repeat) = fast_chunk_with(body, &mut resp).expect("read without serde");
        assert!(out.content && !out.usage_only && repeat.is_none());
        assert_eq!(
            (
                resp.usage.input,
                resp.usage.output,
                resp.usage.cache_read,
                resp.usage.reasoning
            ),
            (Some(9), Some(2), Some(4), Some(1))
        );
        assert_eq!(resp.finish_reasons, vec!["stop"]);
        let chunk = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        let (out, _) =
            fast_chunk_with(chunk, &mut Response::default()).expect("read without serde");
        assert!(out.usage_only);
        // Counts that are not plain integers go to serde.
        let float = body.replace("\"prompt_tokens\":9", "\"prompt_tokens\":9.0");
        assert!(fast_chunk_with(&float, &mut Response::default()).is_none());
    }

    #[test]
    fn usage_only_event_on_raw_bytes() {
        let usage = b"data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2,\"total_tokens\":3}}\n\n";
        assert!(is_usage_only_event(usage));
        assert!(is_usage_only_event(
            b"data: {\"choices\": [ ],\r\ndata: \"usage\": {\"prompt_tokens\":1}}\r\n\r\n"
        ));
        // Content chunks, a final chunk with usage beside a choice, a null usage: kept.
        assert!(!is_usage_only_event(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"[]\"}}],\"usage\":null}\n\n"
        ));
        assert!(!is_usage_only_event(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{}}],\"usage\":{\"prompt_tokens\":1}}\n\n"
        ));
        assert!(!is_usage_only_event(
            b"data: {\"choices\":[],\"usage\":null}\n\n"
        ));
        assert!(!is_usage_only_event(b"data: [DONE]\n\n"));
    }

    #[test]
    fn azure_filter_chunks_are_not_content_nor_usage_only() {
        let (resp, _, outs) = stream(
            &route(),
            &[
                r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}}}]}"#,
                r#"{"choices":[{"content_filter_results":{},"delta":{"content":"Hi"},"finish_reason":null,"index":0}],"created":1,"id":"chatcmpl-9","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk"}"#,
                r#"{"choices":[{"content_filter_offsets":{"check_offset":0,"start_offset":0,"end_offset":2},"content_filter_results":{"hate":{"filtered":false,"severity":"safe"}},"finish_reason":null,"index":0}],"created":0,"id":"","model":"","object":""}"#,
                r#"{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[],"usage":{"prompt_tokens":1}}"#,
            ],
        );
        assert_eq!(outs[0], FrameOutcome::default());
        assert!(outs[1].content);
        assert_eq!(outs[2], FrameOutcome::default());
        assert!(!outs[3].usage_only);
        assert_eq!(resp.id.as_deref(), Some("chatcmpl-9"));
        assert_eq!(resp.model.as_deref(), Some("gpt-4o-2024-08-06"));
    }

    #[test]
    fn legacy_completions() {
        let r = detect("api.openai.com", "/v1/completions").unwrap();
        let mut req = Request::default();
        request(
            &r,
            br#"{"model":"gpt-3.5-turbo-instruct","prompt":["Say","this"],"max_tokens":7,"stream":true}"#,
            &mut req,
        );
        assert_eq!(req.prompt_chars, 7);
        assert_eq!(req.max_tokens, Some(7));
        assert!(req.stream);
        let mut req = Request::default();
        request(&r, br#"{"model":"m","prompt":[[1,2,3]]}"#, &mut req);
        assert_eq!((req.model.as_deref(), req.prompt_chars), (Some("m"), 0));
        let mut resp = Response::default();
        response(
            &r,
            br#"{"id":"cmpl-1","object":"text_completion","model":"gpt-3.5-turbo-instruct","choices":[{"text":"\n\nThis is","index":0,"logprobs":null,"finish_reason":"length"}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
            &mut resp,
        );
        assert_eq!(resp.finish_reasons, vec!["length"]);
        assert_eq!(resp.output_chars, 9);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(5), Some(7)));
        let (_, _, outs) = stream(
            &r,
            &[
                r#"{"id":"cmpl-1","object":"text_completion","choices":[{"text":"x","index":0,"finish_reason":null}]}"#,
            ],
        );
        assert!(outs[0].content);
    }

    #[test]
    fn embeddings() {
        let r = detect("api.openai.com", "/v1/embeddings").unwrap();
        let mut req = Request::default();
        request(
            &r,
            br#"{"model":"text-embedding-3-small","input":"hello world","dimensions":256,"encoding_format":"float"}"#,
            &mut req,
        );
        assert_eq!(req.model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(req.prompt_chars, 11);
        assert_eq!(req.embedding_dimensions, Some(256));
        assert_eq!(req.encoding_formats, vec!["float"]);
        let mut resp = Response::default();
        response(
            &r,
            br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],"model":"text-embedding-3-small","usage":{"prompt_tokens":2,"total_tokens":2}}"#,
            &mut resp,
        );
        assert_eq!(resp.usage.input, Some(2));
        assert_eq!(resp.usage.output, None);
        assert!(resp.finish_reasons.is_empty() && resp.id.is_none());
    }

    #[test]
    fn garbage_is_ignored() {
        let mut resp = Response::default();
        response(&route(), b"\xff\x00not json", &mut resp);
        response(
            &route(),
            br#"{"choices":{"0":1},"usage":"many"}"#,
            &mut resp,
        );
        response(
            &route(),
            br#"{"choices":[null,7,{"index":-1,"finish_reason":3}]}"#,
            &mut resp,
        );
        assert_eq!(resp, Response::default());
        let (resp, st, outs) = stream(&route(), &["", ":", "{", "[DONE"]);
        assert_eq!(resp, Response::default());
        assert!(!st.finished);
        assert!(outs.iter().all(|o| *o == FrameOutcome::default()));
    }

    fn injected(body: &str) -> serde_json::Value {
        let out = inject_include_usage(body.as_bytes()).expect("rewritten");
        serde_json::from_slice(&out).expect("valid JSON")
    }

    fn with_usage(body: &str, options: serde_json::Value) -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap();
        v.as_object_mut()
            .unwrap()
            .insert("stream_options".into(), options);
        v
    }

    #[test]
    fn injects_include_usage_without_stream_options() {
        let body =
            r#"  {"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
        let out = inject_include_usage(body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"  {"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#
        );
        assert_eq!(
            injected(body),
            with_usage(body, serde_json::json!({"include_usage": true}))
        );
    }

    #[test]
    fn injects_include_usage_into_existing_stream_options() {
        let body = r#"{"model":"m","stream":true,"stream_options":{"continuous_usage_stats":true,"include_usage":false},"n":2}"#;
        assert_eq!(
            injected(body),
            with_usage(
                body,
                serde_json::json!({"include_usage": true, "continuous_usage_stats": true})
            )
        );
        // The other members are kept as written (order, number spelling, escapes).
        let body =
            r#"{"stream":true,"stream_options":{"z":1.50,"include_usage":false,"a\u0041":[]}}"#;
        let out = inject_include_usage(body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"stream":true,"stream_options":{"include_usage":true,"z":1.50,"a\u0041":[]}}"#
        );
        let body = r#"{"stream":true, "stream_options" : null ,"model":"m"}"#;
        let out = inject_include_usage(body.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"stream":true, "stream_options" : {"include_usage":true} ,"model":"m"}"#
        );
    }

    #[test]
    fn include_usage_left_alone_when_not_needed() {
        for body in [
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true}}"#,
            r#"{"model":"m","stream":false}"#,
            r#"{"model":"m"}"#,
            r#"{"model":"m","stream":"true"}"#,
            r#"{"stream":true,"stream":false}"#,
            r#"[{"stream":true}]"#,
            r#"{"stream":true"#,
            "",
            "\u{feff}{\"stream\":true}",
        ] {
            assert_eq!(inject_include_usage(body.as_bytes()), None, "{body}");
        }
    }
}
