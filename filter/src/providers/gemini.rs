//! Google Gemini `generateContent` / `streamGenerateContent`, on the Gemini API
//! (generativelanguage.googleapis.com, provider `gcp.gemini`) and on Vertex AI
//! (`…/publishers/google/models/{model}:…` on `[{location}-]aiplatform.googleapis.com`, provider `gcp.vertex_ai`).
//!
//! A streamed response is a sequence of complete `GenerateContentResponse` objects (SSE `data:` with
//! `alt=sse`, else elements of one JSON array); a whole response is the same object. All three go through
//! `apply_chunk`.

use super::common::prompt_hash;
use super::common::{count_chars, set_if_nonempty, Named};
use super::{FrameOutcome, MaxTokens, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::capture::{self, Input};
use crate::codec::json::lenient::items;
use crate::codec::json::lenient::{json_struct, read, Lenient, LenientStr};
use crate::codec::json::skim::{generated, once, set_changed, Reader, Str};
use crate::codec::json::Json;
use crate::reply::Refusal;
use crate::stream::{Frame, Framing};
use std::borrow::Cow;

pub fn detect(host: &str, path: &str) -> Option<Route> {
    let path = path.split('?').next().unwrap_or("");
    let (prefix, method) = path.rsplit_once(':')?;
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return None,
    };
    // `models/{model}` (Gemini API, Vertex publisher models) or `tunedModels/{model}` (Gemini API).
    let (_, model) = prefix.rsplit_once("odels/")?;
    if model.is_empty() || model.contains('/') {
        return None;
    }
    // Unknown hosts (private endpoints, configured routes) are told apart by Vertex's publisher path.
    let host = host.to_ascii_lowercase();
    let vertex = host.ends_with("aiplatform.googleapis.com")
        || (!host.ends_with("generativelanguage.googleapis.com")
            && prefix.contains("/publishers/"));
    Some(Route {
        api: Api::Gemini,
        provider: if vertex {
            "gcp.vertex_ai"
        } else {
            "gcp.gemini"
        }
        .to_owned(),
        path_model: Some(percent_decode(model)),
        path_stream: stream,
    })
}

/// Decode `%XX` escapes (model ids in paths: `%40`, `%2F`, `%3A`). Malformed escapes stay as written;
/// invalid UTF-8 becomes U+FFFD.
pub(crate) fn percent_decode(s: &str) -> String {
    fn hex(b: &u8) -> Option<u8> {
        char::from(*b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0usize;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i.saturating_add(1)).and_then(hex);
            let lo = bytes.get(i.saturating_add(2)).and_then(hex);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i = i.saturating_add(3);
                continue;
            }
        }
        out.push(b);
        i = i.saturating_add(1);
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

// Google's JSON mapping accepts both lowerCamelCase and the proto's snake_case names: read both.
json_struct! {
    struct GenerateRequest<'a> {
        contents: Lenient<Vec<Lenient<Content<'a>>>> = "contents",
        system_instruction: Lenient<Content<'a>> = "systemInstruction" | "system_instruction",
        generation_config: Lenient<GenerationConfig<'a>> = "generationConfig" | "generation_config",
        tools: Lenient<Vec<Lenient<Tool<'a>>>> = "tools",
    }
}

json_struct! {
    struct Content<'a> {
        parts: Lenient<Vec<Lenient<Part<'a>>>> = "parts",
    }
}

json_struct! {
    struct Part<'a> {
        text: LenientStr<'a> = "text",
        function_call: Lenient<FunctionCall<'a>> = "functionCall" | "function_call",
    }
}

json_struct! {
    struct FunctionCall<'a> {
        id: LenientStr<'a> = "id",
        name: LenientStr<'a> = "name",
    }
}

