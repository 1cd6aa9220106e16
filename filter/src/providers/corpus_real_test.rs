//! tollgate against real recorded traffic: every exchange of `tests/corpus` (exchanges other projects'
//! test suites recorded against the live provider APIs; sources and licenses in tests/corpus/SOURCES.md)
//! goes through what the host does with a response (`ResponseReader`: head, then body bytes) and must give
//! what the independent reader (`tests/corpus/reader.py`, written from the providers' docs) expects:
//! provider name, operation, models, exact usage, finish reasons, a complete stream not flagged partial, a
//! first chunk for every stream, and no estimate where the response reports usage. Each body is fed whole,
//! byte by byte, in random chunks, cut at every place a careless reader breaks (inside multi-byte UTF-8,
//! between CR and LF, inside event-stream preludes and headers), and gzip-compressed in small chunks: every
//! chunking must give the same call.

use crate::call::{Call, Request, Route};
use crate::codec::headers::{serialize, Headers};
use crate::providers::reader::ResponseReader;
use crate::providers::{self};
use crate::stream::Framing;
use crate::stream::Limits;
use base64::Engine as _;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::Path;

pub(super) struct Exchange {
    pub(super) id: String,
    host: String,
    path: String,
    pub(super) request: Vec<u8>,
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
    expect: Value,
}

fn bytes_of(part: &Value) -> Vec<u8> {
    match (part.get("body"), part.get("body_b64")) {
        (Some(Value::String(s)), _) => s.clone().into_bytes(),
        (_, Some(Value::String(b))) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
        _ => Vec::new(),
    }
}

/// The corpus's sources: their names and the path of their exchanges.
fn sources() -> Vec<(String, std::path::PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus");
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("exchanges.jsonl.gz").exists())
        .map(|d| {
            let name = d.file_name().unwrap().to_string_lossy().into_owned();
            (name, d.join("exchanges.jsonl.gz"))
        })
        .collect();
    out.sort();
    out
}

/// Hand each source's exchanges (one JSON line each) to `f`, one source in memory at a time (the wasm32
/// unit tests run in one heap).
pub(super) fn for_each_source(f: &mut dyn FnMut(&str, &[u8])) {
    for (name, path) in sources() {
        let gz = std::fs::read(path).unwrap();
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(gz.as_slice())
            .read_to_end(&mut text)
            .unwrap();
        f(&name, &text);
    }
}

/// The exchanges of one source, read one at a time.
pub(super) fn exchanges(text: &[u8]) -> impl Iterator<Item = (usize, Exchange)> + '_ {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(n, line)| {
            let x: Value = serde_json::from_slice(line).unwrap();
            let r = &x["response"];
            let x = Exchange {
                id: x["id"].as_str().unwrap().to_owned(),
                host: x["host"].as_str().unwrap().to_owned(),
                path: x["path"].as_str().unwrap().to_owned(),
                request: bytes_of(&x["request"]),
                status: r["status"].as_u64().unwrap() as u16,
                headers: r["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect(),
                body: bytes_of(r),
                expect: x["expect"].clone(),
            };
            (n, x)
        })
}

/// What one delivery of the body gave.
#[derive(Debug, PartialEq)]
struct Seen {
    call: Call,
    /// A chunk of the streamed response arrived (`gen_ai.response.time_to_first_chunk` is set).
    first_chunk: bool,
}

pub(super) fn route_of(x: &Exchange) -> Route {
    providers::detect(&x.host, &x.path, &[]).unwrap_or_else(|| panic!("{}: not detected", x.id))
}

