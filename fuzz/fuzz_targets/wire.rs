#![no_main]
//! Before forwarding: any `authorization` / `x-amz-content-sha256` / `:path` (three lines of the input)
//! reads as a signature or none without panicking, and the signed-header list it keeps is lowercase with no
//! blanks; any `content-length` text reads as its digits or as absent; and whatever the sizes, tollgate
//! never pauses a body past `max_request_body` nor reads one before it is complete.
use libfuzzer_sys::fuzz_target;
use tollgate::exchange::hold::{self, Read, Step};
use tollgate::codec::sigv4;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(4, '\n');
    let (auth, sha, path) = (lines.next(), lines.next(), lines.next().unwrap_or(""));
    if let Some(s) = sigv4::detect(auth, sha, path) {
        assert!(!s.headers.bytes().any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace()));
    }
    let cl = hold::content_length(auth);
    if let (Some(n), Some(t)) = (cl, auth) {
        assert_eq!(t.trim().trim_start_matches('0').parse::<u64>().unwrap_or(0), n);
    }
    let b = |i: usize| u64::from(data.get(i).copied().unwrap_or(0));
    let max = usize::try_from(1 + (b(0) << 8 | b(1))).unwrap_or(1);
    let size = usize::try_from(b(2) << 8 | b(3)).unwrap_or(0);
    let framing = hold::Framing {
        end_of_stream: b(4) & 1 == 1,
        upgrade: b(4) & 2 == 2,
        content_length: (b(4) & 4 == 4).then_some(b(5) << 8 | b(6)),
    };
    let read = hold::read(&framing, max);
    for (first, eos) in [(true, false), (true, true), (false, false), (false, true)] {
        match hold::body_step(read, first, size, eos, max) {
            Step::Wait => assert!(size <= max && !eos && read == Read::Whole),
            Step::Inspect => assert!(size <= max && eos),
            Step::Pass => {}
        }
    }
});
