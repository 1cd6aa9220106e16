//! The `redaction` key of the plugin JSON: parsed, validated and compiled once per configuration.
//!
//! ```json
//! {"detectors": ["email", "credit_card"], "custom": [{"name": "employee_id", "regex": "E[0-9]{6}"}],
//!  "egress": false, "block": ["private_key"], "replacement": "label", "hash_key": "…",
//!  "output": false, "hold_back_bytes": 256}
//! ```

use super::{CustomPattern, Detector, DetectorSet, RedactionConfig, Redactor, Replacement};
use crate::codec::json::strict::ConfigError;
use crate::codec::json::strict::{
    boolean, items, object, opt, required, string, strings, uint, variant,
};
use crate::codec::json::tape::Value;
use std::sync::Arc;

/// The plugin JSON shape (unknown keys rejected).
#[derive(Default, Debug)]
pub struct RawRedaction {
    detectors: Option<Vec<String>>,
    custom: Vec<CustomPattern>,
    egress: bool,
    block: Vec<String>,
    /// `replacement: "hash"` (the default is "label").
    hash: bool,
    hash_key: Option<String>,
    output: bool,
    hold_back_bytes: Option<u64>,
}

impl RawRedaction {
    /// The `redaction` key; error keys are relative to it.
    pub fn read(v: Value) -> Result<RawRedaction, ConfigError> {
        let mut r = RawRedaction::default();
        object(
            v,
            &[
                "detectors",
                "custom",
                "egress",
                "block",
                "replacement",
                "hash_key",
                "output",
                "hold_back_bytes",
            ],
            &mut |i, v| {
                match i {
                    0 => r.detectors = opt(v, strings)?,
                    1 => {
                        let custom = &mut r.custom;
                        items(v, &mut |v| {
                            custom.push(custom_pattern(v)?);
                            Ok(())
                        })?;
                    }
                    2 => r.egress = boolean(v)?,
                    3 => r.block = strings(v)?,
                    4 => r.hash = variant(v, &["label", "hash"])? == 1,
                    5 => r.hash_key = opt(v, string)?,
                    6 => r.output = boolean(v)?,
                    _ => r.hold_back_bytes = opt(v, uint)?,
                }
                Ok(())
            },
        )?;
        Ok(r)
    }
}

/// One of `custom`: `{"name": …, "regex": …}`.
fn custom_pattern(v: Value) -> Result<CustomPattern, ConfigError> {
    let (mut name, mut regex) = (None, None);
    object(v, &["name", "regex"], &mut |i, v| {
        let s = Some(string(v)?);
        if i == 0 {
            name = s;
        } else {
            regex = s;
        }
        Ok(())
    })?;
    Ok(CustomPattern {
        name: required(name, "name")?,
        regex: required(regex, "regex")?,
    })
}

/// Shortest accepted `hash_key`: a short key makes the keyed hashes of short values (phone numbers,
/// SSNs) guessable by brute force.
pub const MIN_HASH_KEY: usize = 16;
pub const MIN_HOLD_BACK: u64 = 96;
pub const MAX_HOLD_BACK: u64 = 64 * 1024;

