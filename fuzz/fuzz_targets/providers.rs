#![no_main]
//! Every provider's request reader, whole-body reader and stream-frame reader, over every framing, then
//! the span built from the result. Byte 0 picks the API, byte 1 the framing and chunking.
use libfuzzer_sys::fuzz_target;
use tollgate::call::{Api, Call, Route};
use tollgate::config::Config;
use tollgate::providers::{self, Framing, StreamState};
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
    let limits = Limits {
        max_event: 2048,
        max_body: 8192,
        max_inflated: 1 << 20,
    };
    let mut framer = Framer::new(framing, &limits);
    let mut st = StreamState::default();
    let resp = &mut call.response;
    let mut on = |f: Frame<'_>| {
        if framing == Framing::Whole {
            if let Frame::Json(j) = f {
                providers::response(&route, j, resp);
            }
        } else {
            let _ = providers::frame(&route, &f, &mut st, resp);
        }
    };
    for c in tollgate_fuzz::chunks(*b, body) {
        framer.push(c, &mut on);
    }
    framer.finish(&mut on);
    call.estimate_missing_usage();
    let _ = span::build_span(&call, &Config::default(), None);
});
