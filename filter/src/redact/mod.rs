//! Redaction: find personal data and credentials in text, and replace them before the text reaches
//! telemetry (or, in block/redact-upstream modes, before it leaves the company).
//!
//! The engine is pure and compiled once per configuration:
//! - built-in detectors ([`Detector`]) are hand-written linear scanners with checksums where the format has
//!   one (Luhn for cards, mod-97 for IBANs), in `pii` and `secrets`;
//! - custom patterns from configuration are `regex-lite` expressions (linear-time matching, small code);
//! - [`Redactor::redact`] rewrites plain text, [`Redactor::redact_json_strings`] rewrites only the string
//!   values of a JSON body and keeps every other byte, [`StreamRedactor`] works on streamed output with a
//!   bounded hold-back window, and [`security_flags`] raises prompt-injection flags (flags only, no rewrite).
//!
//! Overlapping matches are merged into one redacted span (so no part of any match survives) and labelled by
//! the strongest claim: secrets before custom patterns before personal data, then the longest, then the
//! earliest match.

mod flags;
mod json;
mod output;
mod pii;
mod scan;
mod secrets;
mod settings;
mod stream;

pub mod corpus;

/// The prompt-injection flags' reference definition, for the fuzz target.
#[cfg(fuzzing)]
pub use flags::reference::flags as reference_flags;
pub use flags::security_flags;
pub use json::{map_json_strings, FieldSelector};
pub use output::SseOutputRedactor;
pub use settings::{Engine, RawRedaction, Settings};
pub use stream::{StreamRedactor, DEFAULT_HOLD_BACK};

pub use crate::call::Findings;
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// A built-in detector. `name()` is the stable identifier used in configuration, findings and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Detector {
    PrivateKey,
    AnthropicKey,
    OpenAiKey,
    AwsAccessKey,
    GithubToken,
    Jwt,
    BearerToken,
    Email,
    Phone,
    CreditCard,
    Iban,
    UsSsn,
    Ipv4,
    Ipv6,
}

