//! The filter's pure data path outside Envoy, for counting instructions repeatably:
//! `valgrind --tool=callgrind target/release/examples/hotpath sse 10` (see docs/performance.md).
//! Each case does what the exchange (`exchange/mod.rs`) does for one request, minus the host calls:
//! - `sse`: a 1,000-event OpenAI stream in 16 KiB chunks through the body decoder, the OpenAI stream reader
//!   and the include_usage event filter (`sse-read`: without the filter);
//! - `anthropic`: a 1,000-text-delta Anthropic Messages stream in 16 KiB chunks through the body decoder and
//!   the Anthropic stream reader;
//! - `request`: parse + include_usage injection of a 1 KiB and a 256 KiB chat request;
//! - `response`: a 1 MiB non-streamed chat completion through the decoder and reader;
//! - `serde`: the same 1,000-event OpenAI stream and a 1 KiB chat request read without the skimmer and the
//!   template, every event through the provider types' serde readers (the path of every other provider);
//! - `call`: the whole fixed per-request path of a 1 KiB chat exchange with the bench's config (OTLP on):
//!   detect → trace ids + traceparent → request parse → response parse → estimate → cost → metrics record
//!   → span build → OTLP encode (one batch per 100 calls, as a busy exporter does).

use std::hint::black_box;
use tollgate::call::{Api, Call, Request, Response, Route};
use tollgate::config::Config;
use tollgate::providers::{self, openai, StreamState};
use tollgate::stream::sse_edit::{event_data, SseEventFilter};
use tollgate::stream::Framing;
use tollgate::stream::{BodyDecoder, ContentEncoding, Frame, Limits};
use tollgate::telemetry::export::{self, Outcome, SpanQueue};
use tollgate::telemetry::metrics::Aggregator;
use tollgate::telemetry::{span, trace};

/// Set to false to measure the filter without the raw-byte prefilters of `openai::is_usage_only_event`.
const PREFILTER: bool = true;

fn route() -> Route {
    Route {
        api: Api::OpenAiChat,
        provider: "openai".to_owned(),
        path_model: None,
        path_stream: false,
    }
}

