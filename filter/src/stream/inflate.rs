//! Incremental `Content-Encoding` decoding (gzip, deflate, br) for inspection.
//!
//! Input arrives in arbitrary chunks and is consumed as it comes: the gzip header and trailer are parsed by
//! a small state machine, deflate and brotli run through their streaming decoders. State is constant-size
//! (plus the codec's window), time is linear, output is handed out in pieces of at most [`OUT_PIECE`]
//! bytes, and the total output is capped as a decompression-bomb guard.

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use memchr::memchr;
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// Largest piece of output handed to the callback at once.
pub const OUT_PIECE: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    /// HTTP "deflate" is zlib-wrapped (RFC 9110 §8.4.1.2); raw deflate from misbehaving servers is tolerated.
    Deflate,
    Brotli,
}

impl ContentEncoding {
    /// The coding named by a `Content-Encoding` value. `None` for unknown codings and for stacked codings
    /// ("gzip, br"), which we don't undo; the caller counts those.
    pub fn from_header(value: &str) -> Option<ContentEncoding> {
        let v = value.trim();
        if v.contains(',') {
            return None;
        }
        if v.is_empty() || v.eq_ignore_ascii_case("identity") {
            Some(ContentEncoding::Identity)
        } else if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
            Some(ContentEncoding::Gzip)
        } else if v.eq_ignore_ascii_case("deflate") {
            Some(ContentEncoding::Deflate)
        } else if v.eq_ignore_ascii_case("br") {
            Some(ContentEncoding::Brotli)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// The compressed data is invalid (bad header, corrupt stream, checksum mismatch).
    Corrupt,
    /// The output reached the configured cap; decoding stopped there.
    Capped,
    /// The body ended before the compressed stream did.
    Truncated,
}

/// Gzip member framing (RFC 1952), tracked byte by byte so the header may be split anywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gz {
    /// Inside the 10-byte fixed header; `flags` is known from byte 3 on.
    Fixed {
        at: u8,
        flags: u8,
    },
    ExtraLen {
        at: u8,
        len: u16,
        flags: u8,
    },
    Extra {
        left: u16,
        flags: u8,
    },
    Name {
        flags: u8,
    },
    Comment {
        flags: u8,
    },
    HeaderCrc {
        left: u8,
    },
    Body,
    /// CRC32 and ISIZE, little-endian.
    Trailer {
        at: u8,
        buf: [u8; 8],
    },
    /// A member ended: another may follow (concatenated gzip); anything else is trailing junk.
    Between,
    /// Trailing junk after the last member (often zero padding): ignored to the end.
    Junk,
}

const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xE0;

enum Codec {
    Identity,
    Gzip {
        state: Gz,
        inflate: Box<InflateState>,
        crc: crate::codec::crc32::Hasher,
        /// Output of the current member, mod 2^32 (ISIZE).
        size: u32,
    },
    /// Waiting for the two bytes that tell zlib from raw deflate.
    DeflateSniff {
        buf: [u8; 2],
        have: u8,
    },
    Deflate(Box<InflateState>),
    Brotli(Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>),
    /// The stream ended properly; further input is ignored.
    Done,
}

pub struct Inflater {
    codec: Codec,
    max_output: u64,
    total_out: u64,
    saw_input: bool,
    out: Vec<u8>,
    error: Option<InflateError>,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("total_out", &self.total_out)
            .field("max_output", &self.max_output)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    pub fn new(encoding: ContentEncoding, max_output: u64) -> Inflater {
        let codec = match encoding {
            ContentEncoding::Identity => Codec::Identity,
            ContentEncoding::Gzip => Codec::Gzip {
                state: Gz::Fixed { at: 0, flags: 0 },
                inflate: InflateState::new_boxed(DataFormat::Raw),
                crc: crate::codec::crc32::Hasher::new(),
                size: 0,
            },
            ContentEncoding::Deflate => Codec::DeflateSniff {
                buf: [0; 2],
                have: 0,
            },
            // Strict: standard windows only (≤ 16 MiB), not the 1 GiB "large window" extension.
            ContentEncoding::Brotli => Codec::Brotli(Box::new(BrotliState::new_strict(
                StandardAlloc::default(),
                StandardAlloc::default(),
                StandardAlloc::default(),
            ))),
        };
        Inflater {
            codec,
            max_output,
            total_out: 0,
            saw_input: false,
            out: Vec::new(),
            error: None,
        }
    }

