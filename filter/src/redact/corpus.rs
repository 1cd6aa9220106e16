//! Deterministic sample inputs for tests and benchmarks: one true positive per detector, look-alike filler
//! that must not match, and generators mixing them into text or an OpenAI-shaped request body.
//! Benchmarks call `mixed_text` / `chat_request_json` and then `Redactor::redact`,
//! `Redactor::redact_json_strings` or `Detector::find_into` on the result.

/// (detector name, a value it must find). Every built-in detector appears at least once.
pub const POSITIVES: &[(&str, &str)] = &[
    ("email", "jane.doe@example.com"),
    ("email", "ops+alerts@mail.example.co.uk"),
    ("phone", "(555) 123-4567"),
    ("phone", "+44 20 7946 0958"),
    ("credit_card", "4111 1111 1111 1111"),
    ("credit_card", "378282246310005"),
    ("iban", "DE89 3704 0044 0532 0130 00"),
    ("iban", "GB82WEST12345698765432"),
    ("us_ssn", "123-45-6789"),
    ("ipv4", "192.168.10.24"),
    ("ipv6", "2001:db8:85a3::8a2e:370:7334"),
    ("openai_key", "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz_12-34567890abcdef"),
    ("anthropic_key", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefAA"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("github_token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    (
        "jwt",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    ),
    (
        "private_key",
        "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIOaZ3vX0\n-----END EC PRIVATE KEY-----",
    ),
    ("bearer_token", "Bearer 0a1b2c3d4e5f6a7b8c9d0e1f"),
];

/// Text that looks like the detectors' targets but is not: none of it may be redacted.
pub const LOOK_ALIKES: &[&str] = &[
    "the quarterly numbers look fine",
    "release version 1.2.3.4.5 shipped",
    "card 4111 1111 1111 1112 was declined",
    "IBAN DE88370400440532013000 is mistyped",
    "SSN 000-12-3456 is invalid",
    "order ORD-2024-000123 was shipped on 2024-01-15",
    "meeting at 12:30 and again 14:45:10",
    "request id 550e8400-e29b-41d4-a716-446655440000",
    "a risk-assessment-for-the-budget is due",
    "the bearer of bad news",
    "use sk-learn for the model",
    "ticket #123456789012 is closed",
    "pi is 3.14159 and e is 2.71828",
    "std::vec::Vec and a::b are Rust paths",
    "mail me at the office",
    "version v10.0.19041.1",
    "C'est déjà l'été à Zürich",
];

/// xorshift64*: small, deterministic, no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        let n64 = u64::try_from(n.max(1)).unwrap_or(u64::MAX);
        usize::try_from(self.next_u64() % n64).unwrap_or(0)
    }
    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = self.below(items.len());
        items.get(i).copied().unwrap_or("")
    }
}

const SEPARATORS: &[&str] = &[" ", ", ", ".\n", " (", ") ", "; ", "\t", " — "];

/// About `approx_len` bytes of look-alike filler with a true positive roughly every third item.
/// Returns the text and the positives inserted, in order.
pub fn mixed_text_with(
    seed: u64,
    approx_len: usize,
) -> (String, Vec<(&'static str, &'static str)>) {
    let mut rng = Rng::new(seed);
    let mut out = String::with_capacity(approx_len.saturating_add(128));
    let mut inserted = Vec::new();
    while out.len() < approx_len {
        if rng.below(3) == 0 {
            let i = rng.below(POSITIVES.len());
            if let Some(&(name, value)) = POSITIVES.get(i) {
                out.push_str(value);
                inserted.push((name, value));
            }
        } else {
            out.push_str(rng.pick(LOOK_ALIKES));
        }
        out.push_str(rng.pick(SEPARATORS));
    }
    (out, inserted)
}

/// About `approx_len` bytes of mixed text (see [`mixed_text_with`]).
pub fn mixed_text(seed: u64, approx_len: usize) -> String {
    mixed_text_with(seed, approx_len).0
}