fn sse_body(events: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..events {
        out.push_str(&format!(
            "data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\
\"model\":\"gpt-4o-mini\",\"system_fingerprint\":\"fp_bench\",\"choices\":[{{\"index\":0,\"delta\":\
{{\"content\":\" token{:02} and more\"}},\"logprobs\":null,\"finish_reason\":null}}],\"usage\":null}}\n\n",
            i % 100
        ));
    }
    out.push_str("data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n");
    out.push_str(&format!("data: {{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1763700000,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{{\"prompt_tokens\":250,\"completion_tokens\":{events},\"total_tokens\":{}}}}}\n\n", 250 + events));
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// An Anthropic Messages stream: message_start, one text block of `events` text deltas, message_delta, stop.
fn anthropic_body(events: usize) -> Vec<u8> {
    let mut out = String::new();
    out.push_str("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_bench\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":250,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n");
    out.push_str("event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    out.push_str("event: ping\ndata: {\"type\": \"ping\"}\n\n");
    for i in 0..events {
        out.push_str(&format!(
            "event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\" token{:02} and more\"}}}}\n\n",
            i % 100
        ));
    }
    out.push_str(
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );
    out.push_str(&format!("event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\",\"stop_sequence\":null}},\"usage\":{{\"output_tokens\":{events}}}}}\n\n"));
    out.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    out.into_bytes()
}

/// One streamed Anthropic exchange, as `Exchange::read_response` (no event filter on this API).
fn anthropic_exchange(body: &[u8], chunk: usize) -> Response {
    let route = Route {
        api: Api::AnthropicMessages,
        provider: "anthropic".to_owned(),
        path_model: None,
        path_stream: false,
    };
    let mut resp = Response::default();
    let mut st = StreamState::default();
    let mut dec = BodyDecoder::new(ContentEncoding::Identity, Framing::Sse, &Limits::default());
    let mut on = |f: Frame<'_>| {
        providers::frame(&route, &f, &mut st, &mut resp);
    };
    for c in body.chunks(chunk) {
        dec.push(c, &mut on);
    }
    dec.finish(&mut on);
    assert!(st.finished);
    resp
}

fn chat_request(size: usize, stream: bool) -> Vec<u8> {
    let words = "The quick brown fox jumps over the lazy dog while the gateway counts tokens. ";
    let text: String = words
        .repeat(size / words.len() + 1)
        .chars()
        .take(size.saturating_sub(200))
        .collect();
    format!("{{\"model\":\"gpt-4o-mini\",\"stream\":{stream},\"temperature\":0.2,\"max_tokens\":256,\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},{{\"role\":\"user\",\"content\":\"{text}\"}}]}}").into_bytes()
}

fn chat_response(size: usize) -> Vec<u8> {
    let words = "Tokens flow through the gateway and every one of them is counted exactly once. ";
    let text: String = words
        .repeat(size / words.len() + 1)
        .chars()
        .take(size.saturating_sub(300))
        .collect();
    format!("{{\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion\",\"created\":1763700000,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{text}\"}},\"finish_reason\":\"stop\"}}],\"usage\":{{\"prompt_tokens\":250,\"completion_tokens\":240,\"total_tokens\":490}}}}").into_bytes()
}

/// One streamed exchange, as `Exchange::read_response` + the usage filter in `on_http_response_body`.
/// `edit`: also run the include_usage event filter (`sse`); without it (`sse-read`) the stream is only read, as
/// when the client asked for usage itself.
fn sse_exchange(body: &[u8], chunk: usize, edit: bool) -> (Response, u64, usize) {
    let route = route();
    let mut resp = Response::default();
    let mut st = StreamState::default();
    let mut dec = BodyDecoder::new(ContentEncoding::Identity, Framing::Sse, &Limits::default());
    let mut filter = SseEventFilter::default();
    let drop = |ev: &[u8]| {
        if PREFILTER {
            openai::is_usage_only_event(ev)
        } else {
            openai::is_usage_only_chunk(&event_data(ev))
        }
    };
    let mut forwarded = 0u64;
    // Bytes the filter carries between chunks (decoder + held-back event), at its highest.
    let mut carried = 0usize;
    let mut chunks = body.chunks(chunk).peekable();
    while let Some(c) = chunks.next() {
        let mut on = |f: Frame<'_>| {
            providers::frame(&route, &f, &mut st, &mut resp);
        };
        dec.push(c, &mut on);
        let mut out = if edit {
            filter.push_changed(c, &drop)
        } else {
            None
        };
        if chunks.peek().is_none() {
            dec.finish(&mut on);
            let rest = if edit { filter.finish() } else { Vec::new() };
            if !rest.is_empty() {
                out.get_or_insert_with(|| c.to_vec()).extend(rest);
            }
        }
        forwarded += out.as_ref().map_or(c.len(), Vec::len) as u64;
        carried = carried.max(dec.stats().buffered + filter.pending());
        black_box(&out);
    }
    (resp, forwarded, carried)
}

fn request_exchange(body: &[u8]) -> Option<Vec<u8>> {
    let mut req = Request::default();
    providers::request(&route(), body, &mut req);
    black_box(&req);
    openai::inject_include_usage(body)
}

fn response_exchange(body: &[u8]) -> Response {
    let route = route();
    let mut resp = Response::default();
    let mut dec = BodyDecoder::new(
        ContentEncoding::Identity,
        Framing::Whole,
        &Limits::default(),
    );
    let mut on = |f: Frame<'_>| {
        if let Frame::Json(b) = f {
            providers::response(&route, b, &mut resp);
        }
    };
    for c in body.chunks(16 * 1024) {
        dec.push(c, &mut on);
    }
    dec.finish(&mut on);
    resp
}

const CALL_CONFIG: &[u8] = br#"{"service_name":"tollgate-bench","conversation_id_header":"x-conversation-id","otlp":{"cluster":"otel_collector","authority":"otel-collector","flush_interval_ms":1000}}"#;