    /// Bytes produced so far.
    pub fn total_out(&self) -> u64 {
        self.total_out
    }

    /// The error that stopped decoding, if any; once set, every later call returns it and does nothing.
    pub fn error(&self) -> Option<InflateError> {
        self.error
    }

    /// Decode `input`, handing the output to `out` in pieces of at most [`OUT_PIECE`] bytes.
    pub fn push(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), InflateError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        if !input.is_empty() {
            self.saw_input = true;
        }
        let r = self.run(input, out);
        if let Err(e) = r {
            self.error = Some(e);
            self.release();
        }
        r
    }

    /// End of the body: an unfinished compressed stream is reported as `Truncated`.
    pub fn finish(&mut self) -> Result<(), InflateError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        // Nothing at all arrived (e.g. a 204 that still names a coding): nothing to complain about.
        let complete = !self.saw_input
            || match &self.codec {
                Codec::Identity | Codec::Done => true,
                Codec::Gzip { state, .. } => matches!(state, Gz::Between | Gz::Junk),
                _ => false,
            };
        self.release();
        if complete {
            Ok(())
        } else {
            self.error = Some(InflateError::Truncated);
            Err(InflateError::Truncated)
        }
    }

    /// Free the codec's window and buffers once the stream is over.
    fn release(&mut self) {
        self.codec = Codec::Done;
        self.out = Vec::new();
    }

    fn run(&mut self, mut input: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), InflateError> {
        if self.out.len() != OUT_PIECE {
            self.out = vec![0; OUT_PIECE];
        }
        let cap = Sink {
            max: self.max_output,
            total: &mut self.total_out,
        };
        let mut sink = cap;
        loop {
            match &mut self.codec {
                Codec::Done => return Ok(()),
                Codec::Identity => {
                    for piece in input.chunks(OUT_PIECE) {
                        sink.emit(piece, out)?;
                    }
                    return Ok(());
                }
                Codec::DeflateSniff { buf, have } => {
                    while usize::from(*have) < buf.len() {
                        let Some((&b, rest)) = input.split_first() else {
                            return Ok(());
                        };
                        if let Some(slot) = buf.get_mut(usize::from(*have)) {
                            *slot = b;
                        }
                        *have += 1;
                        input = rest;
                    }
                    // RFC 1950: CM = 8, CINFO ≤ 7 and the 16-bit header a multiple of 31.
                    let [cmf, flg] = *buf;
                    let zlib = cmf & 0x0F == 8
                        && cmf >> 4 <= 7
                        && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
                    let mut d = InflateState::new_boxed(if zlib {
                        DataFormat::Zlib
                    } else {
                        DataFormat::Raw
                    });
                    let head = *buf;
                    let done = inflate_into(&mut d, &head, &mut self.out, &mut sink, out, None)?;
                    self.codec = if done.is_some() {
                        Codec::Done
                    } else {
                        Codec::Deflate(d)
                    };
                }
                Codec::Deflate(d) => {
                    if inflate_into(d, input, &mut self.out, &mut sink, out, None)?.is_some() {
                        // Whatever follows the end of the zlib stream is ignored.
                        self.codec = Codec::Done;
                    }
                    return Ok(());
                }
                Codec::Brotli(state) => {
                    let mut avail_in = input.len();
                    let mut in_off = 0usize;
                    loop {
                        let mut avail_out = self.out.len();
                        let mut out_off = 0usize;
                        let mut written = 0usize;
                        let r = BrotliDecompressStream(
                            &mut avail_in,
                            &mut in_off,
                            input,
                            &mut avail_out,
                            &mut out_off,
                            &mut self.out,
                            &mut written,
                            state,
                        );
                        sink.emit(self.out.get(..out_off).unwrap_or(&[]), out)?;
                        match r {
                            BrotliResult::NeedsMoreOutput => continue,
                            BrotliResult::NeedsMoreInput => return Ok(()),
                            BrotliResult::ResultSuccess => {
                                self.codec = Codec::Done;
                                return Ok(());
                            }
                            BrotliResult::ResultFailure => return Err(InflateError::Corrupt),
                        }
                    }
                }
                Codec::Gzip {
                    state,
                    inflate,
                    crc,
                    size,
                } => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    if *state == Gz::Body {
                        let mut member = Member { crc, size };
                        let done = inflate_into(
                            inflate,
                            input,
                            &mut self.out,
                            &mut sink,
                            out,
                            Some(&mut member),
                        )?;
                        let Some(used) = done else {
                            return Ok(());
                        };
                        input = input.get(used..).unwrap_or(&[]);
                        *state = Gz::Trailer { at: 0, buf: [0; 8] };
                        continue;
                    }
                    input = gzip_framing(state, input, crc, size)?;
                    if *state == Gz::Body {
                        inflate.reset(DataFormat::Raw);
                    }
                }
            }
        }
    }
}

