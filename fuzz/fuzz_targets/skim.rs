#![no_main]
//! The stream fast paths (the JSON skimmer, `providers/skim.rs`) against the serde path: byte 0 picks the
//! API and whether content capture is on, the rest is one event's data (fed as an SSE event, as a JSON
//! frame, as a Bedrock `chunk` payload and base64-wrapped inside one). Both paths must leave the same call
//! record and outcomes.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Response, Route};
use tollgate::capture::OutputCapture;
use tollgate::providers::{frame_with, skim, FrameOutcome, StreamState};
use tollgate::stream::Frame;

/// Standard base64 with padding (Bedrock InvokeModel wraps each model event in `{"bytes":"<base64>"}`).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A Bedrock event-stream `chunk` message.
fn aws(payload: &str) -> Frame<'_> {
    Frame::Aws {
        message_type: "event",
        event_type: "chunk",
        exception_type: "",
        payload: payload.as_bytes(),
    }
}

fn run(route: &Route, base: &Response, text: &str, fast: bool) -> (Response, Vec<FrameOutcome>, bool) {
    let (mut st, mut resp) = (StreamState::default(), base.clone());
    let wrapped = format!("{{\"bytes\":\"{}\"}}", base64(text.as_bytes()));
    let frames = [
        Frame::Sse { event: "", data: text },
        Frame::Json(text.as_bytes()),
        // Bedrock: the text as a chunk payload, and as the model event inside one.
        aws(text),
        aws(&wrapped),
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
