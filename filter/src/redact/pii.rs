//! Personal-data detectors: email, phone, credit_card, iban, us_ssn, ipv4, ipv6.
//!
//! Each is a hand-written linear scanner: a cheap prefilter (memchr for `@`/`:`, or a walk over digit runs)
//! finds candidate starts, a small parser validates the shape, and a checksum (Luhn, mod-97) or range rule
//! rejects look-alikes. Each candidate region is visited a bounded number of times, so a scan is O(n).
//! Output ranges are pushed onto `out` in increasing order.

use super::scan::{at, before, is_alnum, is_digit, number_end, number_start, run_len, word_start};
use memchr::memchr;

/// Local parts beyond this are not treated as addresses (RFC 5321 allows 64; leave slack for odd inputs).
const MAX_LOCAL: usize = 128;
const MAX_DOMAIN: usize = 255;

fn is_local(c: u8) -> bool {
    is_alnum(c) || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// `local@domain.tld`: a TLD of at least two letters, labels of alphanumerics and `-`.
pub fn email(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut from = 0usize;
    while let Some(off) = b.get(from..).and_then(|rest| memchr(b'@', rest)) {
        let a = from.saturating_add(off);
        from = a.saturating_add(1);
        // Local part: walk left; a `@` is not a local char, so each byte is walked by at most one `@`.
        let mut s = a;
        while s > 0 && is_local(before(b, s)) && a - s <= MAX_LOCAL {
            s -= 1;
        }
        if a - s > MAX_LOCAL {
            continue;
        }
        while s < a && at(b, s) == b'.' {
            s += 1;
        }
        if s == a {
            continue;
        }
        // Domain: dot-separated labels; a trailing dot (end of sentence) is not part of it.
        let mut e = a.saturating_add(1);
        let mut labels = 0usize;
        let mut last_label = (e, e);
        loop {
            let ls = e;
            e = e.saturating_add(run_len(b, e, MAX_DOMAIN, |c| is_alnum(c) || c == b'-'));
            if e == ls {
                e = ls.saturating_sub(usize::from(labels > 0)); // drop the dot we stepped over
                break;
            }
            labels += 1;
            last_label = (ls, e);
            if at(b, e) == b'.' && is_alnum(at(b, e.saturating_add(1))) && e - a < MAX_DOMAIN {
                e += 1;
            } else {
                break;
            }
        }
        let tld = b.get(last_label.0..last_label.1).unwrap_or(&[]);
        if labels < 2 || tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic) {
            continue;
        }
        if at(b, a.saturating_add(1)) == b'-' || at(b, e) == b'@' {
            continue;
        }
        out.push((s, e));
        from = e;
    }
}

fn is_phone_sep(c: u8) -> bool {
    matches!(c, b' ' | b'-' | b'.')
}

/// Reads exactly `n` digits at `i`; returns the position after them.
fn digits(b: &[u8], i: usize, n: usize) -> Option<usize> {
    (run_len(b, i, n, is_digit) == n).then(|| i.saturating_add(n))
}

/// North American numbers: `(555) 123-4567`, `555-123-4567`, `555.123.4567`, `+1 555 123 4567`,
/// `1-800-555-0199`. Bare ten-digit runs are not matched (too many order numbers look like that); a space
/// separator needs a `+1` prefix or a parenthesised area code, for the same reason.
fn nanp(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i;
    let mut prefixed = false;
    if at(b, j) == b'+' && at(b, j + 1) == b'1' && is_phone_sep(at(b, j + 2)) {
        j += 3;
        prefixed = true;
    } else if at(b, j) == b'1' && matches!(at(b, j + 1), b'-' | b'.' | b' ') {
        let n = at(b, j + 2);
        if is_digit(n) || n == b'(' {
            j += 2;
            prefixed = at(b, j - 1) != b' ';
        }
    }
    let (area_end, sep1, parens) = if at(b, j) == b'(' {
        let e = digits(b, j + 1, 3)?;
        if at(b, e) != b')' {
            return None;
        }
        let mut e = e + 1;
        if matches!(at(b, e), b' ' | b'-') {
            e += 1;
        }
        (e, 0u8, true)
    } else {
        let e = digits(b, j, 3)?;
        let sep = at(b, e);
        if !is_phone_sep(sep) || (sep == b' ' && !prefixed) {
            return None;
        }
        (e + 1, sep, false)
    };
    let area_first = at(b, j + usize::from(parens));
    if !(b'2'..=b'9').contains(&area_first) {
        return None;
    }
    let e = digits(b, area_end, 3)?;
    let sep2 = at(b, e);
    let sep_ok = if parens {
        matches!(sep2, b'-' | b'.' | b' ')
    } else {
        sep2 == sep1
    };
    if !sep_ok {
        return None;
    }
    let e = digits(b, e + 1, 4)?;
    number_end(b, e).then_some(e)
}