/// An OpenAI chat request with `messages` messages of mixed text (about `per_message` bytes each).
pub fn chat_request_json(seed: u64, messages: usize, per_message: usize) -> Vec<u8> {
    let mut out = String::from("{\"model\":\"gpt-4o-mini\",\"temperature\":0.2,\"messages\":[");
    for k in 0..messages {
        if k > 0 {
            out.push(',');
        }
        let role = if k % 2 == 0 { "user" } else { "assistant" };
        let text = mixed_text(
            seed.wrapping_add(u64::try_from(k).unwrap_or(0)),
            per_message,
        );
        let content = crate::codec::json::Json::Str(text).text();
        out.push_str(&format!("{{\"role\":\"{role}\",\"content\":{content}}}"));
    }
    out.push_str("],\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::{Detector, RedactionConfig, Redactor, Replacement};
    use super::*;
    use serde_json::Value;

    #[test]
    fn every_detector_has_a_positive_and_no_look_alike_matches() {
        let r = Redactor::new(&RedactionConfig::default()).unwrap();
        for d in Detector::ALL {
            assert!(
                POSITIVES.iter().any(|(n, _)| *n == d.name()),
                "{}",
                d.name()
            );
        }
        for (name, value) in POSITIVES {
            let m = r.find(value);
            assert_eq!(m.len(), 1, "{value}");
            assert_eq!(m[0].detector, *name, "{value}");
        }
        for text in LOOK_ALIKES {
            assert!(r.find(text).is_empty(), "{text:?}: {:?}", r.find(text));
        }
    }

    /// Property: over many deterministic mixes, the output never contains an inserted value, counts every
    /// one of them, and leaves the look-alike filler alone.
    #[test]
    fn redacted_output_never_contains_a_positive() {
        let label = Redactor::new(&RedactionConfig::default()).unwrap();
        let keyed = Redactor::new(&RedactionConfig {
            replacement: Replacement::KeyedHash {
                key: b"prop".to_vec(),
            },
            ..Default::default()
        })
        .unwrap();
        for seed in 0..300u64 {
            let (text, inserted) = mixed_text_with(seed, 1500);
            for r in [&label, &keyed] {
                let (out, f) = r.redact(&text);
                for (_, value) in &inserted {
                    assert!(
                        !out.contains(value),
                        "seed {seed}: {value:?} survived in {out:?}"
                    );
                }
                assert_eq!(f.count as usize, inserted.len(), "seed {seed}: {out}");
                let mut names: Vec<&str> = inserted.iter().map(|(n, _)| *n).collect();
                names.sort_unstable();
                names.dedup();
                assert_eq!(f.types, names, "seed {seed}");
                for filler in LOOK_ALIKES {
                    assert_eq!(
                        out.matches(filler).count(),
                        text.matches(filler).count(),
                        "seed {seed}"
                    );
                }
            }
        }
    }

    /// Random strings over an alphabet of the scanners' trigger bytes: no panic, spans sorted, disjoint and
    /// on char boundaries; the JSON rewrite agrees with serde_json on validity and keeps the output valid.
    #[test]
    fn random_inputs_are_total() {
        const ALPHABET: &[&str] = &[
            "0",
            "1",
            "4",
            "9",
            "-",
            ".",
            ":",
            "::",
            "@",
            " ",
            "+",
            "(",
            ")",
            "A",
            "K",
            "I",
            "S",
            "e",
            "y",
            "J",
            "sk-",
            "gh",
            "p_",
            "_",
            "\"",
            "\\",
            "\\u00",
            "é",
            "😀",
            "{",
            "}",
            "[",
            "]",
            ",",
            "x",
            "-----BEGIN ",
            "PRIVATE KEY-----",
            "-----END ",
            "Bearer ",
            "\n",
            "DE89",
            "a@b.co",
            "\"a\":",
        ];
        let r = Redactor::new(&RedactionConfig {
            patterns: vec![super::super::CustomPattern {
                name: "digits".into(),
                regex: r"\d{3}".into(),
            }],
            ..Default::default()
        })
        .unwrap();
        let mut rng = Rng::new(99);
        for _ in 0..3000 {
            let n = rng.below(40);
            let text: String = (0..n).map(|_| rng.pick(ALPHABET)).collect();
            let m = r.find(&text);
            let mut last = 0;
            for x in &m {
                assert!(
                    x.start >= last && x.start < x.end && x.end <= text.len(),
                    "{text:?} {m:?}"
                );
                assert!(text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
                last = x.end;
            }
            let _ = crate::redact::security_flags(&text);
            let serde_ok = serde_json::from_str::<Value>(&text).is_ok();
            if let Some((out, _)) =
                r.redact_json_strings(text.as_bytes(), super::super::FieldSelector::ALL_STRINGS)
            {
                assert!(serde_ok, "{text:?}");
                assert!(serde_json::from_slice::<Value>(&out).is_ok(), "{text:?}");
            }
            let mut s = super::super::StreamRedactor::new(96);
            let mut out = String::new();
            let k = text.char_indices().map(|(i, _)| i).nth(n / 2).unwrap_or(0);
            out.push_str(&s.push(&r, &text[..k]));
            out.push_str(&s.push(&r, &text[k..]));
            out.push_str(&s.finish(&r));
            assert_eq!(out, r.redact(&text).0, "{text:?}");
        }
        // Strings that serde_json accepts must never be refused by the tokenizer when they contain a match.
        let body = r#"{"a":[1,-2.5e+3,true,false,null,{"b":"x@example.com"}],"c":"\ud83d\ude00"}"#;
        assert!(r
            .redact_json_strings(body.as_bytes(), super::super::FieldSelector::ALL_STRINGS)
            .is_some());
    }

    #[test]
    fn json_request_property() {
        let r = Redactor::new(&RedactionConfig::default()).unwrap();
        for seed in 0..40u64 {
            let body = chat_request_json(seed, 6, 400);
            let original: Value = serde_json::from_slice(&body).unwrap();
            let Some((out, f)) = r.redact_json_strings(&body, super::super::FieldSelector::REQUEST)
            else {
                continue;
            };
            let v: Value = serde_json::from_slice(&out).unwrap();
            assert!(f.count > 0);
            for k in 0..6 {
                let want = r
                    .redact(original["messages"][k]["content"].as_str().unwrap())
                    .0;
                assert_eq!(v["messages"][k]["content"].as_str().unwrap(), want);
                assert_eq!(v["messages"][k]["role"], original["messages"][k]["role"]);
            }
            assert_eq!(v["model"], original["model"]);
            assert_eq!(v["stream_options"], original["stream_options"]);
        }
    }
}
