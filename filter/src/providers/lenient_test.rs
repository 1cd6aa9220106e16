//! The lenient reader (`Lenient` and friends, read from the tape) against the value-by-value reader on
//! serde_json (`codec/json/reference.rs`): the same call records over the fixture corpus, and over every
//! fixture document with each of its values in turn replaced by an odd one (wrong types of every kind,
//! numbers beyond u64 and f64, escapes, lone surrogates), a key written twice (first, and last with another
//! value), and a member no provider sends holding a new usage-like object. The reference reader is built
//! for tests and fuzzing only.

use super::corpus_test::{cases, frames, read_frames, read_request};
use crate::call::Route;
use crate::codec::json::reference::{sanitised, with_reference, with_serde};
use crate::stream::testutil::Owned;
use crate::stream::Framing;
use serde_json::Value;

/// The JSON a frame carries (an event's data, a document, an event-stream payload).
fn json_of(f: &Owned) -> &[u8] {
    match f {
        Owned::Sse { data, .. } => data.as_bytes(),
        Owned::Json(b) => b,
        Owned::Aws { payload, .. } => payload,
    }
}

/// The same frame carrying `json` instead.
fn with_json(f: &Owned, json: Vec<u8>) -> Owned {
    let mut f = f.clone();
    match &mut f {
        Owned::Sse { data, .. } => *data = String::from_utf8(json).unwrap(),
        Owned::Json(b) => *b = json,
        Owned::Aws { payload, .. } => *payload = json,
    }
    f
}

#[test]
fn the_corpus_reads_as_the_reference_reader_reads_it() {
    for case in cases() {
        let req = read_request(&case.route, &case.request_body);
        let frames = frames(&case);
        let resp = read_frames(&case.route, case.framing, &frames);
        assert_eq!(
            req,
            with_serde(|| read_request(&case.route, &case.request_body)),
            "{}: request",
            case.name
        );
        assert_eq!(
            resp,
            with_serde(|| read_frames(&case.route, case.framing, &frames)),
            "{}: response",
            case.name
        );
    }
}

/// Values put in place of each value of a document in turn: every JSON type, the wrong number types for
/// u64, i64 and f64 fields, numbers the parser cannot hold, escapes and lone surrogates.
const ODD_VALUES: &[&str] = &[
    r#""x""#,
    r#""a\"b\u00e9\n""#,
    r#""\ud800""#,
    "0",
    "-1",
    "1.5",
    "18446744073709551616",
    "1e400",
    "1e99999999999",
    "true",
    "null",
    "[]",
    r#"[1,"a",{"b":[]}]"#,
    "{}",
    r#"{"type":"text","text":5,"x":[{}]}"#,
];

const MARK: &str = "\u{1}odd\u{1}";

/// A member added to objects: a name no provider uses, its value shaped like a new usage report.
const NEW_MEMBER: &str = r#""tollgate_new":{"usage":{"prompt_tokens":9,"input_tokens":9,"details":{"cached_tokens":1}},"type":"x"}"#;

