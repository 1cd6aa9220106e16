//! Credential detectors: openai_key, anthropic_key, aws_access_key, github_token, jwt, private_key,
//! bearer_token.
//!
//! Each starts from a literal prefix found with memchr's substring search (`sk-`, `AKIA`, `eyJ`, `-----BEGIN `
//! …), then checks the shape of the token after it and that it is not glued to a longer word.

use super::scan::{
    at, before, finder, is_alnum, is_digit, run_len, starts_with_at, starts_with_ci,
};

/// Characters of API-key bodies (`sk-proj-…`, `sk-ant-api03-…`).
fn is_key_char(c: u8) -> bool {
    is_alnum(c) || c == b'_' || c == b'-'
}

/// Minimum body length after `sk-`: real keys are 40+ characters; 20 keeps `sk-learn` and friends out.
const MIN_SK_BODY: usize = 20;

/// A key body must look random: at least one digit and one letter (hyphenated words have no digits).
fn looks_random(body: &[u8]) -> bool {
    body.iter().any(|c| is_digit(*c)) && body.iter().any(u8::is_ascii_alphabetic)
}

/// `sk-…` keys; `anthropic` selects `sk-ant-…` and excludes them otherwise.
fn sk_keys(text: &str, out: &mut Vec<(usize, usize)>, anthropic: bool) {
    let b = text.as_bytes();
    let mut from = 0usize;
    for p in finder!(b"sk-").find_iter(b) {
        if p < from || is_key_char(before(b, p)) {
            continue;
        }
        let is_ant = starts_with_at(b, p, b"sk-ant-");
        if is_ant != anthropic {
            continue;
        }
        let body_start = p + if is_ant { 7 } else { 3 };
        let n = run_len(b, body_start, usize::MAX, is_key_char);
        let body = b.get(body_start..body_start + n).unwrap_or(&[]);
        if n >= MIN_SK_BODY && looks_random(body) {
            out.push((p, body_start + n));
            from = body_start + n;
        }
    }
}

/// OpenAI keys: `sk-…`, `sk-proj-…`, `sk-svcacct-…` (not `sk-ant-…`).
pub fn openai_key(text: &str, out: &mut Vec<(usize, usize)>) {
    sk_keys(text, out, false)
}

/// Anthropic keys: `sk-ant-…` (`sk-ant-api03-…`, `sk-ant-admin01-…`).
pub fn anthropic_key(text: &str, out: &mut Vec<(usize, usize)>) {
    sk_keys(text, out, true)
}

/// AWS access key ids: `AKIA` (long-term) or `ASIA` (temporary) + 16 uppercase alphanumerics.
pub fn aws_access_key(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let upper = |c: u8| c.is_ascii_uppercase() || is_digit(c);
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for prefix in [finder!(b"AKIA"), finder!(b"ASIA")] {
        for p in prefix.find_iter(b) {
            if is_alnum(before(b, p)) {
                continue;
            }
            let e = p + 20;
            if run_len(b, p + 4, 16, upper) == 16 && !is_alnum(at(b, e)) {
                hits.push((p, e));
            }
        }
    }
    crate::sort::sort_by(&mut hits, |a, b| a < b);
    out.extend(hits);
}

/// GitHub tokens: `ghp_ gho_ ghu_ ghs_ ghr_` + 36+ alphanumerics, and fine-grained `github_pat_…`.
pub fn github_token(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut hits: Vec<(usize, usize)> = Vec::new();
    for p in finder!(b"gh").find_iter(b) {
        if is_alnum(before(b, p)) || before(b, p) == b'_' {
            continue;
        }
        if matches!(at(b, p + 2), b'p' | b'o' | b'u' | b's' | b'r') && at(b, p + 3) == b'_' {
            let n = run_len(b, p + 4, usize::MAX, is_alnum);
            if n >= 36 && at(b, p + 4 + n) != b'_' {
                hits.push((p, p + 4 + n));
            }
        }
    }
    for p in finder!(b"github_pat_").find_iter(b) {
        if is_key_char(before(b, p)) {
            continue;
        }
        let n = run_len(b, p + 11, usize::MAX, |c| is_alnum(c) || c == b'_');
        if n >= 22 {
            hits.push((p, p + 11 + n));
        }
    }
    crate::sort::sort_by(&mut hits, |a, b| a < b);
    out.extend(hits);
}