json_struct! {
    struct GenerationConfig<'a> {
        temperature: Lenient<f64> = "temperature",
        top_p: Lenient<f64> = "topP" | "top_p",
        top_k: Lenient<f64> = "topK" | "top_k",
        candidate_count: Lenient<u64> = "candidateCount" | "candidate_count",
        max_output_tokens: Lenient<u64> = "maxOutputTokens" | "max_output_tokens",
        stop_sequences: Lenient<Vec<Lenient<String>>> = "stopSequences" | "stop_sequences",
        seed: Lenient<i64> = "seed",
        presence_penalty: Lenient<f64> = "presencePenalty" | "presence_penalty",
        frequency_penalty: Lenient<f64> = "frequencyPenalty" | "frequency_penalty",
        response_mime_type: LenientStr<'a> = "responseMimeType" | "response_mime_type",
    }
}

json_struct! {
    struct Tool<'a> {
        function_declarations: Lenient<Vec<Lenient<Named<'a>>>> = "functionDeclarations" | "function_declarations",
    }
}

fn content_text(c: Content<'_>) -> String {
    let mut out = String::new();
    for part in items(c.parts) {
        if let Some(t) = part.text.get() {
            if !out.is_empty() {
                out.push('\n');
            }
            out.push_str(&t);
        }
    }
    out
}

/// The request body names no model and no stream flag: both come from the URL.
pub fn request(route: &Route, body: &[u8], req: &mut Request) {
    if req.model.is_none() {
        req.model.clone_from(&route.path_model);
    }
    req.stream = route.path_stream;
    let Some(r) = read::<GenerateRequest<'_>>(body) else {
        return;
    };
    if let Some(g) = r.generation_config.get() {
        req.temperature = g.temperature.get();
        req.top_p = g.top_p.get();
        req.top_k = g.top_k.get();
        req.choice_count = g.candidate_count.get();
        req.max_tokens = g.max_output_tokens.get();
        req.stop_sequences = items(g.stop_sequences).collect();
        req.seed = g.seed.get();
        req.presence_penalty = g.presence_penalty.get();
        req.frequency_penalty = g.frequency_penalty.get();
        req.output_type = match g.response_mime_type.get().as_deref() {
            Some("application/json") => Some("json"),
            Some("text/plain") => Some("text"),
            _ => None,
        };
    }
    req.tool_names = items(r.tools)
        .flat_map(|t| t.function_declarations.get().unwrap_or_default())
        .filter_map(|f| f.get()?.name.get().map(Cow::into_owned))
        .collect();
    let system = r
        .system_instruction
        .get()
        .map(content_text)
        .unwrap_or_default();
    let mut chars = system.chars().count() as u64;
    for c in items(r.contents) {
        chars = chars.saturating_add(content_text(c).chars().count() as u64);
    }
    req.prompt_chars = chars;
    if !system.is_empty() {
        req.system_prompt_hash = Some(prompt_hash(&system));
    }
}

json_struct! {
    struct GenerateResponse<'a> {
        response_id: LenientStr<'a> = "responseId" | "response_id",
        model_version: LenientStr<'a> = "modelVersion" | "model_version",
        candidates: Lenient<Vec<Lenient<Candidate<'a>>>> = "candidates",
        prompt_feedback: Lenient<PromptFeedback<'a>> = "promptFeedback" | "prompt_feedback",
        usage_metadata: Lenient<UsageMetadata> = "usageMetadata" | "usage_metadata",
        error: Lenient<ErrorBody<'a>> = "error",
    }
}

json_struct! {
    struct Candidate<'a> {
        index: Lenient<u64> = "index",
        finish_reason: LenientStr<'a> = "finishReason" | "finish_reason",
        content: Lenient<Content<'a>> = "content",
    }
}

json_struct! {
    struct PromptFeedback<'a> {
        block_reason: LenientStr<'a> = "blockReason" | "block_reason",
    }
}

