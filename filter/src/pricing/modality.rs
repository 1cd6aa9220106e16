//! Usage and prices by modality: audio and image tokens cost several times what text does, so a call's cost
//! is only right when the tokens the provider reports per modality are priced per modality.
//!
//! Where providers report modality (each count a subset of the call's input or output total):
//! - OpenAI Chat Completions: `usage.prompt_tokens_details{text_tokens, audio_tokens, image_tokens,
//!   cached_tokens}` and `usage.completion_tokens_details{text_tokens, audio_tokens, reasoning_tokens}`;
//!   cached tokens are not broken down by modality.
//! - OpenAI Realtime (`response.done`): `usage.input_token_details{text_tokens, audio_tokens, image_tokens,
//!   cached_tokens, cached_tokens_details{text_tokens, audio_tokens, image_tokens}}` and
//!   `usage.output_token_details{text_tokens, audio_tokens}`.
//! - Gemini and Vertex AI: `usageMetadata.promptTokensDetails`, `cacheTokensDetails` and
//!   `candidatesTokensDetails`, lists of `{modality, tokenCount}` with modality `TEXT`, `IMAGE`, `AUDIO`,
//!   `VIDEO`, `DOCUMENT` (`MODALITY_UNSPECIFIED` counts as text).
//! - OpenAI Responses, Anthropic, Bedrock Converse: no modality breakdown; their tokens are priced as text.
//!
//! Names (semantic-conventions-genai `model/gen-ai/registry.yaml`): span attributes
//! `gen_ai.usage.{text,image,audio}.input_tokens`, `gen_ai.usage.{text,image,audio}.cache_read.input_tokens`
//! and `gen_ai.usage.{text,image,audio}.output_tokens`; metric attribute `gen_ai.token.modality` = `text`,
//! `image`, `audio` or `unknown`. Video and document have no names there: tollgate uses
//! `tollgate.usage.{video,document}.…` and modality values `video` and `document`.
//!
//! Prices, per model pattern in `pricing` (USD per million tokens, as `input` and `output`):
//!
//! ```json
//! "gpt-realtime*": {"input": 4, "cache_read": 0.4, "output": 16,
//!                   "audio_input": 32, "audio_cache_read": 0.4, "audio_output": 64,
//!                   "image_input": 5, "image_cache_read": 0.5}
//! ```
//!
//! These are the modalities providers bill apart from text: audio in, out and cached (OpenAI audio and
//! realtime models, Gemini's audio input), image in and cached (OpenAI realtime) and image out (Gemini
//! image generation). Video and document tokens are billed at the text rate by the providers above, and
//! are priced at `input`. A missing modality price falls back: `audio_input` / `image_input` to `input`,
//! `audio_output` / `image_output` to `output`, a modality's cached price to `cache_read`, else to the
//! modality's own input price.

use super::Price;
pub use crate::call::modality::{ByModality, Modality, ModalityUsage};
use crate::call::Usage;
use crate::codec::json::strict::{float, object, opt, required, under, ConfigError};
use crate::codec::json::tape::Value as Json;

/// A price entry with its per-modality prices (USD per million tokens).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModalPrice {
    /// `input`, `output`, `cache_read`, `cache_write`.
    pub base: Price,
    pub audio_input: Option<f64>,
    pub audio_cache_read: Option<f64>,
    pub audio_output: Option<f64>,
    pub image_input: Option<f64>,
    pub image_cache_read: Option<f64>,
    pub image_output: Option<f64>,
}

/// The keys of a price entry.
pub const KEYS: [&str; 10] = [
    "input",
    "output",
    "cache_read",
    "cache_write",
    "audio_input",
    "audio_cache_read",
    "audio_output",
    "image_input",
    "image_cache_read",
    "image_output",
];

/// USD per million tokens → pico-USD per million tokens, exactly for any price written with up to 12
/// decimals (`0.067` is 67 000 000 000, where the f64 product is 67 000 000 000.00001).
fn rate(usd_per_million: f64) -> u128 {
    if usd_per_million.is_finite() && usd_per_million > 0.0 {
        // ≤ 1e18 after validation; `as` saturates anything larger.
        (usd_per_million * 1e12).round() as u64 as u128
    } else {
        0
    }
}

