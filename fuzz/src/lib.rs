//! Shared helpers for the fuzz targets: chunking driven by the input, and frame-by-frame comparison so a
//! target can check that any chunking of a body decodes exactly like the whole body.

use tollgate::stream::Framing;
use tollgate::stream::{Frame, Framer, Limits};

/// Split `data` into chunks whose sizes come from `seed` (1..=64 bytes, then varying).
pub fn chunks(seed: u8, data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    let mut s = u32::from(seed) | 1;
    while !rest.is_empty() {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let n = (s % 64 + 1) as usize;
        let (a, b) = rest.split_at(n.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Frames as owned text, for comparing two decodings.
pub fn decode(framing: Framing, limits: &Limits, pieces: &[&[u8]]) -> Vec<String> {
    let mut framer = Framer::new(framing, limits);
    let mut out = Vec::new();
    let mut on = |f: Frame<'_>| out.push(format!("{f:?}"));
    for p in pieces {
        framer.push(p, &mut on);
    }
    framer.finish(&mut on);
    out
}

/// The chunking-invariance property: any split gives the frames the whole body gives.
pub fn check_framing(framing: Framing, data: &[u8]) {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    let limits = Limits {
        max_event: 1024,
        max_body: 4096,
        max_inflated: 1 << 20,
    };
    let whole = decode(framing, &limits, &[body]);
    let split = decode(framing, &limits, &chunks(seed, body));
    assert_eq!(whole, split, "chunking changed the frames");
}
