#![no_main]
//! The single pass lenient JSON reader against the value-by-value reader it replaced: every API's request
//! reader, whole-body reader and stream-frame reader must give the same call record either way. Byte 0
//! picks the API, byte 1 the frame kind; the rest is the document.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Request, Response, Route};
use tollgate::providers::json::with_two_pass;
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
    let two = with_two_pass(|| read(&route, *b, body));
    assert_eq!(one, two);
});