impl Detector {
    pub const ALL: [Detector; 14] = [
        Detector::PrivateKey,
        Detector::AnthropicKey,
        Detector::OpenAiKey,
        Detector::AwsAccessKey,
        Detector::GithubToken,
        Detector::Jwt,
        Detector::BearerToken,
        Detector::Email,
        Detector::Phone,
        Detector::CreditCard,
        Detector::Iban,
        Detector::UsSsn,
        Detector::Ipv4,
        Detector::Ipv6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::PrivateKey => "private_key",
            Detector::AnthropicKey => "anthropic_key",
            Detector::OpenAiKey => "openai_key",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::GithubToken => "github_token",
            Detector::Jwt => "jwt",
            Detector::BearerToken => "bearer_token",
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::CreditCard => "credit_card",
            Detector::Iban => "iban",
            Detector::UsSsn => "us_ssn",
            Detector::Ipv4 => "ipv4",
            Detector::Ipv6 => "ipv6",
        }
    }

    /// The name in replacements: `[REDACTED:CREDIT_CARD]`.
    pub fn label(self) -> &'static str {
        match self {
            Detector::PrivateKey => "PRIVATE_KEY",
            Detector::AnthropicKey => "ANTHROPIC_KEY",
            Detector::OpenAiKey => "OPENAI_KEY",
            Detector::AwsAccessKey => "AWS_ACCESS_KEY",
            Detector::GithubToken => "GITHUB_TOKEN",
            Detector::Jwt => "JWT",
            Detector::BearerToken => "BEARER_TOKEN",
            Detector::Email => "EMAIL",
            Detector::Phone => "PHONE",
            Detector::CreditCard => "CREDIT_CARD",
            Detector::Iban => "IBAN",
            Detector::UsSsn => "US_SSN",
            Detector::Ipv4 => "IPV4",
            Detector::Ipv6 => "IPV6",
        }
    }

    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.iter().copied().find(|d| d.name() == name)
    }

    /// Credentials outrank personal data when matches overlap.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            Detector::PrivateKey
                | Detector::AnthropicKey
                | Detector::OpenAiKey
                | Detector::AwsAccessKey
                | Detector::GithubToken
                | Detector::Jwt
                | Detector::BearerToken
        )
    }

    /// Append this detector's match ranges in `text` (byte offsets, increasing) to `out`.
    pub fn find_into(self, text: &str, out: &mut Vec<(usize, usize)>) {
        match self {
            Detector::PrivateKey => secrets::private_key(text, out),
            Detector::AnthropicKey => secrets::anthropic_key(text, out),
            Detector::OpenAiKey => secrets::openai_key(text, out),
            Detector::AwsAccessKey => secrets::aws_access_key(text, out),
            Detector::GithubToken => secrets::github_token(text, out),
            Detector::Jwt => secrets::jwt(text, out),
            Detector::BearerToken => secrets::bearer_token(text, out),
            Detector::Email => pii::email(text, out),
            Detector::Phone => pii::phone(text, out),
            Detector::CreditCard => pii::credit_card(text, out),
            Detector::Iban => pii::iban(text, out),
            Detector::UsSsn => pii::us_ssn(text, out),
            Detector::Ipv4 => pii::ipv4(text, out),
            Detector::Ipv6 => pii::ipv6(text, out),
        }
    }

    /// Every match of this detector contains an ASCII digit (cards, phones, IBANs, SSNs, IPv4).
    fn needs_digit(self) -> bool {
        matches!(
            self,
            Detector::Phone
                | Detector::CreditCard
                | Detector::Iban
                | Detector::UsSsn
                | Detector::Ipv4
        )
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A set of enabled built-in detectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DetectorSet(u32);

impl Default for DetectorSet {
    fn default() -> Self {
        DetectorSet::all()
    }
}

impl DetectorSet {
    pub fn all() -> Self {
        DetectorSet(Detector::ALL.iter().fold(0, |acc, d| acc | d.bit()))
    }
    pub fn empty() -> Self {
        DetectorSet(0)
    }
    pub fn with(self, d: Detector) -> Self {
        DetectorSet(self.0 | d.bit())
    }
    pub fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }
    /// From configuration names; an unknown name is an error naming it.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        names.iter().try_fold(DetectorSet::empty(), |set, n| {
            Detector::from_name(n.as_ref())
                .map(|d| set.with(d))
                .ok_or_else(|| format!("redaction.detectors: unknown detector {:?}", n.as_ref()))
        })
    }
}

/// A user-defined pattern: `name` must match `[a-z0-9_]{1,32}` and differ from the built-in names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomPattern {
    pub name: String,
    pub regex: String,
}

/// What a match is replaced with.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Replacement {
    /// `[REDACTED:EMAIL]`.
    #[default]
    Label,
    /// `[EMAIL:1f3a5b7c]`: the first 8 hex digits of HMAC-SHA256(key, matched text), so equal values can be
    /// correlated across calls without being recoverable (the key never leaves the gateway).
    KeyedHash { key: Vec<u8> },
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RedactionConfig {
    pub detectors: DetectorSet,
    pub patterns: Vec<CustomPattern>,
    pub replacement: Replacement,
}

/// Caps on a custom pattern's compiled size and nesting: a hostile configuration cannot exhaust the VM.
const CUSTOM_SIZE_LIMIT: usize = 256 * 1024;
const CUSTOM_NEST_LIMIT: u32 = 64;
const MAX_CUSTOM_PATTERNS: usize = 64;

struct Custom {
    name: String,
    label: String,
    regex: regex_lite::Regex,
}

/// HMAC-SHA256 (RFC 2104) with the padded key blocks precomputed; streaming-capable, which the stream
/// redactor needs to hash a private-key block it never holds whole.
#[derive(Clone)]
pub(crate) struct KeyedHasher {
    ipad: [u8; 64],
    opad: [u8; 64],
}