fn is_b64url(c: u8) -> bool {
    is_alnum(c) || c == b'-' || c == b'_'
}

fn b64url_value(c: u8) -> Option<u32> {
    Some(u32::from(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    }))
}

/// The JOSE header decodes to a JSON object: `{"` … `}` (whitespace aside).
fn header_is_json_object(seg: &[u8]) -> bool {
    // Headers are small; a huge first segment is not a JWT header worth decoding.
    if seg.len() > 2048 {
        return false;
    }
    let mut decoded = Vec::with_capacity(seg.len() * 3 / 4 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in seg {
        let Some(v) = b64url_value(c) else {
            return false;
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            decoded.push(((acc >> bits) & 0xff) as u8);
        }
        acc &= (1 << bits) - 1;
    }
    let trimmed = decoded.trim_ascii_end();
    trimmed.starts_with(b"{\"") && trimmed.ends_with(b"}")
}

/// JWTs (and JWEs): base64url segments separated by dots, the first one a JSON object header (`eyJ` is
/// `{"` encoded). Three segments, the last possibly empty (`alg: none`), or five for JWE.
pub fn jwt(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut from = 0usize;
    for p in finder!(b"eyJ").find_iter(b) {
        let prev = before(b, p);
        if p < from || is_b64url(prev) || prev == b'.' {
            continue;
        }
        let n1 = run_len(b, p, usize::MAX, is_b64url);
        let mut e = p + n1;
        let mut segments = 1usize;
        while at(b, e) == b'.' && segments < 5 {
            let n = run_len(b, e + 1, usize::MAX, is_b64url);
            // An empty third segment is an unsigned token; a dot after a signed one ends the sentence.
            if n == 0 && segments >= 3 {
                break;
            }
            e += 1 + n;
            segments += 1;
            if n == 0 {
                break;
            }
        }
        let seg2_len = b
            .get(p + n1 + 1..)
            .map_or(0, |s| s.iter().take_while(|c| is_b64url(**c)).count());
        if n1 >= 10
            && seg2_len >= 4
            && segments >= 3
            && header_is_json_object(b.get(p..p + n1).unwrap_or(&[]))
        {
            out.push((p, e));
            from = e;
        }
    }
}

/// Longest PEM label we accept before `PRIVATE KEY` (`ENCRYPTED `, `OPENSSH `, `RSA `, ...).
const MAX_PEM_LABEL: usize = 40;
const PRIVATE_KEY_DASHES: &[u8] = b"PRIVATE KEY-----";
/// Longest `-----END … PRIVATE KEY-----` line: the stream redactor keeps this much tail while it drops a
/// key body, so an END marker split across pieces is still seen.
pub(crate) const MAX_PEM_END_LINE: usize = 9 + MAX_PEM_LABEL + PRIVATE_KEY_DASHES.len();

/// At `i` (just after `-----BEGIN ` or `-----END `): `[A-Z0-9 ]{0,40}PRIVATE KEY-----`; returns its end.
fn pem_label_end(b: &[u8], i: usize) -> Option<usize> {
    let n = run_len(b, i, MAX_PEM_LABEL + 1, |c| {
        c.is_ascii_uppercase() || is_digit(c) || c == b' '
    });
    // The run swallows "PRIVATE KEY" itself (all uppercase); look for the suffix in the label window.
    (0..=n.min(MAX_PEM_LABEL))
        .map(|k| i + k)
        .find(|&q| starts_with_at(b, q, PRIVATE_KEY_DASHES))
        .map(|q| q + PRIVATE_KEY_DASHES.len())
}

/// End of the first `-----END … PRIVATE KEY-----` line at or after `from`.
pub(crate) fn pem_end(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    finder!(b"-----END ")
        .find_iter(rest)
        .find_map(|q| pem_label_end(b, from + q + 9))
}

/// End of the first valid `-----BEGIN … PRIVATE KEY-----` line at or after `from`.
pub(crate) fn pem_header_end(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    finder!(b"-----BEGIN ")
        .find_iter(rest)
        .find_map(|q| pem_label_end(b, from + q + 11))
}

/// PEM private-key blocks, BEGIN line to END line. A BEGIN without its END redacts to the end of the text:
/// a truncated key is still a key.
pub fn private_key(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut from = 0usize;
    while let Some(off) = b
        .get(from..)
        .and_then(|rest| finder!(b"-----BEGIN ").find(rest))
    {
        let p = from + off;
        let Some(header_end) = pem_label_end(b, p + 11) else {
            from = p + 11;
            continue;
        };
        let end = pem_end(b, header_end).unwrap_or(b.len());
        out.push((p, end));
        from = end;
    }
}

fn is_b64token(c: u8) -> bool {
    is_alnum(c) || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Minimum token length after `Bearer `.
const MIN_BEARER_TOKEN: usize = 16;

/// `Bearer <token>` (RFC 6750 b64token, case-insensitive scheme): only the token is reported. The token must
/// be 16+ characters and look like a credential (a digit, a symbol, or an inner capital), so prose such as
/// "bearer of bad news" or "Bearer responsibilities" is not a token.
pub fn bearer_token(text: &str, out: &mut Vec<(usize, usize)>) {
    let b = text.as_bytes();
    let mut from = 0usize;
    while let Some(off) = b
        .get(from..)
        .and_then(|rest| memchr::memchr2(b'B', b'b', rest))
    {
        let p = from + off;
        from = p + 1;
        if !starts_with_ci(b, p, b"bearer") || is_alnum(before(b, p)) {
            continue;
        }
        let spaces = run_len(b, p + 6, 4, |c| c == b' ' || c == b'\t');
        if spaces == 0 {
            continue;
        }
        let t = p + 6 + spaces;
        let n = run_len(b, t, usize::MAX, is_b64token);
        let token = b.get(t..t + n).unwrap_or(&[]);
        let credential_like = token.iter().any(|c| is_digit(*c) || !is_alnum(*c))
            || token.iter().skip(1).any(u8::is_ascii_uppercase);
        if n >= MIN_BEARER_TOKEN && credential_like {
            out.push((t, t + n));
            from = t + n;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(f: fn(&str, &mut Vec<(usize, usize)>), text: &str) -> Vec<String> {
        let mut v = Vec::new();
        f(text, &mut v);
        v.iter().map(|&(s, e)| text[s..e].to_owned()).collect()
    }

    fn assert_all(f: fn(&str, &mut Vec<(usize, usize)>), positives: &[&str], negatives: &[&str]) {
        for p in positives {
            let text = format!("key: \"{p}\" ok");
            assert_eq!(
                found(f, &text),
                vec![p.to_string()],
                "should match: {text:?}"
            );
            assert_eq!(
                found(f, p),
                vec![p.to_string()],
                "should match alone: {p:?}"
            );
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
    fn openai_key_corpus() {
        assert_all(
            openai_key,
            &[
                "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKL",
                "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz_12-34567890abcdef",
                "sk-svcacct-0123456789abcdefghijKLMNOP",
            ],
            &[
                "risk-assessment-for-the-2024-budget-plan",
                "sk-learn",
                "use sk-learn-and-numpy-and-pandas-for-this",
                "task-sk-abcdefghijklmnopqrstuvwxyz0123",
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789",
                "sk-short123",
                "ask-me-anything-about-the-2024-elections",
                "desk-1234567890123456789012",
            ],
        );
    }

    #[test]
    fn anthropic_key_corpus() {
        assert_all(
            anthropic_key,
            &[
                "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789-_abcdefAA",
                "sk-ant-admin01-0123456789abcdefghijklmnop",
            ],
            &[
                "sk-abcdefghijklmnopqrstuvwxyz0123456789",
                "sk-ant-",
                "sk-ant-elope-and-other-animals-in-the-zoo",
                "mask-ant-api03-abcdefghijklmnopqrstuvwxyz0123",
            ],
        );
    }

    #[test]
    fn aws_access_key_corpus() {
        assert_all(
            aws_access_key,
            &["AKIAIOSFODNN7EXAMPLE", "ASIAY34FZKBOKMUTVV7A"],
            &[
                "AKIAIOSFODNN7EXAMPL",
                "AKIAIOSFODNN7EXAMPLE1",
                "XAKIAIOSFODNN7EXAMPLE",
                "AKIAiosfodnn7example",
                "ASIAN cuisine",
                "AKIA",
            ],
        );
    }

    #[test]
    fn github_token_corpus() {
        assert_all(
            github_token,
            &[
                "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
                "gho_16C7e42F292c6912E7710c838347Ae178B4a",
                "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
                "github_pat_11ABCDEFG0123456789abc_defghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456",
            ],
            &[
                "ghp_short",
                "ghx_16C7e42F292c6912E7710c838347Ae178B4a",
                "xghp_16C7e42F292c6912E7710c838347Ae178B4a",
                "ghp_16C7e42F292c6912E7710c838347Ae178B4",
                "github_pat_short",
                "the ghost_of_christmas_past",
            ],
        );
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn jwt_corpus() {
        assert_all(
            jwt,
            &[JWT, "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
            &[
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
                "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ",
                "keyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIx.abc",
                "eyJustkidding.really.now",
                "eyJ.a.b",
            ],
        );
    }

    #[test]
    fn private_key_corpus() {
        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA1c\nabc+/=\n-----END RSA PRIVATE KEY-----";
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n-----END PRIVATE KEY-----";
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHz\n-----END ENCRYPTED PRIVATE KEY-----";
        let ssh = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----";
        assert_all(
            private_key,
            &[rsa, pkcs8, enc, ssh],
            &[
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
                "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
                "-----BEGIN PGP SIGNATURE-----",
                "-----BEGIN ",
            ],
        );
        // Unterminated: to the end of the text.
        let t = "before\n-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIO\ntruncated";
        assert_eq!(found(private_key, t), vec![t[7..].to_owned()]);
        // An END of another kind does not close the block.
        let t = "-----BEGIN PRIVATE KEY-----\nAA\n-----END CERTIFICATE-----\nBB\n-----END PRIVATE KEY----- after";
        assert_eq!(found(private_key, t), vec![t[..t.len() - 6].to_owned()]);
        assert!(MAX_PEM_END_LINE >= "-----END ENCRYPTED PRIVATE KEY-----".len());
    }

    #[test]
    fn bearer_token_corpus() {
        for (text, token) in [
            (
                "Authorization: Bearer abcdef0123456789abcdef",
                "abcdef0123456789abcdef",
            ),
            ("authorization: bearer ", ""),
            ("Bearer  AbCdEfGhIjKlMnOpQr", "AbCdEfGhIjKlMnOpQr"),
            ("BEARER x.y-z_w~a+b/c=d1234", "x.y-z_w~a+b/c=d1234"),
            (&format!("Bearer {JWT}"), JWT),
        ] {
            let want: Vec<String> = if token.is_empty() {
                vec![]
            } else {
                vec![token.to_owned()]
            };
            assert_eq!(found(bearer_token, text), want, "{text}");
        }
        for n in [
            "the bearer of bad news",
            "Bearer responsibilities",
            "Bearer token",
            "Bearer short12345",
            "cardbearer abcdef0123456789abcdef",
            "Bearerabcdef0123456789abcdef",
        ] {
            assert!(found(bearer_token, n).is_empty(), "{n}");
        }
    }
}
