#![no_main]
//! The include_usage chunk filter: with nothing dropped, any chunking passes every byte through unchanged.
use libfuzzer_sys::fuzz_target;
use tollgate::stream::sse_edit::SseEventFilter;

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let mut f = SseEventFilter::default();
    let keep = |_: &[u8]| false;
    let mut out = Vec::new();
    for c in tollgate_fuzz::chunks(seed, body) {
        out.extend(f.push(c, &keep));
    }
    out.extend(f.finish());
    assert_eq!(out, body);
    let mut g = SseEventFilter::default();
    let drop_usage = |ev: &[u8]| tollgate::providers::openai::is_usage_only_chunk(
        &tollgate::stream::sse_edit::event_data(ev),
    );
    for c in tollgate_fuzz::chunks(seed, body) {
        let _ = g.push(c, &drop_usage);
    }
    let _ = g.finish();
});
