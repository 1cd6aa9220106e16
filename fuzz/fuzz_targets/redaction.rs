#![no_main]
//! Redaction over arbitrary text and JSON: no panic, and redacted text contains no match.
use libfuzzer_sys::fuzz_target;
use tollgate::redact::{DetectorSet, RedactionConfig, Redactor};

fuzz_target!(|data: &[u8]| {
    let Ok(r) = Redactor::new(&RedactionConfig {
        detectors: DetectorSet::all(),
        ..RedactionConfig::default()
    }) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let (out, _) = r.redact(&text);
    if let std::borrow::Cow::Owned(out) = &out {
        assert!(r.find(out).is_empty(), "redacted output still matches");
    }
    let _ = r.redact_json_strings(data, tollgate::redact::FieldSelector {
        roots: &[],
        structural: &["role", "type", "model"],
        opaque: &["data"],
    });
    let _ = tollgate::redact::security_flags(&text);
});
