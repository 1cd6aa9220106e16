//! Members tollgate does not know, members written twice, members in another order, and event types it
//! does not know never change what it reads. Every request and every response document of the fixtures and
//! of a sample of the recorded corpus (`tests/corpus`) is read again
//! - with a new member in every object, whose value is a new usage-like sub-object (as providers add
//!   `usage.server_tool_use`, `usage_breakdown`, `x_groq`...);
//! - with every member written twice;
//! - with every object's members in reverse order;
//! - with events of an unknown type before and after the stream's first event;
//!
//! and must give the same request, response and stream end.

use super::corpus_test::{cases, frames, read_frames, read_request, Case};
use super::variants::{changed, Change, CHANGES, NEW_EVENT};
use crate::call::{Response, Route};
use crate::stream::testutil::Owned;
use crate::stream::Framing;
use crate::stream::Limits;
use base64::Engine as _;
use serde_json::Value;

/// The same frame with its JSON changed (inside an InvokeModel chunk, the model's own event).
fn changed_frame(f: &Owned, change: Change) -> Option<Owned> {
    let mut f = f.clone();
    match &mut f {
        Owned::Sse { data, .. } => {
            *data = String::from_utf8(changed(data.as_bytes(), change)?).ok()?
        }
        Owned::Json(b) => *b = changed(b, change)?,
        Owned::Aws { payload, .. } => {
            let outer: Value = serde_json::from_slice(payload).ok()?;
            if let Some(b64) = outer.get("bytes").and_then(Value::as_str) {
                let inner = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
                let inner = changed(&inner, change)?;
                let b64 = base64::engine::general_purpose::STANDARD.encode(inner);
                *payload = serde_json::to_vec(&serde_json::json!({ "bytes": b64 })).unwrap();
            } else {
                *payload = changed(payload, change)?;
            }
        }
    }
    Some(f)
}

/// An event of a type no provider sends, in the framing of `like`.
fn unknown_event(like: &Owned) -> Owned {
    let data = NEW_EVENT;
    match like {
        Owned::Sse { .. } => Owned::Sse {
            event: "tollgate.new_event".into(),
            data: data.into(),
        },
        Owned::Json(_) => Owned::Json(data.as_bytes().to_vec()),
        Owned::Aws { .. } => Owned::Aws {
            message_type: "event".into(),
            event_type: "tollgateNewEvent".into(),
            exception_type: String::new(),
            payload: data.as_bytes().to_vec(),
        },
    }
}

/// The response and stream end `frames` make.
fn read(route: &Route, framing: Framing, frames: &[Owned]) -> (Response, bool) {
    let (resp, _, finished) = read_frames(route, framing, frames);
    (resp, finished)
}

/// Check one exchange; its name, for the messages.
fn check(name: &str, route: &Route, framing: Framing, request: &[u8], frames: &[Owned]) -> usize {
    let mut checked = 0;
    let req = read_request(route, request);
    let resp = read(route, framing, frames);
    for change in CHANGES {
        if let Some(body) = changed(request, change) {
            checked += 1;
            assert_eq!(
                read_request(route, &body),
                req,
                "{name}: request, {change:?}"
            );
        }
        let all: Option<Vec<Owned>> = frames.iter().map(|f| changed_frame(f, change)).collect();
        if let Some(all) = all {
            checked += 1;
            assert_eq!(
                read(route, framing, &all),
                resp,
                "{name}: response, {change:?}"
            );
        }
    }
    if framing != Framing::Whole && !frames.is_empty() {
        let new = unknown_event(&frames[0]);
        let mut more = vec![new.clone()];
        more.extend(frames[..1].iter().cloned());
        more.push(new.clone());
        more.extend(frames[1..].iter().cloned());
        checked += 1;
        assert_eq!(read(route, framing, &more), resp, "{name}: unknown events");
    }
    checked
}

#[test]
fn the_fixtures_read_the_same_with_new_repeated_and_reordered_members_and_new_events() {
    let mut checked = 0;
    for case in cases() {
        checked += check(
            &case.name,
            &case.route,
            case.framing,
            &case.request_body,
            &frames(&case),
        );
    }
    assert!(checked > 300, "{checked}");
}

#[test]
fn recorded_exchanges_read_the_same_with_new_repeated_and_reordered_members_and_new_events() {
    use super::corpus_real_test::{exchanges, for_each_source, route_of};
    use crate::codec::headers::{serialize, Headers};
    use crate::providers::reader::ResponseReader;
    let mut checked = 0;
    for_each_source(&mut |source, text| {
        // Every fifth uncompressed exchange: streams repeat their shapes.
        for (_, x) in exchanges(text).filter(|(n, _)| n % 5 == 0) {
            if x.headers.iter().any(|(k, _)| k == "content-encoding") {
                continue;
            }
            let route = route_of(&x);
            let head: Vec<(&str, &str)> = x
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let framing = ResponseReader::new(
                &route,
                &read_request(&route, &x.request),
                Some(x.status),
                &Headers::new(serialize(&head)),
                &Limits::default(),
                &mut Response::default(),
            )
            .framing();
            let case = Case {
                name: format!("{source}: {}", x.id),
                route,
                framing,
                body: x.body,
                request_body: x.request,
            };
            // The first and last events of a stream and a sample of the middle.
            let all = frames(&case);
            let k = all.len();
            let sample: Vec<Owned> = all
                .into_iter()
                .enumerate()
                .filter(|(i, _)| *i < 4 || i + 4 >= k || i % 9 == 0)
                .map(|(_, f)| f)
                .collect();
            checked += check(
                &case.name,
                &case.route,
                case.framing,
                &case.request_body,
                &sample,
            );
        }
    });
    assert!(checked > 1500, "{checked}");
}
