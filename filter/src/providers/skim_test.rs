//! The stream fast paths (`skim.rs` readers in the provider files) against the serde path: every streamed
//! event of the fixture corpus, and many mutated variants of each (escapes, surrogates, unexpected types,
//! null, nested arrays, removed members, every member duplicated at any depth, truncation), must leave exactly the same
//! `Response` (usage, finish reasons, ids, model, output characters, captured text), `StreamState` and
//! `FrameOutcome` whichever path reads them, with content capture off and on.

use super::corpus_test::cases;
use crate::call::OutputCapture;
use crate::call::Response;
use crate::providers::{frame, reference, StreamState};
use crate::stream::testutil::Owned;
use crate::stream::Framing;
use crate::stream::{BodyDecoder, ContentEncoding, Limits};
use serde_json::Value;

/// Values every node is replaced with in turn.
const REPLACEMENTS: &[&str] = &[
    "null",
    "5",
    "-1",
    "1.5",
    "1e2",
    "18446744073709551616",
    "\"\"",
    "\"x\"",
    "\"a\\\"b\"",
    "[]",
    "[null]",
    "[[1,[2]],{\"a\":[]}]",
    "{}",
    "{\"a\":[1,{\"b\":2}]}",
    "true",
];

/// Escapes injected at the start of every string value.
const ESCAPES: &[&str] = &[
    "\\u00e9",
    "\\\"",
    "\\\\",
    "\\n\\t\\/",
    "\\ud83c\\udf0d",
    "\\ud83c",
    "\\udf0d",
    "\\ud83cx",
    "\\u0000",
    "é🌍",
];

/// The JSON text of a frame, and a frame with the same headers carrying another text.
fn text_of(f: &Owned) -> Option<String> {
    match f {
        Owned::Sse { data, .. } => Some(data.clone()),
        Owned::Json(j) => String::from_utf8(j.clone()).ok(),
        Owned::Aws { payload, .. } => String::from_utf8(payload.clone()).ok(),
    }
}

fn with_text(f: &Owned, text: String) -> Owned {
    match f {
        Owned::Sse { event, .. } => Owned::Sse {
            event: event.clone(),
            data: text,
        },
        Owned::Json(_) => Owned::Json(text.into_bytes()),
        Owned::Aws {
            message_type,
            event_type,
            exception_type,
            ..
        } => Owned::Aws {
            message_type: message_type.clone(),
            event_type: event_type.clone(),
            exception_type: exception_type.clone(),
            payload: text.into_bytes(),
        },
    }
}

/// Every node of `v` replaced by each of REPLACEMENTS, every object member removed and duplicated.
fn structural(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for r in REPLACEMENTS {
        out.push(serde_json::from_str(r).unwrap());
    }
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                let mut without = m.clone();
                without.remove(k);
                out.push(Value::Object(without));
                for c in structural(child) {
                    let mut with = m.clone();
                    with.insert(k.clone(), c);
                    out.push(Value::Object(with));
                }
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                for c in structural(child) {
                    let mut with = a.clone();
                    with[i] = c;
                    out.push(Value::Array(with));
                }
            }
            let mut twice = a.clone();
            twice.extend(a.iter().cloned());
            out.push(Value::Array(twice));
        }
        _ => {}
    }
    out
}

/// `v` written out with one member of one object (at any depth) duplicated, for every member: serde
/// refuses a duplicated field of its structs, so the fast paths must hand such texts to it.
fn duplicated(v: &Value) -> Vec<String> {
    let js = |v: &Value| serde_json::to_string(v).unwrap();
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            let write = |repl: Option<(&str, &str)>, dup: Option<&str>| {
                let mut parts = Vec::new();
                for (k, c) in m {
                    let text = match repl {
                        Some((rk, rt)) if rk == k => rt.to_owned(),
                        _ => js(c),
                    };
                    if dup == Some(k.as_str()) {
                        parts.push(format!("{}:{}", js(&Value::from(k.as_str())), text));
                    }
                    parts.push(format!("{}:{}", js(&Value::from(k.as_str())), text));
                }
                format!("{{{}}}", parts.join(","))
            };
            for (k, c) in m {
                out.push(write(None, Some(k)));
                for d in duplicated(c) {
                    out.push(write(Some((k, &d)), None));
                }
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                for d in duplicated(c) {
                    let items: Vec<String> = a
                        .iter()
                        .enumerate()
                        .map(|(j, x)| if i == j { d.clone() } else { js(x) })
                        .collect();
                    out.push(format!("[{}]", items.join(",")));
                }
            }
        }
        _ => {}
    }
    out
}

