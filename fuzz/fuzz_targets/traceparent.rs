#![no_main]
//! W3C trace context: any traceparent / tracestate pair gives valid ids, and a parsed traceparent
//! round-trips through the header we send upstream.
use libfuzzer_sys::fuzz_target;
use tollgate::telemetry::trace;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (tp, ts) = text.split_once('\n').unwrap_or((&text, ""));
    let ids = trace::span_ids(Some(tp), Some(ts), [7; 24], 0.5, 0.25);
    assert_ne!(ids.trace_id, [0; 16]);
    assert_ne!(ids.span_id, [0; 8]);
    let sent = trace::format_traceparent(&ids);
    assert!(trace::parse_traceparent(&sent).is_some(), "{sent}");
    let _ = trace::sanitize_tracestate(ts);
});
