//! Requests covered by a signature tollgate must not break: AWS Signature Version 4 (Bedrock as botocore and
//! every AWS SDK send it), in the `Authorization` header or presigned in the query string.
//!
//! SigV4 signs a canonical request made of the method, the path, the query, every header named in
//! `SignedHeaders` (botocore names nearly all it sends: `content-length`, `content-type`, `host`,
//! `x-amz-date`, and a `traceparent` an instrumented app set) and the SHA-256 of the body (AWS docs, "Create a
//! canonical request for Signature Version 4"). Any change to the body or to one of those headers makes the
//! provider answer 403 `SignatureDoesNotMatch`. Headers outside `SignedHeaders` may be added or changed.
//!
//! Pure: the host reads the headers and the path, and asks [`Signature::covers_header`] before it touches a
//! header and [`Signature::body`] before it rewrites the body.

/// What a signature on a request covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Signature {
    /// The body's hash is part of what was signed (or declared in `x-amz-content-sha256`).
    pub body: bool,
    /// The signed headers, lowercase and `;`-separated (`SignedHeaders`, or `X-Amz-SignedHeaders` of a
    /// presigned URL, decoded).
    pub headers: String,
}

impl Signature {
    /// Whether changing or removing header `name` (lowercase) breaks the signature.
    pub fn covers_header(&self, name: &str) -> bool {
        self.headers.split(';').any(|h| h == name)
    }
}

/// `x-amz-content-sha256` value that exempts the body from the signature.
const UNSIGNED_PAYLOAD: &[u8] = b"UNSIGNED-PAYLOAD";

/// The signature on a request, from its `authorization` and `x-amz-content-sha256` headers and its `:path`;
/// None when nothing is signed.
pub fn detect(
    authorization: Option<&str>,
    content_sha256: Option<&str>,
    path: &str,
) -> Option<Signature> {
    // A declared payload hash (S3 checks it against the body; a signer after us would sign it) covers the
    // body whatever signs the request.
    let hashed = content_sha256.is_some_and(|v| {
        !v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(UNSIGNED_PAYLOAD)
    });
    // `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=a;b;c, Signature=…` (SigV4a: `AWS4-ECDSA-P256-SHA256`).
    let auth = authorization.map_or(&b""[..], |a| a.as_bytes().trim_ascii_start());
    let scheme = auth
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"AWS4-"));
    if scheme && auth.contains(&b' ') {
        return Some(Signature {
            body: content_sha256.is_none() || hashed,
            headers: split_headers(value_after(auth, b"SignedHeaders=")),
        });
    }
    // A presigned URL carries its signature in the query, and signs the payload as UNSIGNED-PAYLOAD unless
    // it declares a hash. The parameter names are spelled as AWS defines them.
    let path = path.as_bytes();
    if let Some(q) = path.iter().position(|&b| b == b'?') {
        let query = path.get(q..).unwrap_or_default();
        if find(query, b"X-Amz-Signature=").is_some() {
            return Some(Signature {
                body: hashed,
                headers: split_headers(value_after(query, b"X-Amz-SignedHeaders=")),
            });
        }
    }
    hashed.then(|| Signature {
        body: true,
        headers: String::new(),
    })
}

/// The first position of `needle` in `hay` (short inputs: a header value, a query).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The value following `key` in `list`, up to the next `,`, `&` or blank (empty when absent).
fn value_after<'a>(list: &'a [u8], key: &[u8]) -> &'a [u8] {
    let Some(at) = find(list, key) else {
        return &[];
    };
    let rest = list.get(at + key.len()..).unwrap_or_default();
    let end = rest
        .iter()
        .position(|&b| matches!(b, b',' | b'&' | b' ' | b'\t'))
        .unwrap_or(rest.len());
    rest.get(..end).unwrap_or_default()
}

/// `a;b;c` (in a query percent-encoded `a%3Bb%3Bc`), lowercase and without blanks. Header names are tokens,
/// so only the separator can be encoded.
fn split_headers(v: &[u8]) -> String {
    let mut out = String::with_capacity(v.len());
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        i += 1;
        if b == b'%'
            && v.get(i..i + 2)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"3B"))
        {
            out.push(';');
            i += 2;
        } else if !b.is_ascii_whitespace() {
            out.push(char::from(b.to_ascii_lowercase()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTOCORE: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260101/us-east-1/bedrock/aws4_request, \
         SignedHeaders=content-type;host;traceparent;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    #[test]
    fn authorization_header_lists_signed_headers_and_covers_the_body() {
        let s = detect(Some(BOTOCORE), None, "/model/m/converse").unwrap();
        assert!(s.body);
        assert_eq!(s.headers, "content-type;host;traceparent;x-amz-date");
        assert!(s.covers_header("traceparent"));
        assert!(!s.covers_header("content-length"));
    }

    #[test]
    fn unsigned_payload_leaves_the_body_free() {
        let s = detect(Some(BOTOCORE), Some("UNSIGNED-PAYLOAD"), "/").unwrap();
        assert!(!s.body);
        let s = detect(Some(BOTOCORE), Some(&"ab".repeat(32)), "/").unwrap();
        assert!(s.body);
    }

    #[test]
    fn sigv4a_and_case_and_spacing() {
        let a = "aws4-ecdsa-p256-sha256   Credential=X/20260101/bedrock/aws4_request,SignedHeaders=Host;X-Amz-Date,Signature=ab";
        let s = detect(Some(a), None, "/").unwrap();
        assert_eq!(s.headers, "host;x-amz-date");
        assert!(s.covers_header("host") && !s.covers_header("host;x-amz-date"));
    }

    #[test]
    fn presigned_query() {
        let p = "/model/m/invoke?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-SignedHeaders=host%3Bx-amz-date&X-Amz-Signature=ab";
        let s = detect(None, None, p).unwrap();
        assert_eq!(s.headers, "host;x-amz-date");
        assert!(s.covers_header("x-amz-date"));
        assert!(
            !s.body,
            "a presigned URL signs UNSIGNED-PAYLOAD unless a hash is declared"
        );
        assert!(detect(None, Some(&"0".repeat(64)), p).unwrap().body);
    }

    #[test]
    fn declared_payload_hash_alone_covers_the_body() {
        let s = detect(None, Some(&"e3".repeat(32)), "/").unwrap();
        assert!(s.body && s.headers.is_empty());
        assert_eq!(detect(None, Some("UNSIGNED-PAYLOAD"), "/"), None);
    }

    #[test]
    fn other_schemes_and_plain_requests_are_not_signed() {
        for a in [
            "Bearer sk-123",
            "Basic dXNlcg==",
            "AWS AKID:sig",
            "",
            "AWS4-HMAC-SHA256",
        ] {
            assert_eq!(
                detect(Some(a), None, "/v1/chat/completions?x=1"),
                None,
                "{a}"
            );
        }
        assert_eq!(detect(None, None, "/v1/chat/completions"), None);
        assert_eq!(detect(None, None, "/x?X-Amz-Signaturez=1"), None);
    }
}
