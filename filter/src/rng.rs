//! The per-VM random generator for trace/span ids, sampling draws and retry jitter: SplitMix64 (Steele,
//! Lea and Flood, 2014) seeded once from the host's entropy. Ids must be unpredictable enough not to
//! collide, not secret (W3C Trace Context asks for random, not cryptographic, ids), so one WASI
//! `random_get` per VM replaces two per request.

/// SplitMix64: a 64-bit counter stepped by the golden-ratio increment and mixed. Every output of one
/// generator is distinct for 2^64 draws, so ids from one VM never repeat.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// `N` random bytes.
    pub fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            let r = self.next_u64().to_le_bytes();
            for (o, b) in chunk.iter_mut().zip(r) {
                *o = b;
            }
        }
        out
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // The published SplitMix64 sequence for seed 1234567.
        let mut g = SplitMix64::new(1234567);
        assert_eq!(g.next_u64(), 6457827717110365317);
        assert_eq!(g.next_u64(), 3203168211198807973);
        assert_eq!(g.next_u64(), 9817491932198370423);
    }

    #[test]
    fn bytes_units_and_no_repeats() {
        let mut g = SplitMix64::new(0);
        let ids: std::collections::HashSet<[u8; 16]> =
            (0..10_000).map(|_| g.bytes::<16>()).collect();
        assert_eq!(ids.len(), 10_000);
        let odd: [u8; 12] = g.bytes();
        assert!(odd.iter().any(|&b| b != 0));
        let mean = (0..10_000)
            .map(|_| g.unit())
            .inspect(|u| assert!((0.0..1.0).contains(u)))
            .sum::<f64>()
            / 10_000.0;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