/// The exchange as the host reads it, the body in `chunks` (with `encoding` replacing the recorded one).
fn run(x: &Exchange, encoding: Option<&str>, chunks: &mut dyn Iterator<Item = &[u8]>) -> Seen {
    let route = route_of(x);
    let mut call = Call {
        route: Some(route.clone()),
        http_status: Some(x.status),
        request: Request {
            stream: route.path_stream,
            ..Request::default()
        },
        ..Call::default()
    };
    providers::request(&route, &x.request, &mut call.request);
    let status = x.status.to_string();
    let mut pairs: Vec<(&str, &str)> = vec![(":status", &status)];
    pairs.extend(
        x.headers
            .iter()
            .filter(|(k, _)| encoding.is_none() || k != "content-encoding")
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    if let Some(e) = encoding {
        pairs.push(("content-encoding", e));
    }
    let head = Headers::new(serialize(&pairs));
    let mut reader = ResponseReader::new(
        &route,
        &call.request,
        Some(x.status),
        &head,
        &Limits::default(),
        &mut call.response,
    );
    let mut first_chunk = false;
    for c in chunks {
        first_chunk |= reader.push(&route, c, false, &mut call.response).chunk;
    }
    first_chunk |= reader.push(&route, &[], true, &mut call.response).chunk;
    call.response.incomplete = reader.incomplete();
    call.estimate_missing_usage();
    // Generated content is kept only with capture on; its character count stays.
    Seen { call, first_chunk }
}

/// The body as the provider sent it, for the places where a careless reader breaks: inside a multi-byte
/// UTF-8 character, between CR and LF, and inside each event-stream message's prelude and headers.
fn hostile_cuts(body: &[u8], framing: Framing) -> Vec<usize> {
    let mut cuts: Vec<usize> = (1..body.len())
        .filter(|&i| body[i] & 0xC0 == 0x80 || (body[i - 1] == b'\r' && body[i] == b'\n'))
        .collect();
    if framing == Framing::AwsEventStream {
        let mut at = 0usize;
        while at + 12 <= body.len() {
            let total = u32::from_be_bytes(body[at..at + 4].try_into().unwrap()) as usize;
            let headers = u32::from_be_bytes(body[at + 4..at + 8].try_into().unwrap()) as usize;
            for d in [
                1,
                3,
                4,
                7,
                8,
                11,
                12,
                13,
                12 + headers / 2,
                12 + headers,
                total - 4,
                total - 1,
            ] {
                cuts.push(at + d);
            }
            at += total.max(16);
        }
    }
    cuts.retain(|&c| c > 0 && c < body.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

fn pieces<'a>(body: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::with_capacity(cuts.len() + 1);
    let mut last = 0;
    for &c in cuts {
        out.push(&body[last..c]);
        last = c;
    }
    out.push(&body[last..]);
    out
}

/// Random chunk sizes (1..=97 bytes) from `seed`.
fn random_cuts(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = crate::rng::SplitMix64::new(seed);
    let mut cuts = Vec::new();
    let mut at = 0usize;
    loop {
        at += 1 + (rng.next_u64() % 97) as usize;
        if at >= len {
            return cuts;
        }
        cuts.push(at);
    }
}

fn opt_u64(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

/// How the call differs from what the independent reader expects, one line per difference.
fn differences(x: &Exchange, seen: &Seen) -> Vec<String> {
    let e = &x.expect;
    let call = &seen.call;
    let route = call.route.as_ref().unwrap();
    let resp = &call.response;
    let mut out = Vec::new();
    let mut check = |what: &str, got: String, want: String| {
        if got != want {
            out.push(format!("{what}: got {got}, want {want}"));
        }
    };
    check(
        "provider",
        route.provider.clone(),
        e["provider"].as_str().unwrap().to_owned(),
    );
    check(
        "operation",
        crate::providers::operation(route).to_owned(),
        e["operation"].as_str().unwrap().to_owned(),
    );
    check(
        "request model",
        format!("{:?}", call.request_model()),
        format!("{:?}", opt_str(&e["request_model"])),
    );
    check(
        "response model",
        format!("{:?}", resp.model.as_deref()),
        format!("{:?}", opt_str(&e["response_model"])),
    );
    let u = &e["usage"];
    let usage = [
        ("input", resp.usage.input, &u["input"]),
        ("output", resp.usage.output, &u["output"]),
        ("cache_read", resp.usage.cache_read, &u["cache_read"]),
        ("cache_write", resp.usage.cache_write, &u["cache_write"]),
        ("reasoning", resp.usage.reasoning, &u["reasoning"]),
    ];
    let reported = !u["input"].is_null() || !u["output"].is_null();
    for (name, got, want) in usage {
        // Where the response reports no usage tollgate estimates, and says so (checked below).
        if !reported && call.usage_estimated && matches!(name, "input" | "output") {
            continue;
        }
        check(name, format!("{got:?}"), format!("{:?}", opt_u64(want)));
    }
    check(
        "estimated",
        format!("{}", reported && call.usage_estimated),
        "false".to_owned(),
    );
    let want_reasons: Vec<String> = e["finish_reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    check(
        "finish reasons",
        format!("{:?}", resp.finish_reasons),
        format!("{want_reasons:?}"),
    );
    if let Some(complete) = e["complete"].as_bool() {
        check(
            "stream complete",
            format!("{}", !resp.incomplete),
            format!("{complete}"),
        );
        let frames = e["frames"].as_u64().unwrap();
        check(
            "first chunk",
            format!("{}", seen.first_chunk),
            format!("{}", frames > 0),
        );
    }
    out
}

#[test]
fn real_exchanges_read_as_the_independent_reader_reads_them() {
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut total = 0usize;
    for_each_source(&mut |source, text| {
        for (n, x) in exchanges(text) {
            let x = &x;
            total += 1;
            let api = format!(
                "{} {} {}",
                x.expect["api"].as_str().unwrap(),
                x.expect["provider"].as_str().unwrap(),
                x.expect["framing"].as_str().unwrap()
            );
            *counts.entry(format!("{source}: {api}")).or_default() += 1;
            let whole = run(x, None, &mut std::iter::once(x.body.as_slice()));
            for d in differences(x, &whole) {
                let key = format!("{api}: {}", d.split(':').next().unwrap());
                failures
                    .entry(key)
                    .or_default()
                    .push(format!("{} — {d}", x.id));
            }
            // Every chunking gives the same call.
            let framing = ResponseReader::new(
                &route_of(x),
                &whole.call.request,
                Some(x.status),
                &Headers::new(serialize(&[(
                    "content-type",
                    x.headers
                        .iter()
                        .find(|(k, _)| k == "content-type")
                        .map_or("", |(_, v)| v.as_str()),
                )])),
                &Limits::default(),
                &mut Default::default(),
            )
            .framing();
            let seed = (n as u64) << 8 | source.len() as u64;
            let random = random_cuts(x.body.len(), seed);
            let bytes: Vec<&[u8]> = x.body.chunks(1).collect();
            let mut deliveries = vec![
                ("1-byte chunks", bytes),
                ("random chunks", pieces(&x.body, &random)),
            ];
            let recorded_encoding = x.headers.iter().any(|(k, _)| k == "content-encoding");
            if !recorded_encoding {
                let mut cuts = hostile_cuts(&x.body, framing);
                cuts.extend(random.iter().step_by(7));
                cuts.sort_unstable();
                cuts.dedup();
                deliveries.push(("hostile cuts", pieces(&x.body, &cuts)));
            }
            for (how, chunks) in deliveries {
                let seen = run(x, None, &mut chunks.into_iter());
                assert_eq!(seen, whole, "{}: {how}", x.id);
            }
            if !recorded_encoding {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(&x.body).unwrap();
                let gz = gz.finish().unwrap();
                let seen = run(x, Some("gzip"), &mut gz.chunks(3));
                assert_eq!(seen, whole, "{}: gzip in 3-byte chunks", x.id);
            }
        }
    });
    eprintln!("{total} recorded exchanges:");
    for (k, n) in &counts {
        eprintln!("  {n:5}  {k}");
    }
    let mut report = String::new();
    for (k, v) in &failures {
        report.push_str(&format!("\n{} × {k}\n", v.len()));
        for line in v.iter().take(4) {
            report.push_str(&format!("    {line}\n"));
        }
    }
    assert!(total >= 3000, "{total} exchanges: the corpus is there");
    assert!(failures.is_empty(), "{report}");
}