json_struct! {
    struct UsageMetadata {
        prompt: Lenient<u64> = "promptTokenCount" | "prompt_token_count",
        tool_use_prompt: Lenient<u64> = "toolUsePromptTokenCount" | "tool_use_prompt_token_count",
        cached: Lenient<u64> = "cachedContentTokenCount" | "cached_content_token_count",
        candidates: Lenient<u64> = "candidatesTokenCount" | "candidates_token_count",
        thoughts: Lenient<u64> = "thoughtsTokenCount" | "thoughts_token_count",
    }
}

impl UsageMetadata {
    /// Every chunk of a stream may repeat the running totals: the latest value of each field wins and nothing
    /// is summed across chunks.
    /// - input = promptTokenCount (already includes cachedContentTokenCount) + toolUsePromptTokenCount:
    ///   tool-use prompt tokens (search / code-execution results fed back to the model) are outside
    ///   promptTokenCount (totalTokenCount = prompt + toolUsePrompt + candidates + thoughts) and are billed
    ///   as input, so input + output equals totalTokenCount.
    /// - output = candidatesTokenCount + thoughtsTokenCount: candidates exclude thoughts, semconv output
    ///   includes reasoning.
    fn apply(self, resp: &mut Response) {
        let u = &mut resp.usage;
        let (prompt, tool) = (self.prompt.get(), self.tool_use_prompt.get());
        if prompt.is_some() || tool.is_some() {
            u.input = Some(prompt.unwrap_or(0).saturating_add(tool.unwrap_or(0)));
        }
        let (cand, thoughts) = (self.candidates.get(), self.thoughts.get());
        if cand.is_some() || thoughts.is_some() {
            u.output = Some(cand.unwrap_or(0).saturating_add(thoughts.unwrap_or(0)));
        }
        u.reasoning = thoughts.or(u.reasoning);
        u.cache_read = self.cached.get().or(u.cache_read);
    }
}

json_struct! {
    struct ErrorBody<'a> {
        status: LenientStr<'a> = "status",
        code: Lenient<i64> = "code",
    }
}

/// Fold one `GenerateContentResponse` into `resp`; returns whether it carried generated content
/// (a non-empty text part, thoughts included, or a function call).
fn apply_chunk(c: GenerateResponse<'_>, resp: &mut Response) -> bool {
    set_if_nonempty(&mut resp.id, c.response_id.get());
    set_if_nonempty(&mut resp.model, c.model_version.get());
    if let Some(u) = c.usage_metadata.get() {
        u.apply(resp);
    }
    if let Some(e) = c.error.get() {
        // `status` is the canonical code name (RESOURCE_EXHAUSTED, INVALID_ARGUMENT, ...).
        resp.error_type = Some(
            e.status
                .get()
                .filter(|s| !s.is_empty())
                .map(Cow::into_owned)
                .or_else(|| e.code.get().map(|c| c.to_string()))
                .unwrap_or_else(|| "_OTHER".to_owned()),
        );
    }
    let mut content = false;
    let mut any_candidate = false;
    for (pos, cand) in c
        .candidates
        .get()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some(cand) = cand.get() else { continue };
        any_candidate = true;
        // proto3 JSON omits `index` when it is 0.
        let index = cand
            .index
            .get()
            .and_then(|i| usize::try_from(i).ok())
            .unwrap_or(pos);
        if let Some(reason) = cand.finish_reason.get().filter(|r| !r.is_empty()) {
            resp.set_finish_reason(index, &reason);
        }
        let parts = cand
            .content
            .get()
            .and_then(|c| c.parts.get())
            .unwrap_or_default();
        for part in parts.into_iter().filter_map(Lenient::get) {
            if let Some(t) = part.text.get().filter(|t| !t.is_empty()) {
                resp.content.text(index, &t);
                count_chars(resp, &t);
                content = true;
            }
            if let Some(f) = part.function_call.get() {
                // Gemini function calls usually carry no id: record "" rather than invent one.
                let id = f.id.get().unwrap_or_default();
                let name = f.name.get().unwrap_or_default();
                if !name.is_empty() {
                    resp.add_tool_call(&id, &name);
                    content = true;
                }
            }
        }
    }
    // A blocked prompt yields no candidates at all: the block reason is the only "finish reason".
    if !any_candidate && resp.finish_reasons.is_empty() {
        if let Some(reason) = c
            .prompt_feedback
            .get()
            .and_then(|p| p.block_reason.get())
            .filter(|r| !r.is_empty())
        {
            resp.set_finish_reason(0, &reason);
        }
    }
    content
}

