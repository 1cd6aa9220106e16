//! Runs the provider fixture corpus (`testenv/fixtures/<provider>/<case>.json`) through detection, the
//! request reader and the response reader, and checks every `expect` key this layer can answer.
//!
//! Fixture shape: `{name, api, provider, host, method, path, request, response{status, headers, body},
//! expect}`. `expect` lists the span attributes the case determines; `null` means "must be absent".
//! The SSE splitter and the attribute mapping below are stand-ins: the real SSE decoder and the
//! `Call` → span-attribute mapping replace them once they exist.

use super::{detect, frame, request, response, strip_port, RouteRule, StreamState};
use crate::call::{Api, Request, Response, Route};
use crate::stream::Frame;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The fixture directories this test covers (other providers' corpora join as their readers land).
const DIRS: [&str; 4] = ["openai", "azure", "mistral", "vllm"];

fn fixture_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testenv/fixtures");
    let mut files = Vec::new();
    for dir in DIRS {
        let entries =
            std::fs::read_dir(root.join(dir)).unwrap_or_else(|e| panic!("fixture dir {dir}: {e}"));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Test-only SSE splitter: events end at a blank line; `event:` names it, `data:` lines join with "\n".
fn split_sse(body: &str) -> Vec<(String, String)> {
    let body = body.replace("\r\n", "\n");
    let mut events = Vec::new();
    for block in body.split("\n\n") {
        let (mut event, mut data) = (String::new(), Vec::new());
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = value.to_owned(),
                "data" => data.push(value),
                _ => {}
            }
        }
        if !data.is_empty() {
            events.push((event, data.join("\n")));
        }
    }
    events
}

/// Route as deployed: built-in detection, or for an OpenAI-compatible server on a host tollgate does not
/// know (built-in detection says `openai`), the operator's route naming the provider.
fn route_for(f: &Value) -> Route {
    let host = f["host"].as_str().unwrap();
    let path = f["path"].as_str().unwrap();
    let provider = f["provider"].as_str().unwrap();
    let mut route = detect(host, path, &[]).expect("detected");
    if route.provider != provider
        && route.provider == "openai"
        && !strip_port(host).eq_ignore_ascii_case("api.openai.com")
    {
        let rules = [RouteRule {
            host: strip_port(host).to_owned(),
            path_prefix: String::new(),
            api: None,
            provider: provider.to_owned(),
        }];
        route = detect(host, path, &rules).expect("detected by rule");
    }
    route
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

/// The attribute this layer would report for `key`; None when the key is not this layer's to answer.
fn attribute(key: &str, route: &Route, req: &Request, resp: &Response) -> Option<Value> {
    let u = &resp.usage;
    Some(match key {
        "gen_ai.operation.name" => json!(crate::providers::operation(route)),
        "gen_ai.provider.name" => json!(route.provider),
        "gen_ai.request.model" => opt(req.model.clone()),
        "gen_ai.request.stream" => opt(req.stream.then_some(true)),
        "gen_ai.request.max_tokens" => opt(req.max_tokens),
        "gen_ai.request.temperature" => opt(req.temperature),
        "gen_ai.request.top_p" => opt(req.top_p),
        "gen_ai.request.top_k" => opt(req.top_k),
        "gen_ai.request.seed" => opt(req.seed),
        "gen_ai.request.choice.count" => opt(req.choice_count.filter(|n| *n != 1)),
        "gen_ai.request.frequency_penalty" => opt(req.frequency_penalty),
        "gen_ai.request.presence_penalty" => opt(req.presence_penalty),
        "gen_ai.request.stop_sequences" => {
            opt((!req.stop_sequences.is_empty()).then(|| json!(req.stop_sequences)))
        }
        "gen_ai.output.type" => opt(req.output_type),
        "gen_ai.embeddings.dimension.count" => opt(req.embedding_dimensions),
        "gen_ai.request.encoding_formats" => {
            opt((!req.encoding_formats.is_empty()).then(|| json!(req.encoding_formats)))
        }
        "openai.request.service_tier" => opt(req.service_tier.clone()),
        "gen_ai.response.id" => opt(resp.id.clone()),
        "gen_ai.response.model" => opt(resp.model.clone()),
        "gen_ai.response.finish_reasons" => {
            opt((!resp.finish_reasons.is_empty()).then(|| json!(resp.finish_reasons)))
        }
        "gen_ai.usage.input_tokens" => opt(u.input),
        "gen_ai.usage.output_tokens" => opt(u.output),
        "gen_ai.usage.cache_read.input_tokens" => opt(u.cache_read),
        "gen_ai.usage.cache_write.input_tokens" => opt(u.cache_write),
        "gen_ai.usage.reasoning.output_tokens" => opt(u.reasoning),
        "openai.response.service_tier" => opt(resp.service_tier.clone()),
        "openai.response.system_fingerprint" => opt(resp.system_fingerprint.clone()),
        "error.type" => opt(resp.error_type.clone()),
        "tool_calls" => json!(resp
            .tool_calls
            .iter()
            .map(|t| json!([t.id, t.name]))
            .collect::<Vec<_>>()),
        _ => return None,
    })
}

/// Numbers compare by value (`1` == `1.0`), everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        _ => a == b,
    }
}

#[test]
fn fixtures() {
    let files = fixture_files();
    assert!(files.len() >= 30, "fixture corpus went missing: {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let f: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: invalid JSON: {e}", file.display()));
        let name = f["name"].as_str().unwrap();
        assert_eq!(f["method"], "POST", "{name}");
        let route = route_for(&f);
        assert_eq!(
            Some(route.api),
            Api::from_name(f["api"].as_str().unwrap()),
            "{name}: api"
        );

        let mut req = Request::default();
        request(&route, f["request"].to_string().as_bytes(), &mut req);

        let mut resp = Response::default();
        let body = f["response"]["body"].as_str().unwrap();
        let ctype = f["response"]["headers"]["content-type"]
            .as_str()
            .unwrap_or("");
        if ctype.starts_with("text/event-stream") {
            let mut st = StreamState::default();
            for (event, data) in split_sse(body) {
                frame(
                    &route,
                    &Frame::Sse {
                        event: &event,
                        data: &data,
                    },
                    &mut st,
                    &mut resp,
                );
            }
            if f["expect"].get("error.type").is_none_or(Value::is_null) {
                assert!(
                    st.finished,
                    "{name}: stream never reached its terminal event"
                );
            }
        } else {
            response(&route, body.as_bytes(), &mut resp);
        }

        for (key, want) in f["expect"].as_object().unwrap() {
            let got = attribute(key, &route, &req, &resp)
                .unwrap_or_else(|| panic!("{name}: unknown expect key {key}"));
            if !same(&got, want) {
                failures.push(format!("{name}: {key}: want {want}, got {got}"));
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn splitter_joins_data_lines() {
    let ev = split_sse("event: a\ndata: 1\ndata: 2\n\n: comment\n\ndata:[DONE]\n\n");
    assert_eq!(
        ev,
        vec![
            ("a".to_owned(), "1\n2".to_owned()),
            (String::new(), "[DONE]".to_owned())
        ]
    );
}
