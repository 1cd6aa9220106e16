#![no_main]
//! The stream fast paths (the JSON skimmer, `providers/skim.rs`) against the serde path: byte 0 picks the
//! API and whether content capture is on, the rest is one event's data (fed as an SSE event, then as a
//! JSON frame). Both paths must leave the same call record and outcomes.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Response, Route};
use tollgate::capture::OutputCapture;
use tollgate::providers::{frame_with, skim, FrameOutcome, StreamState};
use tollgate::stream::Frame;

fn run(route: &Route, base: &Response, text: &str, fast: bool) -> (Response, Vec<FrameOutcome>, bool) {
    let (mut st, mut resp) = (StreamState::default(), base.clone());
    let frames = [
        Frame::Sse { event: "", data: text },
        Frame::Json(text.as_bytes()),
    ];
    let outs = frames
        .iter()
        .map(|f| frame_with(route, f, &mut st, &mut resp, fast))
        .collect();
    (resp, outs, st.finished)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let _ = skim::is_valid(text);
    let route = Route {
        api: Api::ALL[usize::from(sel & 0x7f) % Api::ALL.len()],
        provider: String::new(),
        path_model: None,
        path_stream: true,
    };
    let mut base = Response::default();
    if sel & 0x80 != 0 {
        base.content = OutputCapture::new(32);
    }
    assert_eq!(run(&route, &base, text, true), run(&route, &base, text, false));
});
