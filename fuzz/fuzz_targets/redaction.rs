#![no_main]
//! Redaction over arbitrary text and JSON: no panic, and redacted text contains no match. The
//! prompt-injection flags agree with their reference definition. Content capture
//! over the same bytes as every API's request (and as a tool call's arguments): no panic, and every
//! attribute it renders is one JSON value.
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
    assert_eq!(
        tollgate::redact::security_flags(&text),
        tollgate::redact::reference_flags(&text),
        "prompt-injection flags differ from the reference on {text:?}"
    );
    let mut resp = tollgate::call::Response {
        content: tollgate::call::OutputCapture::new(256),
        ..Default::default()
    };
    resp.content.tool_call(0, "id", "f");
    resp.content.tool_arguments(0, &text);
    for api in tollgate::call::Api::ALL {
        let route = tollgate::call::Route {
            api,
            provider: String::new(),
            path_model: None,
            path_stream: false,
        };
        let input = tollgate::providers::capture_input(&route, data);
        let rendered = tollgate::capture::render(input.as_ref(), &resp, &r, 64);
        for (name, json) in &rendered.attributes {
            let at = tollgate::codec::json::tape::error_at(json);
            assert!(at.is_none(), "{name} is not JSON at {at:?}: {json}");
        }
    }
});