/// International `+<cc> …` numbers: 8–15 digits (E.164) in groups separated by one space, dash or dot, a
/// group optionally in parentheses (`+44 (0)20 7946 0958`).
fn international(b: &[u8], i: usize) -> Option<usize> {
    if at(b, i) != b'+' || !(b'1'..=b'9').contains(&at(b, i + 1)) || is_alnum(before(b, i)) {
        return None;
    }
    let mut j = i + 1;
    let mut count = 0usize;
    let mut end = j;
    let mut fallback: Option<(usize, usize)> = None;
    loop {
        let paren = at(b, j) == b'(' && count > 0;
        let g = j + usize::from(paren);
        let n = run_len(b, g, 16, is_digit);
        if n == 0 {
            break;
        }
        let mut ge = g + n;
        if paren {
            if at(b, ge) != b')' {
                break;
            }
            ge += 1;
        }
        count += n;
        if count > 15 {
            // Numbers written after a complete phone number ("+44 20 7946 0958 123-45-6789") are other
            // numbers: fall back to the last space-separated end that was a phone on its own.
            match fallback {
                Some((e, n)) if n >= 8 => {
                    end = e;
                    count = n;
                    break;
                }
                _ => return None,
            }
        }
        end = ge;
        let c = at(b, ge);
        let next = at(b, ge + 1);
        if is_phone_sep(c) && (is_digit(next) || next == b'(') {
            if c == b' ' {
                fallback = Some((end, count));
            }
            j = ge + 1;
        } else if c == b'(' || (paren && is_digit(c)) {
            // `(0)20`: a parenthesised trunk prefix glued to the next group.
            j = ge;
        } else {
            break;
        }
    }
    (count >= 8 && number_end(b, end)).then_some(end)
}

/// Phone numbers: international `+<cc>` forms and NANP forms. Dates, versions, IPs and plain digit runs do
/// not have these separator shapes.
pub fn phone(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut i = 0usize;
    while i < b.len() {
        let c = at(b, i);
        let candidate = matches!(c, b'+' | b'(') || is_digit(c);
        if candidate && number_start(b, i) {
            let found = if c == b'+' {
                international(b, i).or_else(|| nanp(b, i))
            } else {
                nanp(b, i)
            };
            if let Some(e) = found {
                out.push((i, e));
                i = e;
                continue;
            }
        }
        // A failed digit start: skip the whole run (a start inside it is glued to a digit anyway).
        i += if is_digit(c) {
            run_len(b, i, usize::MAX, is_digit)
        } else {
            1
        };
    }
}