/// Member names the stream readers know (any provider): injected into every object of an event.
const KNOWN_MEMBERS: &[&str] = &[
    "tool_plan",
    "tool_calls",
    "finish_reason",
    "done",
    "done_reason",
    "eval_count",
    "refusal",
    "type",
    "message",
    "content_block",
    "delta",
    "usage",
    "error",
    "text",
    "partial_json",
    "thinking",
    "stop_reason",
    "response",
    "item",
    "code",
    "candidates",
    "promptFeedback",
    "prompt_feedback",
    "usageMetadata",
    "responseId",
    "response_id",
    "modelVersion",
    "content",
    "parts",
    "functionCall",
    "function_call",
    "finishReason",
    "index",
    "promptTokenCount",
    "prompt_token_count",
    "choices",
    "amazon-bedrock-invocationMetrics",
    "bytes",
    "start",
    "stopReason",
    "id",
    "model",
];

/// `v` written out with a member inserted at the front of one object (at any depth): every known name,
/// once as a duplicated null pair, once as an object and once as a string.
fn injected(v: &Value) -> Vec<String> {
    injected_with(v, KNOWN_MEMBERS)
}

/// `injected`, with the names in `names`.
fn injected_with(v: &Value, names: &[&str]) -> Vec<String> {
    let js = |v: &Value| serde_json::to_string(v).unwrap();
    let mut out = Vec::new();
    match v {
        Value::Object(m) => {
            let rest = |repl: Option<(&str, &str)>| {
                m.iter()
                    .map(|(k, c)| {
                        let text = match repl {
                            Some((rk, rt)) if rk == k => rt.to_owned(),
                            _ => js(c),
                        };
                        format!(",{}:{}", js(&Value::from(k.as_str())), text)
                    })
                    .collect::<String>()
            };
            let all = rest(None);
            for k in names {
                for ins in [
                    format!("\"{k}\":null,\"{k}\":null"),
                    format!("\"{k}\":{{\"a\":1}}"),
                    format!("\"{k}\":\"x\""),
                ] {
                    out.push(format!("{{{ins}{all}}}"));
                }
            }
            for (k, c) in m {
                for d in injected_with(c, names) {
                    let body = rest(Some((k, &d)));
                    out.push(format!("{{{}}}", body.strip_prefix(',').unwrap_or("")));
                }
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                for d in injected_with(c, names) {
                    let items: Vec<String> = a
                        .iter()
                        .enumerate()
                        .map(|(j, x)| if i == j { d.clone() } else { js(x) })
                        .collect();
                    out.push(format!("[{}]", items.join(",")));
                }
            }
        }
        _ => {}
    }
    out
}

fn variants(text: &str) -> Vec<String> {
    let mut out = vec![text.to_owned()];
    // Truncated.
    for cut in (1..text.len()).step_by(5) {
        if let Some(t) = text.get(..cut) {
            out.push(t.to_owned());
        }
    }
    out.push(format!("{text} x"));
    out.push(format!(" \t\r\n{text}\n "));
    // Escapes at the start of every string value (`":"` and `["` / `,"` followed by a non-key).
    let bytes = text.as_bytes();
    for (i, w) in bytes.windows(2).enumerate() {
        if w == b":\"" {
            for e in ESCAPES {
                out.push(format!("{}{e}{}", &text[..i + 2], &text[i + 2..]));
            }
        }
    }
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return out;
    };
    if let Value::Object(m) = &v {
        // A duplicated member, written out by hand (a map cannot hold one).
        if let Some((k, first)) = m.iter().next() {
            let rest = text.trim_start().strip_prefix('{').unwrap_or("");
            out.push(format!("{{\"{k}\":{first},{rest}"));
            out.push(format!("{{\"{k}\" : {first} , {rest}"));
        }
    }
    out.extend(duplicated(&v));
    out.extend(injected(&v));
    out.push(serde_json::to_string_pretty(&v).unwrap());
    for s in structural(&v) {
        out.push(serde_json::to_string(&s).unwrap());
    }
    out
}

/// Run `f` through both paths from the same state; they must agree on everything.
fn check(case: &str, route: &crate::call::Route, f: &Owned, st: &StreamState, resp: &Response) {
    let (mut st_fast, mut resp_fast) = (st.clone(), resp.clone());
    let (mut st_slow, mut resp_slow) = (st.clone(), resp.clone());
    let fast = frame(route, &f.frame(), &mut st_fast, &mut resp_fast);
    let slow = reference::frame(route, &f.frame(), &mut st_slow, &mut resp_slow);
    assert_eq!(fast, slow, "{case}: outcome of {f:?}");
    assert_eq!(resp_fast, resp_slow, "{case}: response after {f:?}");
    assert_eq!(st_fast.finished, st_slow.finished, "{case}: state {f:?}");
}