/// What the exchange does for one small non-streamed request, without the host calls.
fn call_exchange(
    cfg: &Config,
    req_body: &[u8],
    resp_body: &[u8],
    agg: &mut Aggregator,
    queue: &mut SpanQueue,
    n: u64,
    stages: u32,
) {
    let authority = "api.openai.com";
    let Some(route) = providers::detect(authority, "/v1/chat/completions", &cfg.routes) else {
        return;
    };
    let mut call = Call {
        start_ns: 1_763_700_000_000_000_000 + n * 1000,
        server_address: providers::strip_port(authority).to_ascii_lowercase(),
        server_port: Some(443),
        ..Call::default()
    };
    call.request.stream = route.path_stream;
    call.route = Some(route);
    let mut rnd = [0u8; 24];
    rnd[..8].copy_from_slice(&(n + 1).to_le_bytes());
    rnd[16..].copy_from_slice(&(n + 7).to_le_bytes());
    call.ids = trace::span_ids(None, None, rnd, cfg.sampling_ratio, 0.5);
    black_box(trace::format_traceparent(&call.ids));
    if stages < 1 {
        return;
    }
    if let Some(route) = call.route.as_ref() {
        providers::request(route, req_body, &mut call.request);
    }
    if stages < 2 {
        return;
    }
    let framing = providers::framing(
        call.route.as_ref().unwrap(),
        &call.request,
        "application/json",
    );
    let mut dec = BodyDecoder::new(ContentEncoding::Identity, framing, &Limits::default());
    {
        let route = call.route.as_ref().unwrap();
        let resp = &mut call.response;
        let mut on = |f: Frame<'_>| {
            if let Frame::Json(b) = f {
                providers::response(route, b, resp);
            }
        };
        dec.push(resp_body, &mut on);
        dec.finish(&mut on);
    }
    call.http_status = Some(200);
    call.end_ns = call.start_ns + 2_000_000;
    call.estimate_missing_usage();
    call.cost_usd = tollgate::pricing::call_cost(&cfg.pricing, &call);
    if stages < 3 {
        return;
    }
    if cfg.otlp.as_ref().is_some_and(|o| o.metrics) {
        agg.record(&call, cfg.semconv);
    }
    if stages < 4 {
        return;
    }
    if cfg.otlp.is_some() && call.ids.sampled {
        queue.push(span::build_span(&call, &cfg.span_settings(), None));
    }
    if stages < 5 {
        return;
    }
    if queue.batch_ready() {
        black_box(queue.next_request());
        queue.finish(Outcome::Success);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("sse");
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let t0 = std::time::Instant::now();
    let bytes: usize = match case {
        "sse" | "sse-read" => {
            let body = sse_body(1000);
            let edit = case == "sse";
            let mut carried = 0;
            for _ in 0..iters {
                let (resp, fwd, c) = sse_exchange(&body, 16 * 1024, edit);
                assert_eq!(resp.usage.output, Some(1000));
                assert_eq!(
                    fwd < body.len() as u64,
                    edit,
                    "the usage-only event is removed"
                );
                carried = c;
            }
            println!("sse: at most {carried} bytes carried between 16 KiB chunks");
            body.len() * iters
        }
        "anthropic" => {
            let body = anthropic_body(1000);
            for _ in 0..iters {
                let resp = anthropic_exchange(&body, 16 * 1024);
                assert_eq!(resp.usage.output, Some(1000));
                assert_eq!(resp.output_chars, 1000 * 17);
            }
            body.len() * iters
        }
        "request" => {
            let (small, big) = (chat_request(1024, true), chat_request(256 * 1024, true));
            for _ in 0..iters {
                assert!(request_exchange(&small).is_some());
                assert!(request_exchange(&big).is_some());
            }
            (small.len() + big.len()) * iters
        }
        "response" => {
            let body = chat_response(1024 * 1024);
            for _ in 0..iters {
                assert_eq!(response_exchange(&body).usage.output, Some(240));
            }
            body.len() * iters
        }
        "serde" => {
            let (body, req) = (sse_body(1000), chat_request(1024, true));
            let route = route();
            for _ in 0..iters {
                let mut resp = Response::default();
                let mut st = StreamState::default();
                let mut dec =
                    BodyDecoder::new(ContentEncoding::Identity, Framing::Sse, &Limits::default());
                let mut on = |f: Frame<'_>| {
                    providers::provider(route.api).frame(&route, &f, &mut st, &mut resp);
                };
                for c in body.chunks(16 * 1024) {
                    dec.push(c, &mut on);
                }
                dec.finish(&mut on);
                assert_eq!(resp.usage.output, Some(1000));
                let mut r = Request::default();
                providers::provider(route.api).request(&route, &req, &mut r);
                assert!(r.model.is_some());
                black_box(&r);
            }
            (body.len() + req.len()) * iters
        }
        "call" => {
            let cfg = Config::parse(CALL_CONFIG).expect("bench config");
            let (req, resp) = (chat_request(1024, false), chat_response(1024));
            let resource = export::resource("tollgate", "bench", &[]);
            let mut queue = SpanQueue::new(resource, 2048, 100);
            let mut agg = Aggregator::new(1000, 1);
            // Optional third argument: stop after stage 0 (detect, ids), 1 (request parse), 2 (response parse,
            // estimate, cost), 3 (metrics), 4 (span build); 5 (default) also encodes, for per-stage costs.
            let stages: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
            for n in 0..iters as u64 {
                call_exchange(&cfg, &req, &resp, &mut agg, &mut queue, n, stages);
            }
            if stages >= 4 {
                assert_eq!(queue.stats.enqueued, iters as u64);
            }
            (req.len() + resp.len()) * iters
        }
        other => {
            eprintln!(
                "unknown case {other}: sse | sse-read | anthropic | request | response | call"
            );
            std::process::exit(2);
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{case}: {iters} iterations, {bytes} bytes, {:.1} MB/s native",
        bytes as f64 / secs / 1e6
    );
}
