//! Token counts by modality (text, image, audio, video, document), as providers report them: each a subset
//! of the call's input, cached input or output total. Names (semantic-conventions-genai
//! `model/gen-ai/registry.yaml`): span attributes `gen_ai.usage.{text,image,audio}.input_tokens`,
//! `….cache_read.input_tokens`, `….output_tokens`; metric attribute `gen_ai.token.modality`. Video and
//! document have no names there: tollgate uses `tollgate.usage.{video,document}.…` and the values `video`,
//! `document`. Priced by `pricing::modality`.

/// A kind of content tokens encode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Modality {
    Text,
    Image,
    Audio,
    Video,
    Document,
}

impl Modality {
    pub const ALL: [Modality; 5] = [
        Modality::Text,
        Modality::Image,
        Modality::Audio,
        Modality::Video,
        Modality::Document,
    ];

    /// The `gen_ai.token.modality` value (`video` and `document` are tollgate's: the registry has neither).
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Text => "text",
            Modality::Image => "image",
            Modality::Audio => "audio",
            Modality::Video => "video",
            Modality::Document => "document",
        }
    }

    /// Gemini / Vertex AI `ModalityTokenCount.modality`. Google documents `MODALITY_UNSPECIFIED` as "treated
    /// as TEXT"; an unknown value is None (its tokens stay unattributed, priced as text).
    pub fn from_gemini(s: &str) -> Option<Modality> {
        match s {
            "TEXT" | "MODALITY_UNSPECIFIED" => Some(Modality::Text),
            "IMAGE" => Some(Modality::Image),
            "AUDIO" => Some(Modality::Audio),
            "VIDEO" => Some(Modality::Video),
            "DOCUMENT" => Some(Modality::Document),
            _ => None,
        }
    }

    /// Span attribute names of this modality's `(input, cache_read, output)` token counts.
    pub fn attribute_names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Modality::Text => (
                "gen_ai.usage.text.input_tokens",
                "gen_ai.usage.text.cache_read.input_tokens",
                "gen_ai.usage.text.output_tokens",
            ),
            Modality::Image => (
                "gen_ai.usage.image.input_tokens",
                "gen_ai.usage.image.cache_read.input_tokens",
                "gen_ai.usage.image.output_tokens",
            ),
            Modality::Audio => (
                "gen_ai.usage.audio.input_tokens",
                "gen_ai.usage.audio.cache_read.input_tokens",
                "gen_ai.usage.audio.output_tokens",
            ),
            Modality::Video => (
                "tollgate.usage.video.input_tokens",
                "tollgate.usage.video.cache_read.input_tokens",
                "tollgate.usage.video.output_tokens",
            ),
            Modality::Document => (
                "tollgate.usage.document.input_tokens",
                "tollgate.usage.document.cache_read.input_tokens",
                "tollgate.usage.document.output_tokens",
            ),
        }
    }
}

/// Token counts by modality, each Some only when the provider reported it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ByModality {
    pub text: Option<u64>,
    pub image: Option<u64>,
    pub audio: Option<u64>,
    pub video: Option<u64>,
    pub document: Option<u64>,
}

impl ByModality {
    pub fn get(&self, m: Modality) -> Option<u64> {
        match m {
            Modality::Text => self.text,
            Modality::Image => self.image,
            Modality::Audio => self.audio,
            Modality::Video => self.video,
            Modality::Document => self.document,
        }
    }

    fn slot(&mut self, m: Modality) -> &mut Option<u64> {
        match m {
            Modality::Text => &mut self.text,
            Modality::Image => &mut self.image,
            Modality::Audio => &mut self.audio,
            Modality::Video => &mut self.video,
            Modality::Document => &mut self.document,
        }
    }

    /// Add `n` tokens of `m` (Gemini may list a modality more than once; streams repeat the totals, so a
    /// reader sets a fresh `ByModality` per usage report rather than adding across reports).
    pub fn add(&mut self, m: Modality, n: u64) {
        let slot = self.slot(m);
        *slot = Some(slot.unwrap_or(0).saturating_add(n));
    }

    pub fn is_empty(&self) -> bool {
        *self == ByModality::default()
    }

    /// The count of `m`, 0 when not reported.
    pub fn known(&self, m: Modality) -> u64 {
        self.get(m).unwrap_or(0)
    }
}

/// A call's usage by modality: breakdowns of `Usage::input` (cached included), `Usage::cache_read` and
/// `Usage::output`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModalityUsage {
    pub input: ByModality,
    pub cache_read: ByModality,
    pub output: ByModality,
}

impl ModalityUsage {
    pub fn is_empty(&self) -> bool {
        *self == ModalityUsage::default()
    }

    /// The span attributes of every reported count, in a fixed order.
    pub fn span_attributes(&self) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        for m in Modality::ALL {
            let (input, cached, output) = m.attribute_names();
            for (name, v) in [
                (input, self.input.get(m)),
                (cached, self.cache_read.get(m)),
                (output, self.output.get(m)),
            ] {
                if let Some(v) = v {
                    out.push((name, v));
                }
            }
        }
        out
    }
}
