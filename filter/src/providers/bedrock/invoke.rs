//! InvokeModel and InvokeModelWithResponseStream: request and answer are in the model family's own format
//! (Bedrock user guide, "Inference request parameters and response fields for foundation models"). Claude's
//! are Anthropic Messages (`anthropic.rs`); Titan, Nova, Llama, Mistral, Cohere and AI21 are read by
//! `BedrockRequest` and `Body` (`bedrock.rs`), whose members cover each family's names. Whatever the family,
//! Bedrock meters the call itself: in the response headers (`response_headers`) and, on the last chunk of
//! a stream, in `amazon-bedrock-invocationMetrics`.

use super::{anthropic, read_body, FrameOutcome, StreamState};
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

/// The model families whose names clamping needs, by what their model ids contain (ids such as
/// `anthropic.claude-…`, cross-region profiles such as `us.anthropic.claude-…`, and ARNs naming one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Claude,
    Titan,
    Nova,
    Llama,
    Jurassic,
    /// Mistral, Cohere, AI21 Jamba: `max_tokens`.
    MaxTokens,
}

const FAMILIES: [(&str, Family); 9] = [
    ("anthropic.", Family::Claude),
    ("claude", Family::Claude),
    ("amazon.titan", Family::Titan),
    ("amazon.nova", Family::Nova),
    ("meta.", Family::Llama),
    ("ai21.j2", Family::Jurassic),
    ("mistral.", Family::MaxTokens),
    ("cohere.", Family::MaxTokens),
    ("ai21.jamba", Family::MaxTokens),
];

/// The route's model family; None for a model that names none of them (`arn:` ARNs, other families).
fn family(route: &Route) -> Option<Family> {
    let model = route
        .path_model
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase();
    FAMILIES
        .iter()
        .find(|(name, _)| model.contains(name))
        .map(|&(_, f)| f)
}

pub(super) fn format(route: &Route) -> Format {
    match family(route) {
        Some(Family::Claude) => Format::Claude,
        Some(_) => Format::Other,
        None if route
            .path_model
            .as_deref()
            .is_some_and(|m| m.starts_with("arn:")) =>
        {
            Format::Unknown
        }
        None => Format::Other,
    }
}

/// A whole InvokeModel answer.
pub(super) fn response(route: &Route, body: &[u8], resp: &mut Response) {
    let format = format(route);
    if format != Format::Other {
        anthropic::response(route, body, resp);
    }
    if format != Format::Claude {
        read_body(body, true, resp);
    }
}

/// A reader of one Anthropic Messages event; the flag says whether its fast path read it.
pub(super) type ClaudeEvent = fn(&[u8], &mut StreamState, &mut Response) -> (FrameOutcome, bool);

/// One InvokeModelWithResponseStream `chunk`: the model's own event, base64-encoded, a Claude event read by
/// `claude`. Bedrock adds its metering to the last one, which ends the stream whatever the family.
pub(super) fn chunk(
    route: &Route,
    b64: Option<&str>,
    st: &mut StreamState,
    resp: &mut Response,
    claude: ClaudeEvent,
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
        let (out, fast_read) = claude(&event, st, resp);
        content = out.content;
        // Bedrock's metering rides on Claude's last event (`message_stop`); the fast path refuses events
        // that carry it, so an event it read has none.
        if format == Format::Claude && !fast_read {
            st.finished |= read_body(&event, false, resp).is_some_and(|(_, last)| last);
        }
    }
    if format != Format::Claude {
        if let Some((c, last)) = read_body(&event, true, resp) {
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
    Some(match family(route)? {
        Family::Claude | Family::MaxTokens => &["max_tokens"],
        Family::Titan => &["textGenerationConfig", "maxTokenCount"],
        Family::Nova => &["inferenceConfig", "max_new_tokens"],
        Family::Llama => &["max_gen_len"],
        Family::Jurassic => &["maxTokens"],
    })
}
