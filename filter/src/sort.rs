//! One stable sort for the whole module. std's sorts are compiled once per element type and comparison,
//! 5 to 11 KB of Wasm each; the lists tollgate sorts (redaction hits, metric points, configuration
//! entries) share this one, a merge sort of indices whose comparisons go through one `dyn` call.

/// Sort `v` by `less`, keeping equal elements in their order. O(n log n) comparisons.
pub fn sort_by<T>(v: &mut Vec<T>, less: impl Fn(&T, &T) -> bool) {
    if v.len() < 2 {
        return;
    }
    let order = {
        let items = v.as_slice();
        order(items.len(), &|a, b| match (items.get(a), items.get(b)) {
            (Some(a), Some(b)) => less(a, b),
            _ => false,
        })
    };
    let mut slots: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(order.iter().filter_map(|&i| slots.get_mut(i)?.take()));
}

/// The indices `0..n` in sorted order (bottom-up merge sort: `less(b, a)` alone moves `b` before `a`).
fn order(n: usize, less: &dyn Fn(usize, usize) -> bool) -> Vec<usize> {
    let mut from: Vec<usize> = (0..n).collect();
    let mut to: Vec<usize> = Vec::with_capacity(n);
    let mut width = 1;
    while width < n {
        to.clear();
        for run in from.chunks(width.saturating_mul(2)) {
            let (mut left, mut right) = run.split_at(width.min(run.len()));
            while let (Some(&a), Some(&b)) = (left.first(), right.first()) {
                if less(b, a) {
                    to.push(b);
                    right = right.get(1..).unwrap_or_default();
                } else {
                    to.push(a);
                    left = left.get(1..).unwrap_or_default();
                }
            }
            to.extend_from_slice(left);
            to.extend_from_slice(right);
        }
        std::mem::swap(&mut from, &mut to);
        width = width.saturating_mul(2);
    }
    from
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SplitMix64;

    #[test]
    fn sorts_stably_as_std_does() {
        let mut rng = SplitMix64::new(7);
        for n in [0usize, 1, 2, 3, 5, 8, 17, 64, 100, 1000, 4099] {
            for modulus in [2u64, 10, 1 << 40] {
                let v: Vec<(u64, usize)> = (0..n).map(|i| (rng.next_u64() % modulus, i)).collect();
                let mut want = v.clone();
                want.sort_by_key(|x| x.0);
                let mut got = v;
                sort_by(&mut got, |a, b| a.0 < b.0);
                assert_eq!(got, want, "n {n} modulus {modulus}");
            }
        }
        let mut owned: Vec<String> = ["b", "a", "c", "a"].map(String::from).to_vec();
        sort_by(&mut owned, |a, b| a < b);
        assert_eq!(owned, ["a", "a", "b", "c"]);
    }
}
