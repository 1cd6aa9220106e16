//! Redaction of streamed text (model output deltas) with a bounded hold-back window.
//!
//! `push` appends a piece and releases everything except the last `hold_back` bytes, redacted; `finish`
//! releases the rest. A match that ends inside the window is still whole when it is released, so for any
//! match of at most `hold_back` bytes the output equals one-shot [`Redactor::redact`] of the whole text,
//! whatever the split points.
//!
//! The bound: a match longer than the window can straddle a release point. Its part before the window may
//! already have gone out unredacted (a 400-byte JWT arriving in small pieces with the default 256-byte
//! window), or, if it is recognisable in the window, it is released redacted through its current end and a
//! continuation arriving later is judged on its own. Raise `hold_back` if such matches matter.
//!
//! Private keys are the exception, because a PEM block is long and unmistakable from its first line: once a
//! `-----BEGIN … PRIVATE KEY-----` line is in the window with no END line after it, everything up to the
//! END line (or the end of the stream) is dropped as it arrives, keeping only enough tail to see an END line
//! split across pieces, and the single replacement is released when the block ends. The keyed hash is
//! computed incrementally, so the output still equals the one-shot output.

use super::secrets::{pem_end, pem_header_end, MAX_PEM_END_LINE};
use super::{Detector, Findings, Hit, Redactor, Source};
use sha2::{Digest, Sha256};

/// Default window: longer than any built-in match except private keys and long JWTs.
pub const DEFAULT_HOLD_BACK: usize = 256;
/// The window must hold a whole PEM BEGIN line so the private-key mode can start before any of it leaves.
const MIN_HOLD_BACK: usize = 96;
/// Released bytes kept in front of the window so boundary checks (`is the previous byte a letter?`) see
/// the same neighbours as in one-shot mode.
const CONTEXT: usize = 64;

struct Pem {
    /// Inner HMAC state over the block so far (keyed-hash replacement only).
    hash: Option<Sha256>,
    /// Not-yet-hashed end of the block, at most `MAX_PEM_END_LINE` bytes after each step.
    tail: String,
}

