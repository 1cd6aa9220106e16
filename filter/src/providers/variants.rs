//! Documents rewritten the ways providers change them without changing their meaning: a member no
//! provider sends (holding a new usage-like object) in every object, every member written twice, every
//! object's members in reverse order. What tollgate reads must not change (`robust_test.rs`, and the
//! `providers` fuzz target on its inputs). Tests and the fuzz target only (serde_json).

use serde_json::Value;

#[derive(Clone, Copy, Debug)]
pub enum Change {
    /// A new member in every object.
    Extra,
    /// Every member twice.
    Twice,
    /// Every object's members in reverse order.
    Reversed,
}

pub const CHANGES: [Change; 3] = [Change::Extra, Change::Twice, Change::Reversed];

/// The member added to every object: a name no provider uses, and a value shaped like a new usage
/// report, with the counters' usual names inside.
const NEW_MEMBER: &str = r#""tollgate_new_member":{"usage":{"prompt_tokens":999,"input_tokens":999,"inputTokens":999,"output_tokens":999,"promptTokenCount":999},"type":"new","items":[1,"x",{"usage":null}]}"#;

/// `v` written as JSON with `change` applied to every object.
fn write(v: &Value, change: Change, out: &mut String) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut members: Vec<(&String, &Value)> = m.iter().collect();
            if let Change::Reversed = change {
                members.reverse();
            }
            let mut first = true;
            for (k, v) in members {
                let times = if let Change::Twice = change { 2 } else { 1 };
                for _ in 0..times {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    out.push_str(&serde_json::to_string(k).unwrap_or_default());
                    out.push(':');
                    write(v, change, out);
                }
            }
            if let Change::Extra = change {
                if !first {
                    out.push(',');
                }
                out.push_str(NEW_MEMBER);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(v, change, out);
            }
            out.push(']');
        }
        other => out.push_str(&serde_json::to_string(other).unwrap_or_default()),
    }
}

/// `json` with `change` applied, or None when it is not one JSON document serde_json holds.
pub fn changed(json: &[u8], change: Change) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(json).ok()?;
    let mut out = String::new();
    write(&v, change, &mut out);
    Some(out.into_bytes())
}

/// Every change of `json`, when it is one JSON document.
pub fn all(json: &[u8]) -> Vec<(Change, Vec<u8>)> {
    CHANGES
        .iter()
        .filter_map(|&c| Some((c, changed(json, c)?)))
        .collect()
}

/// The data of an event of a type no provider sends.
pub const NEW_EVENT: &str = r#"{"type":"tollgate.new_event","object":"tollgate.new_event","item":{"id":"x","usage":{"total":1}}}"#;