/// Luhn (mod 10) over ASCII digits.
pub(crate) fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, c) in d.iter().rev().enumerate() {
        let mut v = u32::from(c.wrapping_sub(b'0'));
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// The leading `n` digits as a number.
fn prefix(d: &[u8], n: usize) -> u32 {
    d.iter()
        .take(n)
        .fold(0u32, |acc, c| acc * 10 + u32::from(c.wrapping_sub(b'0')))
}

/// Issuer identification ranges of the networks in common use, with their lengths.
fn known_iin(d: &[u8]) -> bool {
    let len = d.len();
    let (p1, p2, p3, p4) = (prefix(d, 1), prefix(d, 2), prefix(d, 3), prefix(d, 4));
    match p1 {
        4 => matches!(len, 13 | 16 | 19),                         // Visa
        5 => (50..=59).contains(&p2) && (12..=19).contains(&len), // Mastercard 51-55, Maestro 50/56-59
        2 => ((2221..=2720).contains(&p4) || (2200..=2204).contains(&p4)) && len == 16, // Mastercard, Mir
        3 => {
            ((p2 == 34 || p2 == 37) && len == 15) // Amex
                || (((300..=305).contains(&p3) || p2 == 36 || p2 == 38 || p2 == 39) && (14..=19).contains(&len)) // Diners
                || ((3528..=3589).contains(&p4) && (16..=19).contains(&len)) // JCB
        }
        6 => (12..=19).contains(&len), // Discover 6011/64/65, UnionPay 62, Maestro 6x, RuPay
        _ => false,
    }
}

/// Card numbers: 13–19 digits, optionally in groups separated by a consistent single space or dash, with a
/// known issuer prefix and a valid Luhn check digit. Longer digit runs are not cards (order numbers).
///
/// Every group start after a space is tried as a card start ("ref 7334 378282246310005"), each with at most
/// 19 digits of look-ahead, so the scan stays linear.
pub fn credit_card(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut i = 0usize;
    let mut digs: Vec<u8> = Vec::with_capacity(24);
    // (digits so far, byte end) at the end of each group.
    let mut groups: Vec<(usize, usize)> = Vec::with_capacity(8);
    while i < b.len() {
        if !is_digit(at(b, i)) {
            i += 1;
            continue;
        }
        let start = i;
        let first = run_len(b, i, usize::MAX, is_digit);
        if first > 19 || !number_start(b, i) {
            // A plain long number, or digits glued to something: no card starts inside this run.
            i += first;
            continue;
        }
        digs.clear();
        groups.clear();
        let mut sep = 0u8;
        let mut j = i;
        // More digit groups follow the last collected one (the number goes on past 19 digits).
        let mut more = false;
        loop {
            let n = run_len(b, j, 20, is_digit);
            if n == 0 {
                break;
            }
            if digs.len() + n > 19 || groups.len() >= 8 {
                more = true;
                break;
            }
            digs.extend_from_slice(b.get(j..j + n).unwrap_or(&[]));
            j += n;
            groups.push((digs.len(), j));
            let c = at(b, j);
            if matches!(c, b' ' | b'-') && (sep == 0 || sep == c) && is_digit(at(b, j + 1)) {
                sep = c;
                j += 1;
            } else {
                break;
            }
        }
        // The whole number, or, for space-grouped numbers followed by more groups ("4111 1111 1111 1111
        // 2025"), the longest prefix ending at a group boundary that is a valid card. Grouped numbers use
        // groups of 3–6 digits (4-4-4-4, 4-6-5, 4-4-4-4-3).
        let last_end = groups.last().map_or(j, |g| g.1);
        let whole_end_ok = !more && number_end(b, last_end);
        let mut hit = None;
        let mut prev = 0usize;
        let mut sizes_ok = true;
        let mut candidates: [(usize, usize, bool); 8] = [(0, 0, false); 8];
        for (slot, &(n, e)) in candidates.iter_mut().zip(&groups) {
            sizes_ok &= (3..=6).contains(&(n - prev));
            prev = n;
            *slot = (n, e, sizes_ok);
        }
        for (k, &(n, e, ok)) in candidates.iter().enumerate().take(groups.len()).rev() {
            let is_last = k + 1 == groups.len() && !more;
            if (is_last && !whole_end_ok) || (!is_last && sep != b' ') || (k > 0 && !ok) {
                continue;
            }
            let d = digs.get(..n).unwrap_or(&[]);
            if (13..=19).contains(&n) && known_iin(d) && luhn(d) {
                hit = Some(e);
                break;
            }
        }
        if let Some(e) = hit {
            out.push((start, e));
            i = e;
        } else if sep == b' ' {
            i = start + first; // try the next space-separated group as a start
        } else {
            i = last_end.max(start + first);
        }
    }
}

/// IBAN lengths by country (ISO 13616 registry).
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

/// ISO 7064 mod 97-10 over the rearranged IBAN (country + check digits moved to the end, letters → 10..35).
fn iban_checksum_ok(chars: &[u8]) -> bool {
    let (head, bban) = chars.split_at(chars.len().min(4));
    let mut r = 0u32;
    for &c in bban.iter().chain(head) {
        r = match c {
            b'0'..=b'9' => (r * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(c - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// IBANs: country code, two check digits and the country's BBAN length, compact or in groups separated by
/// single spaces, validated with mod-97.
pub fn iban(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut chars: Vec<u8> = Vec::with_capacity(34);
    let mut i = 0usize;
    while i + 1 < b.len() {
        let (c0, c1) = (at(b, i), at(b, i + 1));
        if !(c0.is_ascii_uppercase() && c1.is_ascii_uppercase() && word_start(b, i)) {
            i += 1;
            continue;
        }
        let len = IBAN_LENGTHS
            .iter()
            .find(|(cc, _)| cc[0] == c0 && cc[1] == c1)
            .map(|(_, l)| usize::from(*l));
        let Some(len) = len else {
            i += 1;
            continue;
        };
        if !(is_digit(at(b, i + 2)) && is_digit(at(b, i + 3))) {
            i += 1;
            continue;
        }
        chars.clear();
        let mut j = i;
        while chars.len() < len {
            let c = at(b, j);
            if c.is_ascii_digit() || c.is_ascii_uppercase() {
                chars.push(c);
                j += 1;
            } else if c == b' ' && !chars.is_empty() && at(b, j + 1).is_ascii_alphanumeric() {
                j += 1;
            } else {
                break;
            }
        }
        if chars.len() == len && !is_alnum(at(b, j)) && iban_checksum_ok(&chars) {
            out.push((i, j));
            i = j;
        } else {
            i += 2;
        }
    }
}

/// US social security numbers `AAA-GG-SSSS`, excluding never-issued ranges: area 000, 666 and 900–999,
/// group 00, serial 0000.
pub fn us_ssn(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut i = 0usize;
    while i < b.len() {
        if !is_digit(at(b, i)) {
            i += 1;
            continue;
        }
        let n = run_len(b, i, 4, is_digit);
        if n == 3 && number_start(b, i) && at(b, i + 3) == b'-' {
            let g = run_len(b, i + 4, 3, is_digit);
            let s = run_len(b, i + 7, 5, is_digit);
            if g == 2 && at(b, i + 6) == b'-' && s == 4 && number_end(b, i + 11) {
                let d = b.get(i..i + 11).unwrap_or(&[]);
                let area = prefix(d, 3);
                let group = prefix(d.get(4..).unwrap_or(&[]), 2);
                let serial = prefix(d.get(7..).unwrap_or(&[]), 4);
                if area != 0 && area != 666 && area < 900 && group != 0 && serial != 0 {
                    out.push((i, i + 11));
                    i += 11;
                    continue;
                }
            }
        }
        i += run_len(b, i, usize::MAX, is_digit).max(1);
    }
}

/// One decimal octet 0–255 without leading zeros; returns its end.
fn octet(b: &[u8], i: usize) -> Option<usize> {
    let n = run_len(b, i, 4, is_digit);
    if n == 0 || n > 3 || (n > 1 && at(b, i) == b'0') {
        return None;
    }
    let v = prefix(b.get(i..i + n).unwrap_or(&[]), n);
    (v <= 255).then_some(i + n)
}

/// Dotted quad at `i`; returns its end.
fn dotted_quad(b: &[u8], i: usize) -> Option<usize> {
    let mut e = octet(b, i)?;
    for _ in 0..3 {
        if at(b, e) != b'.' {
            return None;
        }
        e = octet(b, e + 1)?;
    }
    Some(e)
}

/// IPv4 dotted quads. A fifth component (`1.2.3.4.5`, a version string) or letters around it rule it out.
pub fn ipv4(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut i = 0usize;
    while i < b.len() {
        if !is_digit(at(b, i)) {
            i += 1;
            continue;
        }
        if number_start(b, i) {
            if let Some(e) = dotted_quad(b, i) {
                if number_end(b, e) {
                    out.push((i, e));
                    i = e;
                    continue;
                }
            }
        }
        // Skip the rest of this dotted/digit run: any start inside it is glued to a digit.
        i += run_len(b, i, usize::MAX, |c| is_digit(c) || c == b'.').max(1);
    }
}

fn is_v6(c: u8) -> bool {
    c.is_ascii_hexdigit() || c == b':' || c == b'.'
}

/// Validates an IPv6 literal: 8 groups, or fewer with exactly one `::`; the last group may be a dotted quad.
/// Rejects `::` and `::1`-style singletons and groups without any digit (`dead::beef`, C++ `a::b`), which
/// are more often code than addresses.
fn valid_v6(s: &[u8]) -> bool {
    let mut groups = 0usize;
    let mut compressed = false;
    let mut has_digit = false;
    let mut k = 0usize;
    if s.starts_with(b"::") {
        compressed = true;
        k = 2;
    } else if s.first() == Some(&b':') {
        return false;
    }
    while k < s.len() {
        // A group: up to 4 hex digits, or a trailing dotted quad.
        let g = run_len(s, k, 5, |c| c.is_ascii_hexdigit());
        if at(s, k + g) == b'.' {
            let Some(e) = dotted_quad(s, k) else {
                return false;
            };
            if e != s.len() {
                return false;
            }
            groups += 2;
            has_digit = true;
            break;
        }
        if g == 0 || g > 4 {
            return false;
        }
        has_digit |= s
            .get(k..k + g)
            .is_some_and(|x| x.iter().any(u8::is_ascii_digit));
        groups += 1;
        k += g;
        if k == s.len() {
            break;
        }
        // Separator: ':' or the single allowed '::'.
        if starts_with_colons(s, k) {
            if compressed {
                return false;
            }
            compressed = true;
            k += 2;
            if k == s.len() {
                break;
            }
        } else if at(s, k) == b':' {
            k += 1;
            if k == s.len() {
                return false;
            }
        } else {
            return false;
        }
    }
    has_digit
        && if compressed {
            (2..=7).contains(&groups)
        } else {
            groups == 8
        }
}

fn starts_with_colons(s: &[u8], k: usize) -> bool {
    at(s, k) == b':' && at(s, k + 1) == b':'
}

/// IPv6 addresses, full and compressed. Found from each `:` by taking the maximal run of hex digits, colons
/// and dots around it and validating that run whole (after trimming sentence punctuation), so times
/// (`12:30`, `12:30:45`) and MAC addresses (6 groups) are not addresses.
pub fn ipv6(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut from = 0usize;
    while let Some(off) = b.get(from..).and_then(|rest| memchr(b':', rest)) {
        let c = from.saturating_add(off);
        let mut s = c;
        while s > 0 && is_v6(before(b, s)) {
            s -= 1;
        }
        let mut e = c.saturating_add(run_len(b, c, usize::MAX, is_v6));
        from = e.max(c.saturating_add(1));
        // A single leading ':' is a separator ("addr:fe80::1"), not part of the address.
        if at(b, s) == b':' && at(b, s + 1) != b':' {
            s += 1;
        } else if !word_start(b, s) || before(b, s) == b'_' {
            continue;
        }
        // Trailing sentence punctuation and a single trailing ':' ("at fe80::1.", "fe80::1: ...").
        while e > s && before(b, e) == b'.' {
            e -= 1;
        }
        if before(b, e) == b':' && before(b, e.saturating_sub(1)) != b':' {
            e -= 1;
        }
        if is_alnum(at(b, e)) || at(b, e) == b'_' || e <= s {
            continue;
        }
        if b.get(s..e).is_some_and(valid_v6) {
            out.push((s, e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(f: fn(&str, &mut Vec<(usize, usize)>), text: &str) -> Vec<&str> {
        let mut v = Vec::new();
        f(text, &mut v);
        v.iter().map(|&(s, e)| &text[s..e]).collect()
    }

    fn assert_all(f: fn(&str, &mut Vec<(usize, usize)>), positives: &[&str], negatives: &[&str]) {
        for p in positives {
            let text = format!("see {p}, thanks");
            assert_eq!(found(f, &text), vec![*p], "should match: {text:?}");
            assert_eq!(found(f, p), vec![*p], "should match alone: {p:?}");
        }
        for n in negatives {
            assert!(
                found(f, n).is_empty(),
                "should not match: {n:?} -> {:?}",
                found(f, n)
            );
        }
    }

    #[test]
    fn email_corpus() {
        assert_all(
            email,
            &[
                "jane.doe@example.com",
                "j+tag@mail.example.co.uk",
                "first_last-1@sub-domain.example.org",
                "X@EXAMPLE.IO",
                "a.b.c%d@ex-ample.travel",
            ],
            &[
                "user@localhost",
                "@example.com",
                "name@",
                "a@b.c",
                "git@github",
                "price: 5 @ 10.00",
                "foo@bar.123",
                "@@@@",
                "handle @someone on twitter",
                "weird@-example.com",
            ],
        );
        // A trailing dot ends the sentence, not the domain.
        assert_eq!(found(email, "mail x@ex.com."), vec!["x@ex.com"]);
        assert_eq!(found(email, "a@x.com,b@y.org"), vec!["a@x.com", "b@y.org"]);
        assert_eq!(found(email, ".lead@x.com"), vec!["lead@x.com"]);
        assert_eq!(found(email, "é@x.com ü"), vec![] as Vec<&str>);
    }

    #[test]
    fn phone_corpus() {
        assert_all(
            phone,
            &[
                "(555) 123-4567",
                "555-123-4567",
                "555.123.4567",
                "+1 555 123 4567",
                "+1-555-123-4567",
                "1-800-555-0199",
                "+44 20 7946 0958",
                "+44 (0)20 7946 0958",
                "+4915112345678",
                "+33 1 23 45 67 89",
                "+1 (555) 123-4567",
            ],
            &[
                "5551234567",
                "2024-01-15",
                "2024-01-15 12:30:45",
                "version 1.2.3.4",
                "192.168.100.200",
                "555 123 4567",
                "order 123-456-7890",
                "12-555-123-4567",
                "555-123-45678",
                "555-123.4567",
                "+1234",
                "call ext. 4567",
                "+12345678901234567",
                "ISBN 978-3-16-148410-0",
                "a555-123-4567",
            ],
        );
    }

    #[test]
    fn phone_followed_by_other_numbers() {
        assert_eq!(
            found(phone, "+44 20 7946 0958 123-45-6789"),
            vec!["+44 20 7946 0958"]
        );
        assert_eq!(
            found(phone, "+44 20 7946 0958 1234"),
            vec!["+44 20 7946 0958"]
        );
    }

    #[test]
    fn credit_card_corpus() {
        assert_all(
            credit_card,
            &[
                "4111111111111111",
                "4111 1111 1111 1111",
                "4111-1111-1111-1111",
                "5500 0000 0000 0004",
                "378282246310005",
                "3782 822463 10005",
                "6011111111111117",
                "3530111333300000",
                "2223000048400011",
                "4222222222222",
                "30569309025904",
            ],
            &[
                "4111111111111112",
                "4111 1111 1111 1112",
                "1234567812345670",
                "0000000000000000",
                "41111111111111111111111",
                "4111-1111 1111-1111",
                "order 7992739871300",
                "1700000000000",
                "4111111111111111a",
                "x4111111111111111",
                "41 11 11 11 11 11 11 11",
                "550e8400-e29b-41d4-a716-446655440000",
            ],
        );
        // Space-grouped card followed by another group (an expiry year).
        assert_eq!(
            found(credit_card, "4111 1111 1111 1111 2025"),
            vec!["4111 1111 1111 1111"]
        );
        assert_eq!(
            found(credit_card, "ref 7334 378282246310005"),
            vec!["378282246310005"]
        );
        assert_eq!(
            found(credit_card, "1 4111 1111 1111 1111"),
            vec!["4111 1111 1111 1111"]
        );
        assert_eq!(
            found(credit_card, "7334 4111 1111 1111 1111"),
            vec!["4111 1111 1111 1111"]
        );
        assert!(found(credit_card, "4111-1111-1111-1111-2222").is_empty());
    }

    #[test]
    fn iban_corpus() {
        assert_all(
            iban,
            &[
                "DE89370400440532013000",
                "DE89 3704 0044 0532 0130 00",
                "GB82WEST12345698765432",
                "GB82 WEST 1234 5698 7654 32",
                "FR1420041010050500013M02606",
                "NL91ABNA0417164300",
                "NO9386011117947",
            ],
            &[
                "DE88370400440532013000",
                "DE89 3704 0044 0532 0130 01",
                "GB82WEST1234569876543",
                "XX89370400440532013000",
                "DE8937040044053201300012",
                "aDE89370400440532013000",
                "DE89",
            ],
        );
    }

    #[test]
    fn us_ssn_corpus() {
        assert_all(
            us_ssn,
            &["123-45-6789", "078-05-1120", "899-99-9999", "001-01-0001"],
            &[
                "000-12-3456",
                "666-12-3456",
                "900-12-3456",
                "987-65-4321",
                "123-00-4567",
                "123-45-0000",
                "123456789",
                "123-45-67890",
                "1123-45-6789",
                "2024-01-15",
                "12-123-45-6789",
                "123 45 6789",
            ],
        );
    }

    #[test]
    fn ipv4_corpus() {
        assert_all(
            ipv4,
            &[
                "192.168.1.10",
                "10.0.0.1",
                "8.8.8.8",
                "255.255.255.255",
                "172.16.254.3",
            ],
            &[
                "1.2.3.4.5",
                "version 10.0.19041.1",
                "256.1.1.1",
                "192.168.01.1",
                "v1.2.3.4",
                "1.2.3",
                "3.14159",
                "1.2.3.4a",
                "2024.01.15",
            ],
        );
        assert_eq!(found(ipv4, "host 10.1.2.3:8080 up"), vec!["10.1.2.3"]);
        assert_eq!(found(ipv4, "at 10.1.2.3."), vec!["10.1.2.3"]);
    }

    #[test]
    fn ipv6_corpus() {
        assert_all(
            ipv6,
            &[
                "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
                "2001:db8:85a3::8a2e:370:7334",
                "fe80::1",
                "2001:db8::",
                "::ffff:192.168.1.1",
                "FE80::0202:B3FF:FE1E:8329",
                "1:2:3:4:5:6:7:8",
            ],
            &[
                "::",
                "::1",
                "12:30",
                "12:30:45",
                "at 12:30:45.123",
                "00:1a:2b:3c:4d:5e",
                "550e8400-e29b-41d4-a716-446655440000",
                "std::vec::Vec",
                "dead::beef",
                "1:2:3:4:5:6:7:8:9",
                "1::2::3",
                "fe80::1g",
                "12345::1",
                "a:b:c",
            ],
        );
        assert_eq!(found(ipv6, "addr:fe80::1 ok"), vec!["fe80::1"]);
        assert_eq!(found(ipv6, "at fe80::1."), vec!["fe80::1"]);
        assert_eq!(found(ipv6, "[2001:db8::1]:443"), vec!["2001:db8::1"]);
    }

    #[test]
    fn checksums() {
        assert!(luhn(b"79927398713"));
        assert!(!luhn(b"79927398710"));
        assert!(iban_checksum_ok(b"GB82WEST12345698765432"));
        assert!(!iban_checksum_ok(b"GB83WEST12345698765432"));
        assert!(!iban_checksum_ok(b"GB"));
    }
}