/// Decode a whole buffered body (a compressed request body) for inspection, at most `max_output` bytes.
/// The caller keeps forwarding the original bytes; this copy is only read.
pub fn inflate_all(
    encoding: ContentEncoding,
    input: &[u8],
    max_output: u64,
) -> Result<Vec<u8>, InflateError> {
    let mut inf = Inflater::new(encoding, max_output);
    let mut out = Vec::new();
    inf.push(input, &mut |piece| out.extend_from_slice(piece))?;
    inf.finish()?;
    Ok(out)
}

/// The output cap, shared by every codec.
struct Sink<'a> {
    max: u64,
    total: &'a mut u64,
}

impl Sink<'_> {
    fn emit(&mut self, piece: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), InflateError> {
        if piece.is_empty() {
            return Ok(());
        }
        let room = self.max.saturating_sub(*self.total);
        let len = piece.len() as u64;
        if len <= room {
            *self.total = self.total.saturating_add(len);
            out(piece);
            return Ok(());
        }
        // Hand out what fits, then stop: the rest of a bomb is never produced.
        let fit = usize::try_from(room).unwrap_or(usize::MAX).min(piece.len());
        if let Some(head) = piece.get(..fit).filter(|h| !h.is_empty()) {
            *self.total = self.total.saturating_add(fit as u64);
            out(head);
        }
        Err(InflateError::Capped)
    }
}

/// Running checks of one gzip member.
struct Member<'a> {
    crc: &'a mut crate::codec::crc32::Hasher,
    size: &'a mut u32,
}

/// Feed `input` to a deflate/zlib decoder until it is consumed and the output drained. Returns, when the
/// compressed stream ended, how much of `input` it took.
fn inflate_into(
    d: &mut InflateState,
    mut input: &[u8],
    buf: &mut [u8],
    sink: &mut Sink<'_>,
    out: &mut dyn FnMut(&[u8]),
    mut member: Option<&mut Member<'_>>,
) -> Result<Option<usize>, InflateError> {
    let mut taken = 0usize;
    loop {
        let r = inflate(d, input, buf, MZFlush::None);
        let (used, made) = (r.bytes_consumed, r.bytes_written);
        taken = taken.saturating_add(used);
        // `Buf`: no progress was possible with this input and room; anything else but Ok is corrupt
        // (a preset dictionary included: HTTP bodies have none).
        let ended = match r.status {
            Ok(MZStatus::StreamEnd) => true,
            Ok(MZStatus::Ok) | Err(MZError::Buf) => false,
            _ => return Err(InflateError::Corrupt),
        };
        input = input.get(used..).unwrap_or(&[]);
        let piece = buf.get(..made).unwrap_or(&[]);
        if let Some(m) = member.as_mut() {
            m.crc.update(piece);
            *m.size = m.size.wrapping_add(made as u32);
        }
        sink.emit(piece, out)?;
        if ended {
            return Ok(Some(taken));
        }
        // No progress either way: the decoder wants more input. Or no input left, and the output
        // buffer not full (a full one may hide more pending output).
        if (used == 0 && made == 0) || (input.is_empty() && made < buf.len()) {
            return Ok(None);
        }
    }
}

