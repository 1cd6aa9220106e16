//! MCP exchanges through the fake proxy: spans and metrics per the MCP conventions, JSON and SSE answers
//! in any chunking, the tool policy, tool-call budgets, redaction of tool arguments, and what is left
//! alone.

use super::fake_host_test::{chunkings, Run};
use super::host::Counter;
use crate::telemetry::metrics::Instrument;
use crate::telemetry::span::decode;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use serde_json::{json, Value};

const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"get_weather","arguments":{"location":"Paris, mail bob@example.com"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
const RESULT: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","content":[{"type":"text","text":"sunny"}],"isError":false}}"#;

fn config(extra: Value) -> String {
    let mut c = json!({
        "otlp": {"cluster": "otel", "metrics": true},
        "tenant": {"header": "x-tenant-id", "default": "anonymous"},
        "mcp": {"servers": [{"host": "tools.internal", "path_prefix": "/mcp"}]},
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "mcp" {
                let mut m = v.clone();
                m["servers"] = json!([{"host": "tools.internal", "path_prefix": "/mcp"}]);
                c.insert(k.clone(), m);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c.to_string()
}

fn post(run: &mut Run, body: &str, extra: &[(&str, &str)]) {
    let len = body.len().to_string();
    let mut h = vec![
        (":method", "POST"),
        (":authority", "tools.internal:8443"),
        (":path", "/mcp"),
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
        ("content-length", len.as_str()),
        ("x-tenant-id", "team-a"),
    ];
    h.extend_from_slice(extra);
    run.request(&h, &[body.as_bytes()]);
}

fn attrs(run: &Run) -> Vec<(String, Av)> {
    let span = decode(run.host.spans.last().expect("a span"));
    span.attributes
        .into_iter()
        .map(|kv| (kv.key, kv.value.unwrap().value.unwrap()))
        .collect()
}

fn attr(run: &Run, key: &str) -> Option<Av> {
    attrs(run)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn s(v: &str) -> Option<Av> {
    Some(Av::StringValue(v.to_owned()))
}

#[test]
fn a_tool_call_gets_its_span_in_any_chunking_of_json_and_sse_answers() {
    let sse = format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":1}}}}\n\nid: 1\ndata: {RESULT}\n\n"
    );
    for (ct, body) in [
        ("application/json", RESULT.to_owned()),
        ("text/event-stream", sse),
    ] {
        for (how, chunks) in chunkings(body.as_bytes()) {
            let mut run = Run::new(&config(json!({})));
            post(
                &mut run,
                CALL,
                &[(
                    "traceparent",
                    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                )],
            );
            assert!(run.forwarded(), "{how}");
            run.response(&[(":status", "200"), ("content-type", ct)], &chunks);
            run.log();
            let span = decode(run.host.spans.last().unwrap());
            assert_eq!(span.name, "tools/call get_weather", "{ct} {how}");
            assert_eq!(span.kind, 3, "CLIENT");
            assert_eq!(hex(&span.trace_id), "0af7651916cd43dd8448eb211c80319c");
            assert_eq!(hex(&span.parent_span_id), "b7ad6b7169203331");
            assert_eq!(span.status.as_ref().map(|s| s.code), Some(0), "{ct} {how}");
            assert_eq!(attr(&run, "mcp.method.name"), s("tools/call"));
            assert_eq!(attr(&run, "gen_ai.tool.name"), s("get_weather"));
            assert_eq!(attr(&run, "gen_ai.operation.name"), s("execute_tool"));
            assert_eq!(attr(&run, "jsonrpc.request.id"), s("7"));
            assert_eq!(attr(&run, "mcp.protocol.version"), s("2026-07-28"));
            assert_eq!(attr(&run, "server.address"), s("tools.internal"));
            assert_eq!(attr(&run, "server.port"), Some(Av::IntValue(8443)));
            assert_eq!(attr(&run, "tollgate.tenant"), s("team-a"));
            assert_eq!(attr(&run, "error.type"), None);
            // No content without capture_content.
            assert_eq!(attr(&run, "gen_ai.tool.call.arguments"), None);
            // The server sees the gateway's span as parent.
            let up = run.host.upstream_headers.as_ref().unwrap();
            let tp = &up.iter().find(|(k, _)| k == "traceparent").unwrap().1;
            assert!(tp.contains(&hex(&span.span_id)), "{tp}");
            let (inst, mattrs, _) = run.host.measurements.last().unwrap();
            assert_eq!(*inst, Instrument::McpClientOperationDuration);
            assert!(mattrs
                .iter()
                .any(|(k, v)| k == "gen_ai.tool.name" && v.contains("get_weather")));
            assert!(!mattrs
                .iter()
                .any(|(k, _)| k == "jsonrpc.request.id" || k == "mcp.session.id"));
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn errors_and_tool_errors_set_error_type() {
    let mut run = Run::new(&config(json!({})));
    post(&mut run, CALL, &[]);
    let err =
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":-32602,"message":"Unknown tool: get_weather"}}"#;
    run.response(
        &[(":status", "200"), ("content-type", "application/json")],
        &[err.as_bytes()],
    );
    run.log();
    assert_eq!(attr(&run, "error.type"), s("-32602"));
    assert_eq!(attr(&run, "rpc.response.status_code"), s("-32602"));
    let span = decode(run.host.spans.last().unwrap());
    let st = span.status.unwrap();
    assert_eq!(
        (st.code, st.message.as_str()),
        (2, "Unknown tool: get_weather")
    );

    let mut run = Run::new(&config(json!({})));
    post(&mut run, CALL, &[]);
    let tool_err = RESULT.replace("\"isError\":false", "\"isError\":true");
    run.response(
        &[(":status", "200"), ("content-type", "application/json")],
        &[tool_err.as_bytes()],
    );
    run.log();
    assert_eq!(attr(&run, "error.type"), s("tool_error"));

    // The answer never came (server closed mid-stream).
    let mut run = Run::new(&config(json!({})));
    post(&mut run, CALL, &[]);
    run.response_headers(
        &[(":status", "200"), ("content-type", "text/event-stream")],
        false,
    );
    run.response_chunk(b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"res", false);
    run.log();
    assert_eq!(attr(&run, "error.type"), s("_OTHER"));
    assert_eq!(
        attr(&run, "tollgate.mcp.incomplete"),
        Some(Av::BoolValue(true))
    );
}

#[test]
fn sessions_of_older_revisions_are_named_and_initialize_sets_the_version() {
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#;
    let mut run = Run::new(&config(json!({})));
    post(&mut run, init, &[]);
    let answer = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","capabilities":{},"serverInfo":{"name":"s","version":"1"}}}"#;
    run.response(
        &[
            (":status", "200"),
            ("content-type", "application/json"),
            ("mcp-session-id", "sess-1"),
        ],
        &[answer.as_bytes()],
    );
    run.log();
    let span = decode(run.host.spans.last().unwrap());
    assert_eq!(span.name, "initialize");
    assert_eq!(attr(&run, "mcp.session.id"), s("sess-1"));
    assert_eq!(attr(&run, "mcp.protocol.version"), s("2025-06-18"));
    assert_eq!(attr(&run, "gen_ai.operation.name"), None);

    // A notification: 202, no body, no error.
    let mut run = Run::new(&config(json!({})));
    post(
        &mut run,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        &[
            ("mcp-session-id", "sess-1"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
    );
    run.response(&[(":status", "202")], &[]);
    run.log();
    assert_eq!(
        decode(run.host.spans.last().unwrap()).name,
        "notifications/initialized"
    );
    assert_eq!(attr(&run, "error.type"), None);
    assert_eq!(attr(&run, "jsonrpc.request.id"), None);
}

fn refused_with(run: &Run) -> Value {
    let reply = run.host.replies.last().expect("a local reply");
    assert_eq!(reply.status, 200);
    assert!(reply
        .headers
        .iter()
        .any(|(k, v)| k == "content-type" && v == "application/json"));
    serde_json::from_slice(&reply.body).unwrap()
}

#[test]
fn the_tool_policy_refuses_with_a_json_rpc_error_that_never_reaches_the_server() {
    let cfg = config(json!({"mcp": {
        "tools": {"deny": ["get_*"]},
        "tenants": {"ops": {"allow": ["get_weather"]}}
    }}));
    let mut run = Run::new(&cfg);
    post(&mut run, CALL, &[]);
    assert!(!run.forwarded());
    let v = refused_with(&run);
    assert_eq!(v["id"], json!(7));
    assert_eq!(v["error"]["code"], json!(-31403));
    assert_eq!(v["error"]["data"]["reason"], json!("tool_denied"));
    run.log();
    assert_eq!(attr(&run, "error.type"), s("-31403"));
    assert_eq!(attr(&run, "tollgate.mcp.refusal"), s("tool_denied"));
    assert_eq!(run.host.counters.get(Counter::McpRefused.name()), Some(&1));

    // Other methods pass.
    let mut run = Run::new(&cfg);
    post(
        &mut run,
        r#"{"jsonrpc":"2.0","id":"a","method":"tools/list"}"#,
        &[],
    );
    assert!(run.forwarded());

    // A tool call hidden in a batch, or named twice, is refused too.
    let mut run = Run::new(&cfg);
    post(&mut run, &format!("[{CALL}]"), &[]);
    assert!(!run.forwarded());
    assert_eq!(refused_with(&run)["error"]["code"], json!(-32600));
    let mut run = Run::new(&cfg);
    let twice = CALL.replace(
        "\"name\":\"get_weather\"",
        "\"name\":\"ok\",\"name\":\"get_weather\"",
    );
    post(&mut run, &twice, &[]);
    assert!(!run.forwarded());
}

#[test]
fn a_tenant_policy_replaces_the_default() {
    let cfg = config(json!({"mcp": {
        "tools": {"deny": ["get_*"]},
        "tenants": {"ops": {"allow": ["get_weather"]}}
    }}));
    let mut run = Run::new(&cfg);
    let len = CALL.len().to_string();
    run.request(
        &[
            (":method", "POST"),
            (":authority", "tools.internal"),
            (":path", "/mcp"),
            ("content-length", &len),
            ("x-tenant-id", "ops"),
        ],
        &[CALL.as_bytes()],
    );
    assert!(run.forwarded());
}

#[test]
fn tool_call_budgets_count_calls_per_window() {
    let cfg = config(json!({"mcp": {"tool_calls": [{"tenant": "*", "window": "1h", "calls": 2}]}}));
    let mut run = Run::new(&cfg);
    for i in 0..3 {
        let store = std::mem::take(&mut run.host.store);
        run = Run::new(&cfg);
        run.host.store = store;
        post(&mut run, CALL, &[]);
        if i < 2 {
            assert!(run.forwarded(), "call {i}");
            run.response(
                &[(":status", "200"), ("content-type", "application/json")],
                &[RESULT.as_bytes()],
            );
        } else {
            assert!(!run.forwarded(), "call {i}");
            assert_eq!(refused_with(&run)["error"]["code"], json!(-31429));
        }
        run.log();
    }
    // Other methods are not counted.
    let store = std::mem::take(&mut run.host.store);
    let mut run = Run::new(&cfg);
    run.host.store = store;
    post(
        &mut run,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        &[],
    );
    assert!(run.forwarded());
}

#[test]
fn redaction_applies_to_tool_arguments_and_capture_is_opt_in() {
    let cfg = config(json!({
        "capture_content": true,
        "redaction": {"egress": true}
    }));
    let mut run = Run::new(&cfg);
    post(&mut run, CALL, &[]);
    assert!(run.forwarded());
    let up = String::from_utf8(run.host.upstream_body.clone()).unwrap();
    assert!(!up.contains("bob@example.com"), "{up}");
    assert!(up.contains("get_weather"));
    run.response(
        &[(":status", "200"), ("content-type", "application/json")],
        &[RESULT.as_bytes()],
    );
    run.log();
    let Some(Av::StringValue(args)) = attr(&run, "gen_ai.tool.call.arguments") else {
        panic!("no arguments")
    };
    assert!(
        args.contains("Paris") && !args.contains("bob@example.com"),
        "{args}"
    );
    let Some(Av::StringValue(result)) = attr(&run, "gen_ai.tool.call.result") else {
        panic!("no result")
    };
    assert!(result.contains("sunny"));

    let cfg = config(json!({"redaction": {"block": ["email"]}}));
    let mut run = Run::new(&cfg);
    post(&mut run, CALL, &[]);
    assert!(!run.forwarded());
    assert_eq!(
        refused_with(&run)["error"]["data"]["reason"],
        json!("content_blocked")
    );
}

#[test]
fn other_traffic_to_the_server_and_unreadable_bodies_pass() {
    let mut run = Run::new(&config(json!({"mcp": {"tools": {"deny": ["x"]}}})));
    run.request(
        &[
            (":method", "GET"),
            (":authority", "tools.internal"),
            (":path", "/mcp"),
        ],
        &[],
    );
    assert!(run.forwarded());
    run.log();
    assert!(run.host.spans.is_empty());

    let mut run = Run::new(&config(json!({})));
    post(&mut run, "not json", &[]);
    assert!(run.forwarded());
    run.log();
    assert_eq!(run.host.counters.get(Counter::McpUnread.name()), Some(&1));
    assert!(run.host.spans.is_empty());

    // A model call on another host is not an MCP call.
    let mut run = Run::new(&config(json!({})));
    run.request(
        &[
            (":method", "POST"),
            (":authority", "tools.internal"),
            (":path", "/other"),
        ],
        &[CALL.as_bytes()],
    );
    assert!(run.forwarded());
    run.log();
    assert!(run.host.spans.is_empty());
}

#[test]
fn an_answer_too_large_to_read_is_counted() {
    let mut run = Run::new(&config(json!({"max_response_body": 64})));
    post(&mut run, CALL, &[]);
    run.response(
        &[(":status", "200"), ("content-type", "application/json")],
        &[RESULT.as_bytes()],
    );
    run.log();
    assert_eq!(run.host.counters.get(Counter::McpUnread.name()), Some(&1));
    assert_eq!(attr(&run, "error.type"), s("_OTHER"), "no answer was read");
}
