//! Incremental `Content-Encoding` decoding (gzip, deflate, br) for inspection.
//!
//! Input arrives in arbitrary chunks and is consumed as it comes: the gzip header and trailer are parsed by
//! a small state machine, deflate and brotli run through their streaming decoders. State is constant-size
//! (plus the codec's window), time is linear, output is handed out in pieces of at most [`OUT_PIECE`]
//! bytes, and the total output is capped as a decompression-bomb guard.

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::{Decompress, FlushDecompress, Status};
use memchr::memchr;

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
        inflate: Box<Decompress>,
        crc: crc32fast::Hasher,
        /// Output of the current member, mod 2^32 (ISIZE).
        size: u32,
    },
    /// Waiting for the two bytes that tell zlib from raw deflate.
    DeflateSniff {
        buf: [u8; 2],
        have: u8,
    },
    Deflate(Box<Decompress>),
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
                inflate: Box::new(Decompress::new(false)),
                crc: crc32fast::Hasher::new(),
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
        let complete = match &self.codec {
            Codec::Identity | Codec::Done => true,
            Codec::Gzip { state, .. } => matches!(state, Gz::Between | Gz::Junk),
            // Nothing at all arrived (e.g. a 204 that still names a coding): nothing to complain about.
            _ => !self.saw_input,
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
                    let mut d = Box::new(Decompress::new(zlib));
                    let head = *buf;
                    let done = inflate_into(&mut d, &head, &mut self.out, &mut sink, out, None)?;
                    self.codec = if done { Codec::Done } else { Codec::Deflate(d) };
                }
                Codec::Deflate(d) => {
                    if inflate_into(d, input, &mut self.out, &mut sink, out, None)? {
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
                        let before = inflate.total_in();
                        let done = inflate_into(
                            inflate,
                            input,
                            &mut self.out,
                            &mut sink,
                            out,
                            Some(&mut member),
                        )?;
                        if !done {
                            return Ok(());
                        }
                        let used = usize::try_from(inflate.total_in().saturating_sub(before))
                            .unwrap_or(usize::MAX);
                        input = input.get(used..).unwrap_or(&[]);
                        *state = Gz::Trailer { at: 0, buf: [0; 8] };
                        continue;
                    }
                    input = gzip_framing(state, input, crc, size)?;
                    if *state == Gz::Body {
                        inflate.reset(false);
                    }
                }
            }
        }
    }
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
    crc: &'a mut crc32fast::Hasher,
    size: &'a mut u32,
}

/// Feed `input` to a deflate/zlib decoder until it is consumed and the output drained. Returns whether
/// the compressed stream ended.
fn inflate_into(
    d: &mut Decompress,
    mut input: &[u8],
    buf: &mut [u8],
    sink: &mut Sink<'_>,
    out: &mut dyn FnMut(&[u8]),
    mut member: Option<&mut Member<'_>>,
) -> Result<bool, InflateError> {
    loop {
        let (in0, out0) = (d.total_in(), d.total_out());
        let status = d
            .decompress(input, buf, FlushDecompress::None)
            .map_err(|_| InflateError::Corrupt)?;
        let used = usize::try_from(d.total_in().saturating_sub(in0)).unwrap_or(usize::MAX);
        let made = usize::try_from(d.total_out().saturating_sub(out0)).unwrap_or(usize::MAX);
        input = input.get(used..).unwrap_or(&[]);
        let piece = buf.get(..made).unwrap_or(&[]);
        if let Some(m) = member.as_mut() {
            m.crc.update(piece);
            *m.size = m.size.wrapping_add(made as u32);
        }
        sink.emit(piece, out)?;
        match status {
            Status::StreamEnd => return Ok(true),
            // No progress either way: the decoder wants more input.
            _ if used == 0 && made == 0 => return Ok(false),
            // A full output buffer may hide more pending output even with no input left.
            _ if input.is_empty() && made < buf.len() => return Ok(false),
            _ => {}
        }
    }
}

/// Advance through gzip header/trailer bytes; returns the input left once the state reaches `Body` (or all
/// input consumed).
fn gzip_framing<'a>(
    state: &mut Gz,
    mut input: &'a [u8],
    crc: &mut crc32fast::Hasher,
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
                    *crc = crc32fast::Hasher::new();
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
                    let got = std::mem::replace(crc, crc32fast::Hasher::new()).finalize();
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