impl KeyedHasher {
    fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            let d = Sha256::digest(key);
            for (dst, src) in block.iter_mut().zip(d.iter()) {
                *dst = *src;
            }
        } else {
            for (dst, src) in block.iter_mut().zip(key) {
                *dst = *src;
            }
        }
        let mut ipad = [0x36u8; 64];
        let mut opad = [0x5cu8; 64];
        for ((i, o), k) in ipad.iter_mut().zip(opad.iter_mut()).zip(block) {
            *i ^= k;
            *o ^= k;
        }
        KeyedHasher { ipad, opad }
    }

    pub(crate) fn start(&self) -> Sha256 {
        let mut h = Sha256::new();
        h.update(self.ipad);
        h
    }

    pub(crate) fn finish(&self, inner: Sha256) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.opad);
        h.update(inner.finalize());
        h.finalize().into()
    }

    #[cfg(test)]
    fn mac(&self, msg: &[u8]) -> [u8; 32] {
        let mut h = self.start();
        h.update(msg);
        self.finish(h)
    }
}

/// Which detector produced a hit: a built-in, or the index of a custom pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    Builtin(Detector),
    Custom(usize),
}

/// A resolved (merged) match with its source, before names are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub start: usize,
    pub end: usize,
    pub source: Source,
}

/// One redacted span: byte offsets into the text (on char boundaries) and the detector's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match<'r> {
    pub start: usize,
    pub end: usize,
    pub detector: &'r str,
}

/// The compiled redaction engine; build once per configuration, share read-only.
pub struct Redactor {
    detectors: Vec<Detector>,
    custom: Vec<Custom>,
    hasher: Option<KeyedHasher>,
}

fn valid_pattern_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

impl Redactor {
    /// An engine that finds nothing.
    pub fn empty() -> Redactor {
        Redactor {
            detectors: Vec::new(),
            custom: Vec::new(),
            hasher: None,
        }
    }

    pub fn new(config: &RedactionConfig) -> Result<Redactor, String> {
        if config.patterns.len() > MAX_CUSTOM_PATTERNS {
            return Err(format!(
                "redaction.custom: at most {MAX_CUSTOM_PATTERNS} patterns"
            ));
        }
        let mut custom: Vec<Custom> = Vec::with_capacity(config.patterns.len());
        for (i, p) in config.patterns.iter().enumerate() {
            if !valid_pattern_name(&p.name) {
                return Err(format!(
                    "redaction.custom[{i}].name: pattern {:?}: name must match [a-z0-9_]{{1,32}}",
                    p.name
                ));
            }
            if Detector::from_name(&p.name).is_some() || custom.iter().any(|c| c.name == p.name) {
                return Err(format!(
                    "redaction.custom[{i}].name: pattern {:?}: name already used by another detector",
                    p.name
                ));
            }
            let regex = regex_lite::RegexBuilder::new(&p.regex)
                .size_limit(CUSTOM_SIZE_LIMIT)
                .nest_limit(CUSTOM_NEST_LIMIT)
                .build()
                .map_err(|e| {
                    format!(
                        "redaction.custom[{i}].regex: pattern {:?}: invalid regex: {e}",
                        p.name
                    )
                })?;
            custom.push(Custom {
                name: p.name.clone(),
                label: p.name.to_ascii_uppercase(),
                regex,
            });
        }
        let hasher = match &config.replacement {
            Replacement::Label => None,
            Replacement::KeyedHash { key } => Some(KeyedHasher::new(key)),
        };
        Ok(Redactor {
            detectors: Detector::ALL
                .iter()
                .copied()
                .filter(|d| config.detectors.contains(*d))
                .collect(),
            custom,
            hasher,
        })
    }