/// Every position in `v`, as a path of object keys and array indexes.
fn paths(v: &Value, at: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                at.push(Value::String(k.clone()));
                paths(child, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                at.push(Value::from(i));
                paths(child, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(v: &'v mut Value, path: &[Value]) -> &'v mut Value {
    path.iter().fold(v, |v, seg| match seg {
        Value::String(k) => v.get_mut(k.as_str()).unwrap(),
        _ => v.get_mut(seg.as_u64().unwrap() as usize).unwrap(),
    })
}

/// The odd values serde_json itself refuses (rather than the field's type): the tape reads each as `null`,
/// as the reference reader reads the sanitised copy.
const PARSER_REJECTS: &[&str] = &["1e400", "1e99999999999", r#""\ud800""#];

/// A mutated document, and whether it holds a token serde_json refuses (see `mutations`).
type OnMutation<'f> = dyn FnMut(&[u8], bool) + 'f;

/// The document with the value at each position replaced by each odd value, and with each object's first
/// key written twice; each handed to `f` (one at a time: the wasm unit tests run in one small heap) with
/// whether the odd value is one serde_json refuses.
fn mutations(doc: &[u8], f: &mut OnMutation<'_>) {
    let Ok(v) = serde_json::from_slice::<Value>(doc) else {
        return;
    };
    let mut all = Vec::new();
    paths(&v, &mut Vec::new(), &mut all);
    let quoted_mark = serde_json::to_string(MARK).unwrap();
    for path in &all {
        let mut m = v.clone();
        let slot = at_path(&mut m, path);
        let original = std::mem::replace(slot, Value::String(MARK.to_owned()));
        let text = serde_json::to_string(&m).unwrap();
        for odd in ODD_VALUES {
            f(
                text.replacen(&quoted_mark, odd, 1).as_bytes(),
                PARSER_REJECTS.contains(odd),
            );
        }
        if let Value::Object(o) = &original {
            let inner = serde_json::to_string(&original).unwrap();
            let body = inner.strip_prefix('{').unwrap();
            if let Some((k, first)) = o.iter().next() {
                let key = serde_json::to_string(k).unwrap();
                let dup = format!("{{{key}:{},{body}", serde_json::to_string(first).unwrap());
                f(text.replacen(&quoted_mark, &dup, 1).as_bytes(), false);
                // Written again last with another value: the last one counts, in both readers.
                let again = format!("{},{key}:[{{}}]}}", inner.strip_suffix('}').unwrap());
                f(text.replacen(&quoted_mark, &again, 1).as_bytes(), false);
            }
            // A member no provider sends, holding a new usage-like sub-object.
            let sep = if o.is_empty() { "" } else { "," };
            let new = format!("{{{NEW_MEMBER}{sep}{body}");
            f(text.replacen(&quoted_mark, &new, 1).as_bytes(), false);
        }
    }
}

#[test]
fn odd_values_anywhere_read_as_the_reference_reader_reads_them() {
    let (mut docs, mut nulls) = (0u64, 0u64);
    for case in cases() {
        mutations(&case.request_body, &mut |body, refused| {
            docs += 1;
            let fast = read_request(&case.route, body);
            if refused {
                // The reference reader on the sanitised copy, where the token is `null`.
                nulls += 1;
                let copy = sanitised(std::str::from_utf8(body).unwrap()).unwrap();
                assert_eq!(
                    fast,
                    with_reference(|| read_request(&case.route, copy.as_bytes())),
                    "{}: request, sanitised {}",
                    case.name,
                    String::from_utf8_lossy(body)
                );
                return;
            }
            assert_eq!(
                fast,
                with_serde(|| read_request(&case.route, body)),
                "{}: request {}",
                case.name,
                String::from_utf8_lossy(body)
            );
        });
        let frames = frames(&case);
        // Streams repeat a few kinds of event: the first and last ones and a sample of the middle suffice.
        let n = frames.len();
        for (i, f) in frames.iter().enumerate() {
            if !(i < 4 || i + 4 >= n || i % 7 == 0) {
                continue;
            }
            mutations(json_of(f), &mut |json, refused| {
                docs += 1;
                let one = [with_json(f, json.to_vec())];
                let fast = read_frames(&case.route, case.framing, &one);
                if refused {
                    nulls += 1;
                    let copy = sanitised(std::str::from_utf8(json).unwrap()).unwrap();
                    let sanitised_one = [with_json(f, copy.into_bytes())];
                    assert_eq!(
                        fast,
                        with_reference(|| read_frames(&case.route, case.framing, &sanitised_one)),
                        "{}: frame {i}, sanitised {}",
                        case.name,
                        String::from_utf8_lossy(json_of(&one[0]))
                    );
                    return;
                }
                assert_eq!(
                    fast,
                    with_serde(|| read_frames(&case.route, case.framing, &one)),
                    "{}: frame {i} {}",
                    case.name,
                    String::from_utf8_lossy(json_of(&one[0]))
                );
            });
        }
    }
    eprintln!("{docs} documents, {nulls} with a token serde_json refuses");
    // Over the corpus the tape reads each token serde_json refuses as `null`, which is also what the
    // reference reader made of it (the innermost lenient field).
    assert!(docs > 10_000, "{docs} documents");
    assert!(
        nulls > 1_000,
        "{nulls} documents with a token serde_json refuses"
    );
}

/// Found by the `lenient` fuzz target: a byte that is not UTF-8 inside a string no field reads, inside a
/// lenient value (`error.message`). The value-by-value reader rejects the whole body; so must the new one.
#[test]
fn not_utf8_inside_a_lenient_value() {
    let body = b"{\"error\":{\"message\":\"The server had an error w\xffile processing\",\"type\":\"server_error\",\"param\":null,\"code\":null}}";
    for api in crate::call::Api::ALL {
        let route = Route {
            api,
            provider: "openai".to_owned(),
            path_model: None,
            path_stream: false,
        };
        let frames = [Owned::Json(body.to_vec())];
        let framing = Framing::Whole;
        assert_eq!(
            read_frames(&route, framing, &frames),
            with_serde(|| read_frames(&route, framing, &frames)),
            "{api:?}"
        );
        assert_eq!(
            read_request(&route, body),
            with_serde(|| read_request(&route, body)),
            "{api:?}"
        );
    }
}
