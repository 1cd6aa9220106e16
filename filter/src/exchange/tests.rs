//! The exchange driven natively through the fake proxy (`fake_host_test.rs`): every refusal path, budgets
//! committed on every kind of ending, redaction and block, include_usage injection and stripping, aborted
//! and truncated streams, bodies over the limits. Responses are fed whole, one byte at a time and in random
//! pieces, and must read the same.

use super::fake_host_test::{chunkings, FakeHost, Run};
use super::host::{Counter, Level, Support};
use super::Action;
use crate::budget::ledger::{Clock, Ledger};
use crate::budget::rls::pb::{DescriptorStatus, ProtoDuration, RateLimit, RateLimitResponse};
use crate::budget::{self, BudgetConfig};
use crate::call::Verdict;
use crate::config::Config;
use prost::Message;
use serde_json::{json, Value};

const CHAT: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"max_tokens":50}"#;
const STREAM: &[u8] = br#"{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}],"max_tokens":50}"#;
const JSON_ANSWER: &[u8] = br#"{"id":"chatcmpl-1","object":"chat.completion","model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#;

/// An OpenAI stream: a role chunk, two text chunks, the finish reason, the usage-only chunk and `[DONE]`.
fn sse(usage: bool, done: bool) -> Vec<u8> {
    let chunk = |rest: &str| {
        format!("data: {{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",{rest}}}\n\n")
    };
    let mut s = String::new();
    s += &chunk(
        r#""choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]"#,
    );
    s += &chunk(r#""choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]"#);
    s += &chunk(r#""choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]"#);
    s += &chunk(r#""choices":[{"index":0,"delta":{},"finish_reason":"stop"}]"#);
    if usage {
        s += &chunk(
            r#""choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}"#,
        );
    }
    if done {
        s += "data: [DONE]\n\n";
    }
    s.into_bytes()
}

/// The usage-only chunk of `sse(true, _)`.
fn usage_chunk() -> Vec<u8> {
    let all = sse(true, false);
    let without = sse(false, false);
    all[without.len()..].to_vec()
}

fn headers<'a>(host: &'a str, path: &'a str, len: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "POST"),
        (":authority", host),
        (":path", path),
        ("content-type", "application/json"),
        ("content-length", len),
    ]
}

/// A chat request to OpenAI with `extra` headers, `body` in one piece.
fn openai(run: &mut Run, body: &[u8], extra: &[(&str, &str)]) {
    let len = body.len().to_string();
    let mut h = headers("api.openai.com", "/v1/chat/completions", &len);
    h.extend_from_slice(extra);
    run.request(&h, &[body]);
}

const ERROR_BODY: &[u8] =
    br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded"}}"#;

const JSON_HEAD: &[(&str, &str)] = &[(":status", "200"), ("content-type", "application/json")];
const SSE_HEAD: &[(&str, &str)] = &[(":status", "200"), ("content-type", "text/event-stream")];

fn body_json(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

fn config(v: Value) -> String {
    v.to_string()
}

/// Tokens left in the budget of `tenant` for `model` (the first rule that applies).
fn remaining(run: &Run, cfg: &BudgetConfig, tenant: &str, model: &str) -> Option<u64> {
    let specs = budget::counters(cfg, tenant, Some(model));
    let ledger = Ledger {
        store: &run.host.store,
        holder: 42,
        max_keys: cfg.max_tenants,
    };
    let clock = Clock {
        now_s: run.host.now_ns / 1_000_000_000,
        ttl_s: cfg.reservation_ttl_s,
    };
    ledger.peek(specs.first()?, &clock).remaining_tokens
}

fn budgets(tokens: u64, extra: Value) -> Value {
    let mut b = json!({"rules": [{"tenant": "*", "window": "1h", "tokens": tokens}]});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
        b.extend(extra.clone());
    }
    json!({"tenant": {"header": "x-tenant-id", "default": "anonymous"}, "budgets": b})
}

fn budget_config(v: &Value) -> BudgetConfig {
    Config::parse(v.to_string().as_bytes())
        .unwrap()
        .budgets
        .unwrap()
}

