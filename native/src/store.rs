//! The budget store of the native build: process-wide memory shared by every worker thread, with the
//! semantics of Envoy's Wasm shared data that the budget ledger (`tollgate::budget::ledger`) is written
//! against, so its no-overshoot guarantee holds across workers unchanged.
//!
//! Semantics, as Envoy's `SharedData` (source/extensions/common/wasm/context.cc in envoyproxy/envoy): every
//! write stamps the value with a fresh non-zero CAS token from one process-wide sequence; `set` with cas 0
//! writes unconditionally; `set` with a non-zero cas fails with `CasMismatch` when the key exists with another
//! token, and creates the key when it does not exist. Keys are never deleted.
//!
//! The map is split into shards, each behind its own mutex, so that workers touching different tenants'
//! counters do not wait on each other; a lock is held only to copy a value in or out.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use tollgate::budget::ledger::{Store, StoreError};

const SHARDS: usize = 16;

type Shard = HashMap<String, (Vec<u8>, u32)>;

pub struct SharedStore {
    shards: [Mutex<Shard>; SHARDS],
    hasher: RandomState,
    next_cas: AtomicU32,
}

/// The one store of the process: budgets are shared by every worker and every filter config, as the Wasm
/// build's shared data is shared by every VM with the same `vm_id`.
pub static STORE: LazyLock<SharedStore> = LazyLock::new(SharedStore::new);

impl Default for SharedStore {
    fn default() -> Self {
        SharedStore::new()
    }
}

impl SharedStore {
    pub fn new() -> SharedStore {
        SharedStore {
            shards: std::array::from_fn(|_| Mutex::new(HashMap::new())),
            hasher: RandomState::new(),
            next_cas: AtomicU32::new(0),
        }
    }

    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A poisoned shard (a panic while holding it: only an allocation failure could cause one, and that
        // aborts) still holds consistent entries: every write replaces a whole entry.
        let [first, ..] = &self.shards;
        let m = self.shards.get(i).unwrap_or(first);
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fresh non-zero CAS token.
    fn cas(&self) -> u32 {
        loop {
            let v = self
                .next_cas
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_add(1);
            if v != 0 {
                return v;
            }
        }
    }

    /// Keys held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Store for SharedStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.shard(key).get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
        let mut shard = self.shard(key);
        if let Some((_, current)) = shard.get(key) {
            if cas != 0 && cas != *current {
                return Err(StoreError::CasMismatch);
            }
        }
        let token = self.cas();
        match shard.get_mut(key) {
            Some(entry) => {
                entry.0.clear();
                entry.0.extend_from_slice(value);
                entry.1 = token;
            }
            None => {
                shard.insert(key.to_owned(), (value.to_vec(), token));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tollgate::budget::ledger::{self, Clock, CounterSpec, Decision, Ledger, Want};
    use tollgate::budget::Limits;

    #[test]
    fn shared_data_semantics() {
        let s = SharedStore::new();
        assert_eq!(s.get("k"), None);
        // cas 0 creates; a non-zero cas on a missing key creates too (Envoy's behaviour).
        s.set("k", b"a", 0).unwrap();
        let (v, c1) = s.get("k").unwrap();
        assert_eq!((v.as_slice(), c1 != 0), (b"a".as_slice(), true));
        s.set("k", b"b", c1).unwrap();
        let (v, c2) = s.get("k").unwrap();
        assert_eq!(v, b"b");
        assert_ne!(c1, c2);
        assert_eq!(s.set("k", b"c", c1), Err(StoreError::CasMismatch));
        assert_eq!(s.get("k").unwrap().0, b"b");
        s.set("k", b"d", 0).unwrap();
        assert_eq!(s.get("k").unwrap().0, b"d");
        s.set("other", b"x", 12345).unwrap();
        assert_eq!(s.get("other").unwrap().0, b"x");
        assert_eq!(s.len(), 2);
    }

    fn spec(limit: u64) -> CounterSpec {
        CounterSpec {
            rule: 0,
            key: ledger::counter_key("rule", "team-a"),
            overflow_key: ledger::overflow_key("rule"),
            window: tollgate::budget::calendar::Window::Fixed(3600),
            limits: Limits {
                tokens: Some(limit),
                ..Limits::default()
            },
            subject: "team-a".to_string(),
        }
    }

    /// The ledger's guarantee on this store, with real threads racing: reservations admitted never exceed
    /// the budget, and the budget is used up exactly (nothing is lost to a race).
    #[test]
    fn no_overshoot_across_threads() {
        const THREADS: u64 = 8;
        const TRIES: u64 = 400;
        const LIMIT: u64 = 1000;
        let store = Arc::new(SharedStore::new());
        let clock = Clock {
            now_s: 1_800_000_000,
            ttl_s: 300,
        };
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let l = Ledger {
                        store: &*store,
                        holder: t + 1,
                        max_keys: 100,
                    };
                    let want = Want {
                        input: 1,
                        output: 0,
                        min_output: 0,
                        ..Want::default()
                    };
                    let mut admitted = 0u64;
                    for _ in 0..TRIES {
                        match l.admit(&[spec(LIMIT)], &want, &clock).unwrap() {
                            Decision::Admitted { reservation, .. } => {
                                admitted += 1;
                                // Half commit their exact usage at once; the others hold the reservation.
                                if admitted.is_multiple_of(2) {
                                    let used = reservation.held[0].amount;
                                    l.commit(&reservation, used, &clock).unwrap();
                                }
                            }
                            Decision::Denied { .. } => {}
                        }
                    }
                    admitted
                })
            })
            .collect();
        let admitted: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(admitted, LIMIT, "exactly the budget is admitted");
        let c = ledger::Counter::decode(&store.get(&spec(LIMIT).key).unwrap().0).unwrap();
        assert_eq!(c.used.tokens + c.pending_total().tokens, LIMIT);
    }
}
