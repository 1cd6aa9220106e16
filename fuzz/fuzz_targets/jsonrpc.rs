#![no_main]
//! The MCP JSON-RPC reader on arbitrary bytes, as a POST body and as an SSE answer in any chunking: no
//! panic, spans inside the body, and the answers tollgate builds for a request read back as answering it
//! (its id echoed byte for byte). Also the tool policy's wildcard matcher on the names found.
use libfuzzer_sys::fuzz_target;
use tollgate::providers::mcp::{
    self, code, error_response, frame_body, read_body, tool_error_result, wildcard_match, Body,
    Kind, Outcome, Pending,
};
use tollgate::stream::Framing;
use tollgate::stream::{BodyDecoder, ContentEncoding, Frame, Limits};

fn check(body: &[u8], msg: &mcp::Message) {
    for span in [msg.arguments, msg.result].into_iter().flatten() {
        assert!(span.start <= span.end && span.end <= body.len());
    }
    let _ = mcp::span_name(msg);
    if let Some(name) = msg.name.as_deref() {
        assert!(wildcard_match(name, name));
        assert!(wildcard_match("*", name));
        let cut = (0..=name.len().min(8))
            .rev()
            .find(|&i| name.is_char_boundary(i))
            .unwrap_or(0);
        assert!(wildcard_match(&format!("{}*", &name[..cut]), name));
    }
    if msg.kind != Kind::Request {
        return;
    }
    let Some(id) = msg.id.as_ref() else {
        return;
    };
    let refusal = error_response(
        Some(id),
        code::TOOL_DENIED,
        "denied \"x\"",
        Some("tool_denied"),
    );
    let Body::Single(answer) = read_body(&refusal) else {
        panic!(
            "refusal is not one message: {}",
            String::from_utf8_lossy(&refusal)
        );
    };
    assert_eq!(answer.kind, Kind::Error);
    assert_eq!(answer.id.as_ref().map(|i| i.raw()), Some(id.raw()));
    let mut p = Pending::new(msg);
    p.observe(&answer);
    assert!(matches!(
        p.outcome(),
        Some(Outcome::RpcError {
            code: Some(code::TOOL_DENIED),
            ..
        })
    ));
    let result = tool_error_result(id, "no", Some("2026-07-28"));
    let Body::Single(answer) = read_body(&result) else {
        panic!("tool error is not one message");
    };
    assert_eq!(answer.kind, Kind::Result);
    assert_eq!(answer.is_error, Some(true));
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let b = read_body(body);
    for m in b.messages() {
        check(body, m);
    }
    // The same bytes as an SSE answer, matched to the first request found.
    let mut pending = b.messages().first().map(Pending::new);
    let mut d = BodyDecoder::new(ContentEncoding::Identity, Framing::Sse, &Limits::default());
    let mut take = |f: Frame<'_>| {
        if let Some(b) = frame_body(&f) {
            for m in b.messages() {
                if let Some(p) = pending.as_mut() {
                    p.observe(m);
                }
            }
        }
    };
    for piece in tollgate_fuzz::chunks(seed, body) {
        d.push(piece, &mut take);
    }
    d.finish(&mut take);
});