/// Whether the fast path reads frame `f`: the test above must exercise it, not only the fallback.
fn fast_taken(route: &crate::call::Route, f: &Owned) -> bool {
    use crate::call::Api;
    let mut resp = Response::default();
    let Some(text) = text_of(f) else {
        return false;
    };
    match route.api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            super::openai::fast_chunk(&text, &mut resp).is_some()
        }
        Api::AnthropicMessages => super::anthropic::fast_event(&text, &mut resp).is_some(),
        Api::Gemini => super::gemini::fast_chunk(&text, &mut resp).is_some(),
        Api::OpenAiResponses => super::openai_responses::fast_event(&text, &mut resp).is_some(),
        Api::CohereChat => super::cohere::fast_event(&text, &mut resp).is_some(),
        Api::OllamaChat | Api::OllamaGenerate => {
            super::ollama::fast_chunk(&text, &mut resp).is_some()
        }
        Api::BedrockInvoke => invoke_event(f)
            .and_then(|ev| String::from_utf8(ev).ok())
            .is_some_and(|ev| {
                super::bedrock::fast_chunk_bytes(&text).is_some()
                    && super::anthropic::fast_event(&ev, &mut resp).is_some()
            }),
        _ => false,
    }
}

/// The Anthropic event inside a Bedrock InvokeModel `chunk` frame.
fn invoke_event(f: &Owned) -> Option<Vec<u8>> {
    use base64::Engine;
    let Owned::Aws {
        event_type,
        payload,
        ..
    } = f
    else {
        return None;
    };
    if event_type != "chunk" {
        return None;
    }
    let v: Value = serde_json::from_slice(payload).ok()?;
    base64::engine::general_purpose::STANDARD
        .decode(v.get("bytes")?.as_str()?)
        .ok()
}

/// Variants of a frame: of its JSON text, and for a Bedrock InvokeModel chunk also of the event inside.
fn frame_variants(f: &Owned) -> Vec<Owned> {
    use base64::Engine;
    let mut out: Vec<Owned> = text_of(f)
        .map(|t| variants(&t).into_iter().map(|v| with_text(f, v)).collect())
        .unwrap_or_default();
    if let Some(inner) = invoke_event(f).and_then(|e| String::from_utf8(e).ok()) {
        for v in variants(&inner) {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v);
            out.push(with_text(
                f,
                format!("{{\"bytes\":\"{b64}\",\"p\":\"abc\"}}"),
            ));
        }
    }
    out
}

#[test]
fn fast_paths_read_every_event_as_serde_does() {
    use std::collections::BTreeMap;
    // Per API: variants on the fast path, and how many of those contain escapes.
    let mut taken: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut events = 0usize;
    for case in cases() {
        // Whole bodies too where a fast path reads them (OpenAI-shaped responses).
        let whole_fast = matches!(
            case.route.api,
            crate::call::Api::OpenAiChat | crate::call::Api::OpenAiCompletions
        );
        if case.framing == Framing::Whole && !whole_fast {
            continue;
        }
        let mut dec = BodyDecoder::new(ContentEncoding::Identity, case.framing, &Limits::default());
        let mut frames = Vec::new();
        dec.push(&case.body, &mut |f| frames.push(Owned::from(f)));
        dec.finish(&mut |f| frames.push(Owned::from(f)));
        for capture in [false, true] {
            let mut st = StreamState::default();
            let mut resp = Response::default();
            if capture {
                // Small enough that some events overflow it.
                resp.content = OutputCapture::new(64);
            }
            for (i, f) in frames.iter().enumerate() {
                // Mutate the first few events, the last ones (the endings) and every one a fast path takes.
                if i < 6 || i + 4 > frames.len() || fast_taken(&case.route, f) {
                    for v in frame_variants(f) {
                        if fast_taken(&case.route, &v) {
                            let t = taken.entry(format!("{:?}", case.route.api)).or_default();
                            t.0 += 1;
                            let escaped = text_of(&v).is_some_and(|t| t.contains('\\'))
                                || invoke_event(&v).is_some_and(|e| e.contains(&b'\\'));
                            t.1 += usize::from(escaped);
                        }
                        check(&case.name, &case.route, &v, &st, &resp);
                        events += 1;
                    }
                }
                check(&case.name, &case.route, f, &st, &resp);
                super::frame(&case.route, &f.frame(), &mut st, &mut resp);
            }
        }
    }
    eprintln!("{events} variants; on the fast path (all, with escapes): {taken:?}");
    assert!(events > 10_000, "{events} variants");
    for api in [
        "OpenAiChat",
        "AnthropicMessages",
        "Gemini",
        "OpenAiResponses",
        "BedrockInvoke",
        "CohereChat",
        "OllamaChat",
    ] {
        let (all, escaped) = taken.get(api).copied().unwrap_or_default();
        assert!(all > 200 && escaped > 50, "{api}: {all} / {escaped}");
    }
}

