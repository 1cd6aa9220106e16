//! Realtime WebSocket sessions through the fake proxy: the upgrade, both directions' frames in chunks of
//! 1 to 7 bytes, one span per response under the session span, usage by modality, budgets debited per
//! response, and a spent budget answered in-band with the API's own error event.

use super::fake_host_test::Run;
use super::host::Counter;
use crate::rng::SplitMix64;
use crate::stream::websocket::{encode_frame, Opcode};
use crate::telemetry::span::decode;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use serde_json::json;

const SESSION_CREATED: &str = r#"{"type":"session.created","event_id":"event_1","session":{"type":"realtime","object":"realtime.session","id":"sess_1","model":"gpt-realtime-2025-08-28","output_modalities":["audio"]}}"#;
const RESPONSE_CREATED: &str = r#"{"type":"response.created","event_id":"event_2","response":{"object":"realtime.response","id":"resp_1","status":"in_progress","usage":null}}"#;
const AUDIO_DELTA: &str = r#"{"type":"response.output_audio.delta","event_id":"event_3","response_id":"resp_1","item_id":"item_1","output_index":0,"content_index":0,"delta":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}"#;
const RESPONSE_DONE: &str = r#"{"type":"response.done","event_id":"event_4","response":{"object":"realtime.response","id":"resp_1","status":"completed","status_details":null,"usage":{"total_tokens":253,"input_tokens":140,"output_tokens":113,"input_token_details":{"text_tokens":120,"audio_tokens":20,"image_tokens":0,"cached_tokens":64,"cached_tokens_details":{"text_tokens":64,"audio_tokens":0,"image_tokens":0}},"output_token_details":{"text_tokens":25,"audio_tokens":88}}}}"#;
const RESPONSE_CREATE: &str = r#"{"type":"response.create","event_id":"client_2"}"#;
const ITEM_CREATE: &str = r#"{"type":"conversation.item.create","event_id":"client_1","item":{"type":"message","role":"user","content":[{"type":"input_text","text":"hi"}]}}"#;

fn upgrade(run: &mut Run, path: &str) {
    let a = run.request_headers(
        &[
            (":method", "GET"),
            (":authority", "api.openai.com"),
            (":path", path),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-version", "13"),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
            ("x-tenant-id", "team-a"),
        ],
        false,
    );
    assert_eq!(a, super::Action::Continue, "an upgrade is never held");
    run.response_headers(&[(":status", "101"), ("upgrade", "websocket")], false);
}

fn client(text: &str, seed: u64) -> Vec<u8> {
    let mut g = SplitMix64::new(seed);
    let m = g.next_u64().to_le_bytes();
    encode_frame(
        Opcode::Text,
        text.as_bytes(),
        Some([m[0], m[1], m[2], m[3]]),
    )
}

fn server(text: &str) -> Vec<u8> {
    encode_frame(Opcode::Text, text.as_bytes(), None)
}

/// `bytes` in pieces of 1 to 7 bytes (seeded).
fn pieces(bytes: &[u8], seed: u64) -> Vec<&[u8]> {
    let mut g = SplitMix64::new(seed);
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = (1 + (g.next_u64() % 7) as usize).min(rest.len());
        let (a, b) = rest.split_at(n);
        out.push(a);
        rest = b;
    }
    out
}

fn feed_client(run: &mut Run, bytes: &[u8], seed: u64) {
    for p in pieces(bytes, seed) {
        run.request_chunk(p, false);
    }
}

fn feed_server(run: &mut Run, bytes: &[u8], seed: u64) {
    for p in pieces(bytes, seed) {
        run.response_chunk(p, false);
    }
}

fn config(extra: serde_json::Value) -> String {
    let mut c = json!({
        "otlp": {"cluster": "otel", "metrics": true},
        "tenant": {"header": "x-tenant-id", "default": "anonymous"},
    });
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c.to_string()
}

fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<Av> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