/// The compiled engine, shared read-only by every request of the configuration.
#[derive(Clone)]
pub struct Engine(pub Arc<Redactor>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

impl PartialEq for Engine {
    /// Engines compare by the settings that built them (see `Settings`), not by identity.
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

/// Validated redaction settings.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The `redaction` key was present (attribute scrubbing then also runs without content capture).
    pub configured: bool,
    pub engine: Engine,
    /// Every enabled detector name (built-ins, then custom), for per-detector counters: bounded by
    /// the 14 built-ins plus at most 64 custom patterns.
    pub detector_names: Vec<String>,
    /// Rewrite the request's user text before it is forwarded.
    pub egress: bool,
    /// Detector names whose presence in the request refuses it.
    pub block: Vec<String>,
    /// Redact the response the client receives (streams with a hold-back window, JSON bodies whole).
    pub output: bool,
    pub hold_back: usize,
    /// Kept for equality only (the engine holds the key).
    replacement_hash: bool,
    custom: Vec<CustomPattern>,
    detectors: DetectorSet,
}

impl Default for Settings {
    fn default() -> Self {
        // The defaults always compile; the fallback is an engine with no detectors.
        Settings::from_raw(None).unwrap_or_else(|_| Settings {
            configured: false,
            engine: Engine(Arc::new(Redactor::empty())),
            detector_names: Vec::new(),
            egress: false,
            block: Vec::new(),
            output: false,
            hold_back: super::DEFAULT_HOLD_BACK,
            replacement_hash: false,
            custom: Vec::new(),
            detectors: DetectorSet::empty(),
        })
    }
}

/// A configuration error: (key, reason).
pub type SettingsError = (String, String);

fn split_err(msg: String) -> SettingsError {
    match msg.split_once(": ") {
        Some((k, r)) => (k.to_owned(), r.to_owned()),
        None => ("redaction".to_owned(), msg),
    }
}

impl Settings {
    pub fn from_raw(raw: Option<RawRedaction>) -> Result<Settings, SettingsError> {
        let configured = raw.is_some();
        let raw = raw.unwrap_or_default();
        let detectors = match &raw.detectors {
            None => DetectorSet::all(),
            Some(names) => {
                for (i, n) in names.iter().enumerate() {
                    if Detector::from_name(n).is_none() {
                        let known: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
                        return Err((
                            format!("redaction.detectors[{i}]"),
                            format!(
                                "unknown detector {n:?}, expected one of {}",
                                known.join(", ")
                            ),
                        ));
                    }
                }
                DetectorSet::from_names(names).map_err(split_err)?
            }
        };
        let patterns = raw.custom;
        let replacement = match (raw.hash, raw.hash_key) {
            (false, _) => Replacement::Label,
            (true, Some(k)) if k.len() >= MIN_HASH_KEY => Replacement::KeyedHash {
                key: k.into_bytes(),
            },
            (true, Some(_)) => {
                return Err((
                    "redaction.hash_key".into(),
                    format!("must be at least {MIN_HASH_KEY} bytes"),
                ))
            }
            (true, None) => {
                return Err((
                    "redaction.hash_key".into(),
                    "required when redaction.replacement is \"hash\"".into(),
                ))
            }
        };
        let replacement_hash = matches!(replacement, Replacement::KeyedHash { .. });
        let cfg = RedactionConfig {
            detectors,
            patterns: patterns.clone(),
            replacement,
        };
        let redactor = Redactor::new(&cfg).map_err(split_err)?;
        let mut detector_names: Vec<String> = Detector::ALL
            .iter()
            .filter(|d| detectors.contains(**d))
            .map(|d| d.name().to_owned())
            .collect();
        detector_names.extend(patterns.iter().map(|p| p.name.clone()));
        for (i, b) in raw.block.iter().enumerate() {
            if !detector_names.contains(b) {
                return Err((
                    format!("redaction.block[{i}]"),
                    format!("{b:?} is not an enabled detector or custom pattern"),
                ));
            }
        }
        let hold_back = raw
            .hold_back_bytes
            .unwrap_or(super::DEFAULT_HOLD_BACK as u64);
        if !(MIN_HOLD_BACK..=MAX_HOLD_BACK).contains(&hold_back) {
            return Err((
                "redaction.hold_back_bytes".into(),
                format!("must be between {MIN_HOLD_BACK} and {MAX_HOLD_BACK}"),
            ));
        }
        Ok(Settings {
            configured,
            engine: Engine(Arc::new(redactor)),
            detector_names,
            egress: raw.egress,
            block: raw.block,
            output: raw.output,
            hold_back: usize::try_from(hold_back).unwrap_or(super::DEFAULT_HOLD_BACK),
            replacement_hash,
            custom: patterns,
            detectors,
        })
    }

    pub fn redactor(&self) -> &Redactor {
        &self.engine.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Result<RawRedaction, ConfigError> {
        crate::codec::json::tape::read(json, RawRedaction::read).unwrap()
    }

    fn parse(json: &str) -> Result<Settings, SettingsError> {
        Settings::from_raw(Some(raw(json).unwrap()))
    }

    #[test]
    fn defaults() {
        let s = Settings::default();
        assert!(!s.configured && !s.egress && !s.output && s.block.is_empty());
        assert_eq!(s.detector_names.len(), Detector::ALL.len());
        assert_eq!(s.hold_back, 256);
        let s = parse("{}").unwrap();
        assert!(s.configured);
    }

    #[test]
    fn full() {
        let s = parse(
            r#"{"detectors":["email","private_key"],"custom":[{"name":"employee_id","regex":"E[0-9]{6}"}],
                "egress":true,"block":["private_key","employee_id"],"replacement":"hash",
                "hash_key":"0123456789abcdef","output":true,"hold_back_bytes":512}"#,
        )
        .unwrap();
        assert_eq!(
            s.detector_names,
            vec!["private_key", "email", "employee_id"]
        );
        assert!(s.egress && s.output && s.replacement_hash);
        assert_eq!(s.hold_back, 512);
        let (out, f) = s.redactor().redact("E123456 wrote a@example.com");
        assert!(
            out.starts_with("[EMPLOYEE_ID:") && out.contains(" wrote [EMAIL:"),
            "{out}"
        );
        assert_eq!(
            f.per_type().collect::<Vec<_>>(),
            vec![("email", 1), ("employee_id", 1)]
        );
    }

    #[test]
    fn errors_name_key_and_pattern() {
        let e = parse(
            r#"{"custom":[{"name":"ok","regex":"x"},{"name":"employee_id","regex":"E[0-9"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.0, "redaction.custom[1].regex");
        assert!(
            e.1.contains("\"employee_id\"") && e.1.contains("invalid regex"),
            "{}",
            e.1
        );
        let e = parse(r#"{"detectors":["email","emial"]}"#).unwrap_err();
        assert_eq!(e.0, "redaction.detectors[1]");
        assert!(e.1.contains("emial"));
        let e = parse(r#"{"replacement":"hash"}"#).unwrap_err();
        assert_eq!(e.0, "redaction.hash_key");
        assert_eq!(
            parse(r#"{"replacement":"hash","hash_key":"short"}"#)
                .unwrap_err()
                .0,
            "redaction.hash_key"
        );
        let e = parse(r#"{"detectors":["email"],"block":["credit_card"]}"#).unwrap_err();
        assert_eq!(e.0, "redaction.block[0]");
        assert_eq!(
            parse(r#"{"hold_back_bytes":10}"#).unwrap_err().0,
            "redaction.hold_back_bytes"
        );
        assert_eq!(
            parse(r#"{"custom":[{"name":"Bad Name","regex":"x"}]}"#)
                .unwrap_err()
                .0,
            "redaction.custom[0].name"
        );
        assert!(raw(r#"{"replacement":"mask"}"#).is_err());
        assert!(raw(r#"{"bogus":1}"#).is_err());
    }
}
