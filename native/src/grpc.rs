//! Unary gRPC calls over the dynamic-modules ABI, which has no gRPC callout (the proxy-wasm ABI's
//! `dispatch_grpc_call` has no counterpart): a streamed HTTP callout to an HTTP/2 cluster carries the gRPC
//! protocol itself. The request is the framed message with `content-type: application/grpc` and
//! `te: trailers`, sent whole; the answer's headers, data and trailers arrive in the stream hooks and this
//! file turns them into what the proxy-wasm ABI reports: a gRPC status code and the bare response message.
//!
//! Only the streamed callouts can do this: the one-shot callout answer carries headers and body but no
//! trailers, and a gRPC status travels in the trailers (docs/native-module.md, "Rate-limit service").
//!
//! Protocol facts (grpc/grpc `doc/PROTOCOL-HTTP2.md`): a message is framed as a 1-byte compressed flag, a
//! 4-byte big-endian length, then the message; the status is the `grpc-status` trailer, or a header of a
//! trailers-only response; an HTTP status other than 200 maps to a gRPC code (`doc/http-grpc-status-mapping.md`).

/// gRPC status codes used here.
pub mod code {
    pub const OK: u32 = 0;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const UNIMPLEMENTED: u32 = 12;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
    pub const UNAUTHENTICATED: u32 = 16;
    pub const PERMISSION_DENIED: u32 = 7;
}

/// Largest response message kept (a `RateLimitResponse` is well under a KiB).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// The length-prefixed message of a gRPC request (uncompressed).
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + message.len());
    out.push(0);
    out.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    out.extend_from_slice(message);
    out
}

/// The request headers of a unary call to `/<service>/<method>` with `:authority` `authority`. The
/// `grpc-timeout` header tells the service the deadline the callout enforces.
pub fn request_headers(
    service: &str,
    method: &str,
    authority: &str,
    timeout_ms: u64,
) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (":method", b"POST".to_vec()),
        (":path", format!("/{service}/{method}").into_bytes()),
        (":authority", authority.as_bytes().to_vec()),
        (":scheme", b"http".to_vec()),
        ("content-type", b"application/grpc".to_vec()),
        ("te", b"trailers".to_vec()),
        (
            "grpc-timeout",
            format!("{}m", timeout_ms.clamp(1, 99_999_999)).into_bytes(),
        ),
    ]
}

/// The answer of one call, assembled from the stream's hooks.
#[derive(Debug, Default)]
pub struct Answer {
    http_status: Option<u16>,
    grpc_status: Option<u32>,
    data: Vec<u8>,
    overflow: bool,
}

impl Answer {
    /// The response headers (a trailers-only answer carries `grpc-status` here).
    pub fn headers(&mut self, headers: &[(&[u8], &[u8])]) {
        for (k, v) in headers {
            if *k == b":status" {
                self.http_status = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
            } else if *k == b"grpc-status" {
                self.grpc_status = parse_code(v);
            }
        }
    }

    /// A response data chunk.
    pub fn data(&mut self, chunk: &[u8]) {
        if self.data.len().saturating_add(chunk.len()) > MAX_MESSAGE + 5 {
            self.overflow = true;
        } else {
            self.data.extend_from_slice(chunk);
        }
    }

    /// The response trailers.
    pub fn trailers(&mut self, trailers: &[(&[u8], &[u8])]) {
        for (k, v) in trailers {
            if *k == b"grpc-status" {
                self.grpc_status = parse_code(v);
            }
        }
    }

    /// The stream completed: the call's status and message.
    pub fn complete(&mut self) -> (u32, Vec<u8>) {
        let status = match (self.grpc_status, self.http_status) {
            (_, Some(h)) if h != 200 => from_http(h),
            (Some(s), _) => s,
            // A response without a status is an error (PROTOCOL-HTTP2.md); Envoy's own gRPC client says
            // INTERNAL for it.
            (None, _) => code::INTERNAL,
        };
        if status != code::OK {
            return (status, Vec::new());
        }
        if self.overflow {
            return (code::INTERNAL, Vec::new());
        }
        match unframe(&self.data) {
            Some(m) => (code::OK, m.to_vec()),
            None => (code::INTERNAL, Vec::new()),
        }
    }

