#![no_main]
//! The stream fast paths (the JSON skimmer, `codec/json/skim.rs`) against the serde path: byte 0 picks the
//! API and whether content capture is on, the rest is up to four events' data separated by 0xFF, fed in
//! order twice as SSE events, twice as JSON frames (so repeated shapes replay `providers/template.rs`), then
//! each as a Bedrock `chunk` payload and base64-wrapped inside one; and each as a request body. Both paths
//! must leave the same call record and outcomes.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Request, Response, Route};
use tollgate::call::OutputCapture;
use tollgate::codec::json::skim;
use tollgate::providers::{self, reference, FrameOutcome, StreamState};
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

/// One frame through the fast paths (`providers::frame`) or the general readers alone.
fn read(
    route: &Route,
    f: &Frame<'_>,
    st: &mut StreamState,
    resp: &mut Response,
    fast: bool,
) -> FrameOutcome {
    if fast {
        providers::frame(route, f, st, resp)
    } else {
        reference::frame(route, f, st, resp)
    }
}

fn run(
    route: &Route,
    base: &Response,
    texts: &[&str],
    fast: bool,
) -> (Response, Vec<FrameOutcome>, bool) {
    let (mut st, mut resp) = (StreamState::default(), base.clone());
    let mut outs = Vec::new();
    // The events in order, twice, as SSE events and then as JSON frames: a repeated event shape replays the
    // template the fast path recorded (`providers/template.rs`).
    for round in 0..4 {
        for text in texts {
            let f = if round < 2 {
                Frame::Sse {
                    event: "",
                    data: text,
                }
            } else {
                Frame::Json(text.as_bytes())
            };
            outs.push(read(route, &f, &mut st, &mut resp, fast));
        }
    }
    for text in texts {
        let wrapped = format!("{{\"bytes\":\"{}\"}}", base64(text.as_bytes()));
        // Bedrock: the text as a chunk payload, and as the model event inside one.
        for f in [aws(text), aws(&wrapped)] {
            outs.push(read(route, &f, &mut st, &mut resp, fast));
        }
    }
    (resp, outs, st.finished)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Up to four events, separated by 0xFF (never part of UTF-8 text).
    let mut texts = Vec::new();
    for part in rest.split(|&b| b == 0xFF).take(4) {
        let Ok(text) = std::str::from_utf8(part) else {
            return;
        };
        texts.push(text);
    }
    for text in &texts {
        let _ = skim::is_valid(text);
    }
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
    assert_eq!(
        run(&route, &base, &texts, true),
        run(&route, &base, &texts, false)
    );
    // Each text as a request body too (the OpenAI-shaped request skimmer).
    for text in &texts {
        let base = Request {
            model: Some("before".to_owned()),
            ..Request::default()
        };
        let (mut a, mut b) = (base.clone(), base);
        providers::request(&route, text.as_bytes(), &mut a);
        reference::request(&route, text.as_bytes(), &mut b);
        assert_eq!(a, b);
    }
});
