//! What several providers' readers share: the wire shapes more than one API writes, the system prompt hash
//! and the small setters every reader uses.

use crate::call::Response;
use crate::codec::json::lenient::{json_struct, Lenient, LenientStr, TextContent};
use crate::codec::json::skim::char_count;
use crate::stream::Frame;
use std::borrow::Cow;
use std::cell::RefCell;

json_struct! {
    /// An object read for its `name` alone (tools, functions), as several APIs write them.
    pub struct Named<'a> {
        pub name: LenientStr<'a> = "name",
    }
}

json_struct! {
    /// A tool declared as `{"function": {"name"}}` (OpenAI-shaped `tools`, as Cohere v2 and Ollama take them).
    pub struct FunctionTool<'a> {
        pub function: Lenient<Named<'a>> = "function",
    }
}

json_struct! {
    /// An OpenAI-shaped chat message read for its role and text (OpenAI, Cohere v2, Ollama requests).
    pub struct ChatMessage<'a> {
        pub role: LenientStr<'a> = "role",
        pub content: Lenient<TextContent<'a>> = "content",
    }
}

json_struct! {
    /// An object read for its `type` alone (`response_format`, content blocks).
    pub struct Typed<'a> {
        pub kind: LenientStr<'a> = "type",
    }
}

/// System prompts up to this size are remembered with their hash (see `prompt_hash`).
const PROMPT_MEMO_MAX: usize = 32 * 1024;

thread_local! {
    /// The last system prompt hashed and its hash. Applications send the same system prompt call after
    /// call, often many KiB of it (agents): comparing it costs a memcmp, hashing it ~55 instructions a byte.
    static LAST_PROMPT: RefCell<(String, String)> = const { RefCell::new((String::new(), String::new())) };
}

/// SHA-256 of `text`, first 16 hex characters (64 bits): enough to correlate prompts, useless to reverse.
pub fn prompt_hash(text: &str) -> String {
    if text.is_empty() || text.len() > PROMPT_MEMO_MAX {
        return sha256_prefix(text);
    }
    LAST_PROMPT.with(|memo| {
        let Ok(mut memo) = memo.try_borrow_mut() else {
            return sha256_prefix(text);
        };
        let (last, hash) = &mut *memo;
        if !hash.is_empty() && last.as_str() == text {
            return hash.clone();
        }
        let fresh = sha256_prefix(text);
        last.clear();
        last.push_str(text);
        hash.clone_from(&fresh);
        fresh
    })
}

fn sha256_prefix(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    crate::codec::hex::hex(digest.get(..8).unwrap_or_default())
}

/// Store `value` unless it is absent or empty (providers repeat ids and models as "" on some chunks).
pub fn set_if_nonempty(slot: &mut Option<String>, value: Option<Cow<'_, str>>) {
    if let Some(v) = value.filter(|v| !v.is_empty()) {
        *slot = Some(v.into_owned());
    }
}

/// Add generated text to the response's character count.
pub fn count_chars(resp: &mut Response, text: &str) {
    resp.output_chars = resp.output_chars.saturating_add(char_count(text));
}

/// The JSON text a stream frame carries, for the fast paths: SSE data is already UTF-8, a JSON frame
/// (NDJSON line, array element) is checked, an AWS event-stream message carries none here.
pub(crate) fn frame_text<'a>(frame: &Frame<'a>) -> Option<&'a str> {
    match frame {
        Frame::Sse { data, .. } => Some(data),
        Frame::Json(bytes) => std::str::from_utf8(bytes).ok(),
        Frame::Aws { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_prefix() {
        assert_eq!(prompt_hash(""), "e3b0c44298fc1c14");
    }

    #[test]
    fn remembered_prompt_hashes_are_the_hashes() {
        let long = "x".repeat(PROMPT_MEMO_MAX + 1);
        for text in ["a", "a", "b", "a", "", "ab", "a", &long, &long, "a"] {
            assert_eq!(prompt_hash(text), sha256_prefix(text), "{}", text.len());
        }
        assert_eq!(prompt_hash("abc"), "ba7816bf8f01cfea");
        assert_eq!(prompt_hash("abc"), "ba7816bf8f01cfea");
    }
}