/// Advance through gzip header/trailer bytes; returns the input left once the state reaches `Body` (or all
/// input consumed).
fn gzip_framing<'a>(
    state: &mut Gz,
    mut input: &'a [u8],
    crc: &mut crate::codec::crc32::Hasher,
    size: &mut u32,
) -> Result<&'a [u8], InflateError> {
    while *state != Gz::Body {
        match *state {
            Gz::Name { flags } | Gz::Comment { flags } => {
                // Zero-terminated strings; skip them with one search.
                let Some(z) = memchr(0, input) else {
                    return Ok(&[]);
                };
                input = input.get(z + 1..).unwrap_or(&[]);
                *state = if matches!(*state, Gz::Name { .. }) && flags & FCOMMENT != 0 {
                    Gz::Comment { flags }
                } else {
                    after_strings(flags)
                };
                continue;
            }
            Gz::Extra { left, flags } => {
                let n = usize::from(left).min(input.len());
                input = input.get(n..).unwrap_or(&[]);
                let left = left - n as u16;
                *state = if left > 0 {
                    Gz::Extra { left, flags }
                } else {
                    after_extra(flags)
                };
                if left > 0 {
                    return Ok(&[]);
                }
                continue;
            }
            _ => {}
        }
        let Some((&b, rest)) = input.split_first() else {
            return Ok(&[]);
        };
        input = rest;
        *state = match *state {
            Gz::Junk => return Ok(&[]),
            Gz::Between if b != 0x1f => {
                // Not another member: trailing junk is ignored, like gzip(1) does.
                *state = Gz::Junk;
                return Ok(&[]);
            }
            Gz::Between => Gz::Fixed { at: 1, flags: 0 },
            Gz::Fixed { at, flags } => {
                let flags = if at == 3 { b } else { flags };
                let ok = match at {
                    0 => b == 0x1f,
                    1 => b == 0x8b,
                    2 => b == 8,
                    3 => b & FRESERVED == 0,
                    _ => true,
                };
                if !ok {
                    return Err(InflateError::Corrupt);
                }
                if at == 9 {
                    *crc = crate::codec::crc32::Hasher::new();
                    *size = 0;
                    if flags & FEXTRA != 0 {
                        Gz::ExtraLen {
                            at: 0,
                            len: 0,
                            flags,
                        }
                    } else {
                        after_extra(flags)
                    }
                } else {
                    Gz::Fixed { at: at + 1, flags }
                }
            }
            Gz::ExtraLen { at: 0, flags, .. } => Gz::ExtraLen {
                at: 1,
                len: u16::from(b),
                flags,
            },
            Gz::ExtraLen { len, flags, .. } => {
                // XLEN is little-endian.
                let left = len | u16::from(b) << 8;
                if left == 0 {
                    after_extra(flags)
                } else {
                    Gz::Extra { left, flags }
                }
            }
            Gz::HeaderCrc { left: 2 } => Gz::HeaderCrc { left: 1 },
            Gz::HeaderCrc { .. } => Gz::Body,
            Gz::Trailer { at, mut buf } => {
                if let Some(slot) = buf.get_mut(usize::from(at)) {
                    *slot = b;
                }
                if at < 7 {
                    Gz::Trailer { at: at + 1, buf }
                } else {
                    let [c0, c1, c2, c3, s0, s1, s2, s3] = buf;
                    let want_crc = u32::from_le_bytes([c0, c1, c2, c3]);
                    let want_size = u32::from_le_bytes([s0, s1, s2, s3]);
                    let got = std::mem::replace(crc, crate::codec::crc32::Hasher::new()).finalize();
                    if got != want_crc || *size != want_size {
                        return Err(InflateError::Corrupt);
                    }
                    Gz::Between
                }
            }
            other => other,
        };
    }
    Ok(input)
}