    /// True when no detector or pattern is enabled (callers can skip the work).
    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty() && self.custom.is_empty()
    }

    pub(crate) fn name(&self, s: Source) -> &str {
        match s {
            Source::Builtin(d) => d.name(),
            Source::Custom(i) => self.custom.get(i).map_or("custom", |c| c.name.as_str()),
        }
    }

    fn label(&self, s: Source) -> &str {
        match s {
            Source::Builtin(d) => d.label(),
            Source::Custom(i) => self.custom.get(i).map_or("CUSTOM", |c| c.label.as_str()),
        }
    }

    /// Overlap priority: secrets (0), custom patterns (1), personal data (2).
    fn rank(s: Source) -> u8 {
        match s {
            Source::Builtin(d) if d.is_secret() => 0,
            Source::Custom(_) => 1,
            Source::Builtin(_) => 2,
        }
    }

    fn order(s: Source) -> usize {
        match s {
            Source::Builtin(d) => d as usize,
            Source::Custom(i) => Detector::ALL.len().saturating_add(i),
        }
    }

    /// All raw hits merged: overlapping hits become one span covering all of them, labelled by the best
    /// claim (secret > custom > PII, then longest, then earliest, then detector order).
    pub(crate) fn hits(&self, text: &str) -> Vec<Hit> {
        let mut raw: Vec<Hit> = Vec::new();
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        // Prefilter (chosen by measurement, see `examples/redact_bench.rs`): the digit-driven scanners walk
        // every byte and are the slowest detectors; one vectorisable pass tells whether any digit exists.
        let has_digit = text.bytes().any(|c| c.is_ascii_digit());
        for &d in &self.detectors {
            if !has_digit && d.needs_digit() {
                continue;
            }
            ranges.clear();
            d.find_into(text, &mut ranges);
            raw.extend(ranges.iter().map(|&(start, end)| Hit {
                start,
                end,
                source: Source::Builtin(d),
            }));
        }
        for (i, c) in self.custom.iter().enumerate() {
            raw.extend(
                c.regex
                    .find_iter(text)
                    .filter(|m| !m.is_empty())
                    .map(|m| Hit {
                        start: m.start(),
                        end: m.end(),
                        source: Source::Custom(i),
                    }),
            );
        }
        if raw.len() <= 1 {
            return raw;
        }
        crate::sort::sort_by(&mut raw, |a, b| (a.start, b.end) < (b.start, a.end));
        let better = |a: &Hit, b: &Hit| {
            let key = |h: &Hit| {
                (
                    Self::rank(h.source),
                    std::cmp::Reverse(h.end - h.start),
                    h.start,
                    Self::order(h.source),
                )
            };
            key(a) < key(b)
        };
        let mut merged: Vec<Hit> = Vec::with_capacity(raw.len());
        let mut iter = raw.into_iter();
        let Some(mut cur) = iter.next() else {
            return merged;
        };
        let mut best = cur;
        for h in iter {
            if h.start < cur.end {
                cur.end = cur.end.max(h.end);
                if better(&h, &best) {
                    best = h;
                }
            } else {
                merged.push(Hit {
                    source: best.source,
                    ..cur
                });
                cur = h;
                best = h;
            }
        }
        merged.push(Hit {
            source: best.source,
            ..cur
        });
        merged
    }

    /// The spans to redact in `text`, in order, non-overlapping.
    pub fn find(&self, text: &str) -> Vec<Match<'_>> {
        self.hits(text)
            .into_iter()
            .map(|h| Match {
                start: h.start,
                end: h.end,
                detector: self.name(h.source),
            })
            .collect()
    }

    /// Append the replacement for `matched` (found by `source`) to `out`.
    pub(crate) fn write_replacement(&self, out: &mut String, source: Source, matched: &str) {
        match &self.hasher {
            None => {
                out.push_str("[REDACTED:");
                out.push_str(self.label(source));
                out.push(']');
            }
            Some(h) => {
                let mut inner = h.start();
                inner.update(matched.as_bytes());
                self.write_keyed(out, source, h.finish(inner));
            }
        }
    }

    pub(crate) fn write_keyed(&self, out: &mut String, source: Source, mac: [u8; 32]) {
        out.push('[');
        out.push_str(self.label(source));
        out.push(':');
        for b in mac.iter().take(4) {
            out.push(char::from(crate::codec::hex::digit(b >> 4)));
            out.push(char::from(crate::codec::hex::digit(*b)));
        }
        out.push(']');
    }

    pub(crate) fn hasher(&self) -> Option<&KeyedHasher> {
        self.hasher.as_ref()
    }

    /// Write `text` with `hits` (sorted, non-overlapping, inside `text`) replaced; counts them in `findings`.
    pub(crate) fn write_redacted(
        &self,
        out: &mut String,
        text: &str,
        hits: &[Hit],
        findings: &mut Findings,
    ) {
        let mut last = 0usize;
        for h in hits {
            let (Some(before), Some(matched)) = (text.get(last..h.start), text.get(h.start..h.end))
            else {
                continue;
            };
            out.push_str(before);
            self.write_replacement(out, h.source, matched);
            findings.add(self.name(h.source));
            last = h.end;
        }
        out.push_str(text.get(last..).unwrap_or(""));
    }

    /// `text` with every match replaced (borrowed when nothing matched), and what was found.
    pub fn redact<'a>(&self, text: &'a str) -> (Cow<'a, str>, Findings) {
        let hits = self.hits(text);
        let mut findings = Findings::default();
        if hits.is_empty() {
            return (Cow::Borrowed(text), findings);
        }
        let mut out = String::with_capacity(text.len());
        self.write_redacted(&mut out, text, &hits, &mut findings);
        (Cow::Owned(out), findings)
    }

    /// The found types that are in `block_list`: non-empty means block mode rejects the request.
    pub fn blocked<'f, S: AsRef<str>>(
        &self,
        findings: &'f Findings,
        block_list: &[S],
    ) -> Vec<&'f str> {
        findings.blocked_by(block_list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        Redactor::new(&RedactionConfig::default()).unwrap()
    }

    #[test]
    fn hmac_matches_rfc4231() {
        // RFC 4231 test case 2.
        let mac = KeyedHasher::new(b"Jefe").mac(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        let mac = KeyedHasher::new(&[0xaa; 131])
            .mac(b"Test Using Larger Than Block-Size Key - Hash Key First");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn redact_labels_and_borrows() {
        let r = redactor();
        let (out, f) = r.redact("nothing to see here");
        assert!(matches!(out, Cow::Borrowed(_)));
        assert!(f.is_empty());
        let (out, f) =
            r.redact("mail jane@example.com or call 555-123-4567, card 4111 1111 1111 1111.");
        assert_eq!(
            out,
            "mail [REDACTED:EMAIL] or call [REDACTED:PHONE], card [REDACTED:CREDIT_CARD]."
        );
        assert_eq!(f.count, 3);
        assert_eq!(f.types, vec!["credit_card", "email", "phone"]);
    }

    #[test]
    fn keyed_hash_replacement() {
        let r = Redactor::new(&RedactionConfig {
            replacement: Replacement::KeyedHash { key: b"k".to_vec() },
            ..Default::default()
        })
        .unwrap();
        let (out, _) = r.redact("a jane@example.com b jane@example.com c john@example.com");
        let mac = KeyedHasher::new(b"k").mac(b"jane@example.com");
        let tag = format!(
            "[EMAIL:{}]",
            mac.iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        assert!(
            out.starts_with(&format!("a {tag} b {tag} c [EMAIL:")),
            "{out}"
        );
        assert_eq!(out.matches("[EMAIL:").count(), 3);
        assert_eq!(
            out.len(),
            "a [EMAIL:12345678] b [EMAIL:12345678] c [EMAIL:12345678]".len()
        );
    }

    #[test]
    fn overlaps_merge_and_secrets_win() {
        let r = redactor();
        let jwt =
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJlMTIzNDU2";
        let text = format!("Authorization: Bearer {jwt}");
        let m = r.find(&text);
        assert_eq!(m.len(), 1);
        assert_eq!(&text[m[0].start..m[0].end], jwt);
        // Same span, both secrets: detector order breaks the tie (jwt before bearer_token).
        assert_eq!(m[0].detector, "jwt");
        // IPv4 inside an IPv6 literal: one span, the longer (ipv6) wins.
        let m = r.find("via ::ffff:192.168.1.1 now");
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].detector, "ipv6");
        // A secret overlapping PII: the span covers both, labelled by the secret.
        let text = "-----BEGIN PRIVATE KEY-----\njane@example.com\n-----END PRIVATE KEY-----";
        let m = r.find(text);
        assert_eq!(
            (m.len(), m[0].start, m[0].end, m[0].detector),
            (1, 0, text.len(), "private_key")
        );
    }

    #[test]
    fn custom_patterns() {
        let cfg = RedactionConfig {
            detectors: DetectorSet::empty().with(Detector::Email),
            patterns: vec![CustomPattern {
                name: "employee_id".into(),
                regex: r"\bEMP-\d{6}\b".into(),
            }],
            ..Default::default()
        };
        let r = Redactor::new(&cfg).unwrap();
        let (out, f) = r.redact("EMP-123456 wrote to a@example.com from 10.0.0.1");
        assert_eq!(
            out,
            "[REDACTED:EMPLOYEE_ID] wrote to [REDACTED:EMAIL] from 10.0.0.1"
        );
        assert_eq!(f.types, vec!["email", "employee_id"]);
        assert_eq!(
            r.blocked(&f, &["employee_id", "credit_card"]),
            vec!["employee_id"]
        );

        let bad = |name: &str, regex: &str| {
            Redactor::new(&RedactionConfig {
                patterns: vec![CustomPattern {
                    name: name.into(),
                    regex: regex.into(),
                }],
                ..Default::default()
            })
            .err()
            .unwrap()
        };
        let e = bad("employee_id", "EMP-(\\d+");
        assert!(
            e.starts_with("redaction.custom[0].regex: pattern \"employee_id\": invalid regex: "),
            "{e}"
        );
        assert!(bad("Employee", "x").contains("name must match"));
        assert!(bad("", "x").contains("name must match"));
        assert!(bad(&"a".repeat(33), "x").contains("name must match"));
        assert!(bad("email", "x").contains("already used"));
        assert!(bad("big", "(a{1000}){1000}").contains("invalid regex"));
        // Empty matches are ignored rather than redacting nothing.
        let r = Redactor::new(&RedactionConfig {
            detectors: DetectorSet::empty(),
            patterns: vec![CustomPattern {
                name: "maybe".into(),
                regex: "x*".into(),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.redact("abc").0, "abc");
    }

    #[test]
    fn detector_set_from_names() {
        let s = DetectorSet::from_names(&["email", "jwt"]).unwrap();
        assert!(
            s.contains(Detector::Email)
                && s.contains(Detector::Jwt)
                && !s.contains(Detector::Phone)
        );
        assert_eq!(
            DetectorSet::from_names(&["emial"]).unwrap_err(),
            "redaction.detectors: unknown detector \"emial\""
        );
        for d in Detector::ALL {
            assert_eq!(Detector::from_name(d.name()), Some(d));
            assert_eq!(d.label(), d.name().to_ascii_uppercase());
        }
    }

    #[test]
    fn matches_are_on_char_boundaries() {
        let r = redactor();
        let text = "héllo jane@example.com ünïcödé 4111111111111111 ☃ +44 20 7946 0958 日本 sk-ant-api03-abcdefghijklmnop0123456789";
        let m = r.find(text);
        assert_eq!(m.len(), 4);
        for x in m {
            assert!(text.is_char_boundary(x.start) && text.is_char_boundary(x.end));
        }
    }
}