/// Incremental redactor for one stream. Memory: `hold_back` × 5/4 + `CONTEXT` + the largest piece pushed.
/// Text leaves in steps of at least `hold_back / 4` bytes, each step rescanning the held window, so the
/// cost is O(bytes × 5) whatever the piece sizes.
pub struct StreamRedactor {
    hold_back: usize,
    buf: String,
    /// Bytes at the front of `buf` already released, kept as left context only.
    released: usize,
    pem: Option<Pem>,
    findings: Findings,
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl StreamRedactor {
    /// `hold_back` is raised to a minimum of 96 bytes.
    pub fn new(hold_back: usize) -> Self {
        StreamRedactor {
            hold_back: hold_back.max(MIN_HOLD_BACK),
            buf: String::new(),
            released: 0,
            pem: None,
            findings: Findings::default(),
        }
    }

    /// What was redacted so far.
    pub fn findings(&self) -> &Findings {
        &self.findings
    }

    /// Add `piece`; returns the text that is safe to release now (possibly empty).
    pub fn push(&mut self, r: &Redactor, piece: &str) -> String {
        let mut out = String::new();
        if let Some(pem) = self.pem.as_mut() {
            pem.tail.push_str(piece);
            if !self.pem_step(r, &mut out) {
                return out;
            }
        } else {
            self.buf.push_str(piece);
        }
        self.release(r, &mut out, false);
        out
    }

    /// End of stream: release everything held, redacted.
    pub fn finish(&mut self, r: &Redactor) -> String {
        let mut out = String::new();
        if let Some(pem) = self.pem.take() {
            // Unterminated block: redacted to the end, like one-shot.
            self.close_pem(r, &mut out, pem.hash, &pem.tail);
            self.buf.clear();
            self.released = 0;
            return out;
        }
        self.release(r, &mut out, true);
        self.buf.clear();
        self.released = 0;
        out
    }

    fn close_pem(&mut self, r: &Redactor, out: &mut String, hash: Option<Sha256>, last: &str) {
        let source = Source::Builtin(Detector::PrivateKey);
        match (hash, r.hasher()) {
            (Some(mut h), Some(k)) => {
                h.update(last.as_bytes());
                r.write_keyed(out, source, k.finish(h));
            }
            _ => r.write_replacement(out, source, last),
        }
        self.findings.add(Detector::PrivateKey.name());
    }

    /// Inside a private-key block: look for its END line; hash and drop what cannot be part of it.
    /// Returns true when the block ended (the rest of the tail is back in `buf`).
    fn pem_step(&mut self, r: &Redactor, out: &mut String) -> bool {
        let Some(mut pem) = self.pem.take() else {
            return true;
        };
        if let Some(end) = pem_end(pem.tail.as_bytes(), 0) {
            let block = pem.tail.get(..end).unwrap_or("");
            self.close_pem(r, out, pem.hash.take(), block);
            let ctx = floor_boundary(&pem.tail, end.saturating_sub(CONTEXT));
            self.buf = pem.tail.get(ctx..).unwrap_or("").to_owned();
            self.released = end.saturating_sub(ctx);
            return true;
        }
        let keep = floor_boundary(&pem.tail, pem.tail.len().saturating_sub(MAX_PEM_END_LINE));
        if let (Some(h), Some(done)) = (pem.hash.as_mut(), pem.tail.get(..keep)) {
            h.update(done.as_bytes());
        }
        pem.tail.drain(..keep);
        self.pem = Some(pem);
        false
    }

    /// Release `buf[released..cut]` redacted and keep the rest (plus context).
    fn release(&mut self, r: &Redactor, out: &mut String, finishing: bool) {
        // Nothing can leave while the unreleased text fits the window, and a scan is only worth its fixed
        // cost (every detector over the whole window) once a step of text can leave: with token-sized
        // deltas this scans once per ~`hold_back / 4` bytes instead of once per delta.
        let step = self.hold_back / 4;
        if !finishing
            && self.buf.len().saturating_sub(self.released) <= self.hold_back.saturating_add(step)
        {
            return;
        }
        let hits = r.hits(&self.buf);
        let len = self.buf.len();
        if !finishing && self.enter_pem(r, out, &hits) {
            return;
        }
        let mut cut = if finishing {
            len
        } else {
            floor_boundary(&self.buf, len.saturating_sub(self.hold_back))
        };
        cut = cut.max(self.released);
        for h in &hits {
            if h.start < cut && h.end > cut {
                cut = h.end;
            }
        }
        self.write_range(r, out, &hits, cut);
        let ctx = floor_boundary(&self.buf, cut.saturating_sub(CONTEXT));
        self.buf.drain(..ctx);
        self.released = cut - ctx;
    }

    /// Write `buf[released..cut]` with the hits that end inside it; a hit that began in the already
    /// released context is clipped to its unreleased part.
    fn write_range(&mut self, r: &Redactor, out: &mut String, hits: &[Hit], cut: usize) {
        let from = self.released;
        let Some(text) = self.buf.get(..cut) else {
            return;
        };
        let mut last = from;
        for h in hits.iter().filter(|h| h.end > from && h.end <= cut) {
            let start = h.start.max(from);
            let (Some(plain), Some(matched)) = (text.get(last..start), text.get(start..h.end))
            else {
                continue;
            };
            out.push_str(plain);
            r.write_replacement(out, h.source, matched);
            self.findings.add(r.name(h.source));
            last = h.end;
        }
        out.push_str(text.get(last..).unwrap_or(""));
    }

    /// If the last hit is a private-key block still open at the end of the buffer, release what precedes
    /// it and switch to dropping the block.
    fn enter_pem(&mut self, r: &Redactor, out: &mut String, hits: &[Hit]) -> bool {
        let Some((h, before)) = hits.split_last() else {
            return false;
        };
        let b = self.buf.as_bytes();
        if h.end != b.len() || h.source != Source::Builtin(Detector::PrivateKey) {
            return false;
        }
        let start = h.start.max(self.released);
        let Some(header_end) = pem_header_end(b, start) else {
            return false;
        };
        if pem_end(b, header_end).is_some() {
            return false;
        }
        self.write_range(r, out, before, start);
        let hash = r.hasher().map(|k| {
            let mut s = k.start();
            s.update(self.buf.get(start..header_end).unwrap_or("").as_bytes());
            s
        });
        let tail = self.buf.get(header_end..).unwrap_or("").to_owned();
        self.buf.clear();
        self.released = 0;
        self.pem = Some(Pem { hash, tail });
        self.pem_step(r, out);
        true
    }
}

// Keep the boundary helper honest: context must cover the two-byte look-behind of the number scanners.
const _: () = assert!(CONTEXT >= 2 && MIN_HOLD_BACK >= MAX_PEM_END_LINE);

#[cfg(test)]
mod tests {
    use super::super::{RedactionConfig, Replacement};
    use super::*;

    const KEY: &str = "sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz_12-34567890abcdef";

