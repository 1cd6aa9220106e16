//! `clamp_max_tokens`: rewrite the request's max-output-tokens field in place, leaving every other byte of
//! the body as the client sent it. The field is per API; when absent it is added, so the provider cannot
//! generate more than the budget allows.

use crate::call::{Api, Route};
use std::borrow::Cow;

/// The members of the JSON object `obj` in order, keys unescaped and values raw (borrowed from `obj`, so
/// their position is known); None when `obj` is not one JSON object.
fn members(obj: &[u8]) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let text = std::str::from_utf8(obj).ok()?;
    crate::codec::json::tape::read(text, |v| {
        let mut out = Vec::new();
        let mut members = v.members()?;
        while let Some((k, v)) = members.next_raw() {
            // serde_json refused a key it cannot unescape, and so the object.
            out.push((k.str()?, v.raw_text()?));
        }
        Some(out)
    })?
}

/// The path of the max-output-tokens field, and alternatives already in the body take precedence.
fn field_paths(
    route: &Route,
) -> Option<(&'static [&'static [&'static str]], &'static [&'static str])> {
    let provider = route.provider.as_str();
    Some(match route.api {
        // OpenAI reasoning models reject `max_tokens`; others (vLLM, Mistral, Azure) know `max_tokens`.
        Api::OpenAiChat if provider == "openai" => (
            &[&["max_completion_tokens"], &["max_tokens"]],
            &["max_completion_tokens"],
        ),
        Api::OpenAiChat => (
            &[&["max_completion_tokens"], &["max_tokens"]],
            &["max_tokens"],
        ),
        Api::OpenAiCompletions | Api::AnthropicMessages | Api::CohereChat => {
            (&[&["max_tokens"]], &["max_tokens"])
        }
        // Each model family names its own (`bedrock/invoke.rs`); for a model that names no family only
        // the members its body already has are rewritten (`&[]`: nothing to add).
        Api::BedrockInvoke => (
            crate::providers::bedrock::INVOKE_MAX_TOKENS,
            crate::providers::bedrock::invoke_max_tokens(route).unwrap_or(&[]),
        ),
        Api::OpenAiResponses => (&[&["max_output_tokens"]], &["max_output_tokens"]),
        Api::Gemini => (
            &[
                &["generationConfig", "maxOutputTokens"],
                &["generation_config", "max_output_tokens"],
            ],
            &["generationConfig", "maxOutputTokens"],
        ),
        Api::BedrockConverse => (
            &[&["inferenceConfig", "maxTokens"]],
            &["inferenceConfig", "maxTokens"],
        ),
        Api::OllamaChat | Api::OllamaGenerate => {
            (&[&["options", "num_predict"]], &["options", "num_predict"])
        }
        Api::OpenAiEmbeddings | Api::BedrockEmbeddings => return None,
    })
}

/// Offset of `inner` (a sub-slice of `outer`) in `outer`.
fn offset(outer: &[u8], inner: &str) -> Option<usize> {
    (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)
}

fn splice(body: &[u8], at: usize, remove: usize, insert: &[u8]) -> Option<Vec<u8>> {
    let (head, rest) = body.split_at_checked(at)?;
    let (_, tail) = rest.split_at_checked(remove)?;
    let mut out = Vec::with_capacity(head.len() + insert.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(insert);
    out.extend_from_slice(tail);
    Some(out)
}

/// Does the object at `obj` have member path `path` (each level an object)?
fn has_path(obj: &[u8], path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let Some(m) = members(obj) else {
        return false;
    };
    m.iter()
        .find(|(k, _)| k == first)
        .is_some_and(|(_, v)| has_path(v.as_bytes(), rest))
}

/// Set `path` in the JSON object `obj` to the literal `value`, creating missing levels. None when the body
/// is not an object, a level is not an object, or a key is duplicated (which value the provider reads would
/// be ambiguous; the caller then refuses rather than guesses).
fn set_path(obj: &[u8], path: &[&str], value: &str) -> Option<Vec<u8>> {
    let (first, rest) = path.split_first()?;
    let members = members(obj)?;
    let mut found = members.iter().filter(|(k, _)| k == first);
    let hit = found.next();
    if found.next().is_some() {
        return None;
    }
    match hit {
        Some((_, raw)) => {
            let text = *raw;
            let at = offset(obj, text)?;
            let replacement = if rest.is_empty() {
                value.as_bytes().to_vec()
            } else {
                set_path(text.as_bytes(), rest, value)?
            };
            splice(obj, at, text.len(), &replacement)
        }
        None => {
            // New member right after the opening brace.
            // The paths are plain identifiers: quoting them is their JSON.
            let mut member = format!("\"{first}\":");
            let mut close = String::new();
            for level in rest {
                member.push('{');
                member.push('"');
                member.push_str(level);
                member.push_str("\":");
                close.push('}');
            }
            member.push_str(value);
            member.push_str(&close);
            let open = obj.iter().position(|&b| b == b'{')?;
            let after = obj.get(open + 1..)?;
            let empty = after
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'}');
            if !empty {
                member.push(',');
            }
            splice(obj, open + 1, 0, member.as_bytes())
        }
    }
}

/// The body with its max output tokens set to `max`, or None when it cannot be rewritten safely.
pub fn set_max_output_tokens(route: &Route, body: &[u8], max: u64) -> Option<Vec<u8>> {
    let (existing, default) = field_paths(route)?;
    let value = max.to_string();
    let mut out: Option<Vec<u8>> = None;
    for path in existing {
        let current = out.as_deref().unwrap_or(body);
        if has_path(current, path) {
            out = Some(set_path(current, path, &value)?);
        }
    }
    match out {
        Some(o) => Some(o),
        None if default.is_empty() => None,
        None => set_path(body, default, &value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn v(b: &[u8]) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    fn r(api: Api, provider: &str) -> Route {
        Route {
            api,
            provider: provider.to_owned(),
            path_model: None,
            path_stream: false,
        }
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