#[test]
fn a_call_reads_the_same_whatever_the_chunking() {
    for (answer, head) in [
        (JSON_ANSWER.to_vec(), JSON_HEAD),
        (sse(true, true), SSE_HEAD),
    ] {
        let mut seen = None;
        for (how, pieces) in chunkings(&answer) {
            let mut run = Run::new(r#"{"otlp":{"cluster":"otel"}}"#);
            openai(&mut run, if head == SSE_HEAD { STREAM } else { CHAT }, &[]);
            assert!(run.forwarded(), "{how}");
            run.response(head, &pieces);
            let call = run.log().clone();
            let u = call.response.usage;
            assert_eq!(
                (u.input, u.output),
                (Some(9), Some(if head == SSE_HEAD { 2 } else { 12 })),
                "{how}"
            );
            assert_eq!(call.response.finish_reasons, ["stop"], "{how}");
            assert!(
                !call.response.incomplete && call.transport_error.is_none(),
                "{how}"
            );
            // Nothing of the response changed on the way (no usage-only chunk injected by tollgate here:
            // the stream request asked nothing and tollgate's injection is covered below).
            if head == JSON_HEAD {
                assert_eq!(run.host.client_body, answer, "{how}");
            }
            assert_eq!(run.host.counter(Counter::Calls), 1);
            assert_eq!(run.host.counter(Counter::TokensInput), 9);
            assert_eq!(run.host.spans.len(), 1, "{how}: sampled and exported");
            assert!(call.first_chunk_ns.is_some() == (head == SSE_HEAD), "{how}");
            let mut call = call;
            call.end_ns = 0;
            call.start_ns = 0;
            call.first_chunk_ns = None;
            call.first_content_ns = None;
            match &seen {
                None => seen = Some(call),
                Some(first) => assert_eq!(&call, first, "{how}"),
            }
        }
    }
}

#[test]
fn traffic_that_is_no_llm_call_passes_untouched() {
    let mut run = Run::new("{}");
    let a = run.request_headers(
        &[
            (":method", "GET"),
            (":authority", "api.openai.com"),
            (":path", "/v1/models"),
        ],
        true,
    );
    assert_eq!(a, Action::Continue);
    assert_eq!(run.host.upstream_header("traceparent"), None);
    run.response(JSON_HEAD, &[b"{}"]);
    run.log();
    assert!(run.host.counters.is_empty() && run.host.spans.is_empty());
    let mut run = Run::new("{}");
    run.request(&headers("example.com", "/upload", "2"), &[b"{}"]);
    assert!(run.host.counters.is_empty());
}

#[test]
fn the_provider_gets_the_gateway_span_as_parent() {
    let mut run = Run::new("{}");
    openai(
        &mut run,
        CHAT,
        &[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    );
    let tp = run.host.upstream_header("traceparent").unwrap().to_owned();
    assert!(
        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{tp}"
    );
    assert!(
        !tp.contains("00f067aa0ba902b7"),
        "the gateway span is the new parent: {tp}"
    );
    // Replaced, not added beside the app's.
    let n = run
        .host
        .upstream_headers
        .as_ref()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == "traceparent")
        .count();
    assert_eq!(n, 1);
}

#[test]
fn include_usage_is_asked_for_and_its_chunk_removed() {
    for (how, pieces) in chunkings(&sse(true, true)) {
        let mut run = Run::new("{}");
        openai(&mut run, STREAM, &[]);
        // The body's new length is unknown when the headers leave: Envoy frames it.
        assert_eq!(run.host.upstream_header("content-length"), None, "{how}");
        let sent = body_json(&run.host.upstream_body);
        assert_eq!(
            sent["stream_options"],
            json!({"include_usage": true}),
            "{how}"
        );
        assert_eq!(sent["messages"], body_json(STREAM)["messages"]);
        run.response(
            &[
                (":status", "200"),
                ("content-type", "text/event-stream"),
                ("content-length", "9999"),
            ],
            &pieces,
        );
        assert_eq!(run.host.response_header("content-length"), None, "{how}");
        let call = run.log().clone();
        assert!(call.request.include_usage_injected);
        assert_eq!(
            (call.response.usage.input, call.response.usage.output),
            (Some(9), Some(2)),
            "{how}"
        );
        // The client gets the stream it asked for: without the usage-only chunk, every other byte as sent.
        let want: Vec<u8> = {
            let all = sse(true, true);
            let cut = sse(false, false).len();
            [&all[..cut], &all[cut + usage_chunk().len()..]].concat()
        };
        assert_eq!(
            String::from_utf8_lossy(&run.host.client_body),
            String::from_utf8_lossy(&want),
            "{how}"
        );
    }
}

#[test]
fn include_usage_is_left_alone_where_it_is_not_ours_to_ask() {
    // A server that reports usage anyway (Groq), a request that already asks, and the option turned off.
    let asks =
        br#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    for (cfg, host, path, body) in [
        ("{}", "api.groq.com", "/openai/v1/chat/completions", STREAM),
        (
            "{}",
            "api.openai.com",
            "/v1/chat/completions",
            asks.as_slice(),
        ),
        (
            r#"{"include_usage":false}"#,
            "api.openai.com",
            "/v1/chat/completions",
            STREAM,
        ),
    ] {
        let mut run = Run::new(cfg);
        let len = body.len().to_string();
        run.request(&headers(host, path, &len), &[body]);
        assert_eq!(run.host.upstream_body, body, "{host} {cfg}");
        run.response(SSE_HEAD, &[&sse(true, true)]);
        // The usage chunk is the client's: it asked for it, or the server sends it anyway.
        assert_eq!(run.host.client_body, sse(true, true), "{host} {cfg}");
        assert!(!run.log().request.include_usage_injected);
    }
}