/// The rates a cost is computed with, fallbacks resolved.
struct Rates {
    text_input: u128,
    text_cached: u128,
    cache_write: u128,
    text_output: u128,
    audio_input: u128,
    audio_cached: u128,
    audio_output: u128,
    image_input: u128,
    image_cached: u128,
    image_output: u128,
}

impl ModalPrice {
    /// A price without modality prices (every token priced as the base entry prices it).
    pub fn text_only(base: Price) -> ModalPrice {
        ModalPrice {
            base,
            audio_input: None,
            audio_cache_read: None,
            audio_output: None,
            image_input: None,
            image_cache_read: None,
            image_output: None,
        }
    }

    /// One entry of `pricing`; `key` is its full key (`pricing.gpt-4o*`), errors name the price
    /// (`pricing.gpt-4o*.audio_input`).
    pub fn read(key: &str, v: Json) -> Result<ModalPrice, ConfigError> {
        let mut p: [Option<f64>; 10] = [None; 10];
        object(v, &KEYS, &mut |i, v| {
            if let Some(slot) = p.get_mut(i) {
                *slot = opt(v, float)?;
            }
            Ok(())
        })
        .map_err(|e| under(e, key))?;
        for (name, value) in KEYS.iter().zip(p.iter()) {
            if let Some(v) = value {
                if !v.is_finite() || !(0.0..=1e6).contains(v) {
                    return Err(ConfigError {
                        key: format!("{key}.{name}"),
                        reason: "must be a price in USD per million tokens (0 to 1000000)".into(),
                    });
                }
            }
        }
        let [input, output, cache_read, cache_write, audio_input, audio_cache_read, audio_output, image_input, image_cache_read, image_output] =
            p;
        Ok(ModalPrice {
            base: Price {
                input: required(input, "input").map_err(|e| under(e, key))?,
                output: required(output, "output").map_err(|e| under(e, key))?,
                cache_read,
                cache_write,
            },
            audio_input,
            audio_cache_read,
            audio_output,
            image_input,
            image_cache_read,
            image_output,
        })
    }

    fn rates(&self) -> Rates {
        let b = &self.base;
        let text_input = rate(b.input);
        let text_output = rate(b.output);
        let cache_read = b.cache_read.map(rate);
        let audio_input = self.audio_input.map_or(text_input, rate);
        let image_input = self.image_input.map_or(text_input, rate);
        Rates {
            text_input,
            text_cached: cache_read.unwrap_or(text_input),
            cache_write: b.cache_write.map_or(text_input, rate),
            text_output,
            audio_input,
            audio_cached: self
                .audio_cache_read
                .map(rate)
                .or(cache_read)
                .unwrap_or(audio_input),
            audio_output: self.audio_output.map_or(text_output, rate),
            image_input,
            image_cached: self
                .image_cache_read
                .map(rate)
                .or(cache_read)
                .unwrap_or(image_input),
            image_output: self.image_output.map_or(text_output, rate),
        }
    }

