#![no_main]
//! The single pass lenient JSON reader against serde's value-by-value reading of the same types
//! (`codec/json/reference.rs`, built with `--cfg fuzzing` only): every API's request reader, whole-body
//! reader and stream-frame reader must give the same call record either way. The reference reads what the
//! single pass reads: the body, or, where serde_json cannot read one of its tokens (a number beyond f64, a
//! lone surrogate escape), the sanitised copy (those tokens as `null`).
//! Byte 0 picks the API, byte 1 the frame kind; the rest is the document.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Request, Response, Route};
use tollgate::codec::json::reference::{sanitised, with_reference};
use tollgate::providers::{self, StreamState};
use tollgate::stream::Frame;

fn read(route: &Route, kind: u8, body: &[u8]) -> (Request, Response, Response, bool) {
    let mut req = Request::default();
    providers::request(route, body, &mut req);
    let mut whole = Response::default();
    providers::response(route, body, &mut whole);
    let mut streamed = Response::default();
    let mut st = StreamState::default();
    let text = std::str::from_utf8(body).unwrap_or("");
    let frame = match kind % 3 {
        0 => Frame::Sse { event: "", data: text },
        1 => Frame::Json(body),
        _ => Frame::Aws {
            message_type: "event",
            event_type: "chunk",
            exception_type: "",
            payload: body,
        },
    };
    let out = providers::frame(route, &frame, &mut st, &mut streamed);
    (req, whole, streamed, out.content)
}

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else {
        return;
    };
    let route = Route {
        api: Api::ALL[usize::from(*a) % Api::ALL.len()],
        provider: "openai".to_owned(),
        path_model: None,
        path_stream: a & 16 == 16,
    };
    let one = read(&route, *b, body);
    // The reference reads the sanitised copy (each token serde_json refuses as `null`, as the tape reads
    // it); a document decoded inside another (a Bedrock event in its base64 `bytes`) holding such a token
    // stays the tape's (`reference::with_reference`).
    let copy = std::str::from_utf8(body).ok().and_then(sanitised);
    let two = with_reference(|| read(&route, *b, copy.as_deref().map_or(body, str::as_bytes)));
    assert_eq!(one, two);
});