pub fn response(_route: &Route, body: &[u8], resp: &mut Response) {
    // A whole body is one object; a buffered JSON-array stream (and its errors) is an array of them.
    if body.trim_ascii_start().starts_with(b"[") {
        // Each element on its own: one that is not a response costs only itself.
        let Some(items) = read::<Vec<Lenient<GenerateResponse<'_>>>>(body) else {
            return;
        };
        for c in items.into_iter().filter_map(Lenient::get) {
            apply_chunk(c, resp);
        }
    } else {
        if let Some(c) = read::<GenerateResponse<'_>>(body) {
            apply_chunk(c, resp);
        }
    }
}

/// One stream element. Gemini sends no terminal event: `finished` is set by the last chunk, the one that
/// carries a finish reason together with usage.
pub fn fast_frame(
    _route: &Route,
    frame: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
) -> Option<FrameOutcome> {
    let (out, terminal) = super::common::frame_text(frame).and_then(|t| fast_chunk(t, resp))?;
    if terminal {
        st.finished = true;
    }
    Some(out)
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
    let Some(c) = read::<GenerateResponse<'_>>(data) else {
        return FrameOutcome::default();
    };
    let terminal = c.usage_metadata.as_ref().is_some()
        && c.candidates.as_ref().is_some_and(|cs| {
            cs.iter().any(|c| {
                c.as_ref()
                    .is_some_and(|c| c.finish_reason.as_ref().is_some_and(|r| !r.is_empty()))
            })
        });
    let blocked = c
        .prompt_feedback
        .as_ref()
        .is_some_and(|p| p.block_reason.as_ref().is_some());
    let error = c.error.as_ref().is_some();
    let content = apply_chunk(c, resp);
    if terminal || blocked || error {
        st.finished = true;
    }
    FrameOutcome {
        content,
        usage_only: false,
    }
}

/// Candidates and text parts per chunk the fast path handles (a stream chunk has one of each, as a rule).
const FAST_CANDIDATES: usize = 4;
const FAST_PARTS: usize = 8;

/// What the fast path keeps of one candidate.
#[derive(Clone, Copy, Default)]
struct FastCandidate<'a> {
    index: Option<u64>,
    finish_reason: Option<&'a str>,
}

/// Text parts read so far: (candidate position, text).
struct FastParts<'a> {
    items: [(usize, Option<Str<'a>>); FAST_PARTS],
    len: usize,
}

fn fast_usage(r: &mut Reader<'_>) -> Option<Option<UsageMetadata>> {
    // An array would be read as a struct in sequence form by serde: not handled here.
    if !r.object_or_null()? {
        return Some(None);
    }
    let mut u = UsageMetadata::default();
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        // Each field answers to its camelCase name and its snake_case alias (both at once: a duplicate).
        let (bit, slot) = match key {
            b"promptTokenCount" | b"prompt_token_count" => (1, &mut u.prompt),
            b"toolUsePromptTokenCount" | b"tool_use_prompt_token_count" => {
                (2, &mut u.tool_use_prompt)
            }
            b"cachedContentTokenCount" | b"cached_content_token_count" => (4, &mut u.cached),
            b"candidatesTokenCount" | b"candidates_token_count" => (8, &mut u.candidates),
            b"thoughtsTokenCount" | b"thoughts_token_count" => (16, &mut u.thoughts),
            _ => {
                r.skip()?;
                continue;
            }
        };
        once(&mut seen, bit)?;
        *slot = Lenient(r.u64_or_null()?);
    }
    Some(Some(u))
}