    fn text() -> String {
        format!(
            "Dear team, please write to jane.doe@example.com about the refund. The card on file is \
             4111 1111 1111 1111 (expired). Our deploy script still contains {KEY} which must be rotated \
             today; also ping +44 20 7946 0958 and check host 10.20.30.40 before noon. Thanks, Bob"
        )
    }

    fn stream_all(r: &Redactor, pieces: &[&str], hold_back: usize) -> (String, Findings) {
        let mut s = StreamRedactor::new(hold_back);
        let mut out = String::new();
        for p in pieces {
            out.push_str(&s.push(r, p));
            let window = hold_back.max(MIN_HOLD_BACK);
            assert!(s.buf.len() <= window + window / 4 + CONTEXT + p.len() + 8);
        }
        out.push_str(&s.finish(r));
        (out, s.findings.clone())
    }

    fn redactors() -> Vec<Redactor> {
        vec![
            Redactor::new(&RedactionConfig::default()).unwrap(),
            Redactor::new(&RedactionConfig {
                replacement: Replacement::KeyedHash {
                    key: b"stream".to_vec(),
                },
                ..Default::default()
            })
            .unwrap(),
        ]
    }

    #[test]
    fn every_two_way_split_matches_one_shot() {
        let t = text();
        for r in redactors() {
            let (want, want_f) = r.redact(&t);
            assert_eq!(want_f.count, 5, "{want}");
            for k in 0..=t.len() {
                if !t.is_char_boundary(k) {
                    continue;
                }
                let (got, f) = stream_all(&r, &[&t[..k], &t[k..]], 96);
                assert_eq!(got, want, "split at {k}");
                assert_eq!(f, want_f, "split at {k}");
            }
        }
    }

    #[test]
    fn small_pieces_match_one_shot() {
        let t = format!("{} é ü {}", text(), text());
        for r in redactors() {
            let (want, _) = r.redact(&t);
            for size in [1usize, 2, 3, 7, 13, 50, 97, 300] {
                let mut pieces = Vec::new();
                let mut i = 0;
                while i < t.len() {
                    let mut e = (i + size).min(t.len());
                    while !t.is_char_boundary(e) {
                        e += 1;
                    }
                    pieces.push(&t[i..e]);
                    i = e;
                }
                for hb in [96, 256] {
                    assert_eq!(stream_all(&r, &pieces, hb).0, want, "size {size} hold {hb}");
                }
            }
        }
    }

    #[test]
    fn releases_in_steps_and_holds_at_most_the_window_plus_a_step() {
        let r = &redactors()[0];
        let mut s = StreamRedactor::new(100);
        let out = s.push(r, &"x".repeat(1000));
        assert_eq!(out.len(), 900);
        // Held: 100 + 2, below the window plus a step (25): nothing leaves and nothing is scanned.
        assert_eq!(s.push(r, "yy"), "");
        // 100 + 26 held: everything but the window leaves.
        assert_eq!(
            s.push(r, &"z".repeat(24)),
            format!("{}yy{}", "x".repeat(100), "z".repeat(24))[..26]
        );
        assert_eq!(s.finish(r).len(), 100);
    }

    #[test]
    fn private_key_block_across_many_pieces() {
        let body: String = (0..40)
            .map(|i| format!("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC{i:04}\n"))
            .collect();
        let t = format!(
            "here it is:\n-----BEGIN RSA PRIVATE KEY-----\n{body}-----END RSA PRIVATE KEY-----\nand mail a@example.com"
        );
        for r in redactors() {
            let (want, want_f) = r.redact(&t);
            assert!(!want.contains("MIIE"));
            for size in [1usize, 5, 17, 64, 200] {
                let pieces: Vec<&str> = t
                    .as_bytes()
                    .chunks(size)
                    .map(|c| std::str::from_utf8(c).unwrap())
                    .collect();
                let (got, f) = stream_all(&r, &pieces, 96);
                assert_eq!(got, want, "size {size}");
                assert_eq!(f, want_f);
            }
            // Unterminated: redacted to the end, memory stays bounded.
            let open = format!("key:\n-----BEGIN PRIVATE KEY-----\n{}", body.repeat(20));
            let (want, _) = r.redact(&open);
            let mut s = StreamRedactor::new(96);
            let mut got = String::new();
            for c in open.as_bytes().chunks(33) {
                got.push_str(&s.push(&r, std::str::from_utf8(c).unwrap()));
                assert!(s.pem.as_ref().map_or(0, |p| p.tail.len()) <= MAX_PEM_END_LINE + 33);
            }
            got.push_str(&s.finish(&r));
            assert_eq!(got, want);
        }
    }
}
