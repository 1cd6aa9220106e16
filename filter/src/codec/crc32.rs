//! CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): the checksum of gzip members and of AWS
//! event-stream frames. Slice-by-16: sixteen 256-entry tables, so the loop takes 16 bytes per step.
//! The tables (16 KB) are built on first use rather than stored in the module.

use std::sync::OnceLock;

type Tables = [[u32; 256]; 16];

/// Row 0 maps a byte to its CRC; row n to the CRC of that byte followed by n zero bytes.
fn tables() -> &'static Tables {
    static TABLES: OnceLock<Box<Tables>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut first = [0u32; 256];
        for (i, entry) in (0u32..).zip(first.iter_mut()) {
            *entry = (0..8).fold(i, |c, _| {
                if c & 1 == 1 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                }
            });
        }
        let mut t = Box::new([[0u32; 256]; 16]);
        let mut row = first;
        for out in t.iter_mut() {
            *out = row;
            for entry in row.iter_mut() {
                *entry = (*entry >> 8) ^ at(&first, *entry as u8);
            }
        }
        t
    })
}

#[inline(always)]
fn at(row: &[u32; 256], i: u8) -> u32 {
    row.get(usize::from(i)).copied().unwrap_or(0)
}

/// A running CRC-32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hasher(u32);

impl Hasher {
    pub fn new() -> Self {
        Hasher(0)
    }

    pub fn update(&mut self, data: &[u8]) {
        let t = tables();
        let mut crc = !self.0;
        let mut chunks = data.chunks_exact(16);
        for chunk in &mut chunks {
            let Ok(c) = <&[u8; 16]>::try_from(chunk) else {
                continue;
            };
            let w = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            crc = at(&t[15], w as u8)
                ^ at(&t[14], (w >> 8) as u8)
                ^ at(&t[13], (w >> 16) as u8)
                ^ at(&t[12], (w >> 24) as u8)
                ^ at(&t[11], c[4])
                ^ at(&t[10], c[5])
                ^ at(&t[9], c[6])
                ^ at(&t[8], c[7])
                ^ at(&t[7], c[8])
                ^ at(&t[6], c[9])
                ^ at(&t[5], c[10])
                ^ at(&t[4], c[11])
                ^ at(&t[3], c[12])
                ^ at(&t[2], c[13])
                ^ at(&t[1], c[14])
                ^ at(&t[0], c[15]);
        }
        for &b in chunks.remainder() {
            crc = at(&t[0], crc as u8 ^ b) ^ (crc >> 8);
        }
        self.0 = !crc;
    }

    pub fn finalize(self) -> u32 {
        self.0
    }
}

/// The CRC-32 of `data`.
pub fn hash(data: &[u8]) -> u32 {
    let mut h = Hasher::new();
    h.update(data);
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn matches_crc32fast() {
        assert_eq!(hash(b"123456789"), 0xCBF4_3926);
        assert_eq!(hash(b""), 0);
        let mut rng = SplitMix64::new(9);
        let data: Vec<u8> = (0..5000).map(|_| rng.next_u64() as u8).collect();
        for len in (0..200).chain([1000, 4095, 4096, 4097, 5000]) {
            let d = &data[..len];
            assert_eq!(hash(d), crc32fast::hash(d), "len {len}");
            // Fed in pieces of every size, the same.
            let split = len / 3;
            let mut h = Hasher::new();
            h.update(&d[..split]);
            h.update(&d[split..]);
            assert_eq!(h.finalize(), crc32fast::hash(d), "len {len} split");
        }
    }
}
