//! Chunking invariance over the whole fixture corpus, with the real decoders: every response body, fed whole,
//! split into two at every byte offset, in 1-byte chunks, and gzip-compressed in 3-byte chunks, must give
//! identical call records. (Attribute correctness per fixture is checked end to end through Envoy.)

use crate::call::{Request, Response, Route};
use crate::providers::{self, FrameOutcome, StreamState};
use crate::stream::testutil::Owned;
use crate::stream::Framing;
use crate::stream::{encode_message, BodyDecoder, ContentEncoding, Frame, Limits};
use base64::Engine;
use serde_json::Value;
use std::io::Write;
use std::path::Path;

pub(super) struct Case {
    pub(super) name: String,
    pub(super) route: Route,
    pub(super) framing: Framing,
    pub(super) body: Vec<u8>,
    pub(super) request_body: Vec<u8>,
}

fn body_of(resp: &Value) -> Vec<u8> {
    if let Some(b) = resp.get("body") {
        return match b {
            Value::String(s) => s.clone().into_bytes(),
            other => serde_json::to_vec(other).unwrap(),
        };
    }
    if let Some(b) = resp.get("body_base64") {
        return base64::engine::general_purpose::STANDARD
            .decode(b.as_str().unwrap())
            .unwrap();
    }
    let mut out = Vec::new();
    for ev in resp["eventstream"].as_array().unwrap() {
        let headers: Vec<(&str, &str)> = ev["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let payload = if let Some(inner) = ev.get("payload_anthropic_event") {
            let b64 = base64::engine::general_purpose::STANDARD
                .encode(serde_json::to_vec(inner).unwrap());
            serde_json::to_vec(&serde_json::json!({"bytes": b64, "p": "abcdefghij"})).unwrap()
        } else {
            match &ev["payload"] {
                Value::String(s) => s.clone().into_bytes(),
                other => serde_json::to_vec(other).unwrap(),
            }
        };
        out.extend(encode_message(&headers, &payload));
    }
    out
}

pub(super) fn cases() -> Vec<Case> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testenv/fixtures");
    let mut out = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for f in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "json"))
        {
            let fx: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
            let route = providers::detect(
                fx["host"].as_str().unwrap(),
                fx["path"].as_str().unwrap(),
                &[],
            )
            .unwrap_or_else(|| panic!("{}: not detected", f.display()));
            let req_body = match &fx["request"] {
                Value::String(s) => s.clone().into_bytes(),
                other => serde_json::to_vec(other).unwrap(),
            };
            let mut request = Request {
                stream: route.path_stream,
                ..Request::default()
            };
            providers::request(&route, &req_body, &mut request);
            let resp = &fx["response"];
            let ct = resp["headers"]
                .get("content-type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let status = resp.get("status").and_then(Value::as_u64).unwrap_or(200);
            let mut framing = providers::framing(&route, &request, ct);
            if status >= 400 && ct.contains("json") {
                framing = Framing::Whole;
            }
            out.push(Case {
                name: f.display().to_string(),
                route,
                framing,
                body: body_of(resp),
                request_body: req_body,
            });
        }
    }
    assert!(out.len() >= 50, "the corpus is there");
    out
}

/// A case's body decoded into frames (owned), as the host's decoder hands them over.
pub(super) fn frames(case: &Case) -> Vec<Owned> {
    let mut dec = BodyDecoder::new(ContentEncoding::Identity, case.framing, &Limits::default());
    let mut out = Vec::new();
    let mut on = |f: Frame<'_>| out.push(Owned::from(f));
    dec.push(&case.body, &mut on);
    dec.finish(&mut on);
    out
}

/// A request body read as the host reads it (the URL may already say the call streams).
pub(super) fn read_request(route: &Route, body: &[u8]) -> Request {
    let mut req = Request {
        stream: route.path_stream,
        ..Request::default()
    };
    providers::request(route, body, &mut req);
    req
}

/// The response `frames` make (each a whole body when `framing` is `Whole`), each frame's outcome and
/// whether the stream ended.
pub(super) fn read_frames(
    route: &Route,
    framing: Framing,
    frames: &[Owned],
) -> (Response, Vec<FrameOutcome>, bool) {
    let mut resp = Response::default();
    let mut st = StreamState::default();
    let mut outs = Vec::new();
    for f in frames {
        if framing == Framing::Whole {
            if let Frame::Json(b) = f.frame() {
                providers::response(route, b, &mut resp);
            }
        } else {
            outs.push(providers::frame(route, &f.frame(), &mut st, &mut resp));
        }
    }
    (resp, outs, st.finished)
}

/// What one delivery of the body produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    resp: Response,
    finished: bool,
    first_content: Option<u64>,
}

fn run(case: &Case, encoding: ContentEncoding, chunks: &mut dyn Iterator<Item = &[u8]>) -> Outcome {
    let mut dec = BodyDecoder::new(encoding, case.framing, &Limits::default());
    let mut resp = Response::default();
    let mut st = StreamState::default();
    let mut first = None;
    let mut on = |f: Frame<'_>| {
        if case.framing == Framing::Whole {
            if let Frame::Json(b) = f {
                providers::response(&case.route, b, &mut resp);
            }
        } else if providers::frame(&case.route, &f, &mut st, &mut resp).content && first.is_none() {
            first = Some(st.frames);
        }
    };
    for c in chunks {
        dec.push(c, &mut on);
    }
    dec.finish(&mut on);
    Outcome {
        resp,
        finished: st.finished,
        first_content: first,
    }
}

#[test]
fn every_chunking_of_every_fixture_gives_the_same_call() {
    for case in cases() {
        let whole = run(
            &case,
            ContentEncoding::Identity,
            &mut std::iter::once(case.body.as_slice()),
        );
        assert_ne!(
            whole.resp,
            Response::default(),
            "{}: nothing extracted",
            case.name
        );
        for cut in 0..=case.body.len() {
            let (a, b) = case.body.split_at(cut);
            let split = run(&case, ContentEncoding::Identity, &mut [a, b].into_iter());
            assert_eq!(split, whole, "{}: split at {cut}", case.name);
        }
        let bytes = run(&case, ContentEncoding::Identity, &mut case.body.chunks(1));
        assert_eq!(bytes, whole, "{}: 1-byte chunks", case.name);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&case.body).unwrap();
        let gz = gz.finish().unwrap();
        let zipped = run(&case, ContentEncoding::Gzip, &mut gz.chunks(3));
        assert_eq!(zipped, whole, "{}: gzip in 3-byte chunks", case.name);
    }
}
