//! Runs every fixture under `testenv/fixtures/{anthropic,gemini,vertex,bedrock,cohere,ollama}/` through
//! detect → request → framing → frames/response and checks the `expect` keys that map to `Request` /
//! `Response` fields. The framers here are deliberately tiny stand-ins for `stream::*` (blank-line SSE
//! split, line split, serde array split, pre-built AWS frames); see `testenv/fixtures/README.md`.

use super::*;
use crate::call::{Request, Response};
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::Path;

const DIRS: [&str; 6] = [
    "anthropic",
    "gemini",
    "vertex",
    "bedrock",
    "cohere",
    "ollama",
];

struct Outcome {
    route: Route,
    req: Request,
    resp: Response,
    st: StreamState,
    first_content: Option<usize>,
}

fn header<'a>(headers: &'a Value, name: &str) -> Option<&'a str> {
    headers
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

/// SSE split on blank lines (any line ending); `event:` and `data:` fields only.
fn sse_events(body: &str) -> Vec<(String, String)> {
    let norm = body.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    for block in norm.split("\n\n") {
        let (mut event, mut data) = (String::new(), Vec::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim_start().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
            }
        }
        if !data.is_empty() {
            out.push((event, data.join("\n")));
        }
    }
    out
}

fn run(fx: &Value) -> Outcome {
    let host = fx["host"].as_str().unwrap();
    let path = fx["path"].as_str().unwrap();
    let route = detect(host, path, &[]).unwrap_or_else(|| panic!("no route for {host}{path}"));
    assert_eq!(route.api.name(), fx["api"].as_str().unwrap(), "api");
    assert_eq!(route.provider, fx["provider"].as_str().unwrap(), "provider");

    let mut req = Request::default();
    let body = match &fx["request"] {
        Value::String(s) => s.clone().into_bytes(),
        v => serde_json::to_vec(v).unwrap(),
    };
    request(&route, &body, &mut req);

    let r = &fx["response"];
    let status = r["status"].as_u64().unwrap_or(200);
    let headers = &r["headers"];
    let ct = header(headers, "content-type").unwrap_or("");
    let mut resp = Response::default();
    let mut st = StreamState::default();
    // What the host does with Bedrock's headers (before the body).
    if matches!(route.api, Api::BedrockConverse | Api::BedrockInvoke) {
        let pairs: Vec<(&str, &str)> = headers
            .as_object()
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        let head = crate::codec::headers::Headers::new(crate::codec::headers::serialize(&pairs));
        bedrock::response_headers(&route, &head, &mut resp);
    }

    let mut first_content = None;
    let mut feed = |f: &Frame<'_>, st: &mut StreamState, resp: &mut Response, i: usize| {
        if frame(&route, f, st, resp).content && first_content.is_none() {
            first_content = Some(i);
        }
    };
    if let Some(frames) = r["eventstream"].as_array() {
        for (i, f) in frames.iter().enumerate() {
            let h = &f["headers"];
            let payload = if let Some(ev) = f.get("payload_anthropic_event") {
                let b64 = base64::engine::general_purpose::STANDARD
                    .encode(serde_json::to_vec(ev).unwrap());
                serde_json::to_vec(&json!({ "bytes": b64, "p": "abcdefghij" })).unwrap()
            } else {
                match &f["payload"] {
                    Value::String(s) => s.clone().into_bytes(),
                    v => serde_json::to_vec(v).unwrap(),
                }
            };
            let fr = Frame::Aws {
                message_type: header(h, ":message-type").unwrap_or(""),
                event_type: header(h, ":event-type").unwrap_or(""),
                exception_type: header(h, ":exception-type").unwrap_or(""),
                payload: &payload,
            };
            feed(&fr, &mut st, &mut resp, i);
        }
    } else {
        let body = r["body"].as_str().unwrap();
        let framing = if status >= 400 {
            Framing::Whole
        } else {
            framing(&route, &req, ct)
        };
        match framing {
            Framing::Whole => response(&route, body.as_bytes(), &mut resp),
            Framing::Sse => {
                for (i, (event, data)) in sse_events(body).iter().enumerate() {
                    let f = Frame::Sse { event, data };
                    feed(&f, &mut st, &mut resp, i);
                }
            }
            Framing::Ndjson => {
                for (i, line) in body.lines().filter(|l| !l.trim().is_empty()).enumerate() {
                    feed(&Frame::Json(line.as_bytes()), &mut st, &mut resp, i);
                }
            }
            Framing::JsonArray => {
                let v: Value = serde_json::from_str(body).unwrap();
                let items = match v {
                    Value::Array(a) => a,
                    other => vec![other],
                };
                for (i, item) in items.iter().enumerate() {
                    let bytes = serde_json::to_vec(item).unwrap();
                    feed(&Frame::Json(&bytes), &mut st, &mut resp, i);
                }
            }
            Framing::AwsEventStream => panic!("event-stream fixtures need an `eventstream` list"),
        }
    }
    // What the host does for Bedrock: the response id is the request id header when the body has none.
    if resp.id.is_none() && route.provider == "aws.bedrock" {
        resp.id = header(headers, "x-amzn-requestid").map(str::to_owned);
    }
    Outcome {
        route,
        req,
        resp,
        st,
        first_content,
    }
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map_or(Value::Null, Into::into)
}

