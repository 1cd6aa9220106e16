//! The stream fast paths (`skim.rs` readers in the provider files) against the serde path: every streamed
//! event of the fixture corpus, and many mutated variants of each (escapes, surrogates, unexpected types,
//! null, nested arrays, removed and duplicated members, truncation), must leave exactly the same
//! `Response` (usage, finish reasons, ids, model, output characters, captured text), `StreamState` and
//! `FrameOutcome` whichever path reads them, with content capture off and on.

use super::corpus_test::cases;
use crate::call::Response;
use crate::capture::OutputCapture;
use crate::providers::{frame_with, Framing, StreamState};
use crate::stream::testutil::Owned;
use crate::stream::{BodyDecoder, ContentEncoding, Frame, Limits};
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

fn borrowed(f: &Owned) -> Frame<'_> {
    match f {
        Owned::Sse { event, data } => Frame::Sse { event, data },
        Owned::Json(j) => Frame::Json(j),
        Owned::Aws {
            message_type,
            event_type,
            exception_type,
            payload,
        } => Frame::Aws {
            message_type,
            event_type,
            exception_type,
            payload,
        },
    }
}

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
    let fast = frame_with(route, &borrowed(f), &mut st_fast, &mut resp_fast, true);
    let slow = frame_with(route, &borrowed(f), &mut st_slow, &mut resp_slow, false);
    assert_eq!(fast, slow, "{case}: outcome of {f:?}");
    assert_eq!(resp_fast, resp_slow, "{case}: response after {f:?}");
    assert_eq!(st_fast.finished, st_slow.finished, "{case}: state {f:?}");
}

/// How many of the texts the fast path takes: the test above must exercise it, not only the fallback.
fn fast_taken(case: &crate::call::Route, text: &str) -> bool {
    use crate::call::Api;
    let mut resp = Response::default();
    match case.api {
        Api::OpenAiChat | Api::OpenAiCompletions => {
            super::openai::fast_chunk(text, &mut resp).is_some()
        }
        _ => false,
    }
}

#[test]
fn fast_paths_read_every_event_as_serde_does() {
    let mut taken = 0usize;
    let mut escaped_taken = 0usize;
    let mut events = 0usize;
    for case in cases() {
        if case.framing == Framing::Whole {
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
                // Mutate the first few events and the last ones (the per-token event and the endings).
                if let Some(text) = text_of(f).filter(|_| i < 6 || i + 4 > frames.len()) {
                    for v in variants(&text) {
                        if fast_taken(&case.route, &v) {
                            taken += 1;
                            escaped_taken += usize::from(v.contains('\\'));
                        }
                        check(&case.name, &case.route, &with_text(f, v), &st, &resp);
                        events += 1;
                    }
                }
                check(&case.name, &case.route, f, &st, &resp);
                super::frame(&case.route, &borrowed(f), &mut st, &mut resp);
            }
        }
    }
    assert!(events > 10_000, "{events} variants");
    eprintln!("{events} variants, {taken} on the fast path, {escaped_taken} of them with escapes");
    assert!(
        taken > 1_000 && escaped_taken > 100,
        "{taken} / {escaped_taken}"
    );
}
