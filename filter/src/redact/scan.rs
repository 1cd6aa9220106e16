//! Byte helpers shared by the detectors. Every detector walks `text.as_bytes()` with these accessors, which
//! read out-of-range positions as 0 (a non-word byte), so the scanners never index and never panic.
//! All built-in patterns are ASCII, so a range that starts and ends on ASCII bytes is on char boundaries.

/// memchr's substring searcher for a constant needle, built once. `memmem::find_iter(h, n)` (and `find` on
/// 64+ bytes) builds a new one on every call: it ranks the needle's bytes and sets up the vector
/// prefilter, about 1–2 k instructions, which for detectors run on every string of every body cost more
/// than the search itself.
macro_rules! finder {
    ($needle:literal) => {{
        static FINDER: std::sync::OnceLock<memchr::memmem::Finder<'static>> =
            std::sync::OnceLock::new();
        FINDER.get_or_init(|| memchr::memmem::Finder::new($needle))
    }};
}
pub(crate) use finder;

/// The byte at `i`, or 0 past either end.
#[inline]
pub(crate) fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// The byte just before `i`, or 0 at the start.
#[inline]
pub(crate) fn before(b: &[u8], i: usize) -> u8 {
    match i.checked_sub(1) {
        Some(j) => at(b, j),
        None => 0,
    }
}

#[inline]
pub(crate) fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

#[inline]
pub(crate) fn is_digit(c: u8) -> bool {
    c.is_ascii_digit()
}

/// A word may start at `i`: the previous byte is not ASCII alphanumeric.
#[inline]
pub(crate) fn word_start(b: &[u8], i: usize) -> bool {
    !is_alnum(before(b, i))
}

/// A number may start at `i`: not glued to a word, and not the tail of a longer dotted/dashed number
/// (so `1.2.3.4.5` yields no IPv4 at `2.3.4.5`, and `12-555-123-4567` no phone).
pub(crate) fn number_start(b: &[u8], i: usize) -> bool {
    let p = before(b, i);
    if is_alnum(p) {
        return false;
    }
    let joined = matches!(p, b'-' | b'.' | b'/' | b',');
    !(joined && is_digit(before(b, i.saturating_sub(1))))
}

/// A number may end at `j` (exclusive): the mirror of [`number_start`].
pub(crate) fn number_end(b: &[u8], j: usize) -> bool {
    let c = at(b, j);
    if is_alnum(c) {
        return false;
    }
    let joined = matches!(c, b'-' | b'.' | b'/' | b',');
    !(joined && is_digit(at(b, j.saturating_add(1))))
}

/// Length of the run starting at `i` of bytes satisfying `f`, capped at `max`.
pub(crate) fn run_len(b: &[u8], i: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    b.get(i..)
        .unwrap_or(&[])
        .iter()
        .take(max)
        .take_while(|c| f(**c))
        .count()
}

/// `b[i..]` starts with `pat`.
#[inline]
pub(crate) fn starts_with_at(b: &[u8], i: usize, pat: &[u8]) -> bool {
    b.get(i..).is_some_and(|s| s.starts_with(pat))
}

/// `b[i..]` starts with `pat`, ignoring ASCII case.
pub(crate) fn starts_with_ci(b: &[u8], i: usize, pat: &[u8]) -> bool {
    match b.get(i..i.saturating_add(pat.len())) {
        Some(s) => s.eq_ignore_ascii_case(pat),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessors_are_total() {
        let b = b"ab";
        assert_eq!(at(b, 5), 0);
        assert_eq!(before(b, 0), 0);
        assert_eq!(run_len(b, 9, 4, is_alnum), 0);
        assert!(!starts_with_ci(b, 1, b"bc"));
        assert!(starts_with_ci(b, 0, b"AB"));
        assert!(number_start(b"x 12", 2));
        assert!(!number_start(b"1.12", 2));
        assert!(number_start(b"a.12", 2));
        assert!(!number_end(b"12.3", 2));
        assert!(number_end(b"12. ", 2));
    }
}