/// A candidate's `content`: its text parts go to `parts`; function calls are not handled here.
fn fast_content<'a>(r: &mut Reader<'a>, pos: usize, parts: &mut FastParts<'a>) -> Option<()> {
    if !r.object_or_null()? {
        return Some(());
    }
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        if key != b"parts" {
            r.skip()?;
            continue;
        }
        once(&mut seen, 1)?;
        if !r.array_or_null()? {
            continue;
        }
        let mut first_item = true;
        while r.next_item(first_item)? {
            first_item = false;
            r.begin_object()?;
            let (mut seen_part, mut first_key) = (0u32, true);
            let mut text = None;
            while let Some(key) = r.next_key(first_key)? {
                first_key = false;
                match key {
                    b"text" => {
                        once(&mut seen_part, 1)?;
                        text = r.str_or_null()?;
                    }
                    b"functionCall" | b"function_call" => {
                        once(&mut seen_part, 2)?;
                        r.null()?.then_some(())?;
                    }
                    _ => {
                        r.skip()?;
                    }
                }
            }
            *parts.items.get_mut(parts.len)? = (pos, text);
            parts.len += 1;
        }
    }
    Some(())
}

fn fast_candidate<'a>(
    r: &mut Reader<'a>,
    pos: usize,
    parts: &mut FastParts<'a>,
) -> Option<FastCandidate<'a>> {
    let mut c = FastCandidate::default();
    r.begin_object()?;
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"index" => {
                once(&mut seen, 1)?;
                c.index = r.u64_or_null()?;
            }
            b"finishReason" | b"finish_reason" => {
                once(&mut seen, 2)?;
                c.finish_reason = r.plain_or_null()?;
            }
            b"content" => {
                once(&mut seen, 4)?;
                fast_content(r, pos, parts)?;
            }
            _ => {
                r.skip()?;
            }
        }
    }
    Some(c)
}

/// The fast path for the common stream chunk: id, model version, usage metadata, candidates with text
/// parts and finish reasons; `promptFeedback` and `error` absent or null. Anything else (function calls,
/// errors, blocked prompts, escaped ids, duplicate members, odd types, more than `FAST_CANDIDATES`
/// candidates or `FAST_PARTS` parts) returns None and the chunk takes the serde path; nothing is applied
/// unless the whole chunk was read, so the result is always the serde path's. The flag is `frame`'s
/// terminal condition (a finish reason together with usage).
pub(crate) fn fast_chunk(data: &str, resp: &mut Response) -> Option<(FrameOutcome, bool)> {
    let mut r = Reader::new(data);
    r.begin_object()?;
    let (mut id, mut model, mut usage) = (None, None, None);
    let mut cands = [FastCandidate::default(); FAST_CANDIDATES];
    let mut n = 0usize;
    let mut parts = FastParts {
        items: [(0, None); FAST_PARTS],
        len: 0,
    };
    let (mut seen, mut first) = (0u32, true);
    while let Some(key) = r.next_key(first)? {
        first = false;
        match key {
            b"responseId" | b"response_id" => {
                once(&mut seen, 1)?;
                id = r.plain_or_null()?;
            }
            b"modelVersion" | b"model_version" => {
                once(&mut seen, 2)?;
                model = r.plain_or_null()?;
            }
            b"usageMetadata" | b"usage_metadata" => {
                once(&mut seen, 4)?;
                usage = fast_usage(&mut r)?;
            }
            b"candidates" => {
                once(&mut seen, 8)?;
                if r.array_or_null()? {
                    let mut first_item = true;
                    while r.next_item(first_item)? {
                        first_item = false;
                        *cands.get_mut(n)? = fast_candidate(&mut r, n, &mut parts)?;
                        n += 1;
                    }
                }
            }
            b"promptFeedback" | b"prompt_feedback" => {
                once(&mut seen, 16)?;
                r.null()?.then_some(())?;
            }
            b"error" => {
                once(&mut seen, 32)?;
                r.null()?.then_some(())?;
            }
            _ => {
                r.skip()?;
            }
        }
    }
    if !r.at_end() {
        return None;
    }
    let cands = cands.get(..n)?;
    let parts = parts.items.get(..parts.len)?;
    // Check every text before anything is applied (escapes serde would refuse).
    let capture = resp.content.enabled();
    for (_, t) in parts {
        generated(*t, capture)?;
    }
    // Everything was read: apply in `apply_chunk`'s order.
    set_changed(&mut resp.id, id);
    set_changed(&mut resp.model, model);
    let has_usage = usage.is_some();
    if let Some(u) = usage {
        u.apply(resp);
    }
    let mut content = false;
    let mut finish = false;
    for (pos, c) in cands.iter().enumerate() {
        let index = c.index.and_then(|i| usize::try_from(i).ok()).unwrap_or(pos);
        if let Some(reason) = c.finish_reason.filter(|r| !r.is_empty()) {
            resp.set_finish_reason(index, reason);
            finish = true;
        }
        for (_, t) in parts.iter().filter(|(p, _)| *p == pos) {
            let Some((chars, text)) = generated(*t, capture).flatten() else {
                continue;
            };
            if chars > 0 {
                resp.content.text(index, &text);
                resp.output_chars = resp.output_chars.saturating_add(chars);
                content = true;
            }
        }
    }
    Some((
        FrameOutcome {
            content,
            usage_only: false,
        },
        has_usage && finish,
    ))
}

