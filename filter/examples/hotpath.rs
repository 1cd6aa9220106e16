//! The filter's pure data path outside Envoy, for counting instructions repeatably:
//! `valgrind --tool=callgrind target/release/examples/hotpath sse 10` (see README "Performance").
//! Each case does what `host/http.rs` does for one exchange, minus the host calls:
//! - `sse`: a 1,000-event OpenAI stream in 16 KiB chunks through the body decoder, the OpenAI stream reader
//!   and the include_usage event filter;
//! - `request`: parse + include_usage injection of a 1 KiB and a 256 KiB chat request;
//! - `response`: a 1 MiB non-streamed chat completion through the decoder and reader.

use std::hint::black_box;
use tollgate::call::{Api, Request, Response, Route};
use tollgate::providers::{self, openai, Framing, StreamState};
use tollgate::stream::sse_edit::{event_data, has_object_member, SseEventFilter};
use tollgate::stream::{BodyDecoder, ContentEncoding, Frame, Limits};

/// Set to false to measure the filter without the `"usage": {` prefilter.
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
fn sse_exchange(body: &[u8], chunk: usize) -> (Response, u64, usize) {
    let route = route();
    let mut resp = Response::default();
    let mut st = StreamState::default();
    let mut dec = BodyDecoder::new(ContentEncoding::Identity, Framing::Sse, &Limits::default());
    let mut filter = SseEventFilter::default();
    let drop = |ev: &[u8]| {
        (!PREFILTER || has_object_member(ev, b"usage"))
            && openai::is_usage_only_chunk(&event_data(ev))
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
        let mut out = filter.push_changed(c, &drop);
        if chunks.peek().is_none() {
            dec.finish(&mut on);
            let rest = filter.finish();
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let case = args.get(1).map(String::as_str).unwrap_or("sse");
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let t0 = std::time::Instant::now();
    let bytes: usize = match case {
        "sse" => {
            let body = sse_body(1000);
            let mut carried = 0;
            for _ in 0..iters {
                let (resp, fwd, c) = sse_exchange(&body, 16 * 1024);
                assert_eq!(resp.usage.output, Some(1000));
                assert!(fwd < body.len() as u64, "the usage-only event is removed");
                carried = c;
            }
            println!("sse: at most {carried} bytes carried between 16 KiB chunks");
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
        other => {
            eprintln!("unknown case {other}: sse | request | response");
            std::process::exit(2);
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{case}: {iters} iterations, {bytes} bytes, {:.1} MB/s native",
        bytes as f64 / secs / 1e6
    );
}