#[test]
fn a_budget_refusal_never_reaches_the_provider() {
    let cfg = budgets(10, json!({}));
    let mut run = Run::new(&config(cfg));
    openai(&mut run, CHAT, &[("x-tenant-id", "team-a")]);
    assert!(run.refused && !run.forwarded());
    assert!(
        run.host.upstream_headers.is_none(),
        "held headers never left"
    );
    let reply = &run.host.replies[0];
    assert_eq!(reply.status, 429);
    assert!(reply.headers.iter().any(|(k, _)| k == "retry-after"));
    assert_eq!(
        body_json(&reply.body)["error"]["code"],
        "token_budget_exceeded"
    );
    assert_eq!(run.host.counter(Counter::BudgetDenied), 1);
    assert_eq!(run.host.counter(Counter::HoldRequests), 1);
    assert_eq!(run.host.counter(Counter::RefusalsAfterForward), 0);
    let call = run.log().clone();
    assert_eq!(call.budget.unwrap().verdict, Verdict::Denied);
    assert_eq!(call.http_status, Some(429));
    assert_eq!(run.host.counter(Counter::Calls), 1);
}

#[test]
fn a_budget_commits_the_exact_usage_on_every_kind_of_ending() {
    let v = budgets(1000, json!({}));
    let b = budget_config(&v);
    let estimate = CHAT.len() as u64 + 16;
    // (ending, what the call used by its own record)
    type Ending = fn(&mut Run);
    let endings: [(&str, Ending); 6] = [
        ("answered", |r| r.response(JSON_HEAD, &[JSON_ANSWER])),
        ("streamed", |r| r.response(SSE_HEAD, &[&sse(true, true)])),
        ("provider error", |r| {
            r.response(
                &[(":status", "429"), ("content-type", "application/json")],
                &[ERROR_BODY],
            )
        }),
        ("client abort mid-stream", |r| {
            r.response_headers(SSE_HEAD, false);
            // Cut inside the finish-reason chunk, after the text.
            let s = sse(false, false);
            r.response_chunk(&s[..s.len() - 20], false);
        }),
        ("upstream reset", |_| {}),
        ("truncated stream", |r| {
            r.response(SSE_HEAD, &[&sse(true, false)])
        }),
    ];
    for (ending, end) in endings {
        let mut run = Run::new(&config(v.clone()));
        openai(&mut run, CHAT, &[("x-tenant-id", "team-a")]);
        assert!(run.forwarded(), "{ending}");
        // While the call runs, its worst case is reserved.
        assert_eq!(
            remaining(&run, &b, "team-a", "gpt-4o-mini"),
            Some(1000 - estimate - 50),
            "{ending}"
        );
        end(&mut run);
        let call = run.log().clone();
        let used = call.response.usage.input.unwrap_or(0) + call.response.usage.output.unwrap_or(0);
        let want = match ending {
            "answered" => 21,
            "streamed" | "truncated stream" => 11,
            // An error the provider answered without usage charges nothing.
            "provider error" => 0,
            // Nothing came back: the input it was sent is charged, as estimated.
            "upstream reset" => estimate,
            // Estimated from the text that arrived.
            _ => {
                assert!(call.usage_estimated, "{ending}");
                used
            }
        };
        if ending != "upstream reset" && ending != "provider error" {
            assert_eq!(used, want, "{ending}");
        }
        assert_eq!(
            remaining(&run, &b, "team-a", "gpt-4o-mini"),
            Some(1000 - want),
            "{ending}"
        );
        assert_eq!(run.host.counter(Counter::BudgetErrors), 0, "{ending}");
    }
}

