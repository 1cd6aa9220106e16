//! Lowercase hexadecimal: trace and span ids, hashes, JSON `\u` escapes, redaction labels.

/// The lowercase hex digit of the low nibble of `n`.
#[inline]
pub fn digit(n: u8) -> u8 {
    b"0123456789abcdef"
        .get(usize::from(n & 0xf))
        .copied()
        .unwrap_or(b'0')
}

/// `bytes` as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push(&mut s, bytes);
    s
}

/// Append `bytes` as lowercase hex.
pub fn push(s: &mut String, bytes: &[u8]) {
    for b in bytes {
        s.push(char::from(digit(b >> 4)));
        s.push(char::from(digit(*b)));
    }
}