/// Gemini's `generateContent` and `streamGenerateContent` (Google AI and Vertex AI).
pub struct Gemini;

impl super::Provider for Gemini {
    fn operation(&self, _route: &Route) -> &'static str {
        "generate_content"
    }

    super::readers!();

    /// `streamGenerateContent` without `alt=sse`: one JSON array delivered element by element.
    fn framing(&self, route: &Route, _req: &Request, _ct: &str) -> Framing {
        if route.path_stream {
            Framing::JsonArray
        } else {
            Framing::Whole
        }
    }

    fn max_tokens(&self, _route: &Route) -> Option<MaxTokens> {
        Some(MaxTokens {
            existing: &[
                &["generationConfig", "maxOutputTokens"],
                &["generation_config", "max_output_tokens"],
            ],
            default: &["generationConfig", "maxOutputTokens"],
        })
    }

    /// `google.rpc.Status`, as Google APIs answer errors.
    fn error_body(
        &self,
        refusal: Refusal,
        message: &str,
        _headers: &mut Vec<(String, String)>,
    ) -> Json {
        let status = if refusal == Refusal::BudgetExceeded {
            "RESOURCE_EXHAUSTED"
        } else {
            "INVALID_ARGUMENT"
        };
        Json::obj([(
            "error",
            Json::obj([
                ("code", Json::Lit(refusal.status().to_string())),
                ("message", Json::str(message)),
                ("status", Json::str(status)),
            ]),
        )])
    }

    /// `systemInstruction` (or `system_instruction`) and `contents`, whose `model` role is the assistant.
    fn capture_input(&self, _route: &Route, body: &[u8]) -> Option<Input> {
        capture::read(body, |v, inp| {
            let system = capture::get(v, "systemInstruction")
                .or_else(|| capture::get(v, "system_instruction"));
            capture::system_parts(system, &mut inp.system);
            inp.messages = capture::list(v, "contents")
                .map(|m| {
                    let role = capture::get_str(m, "role");
                    let role = match role.as_deref().unwrap_or("user") {
                        "model" => "assistant",
                        r => r,
                    };
                    let mut parts = Vec::new();
                    if let Some(p) = capture::get(m, "parts") {
                        capture::parts_of(p, &mut parts);
                    }
                    capture::message(role, parts, None)
                })
                .collect();
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemini_route(stream: bool) -> Route {
        let m = if stream {
            "streamGenerateContent"
        } else {
            "generateContent"
        };
        detect(
            "generativelanguage.googleapis.com",
            &format!("/v1beta/models/gemini-2.5-flash:{m}?alt=sse"),
        )
        .unwrap()
    }

    #[test]
    fn detects_paths() {
        let r = gemini_route(true);
        assert_eq!(r.api, Api::Gemini);
        assert_eq!(r.provider, "gcp.gemini");
        assert_eq!(r.path_model.as_deref(), Some("gemini-2.5-flash"));
        assert!(r.path_stream);
        let r = detect(
            "us-central1-aiplatform.googleapis.com:443",
            "/v1/projects/p/locations/us-central1/publishers/google/models/gemini-2.0-flash-001:generateContent",
        )
        .unwrap();
        assert_eq!(r.provider, "gcp.vertex_ai");
        assert_eq!(r.path_model.as_deref(), Some("gemini-2.0-flash-001"));
        assert!(!r.path_stream);
        let r = detect("", "/v1/publishers/google/models/gemini-x:generateContent").unwrap();
        assert_eq!(r.provider, "gcp.vertex_ai");
        let r = detect(
            "generativelanguage.googleapis.com",
            "/v1/tunedModels/my%2Dtune:generateContent",
        )
        .unwrap();
        assert_eq!(r.path_model.as_deref(), Some("my-tune"));
        assert!(detect(
            "generativelanguage.googleapis.com",
            "/v1beta/models/m:countTokens"
        )
        .is_none());
        assert!(detect(
            "generativelanguage.googleapis.com",
            "/v1beta/models/:generateContent"
        )
        .is_none());
        assert!(detect("x", "/v1beta/generateContent").is_none());
    }

    #[test]
    fn decodes_percent() {
        assert_eq!(percent_decode("a%2Fb%3Ac%40d"), "a/b:c@d");
        assert_eq!(percent_decode("bad%2"), "bad%2");
        assert_eq!(percent_decode("bad%zz%"), "bad%zz%");
        assert_eq!(percent_decode("%ff"), "\u{fffd}");
    }

    #[test]
    fn reads_request() {
        let body = br#"{"contents":[{"role":"user","parts":[{"text":"hello"},{"inlineData":{}}]}],
          "systemInstruction":{"parts":[{"text":"be"},{"text":"brief"}]},
          "generationConfig":{"temperature":0.3,"topP":0.8,"topK":20,"candidateCount":2,"maxOutputTokens":256,
             "stopSequences":["x",1],"seed":5,"presencePenalty":0.1,"frequencyPenalty":0.2,"responseMimeType":"application/json"},
          "tools":[{"functionDeclarations":[{"name":"get_weather"},{"name":"get_time"}]},{"googleSearch":{}}]}"#;
        let mut req = Request::default();
        request(&gemini_route(false), body, &mut req);
        assert_eq!(req.model.as_deref(), Some("gemini-2.5-flash"));
        assert!(!req.stream);
        assert_eq!(
            (req.temperature, req.top_p, req.top_k),
            (Some(0.3), Some(0.8), Some(20.0))
        );
        assert_eq!(req.choice_count, Some(2));
        assert_eq!(req.max_tokens, Some(256));
        assert_eq!(req.stop_sequences, vec!["x"]);
        assert_eq!(req.seed, Some(5));
        assert_eq!(
            (req.presence_penalty, req.frequency_penalty),
            (Some(0.1), Some(0.2))
        );
        assert_eq!(req.output_type, Some("json"));
        assert_eq!(req.tool_names, vec!["get_weather", "get_time"]);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("be\nbrief")));
        assert_eq!(req.prompt_chars, 8 + 5);
    }

    #[test]
    fn reads_snake_case_request_and_survives_garbage() {
        let body = br#"{"system_instruction":{"parts":[{"text":"s"}]},"generation_config":{"max_output_tokens":9},"contents":"x"}"#;
        let mut req = Request::default();
        request(&gemini_route(true), body, &mut req);
        assert_eq!(req.max_tokens, Some(9));
        assert!(req.stream);
        assert_eq!(req.system_prompt_hash, Some(prompt_hash("s")));
        let mut req = Request::default();
        request(&gemini_route(true), b"[1,2", &mut req);
        assert_eq!(req.model.as_deref(), Some("gemini-2.5-flash"));
    }

    #[test]
    fn reads_response_with_thoughts_and_calls() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[{"text":"think","thought":true},{"functionCall":{"name":"get_weather","args":{}}}]},"finishReason":"STOP"},
          {"index":1,"content":{"parts":[{"text":"hi"}]},"finishReason":"MAX_TOKENS"}],
          "usageMetadata":{"promptTokenCount":100,"cachedContentTokenCount":60,"candidatesTokenCount":20,"thoughtsTokenCount":30,"toolUsePromptTokenCount":5,"totalTokenCount":155},
          "modelVersion":"gemini-2.5-flash-001","responseId":"abc"}"#;
        let mut resp = Response::default();
        response(&gemini_route(false), body, &mut resp);
        assert_eq!(resp.id.as_deref(), Some("abc"));
        assert_eq!(resp.model.as_deref(), Some("gemini-2.5-flash-001"));
        assert_eq!(resp.finish_reasons, vec!["STOP", "MAX_TOKENS"]);
        assert_eq!(resp.usage.input, Some(105));
        assert_eq!(resp.usage.cache_read, Some(60));
        assert_eq!(resp.usage.output, Some(50));
        assert_eq!(resp.usage.reasoning, Some(30));
        assert_eq!(resp.tool_calls.len(), 1);
        assert_eq!(
            (
                resp.tool_calls[0].id.as_str(),
                resp.tool_calls[0].name.as_str()
            ),
            ("", "get_weather")
        );
    }

    #[test]
    fn blocked_prompt_and_errors() {
        let mut resp = Response::default();
        response(
            &gemini_route(false),
            br#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8}}"#,
            &mut resp,
        );
        assert_eq!(resp.finish_reasons, vec!["SAFETY"]);
        assert_eq!(resp.usage.input, Some(8));
        let mut resp = Response::default();
        response(
            &gemini_route(false),
            br#"[{"error":{"code":429,"message":"quota","status":"RESOURCE_EXHAUSTED"}}]"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("RESOURCE_EXHAUSTED"));
        let mut resp = Response::default();
        response(
            &gemini_route(false),
            br#"{"error":{"code":503}}"#,
            &mut resp,
        );
        assert_eq!(resp.error_type.as_deref(), Some("503"));
        let mut resp = Response::default();
        response(&gemini_route(false), b"[{\"x\":", &mut resp);
        assert_eq!(resp, Response::default());
    }

    #[test]
    fn stream_takes_last_usage() {
        let r = gemini_route(true);
        let mut st = StreamState::default();
        let mut resp = Response::default();
        let chunks = [
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]}}],"usageMetadata":{"promptTokenCount":10,"totalTokenCount":10},"modelVersion":"g","responseId":"r1"}"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":2,"totalTokenCount":12},"modelVersion":"g","responseId":"r1"}"#,
            r#"not json"#,
            r#"{"candidates":[{"content":{"parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":4,"totalTokenCount":14},"modelVersion":"g","responseId":"r1"}"#,
        ];
        let content: Vec<bool> = chunks
            .iter()
            .map(|d| frame(&r, &Frame::Json(d.as_bytes()), &mut st, &mut resp).content)
            .collect();
        assert_eq!(content, vec![false, true, false, true]);
        assert!(st.finished);
        assert_eq!((resp.usage.input, resp.usage.output), (Some(10), Some(4)));
        assert_eq!(resp.finish_reasons, vec!["STOP"]);
        assert_eq!(resp.output_chars, 5);
    }
}
