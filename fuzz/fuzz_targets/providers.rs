#![no_main]
//! Every provider's request reader, whole-body reader and stream-frame reader, over every framing, then
//! the span built from the result. Byte 0 picks the API, byte 1 the framing and chunking.
//!
//! What providers add without changing the meaning never changes what is read: a member no provider sends
//! (holding a new usage-like object) in every object, every member written twice, or every object's
//! members in reverse order (`providers::variants`), for the request and the whole-body readers; and an
//! event of a type no provider sends before a stream's first event.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Call, Request, Response, Route};
use tollgate::providers::{self, variants, StreamState};
use tollgate::stream::Framing;
use tollgate::stream::{Frame, Framer, Limits};
use tollgate::telemetry::span;

const PROVIDERS: [&str; 4] = ["openai", "azure.ai.openai", "mistral_ai", "gcp.vertex_ai"];
const FRAMINGS: [Framing; 5] = [
    Framing::Whole,
    Framing::Sse,
    Framing::Ndjson,
    Framing::JsonArray,
    Framing::AwsEventStream,
];

/// The response read from `body` in the chunks `b` picks, after `first` (an event no provider sends).
fn read(route: &Route, framing: Framing, b: u8, body: &[u8], first: Option<Frame<'_>>) -> (Response, bool) {
    let limits = Limits {
        max_event: 2048,
        max_body: 8192,
        max_inflated: 1 << 20,
    };
    let mut framer = Framer::new(framing, &limits);
    let mut st = StreamState::default();
    let mut resp = Response::default();
    let mut on = |f: Frame<'_>| {
        if framing == Framing::Whole {
            if let Frame::Json(j) = f {
                providers::response(route, j, &mut resp);
            }
        } else {
            let _ = providers::frame(route, &f, &mut st, &mut resp);
        }
    };
    if let Some(f) = first {
        on(f);
    }
    for c in tollgate_fuzz::chunks(b, body) {
        framer.push(c, &mut on);
    }
    framer.finish(&mut on);
    (resp, st.finished)
}

fuzz_target!(|data: &[u8]| {
    let [a, b, body @ ..] = data else {
        return;
    };
    let api = Api::ALL[usize::from(*a) % Api::ALL.len()];
    let route = Route {
        api,
        provider: PROVIDERS[usize::from(*a / 16) % PROVIDERS.len()].to_owned(),
        path_model: (a & 1 == 1).then(|| "path-model".to_owned()),
        path_stream: a & 2 == 2,
    };
    let mut call = Call {
        route: Some(route.clone()),
        http_status: Some(if b & 0x80 != 0 { 429 } else { 200 }),
        ..Call::default()
    };
    providers::request(&route, body, &mut call.request);
    let framing = FRAMINGS[usize::from(*b) % FRAMINGS.len()];
    let _ = providers::framing(&route, &call.request, "text/event-stream");
    let (resp, _) = read(&route, framing, *b, body, None);
    call.response = resp;
    call.estimate_missing_usage();
    let _ = span::build_span(&call, &span::Settings::default(), None);

    if framing == Framing::Whole {
        // The readers themselves (not the framer's size cap: a member written twice at every level can
        // grow a nested document a lot).
        let (mut plain_req, mut plain) = (Request::default(), Response::default());
        providers::request(&route, body, &mut plain_req);
        providers::response(&route, body, &mut plain);
        for (change, v) in variants::all(body) {
            if v.len() > 1 << 18 {
                continue;
            }
            let (mut req, mut resp) = (Request::default(), Response::default());
            providers::request(&route, &v, &mut req);
            providers::response(&route, &v, &mut resp);
            assert_eq!(req, plain_req, "request, {change:?}");
            assert_eq!(resp, plain, "response, {change:?}");
        }
    } else {
        let new = variants::NEW_EVENT;
        let first = match framing {
            Framing::Sse => Frame::Sse { event: "tollgate.new_event", data: new },
            Framing::AwsEventStream => Frame::Aws {
                message_type: "event",
                event_type: "tollgateNewEvent",
                exception_type: "",
                payload: new.as_bytes(),
            },
            _ => Frame::Json(new.as_bytes()),
        };
        assert_eq!(
            read(&route, framing, *b, body, Some(first)),
            read(&route, framing, *b, body, None),
            "an unknown event first"
        );
    }
});