    /// Exact pico-USD of a call, rounded up (never under-charge). Usage has the semconv meaning (input
    /// includes cached tokens; modality counts are subsets of their totals); a breakdown that does not add
    /// up is clamped to the totals, and tokens no modality claims are text.
    pub fn cost_pico(&self, u: &Usage, m: &ModalityUsage) -> u64 {
        let r = self.rates();
        let input = u.input.unwrap_or(0);
        let read = u.cache_read.unwrap_or(0).min(input);
        let write = u.cache_write.unwrap_or(0).min(input - read);
        let plain = input - read - write;
        // Cached tokens by modality; the rest of the cache (text, video, document, unreported) is text.
        let audio_cached = m.cache_read.known(Modality::Audio).min(read);
        let image_cached = m.cache_read.known(Modality::Image).min(read - audio_cached);
        let text_cached = read - audio_cached - image_cached;
        // A modality's input less its cached part is what it adds to the uncached input.
        let audio_plain = m
            .input
            .known(Modality::Audio)
            .saturating_sub(audio_cached)
            .min(plain);
        let image_plain = m
            .input
            .known(Modality::Image)
            .saturating_sub(image_cached)
            .min(plain - audio_plain);
        let text_plain = plain - audio_plain - image_plain;
        let output = u.output.unwrap_or(0);
        let audio_out = m.output.known(Modality::Audio).min(output);
        let image_out = m.output.known(Modality::Image).min(output - audio_out);
        let text_out = output - audio_out - image_out;
        let pico_millions: u128 = [
            (text_plain, r.text_input),
            (audio_plain, r.audio_input),
            (image_plain, r.image_input),
            (text_cached, r.text_cached),
            (audio_cached, r.audio_cached),
            (image_cached, r.image_cached),
            (write, r.cache_write),
            (text_out, r.text_output),
            (audio_out, r.audio_output),
            (image_out, r.image_output),
        ]
        .iter()
        .map(|&(n, rate)| u128::from(n) * rate)
        .fold(0u128, u128::saturating_add);
        u64::try_from(pico_millions.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// USD of a call (`tollgate.cost.usd`).
    pub fn cost_usd(&self, u: &Usage, m: &ModalityUsage) -> f64 {
        self.cost_pico(u, m) as f64 / 1e12
    }

    /// Whether any modality has a price of its own.
    pub fn has_modality_prices(&self) -> bool {
        *self != ModalPrice::text_only(self.base)
    }

    /// `tollgate.cost.usd`: by modality when the provider broke usage down and a modality has its own
    /// price, else as the text prices say.
    pub fn call_cost_usd(&self, u: &Usage, m: &ModalityUsage) -> f64 {
        if m.is_empty() || !self.has_modality_prices() {
            self.base.cost_usd(u)
        } else {
            self.cost_usd(u, m)
        }
    }

    /// Pico-USD to commit into cost budgets, as `call_cost_usd` prices it.
    pub fn call_cost_pico(&self, u: &Usage, m: &ModalityUsage) -> u64 {
        if m.is_empty() || !self.has_modality_prices() {
            self.base.cost_pico(u)
        } else {
            self.cost_pico(u, m)
        }
    }

    /// A text price with the highest input and output prices of any modality: what a reservation assumes
    /// before the response says which modalities the call held.
    pub fn worst_price(&self) -> Price {
        let max =
            |base: f64, others: [Option<f64>; 2]| others.into_iter().flatten().fold(base, f64::max);
        Price {
            input: max(self.base.input, [self.audio_input, self.image_input]),
            output: max(self.base.output, [self.audio_output, self.image_output]),
            cache_read: self.base.cache_read,
            cache_write: self.base.cache_write,
        }
    }

    /// Worst-case pico-USD per input token, rounded up: what a reservation must assume before the response
    /// says which modalities the input held.
    pub fn input_pico_worst(&self) -> u64 {
        let r = self.rates();
        let worst = r
            .text_input
            .max(r.cache_write)
            .max(r.audio_input)
            .max(r.image_input);
        u64::try_from(worst.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }

    /// Worst-case pico-USD per output token, rounded up.
    pub fn output_pico_worst(&self) -> u64 {
        let r = self.rates();
        let worst = r.text_output.max(r.audio_output).max(r.image_output);
        u64::try_from(worst.div_ceil(1_000_000)).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;
    use serde_json::json;

    fn price(v: serde_json::Value) -> Result<ModalPrice, ConfigError> {
        crate::codec::json::strict::read_json(&v, |v| ModalPrice::read("pricing.gpt-4o*", v))
    }

    fn usage(input: u64, cache_read: u64, output: u64) -> Usage {
        Usage {
            input: Some(input),
            output: Some(output),
            cache_read: Some(cache_read),
            ..Usage::default()
        }
    }

    fn by(pairs: &[(Modality, u64)]) -> ByModality {
        let mut b = ByModality::default();
        for &(m, n) in pairs {
            b.add(m, n);
        }
        b
    }

    const PICO: u64 = 1_000_000_000_000;

    /// gpt-audio on Chat Completions, priced per developers.openai.com/api/docs/models/gpt-audio: text $2.50
    /// in / $10 out, audio $32 in / $64 out per million tokens.
    #[test]
    fn gpt_audio_chat_completion_at_published_prices() {
        let p = price(json!({"input": 2.5, "output": 10, "audio_input": 32, "audio_output": 64}))
            .unwrap();
        // prompt_tokens 1000 (audio_tokens 800), completion_tokens 500 (audio_tokens 400).
        let u = usage(1000, 0, 500);
        let m = ModalityUsage {
            input: by(&[(Modality::Audio, 800), (Modality::Text, 200)]),
            output: by(&[(Modality::Audio, 400), (Modality::Text, 100)]),
            ..ModalityUsage::default()
        };
        // 200 × 2.5 + 800 × 32 + 100 × 10 + 400 × 64 = 52 700 per million tokens: $0.0527.
        assert_eq!(p.cost_pico(&u, &m), 52_700 * PICO / 1_000_000);
        assert!((p.cost_usd(&u, &m) - 0.0527).abs() < 1e-15);
        // Priced as text, as tollgate did, the same call costs a seventh of that.
        assert_eq!(
            p.cost_pico(&u, &ModalityUsage::default()),
            7_500 * PICO / 1_000_000
        );
        assert_eq!(p.input_pico_worst(), 32_000_000);
        assert_eq!(p.output_pico_worst(), 64_000_000);
    }

    /// gpt-realtime-1.5, per developers.openai.com/api/docs/models/gpt-realtime-1.5: text $4 in, $0.40
    /// cached, $16 out; audio $32 in, $0.40 cached, $64 out; image $5 in, $0.50 cached.
    #[test]
    fn realtime_response_with_cached_audio_at_published_prices() {
        let p = price(json!({
            "input": 4, "cache_read": 0.4, "output": 16,
            "audio_input": 32, "audio_cache_read": 0.4, "audio_output": 64,
            "image_input": 5, "image_cache_read": 0.5
        }))
        .unwrap();
        // A response.done usage: input 789 (text 313, audio 476), cached 640 (text 256, audio 384),
        // output 32 (text 9, audio 23).
        let u = usage(789, 640, 32);
        let m = ModalityUsage {
            input: by(&[(Modality::Text, 313), (Modality::Audio, 476)]),
            cache_read: by(&[(Modality::Text, 256), (Modality::Audio, 384)]),
            output: by(&[(Modality::Text, 9), (Modality::Audio, 23)]),
        };
        // 57 × 4 + 256 × 0.4 + 92 × 32 + 384 × 0.4 + 9 × 16 + 23 × 64 = 5 044 per million: $0.005044.
        assert_eq!(p.cost_pico(&u, &m), 5_044 * PICO / 1_000_000);
        // An image in the conversation is priced at the image rates.
        let with_image = ModalityUsage {
            input: by(&[(Modality::Image, 1000)]),
            cache_read: by(&[(Modality::Image, 400)]),
            ..ModalityUsage::default()
        };
        // 600 × 5 + 400 × 0.5 = 3 200 per million.
        assert_eq!(
            p.cost_pico(&usage(1000, 400, 0), &with_image),
            3_200 * PICO / 1_000_000
        );
    }

    /// Gemini 2.5 Flash: $0.30 per million input tokens of text, image or video, $1.00 of audio, $2.50 output
    /// (thinking included), per ai.google.dev/gemini-api/docs/pricing; Gemini 2.5 Flash Image: image output
    /// $30 per million tokens, 1 290 tokens (= $0.039) per 1024×1024 image.
    #[test]
    fn gemini_audio_input_and_image_output() {
        let flash = price(json!({"input": 0.3, "output": 2.5, "audio_input": 1.0})).unwrap();
        // promptTokensDetails [{TEXT, 120}, {AUDIO, 3200}]; candidates 200 + thoughts 300.
        let mut m = ModalityUsage::default();
        for (modality, n) in [("TEXT", 120), ("AUDIO", 3200)] {
            m.input.add(Modality::from_gemini(modality).unwrap(), n);
        }
        m.output.add(Modality::Text, 200);
        // 120 × 0.3 + 3200 × 1 + 500 × 2.5 = 4 486 per million: $0.004486.
        assert_eq!(
            flash.cost_pico(&usage(3320, 0, 500), &m),
            4_486 * PICO / 1_000_000
        );
        let image = price(json!({"input": 0.3, "output": 2.5, "image_output": 30})).unwrap();
        let m = ModalityUsage {
            output: by(&[(Modality::Image, 1290)]),
            ..ModalityUsage::default()
        };
        let one = image.cost_usd(&usage(10, 0, 1290), &m);
        assert!((one - (0.0387 + 10.0 * 0.3 / 1e6)).abs() < 1e-12, "{one}");
    }

    #[test]
    fn without_a_breakdown_the_cost_is_the_text_price() {
        let mut rng = SplitMix64::new(27);
        for _ in 0..5000 {
            let p = |rng: &mut SplitMix64| (rng.next_u64() % 200_000) as f64 / 1000.0;
            let base = Price {
                input: p(&mut rng),
                output: p(&mut rng),
                cache_read: rng.next_u64().is_multiple_of(2).then(|| p(&mut rng)),
                cache_write: rng.next_u64().is_multiple_of(2).then(|| p(&mut rng)),
            };
            let n = |rng: &mut SplitMix64| rng.next_u64() % 2_000_000;
            let u = Usage {
                input: Some(n(&mut rng)),
                output: Some(n(&mut rng)),
                cache_read: Some(n(&mut rng) / 2),
                cache_write: Some(n(&mut rng) / 4),
                reasoning: None,
            };
            let mine = ModalPrice::text_only(base).cost_pico(&u, &ModalityUsage::default());
            let theirs = base.cost_pico(&u);
            // Price::cost_pico sums in f64 and rounds up: it may differ by float error, never by more.
            let tolerance = theirs / 1_000_000_000_000 + 2;
            assert!(
                mine.abs_diff(theirs) <= tolerance,
                "{base:?} {u:?}: {mine} vs {theirs}"
            );
        }
    }

    #[test]
    fn missing_modality_prices_fall_back() {
        let u = usage(1000, 1000, 0);
        let cached_audio = ModalityUsage {
            input: by(&[(Modality::Audio, 1000)]),
            cache_read: by(&[(Modality::Audio, 1000)]),
            ..ModalityUsage::default()
        };
        // Cached audio without its own price: the cached price of the entry...
        let p =
            price(json!({"input": 4, "output": 16, "cache_read": 0.4, "audio_input": 32})).unwrap();
        assert_eq!(p.cost_pico(&u, &cached_audio), 400 * PICO / 1_000_000);
        // ...else the audio input price.
        let p = price(json!({"input": 4, "output": 16, "audio_input": 32})).unwrap();
        assert_eq!(p.cost_pico(&u, &cached_audio), 32_000 * PICO / 1_000_000);
        // No audio prices at all: audio is text.
        let p = price(json!({"input": 4, "output": 16})).unwrap();
        let audio_out = ModalityUsage {
            output: by(&[(Modality::Audio, 1000)]),
            ..ModalityUsage::default()
        };
        assert_eq!(
            p.cost_pico(&usage(0, 0, 1000), &audio_out),
            16_000 * PICO / 1_000_000
        );
        // Video and documents are priced at `input`.
        let video = ModalityUsage {
            input: by(&[(Modality::Video, 1000), (Modality::Document, 1000)]),
            ..ModalityUsage::default()
        };
        assert_eq!(
            p.cost_pico(&usage(2000, 0, 0), &video),
            8_000 * PICO / 1_000_000
        );
    }

    #[test]
    fn breakdowns_that_do_not_add_up_are_clamped_and_never_panic() {
        let p = price(
            json!({"input": 1, "output": 1, "audio_input": 100, "audio_output": 100,
                             "image_input": 50, "image_output": 50, "cache_write": 2}),
        )
        .unwrap();
        // More audio than input: at most the input is audio.
        let m = ModalityUsage {
            input: by(&[(Modality::Audio, 5000), (Modality::Image, 5000)]),
            output: by(&[(Modality::Image, 9), (Modality::Audio, 9)]),
            cache_read: by(&[(Modality::Audio, 99)]),
        };
        assert_eq!(
            p.cost_pico(&usage(10, 0, 10), &m),
            (10 * 100 + 9 * 100 + 50) * PICO / 1_000_000
        );
        // Cache writes are never audio (providers do not break them down).
        let w = Usage {
            input: Some(10),
            cache_write: Some(10),
            ..Usage::default()
        };
        assert_eq!(p.cost_pico(&w, &m), 20 * PICO / 1_000_000);
        let huge = Usage {
            input: Some(u64::MAX),
            output: Some(u64::MAX),
            cache_read: Some(u64::MAX),
            cache_write: Some(u64::MAX),
            reasoning: Some(u64::MAX),
        };
        let all = ByModality {
            text: Some(u64::MAX),
            image: Some(u64::MAX),
            audio: Some(u64::MAX),
            video: Some(u64::MAX),
            document: Some(u64::MAX),
        };
        let max = price(json!({"input": 1e6, "output": 1e6, "audio_input": 1e6})).unwrap();
        let m = ModalityUsage {
            input: all,
            cache_read: all,
            output: all,
        };
        assert_eq!(max.cost_pico(&huge, &m), u64::MAX);
        assert_eq!(max.cost_pico(&Usage::default(), &m), 0);
        let mut sat = ByModality::default();
        sat.add(Modality::Audio, u64::MAX);
        sat.add(Modality::Audio, 5);
        assert_eq!(sat.audio, Some(u64::MAX));
    }

    #[test]
    fn prices_are_exact_for_decimal_prices() {
        // 0.067 × 1e12 is 67 000 000 000.00001 in f64: rounded, a million tokens cost exactly $0.067, where
        // rounding the f64 cost up would charge a pico-USD more.
        let p = price(json!({"input": 0.067, "output": 0.3})).unwrap();
        assert_eq!(
            p.cost_pico(&usage(1_000_000, 0, 0), &ModalityUsage::default()),
            67_000_000_000
        );
        assert_eq!(p.base.cost_pico(&usage(1_000_000, 0, 0)), 67_000_000_001);
        assert_eq!(p.input_pico_worst(), 67_000);
        // A single token at 1.5 pico-USD rounds up to 2.
        let p = price(json!({"input": 0.0000015, "output": 0})).unwrap();
        assert_eq!(p.cost_pico(&usage(1, 0, 0), &ModalityUsage::default()), 2);
    }

    #[test]
    fn config_errors_name_the_price() {
        let key = |v| price(v).unwrap_err().key;
        assert_eq!(
            key(json!({"input": 1, "output": 1, "audio_input": -1})),
            "pricing.gpt-4o*.audio_input"
        );
        assert_eq!(
            key(json!({"input": 1, "output": 1, "image_output": "30"})),
            "pricing.gpt-4o*.image_output"
        );
        assert_eq!(
            key(json!({"input": 1, "output": 1, "audio_cache_read": 2e6})),
            "pricing.gpt-4o*.audio_cache_read"
        );
        assert_eq!(
            key(json!({"input": 1, "output": 1, "audio_in": 1})),
            "pricing.gpt-4o*.audio_in"
        );
        assert_eq!(key(json!({"output": 1})), "pricing.gpt-4o*");
        assert!(price(json!({"input": 1, "output": 1, "audio_input": null}))
            .unwrap()
            .audio_input
            .is_none());
        let e = price(json!({"input": 1, "output": 1, "audio_in": 1})).unwrap_err();
        assert!(e.reason.contains("audio_input"), "{e:?}");
    }

    #[test]
    fn gemini_modalities_and_attribute_names() {
        assert_eq!(
            Modality::from_gemini("MODALITY_UNSPECIFIED"),
            Some(Modality::Text)
        );
        assert_eq!(Modality::from_gemini("DOCUMENT"), Some(Modality::Document));
        assert_eq!(Modality::from_gemini("audio"), None);
        let m = ModalityUsage {
            input: by(&[(Modality::Audio, 7), (Modality::Video, 3)]),
            cache_read: by(&[(Modality::Audio, 2)]),
            output: by(&[(Modality::Text, 5)]),
        };
        assert_eq!(
            m.span_attributes(),
            vec![
                ("gen_ai.usage.text.output_tokens", 5),
                ("gen_ai.usage.audio.input_tokens", 7),
                ("gen_ai.usage.audio.cache_read.input_tokens", 2),
                ("tollgate.usage.video.input_tokens", 3),
            ]
        );
        assert!(ModalityUsage::default().span_attributes().is_empty());
    }
}