fn list(v: &[String]) -> Value {
    if v.is_empty() {
        Value::Null
    } else {
        json!(v)
    }
}

fn actual(o: &Outcome, key: &str) -> Value {
    let (req, resp, u) = (&o.req, &o.resp, &o.resp.usage);
    match key {
        "gen_ai.operation.name" => json!(crate::providers::operation(&o.route)),
        "gen_ai.provider.name" => json!(o.route.provider),
        "gen_ai.request.model" => opt(req.model.clone()),
        "gen_ai.request.stream" => opt(req.stream.then_some(true)),
        "gen_ai.request.max_tokens" => opt(req.max_tokens),
        "gen_ai.request.temperature" => opt(req.temperature),
        "gen_ai.request.top_p" => opt(req.top_p),
        "gen_ai.request.top_k" => opt(req.top_k),
        "gen_ai.request.frequency_penalty" => opt(req.frequency_penalty),
        "gen_ai.request.presence_penalty" => opt(req.presence_penalty),
        "gen_ai.request.seed" => opt(req.seed),
        "gen_ai.request.choice.count" => opt(req.choice_count),
        "gen_ai.request.stop_sequences" => list(&req.stop_sequences),
        "gen_ai.output.type" => opt(req.output_type),
        "gen_ai.response.id" => opt(resp.id.clone()),
        "gen_ai.response.model" => opt(resp.model.clone()),
        "gen_ai.response.finish_reasons" => list(&resp.finish_reasons),
        "gen_ai.usage.input_tokens" => opt(u.input),
        "gen_ai.usage.output_tokens" => opt(u.output),
        "gen_ai.usage.cache_read.input_tokens" => opt(u.cache_read),
        "gen_ai.usage.cache_write.input_tokens" => opt(u.cache_write),
        "gen_ai.usage.reasoning.output_tokens" => opt(u.reasoning),
        "error.type" => opt(resp.error_type.clone()),
        "tool_calls" => json!(resp
            .tool_calls
            .iter()
            .map(|t| [t.id.clone(), t.name.clone()])
            .collect::<Vec<_>>()),
        "tool_names" => json!(req.tool_names),
        "first_content_frame" => opt(o.first_content.map(|i| i as u64)),
        "stream_finished" => json!(o.st.finished),
        other => panic!("unknown expect key {other}"),
    }
}

/// Equal, with numbers compared by value (fixtures write `40` where the field is an f64).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

#[test]
fn provider_fixtures_b() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testenv/fixtures");
    let mut cases = 0;
    let mut failures = Vec::new();
    for dir in DIRS {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for file in files {
            let fx: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
            let o = run(&fx);
            for (key, want) in fx["expect"].as_object().unwrap() {
                let got = actual(&o, key);
                if !same(&got, want) {
                    failures.push(format!("{}: {key}: want {want}, got {got}", file.display()));
                }
            }
            cases += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "fixture mismatches:\n{}",
        failures.join("\n")
    );
    assert!(cases >= 27, "only {cases} fixtures found");
}