/// Members the request skimmer reads (any depth).
const REQUEST_MEMBERS: &[&str] = &[
    "model",
    "stream",
    "temperature",
    "n",
    "seed",
    "stop",
    "max_tokens",
    "service_tier",
    "tools",
    "function",
    "name",
    "response_format",
    "type",
    "messages",
    "role",
    "content",
    "text",
    "prompt",
    "input",
    "dimensions",
];

/// Requests with every member the skimmer reads, in the forms clients send.
const REQUESTS: &[&str] = &[
    r#"{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Dev"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"more"}]},{"role":"user","content":"Hi é🌍","name":"u"},{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"42"}],"temperature":0.7,"top_p":1,"top_k":40,"n":2,"seed":-5,"stop":["a","b"],"frequency_penalty":-0.5,"presence_penalty":0.25,"max_completion_tokens":100,"max_tokens":50,"reasoning_effort":"low","service_tier":"auto","stream":true,"stream_options":{"include_usage":true},"tools":[{"type":"function","function":{"name":"get_weather","description":"d","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}},{"type":"function","function":{"name":"other","arguments":"x"}}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{}}}}"#,
    r#"{"model":"mistral-large","messages":[{"role":"user","content":"x"}],"random_seed":7,"stop":"END","response_format":{"type":"text"}}"#,
    r#"{"model":"gpt-3.5-turbo-instruct","prompt":["Say this","and that",[1,2],null],"max_tokens":7,"temperature":0,"stream":false}"#,
    r#"{"model":"text-embedding-3-small","input":"The food was delicious","dimensions":256,"encoding_format":"float"}"#,
    r#"{"model":"","input":[[1,2,3]],"encoding_format":"base64","messages":null,"tools":null}"#,
    // Integer edges: serde_json reads `-0` and anything out of range as a float.
    r#"{"seed":-0,"n":0,"max_tokens":18446744073709551615,"dimensions":18446744073709551616}"#,
    r#"{"seed":9223372036854775807,"random_seed":-9223372036854775808,"n":-0.0}"#,
    r#"{"seed":9223372036854775808,"random_seed":-9223372036854775809,"max_tokens":1e2}"#,
    r#"{"temperature":-0,"top_p":1e400,"top_k":123456789012345678901234567890,"presence_penalty":0.1e-400}"#,
];

#[test]
fn request_fast_path_reads_every_request_as_serde_does() {
    use crate::call::{Api, Request, Route};
    let mut bodies: Vec<String> = REQUESTS.iter().map(|s| (*s).to_owned()).collect();
    for case in cases() {
        if matches!(
            case.route.api,
            Api::OpenAiChat | Api::OpenAiCompletions | Api::OpenAiEmbeddings
        ) {
            bodies.extend(String::from_utf8(case.request_body).ok());
        }
    }
    let (mut checked, mut fast, mut fast_escaped) = (0usize, 0usize, 0usize);
    for body in &bodies {
        let mut texts = variants(body);
        if let Ok(v) = serde_json::from_str::<Value>(body) {
            texts.extend(injected_with(&v, REQUEST_MEMBERS));
        }
        for text in &texts {
            if super::openai::fast_request_reads(text) {
                fast += 1;
                fast_escaped += usize::from(text.contains('\\'));
            }
            for api in [
                Api::OpenAiChat,
                Api::OpenAiCompletions,
                Api::OpenAiEmbeddings,
            ] {
                let route = Route {
                    api,
                    provider: "openai".to_owned(),
                    path_model: Some("deployment".to_owned()),
                    path_stream: false,
                };
                let base = Request {
                    model: Some("from-before".to_owned()),
                    ..Request::default()
                };
                let (mut a, mut b) = (base.clone(), base);
                super::request(&route, text.as_bytes(), &mut a);
                reference::request(&route, text.as_bytes(), &mut b);
                assert_eq!(a, b, "{api:?}: {text}");
                checked += 1;
            }
        }
    }
    eprintln!("{checked} request readings; on the fast path: {fast} ({fast_escaped} with escapes)");
    assert!(checked > 20_000, "{checked}");
    assert!(
        fast > 5_000 && fast_escaped > 500,
        "{fast} / {fast_escaped}"
    );
}
