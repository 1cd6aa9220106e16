//! WebSocket framing (RFC 6455) for one direction of an upgraded connection, reassembled from arbitrary
//! byte chunks: each Envoy body callback hands over whatever one TCP read brought, so a frame header, a
//! payload or a masking key may be split anywhere.
//!
//! The decoder reads a copy: the bytes themselves pass unchanged. It unmasks client frames into its own
//! buffer, reassembles fragmented messages (control frames may come between the fragments), inflates
//! messages compressed with permessage-deflate (RFC 7692) when the handshake negotiated it, and hands
//! complete messages and control frames to a callback.
//!
//! Bounded and total:
//! - a message larger than `max_message` is skipped (its frames are still followed) and counted;
//! - inflating one message produces at most `max_inflate` bytes, kept or not;
//! - a frame that breaks the framing rules (reserved bits, an unknown opcode, a fragmented or long control
//!   frame, a continuation with no message, a frame masked the wrong way, a 64-bit length with its top bit
//!   set) makes the decoder unreadable for good: it stops reading and keeps the reason. Nothing panics.
//!
//! Deliberately lenient where the framing stays unambiguous: a length written with more bytes than needed
//! is read, and a one-byte close payload is read as a close without a code.

use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

/// The largest control frame payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// The octets a permessage-deflate sender strips from the end of every compressed message and a receiver
/// appends back before inflating (RFC 7692 §7.2.2).
const DEFLATE_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output buffer of one inflate step.
const INFLATE_PIECE: usize = 8 * 1024;

/// A message buffer whose capacity grew past this is released after the message instead of kept.
const KEEP_CAPACITY: usize = 64 * 1024;

/// Which peer wrote the frames: client frames are masked, server frames are not (RFC 6455 §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// What the decoder hands out, borrowed from its buffer (or from the chunk itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete text message, valid UTF-8.
    Text(&'a str),
    /// A complete binary message.
    Binary(&'a [u8]),
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    /// A close frame: its status code (None when the frame has none) and its reason ("" when absent or not
    /// UTF-8). Nothing after it is read.
    Close {
        code: Option<u16>,
        reason: &'a str,
    },
}

/// Why the decoder stopped reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// RSV2 or RSV3 set, or RSV1 where no extension gave it a meaning.
    ReservedBits,
    /// Opcodes 3–7 and 11–15.
    UnknownOpcode(u8),
    /// A control frame without FIN.
    FragmentedControl,
    /// A control frame with more than 125 bytes of payload.
    ControlTooLong,
    /// A continuation frame when no fragmented message was open.
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message was still open.
    InterleavedData,
    /// A client frame without a mask, or a server frame with one.
    Masking,
    /// A 64-bit payload length with its most significant bit set.
    LengthOverflow,
    /// The handshake negotiated an extension this decoder cannot read.
    UnsupportedExtension,
}

/// Counters of what the decoder saw and dropped, plus what it holds right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WsStats {
    /// Frames whose header was read (control frames included).
    pub frames: u64,
    /// Text and binary messages handed out.
    pub messages: u64,
    /// Messages larger than `max_message`, skipped.
    pub oversize_skipped: u64,
    /// Text messages that were not UTF-8, dropped.
    pub invalid_utf8: u64,
    /// Compressed messages that did not inflate (corrupt), dropped.
    pub inflate_errors: u64,
    /// Compressed messages whose inflated size passed `max_inflate`, dropped.
    pub inflate_capped: u64,
    /// Compressed messages that could not be inflated because an earlier failure lost the shared
    /// compression context (context takeover), dropped.
    pub undecodable: u64,
    /// Bytes that came after a close frame, ignored.
    pub after_close: u64,
    /// The input ended inside a frame or a fragmented message.
    pub truncated: bool,
    /// Bytes currently held between chunks.
    pub buffered: usize,
}

/// Memory and work caps for one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest message handed out (after inflating).
    pub max_message: usize,
    /// Most bytes inflating one compressed message may produce, kept or discarded. Past it the message is
    /// dropped (and, with context takeover, every later compressed message is undecodable).
    pub max_inflate: u64,
}

impl Default for WsLimits {
    fn default() -> Self {
        WsLimits {
            max_message: 1024 * 1024,
            max_inflate: 16 * 1024 * 1024,
        }
    }
}

/// The permessage-deflate parameters a server accepted (RFC 7692 §7.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeflateParams {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    pub server_max_window_bits: Option<u8>,
    pub client_max_window_bits: Option<u8>,
}

impl DeflateParams {
    /// Whether `sender` compresses every message on its own (a fresh window per message).
    pub fn no_context_takeover(&self, sender: Sender) -> bool {
        match sender {
            Sender::Client => self.client_no_context_takeover,
            Sender::Server => self.server_no_context_takeover,
        }
    }
}

/// What the handshake's `Sec-WebSocket-Extensions` response header negotiated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Extensions {
    /// No extension: RSV1 is reserved.
    None,
    Deflate(DeflateParams),
    /// An extension this decoder does not know, or a malformed or duplicated acceptance: the meaning of the
    /// frames is unknown, so the caller should not decode them (the client fails such a handshake anyway).
    Unsupported,
}

/// Split `s` on `sep` outside double-quoted strings (extension parameters may be quoted, RFC 6455 §9.1).
fn split_unquoted(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0usize, false, false);
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            out.push(s.get(start..i).unwrap_or(""));
            start = i + 1;
        }
    }
    out.push(s.get(start..).unwrap_or(""));
    out
}

/// A parameter value with its quotes (and backslash escapes) removed.
fn unquote(v: &str) -> String {
    let v = v.trim();
    match v.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if !escaped && c == '\\' {
                    escaped = true;
                } else {
                    escaped = false;
                    out.push(c);
                }
            }
            out
        }
        None => v.to_owned(),
    }
}

/// The extension name of one comma-separated element of a `Sec-WebSocket-Extensions` value.
fn extension_name(element: &str) -> &str {
    element.split(';').next().unwrap_or("").trim()
}

/// Read the `Sec-WebSocket-Extensions` header of the handshake response (`None`: absent). Several header
/// lines are read joined with ", ".
pub fn negotiated(response_header: Option<&str>) -> Extensions {
    let Some(value) = response_header else {
        return Extensions::None;
    };
    let mut found = None;
    for element in split_unquoted(value, b',') {
        if element.trim().is_empty() {
            continue;
        }
        let name = extension_name(element);
        if !name.eq_ignore_ascii_case("permessage-deflate") || found.is_some() {
            return Extensions::Unsupported;
        }
        match deflate_params(element) {
            Some(p) => found = Some(p),
            None => return Extensions::Unsupported,
        }
    }
    found.map_or(Extensions::None, Extensions::Deflate)
}

