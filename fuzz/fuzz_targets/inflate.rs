#![no_main]
//! gzip / deflate / br decoding of arbitrary bytes in arbitrary chunks: no panic, output within the cap,
//! and chunking never changes the output.
use libfuzzer_sys::fuzz_target;
use tollgate::stream::{ContentEncoding, Inflater};

const CAP: u64 = 1 << 20;

fn run(enc: ContentEncoding, pieces: &[&[u8]]) -> (Vec<u8>, bool) {
    let mut inf = Inflater::new(enc, CAP);
    let mut out = Vec::new();
    let mut ok = true;
    for p in pieces {
        if inf.push(p, &mut |o| out.extend_from_slice(o)).is_err() {
            ok = false;
            break;
        }
    }
    if ok {
        ok = inf.finish().is_ok();
    }
    assert!(out.len() as u64 <= CAP);
    assert_eq!(inf.total_out(), out.len() as u64);
    (out, ok)
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let enc = match sel % 4 {
        0 => ContentEncoding::Gzip,
        1 => ContentEncoding::Deflate,
        2 => ContentEncoding::Brotli,
        _ => ContentEncoding::Identity,
    };
    let (whole, whole_ok) = run(enc, &[body]);
    let (split, split_ok) = run(enc, &tollgate_fuzz::chunks(sel, body));
    if whole_ok && split_ok {
        assert_eq!(whole, split);
    }
    let _ = tollgate::stream::inflate_all(enc, body, CAP);
});