fn after_extra(flags: u8) -> Gz {
    if flags & FNAME != 0 {
        Gz::Name { flags }
    } else if flags & FCOMMENT != 0 {
        Gz::Comment { flags }
    } else {
        after_strings(flags)
    }
}

fn after_strings(flags: u8) -> Gz {
    if flags & FHCRC != 0 {
        Gz::HeaderCrc { left: 2 }
    } else {
        Gz::Body
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::stream::testutil::{every_split, one_byte, xorshift_chunks};
    use std::io::Write;

    pub fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub fn brotli(data: &[u8]) -> Vec<u8> {
        let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
        w.write_all(data).unwrap();
        w.into_inner()
    }

    /// Run an inflater over `chunks`; returns the output, the largest piece and the first error.
    fn inflate(
        enc: ContentEncoding,
        cap: u64,
        chunks: &[&[u8]],
    ) -> (Vec<u8>, usize, Result<(), InflateError>) {
        let mut inf = Inflater::new(enc, cap);
        let mut out = Vec::new();
        let mut biggest = 0;
        let mut r = Ok(());
        for c in chunks {
            r = inf.push(c, &mut |p| {
                biggest = biggest.max(p.len());
                out.extend_from_slice(p);
            });
            if r.is_err() {
                break;
            }
        }
        if r.is_ok() {
            r = inf.finish();
        }
        assert_eq!(inf.total_out(), out.len() as u64);
        (out, biggest, r)
    }

    #[test]
    fn inflate_all_whole_bodies() {
        let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        for (enc, packed) in [
            (ContentEncoding::Identity, body.to_vec()),
            (ContentEncoding::Gzip, gzip(body)),
            (ContentEncoding::Deflate, zlib(body)),
            (ContentEncoding::Deflate, raw_deflate(body)),
            (ContentEncoding::Brotli, brotli(body)),
        ] {
            assert_eq!(inflate_all(enc, &packed, 1 << 20).unwrap(), body, "{enc:?}");
            let cut = packed.get(..packed.len() / 2).unwrap();
            if enc != ContentEncoding::Identity {
                assert!(inflate_all(enc, cut, 1 << 20).is_err(), "{enc:?} truncated");
            }
        }
        assert_eq!(
            inflate_all(ContentEncoding::Gzip, &gzip(body), 10),
            Err(InflateError::Capped)
        );
        assert_eq!(
            inflate_all(ContentEncoding::Gzip, b"not gzip at all", 1 << 20),
            Err(InflateError::Corrupt)
        );
    }

    /// Text that compresses like a real response (repetitive JSON with some variety).
    fn sample(n: usize) -> Vec<u8> {
        let mut s = String::new();
        let mut i = 0u64;
        while s.len() < n {
            s.push_str(&format!(
                "data: {{\"id\":\"chatcmpl-{i}\",\"choices\":[{{\"delta\":{{\"content\":\"héllo 🌍 {}\"}}}}]}}\n\n",
                i.wrapping_mul(2654435761) % 1000
            ));
            i += 1;
        }
        s.into_bytes()
    }

    #[test]
    fn content_encoding_header_values() {
        use ContentEncoding::*;
        assert_eq!(ContentEncoding::from_header("gzip"), Some(Gzip));
        assert_eq!(ContentEncoding::from_header(" GZip "), Some(Gzip));
        assert_eq!(ContentEncoding::from_header("x-gzip"), Some(Gzip));
        assert_eq!(ContentEncoding::from_header("Deflate"), Some(Deflate));
        assert_eq!(ContentEncoding::from_header("br"), Some(Brotli));
        assert_eq!(ContentEncoding::from_header("BR"), Some(Brotli));
        assert_eq!(ContentEncoding::from_header("identity"), Some(Identity));
        assert_eq!(ContentEncoding::from_header(""), Some(Identity));
        assert_eq!(ContentEncoding::from_header("zstd"), None);
        assert_eq!(ContentEncoding::from_header("compress"), None);
        assert_eq!(ContentEncoding::from_header("gzip, br"), None);
        assert_eq!(ContentEncoding::from_header("gzip,gzip"), None);
    }

    #[test]
    fn every_coding_round_trips_in_any_chunking() {
        let plain = sample(3000);
        let cases = [
            (ContentEncoding::Identity, plain.clone()),
            (ContentEncoding::Gzip, gzip(&plain)),
            (ContentEncoding::Deflate, zlib(&plain)),
            (ContentEncoding::Deflate, raw_deflate(&plain)),
            (ContentEncoding::Brotli, brotli(&plain)),
        ];
        for (enc, packed) in &cases {
            for chunks in every_split(packed)
                .chain(std::iter::once(one_byte(packed)))
                .chain(xorshift_chunks(packed, 10))
            {
                let (out, _, r) = inflate(*enc, u64::MAX, &chunks);
                assert_eq!(r, Ok(()), "{enc:?}");
                assert!(out == plain, "{enc:?} output differs");
            }
        }
    }

    #[test]
    fn large_output_comes_in_bounded_pieces() {
        let plain = sample(200_000);
        for (enc, packed) in [
            (ContentEncoding::Gzip, gzip(&plain)),
            (ContentEncoding::Deflate, zlib(&plain)),
            (ContentEncoding::Brotli, brotli(&plain)),
            (ContentEncoding::Identity, plain.clone()),
        ] {
            let (out, biggest, r) = inflate(enc, u64::MAX, &[&packed]);
            assert_eq!(r, Ok(()));
            assert!(out == plain);
            assert!(biggest <= OUT_PIECE, "{enc:?} piece {biggest}");
        }
    }

    /// A hand-built gzip header with every optional field (FEXTRA, FNAME, FCOMMENT, FHCRC).
    fn gzip_full_header(data: &[u8]) -> Vec<u8> {
        let mut g = vec![
            0x1f,
            0x8b,
            8,
            FHCRC | FEXTRA | FNAME | FCOMMENT,
            1,
            2,
            3,
            4,
            0,
            255,
        ];
        g.extend_from_slice(&[5, 0, b'A', b'B', 3, 0, 0]); // XLEN=5, one subfield
        g.extend_from_slice(b"response.json\0");
        g.extend_from_slice(b"a comment\0");
        let hcrc = crate::codec::crc32::hash(&g) as u16;
        g.extend_from_slice(&hcrc.to_le_bytes());
        g.extend_from_slice(&raw_deflate(data));
        g.extend_from_slice(&crate::codec::crc32::hash(data).to_le_bytes());
        g.extend_from_slice(&(data.len() as u32).to_le_bytes());
        g
    }

    #[test]
    fn gzip_optional_header_fields_multi_member_and_trailing_junk() {
        let a = sample(500);
        let b = b"second member".to_vec();
        let mut packed = gzip_full_header(&a);
        packed.extend(gzip(&b));
        packed.extend_from_slice(&[0, 0, 0, 0x1f, 0x8b]); // padding after the last member: ignored
        let want = [a.clone(), b.clone()].concat();
        for chunks in every_split(&packed).chain(std::iter::once(one_byte(&packed))) {
            let (out, _, r) = inflate(ContentEncoding::Gzip, u64::MAX, &chunks);
            assert_eq!(r, Ok(()));
            assert!(out == want);
        }
    }

    #[test]
    fn gzip_checksum_and_header_errors() {
        let plain = sample(1000);
        let good = gzip(&plain);
        let n = good.len();
        let mut bad_crc = good.clone();
        bad_crc[n - 6] ^= 1;
        let mut bad_size = good.clone();
        bad_size[n - 2] ^= 1;
        let mut bad_magic = good.clone();
        bad_magic[1] = 0x8c;
        let mut bad_method = good.clone();
        bad_method[2] = 7;
        let mut reserved = good.clone();
        reserved[3] = 0x20;
        for (name, bytes) in [
            ("crc", bad_crc),
            ("size", bad_size),
            ("magic", bad_magic),
            ("method", bad_method),
            ("reserved flag", reserved),
        ] {
            for chunks in xorshift_chunks(&bytes, 5).chain(std::iter::once(vec![&bytes[..]])) {
                let (_, _, r) = inflate(ContentEncoding::Gzip, u64::MAX, &chunks);
                assert_eq!(r, Err(InflateError::Corrupt), "{name}");
            }
        }
    }

    #[test]
    fn truncated_streams_are_reported_at_finish() {
        let plain = sample(2000);
        for (enc, packed) in [
            (ContentEncoding::Gzip, gzip(&plain)),
            (ContentEncoding::Deflate, zlib(&plain)),
            (ContentEncoding::Brotli, brotli(&plain)),
        ] {
            for cut in [1, 2, 5, 11, packed.len() / 2, packed.len() - 1] {
                let (out, _, r) = inflate(enc, u64::MAX, &[&packed[..cut]]);
                assert_eq!(r, Err(InflateError::Truncated), "{enc:?} cut {cut}");
                assert!(plain.starts_with(&out), "what came out is a prefix");
            }
            // An empty body is not an error (204/304 with a stale Content-Encoding).
            assert_eq!(inflate(enc, u64::MAX, &[]).2, Ok(()));
        }
    }

    #[test]
    fn decompression_bomb_is_capped() {
        let zeros = vec![0u8; 4 << 20];
        let cap = 100_000u64;
        for (enc, packed) in [
            (ContentEncoding::Gzip, gzip(&zeros)),
            (ContentEncoding::Deflate, zlib(&zeros)),
            (ContentEncoding::Brotli, brotli(&zeros)),
            (ContentEncoding::Identity, zeros.clone()),
        ] {
            assert!(enc == ContentEncoding::Identity || packed.len() < 40_000);
            let mut inf = Inflater::new(enc, cap);
            let mut got = 0u64;
            let mut first_err = None;
            for c in packed.chunks(1000) {
                match inf.push(c, &mut |p| got += p.len() as u64) {
                    Ok(()) => {}
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            assert_eq!(first_err, Some(InflateError::Capped), "{enc:?}");
            assert_eq!(got, cap, "{enc:?} hands out exactly the cap");
            // Sticky: nothing more is decoded.
            assert_eq!(
                inf.push(&packed, &mut |_| panic!()),
                Err(InflateError::Capped)
            );
            assert_eq!(inf.finish(), Err(InflateError::Capped));
        }
        // Exactly at the cap is fine.
        let (out, _, r) = inflate(ContentEncoding::Gzip, 1000, &[&gzip(&[7; 1000])]);
        assert_eq!((out.len(), r), (1000, Ok(())));
    }

    #[test]
    fn garbage_and_mutations_never_panic() {
        let plain = sample(800);
        let encs = [
            (ContentEncoding::Gzip, gzip(&plain)),
            (ContentEncoding::Deflate, zlib(&plain)),
            (ContentEncoding::Deflate, raw_deflate(&plain)),
            (ContentEncoding::Brotli, brotli(&plain)),
        ];
        let mut s = 0x0123_4567_89ab_cdef_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..150 {
            let len = (next() % 600) as usize;
            let junk: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            for (enc, good) in &encs {
                let _ = inflate(*enc, 1 << 20, &[&junk]);
                let mut m = good.clone();
                for _ in 0..1 + next() % 3 {
                    let at = (next() as usize) % m.len();
                    m[at] ^= 1 << (next() % 8);
                }
                for chunks in xorshift_chunks(&m, 2) {
                    let (out, _, _) = inflate(*enc, 1 << 20, &chunks);
                    assert!(out.len() <= 1 << 20);
                }
            }
        }
    }
}