#[test]
fn a_session_reads_the_same_in_any_chunking_and_spans_each_response() {
    for seed in 1..6u64 {
        let mut run = Run::new(&config(json!({})));
        upgrade(&mut run, "/v1/realtime?model=gpt-realtime");
        let up = run.host.upstream_headers.clone().unwrap();
        assert!(
            !up.iter().any(|(k, _)| k == "sec-websocket-extensions"),
            "the deflate offer is removed"
        );
        let mut c = client(ITEM_CREATE, seed);
        c.extend(client(RESPONSE_CREATE, seed + 100));
        let mut s = server(SESSION_CREATED);
        s.extend(server(RESPONSE_CREATED));
        s.extend(server(AUDIO_DELTA));
        s.extend(server(RESPONSE_DONE));
        feed_client(&mut run, &c, seed);
        feed_server(&mut run, &s, seed);
        assert_eq!(run.host.upstream_body, c, "client bytes pass unchanged");
        assert_eq!(run.host.client_body, s, "server bytes pass unchanged");
        run.log();
        assert_eq!(run.host.spans.len(), 2, "seed {seed}");
        let resp = decode(&run.host.spans[0]);
        let sess = decode(&run.host.spans[1]);
        assert_eq!(resp.name, "realtime_inference gpt-realtime-2025-08-28");
        assert_eq!(sess.name, "realtime_session gpt-realtime-2025-08-28");
        assert_eq!(resp.parent_span_id, sess.span_id);
        assert_eq!(resp.trace_id, sess.trace_id);
        for (k, v) in [
            ("gen_ai.usage.input_tokens", 140),
            ("gen_ai.usage.output_tokens", 113),
            ("gen_ai.usage.cache_read.input_tokens", 64),
            ("gen_ai.usage.text.input_tokens", 120),
            ("gen_ai.usage.audio.input_tokens", 20),
            ("gen_ai.usage.audio.output_tokens", 88),
            ("gen_ai.usage.text.output_tokens", 25),
        ] {
            assert_eq!(attr(&resp, k), Some(Av::IntValue(v)), "{k}");
            assert_eq!(attr(&sess, k), Some(Av::IntValue(v)), "session {k}");
        }
        assert_eq!(
            attr(&resp, "gen_ai.response.id"),
            Some(Av::StringValue("resp_1".into()))
        );
        assert_eq!(
            attr(&resp, "gen_ai.realtime_session.id"),
            Some(Av::StringValue("sess_1".into()))
        );
        assert_eq!(
            attr(&resp, "gen_ai.operation.name"),
            Some(Av::StringValue("realtime_inference".into()))
        );
        assert_eq!(
            attr(&sess, "tollgate.realtime.responses"),
            Some(Av::IntValue(1))
        );
        assert_eq!(attr(&sess, "tollgate.usage.partial"), None);
        assert_eq!(
            run.host.counters.get(Counter::RealtimeResponses.name()),
            Some(&1)
        );
        let usage: Vec<_> = run
            .host
            .measurements
            .iter()
            .filter(|(i, _, _)| *i == crate::telemetry::metrics::Instrument::TokenUsage)
            .map(|(_, a, v)| {
                let kind = a.iter().find(|(k, _)| k == "gen_ai.token.type").unwrap();
                (kind.1.clone(), *v)
            })
            .collect();
        assert_eq!(
            usage,
            [
                ("Str(\"input\")".to_owned(), 140.0),
                ("Str(\"output\")".to_owned(), 113.0)
            ]
        );
    }
}

#[test]
fn a_session_cut_mid_response_is_flagged_partial() {
    let mut run = Run::new(&config(json!({})));
    upgrade(&mut run, "/v1/realtime?model=gpt-realtime");
    let mut s = server(SESSION_CREATED);
    s.extend(server(RESPONSE_CREATED));
    let delta = server(AUDIO_DELTA);
    s.extend_from_slice(&delta[..delta.len() / 2]);
    feed_server(&mut run, &s, 3);
    run.log();
    let sess = decode(run.host.spans.last().unwrap());
    assert_eq!(
        attr(&sess, "tollgate.usage.partial"),
        Some(Av::BoolValue(true))
    );
    assert_eq!(
        attr(&sess, "tollgate.realtime.responses"),
        Some(Av::IntValue(0))
    );
}

#[test]
fn a_spent_budget_refuses_the_next_response_create_in_band_and_keeps_the_socket() {
    let cfg =
        config(json!({"budgets": {"rules": [{"tenant": "*", "window": "1h", "tokens": 200}]}}));
    let mut run = Run::new(&cfg);
    upgrade(&mut run, "/v1/realtime?model=gpt-realtime");
    feed_client(&mut run, &client(RESPONSE_CREATE, 1), 1);
    let mut s = server(SESSION_CREATED);
    s.extend(server(RESPONSE_CREATED));
    s.extend(server(RESPONSE_DONE)); // 253 tokens: the 200-token budget is spent
    feed_server(&mut run, &s, 2);
    let forwarded = run.host.upstream_body.len();
    // The next response.create is not forwarded: a ping goes in its place.
    let refused = client(RESPONSE_CREATE, 9);
    feed_client(&mut run, &refused, 5);
    let sent = run.host.upstream_body[forwarded..].to_vec();
    assert_ne!(sent, refused);
    assert_eq!(sent[0], 0x89, "a masked ping: {sent:02x?}");
    // Other client events still pass, whole.
    let item = client(ITEM_CREATE, 10);
    feed_client(&mut run, &item, 6);
    assert!(run.host.upstream_body.ends_with(&item));
    // The pong comes back: the API's error event goes in front of it.
    let before = run.host.client_body.len();
    let pong = encode_frame(Opcode::Pong, b"tollgate", None);
    run.response_chunk(&pong, false);
    let got = run.host.client_body[before..].to_vec();
    assert!(got.ends_with(&pong));
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains(r#""type":"error""#) && text.contains("token_budget_exceeded"),
        "{text}"
    );
    assert_eq!(
        run.host.counters.get(Counter::RealtimeRefused.name()),
        Some(&1)
    );
    assert!(
        run.host.replies.is_empty(),
        "no local reply: the socket stays open"
    );
    run.log();
    let sess = decode(run.host.spans.last().unwrap());
    assert_eq!(
        attr(&sess, "tollgate.realtime.refused"),
        Some(Av::IntValue(1))
    );
}