    /// The stream was reset before completing: the status proxy-wasm would report (a connection that could
    /// not be made or was lost is UNAVAILABLE, a local reset — the callout's timeout — DEADLINE_EXCEEDED).
    pub fn reset(reason: u32) -> u32 {
        use crate::abi::stream_reset_reason::*;
        match reason {
            LOCAL_RESET => code::DEADLINE_EXCEEDED,
            CONNECTION_FAILURE
            | CONNECTION_TERMINATION
            | OVERFLOW
            | REMOTE_REFUSED_STREAM_RESET
            | LOCAL_REFUSED_STREAM_RESET
            | REMOTE_RESET => code::UNAVAILABLE,
            _ => code::UNKNOWN,
        }
    }
}

fn parse_code(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// grpc/grpc `doc/http-grpc-status-mapping.md`.
fn from_http(status: u16) -> u32 {
    match status {
        400 => code::INTERNAL,
        401 => code::UNAUTHENTICATED,
        403 => code::PERMISSION_DENIED,
        404 => code::UNIMPLEMENTED,
        429 | 502 | 503 | 504 => code::UNAVAILABLE,
        _ => code::UNKNOWN,
    }
}

/// The first message of a response body: None when it is not one whole uncompressed message.
fn unframe(data: &[u8]) -> Option<&[u8]> {
    let (flag, rest) = data.split_first()?;
    if *flag != 0 {
        return None; // compressed: tollgate never offers an encoding, so a service must not use one
    }
    let (len, rest) = rest.split_at_checked(4)?;
    let len = usize::try_from(u32::from_be_bytes(len.try_into().ok()?)).ok()?;
    rest.get(..len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_and_headers() {
        assert_eq!(frame(b"ab"), vec![0, 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(frame(b""), vec![0, 0, 0, 0, 0]);
        let h = request_headers(
            "envoy.service.ratelimit.v3.RateLimitService",
            "ShouldRateLimit",
            "rls",
            200,
        );
        let get = |k: &str| h.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_slice());
        assert_eq!(
            get(":path"),
            Some(b"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit".as_slice())
        );
        assert_eq!(get("content-type"), Some(b"application/grpc".as_slice()));
        assert_eq!(get("te"), Some(b"trailers".as_slice()));
        assert_eq!(get("grpc-timeout"), Some(b"200m".as_slice()));
    }

    #[test]
    fn a_unary_answer_in_pieces() {
        let mut a = Answer::default();
        a.headers(&[(b":status", b"200"), (b"content-type", b"application/grpc")]);
        let framed = frame(b"hello");
        for b in &framed {
            a.data(std::slice::from_ref(b));
        }
        a.trailers(&[(b"grpc-status", b"0")]);
        assert_eq!(a.complete(), (code::OK, b"hello".to_vec()));
    }

    #[test]
    fn errors() {
        let mut trailers_only = Answer::default();
        trailers_only.headers(&[(b":status", b"200"), (b"grpc-status", b"14")]);
        assert_eq!(trailers_only.complete().0, code::UNAVAILABLE);

        let mut no_status = Answer::default();
        no_status.headers(&[(b":status", b"200")]);
        no_status.data(&frame(b"x"));
        assert_eq!(no_status.complete().0, code::INTERNAL);

        let mut http_error = Answer::default();
        http_error.headers(&[(b":status", b"503")]);
        assert_eq!(http_error.complete().0, code::UNAVAILABLE);

        let mut truncated = Answer::default();
        truncated.headers(&[(b":status", b"200")]);
        truncated.data(&frame(b"hello")[..6]);
        truncated.trailers(&[(b"grpc-status", b"0")]);
        assert_eq!(truncated.complete().0, code::INTERNAL);

        let mut compressed = Answer::default();
        compressed.headers(&[(b":status", b"200")]);
        compressed.data(&[1, 0, 0, 0, 1, 9]);
        compressed.trailers(&[(b"grpc-status", b"0")]);
        assert_eq!(compressed.complete().0, code::INTERNAL);

        let mut huge = Answer::default();
        huge.headers(&[(b":status", b"200")]);
        huge.data(&vec![0; MAX_MESSAGE + 6]);
        huge.trailers(&[(b"grpc-status", b"0")]);
        assert_eq!(huge.complete().0, code::INTERNAL);

        use crate::abi::stream_reset_reason::*;
        assert_eq!(Answer::reset(CONNECTION_FAILURE), code::UNAVAILABLE);
        assert_eq!(Answer::reset(LOCAL_RESET), code::DEADLINE_EXCEEDED);
        assert_eq!(Answer::reset(99), code::UNKNOWN);
    }
}