/// The parameters of one accepted permessage-deflate element; None when one is unknown, repeated or out
/// of range (RFC 7692 §7.1: window bits 8–15, a value required in a response).
fn deflate_params(element: &str) -> Option<DeflateParams> {
    let mut p = DeflateParams::default();
    let mut seen = 0u8;
    for param in split_unquoted(element, b';').into_iter().skip(1) {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v))),
            None => (param.trim(), None),
        };
        let bit = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => {
                p.server_no_context_takeover = true;
                1
            }
            "client_no_context_takeover" if value.is_none() => {
                p.client_no_context_takeover = true;
                2
            }
            "server_max_window_bits" => {
                p.server_max_window_bits = Some(window_bits(value.as_deref())?);
                4
            }
            "client_max_window_bits" => {
                p.client_max_window_bits = Some(window_bits(value.as_deref())?);
                8
            }
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
    }
    Some(p)
}

fn window_bits(value: Option<&str>) -> Option<u8> {
    let v = value?;
    // 1*DIGIT without leading zeros, 8..=15.
    if v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// The client's `Sec-WebSocket-Extensions` request header without its permessage-deflate offers, so the
/// server cannot negotiate compression; None when nothing is left (remove the header then).
pub fn strip_deflate_offer(request_header: &str) -> Option<String> {
    let kept: Vec<&str> = split_unquoted(request_header, b',')
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty() && !extension_name(e).eq_ignore_ascii_case("permessage-deflate"))
        .collect();
    (!kept.is_empty()).then(|| kept.join(", "))
}

/// Frame opcodes a caller may write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opcode {
    Text = 1,
    Binary = 2,
    Close = 8,
    Ping = 9,
    Pong = 10,
}

/// One complete, unfragmented, uncompressed frame: unmasked when `mask` is None (a server's frame),
/// masked with it otherwise (a client's frame; the key must be unpredictable, RFC 6455 §10.3). Control
/// payloads longer than 125 bytes are cut to 125.
pub fn encode_frame(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let payload = match opcode {
        Opcode::Close | Opcode::Ping | Opcode::Pong => {
            payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload)
        }
        Opcode::Text | Opcode::Binary => payload,
    };
    encode_raw(0x80 | opcode as u8, payload, mask)
}

/// A frame whose first byte (FIN, RSV1–3, opcode) is given as is, with the shortest length encoding:
/// for building fragmented or compressed messages (tests, fuzzing). The caller keeps the framing valid.
pub fn encode_raw(first_byte: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len().saturating_add(14));
    out.push(first_byte);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len <= 125 {
        out.push(mask_bit | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A close frame with `code` and `reason` (cut at a character boundary to fit the 123 bytes a close
/// payload leaves for it).
pub fn encode_close(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.get(..end).unwrap_or("").as_bytes());
    encode_frame(Opcode::Close, &payload, mask)
}

/// Where the first frame of `buf` ends, for a caller that forwards or drops whole frames of a byte
/// stream (the decoder above reads messages; this only measures frames). None until its header is
/// complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameExtent {
    pub fin: bool,
    /// RSV1: compressed (permessage-deflate).
    pub rsv1: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub header_len: usize,
    /// Header and payload; may exceed `buf.len()` while the frame is still arriving.
    pub total_len: u64,
}

pub fn frame_extent(buf: &[u8]) -> Option<FrameExtent> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let masked = b1 & 0x80 != 0;
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
            4usize,
        ),
        127 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(buf.get(2..10)?);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        let mut m = [0u8; 4];
        m.copy_from_slice(buf.get(at..at + 4)?);
        at += 4;
        Some(m)
    } else {
        None
    };
    Some(FrameExtent {
        fin: b0 & 0x80 != 0,
        rsv1: b0 & 0x40 != 0,
        opcode: b0 & 0x0f,
        mask,
        header_len: at,
        total_len: (at as u64).saturating_add(len),
    })
}

/// `payload` unmasked with `mask` (RFC 6455 §5.3; the same operation masks).
pub fn unmask(payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    match mask {
        None => payload.to_vec(),
        Some(m) => payload
            .iter()
            .zip(m.iter().cycle())
            .map(|(b, k)| b ^ k)
            .collect(),
    }
}

/// The frame being read.
#[derive(Clone, Copy, Debug, Default)]
struct FrameHead {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    /// Payload bytes still to come.
    remaining: u64,
    /// Payload bytes already read (the masking key's phase).
    offset: u64,
}