#[test]
fn gemini_live_turns_are_read_from_binary_or_text_frames() {
    let mut run = Run::new(&config(json!({})));
    let a = run.request_headers(
        &[
            (":method", "GET"),
            (":authority", "generativelanguage.googleapis.com"),
            (
                ":path",
                "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=k",
            ),
            ("upgrade", "websocket"),
        ],
        false,
    );
    assert_eq!(a, super::Action::Continue);
    run.response_headers(&[(":status", "101")], false);
    feed_client(
        &mut run,
        &client(
            r#"{"setup":{"model":"models/gemini-2.5-flash-native-audio-preview-09-2025"}}"#,
            4,
        ),
        4,
    );
    let mut s = encode_frame(Opcode::Binary, br#"{"setupComplete":{}}"#, None);
    s.extend(encode_frame(
        Opcode::Binary,
        br#"{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"mimeType":"audio/pcm","data":"AAAA"}}]}}}"#,
        None,
    ));
    s.extend(encode_frame(
        Opcode::Binary,
        br#"{"serverContent":{"turnComplete":true},"usageMetadata":{"promptTokenCount":30,"responseTokenCount":50,"totalTokenCount":80,"promptTokensDetails":[{"modality":"TEXT","tokenCount":30}],"responseTokensDetails":[{"modality":"AUDIO","tokenCount":50}]}}"#,
        None,
    ));
    feed_server(&mut run, &s, 7);
    run.log();
    assert_eq!(run.host.spans.len(), 2);
    let resp = decode(&run.host.spans[0]);
    assert_eq!(
        resp.name,
        "realtime_inference gemini-2.5-flash-native-audio-preview-09-2025"
    );
    assert_eq!(
        attr(&resp, "gen_ai.usage.input_tokens"),
        Some(Av::IntValue(30))
    );
    assert_eq!(
        attr(&resp, "gen_ai.usage.audio.output_tokens"),
        Some(Av::IntValue(50))
    );
    assert_eq!(
        attr(&resp, "gen_ai.provider.name"),
        Some(Av::StringValue("gcp.gemini".into()))
    );
}

#[test]
fn other_upgrades_and_a_refused_handshake_are_left_alone() {
    let mut run = Run::new(&config(json!({})));
    run.request_headers(
        &[
            (":method", "GET"),
            (":authority", "example.com"),
            (":path", "/chat"),
            ("upgrade", "websocket"),
        ],
        false,
    );
    run.log();
    assert!(run.host.spans.is_empty());

    let mut run = Run::new(&config(json!({})));
    run.request_headers(
        &[
            (":method", "GET"),
            (":authority", "api.openai.com"),
            (":path", "/v1/realtime?model=m"),
            ("upgrade", "websocket"),
        ],
        false,
    );
    run.response(
        &[(":status", "401"), ("content-type", "application/json")],
        &[b"{}"],
    );
    run.log();
    let sess = decode(run.host.spans.last().unwrap());
    assert_eq!(
        attr(&sess, "error.type"),
        Some(Av::StringValue("401".into()))
    );
}

#[test]
fn messages_over_the_cap_and_broken_framing_are_counted_and_the_bytes_pass() {
    let mut run = Run::new(&config(json!({"realtime": {"max_message": 1024}})));
    upgrade(&mut run, "/v1/realtime?model=gpt-realtime");
    let big = format!(
        r#"{{"type":"response.output_audio.delta","delta":"{}"}}"#,
        "A".repeat(4000)
    );
    let mut s = server(SESSION_CREATED);
    s.extend(server(&big));
    s.extend(server(RESPONSE_CREATED));
    s.extend(server(RESPONSE_DONE));
    // A server frame with a mask breaks RFC 6455: reading stops, the bytes still pass.
    s.extend(encode_frame(Opcode::Text, b"{}", Some([1, 2, 3, 4])));
    s.extend(server(RESPONSE_DONE));
    feed_server(&mut run, &s, 11);
    assert_eq!(run.host.client_body, s);
    run.log();
    let sess = decode(run.host.spans.last().unwrap());
    assert_eq!(
        attr(&sess, "tollgate.realtime.responses"),
        Some(Av::IntValue(1))
    );
    assert_eq!(
        attr(&sess, "tollgate.realtime.unread"),
        Some(Av::IntValue(2))
    );
    assert_eq!(
        attr(&sess, "tollgate.usage.partial"),
        Some(Av::BoolValue(true))
    );
    assert_eq!(
        run.host.counters.get(Counter::RealtimeUnread.name()),
        Some(&2)
    );
}
