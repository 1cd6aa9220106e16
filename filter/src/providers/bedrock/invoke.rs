//! InvokeModel and InvokeModelWithResponseStream: request and answer are in the model family's own format
//! (Bedrock user guide, "Inference request parameters and response fields for foundation models"). Claude's
//! are Anthropic Messages (`anthropic.rs`); Titan, Nova, Llama, Mistral, Cohere and AI21 are read by
//! `BedrockRequest` and `Body` (`bedrock.rs`), whose members cover each family's names. Whatever the family,
//! Bedrock meters the call itself: in the response headers (`response_headers`) and, on the last chunk of
//! a stream, in `amazon-bedrock-invocationMetrics`.

use super::{anthropic, read_body, read_metrics, FrameOutcome, StreamState};
use crate::call::{Response, Route};
use base64::Engine as _;

/// The largest base64 text decoded from one chunk (the event-stream decoder already caps frames).
const MAX_CHUNK_B64: usize = 1 << 20;

/// How a model's InvokeModel bodies are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// Anthropic Messages (`anthropic_version: bedrock-2023-05-31`).
    Claude,
    /// Another family's (`Body`).
    Other,
    /// An ARN that names no family (provisioned throughput, application inference profiles, imported
    /// models): both readers look, each reading only its own members.
    Unknown,
}

pub(super) fn format(route: &Route) -> Format {
    // Model ids (`anthropic.claude-…`), cross-region profiles (`us.anthropic.claude-…`) and ARNs naming one.
    let model = route
        .path_model
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    if model.contains("anthropic.") || model.contains("claude") {
        Format::Claude
    } else if model.starts_with("arn:") {
        Format::Unknown
    } else {
        Format::Other
    }
}

/// A whole InvokeModel answer.
pub(super) fn response(route: &Route, body: &[u8], resp: &mut Response) {
    let format = format(route);
    if format != Format::Other {
        anthropic::response(route, body, resp);
    }
    if format != Format::Claude {
        read_body(body, resp);
    }
}

/// One InvokeModelWithResponseStream `chunk`: the model's own event, base64-encoded. Bedrock adds its
/// metering to the last one, which ends the stream whatever the family.
pub(super) fn chunk(
    route: &Route,
    b64: Option<&str>,
    st: &mut StreamState,
    resp: &mut Response,
    fast: bool,
) -> FrameOutcome {
    let Some(b64) = b64.filter(|b| b.len() <= MAX_CHUNK_B64) else {
        return FrameOutcome::default();
    };
    let Ok(event) = base64::engine::general_purpose::STANDARD.decode(b64.as_bytes()) else {
        return FrameOutcome::default();
    };
    let format = format(route);
    let mut content = false;
    if format != Format::Other {
        let (out, fast_read) = anthropic::event_with(&event, st, resp, fast);
        content = out.content;
        // Bedrock's metering rides on Claude's last event (`message_stop`); the fast path refuses events
        // that carry it, so an event it read has none.
        if format == Format::Claude && !fast_read {
            st.finished |= read_metrics(&event, resp);
        }
    }
    if format != Format::Claude {
        if let Some((c, last)) = read_body(&event, resp) {
            content |= c;
            st.finished |= last;
        }
    }
    FrameOutcome {
        content,
        usage_only: false,
    }
}

/// Every family's max-output-tokens member: clamping rewrites those a body has (Claude, Mistral, Cohere,
/// AI21 Jamba `max_tokens`; Llama `max_gen_len`; AI21 Jurassic-2 `maxTokens`; Titan
/// `textGenerationConfig.maxTokenCount`; Nova `inferenceConfig.max_new_tokens`, or Converse's spelling).
pub const MAX_TOKENS: &[&[&str]] = &[
    &["max_tokens"],
    &["max_gen_len"],
    &["maxTokens"],
    &["textGenerationConfig", "maxTokenCount"],
    &["inferenceConfig", "max_new_tokens"],
    &["inferenceConfig", "maxTokens"],
];

/// The max-output-tokens member clamping adds to a body of the route's model family that has none; None
/// when the model names no family (an unknown member would make Bedrock refuse the request).
pub fn max_tokens_member(route: &Route) -> Option<&'static [&'static str]> {
    let model = route
        .path_model
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    let is = |family: &str| model.contains(family);
    Some(
        if format(route) == Format::Claude || is("mistral.") || is("cohere.") || is("ai21.jamba") {
            &["max_tokens"]
        } else if is("amazon.titan") {
            &["textGenerationConfig", "maxTokenCount"]
        } else if is("amazon.nova") {
            &["inferenceConfig", "max_new_tokens"]
        } else if is("meta.") {
            &["max_gen_len"]
        } else if is("ai21.j2") {
            &["maxTokens"]
        } else {
            return None;
        },
    )
}