impl FrameHead {
    fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// The data message being reassembled.
#[derive(Clone, Copy, Debug)]
struct Message {
    text: bool,
    compressed: bool,
    /// Over `max_message`: its payload is not kept.
    skipping: bool,
    /// Dropped for a reason already counted (or to be counted at its end): not handed out.
    dropped: Drop,
    /// Bytes inflating this message produced so far.
    inflated: u64,
    /// Its DEFLATE stream ended (a final block): the rest of its payload is not compressed data.
    stream_ended: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drop {
    No,
    /// Counted as undecodable at its end.
    Undecodable,
    /// Already counted (corrupt or capped).
    Counted,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    Payload,
    Closed,
    Unreadable,
}

/// The decoder of one direction's frames.
pub struct WsDecoder {
    sender: Sender,
    limits: WsLimits,
    deflate: Option<DeflateParams>,
    inflater: Option<Box<InflateState>>,
    /// With context takeover, an inflate failure loses the window every later message depends on.
    inflate_lost: bool,
    state: State,
    head_buf: [u8; 14],
    head_have: usize,
    frame: FrameHead,
    message: Option<Message>,
    /// The message's payload so far (unmasked, inflated).
    buf: Vec<u8>,
    /// The control frame's payload.
    control: Vec<u8>,
    /// Unmasked bytes waiting to be inflated, and the inflater's output.
    scratch: Vec<u8>,
    out: Vec<u8>,
    invalid: Option<Invalid>,
    stats: WsStats,
}

impl std::fmt::Debug for WsDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsDecoder")
            .field("sender", &self.sender)
            .field("state", &self.state)
            .field("invalid", &self.invalid)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl WsDecoder {
    /// A decoder for the frames `sender` writes, with what the handshake negotiated (`Extensions::
    /// Unsupported` starts it unreadable).
    pub fn new(sender: Sender, extensions: Extensions, limits: WsLimits) -> WsDecoder {
        let (deflate, state, invalid) = match extensions {
            Extensions::None => (None, State::Header, None),
            Extensions::Deflate(p) => (Some(p), State::Header, None),
            Extensions::Unsupported => {
                (None, State::Unreadable, Some(Invalid::UnsupportedExtension))
            }
        };
        WsDecoder {
            sender,
            limits,
            deflate,
            inflater: None,
            inflate_lost: false,
            state,
            head_buf: [0; 14],
            head_have: 0,
            frame: FrameHead::default(),
            message: None,
            buf: Vec::new(),
            control: Vec::new(),
            scratch: Vec::new(),
            out: Vec::new(),
            invalid,
            stats: WsStats::default(),
        }
    }

    /// Why the decoder stopped reading, if it did.
    pub fn invalid(&self) -> Option<Invalid> {
        self.invalid
    }

    /// A close frame was read.
    pub fn closed(&self) -> bool {
        self.state == State::Closed
    }

    pub fn stats(&self) -> WsStats {
        WsStats {
            buffered: self
                .buf
                .len()
                .saturating_add(self.control.len())
                .saturating_add(self.head_have),
            ..self.stats
        }
    }

    /// Feed the next chunk; complete messages and control frames go to `on` as soon as they are complete.
    pub fn push(&mut self, chunk: &[u8], on: &mut dyn FnMut(WsEvent<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            rest = match self.state {
                State::Unreadable => return,
                State::Closed => {
                    self.stats.after_close =
                        self.stats.after_close.saturating_add(rest.len() as u64);
                    return;
                }
                State::Header => self.header(rest, on),
                State::Payload => self.payload(rest, on),
            };
        }
    }

    /// The connection ended: a frame or fragmented message left unfinished is counted as truncated.
    pub fn finish(&mut self) {
        let mid_frame = match self.state {
            State::Header => self.head_have > 0,
            State::Payload => true,
            State::Closed | State::Unreadable => false,
        };
        if mid_frame || (self.message.is_some() && self.state != State::Unreadable) {
            self.stats.truncated = true;
        }
        self.message = None;
        self.head_have = 0;
        self.release();
    }

    /// Free the buffers (the inflate window too) once nothing more will be read.
    fn release(&mut self) {
        self.buf = Vec::new();
        self.control = Vec::new();
        self.scratch = Vec::new();
        self.out = Vec::new();
        self.inflater = None;
    }

    fn fail(&mut self, why: Invalid) {
        self.invalid = Some(why);
        self.state = State::Unreadable;
        self.message = None;
        self.release();
    }

    /// The header length once its first two bytes are known (2 until then).
    fn header_len(&self) -> usize {
        if self.head_have < 2 {
            return 2;
        }
        let b1 = self.head_buf.get(1).copied().unwrap_or(0);
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
    }

    fn header<'c>(&mut self, mut chunk: &'c [u8], on: &mut dyn FnMut(WsEvent<'_>)) -> &'c [u8] {
        loop {
            let need = self.header_len();
            if self.head_have >= need {
                self.start_frame(need, on);
                return chunk;
            }
            let take = (need - self.head_have).min(chunk.len());
            let (head, rest) = chunk.split_at(take);
            if let Some(dst) = self.head_buf.get_mut(self.head_have..self.head_have + take) {
                dst.copy_from_slice(head);
            }
            self.head_have += take;
            chunk = rest;
            if self.head_have < self.header_len() && chunk.is_empty() {
                return chunk;
            }
        }
    }

    /// The header is complete: check it and set up the frame.
    fn start_frame(&mut self, len: usize, on: &mut dyn FnMut(WsEvent<'_>)) {
        let h = self.head_buf;
        self.head_have = 0;
        self.stats.frames = self.stats.frames.saturating_add(1);
        let [b0, b1, ..] = h;
        let (fin, rsv1, opcode) = (b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0f);
        if b0 & 0x30 != 0 {
            return self.fail(Invalid::ReservedBits);
        }
        let masked = b1 & 0x80 != 0;
        if masked != (self.sender == Sender::Client) {
            return self.fail(Invalid::Masking);
        }
        let ext = len - 2 - if masked { 4 } else { 0 };
        let payload_len = match h.get(2..2 + ext) {
            Some(bytes) if ext > 0 => {
                let n = bytes.iter().fold(0u64, |n, &b| n << 8 | u64::from(b));
                if n >> 63 != 0 {
                    return self.fail(Invalid::LengthOverflow);
                }
                n
            }
            _ => u64::from(b1 & 0x7f),
        };
        let mask = masked.then(|| {
            let at = len - 4;
            let mut key = [0u8; 4];
            if let Some(src) = h.get(at..len) {
                key.copy_from_slice(src);
            }
            key
        });
        self.frame = FrameHead {
            fin,
            opcode,
            mask,
            remaining: payload_len,
            offset: 0,
        };
        match opcode {
            0x8..=0xa => {
                if rsv1 {
                    return self.fail(Invalid::ReservedBits);
                }
                if !fin {
                    return self.fail(Invalid::FragmentedControl);
                }
                if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                    return self.fail(Invalid::ControlTooLong);
                }
                self.control.clear();
            }
            0x1 | 0x2 => {
                if self.message.is_some() {
                    return self.fail(Invalid::InterleavedData);
                }
                if rsv1 && self.deflate.is_none() {
                    return self.fail(Invalid::ReservedBits);
                }
                self.message = Some(Message {
                    text: opcode == 0x1,
                    compressed: rsv1,
                    skipping: false,
                    dropped: if rsv1 && self.inflate_lost {
                        Drop::Undecodable
                    } else {
                        Drop::No
                    },
                    inflated: 0,
                    stream_ended: false,
                });
                self.check_size(payload_len);
            }
            0x0 => {
                if rsv1 {
                    return self.fail(Invalid::ReservedBits);
                }
                if self.message.is_none() {
                    return self.fail(Invalid::UnexpectedContinuation);
                }
                self.check_size(payload_len);
            }
            other => return self.fail(Invalid::UnknownOpcode(other)),
        }
        self.state = State::Payload;
        if payload_len == 0 {
            self.end_frame(on);
        }
    }

    /// An uncompressed message that cannot fit is skipped before any of this frame is buffered.
    fn check_size(&mut self, frame_len: u64) {
        let max = self.limits.max_message as u64;
        if let Some(m) = self.message.as_mut() {
            if !m.compressed
                && !m.skipping
                && (self.buf.len() as u64).saturating_add(frame_len) > max
            {
                m.skipping = true;
                self.buf = Vec::new();
            }
        }
    }

    fn payload<'c>(&mut self, chunk: &'c [u8], on: &mut dyn FnMut(WsEvent<'_>)) -> &'c [u8] {
        let n = usize::try_from(self.frame.remaining)
            .unwrap_or(usize::MAX)
            .min(chunk.len());
        let (data, rest) = chunk.split_at(n);
        let frame = self.frame;
        if frame.is_control() {
            unmask_into(&mut self.control, data, frame.mask, frame.offset);
        } else if let Some(m) = self.message {
            // A whole unmasked, uncompressed, unfragmented message inside this chunk: hand it out as is.
            let whole = frame.fin
                && frame.offset == 0
                && n as u64 == frame.remaining
                && frame.mask.is_none()
                && !m.compressed
                && !m.skipping
                && self.buf.is_empty();
            if whole {
                self.message = None;
                self.state = State::Header;
                self.emit_data(m.text, data, on);
                return rest;
            }
            self.data(m, data);
        }
        self.frame.remaining -= n as u64;
        self.frame.offset += n as u64;
        if self.frame.remaining == 0 {
            self.end_frame(on);
        }
        rest
    }

    /// Part of a data frame's payload.
    fn data(&mut self, m: Message, data: &[u8]) {
        if (m.skipping && !m.compressed) || m.dropped != Drop::No {
            return;
        }
        if !m.compressed {
            unmask_into(&mut self.buf, data, self.frame.mask, self.frame.offset);
            return;
        }
        let mut input = std::mem::take(&mut self.scratch);
        input.clear();
        let plain = match self.frame.mask {
            Some(_) => {
                unmask_into(&mut input, data, self.frame.mask, self.frame.offset);
                input.as_slice()
            }
            None => data,
        };
        self.inflate(plain);
        self.scratch = input;
    }

    /// Inflate compressed payload bytes of the current message, keeping the output unless it is skipped.
    fn inflate(&mut self, input: &[u8]) {
        let Some(mut m) = self.message else {
            return;
        };
        if m.dropped != Drop::No || m.stream_ended {
            return;
        }
        let takeover = !self
            .deflate
            .is_some_and(|p| p.no_context_takeover(self.sender));
        let state = self
            .inflater
            .get_or_insert_with(|| InflateState::new_boxed(DataFormat::Raw));
        if self.out.len() != INFLATE_PIECE {
            self.out = vec![0; INFLATE_PIECE];
        }
        let (max_message, max_inflate) = (self.limits.max_message, self.limits.max_inflate);
        let mut rest = input;
        let mut failed = false;
        loop {
            let r = inflate(state, rest, &mut self.out, MZFlush::None);
            let (used, made) = (r.bytes_consumed, r.bytes_written);
            rest = rest.get(used..).unwrap_or(&[]);
            m.inflated = m.inflated.saturating_add(made as u64);
            if m.inflated > max_inflate {
                self.stats.inflate_capped = self.stats.inflate_capped.saturating_add(1);
                failed = true;
                break;
            }
            if !m.skipping {
                let piece = self.out.get(..made).unwrap_or(&[]);
                if self.buf.len().saturating_add(piece.len()) > max_message {
                    m.skipping = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(piece);
                }
            }
            match r.status {
                // A final block: the sender ended its DEFLATE stream, and whatever else this message
                // carries is ignored. Without context takeover the next message starts a new stream
                // anyway; with it, the window that one may refer to is not kept here.
                Ok(MZStatus::StreamEnd) => {
                    m.stream_ended = true;
                    state.reset(DataFormat::Raw);
                    if takeover {
                        self.inflate_lost = true;
                    }
                    break;
                }
                Ok(MZStatus::Ok) | Err(MZError::Buf) => {}
                _ => {
                    self.stats.inflate_errors = self.stats.inflate_errors.saturating_add(1);
                    failed = true;
                    break;
                }
            }
            if (used == 0 && made == 0) || (rest.is_empty() && made < self.out.len()) {
                break;
            }
        }
        if failed {
            m.dropped = Drop::Counted;
            self.buf = Vec::new();
            state.reset(DataFormat::Raw);
            if takeover {
                self.inflate_lost = true;
            }
        }
        self.message = Some(m);
    }

    fn end_frame(&mut self, on: &mut dyn FnMut(WsEvent<'_>)) {
        self.state = State::Header;
        let frame = self.frame;
        if frame.is_control() {
            let payload = std::mem::take(&mut self.control);
            match frame.opcode {
                0x9 => on(WsEvent::Ping(&payload)),
                0xa => on(WsEvent::Pong(&payload)),
                _ => {
                    let (code, reason) = match payload.split_first_chunk::<2>() {
                        Some((code, reason)) => (
                            Some(u16::from_be_bytes(*code)),
                            std::str::from_utf8(reason).unwrap_or(""),
                        ),
                        None => (None, ""),
                    };
                    on(WsEvent::Close { code, reason });
                    self.state = State::Closed;
                    if self.message.is_some() {
                        self.stats.truncated = true;
                    }
                    self.message = None;
                    self.release();
                    return;
                }
            }
            self.control = payload;
            return;
        }
        if !frame.fin {
            return;
        }
        let Some(m) = self.message else {
            return;
        };
        if m.compressed && m.dropped == Drop::No && !m.stream_ended {
            self.inflate(&DEFLATE_TAIL);
        }
        let m = self.message.take().unwrap_or(m);
        if m.compressed
            && m.dropped == Drop::No
            && self
                .deflate
                .is_some_and(|p| p.no_context_takeover(self.sender))
        {
            if let Some(state) = self.inflater.as_mut() {
                state.reset(DataFormat::Raw);
            }
        }
        match m.dropped {
            Drop::Undecodable => self.stats.undecodable = self.stats.undecodable.saturating_add(1),
            Drop::Counted => {}
            Drop::No if m.skipping => {
                self.stats.oversize_skipped = self.stats.oversize_skipped.saturating_add(1)
            }
            Drop::No => {
                let buf = std::mem::take(&mut self.buf);
                self.emit_data(m.text, &buf, on);
                self.buf = buf;
            }
        }
        self.buf.clear();
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }

    fn emit_data(&mut self, text: bool, payload: &[u8], on: &mut dyn FnMut(WsEvent<'_>)) {
        if text {
            match std::str::from_utf8(payload) {
                Ok(s) => on(WsEvent::Text(s)),
                Err(_) => {
                    self.stats.invalid_utf8 = self.stats.invalid_utf8.saturating_add(1);
                    return;
                }
            }
        } else {
            on(WsEvent::Binary(payload));
        }
        self.stats.messages = self.stats.messages.saturating_add(1);
    }
}

/// Append `data` to `out`, unmasked with `mask` from payload position `offset` (copied as is without one).
fn unmask_into(out: &mut Vec<u8>, data: &[u8], mask: Option<[u8; 4]>, offset: u64) {
    match mask {
        None => out.extend_from_slice(data),
        Some(key) => {
            let mut k = key;
            k.rotate_left((offset % 4) as usize);
            out.extend(data.iter().zip(k.iter().cycle()).map(|(b, m)| b ^ m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::testutil::{every_split, one_byte, xorshift_chunks};

    #[test]
    fn frame_extent_measures_frames_of_every_length_form() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload = vec![b'a'; len];
            for mask in [None, Some([1, 2, 3, 4])] {
                let f = encode_frame(Opcode::Text, &payload, mask);
                let e = frame_extent(&f).unwrap();
                assert_eq!(e.total_len, f.len() as u64, "{len}");
                assert_eq!((e.fin, e.opcode, e.mask), (true, 1, mask));
                assert_eq!(unmask(&f[e.header_len..], mask), payload);
                assert_eq!(frame_extent(&f[..e.header_len - 1]), None);
            }
        }
    }
    use flate2::{Compress, Compression, FlushCompress};

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Text(String),
        Binary(Vec<u8>),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
        Close(Option<u16>, String),
    }

    impl From<WsEvent<'_>> for Ev {
        fn from(e: WsEvent<'_>) -> Ev {
            match e {
                WsEvent::Text(t) => Ev::Text(t.into()),
                WsEvent::Binary(b) => Ev::Binary(b.into()),
                WsEvent::Ping(b) => Ev::Ping(b.into()),
                WsEvent::Pong(b) => Ev::Pong(b.into()),
                WsEvent::Close { code, reason } => Ev::Close(code, reason.into()),
            }
        }
    }

    #[derive(Clone, Copy)]
    enum Len {
        Minimal,
        Wide16,
        Wide64,
    }

    /// A frame written by hand: any FIN/RSV/opcode/length form, masked with `mask` when given.
    fn raw_frame(b0: u8, payload: &[u8], mask: Option<[u8; 4]>, len: Len) -> Vec<u8> {
        let mut out = vec![b0];
        let m = if mask.is_some() { 0x80 } else { 0 };
        let n = payload.len();
        match len {
            Len::Minimal if n <= 125 => out.push(m | n as u8),
            Len::Minimal if n <= 0xffff => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            Len::Wide16 => {
                out.push(m | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            _ => {
                out.push(m | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                out.extend_from_slice(&k);
                out.extend(payload.iter().zip(k.iter().cycle()).map(|(b, k)| b ^ k));
            }
            None => out.extend_from_slice(payload),
        }
        out
    }

    fn key(i: usize) -> [u8; 4] {
        [0x37 ^ i as u8, 0xfa, 0x21 ^ (i >> 3) as u8, 0x3d]
    }

    /// A frame as `sender` writes it (masked for a client, with a key that changes per frame).
    fn frame(sender: Sender, i: usize, b0: u8, payload: &[u8]) -> Vec<u8> {
        let mask = (sender == Sender::Client).then(|| key(i));
        raw_frame(b0, payload, mask, Len::Minimal)
    }

    fn decode(
        sender: Sender,
        ext: Extensions,
        limits: WsLimits,
        chunks: &[&[u8]],
    ) -> (Vec<Ev>, WsStats, Option<Invalid>) {
        let mut d = WsDecoder::new(sender, ext, limits);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut |e| out.push(Ev::from(e)));
        }
        d.finish();
        (out, d.stats(), d.invalid())
    }

    /// `input` cut into pieces of `n` bytes.
    fn fixed(input: &[u8], n: usize) -> Vec<&[u8]> {
        input.chunks(n).collect()
    }

    /// Every chunking the decoders are held to: whole, 1–7 byte pieces, two pieces at every offset (for
    /// short inputs), byte by byte and pseudo-random pieces.
    fn chunkings(input: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all = vec![vec![input]];
        all.extend((1..=7).map(|n| fixed(input, n)));
        if input.len() <= 4096 {
            all.extend(every_split(input));
        }
        all.push(one_byte(input));
        all.extend(xorshift_chunks(input, 20));
        all
    }

    fn check_all(sender: Sender, ext: Extensions, input: &[u8], want: &[Ev]) {
        for chunks in chunkings(input) {
            let (got, stats, invalid) = decode(sender, ext, WsLimits::default(), &chunks);
            assert_eq!(
                got,
                want,
                "{sender:?} chunks of {:?}",
                chunks.first().map(|c| c.len())
            );
            assert_eq!(invalid, None);
            assert!(!stats.truncated);
            assert_eq!(stats.buffered, 0);
        }
    }

    /// A realistic session: text events, a binary message, a ping and a fragmented text message with a ping
    /// and a pong between its fragments, then a close.
    fn session(sender: Sender) -> (Vec<u8>, Vec<Ev>) {
        let t1 = r#"{"type":"session.update","session":{"instructions":"héllo 🌍"}}"#;
        let t2 = r#"{"type":"response.create"}"#;
        let big = format!(
            r#"{{"type":"input_audio_buffer.append","audio":"{}"}}"#,
            "QUJD".repeat(600)
        );
        let (a, rest) = big.split_at(1000);
        let (b, c) = rest.split_at(700);
        let mut bytes = Vec::new();
        let mut i = 0;
        let mut push = |b0: u8, p: &[u8]| {
            bytes.extend(frame(sender, i, b0, p));
            i += 1;
        };
        push(0x81, t1.as_bytes());
        push(0x89, b"are you there");
        push(0x82, &[0, 1, 2, 0xff]);
        push(0x01, a.as_bytes());
        push(0x89, b"");
        push(0x00, b.as_bytes());
        push(0x8a, b"pong");
        push(0x80, c.as_bytes());
        push(0x81, t2.as_bytes());
        push(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
        let want = vec![
            Ev::Text(t1.into()),
            Ev::Ping(b"are you there".to_vec()),
            Ev::Binary(vec![0, 1, 2, 0xff]),
            Ev::Ping(vec![]),
            Ev::Pong(b"pong".to_vec()),
            Ev::Text(big.clone()),
            Ev::Text(t2.into()),
            Ev::Close(Some(1000), "bye".into()),
        ];
        (bytes, want)
    }

    #[test]
    fn masked_and_unmasked_sessions_in_every_chunking() {
        for sender in [Sender::Client, Sender::Server] {
            let (bytes, want) = session(sender);
            check_all(sender, Extensions::None, &bytes, &want);
        }
    }

    #[test]
    fn length_boundaries_in_every_length_form() {
        for sender in [Sender::Client, Sender::Server] {
            for n in [0usize, 1, 125, 126, 127, 65535, 65536, 65537, 70000] {
                let payload: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
                let mask = (sender == Sender::Client).then(|| key(n));
                let mut forms = vec![Len::Minimal, Len::Wide64];
                if n <= 0xffff {
                    forms.push(Len::Wide16);
                }
                for form in forms {
                    let bytes = raw_frame(0x82, &payload, mask, form);
                    let sizes: Vec<Vec<&[u8]>> = if n > 1000 {
                        vec![vec![&bytes[..]], fixed(&bytes, 7), fixed(&bytes, 4093)]
                    } else {
                        chunkings(&bytes)
                    };
                    for chunks in sizes {
                        let (got, stats, invalid) =
                            decode(sender, Extensions::None, WsLimits::default(), &chunks);
                        assert_eq!(invalid, None, "{n}");
                        assert_eq!(got, vec![Ev::Binary(payload.clone())], "{n}");
                        assert_eq!(stats.messages, 1);
                    }
                }
            }
        }
    }

    /// A raw deflate compressor that ends every message with a sync flush, as permessage-deflate senders do.
    struct Deflater {
        c: Compress,
        takeover: bool,
    }

    impl Deflater {
        fn new(takeover: bool) -> Deflater {
            Deflater {
                c: Compress::new(Compression::default(), false),
                takeover,
            }
        }

        /// The compressed payload of one message, its trailing 00 00 ff ff removed (RFC 7692 §7.2.1).
        fn message(&mut self, data: &[u8]) -> Vec<u8> {
            if !self.takeover {
                self.c.reset();
            }
            let mut out = vec![0u8; data.len() * 2 + 1024];
            let (in0, out0) = (self.c.total_in(), self.c.total_out());
            self.c
                .compress(data, &mut out, FlushCompress::Sync)
                .unwrap();
            assert_eq!(self.c.total_in() - in0, data.len() as u64);
            out.truncate((self.c.total_out() - out0) as usize);
            assert!(out.ends_with(&DEFLATE_TAIL), "sync flush marker");
            out.truncate(out.len() - 4);
            out
        }
    }

    fn deflate_ext(server_nct: bool, client_nct: bool) -> Extensions {
        Extensions::Deflate(DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            ..DeflateParams::default()
        })
    }

    fn events(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                format!(
                    r#"{{"type":"response.output_audio_transcript.delta","event_id":"event_{i}","delta":"Hey there {}"}}"#,
                    "é".repeat(i % 5)
                )
            })
            .collect()
    }

    #[test]
    fn deflate_with_and_without_context_takeover() {
        for sender in [Sender::Client, Sender::Server] {
            for takeover in [true, false] {
                let ext = match sender {
                    Sender::Client => deflate_ext(false, !takeover),
                    Sender::Server => deflate_ext(!takeover, false),
                };
                let mut z = Deflater::new(takeover);
                let texts = events(6);
                let mut bytes = Vec::new();
                for (i, t) in texts.iter().enumerate() {
                    let packed = z.message(t.as_bytes());
                    if i == 3 {
                        // Fragmented: RSV1 on the first frame only, a ping between the fragments.
                        let (a, b) = packed.split_at(packed.len() / 2);
                        bytes.extend(frame(sender, i, 0x41, a));
                        bytes.extend(frame(sender, 100 + i, 0x89, b"p"));
                        bytes.extend(frame(sender, 200 + i, 0x80, b));
                    } else {
                        bytes.extend(frame(sender, i, 0xc1, &packed));
                    }
                    // An uncompressed message in between does not touch the compression context.
                    bytes.extend(frame(sender, 300 + i, 0x81, b"{\"plain\":1}"));
                }
                let mut want = Vec::new();
                for (i, t) in texts.iter().enumerate() {
                    if i == 3 {
                        want.push(Ev::Ping(b"p".to_vec()));
                    }
                    want.push(Ev::Text(t.clone()));
                    want.push(Ev::Text("{\"plain\":1}".into()));
                }
                check_all(sender, ext, &bytes, &want);
            }
        }
    }

    #[test]
    fn context_takeover_really_shares_the_window() {
        // The second message refers back to the first: decoding it alone must fail.
        let mut z = Deflater::new(true);
        let t = events(1).remove(0);
        let first = z.message(t.as_bytes());
        let second = z.message(t.as_bytes());
        assert!(
            second.len() < first.len() / 2,
            "second message is a back-reference"
        );
        let ext = deflate_ext(true, false); // claims no takeover: the decoder resets between messages
        let bytes = [
            frame(Sender::Server, 0, 0xc1, &first),
            frame(Sender::Server, 1, 0xc1, &second),
        ]
        .concat();
        let (got, stats, _) = decode(Sender::Server, ext, WsLimits::default(), &[&bytes]);
        assert_eq!(got.first(), Some(&Ev::Text(t.clone())));
        // Either refused as corrupt, or wrong: never the message that was sent.
        assert_ne!(got.get(1), Some(&Ev::Text(t)));
        let _ = stats;
    }

    #[test]
    fn oversized_messages_are_skipped_counted_and_framing_continues() {
        let limits = WsLimits {
            max_message: 300,
            max_inflate: 1 << 20,
        };
        for sender in [Sender::Client, Sender::Server] {
            let big = "x".repeat(1000);
            let bytes = [
                frame(sender, 0, 0x81, big.as_bytes()),
                // Fragmented, over the cap only with its third fragment.
                frame(sender, 1, 0x01, &[b'a'; 200]),
                frame(sender, 2, 0x89, b"ping"),
                frame(sender, 3, 0x00, &[b'b'; 90]),
                frame(sender, 4, 0x80, &[b'c'; 90]),
                frame(sender, 5, 0x81, b"small"),
            ]
            .concat();
            for chunks in chunkings(&bytes) {
                let (got, stats, invalid) = decode(sender, Extensions::None, limits, &chunks);
                assert_eq!(invalid, None);
                assert_eq!(
                    got,
                    vec![Ev::Ping(b"ping".to_vec()), Ev::Text("small".into())]
                );
                assert_eq!(stats.oversize_skipped, 2);
                assert!(stats.buffered == 0);
            }
            // Compressed and oversized once inflated, with context takeover: the window stays in step, so
            // the next compressed message still decodes.
            let mut z = Deflater::new(true);
            let huge = format!("{{\"a\":\"{}\"}}", "y".repeat(5000));
            let ok = events(1).remove(0);
            let bytes = [
                frame(sender, 0, 0xc1, &z.message(huge.as_bytes())),
                frame(sender, 1, 0xc1, &z.message(ok.as_bytes())),
            ]
            .concat();
            let ext = deflate_ext(false, false);
            for chunks in chunkings(&bytes) {
                let (got, stats, _) = decode(sender, ext, limits, &chunks);
                assert_eq!(got, vec![Ev::Text(ok.clone())]);
                assert_eq!((stats.oversize_skipped, stats.inflate_errors), (1, 0));
            }
        }
    }

    #[test]
    fn inflate_bomb_is_capped_then_context_is_lost() {
        let limits = WsLimits {
            max_message: 1 << 16,
            max_inflate: 100_000,
        };
        let mut z = Deflater::new(true);
        let bomb = z.message(&vec![b'0'; 1 << 20]);
        assert!(bomb.len() < 5000);
        let next = z.message(b"{\"after\":1}");
        let bytes = [
            frame(Sender::Server, 0, 0xc1, &bomb),
            frame(Sender::Server, 1, 0xc1, &next),
            frame(Sender::Server, 2, 0x81, b"plain"),
        ]
        .concat();
        let (got, stats, invalid) =
            decode(Sender::Server, deflate_ext(false, false), limits, &[&bytes]);
        assert_eq!(invalid, None);
        assert_eq!(got, vec![Ev::Text("plain".into())]);
        assert_eq!((stats.inflate_capped, stats.undecodable), (1, 1));
        // Without context takeover the next message starts afresh.
        let mut z = Deflater::new(false);
        let bytes = [
            frame(Sender::Server, 0, 0xc1, &z.message(&vec![b'0'; 1 << 20])),
            frame(Sender::Server, 1, 0xc1, &z.message(b"{\"after\":1}")),
        ]
        .concat();
        let (got, stats, _) = decode(Sender::Server, deflate_ext(true, false), limits, &[&bytes]);
        assert_eq!(got, vec![Ev::Text("{\"after\":1}".into())]);
        assert_eq!((stats.inflate_capped, stats.undecodable), (1, 0));
    }

    #[test]
    fn a_final_block_ends_the_message_in_any_chunking() {
        // Found by the websocket fuzz target: a compressed message whose DEFLATE stream ends (BFINAL)
        // before its payload does. What follows is ignored however the bytes arrive.
        let mut payload = vec![0x7b, 0x22, 0x74, 0x79, 0x0b, 0x00];
        payload.extend_from_slice(b"\x00\x00\"sr:eonse.done\",\"re\x00\x00\x00\x09s");
        let bytes = [
            frame(Sender::Server, 0, 0xc1, &payload),
            frame(Sender::Server, 1, 0x81, b"after"),
        ]
        .concat();
        let mut seen = None;
        for ext in [deflate_ext(false, false), deflate_ext(true, false)] {
            for chunks in chunkings(&bytes) {
                let got = decode(Sender::Server, ext, WsLimits::default(), &chunks);
                assert_eq!(got.0.last(), Some(&Ev::Text("after".into())));
                assert_eq!(got.1.inflate_errors, 0);
                if let Some(first) = &seen {
                    assert_eq!(first, &got.0);
                }
                seen.get_or_insert(got.0);
            }
            seen = None;
        }
        // The truncated form the fuzzer found: the same counters whole or in pieces.
        let cut = &frame(
            Sender::Server,
            0,
            0x41,
            &[payload.clone(), vec![b'x'; 80]].concat(),
        )[..50];
        let whole = decode(
            Sender::Server,
            deflate_ext(false, false),
            WsLimits::default(),
            &[cut],
        );
        for chunks in chunkings(cut) {
            let got = decode(
                Sender::Server,
                deflate_ext(false, false),
                WsLimits::default(),
                &chunks,
            );
            assert_eq!(got, whole);
        }
    }

    #[test]
    fn corrupt_compressed_message_is_counted() {
        let mut z = Deflater::new(false);
        let mut bad = z.message(b"{\"a\":1}");
        bad.insert(0, 0xff); // BTYPE 11: reserved
        let good = z.message(b"{\"b\":2}");
        let bytes = [
            frame(Sender::Server, 0, 0xc1, &bad),
            frame(Sender::Server, 1, 0xc1, &good),
        ]
        .concat();
        let (got, stats, _) = decode(
            Sender::Server,
            deflate_ext(true, false),
            WsLimits::default(),
            &[&bytes],
        );
        assert_eq!(got, vec![Ev::Text("{\"b\":2}".into())]);
        assert_eq!(stats.inflate_errors, 1);
    }

    #[test]
    fn invalid_frames_make_the_decoder_unreadable_for_good() {
        let ok = frame(Sender::Server, 0, 0x81, b"first");
        let cases: Vec<(Sender, Vec<u8>, Invalid)> = vec![
            (
                Sender::Server,
                frame(Sender::Server, 1, 0xa1, b"x"),
                Invalid::ReservedBits,
            ),
            (
                Sender::Server,
                frame(Sender::Server, 1, 0x91, b"x"),
                Invalid::ReservedBits,
            ),
            // RSV1 without a negotiated extension.
            (
                Sender::Server,
                frame(Sender::Server, 1, 0xc1, b"x"),
                Invalid::ReservedBits,
            ),
            (
                Sender::Server,
                frame(Sender::Server, 1, 0x83, b"x"),
                Invalid::UnknownOpcode(3),
            ),
            (
                Sender::Server,
                frame(Sender::Server, 1, 0x8b, b""),
                Invalid::UnknownOpcode(11),
            ),
            (
                Sender::Server,
                frame(Sender::Server, 1, 0x09, b""),
                Invalid::FragmentedControl,
            ),
            (
                Sender::Server,
                raw_frame(0x89, &[0; 126], None, Len::Minimal),
                Invalid::ControlTooLong,
            ),
            (
                Sender::Server,
                frame(Sender::Server, 1, 0x80, b"x"),
                Invalid::UnexpectedContinuation,
            ),
            (
                Sender::Server,
                [
                    frame(Sender::Server, 1, 0x01, b"a"),
                    frame(Sender::Server, 2, 0x81, b"b"),
                ]
                .concat(),
                Invalid::InterleavedData,
            ),
            (
                Sender::Server,
                raw_frame(0x81, b"x", Some(key(1)), Len::Minimal),
                Invalid::Masking,
            ),
            (
                Sender::Client,
                raw_frame(0x81, b"x", None, Len::Minimal),
                Invalid::Masking,
            ),
            (
                Sender::Server,
                {
                    let mut f = vec![0x82, 127];
                    f.extend_from_slice(&(1u64 << 63).to_be_bytes());
                    f
                },
                Invalid::LengthOverflow,
            ),
        ];
        for (sender, bad, why) in cases {
            let first = if sender == Sender::Client {
                frame(Sender::Client, 0, 0x81, b"first")
            } else {
                ok.clone()
            };
            let after = frame(sender, 9, 0x81, b"never");
            let bytes = [first, bad, after].concat();
            for chunks in chunkings(&bytes) {
                let (got, stats, invalid) =
                    decode(sender, Extensions::None, WsLimits::default(), &chunks);
                assert_eq!(invalid, Some(why), "{why:?}");
                assert_eq!(got, vec![Ev::Text("first".into())], "{why:?}");
                assert!(!stats.truncated && stats.buffered == 0, "{why:?}");
            }
        }
        // RSV1 on a continuation or control frame is invalid even with permessage-deflate.
        for bad in [
            [
                frame(Sender::Server, 0, 0x01, b"a"),
                frame(Sender::Server, 1, 0xc0, b"b"),
            ]
            .concat(),
            frame(Sender::Server, 0, 0xc9, b""),
        ] {
            let (_, _, invalid) = decode(
                Sender::Server,
                deflate_ext(false, false),
                WsLimits::default(),
                &[&bad],
            );
            assert_eq!(invalid, Some(Invalid::ReservedBits));
        }
        let d = WsDecoder::new(Sender::Server, Extensions::Unsupported, WsLimits::default());
        assert_eq!(d.invalid(), Some(Invalid::UnsupportedExtension));
    }

    #[test]
    fn close_code_reason_and_what_follows() {
        for (payload, want) in [
            (vec![0x03, 0xe8], Ev::Close(Some(1000), String::new())),
            (
                vec![0x03, 0xf0, b'p', b'o', b'l'],
                Ev::Close(Some(1008), "pol".into()),
            ),
            (
                vec![0x0f, 0xa0, 0xff, 0xfe],
                Ev::Close(Some(4000), String::new()),
            ),
            (vec![], Ev::Close(None, String::new())),
            (vec![0x03], Ev::Close(None, String::new())),
        ] {
            let bytes = [
                frame(Sender::Client, 0, 0x88, &payload),
                frame(Sender::Client, 1, 0x81, b"after"),
            ]
            .concat();
            let (got, stats, invalid) = decode(
                Sender::Client,
                Extensions::None,
                WsLimits::default(),
                &[&bytes],
            );
            assert_eq!((got, invalid), (vec![want], None));
            assert_eq!(stats.after_close, 11);
        }
    }

    #[test]
    fn invalid_utf8_text_is_dropped_and_counted() {
        let bytes = [
            frame(Sender::Server, 0, 0x81, &[b'a', 0xff, b'b']),
            // Split inside a multi-byte character across fragments: valid once reassembled.
            frame(Sender::Server, 1, 0x01, &"é".as_bytes()[..1]),
            frame(Sender::Server, 2, 0x80, &"é".as_bytes()[1..]),
        ]
        .concat();
        for chunks in chunkings(&bytes) {
            let (got, stats, _) = decode(
                Sender::Server,
                Extensions::None,
                WsLimits::default(),
                &chunks,
            );
            assert_eq!(got, vec![Ev::Text("é".into())]);
            assert_eq!(stats.invalid_utf8, 1);
        }
    }

    #[test]
    fn truncated_input_is_reported() {
        let (bytes, _) = session(Sender::Client);
        for cut in [1usize, 2, 5, 100, 1500] {
            let (_, stats, _) = decode(
                Sender::Client,
                Extensions::None,
                WsLimits::default(),
                &[&bytes[..cut]],
            );
            assert!(stats.truncated, "cut {cut}");
        }
        let whole = frame(Sender::Server, 0, 0x81, b"x");
        let (_, stats, _) = decode(
            Sender::Server,
            Extensions::None,
            WsLimits::default(),
            &[&whole],
        );
        assert!(!stats.truncated);
    }

    #[test]
    fn encoder_round_trips() {
        for (sender, mask) in [(Sender::Server, None), (Sender::Client, Some([1, 2, 3, 4]))] {
            for n in [0usize, 5, 125, 126, 65535, 65536] {
                let text = "a".repeat(n);
                let bytes = encode_frame(Opcode::Text, text.as_bytes(), mask);
                let (got, _, invalid) =
                    decode(sender, Extensions::None, WsLimits::default(), &[&bytes]);
                assert_eq!((got, invalid), (vec![Ev::Text(text)], None));
            }
            let close = encode_close(1008, &"é".repeat(100), mask);
            assert_eq!(close.len(), 2 + mask.map_or(0, |_| 4) + 125 - 1);
            let (got, _, _) = decode(sender, Extensions::None, WsLimits::default(), &[&close]);
            assert_eq!(got, vec![Ev::Close(Some(1008), "é".repeat(61))]);
            let ping = encode_frame(Opcode::Ping, &[7; 300], mask);
            let (got, _, invalid) = decode(sender, Extensions::None, WsLimits::default(), &[&ping]);
            assert_eq!((got, invalid), (vec![Ev::Ping(vec![7; 125])], None));
        }
    }

    #[test]
    fn extension_negotiation() {
        use Extensions::{Deflate, Unsupported};
        assert_eq!(negotiated(None), Extensions::None);
        assert_eq!(negotiated(Some("")), Extensions::None);
        assert_eq!(
            negotiated(Some("permessage-deflate")),
            Deflate(DeflateParams::default())
        );
        assert_eq!(
            negotiated(Some(
                "Permessage-Deflate; server_no_context_takeover ; client_max_window_bits=\"10\";SERVER_MAX_WINDOW_BITS=15; client_no_context_takeover"
            )),
            Deflate(DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: Some(15),
                client_max_window_bits: Some(10),
            })
        );
        for bad in [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; unknown_param",
            "permessage-deflate, permessage-deflate",
            "x-webkit-deflate-frame",
            "permessage-deflate, foo; a=\"1,2\"",
        ] {
            assert_eq!(negotiated(Some(bad)), Unsupported, "{bad}");
        }
        assert_eq!(
            strip_deflate_offer("permessage-deflate; client_max_window_bits"),
            None
        );
        assert_eq!(
            strip_deflate_offer(
                "permessage-deflate; client_max_window_bits, foo; a=\"x, y\", PERMESSAGE-DEFLATE"
            ),
            Some("foo; a=\"x, y\"".to_string())
        );
    }

    #[test]
    fn garbage_and_mutations_never_panic() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let limits = WsLimits {
            max_message: 2000,
            max_inflate: 50_000,
        };
        let mut z = Deflater::new(true);
        let mut inputs = Vec::new();
        for sender in [Sender::Client, Sender::Server] {
            let (bytes, _) = session(sender);
            inputs.push((sender, bytes));
            let compressed: Vec<u8> = events(4)
                .iter()
                .enumerate()
                .flat_map(|(i, t)| frame(sender, i, 0xc1, &z.message(t.as_bytes())))
                .collect();
            inputs.push((sender, compressed));
        }
        for _ in 0..300 {
            for (sender, good) in &inputs {
                let mut m = good.clone();
                for _ in 0..1 + next() % 4 {
                    let at = (next() as usize) % m.len();
                    m[at] ^= 1 << (next() % 8);
                }
                let noise: Vec<u8> = (0..next() % 300).map(|_| next() as u8).collect();
                for input in [&m, &noise] {
                    for ext in [
                        Extensions::None,
                        deflate_ext(false, false),
                        deflate_ext(true, true),
                    ] {
                        for chunks in xorshift_chunks(input, 2) {
                            let (_, stats, _) = decode(*sender, ext, limits, &chunks);
                            assert_eq!(stats.buffered, 0);
                        }
                    }
                }
            }
        }
    }
}
