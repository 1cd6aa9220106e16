//! What the realtime APIs (OpenAI Realtime and Azure's, Gemini Live) share: token usage of one model
//! response broken down by modality, as their server events report it.
//!
//! The shared `call::Usage` has no modality fields yet; `ModalityUsage::usage` gives its view of the
//! totals for budgets, and `attributes` the OpenTelemetry names (semantic-conventions-genai,
//! `docs/gen-ai/gen-ai-realtime-spans.md`: every per-modality count is a subset of its total, cached
//! counts of their modality's input).

use crate::call::Usage;

/// Token usage of one realtime response (or, summed with `add`, of a session). None: not reported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModalityUsage {
    /// All input tokens, cached ones included.
    pub input: Option<u64>,
    /// All output tokens, reasoning included.
    pub output: Option<u64>,
    /// The provider's own total (input + output for OpenAI; Gemini's `totalTokenCount`).
    pub total: Option<u64>,
    pub input_text: Option<u64>,
    pub input_audio: Option<u64>,
    pub input_image: Option<u64>,
    pub input_video: Option<u64>,
    pub input_document: Option<u64>,
    /// Input tokens served from the provider's cache (a subset of `input`).
    pub cache_read: Option<u64>,
    pub cache_read_text: Option<u64>,
    pub cache_read_audio: Option<u64>,
    pub cache_read_image: Option<u64>,
    pub output_text: Option<u64>,
    pub output_audio: Option<u64>,
    pub output_image: Option<u64>,
    /// Output tokens spent reasoning (a subset of `output`).
    pub reasoning: Option<u64>,
}

/// Add `b` to `a`: None stays None only when both are.
pub(crate) fn add_opt(a: &mut Option<u64>, b: Option<u64>) {
    if let Some(b) = b {
        *a = Some(a.unwrap_or(0).saturating_add(b));
    }
}

/// Whether some object in `text` names a member twice, counting `camelCase` and `snake_case` spellings
/// as one (proto JSON accepts both): a server may read either copy, so a message the gateway would
/// refuse must not slip through as the copy the gateway's reader did not take. False when `text` is not
/// JSON.
pub fn repeated_member(text: &str) -> bool {
    fn folded(key: &str) -> String {
        key.chars()
            .filter(|c| *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    }
    crate::codec::json::tape::read(text, |root| {
        let mut stack = vec![root];
        while let Some(v) = stack.pop() {
            if let Some(members) = v.members() {
                let mut seen: Vec<String> = Vec::new();
                for (key, value) in members {
                    let key = folded(&key);
                    if seen.contains(&key) {
                        return true;
                    }
                    seen.push(key);
                    stack.push(value);
                }
            } else if let Some(elements) = v.elements() {
                stack.extend(elements);
            }
        }
        false
    })
    .unwrap_or(false)
}

impl ModalityUsage {
    pub fn is_empty(&self) -> bool {
        *self == ModalityUsage::default()
    }

    /// Add another response's usage (session totals).
    pub fn add(&mut self, o: &ModalityUsage) {
        for (mine, theirs) in [
            (&mut self.input, o.input),
            (&mut self.output, o.output),
            (&mut self.total, o.total),
            (&mut self.input_text, o.input_text),
            (&mut self.input_audio, o.input_audio),
            (&mut self.input_image, o.input_image),
            (&mut self.input_video, o.input_video),
            (&mut self.input_document, o.input_document),
            (&mut self.cache_read, o.cache_read),
            (&mut self.cache_read_text, o.cache_read_text),
            (&mut self.cache_read_audio, o.cache_read_audio),
            (&mut self.cache_read_image, o.cache_read_image),
            (&mut self.output_text, o.output_text),
            (&mut self.output_audio, o.output_audio),
            (&mut self.output_image, o.output_image),
            (&mut self.reasoning, o.reasoning),
        ] {
            add_opt(mine, theirs);
        }
    }

    /// The totals as the shared usage record counts them (what budgets debit).
    pub fn usage(&self) -> Usage {
        Usage {
            input: self.input,
            output: self.output,
            cache_read: self.cache_read,
            cache_write: None,
            reasoning: self.reasoning,
        }
    }

    /// The span attributes this usage sets, by their OpenTelemetry names. Video and document input have
    /// no name on the realtime span: they count in `gen_ai.usage.input_tokens` only.
    pub fn attributes(&self) -> Vec<(&'static str, u64)> {
        [
            ("gen_ai.usage.input_tokens", self.input),
            ("gen_ai.usage.output_tokens", self.output),
            ("gen_ai.usage.cache_read.input_tokens", self.cache_read),
            ("gen_ai.usage.reasoning.output_tokens", self.reasoning),
            ("gen_ai.usage.text.input_tokens", self.input_text),
            ("gen_ai.usage.audio.input_tokens", self.input_audio),
            ("gen_ai.usage.image.input_tokens", self.input_image),
            (
                "gen_ai.usage.text.cache_read.input_tokens",
                self.cache_read_text,
            ),
            (
                "gen_ai.usage.audio.cache_read.input_tokens",
                self.cache_read_audio,
            ),
            (
                "gen_ai.usage.image.cache_read.input_tokens",
                self.cache_read_image,
            ),
            ("gen_ai.usage.text.output_tokens", self.output_text),
            ("gen_ai.usage.audio.output_tokens", self.output_audio),
            ("gen_ai.usage.image.output_tokens", self.output_image),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_totals_add_what_was_reported() {
        let a = ModalityUsage {
            input: Some(16),
            output: Some(63),
            input_text: Some(16),
            output_audio: Some(44),
            ..ModalityUsage::default()
        };
        let b = ModalityUsage {
            input: Some(100),
            output: Some(10),
            cache_read: Some(64),
            reasoning: Some(u64::MAX),
            ..ModalityUsage::default()
        };
        let mut s = ModalityUsage::default();
        assert!(s.is_empty());
        s.add(&a);
        s.add(&b);
        s.add(&b);
        assert_eq!(
            (s.input, s.output, s.cache_read),
            (Some(216), Some(83), Some(128))
        );
        assert_eq!(
            (s.input_text, s.output_audio, s.input_audio),
            (Some(16), Some(44), None)
        );
        assert_eq!(s.reasoning, Some(u64::MAX), "saturates");
        let u = s.usage();
        assert_eq!(
            (u.input, u.output, u.cache_read, u.cache_write),
            (Some(216), Some(83), Some(128), None)
        );
    }

    #[test]
    fn attributes_are_the_semconv_names_of_what_was_reported() {
        let u = ModalityUsage {
            input: Some(300),
            cache_read: Some(40),
            input_text: Some(100),
            cache_read_text: Some(40),
            input_image: Some(200),
            input_video: Some(7),
            ..ModalityUsage::default()
        };
        assert_eq!(
            u.attributes(),
            vec![
                ("gen_ai.usage.input_tokens", 300),
                ("gen_ai.usage.cache_read.input_tokens", 40),
                ("gen_ai.usage.text.input_tokens", 100),
                ("gen_ai.usage.image.input_tokens", 200),
                ("gen_ai.usage.text.cache_read.input_tokens", 40),
            ]
        );
        assert!(ModalityUsage::default().attributes().is_empty());
    }
}
