#![no_main]
//! The WebSocket decoder (RFC 6455, permessage-deflate) on arbitrary bytes and on frames built from the
//! input. Byte 0 picks the sender, the negotiated extension and the message cap; bit 7 the mode:
//! - raw bytes: no panic, nothing buffered after `finish`, no message over the cap, and any chunking
//!   gives exactly what the whole input gives;
//! - built messages: text/binary messages (fragmented, pings between fragments, compressed with or
//!   without context takeover when the extension is on) decode back to what was sent, in any chunking.
use libfuzzer_sys::fuzz_target;
use miniz_oxide::deflate::core::CompressorOxide;
use miniz_oxide::deflate::stream::deflate;
use miniz_oxide::{DataFormat, MZFlush};
use tollgate::stream::websocket::{
    encode_raw as frame, frame_extent, DeflateParams, Extensions, Sender, WsDecoder, WsEvent, WsLimits, WsStats,
};

fn decode(
    sender: Sender,
    ext: Extensions,
    limits: WsLimits,
    pieces: &[&[u8]],
) -> (Vec<String>, WsStats) {
    let mut d = WsDecoder::new(sender, ext, limits);
    let mut out = Vec::new();
    for p in pieces {
        d.push(p, &mut |e| {
            if let WsEvent::Text(t) = e {
                assert!(t.len() <= limits.max_message);
            }
            if let WsEvent::Binary(b) = e {
                assert!(b.len() <= limits.max_message);
            }
            out.push(format!("{e:?}"));
        });
    }
    d.finish();
    let stats = d.stats();
    assert_eq!(stats.buffered, 0);
    (out, stats)
}

fn compressor() -> CompressorOxide {
    let mut c = CompressorOxide::default();
    c.set_format_and_level(DataFormat::Raw, 6);
    c
}

/// One message compressed with a sync flush, its 00 00 ff ff tail removed.
fn compress(c: &mut CompressorOxide, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 4096];
    let mut rest = data;
    loop {
        let r = deflate(c, rest, &mut buf, MZFlush::Sync);
        rest = &rest[r.bytes_consumed..];
        out.extend_from_slice(&buf[..r.bytes_written]);
        if r.status.is_err() || (rest.is_empty() && r.bytes_written < buf.len()) {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn built(sender: Sender, deflate_on: bool, takeover: bool, limits: WsLimits, spec: &[u8]) {
    let ext = if deflate_on {
        Extensions::Deflate(DeflateParams {
            server_no_context_takeover: !takeover,
            client_no_context_takeover: !takeover,
            ..DeflateParams::default()
        })
    } else {
        Extensions::None
    };
    let mut c = compressor();
    let mut bytes = Vec::new();
    let mut want = Vec::new();
    let mut oversize = 0u64;
    let mut rest = spec;
    let mut n = 0u8;
    while let [kind, len, tail @ ..] = rest {
        let take = (*len as usize * 3).min(tail.len());
        let (raw, after) = tail.split_at(take);
        rest = after;
        n = n.wrapping_add(1);
        let mask = (sender == Sender::Client).then_some([n, kind ^ n, *len, 0x5a]);
        let text = kind & 1 == 0;
        let payload: Vec<u8> = if text {
            String::from_utf8_lossy(raw).into_owned().into_bytes()
        } else {
            raw.to_vec()
        };
        let compressed = deflate_on && kind & 2 != 0;
        let wire = if compressed {
            if !takeover {
                c = compressor();
            }
            compress(&mut c, &payload)
        } else {
            payload.clone()
        };
        let fragments = 1 + (kind >> 2 & 3) as usize;
        let ping_between = kind & 0x10 != 0;
        let size = wire.len().div_ceil(fragments).max(1);
        let parts: Vec<&[u8]> = if wire.is_empty() {
            vec![&[][..]]
        } else {
            wire.chunks(size).collect()
        };
        for (i, part) in parts.iter().enumerate() {
            let fin = if i + 1 == parts.len() { 0x80 } else { 0 };
            let op = if i == 0 {
                if text {
                    1
                } else {
                    2
                }
            } else {
                0
            };
            let rsv1 = if i == 0 && compressed { 0x40 } else { 0 };
            bytes.extend(frame(fin | rsv1 | op, part, mask));
            if ping_between && fin == 0 {
                bytes.extend(frame(0x89, &[n], mask));
                want.push(format!("{:?}", WsEvent::Ping(&[n])));
            }
        }
        if payload.len() > limits.max_message {
            oversize += 1;
        } else if text {
            want.push(format!(
                "{:?}",
                WsEvent::Text(std::str::from_utf8(&payload).unwrap())
            ));
        } else {
            want.push(format!("{:?}", WsEvent::Binary(&payload)));
        }
    }
    for seed in [1u8, 7, 200] {
        let pieces = tollgate_fuzz::chunks(seed, &bytes);
        let (got, stats) = decode(sender, ext, limits, &pieces);
        assert_eq!(got, want);
        assert_eq!(stats.oversize_skipped, oversize);
        assert_eq!(
            stats.inflate_errors + stats.undecodable + stats.invalid_utf8,
            0
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let sender = if sel & 1 == 0 {
        Sender::Client
    } else {
        Sender::Server
    };
    let limits = WsLimits {
        max_message: 64 + usize::from(sel >> 4 & 7) * 64,
        max_inflate: 1 << 16,
    };
    if sel & 0x80 != 0 {
        return built(sender, sel & 2 != 0, sel & 4 != 0, limits, rest);
    }
    // The frame measurer the gateway uses to forward or drop whole client frames: total on any bytes.
    let mut at = 0usize;
    while let Some(e) = rest.get(at..).and_then(frame_extent) {
        assert!(e.header_len as u64 <= e.total_len);
        match usize::try_from(e.total_len).ok().and_then(|t| at.checked_add(t)) {
            Some(end) if end <= rest.len() => at = end,
            _ => break,
        }
    }
    let ext = match sel >> 1 & 7 {
        0 | 1 | 2 => Extensions::None,
        3 => Extensions::Deflate(DeflateParams::default()),
        4 => Extensions::Deflate(DeflateParams {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            ..DeflateParams::default()
        }),
        _ => Extensions::Unsupported,
    };
    let (whole, whole_stats) = decode(sender, ext, limits, &[rest]);
    let (split, split_stats) = decode(sender, ext, limits, &tollgate_fuzz::chunks(sel, rest));
    assert_eq!(whole, split, "chunking changed the events");
    assert_eq!(whole_stats, split_stats, "chunking changed the counters");
});