#[test]
fn a_budget_clamps_what_it_cannot_reserve_and_says_what_is_left() {
    let estimate = CHAT.len() as u64 + 16;
    // Room for the input and 20 output tokens: the request's 50 are lowered to 20.
    let v = budgets(estimate + 20, json!({"clamp_max_tokens": true}));
    let mut run = Run::new(&config(v));
    openai(&mut run, CHAT, &[("x-tenant-id", "team-a")]);
    assert!(run.forwarded());
    let sent = body_json(&run.host.upstream_body);
    // The member the body has is rewritten (OpenAI's `max_completion_tokens` is added only to a body
    // that declares none), every other byte kept.
    assert_eq!(sent["max_tokens"], json!(20));
    assert_eq!(sent["messages"], body_json(CHAT)["messages"]);
    assert_eq!(
        run.host.upstream_header("content-length"),
        Some(run.host.upstream_body.len().to_string().as_str()),
        "the held headers leave with the new length"
    );
    run.response(JSON_HEAD, &[JSON_ANSWER]);
    assert_eq!(
        run.host.response_header("x-ratelimit-remaining-tokens"),
        Some("0")
    );
    let call = run.log().clone();
    assert_eq!(call.budget.unwrap().verdict, Verdict::Clamped);
    assert_eq!(call.request.max_tokens, Some(20));
    assert_eq!(run.host.counter(Counter::BudgetClamped), 1);
}

#[test]
fn a_store_that_refuses_every_write_refuses_the_request() {
    let v = budgets(1000, json!({}));
    let host = FakeHost {
        store: super::fake_host_test::MemStore {
            refuse_writes: true,
            ..Default::default()
        },
        ..FakeHost::default()
    };
    let mut run = Run::with(Config::parse(config(v).as_bytes()).unwrap(), host);
    openai(&mut run, CHAT, &[]);
    assert!(run.refused && !run.forwarded());
    assert_eq!(run.host.counter(Counter::BudgetErrors), 1);
    assert!(run
        .host
        .logs
        .iter()
        .any(|(l, m)| *l == Level::Warn && m.contains("contention")));
}

fn rls_config(failure_mode: &str) -> String {
    config(json!({
        "tenant": {"header": "x-tenant-id", "default": "anonymous"},
        "budgets": {
            "backend": "rls",
            "rules": [{"tenant": "*", "window": "1h", "tokens": 1000}],
            "rls": {"cluster": "ratelimit", "domain": "d", "failure_mode": failure_mode}
        }
    }))
}

fn rls_answer(code: i32, remaining: u32) -> Vec<u8> {
    RateLimitResponse {
        overall_code: code,
        statuses: vec![DescriptorStatus {
            code,
            current_limit: Some(RateLimit {
                name: String::new(),
                requests_per_unit: 1000,
                unit: 3,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(ProtoDuration {
                seconds: 42,
                nanos: 0,
            }),
        }],
    }
    .encode_to_vec()
}

#[test]
fn the_rate_limit_service_admits_refuses_and_fails_open_or_closed() {
    // Admitted: the request waits, paused, then goes on; the usage is debited after the response.
    let mut run = Run::new(&rls_config("closed"));
    openai(&mut run, CHAT, &[("x-tenant-id", "team-a")]);
    assert!(run.waiting && !run.forwarded());
    assert_eq!(run.host.grpc.len(), 1);
    assert_eq!(run.host.grpc[0].cluster, "ratelimit");
    run.grpc_answer(1, 0, &rls_answer(1, 700));
    assert!(run.forwarded() && run.host.resumed == 1);
    assert_eq!(run.host.upstream_body, CHAT);
    run.response(JSON_HEAD, &[JSON_ANSWER]);
    assert_eq!(
        run.host.response_header("x-ratelimit-remaining-tokens"),
        Some("700")
    );
    run.log();
    assert_eq!(run.host.counter(Counter::RlsChecks), 1);
    assert_eq!(
        run.host.counter(Counter::RlsDebits),
        1,
        "the usage less the admission hit"
    );
    assert_eq!(run.host.grpc.len(), 2);

    // Over the limit: 429 with the service's reset, never forwarded; nothing to debit.
    let mut run = Run::new(&rls_config("closed"));
    openai(&mut run, CHAT, &[]);
    run.grpc_answer(1, 0, &rls_answer(2, 0));
    assert!(run.refused && !run.forwarded());
    let reply = &run.host.replies[0];
    assert_eq!(reply.status, 429);
    // The service's 42 s, rounded up past the second it is in.
    assert!(reply.headers.contains(&("retry-after".into(), "43".into())));
    assert_eq!(run.host.counter(Counter::RlsDenied), 1);
    assert_eq!(run.log().budget.as_ref().unwrap().verdict, Verdict::Denied);

    // An answer to someone else's call changes nothing.
    let mut run = Run::new(&rls_config("closed"));
    openai(&mut run, CHAT, &[]);
    run.grpc_answer(99, 0, &rls_answer(2, 0));
    assert!(run.waiting && run.host.replies.is_empty());

    // The service unreachable (gRPC UNAVAILABLE): closed refuses with retry-after 1, open admits.
    for (mode, refused) in [("closed", true), ("open", false)] {
        let mut run = Run::new(&rls_config(mode));
        openai(&mut run, CHAT, &[]);
        run.grpc_answer(1, 14, b"");
        assert_eq!(run.refused, refused, "{mode}");
        assert_eq!(run.forwarded(), !refused, "{mode}");
        if refused {
            assert!(run.host.replies[0]
                .headers
                .contains(&("retry-after".into(), "1".into())));
            assert_eq!(run.host.counter(Counter::RlsFailedClosed), 1);
        } else {
            assert_eq!(run.host.counter(Counter::RlsFailedOpen), 1);
        }
    }

    // The proxy refuses to start the call: decided at once by the failure mode.
    let host = FakeHost {
        refuse_grpc: true,
        ..FakeHost::default()
    };
    let mut run = Run::with(
        Config::parse(rls_config("closed").as_bytes()).unwrap(),
        host,
    );
    openai(&mut run, CHAT, &[]);
    assert!(run.refused && !run.waiting);
    assert_eq!(run.host.counter(Counter::RlsFailedClosed), 1);
}

const SECRET: &[u8] =
    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"mail jane@example.com"}]}"#;

