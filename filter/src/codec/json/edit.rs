//! Editing a JSON document in place: one member set (or added) at a path, every other byte kept as the
//! client sent it.

use super::tape;
use std::borrow::Cow;

/// The members of the JSON object `obj` in order, keys unescaped and values raw (borrowed from `obj`, so
/// their position is known); None when `obj` is not one JSON object.
fn members(obj: &[u8]) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let text = std::str::from_utf8(obj).ok()?;
    tape::read(text, |v| {
        let mut out = Vec::new();
        let mut members = v.members()?;
        while let Some((k, v)) = members.next_raw() {
            // serde_json refused a key it cannot unescape, and so the object.
            out.push((k.str()?, v.raw_text()?));
        }
        Some(out)
    })?
}

/// Offset of `inner`, a sub-slice of `outer`, in `outer` (None when it is not one).
pub fn offset(outer: &[u8], inner: &str) -> Option<usize> {
    let at = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    (at.checked_add(inner.len())? <= outer.len()).then_some(at)
}

fn splice(body: &[u8], at: usize, remove: usize, insert: &[u8]) -> Option<Vec<u8>> {
    let (head, rest) = body.split_at_checked(at)?;
    let (_, tail) = rest.split_at_checked(remove)?;
    let mut out = Vec::with_capacity(head.len() + insert.len() + tail.len());
    out.extend_from_slice(head);
    out.extend_from_slice(insert);
    out.extend_from_slice(tail);
    Some(out)
}

/// Does the object at `obj` have member path `path` (each level an object)?
pub fn has_path(obj: &[u8], path: &[&str]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let Some(m) = members(obj) else {
        return false;
    };
    m.iter()
        .find(|(k, _)| k == first)
        .is_some_and(|(_, v)| has_path(v.as_bytes(), rest))
}

/// Set `path` in the JSON object `obj` to the literal `value`, creating missing levels. None when the body
/// is not an object, a level is not an object, or a key is duplicated (which value the provider reads would
/// be ambiguous; the caller then refuses rather than guesses).
pub fn set_path(obj: &[u8], path: &[&str], value: &str) -> Option<Vec<u8>> {
    let (first, rest) = path.split_first()?;
    let members = members(obj)?;
    let mut found = members.iter().filter(|(k, _)| k == first);
    let hit = found.next();
    if found.next().is_some() {
        return None;
    }
    match hit {
        Some((_, raw)) => {
            let text = *raw;
            let at = offset(obj, text)?;
            let replacement = if rest.is_empty() {
                value.as_bytes().to_vec()
            } else {
                set_path(text.as_bytes(), rest, value)?
            };
            splice(obj, at, text.len(), &replacement)
        }
        None => {
            // New member right after the opening brace.
            // The paths are plain identifiers: quoting them is their JSON.
            let mut member = format!("\"{first}\":");
            let mut close = String::new();
            for level in rest {
                member.push('{');
                member.push('"');
                member.push_str(level);
                member.push_str("\":");
                close.push('}');
            }
            member.push_str(value);
            member.push_str(&close);
            let open = obj.iter().position(|&b| b == b'{')?;
            let after = obj.get(open + 1..)?;
            let empty = after
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_some_and(|&b| b == b'}');
            if !empty {
                member.push(',');
            }
            splice(obj, open + 1, 0, member.as_bytes())
        }
    }
}