#[test]
fn a_block_rule_refuses_what_it_matches_in_the_api_dialect() {
    let mut run = Run::new(r#"{"redaction":{"block":["email"]}}"#);
    let len = SECRET.len().to_string();
    run.request(
        &headers("api.anthropic.com", "/v1/messages", &len),
        &[SECRET],
    );
    assert!(run.refused && run.host.upstream_headers.is_none());
    let reply = &run.host.replies[0];
    assert_eq!(reply.status, 400);
    let body = body_json(&reply.body);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("email") && !message.contains("jane"),
        "{message}"
    );
    assert_eq!(run.host.counter(Counter::RedactionBlocked), 1);
    let call = run.log().clone();
    assert_eq!(call.response.error_type.as_deref(), Some("content_blocked"));
    assert_eq!(run.host.detections.get("email"), Some(&1));
}

#[test]
fn egress_redaction_rewrites_the_body_and_its_length() {
    for (how, pieces) in chunkings(SECRET) {
        let mut run = Run::new(r#"{"redaction":{"egress":true}}"#);
        let len = SECRET.len().to_string();
        run.request(
            &headers("api.openai.com", "/v1/chat/completions", &len),
            &pieces,
        );
        assert!(run.forwarded(), "{how}");
        let sent = String::from_utf8(run.host.upstream_body.clone()).unwrap();
        assert!(
            sent.contains("[REDACTED:EMAIL]") && !sent.contains("jane"),
            "{how}: {sent}"
        );
        // Egress redaction alone never refuses a plain body, so its headers were not held: Envoy frames
        // the new body.
        assert_eq!(run.host.upstream_header("content-length"), None, "{how}");
        assert_eq!(
            run.host.counter(Counter::RedactionEgressRewritten),
            1,
            "{how}"
        );
    }
    // Held (a block rule also applies): the headers leave with the new length.
    let mut run = Run::new(r#"{"redaction":{"egress":true,"block":["openai_key"]}}"#);
    let len = SECRET.len().to_string();
    run.request(
        &headers("api.openai.com", "/v1/chat/completions", &len),
        &[SECRET],
    );
    let n = run.host.upstream_body.len().to_string();
    assert_eq!(run.host.upstream_header("content-length"), Some(n.as_str()));
}

#[test]
fn egress_redaction_refuses_what_it_cannot_rewrite() {
    use std::io::Write;
    // A compressed body: read from a decoded copy, never rewritten, so a finding refuses it.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(SECRET).unwrap();
    let gz = gz.finish().unwrap();
    let mut run = Run::new(r#"{"redaction":{"egress":true}}"#);
    let len = gz.len().to_string();
    let mut h = headers("api.openai.com", "/v1/chat/completions", &len);
    h.push(("content-encoding", "gzip"));
    run.request(&h, &[&gz]);
    assert!(
        run.refused && run.host.upstream_headers.is_none(),
        "held, then refused"
    );
    assert_eq!(run.host.replies[0].status, 400);
    assert_eq!(run.host.counter(Counter::RedactionBlocked), 1);

    // A signed body: refused by default, forwarded unchanged with `signed_requests: forward`.
    let auth = "AWS4-HMAC-SHA256 Credential=AKIA/20251205/us-east-1/bedrock/aws4_request, \
                SignedHeaders=content-type;host;x-amz-date, Signature=abc";
    let body = br#"{"messages":[{"role":"user","content":[{"text":"mail jane@example.com"}]}]}"#;
    let len = body.len().to_string();
    let mut h = headers(
        "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/anthropic.claude-3-haiku/converse",
        &len,
    );
    h.push(("authorization", auth));
    for (policy, refused) in [("refuse", true), ("forward", false)] {
        let cfg = format!(r#"{{"redaction":{{"egress":true}},"signed_requests":"{policy}"}}"#);
        let mut run = Run::new(&cfg);
        run.request(&h, &[body]);
        assert_eq!(run.refused, refused, "{policy}");
        if refused {
            let reply = &run.host.replies[0];
            assert_eq!(reply.status, 400);
            assert!(reply
                .headers
                .contains(&("x-amzn-errortype".into(), "ValidationException".into())));
            assert_eq!(run.host.counter(Counter::SignedRefused), 1);
        } else {
            assert_eq!(run.host.upstream_body, body.as_slice());
            assert_eq!(run.host.counter(Counter::SignedUnmodified), 1);
            assert_eq!(run.log().request.rewrite_skipped, Some("signed"));
        }
    }

    // A redacted body longer than the buffer may hold.
    let long = format!(
        r#"{{"messages":[{{"role":"user","content":"{}"}}]}}"#,
        "a@b.co ".repeat(40)
    );
    let cfg = format!(
        r#"{{"redaction":{{"egress":true}},"max_request_body":{}}}"#,
        long.len() + 10
    );
    let mut run = Run::new(&cfg);
    let len = long.len().to_string();
    run.request(
        &headers("api.openai.com", "/v1/chat/completions", &len),
        &[long.as_bytes()],
    );
    assert!(run.refused);
    assert!(String::from_utf8_lossy(&run.host.replies[0].body).contains("buffer limit"));
}

#[test]
fn a_signature_keeps_what_it_covers() {
    let auth = "AWS4-HMAC-SHA256 Credential=AKIA/20251205/us-east-1/bedrock/aws4_request, \
                SignedHeaders=accept-encoding;content-type;host;traceparent;x-amz-date, Signature=abc";
    let body = br#"{"messages":[]}"#;
    let len = body.len().to_string();
    let mut h = headers(
        "bedrock-runtime.us-east-1.amazonaws.com",
        "/model/anthropic.claude-3-haiku/converse",
        &len,
    );
    h.push(("authorization", auth));
    h.push((
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    h.push(("accept-encoding", "gzip"));
    let mut run = Run::new(r#"{"redaction":{"output":true}}"#);
    run.request(&h, &[body]);
    assert_eq!(
        run.host.upstream_header("traceparent"),
        Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    );
    assert_eq!(run.host.upstream_header("accept-encoding"), Some("gzip"));
    assert!(run.log().request.signed);
}

#[test]
fn output_redaction_edits_streams_and_whole_bodies() {
    let secret_stream = String::from_utf8(sse(true, true))
        .unwrap()
        .replace("\"Hel\"", "\"mail jane@example.com \"")
        .into_bytes();
    for (how, pieces) in chunkings(&secret_stream) {
        let mut run = Run::new(r#"{"redaction":{"output":true},"include_usage":false}"#);
        let mut h = headers("api.openai.com", "/v1/chat/completions", "0");
        let len = STREAM.len().to_string();
        h[4].1 = &len;
        h.push(("accept-encoding", "gzip"));
        run.request(&h, &[STREAM]);
        assert_eq!(
            run.host.upstream_header("accept-encoding"),
            None,
            "identity responses only"
        );
        run.response(SSE_HEAD, &pieces);
        let client = String::from_utf8(run.host.client_body.clone()).unwrap();
        assert!(
            client.contains("[REDACTED:EMAIL]") && !client.contains("jane"),
            "{how}: {client}"
        );
        assert!(client.ends_with("data: [DONE]\n\n"), "{how}");
        run.log();
        assert_eq!(run.host.detections.get("email"), Some(&1), "{how}");
    }
    let answer = String::from_utf8_lossy(JSON_ANSWER)
        .replace("Hello", "mail jane@example.com")
        .into_bytes();
    for (how, pieces) in chunkings(&answer) {
        let mut run = Run::new(r#"{"redaction":{"output":true}}"#);
        openai(&mut run, CHAT, &[]);
        run.response_headers(JSON_HEAD, false);
        for (i, p) in pieces.iter().enumerate() {
            let last = i + 1 == pieces.len();
            assert_eq!(
                run.response_chunk(p, last),
                if last {
                    Action::Continue
                } else {
                    Action::Pause
                },
                "{how}: a whole body is held until it is complete"
            );
        }
        let client = String::from_utf8(run.host.client_body.clone()).unwrap();
        assert!(
            client.contains("[REDACTED:EMAIL]") && !client.contains("jane"),
            "{how}"
        );
        assert_eq!(run.log().response.usage.output, Some(12), "{how}");
    }
    // A compressed answer cannot be edited: counted, passed as is.
    let mut run = Run::new(r#"{"redaction":{"output":true}}"#);
    openai(&mut run, CHAT, &[]);
    run.response(
        &[
            (":status", "200"),
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        &[b"\x0b"],
    );
    assert_eq!(run.host.counter(Counter::RedactionOutputUnsupported), 1);
}

#[test]
fn a_body_too_large_to_hold_is_decided_from_its_size() {
    let budget = budgets(10_000_000, json!({}));
    // Declared larger than max_request_body: never held, never read.
    let mut cfg = budget.clone();
    cfg["max_request_body"] = json!(32);
    let mut run = Run::new(&config(cfg.clone()));
    let len = CHAT.len().to_string();
    let a = run.request_headers(
        &headers("api.openai.com", "/v1/chat/completions", &len),
        false,
    );
    assert_eq!(a, Action::Continue);
    run.request_chunk(CHAT, true);
    assert!(run.forwarded());
    assert_eq!(run.host.counter(Counter::RequestOversized), 1);
    assert_eq!(run.host.counter(Counter::CallsUninspected), 1);
    let call = run.log().clone();
    assert_eq!(call.request.uninspected, Some("too_large"));
    assert!(call.request.model.is_none(), "not read");
    // It was reserved by its size at the default output cap.
    assert_eq!(call.budget.unwrap().verdict, Verdict::Allowed);

    // `oversized_requests: refuse`: 413 from the headers, in the API's dialect.
    cfg["oversized_requests"] = json!("refuse");
    let mut run = Run::new(&config(cfg));
    let a = run.request_headers(&headers("api.anthropic.com", "/v1/messages", &len), false);
    assert_eq!(a, Action::Pause);
    assert!(run.refused && run.host.upstream_headers.is_none());
    assert_eq!(run.host.replies[0].status, 413);
    assert_eq!(
        body_json(&run.host.replies[0].body)["error"]["type"],
        "request_too_large"
    );
    assert_eq!(run.host.counter(Counter::RequestOversizedRefused), 1);

    // No declared length and not whole in its first chunk: passed on, reserved by its size (at least
    // `max_request_body`: more may follow).
    let mut run = Run::new(&config(budget));
    run.request_headers(
        &[
            (":method", "POST"),
            (":authority", "api.openai.com"),
            (":path", "/v1/chat/completions"),
        ],
        false,
    );
    let (a, b) = CHAT.split_at(10);
    assert_eq!(run.request_chunk(a, false), Action::Continue);
    run.request_chunk(b, true);
    assert_eq!(run.host.upstream_body, CHAT);
    assert_eq!(run.log().request.uninspected, Some("undeclared_length"));
}

#[test]
fn aborted_and_truncated_streams_keep_what_their_complete_events_said() {
    for (how, pieces) in chunkings(&sse(true, false)) {
        // Truncated: the stream ended without `[DONE]`.
        let mut run = Run::new(r#"{"include_usage":false}"#);
        openai(&mut run, STREAM, &[]);
        run.response(SSE_HEAD, &pieces);
        let call = run.log().clone();
        assert!(call.response.incomplete, "{how}");
        assert_eq!(call.transport_error, None);
        assert_eq!(call.response.usage.output, Some(2), "{how}");
    }
    // Aborted mid-event: the events before the cut count, the cut one does not.
    let body = sse(true, true);
    let cut = sse(false, false).len() + 20;
    let mut run = Run::new(r#"{"include_usage":false}"#);
    openai(&mut run, STREAM, &[]);
    run.response_headers(SSE_HEAD, false);
    for b in body[..cut].chunks(1) {
        run.response_chunk(b, false);
    }
    let call = run.log().clone();
    assert_eq!(call.transport_error, Some("stream_interrupted"));
    assert!(call.response.incomplete);
    assert_eq!(call.response.finish_reasons, ["stop"]);
    assert_eq!(
        call.response.usage.input,
        Some(1),
        "estimated: the usage chunk was cut"
    );
    assert!(call.usage_estimated);
    // No response at all.
    let mut run = Run::new("{}");
    openai(&mut run, CHAT, &[]);
    let call = run.log().clone();
    assert_eq!(call.transport_error, Some("no_response"));
    assert_eq!(run.host.counter(Counter::CallsFailed), 1);
}

#[test]
fn a_proxy_that_cannot_hold_headers_gets_the_decisions_after_forwarding() {
    let cfg = config(budgets(10, json!({})));
    // Known not to work: not held, counted; the refusal comes after the headers left.
    let host = FakeHost {
        support: Support::Unavailable,
        ..FakeHost::default()
    };
    let mut run = Run::with(Config::parse(cfg.as_bytes()).unwrap(), host);
    openai(&mut run, CHAT, &[]);
    assert!(run.refused && run.host.upstream_headers.is_some());
    assert_eq!(run.host.counter(Counter::HoldUnavailable), 1);
    assert_eq!(run.host.counter(Counter::HoldRequests), 0);
    assert_eq!(run.host.counter(Counter::RefusalsAfterForward), 1);
    // Not known yet: held and noted; the host found it stuck and released it before its body came.
    let host = FakeHost {
        support: Support::Unknown,
        hold_released: true,
        ..FakeHost::default()
    };
    let mut run = Run::with(Config::parse(cfg.as_bytes()).unwrap(), host);
    let len = CHAT.len().to_string();
    assert_eq!(
        run.request_headers(
            &headers("api.openai.com", "/v1/chat/completions", &len),
            false
        ),
        Action::Pause
    );
    assert!(run.host.noted);
    run.request_chunk(CHAT, true);
    assert!(run.refused);
    assert_eq!(run.host.counter(Counter::RefusalsAfterForward), 1);
    // Not known yet and the body came: still held, refused before anything left.
    let host = FakeHost {
        support: Support::Unknown,
        ..FakeHost::default()
    };
    let mut run = Run::with(Config::parse(cfg.as_bytes()).unwrap(), host);
    openai(&mut run, CHAT, &[]);
    assert!(run.refused && run.host.upstream_headers.is_none());
    assert_eq!(run.host.counter(Counter::RefusalsAfterForward), 0);
}

#[test]
fn envoys_413_to_a_held_body_is_counted_and_logged_once() {
    let cfg = Config::parse(config(budgets(1000, json!({}))).as_bytes()).unwrap();
    let mut host = FakeHost::default();
    host.attributes.insert(
        "response_code_details".into(),
        b"request_payload_too_large".to_vec(),
    );
    // Twice under the same configuration (the same host): counted twice, logged once.
    for _ in 0..2 {
        let mut run = Run::with(cfg.clone(), host);
        let len = CHAT.len().to_string();
        run.request_headers(
            &headers("api.openai.com", "/v1/chat/completions", &len),
            false,
        );
        // The first chunk is buffered, then Envoy's buffer overflows and Envoy answers itself.
        assert_eq!(run.request_chunk(&CHAT[..10], false), Action::Pause);
        run.response(
            &[(":status", "413"), ("content-type", "text/plain")],
            &[b"Payload Too Large"],
        );
        run.log();
        host = run.host;
    }
    assert_eq!(host.counter(Counter::RequestBufferOverflow), 2);
    assert_eq!(host.logs.len(), 1);
    assert_eq!(host.logs[0].0, Level::Warn);
    // A 413 from the provider itself is not Envoy's buffer.
    host.attributes.clear();
    let mut run = Run::with(cfg, host);
    openai(&mut run, CHAT, &[]);
    run.response(
        &[(":status", "413"), ("content-type", "application/json")],
        &[b"{}"],
    );
    run.log();
    assert_eq!(run.host.counter(Counter::RequestBufferOverflow), 2);
}

#[test]
fn tenants_come_from_the_configured_source() {
    // mTLS identity: the peer certificate's URI SAN, through the template.
    let cfg = r#"{"tenant":{"peer_identity":"{namespace}","default":"none"}}"#;
    let mut host = FakeHost::default();
    host.attributes.insert(
        "peer_uri_san".into(),
        b"spiffe://cluster.local/ns/team-a/sa/client".to_vec(),
    );
    let mut run = Run::with(Config::parse(cfg.as_bytes()).unwrap(), host);
    openai(&mut run, CHAT, &[]);
    assert_eq!(run.log().tenant.as_deref(), Some("team-a"));
    // No certificate (plaintext): the default.
    let mut run = Run::new(cfg);
    openai(&mut run, CHAT, &[]);
    assert_eq!(run.log().tenant.as_deref(), Some("none"));
    // A header; an invalid one falls back to the default, counted.
    let cfg = r#"{"tenant":{"header":"x-tenant-id","default":"anonymous"}}"#;
    let mut run = Run::new(cfg);
    openai(&mut run, CHAT, &[("x-tenant-id", "team-b")]);
    assert_eq!(run.log().tenant.as_deref(), Some("team-b"));
    let mut run = Run::new(cfg);
    openai(&mut run, CHAT, &[("x-tenant-id", "bad tenant\u{1}")]);
    assert_eq!(run.log().tenant.as_deref(), Some("anonymous"));
    assert_eq!(run.host.counter(Counter::BudgetTenantInvalid), 1);
}
