//! Budget counters in a compare-and-swap key-value store (Envoy shared data in the host, an in-memory fake in
//! tests), with the reserve → commit protocol that keeps budgets exact under concurrency.
//!
//! One key per (rule fingerprint, tenant) holds the current fixed window's committed usage plus the
//! outstanding reservations, grouped in time buckets so that reservations a dead VM never committed expire
//! after the TTL. Keys are never keyed by window (shared data cannot delete): a new window resets the value.
//! Every update is a read → modify → `set(value, cas)` loop; a `CasMismatch` means another worker wrote in
//! between and the update is recomputed on the fresh value.
//!
//! Envoy's `set_shared_data` with cas 0 writes unconditionally, so two workers creating the same key at once
//! could clobber each other's first reservation. Keys are therefore only created while holding a small lock
//! (itself a CAS-updated key), which also counts the keys created so the key space stays bounded.

use super::calendar::Window;
use super::config::Limits;
use super::thresholds::{self, Crossing, Marker, Thresholds};

/// What a store write can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreError {
    /// The value changed since it was read.
    CasMismatch,
    /// Any other host failure.
    Failed,
}

/// A process-wide key-value store with compare-and-swap, as Envoy's shared data.
pub trait Store {
    /// The value and its CAS token; None when the key does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Write `value` if the key's CAS token is still `cas`; cas 0 writes unconditionally (creates).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError>;
}

/// Token and cost amounts; all arithmetic saturates (never wraps, never underflows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    /// input + output
    pub tokens: u64,
    pub input: u64,
    pub output: u64,
    /// pico-USD
    pub cost_pico: u64,
}

impl Amount {
    pub fn plus(self, o: Amount) -> Amount {
        Amount {
            tokens: self.tokens.saturating_add(o.tokens),
            input: self.input.saturating_add(o.input),
            output: self.output.saturating_add(o.output),
            cost_pico: self.cost_pico.saturating_add(o.cost_pico),
        }
    }
    pub fn minus(self, o: Amount) -> Amount {
        Amount {
            tokens: self.tokens.saturating_sub(o.tokens),
            input: self.input.saturating_sub(o.input),
            output: self.output.saturating_sub(o.output),
            cost_pico: self.cost_pico.saturating_sub(o.cost_pico),
        }
    }
    pub fn is_zero(&self) -> bool {
        *self == Amount::default()
    }
}

/// Outstanding reservations made in one time bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pending {
    bucket: u64,
    amount: Amount,
}

/// Reservation buckets kept per counter; more are merged into the newest (which expires last: conservative).
const MAX_BUCKETS: usize = 16;

/// The value stored under one counter key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    /// Start (Unix seconds) of the window `used` and `pending` belong to.
    pub window_start: u64,
    /// Committed usage of admitted requests in this window.
    pub used: Amount,
    pending: Vec<Pending>,
    /// The highest alert threshold fired in this window (swapped together with the commit that fired it).
    pub marker: Marker,
}

const MAGIC: &[u8; 4] = b"TGB1";

fn put_amount(out: &mut Vec<u8>, a: &Amount) {
    for v in [a.tokens, a.input, a.output, a.cost_pico] {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn u64(&mut self) -> Option<u64> {
        let (head, rest) = self.0.split_at_checked(8)?;
        self.0 = rest;
        Some(u64::from_le_bytes(head.try_into().ok()?))
    }
    fn amount(&mut self) -> Option<Amount> {
        Some(Amount {
            tokens: self.u64()?,
            input: self.u64()?,
            output: self.u64()?,
            cost_pico: self.u64()?,
        })
    }
}

impl Counter {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 8 + 32 + 1 + self.pending.len() * 40);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.window_start.to_le_bytes());
        put_amount(&mut out, &self.used);
        out.push(u8::try_from(self.pending.len().min(MAX_BUCKETS)).unwrap_or(0));
        for p in self.pending.iter().take(MAX_BUCKETS) {
            out.extend_from_slice(&p.bucket.to_le_bytes());
            put_amount(&mut out, &p.amount);
        }
        if self.marker.fired_ppm != 0 {
            out.extend_from_slice(&self.marker.encode());
        }
        out
    }

    /// None for anything that is not a well-formed counter (an empty or foreign value).
    pub fn decode(bytes: &[u8]) -> Option<Counter> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let mut r = Reader(rest);
        let window_start = r.u64()?;
        let used = r.amount()?;
        let (n, rest) = r.0.split_first()?;
        r.0 = rest;
        let mut pending = Vec::with_capacity(usize::from(*n).min(MAX_BUCKETS));
        for _ in 0..usize::from(*n).min(MAX_BUCKETS) {
            pending.push(Pending {
                bucket: r.u64()?,
                amount: r.amount()?,
            });
        }
        // A marker follows when a threshold fired in the window (values without one read as none fired).
        let marker = Marker::decode(r.0)
            .filter(|m| m.fired_ppm != 0)
            .unwrap_or_default();
        Some(Counter {
            window_start,
            used,
            pending,
            marker,
        })
    }

    /// Sum of outstanding reservations.
    pub fn pending_total(&self) -> Amount {
        self.pending
            .iter()
            .fold(Amount::default(), |a, p| a.plus(p.amount))
    }

    /// Move to the window containing `now`; a new window starts empty (its reservations belonged to the
    /// old window, whose requests commit into nothing).
    fn roll(&mut self, window: &Window, now_s: u64) {
        let start = window.start(now_s);
        if start != self.window_start {
            *self = Counter {
                window_start: start,
                ..Counter::default()
            };
        }
    }

    /// Drop reservation buckets older than the TTL (their requests never committed: a VM died).
    fn expire(&mut self, clock: &Clock) {
        let w = clock.bucket_width();
        self.pending.retain(|p| {
            p.bucket
                .saturating_add(1)
                .saturating_mul(w)
                .saturating_add(clock.ttl_s)
                > clock.now_s
        });
    }

    fn add_pending(&mut self, bucket: u64, amount: Amount) {
        if amount.is_zero() {
            return;
        }
        if let Some(p) = self.pending.iter_mut().find(|p| p.bucket == bucket) {
            p.amount = p.amount.plus(amount);
        } else if self.pending.len() < MAX_BUCKETS {
            self.pending.push(Pending { bucket, amount });
        } else if let Some(newest) = self.pending.iter_mut().max_by_key(|p| p.bucket) {
            newest.amount = newest.amount.plus(amount);
        }
    }

    fn remove_pending(&mut self, bucket: u64, amount: Amount) {
        // A reservation merged into the newest bucket (overflow) is found there instead.
        let idx = self
            .pending
            .iter()
            .position(|p| p.bucket == bucket)
            .or_else(|| {
                self.pending
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.bucket > bucket)
                    .max_by_key(|(_, p)| p.bucket)
                    .map(|(i, _)| i)
            });
        if let Some(p) = idx.and_then(|i| self.pending.get_mut(i)) {
            p.amount = p.amount.minus(amount);
        }
        self.pending.retain(|p| !p.amount.is_zero());
    }

    /// What is still available under `limits` (None = unlimited dimension).
    fn available(&self, limits: &Limits) -> Avail {
        let taken = self.used.plus(self.pending_total());
        let left = |limit: Option<u64>, t: u64| limit.map(|l| l.saturating_sub(t));
        Avail {
            tokens: left(limits.tokens, taken.tokens),
            input: left(limits.input, taken.input),
            output: left(limits.output, taken.output),
            cost_pico: left(limits.cost_pico, taken.cost_pico),
        }
    }
}

/// Start of the fixed window containing `now_s`, aligned to the Unix epoch (so `1d` windows start at 00:00 UTC
/// on every worker and replica alike).
pub fn window_start(window_s: u64, now_s: u64) -> u64 {
    let w = window_s.max(1);
    now_s - now_s % w
}

/// Seconds until the window containing `now_s` ends (≥ 1).
pub fn seconds_to_reset(window_s: u64, now_s: u64) -> u64 {
    window_start(window_s, now_s)
        .saturating_add(window_s.max(1))
        .saturating_sub(now_s)
        .max(1)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Avail {
    tokens: Option<u64>,
    input: Option<u64>,
    output: Option<u64>,
    cost_pico: Option<u64>,
}

/// Time inputs of the ledger: wall clock and reservation TTL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    pub now_s: u64,
    pub ttl_s: u64,
}

impl Clock {
    /// Reservations are grouped in buckets of ttl/8 seconds: expiry is at most 1/8 TTL late.
    fn bucket_width(&self) -> u64 {
        (self.ttl_s / 8).max(1)
    }
    fn bucket(&self) -> u64 {
        self.now_s / self.bucket_width()
    }
}

/// What a request asks for: its worst case, and how far output may be lowered instead of refusing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    /// Input tokens (an over-estimate).
    pub input: u64,
    /// Worst-case output tokens (max output tokens × choices).
    pub output: u64,
    /// Least output worth admitting when clamping; `output` when not clamping.
    pub min_output: u64,
    /// Worst-case cost of the input, pico-USD.
    pub input_cost_pico: u64,
    /// Cost of one output token, pico-USD.
    pub output_price_pico: u64,
}

impl Want {
    fn amount(&self, output: u64) -> Amount {
        Amount {
            tokens: self.input.saturating_add(output),
            input: self.input,
            output,
            cost_pico: self
                .input_cost_pico
                .saturating_add(output.saturating_mul(self.output_price_pico)),
        }
    }

    /// The most output (≤ `self.output`) that fits `avail`, or None if not even `min_output` does.
    fn grant(&self, avail: &Avail) -> Option<u64> {
        let mut g = self.output;
        if let Some(t) = avail.tokens {
            g = g.min(t.checked_sub(self.input)?);
        }
        if let Some(i) = avail.input {
            if self.input > i {
                return None;
            }
        }
        if let Some(o) = avail.output {
            g = g.min(o);
        }
        if let Some(c) = avail.cost_pico {
            let left = c.checked_sub(self.input_cost_pico)?;
            if let Some(per) = left.checked_div(self.output_price_pico) {
                g = g.min(per);
            }
        }
        (g >= self.min_output.min(self.output)).then_some(g)
    }
}

/// One counter a request is checked against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterSpec {
    /// Index of the rule in the configuration.
    pub rule: usize,
    /// Rule fingerprint + tenant; see `counter_key`.
    pub key: String,
    /// Key to fall back to when the tenant cap is reached.
    pub overflow_key: String,
    pub window: Window,
    pub limits: Limits,
    /// The subject counted (the request's tenant, team, user, ... for the rule's dimension).
    pub subject: String,
}

/// Shared-data key of a counter. Tenants are validated ([A-Za-z0-9._:@-]), so `/` cannot be forged.
pub fn counter_key(fingerprint: &str, tenant: &str) -> String {
    format!("tollgate.budget.v1/{fingerprint}/{tenant}")
}

/// The counter all tenants beyond `max_tenants` share for a rule (`~` is not a valid tenant character).
pub fn overflow_key(fingerprint: &str) -> String {
    format!("tollgate.budget.v1/{fingerprint}/~overflow")
}

/// The lock guarding key creation, and the count of keys created.
pub const LOCK_KEY: &str = "tollgate.budget.v1/~lock";

/// Thresholds one commit crossed on one counter: the commit that crossed them reports them, no other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fired {
    pub rule: usize,
    /// The counter's key (its subject is the part after the last `/`; `~overflow` for the shared one).
    pub key: String,
    pub window: Window,
    pub window_start: u64,
    pub crossings: Vec<Crossing>,
}

/// A reservation held on one counter, to be committed (or released) later.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    pub rule: usize,
    pub key: String,
    pub window: Window,
    pub window_start: u64,
    pub bucket: u64,
    pub amount: Amount,
}

/// Everything a request holds; committed exactly once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reservation {
    pub held: Vec<Held>,
}

/// The rule that limits a request most, for headers and span attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tightest {
    pub rule: usize,
    /// The token limit reported in `x-ratelimit-limit-tokens` (tokens, else output, else input limit).
    pub limit_tokens: Option<u64>,
    /// What is left of it after this request's reservation.
    pub remaining_tokens: Option<u64>,
    pub reset_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Admitted with `output` tokens of output (< the request's when clamped).
    Admitted {
        reservation: Reservation,
        output: u64,
        tightest: Option<Tightest>,
        /// Some tenant counter was full (`max_tenants`) and the shared overflow counter was used.
        overflowed: bool,
    },
    Denied {
        tightest: Tightest,
        overflowed: bool,
    },
}

/// A store that kept refusing (or failing) writes; the caller decides what to do (tollgate refuses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Contention;

/// CAS attempts before giving up; each failure means another worker made progress.
const MAX_ATTEMPTS: u32 = 10_000;
/// Reads of a held lock before giving up: the holder is another worker between two host calls.
const LOCK_SPIN: u32 = 200_000;
/// A lock held longer than this belonged to a VM that died mid-creation and is taken over.
const LOCK_STALE_S: u64 = 5;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Lock {
    holder: u64,
    since_s: u64,
    created: u64,
}

impl Lock {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(28);
        v.extend_from_slice(b"TGL1");
        for x in [self.holder, self.since_s, self.created] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        v
    }
    fn decode(b: &[u8]) -> Lock {
        let Some(rest) = b.strip_prefix(b"TGL1") else {
            return Lock::default();
        };
        let mut r = Reader(rest);
        Lock {
            holder: r.u64().unwrap_or(0),
            since_s: r.u64().unwrap_or(0),
            created: r.u64().unwrap_or(0),
        }
    }
}

/// The ledger of one VM: the store plus who we are (lock holder id) and the key cap.
pub struct Ledger<'s, S: Store> {
    pub store: &'s S,
    /// Non-zero id of this VM, for the creation lock.
    pub holder: u64,
    /// Counter keys that may be created (the overflow keys are exempt).
    pub max_keys: u64,
}

enum Created {
    Yes,
    CapReached,
}

impl<S: Store> Ledger<'_, S> {
    /// Make sure the lock key exists (called at configure time, before traffic, to shrink the only
    /// unguarded creation race to start-up).
    pub fn init(&self) {
        if self.store.get(LOCK_KEY).is_none() {
            let _ = self.store.set(LOCK_KEY, &Lock::default().encode(), 0);
        }
    }

    /// Create `key` (empty) under the lock unless it exists. `capped`: respect `max_keys`.
    fn create(&self, key: &str, capped: bool, now_s: u64) -> Result<Created, Contention> {
        let me = self.holder.max(1);
        for _ in 0..LOCK_SPIN {
            let Some((bytes, cas)) = self.store.get(LOCK_KEY) else {
                self.init();
                continue;
            };
            let mut lock = Lock::decode(&bytes);
            let free = lock.holder == 0
                || lock.holder == me
                || now_s >= lock.since_s.saturating_add(LOCK_STALE_S);
            if !free {
                continue; // another worker is between acquire and release: a few host calls
            }
            lock.holder = me;
            lock.since_s = now_s;
            if self.store.set(LOCK_KEY, &lock.encode(), cas) != Ok(()) {
                continue;
            }
            // Holding the lock: nobody else creates keys now.
            let mut result = Created::Yes;
            if self.store.get(key).is_none() {
                if capped && lock.created >= self.max_keys {
                    result = Created::CapReached;
                } else if self.store.set(key, &Counter::default().encode(), 0).is_ok() {
                    lock.created = lock.created.saturating_add(1);
                }
            }
            self.release(lock.created);
            return Ok(result);
        }
        Err(Contention)
    }

    fn release(&self, created: u64) {
        let me = self.holder.max(1);
        for _ in 0..MAX_ATTEMPTS {
            let Some((bytes, cas)) = self.store.get(LOCK_KEY) else {
                return;
            };
            let lock = Lock::decode(&bytes);
            if lock.holder != me {
                return; // taken over as stale
            }
            let freed = Lock {
                holder: 0,
                since_s: 0,
                created: created.max(lock.created),
            };
            if self.store.set(LOCK_KEY, &freed.encode(), cas).is_ok() {
                return;
            }
        }
    }

    /// Read-modify-write `key` until the CAS succeeds. `f` returns its result and whether to write.
    /// A missing key is created first (Err(CapReached) surfaces as Ok(None) for capped keys).
    fn update<R>(
        &self,
        key: &str,
        capped: bool,
        now_s: u64,
        mut f: impl FnMut(&mut Counter) -> (R, bool),
    ) -> Result<Option<R>, Contention> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((bytes, cas)) = self.store.get(key) else {
                match self.create(key, capped, now_s)? {
                    Created::Yes => continue,
                    Created::CapReached => return Ok(None),
                }
            };
            let mut c = Counter::decode(&bytes).unwrap_or_default();
            let (r, write) = f(&mut c);
            if !write {
                return Ok(Some(r));
            }
            match self.store.set(key, &c.encode(), cas) {
                Ok(()) => return Ok(Some(r)),
                Err(StoreError::CasMismatch) => continue,
                Err(StoreError::Failed) => return Err(Contention),
            }
        }
        Err(Contention)
    }

    /// Reserve on one counter. Ok(Ok(held, granted, tightest)) or Ok(Err(tightest)) when it does not fit.
    #[allow(clippy::type_complexity)]
    fn reserve_one(
        &self,
        spec: &CounterSpec,
        want: &Want,
        clock: &Clock,
        overflowed: &mut bool,
    ) -> Result<Result<(Held, u64, Tightest), Tightest>, Contention> {
        let bucket = clock.bucket();
        let mut key = spec.key.as_str();
        let mut capped = true;
        loop {
            let outcome = self.update(key, capped, clock.now_s, |c| {
                c.roll(&spec.window, clock.now_s);
                c.expire(clock);
                let avail = c.available(&spec.limits);
                match want.grant(&avail) {
                    Some(g) => {
                        let amount = want.amount(g);
                        c.add_pending(bucket, amount);
                        let t = tightest(spec, &c.available(&spec.limits), clock);
                        let held = Held {
                            rule: spec.rule,
                            key: key.to_owned(),
                            window: spec.window,
                            window_start: c.window_start,
                            bucket,
                            amount,
                        };
                        (Ok((held, g, t)), true)
                    }
                    None => (Err(tightest(spec, &avail, clock)), false),
                }
            })?;
            match outcome {
                Some(r) => return Ok(r),
                None if capped => {
                    *overflowed = true;
                    key = spec.overflow_key.as_str();
                    capped = false;
                }
                None => return Err(Contention),
            }
        }
    }

    /// Reserve `want` on every counter (all must fit; the smallest grant wins when clamping).
    pub fn admit(
        &self,
        specs: &[CounterSpec],
        want: &Want,
        clock: &Clock,
    ) -> Result<Decision, Contention> {
        let mut held: Vec<Held> = Vec::with_capacity(specs.len());
        let mut tights: Vec<Tightest> = Vec::with_capacity(specs.len());
        let mut output = want.output;
        let mut overflowed = false;
        for spec in specs {
            let step = Want { output, ..*want };
            match self.reserve_one(spec, &step, clock, &mut overflowed) {
                Ok(Ok((h, g, t))) => {
                    output = output.min(g);
                    held.push(h);
                    tights.push(t);
                }
                Ok(Err(t)) => {
                    self.release_all(&held, clock);
                    return Ok(Decision::Denied {
                        tightest: t,
                        overflowed,
                    });
                }
                Err(e) => {
                    self.release_all(&held, clock);
                    return Err(e);
                }
            }
        }
        // A later counter granted less output: give the difference back to the earlier ones.
        for (h, t) in held.iter_mut().zip(tights.iter_mut()) {
            let shrunk = want.amount(output);
            if shrunk != h.amount {
                let refund = h.amount.minus(shrunk);
                self.adjust(h, |c, h| c.remove_pending(h.bucket, refund), clock)?;
                t.remaining_tokens = t.remaining_tokens.map(|r| {
                    r.saturating_add(if t.limit_tokens.is_some() {
                        refund.tokens
                    } else {
                        0
                    })
                });
                h.amount = shrunk;
            }
        }
        let tightest = tights
            .into_iter()
            .filter(|t| t.remaining_tokens.is_some())
            .min_by_key(|t| t.remaining_tokens);
        Ok(Decision::Admitted {
            reservation: Reservation { held },
            output,
            tightest,
            overflowed,
        })
    }

    /// Apply `f` to the counter a reservation is held on, if that counter is still in the same window.
    fn adjust(
        &self,
        h: &Held,
        mut f: impl FnMut(&mut Counter, &Held),
        clock: &Clock,
    ) -> Result<(), Contention> {
        self.update(&h.key, false, clock.now_s, |c| {
            c.roll(&h.window, clock.now_s);
            c.expire(clock);
            if c.window_start != h.window_start {
                return ((), false); // the window ended: this request's window is closed
            }
            f(c, h);
            ((), true)
        })
        .map(|_| ())
    }

    fn release_all(&self, held: &[Held], clock: &Clock) {
        for h in held {
            let _ = self.adjust(h, |c, h| c.remove_pending(h.bucket, h.amount), clock);
        }
    }

    /// Replace the reservation with the exact usage on every counter (once the call is over).
    pub fn commit(
        &self,
        reservation: &Reservation,
        actual: Amount,
        clock: &Clock,
    ) -> Result<(), Contention> {
        self.commit_alerting(reservation, actual, clock, &|_| None)
            .0
    }

    /// `commit`, and the alert thresholds it crossed: `alerts(rule)` is the rule's thresholds and limits
    /// (None: no alerts). The threshold marker is part of the counter, so it is swapped in the same
    /// compare-and-swap as the usage: each threshold fires exactly once per (counter, window), whichever
    /// worker commits, and a retried swap never fires twice.
    pub fn commit_alerting<'r>(
        &self,
        reservation: &Reservation,
        actual: Amount,
        clock: &Clock,
        alerts: &dyn Fn(usize) -> Option<(&'r Thresholds, Limits)>,
    ) -> (Result<(), Contention>, Vec<Fired>) {
        let mut result = Ok(());
        let mut fired = Vec::new();
        for h in &reservation.held {
            let mut crossings = Vec::new();
            let r = self.adjust(
                h,
                |c, h| {
                    c.remove_pending(h.bucket, h.amount);
                    c.used = c.used.plus(actual);
                    crossings.clear();
                    if let Some((t, limits)) = alerts(h.rule).filter(|(t, _)| !t.is_empty()) {
                        let d =
                            thresholds::decide(t, &limits, &c.used, c.window_start, Some(c.marker));
                        if d.write {
                            c.marker = d.marker;
                            crossings = d.fired;
                        }
                    }
                },
                clock,
            );
            match r {
                Err(e) => result = Err(e),
                Ok(()) if !crossings.is_empty() => fired.push(Fired {
                    rule: h.rule,
                    key: h.key.clone(),
                    window: h.window,
                    window_start: h.window_start,
                    crossings,
                }),
                Ok(()) => {}
            }
        }
        (result, fired)
    }

    /// The counter of `spec` as it stands (rolled to the current window, expired reservations dropped),
    /// without writing: for the inspection view. None when it was never written.
    pub fn read(&self, key: &str, window: &Window, clock: &Clock) -> Option<Counter> {
        let mut c = self.store.get(key).and_then(|(b, _)| Counter::decode(&b))?;
        c.roll(window, clock.now_s);
        c.expire(clock);
        Some(c)
    }

    /// Remaining tokens of a counter right now, without reserving (for dry-run denials' headers).
    pub fn peek(&self, spec: &CounterSpec, clock: &Clock) -> Tightest {
        let c = self
            .store
            .get(&spec.key)
            .and_then(|(b, _)| Counter::decode(&b))
            .unwrap_or_default();
        let mut c = c;
        c.roll(&spec.window, clock.now_s);
        c.expire(clock);
        tightest(spec, &c.available(&spec.limits), clock)
    }
}

/// A reservation that holds nothing but commits usage into the current window (dry-run denials: the
/// counters keep telling the truth about consumption).
pub fn track_only(specs: &[CounterSpec], clock: &Clock) -> Reservation {
    Reservation {
        held: specs
            .iter()
            .map(|s| Held {
                rule: s.rule,
                key: s.key.clone(),
                window: s.window,
                window_start: s.window.start(clock.now_s),
                bucket: clock.bucket(),
                amount: Amount::default(),
            })
            .collect(),
    }
}

fn tightest(spec: &CounterSpec, avail: &Avail, clock: &Clock) -> Tightest {
    let (limit, remaining) = match (spec.limits.tokens, spec.limits.output, spec.limits.input) {
        (Some(l), _, _) => (Some(l), avail.tokens),
        (None, Some(l), _) => (Some(l), avail.output),
        (None, None, Some(l)) => (Some(l), avail.input),
        _ => (None, None),
    };
    Tightest {
        rule: spec.rule,
        limit_tokens: limit,
        remaining_tokens: remaining,
        reset_s: spec.window.seconds_to_reset(clock.now_s),
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory store with Envoy's shared-data semantics, plus a hook that runs another actor's
    //! operation between a read and the write that depends on it (a worker thread racing us).
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    type Hook = Box<dyn FnMut(&FakeStore)>;

    #[derive(Default)]
    pub struct FakeStore {
        map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
        next_cas: Cell<u32>,
        hook: RefCell<Option<Hook>>,
        pub writes: Cell<u64>,
        pub mismatches: Cell<u64>,
    }

    impl FakeStore {
        pub fn set_hook(&self, h: impl FnMut(&FakeStore) + 'static) {
            *self.hook.borrow_mut() = Some(Box::new(h));
        }
        pub fn counter(&self, key: &str) -> Counter {
            self.map
                .borrow()
                .get(key)
                .and_then(|(v, _)| Counter::decode(v))
                .unwrap_or_default()
        }
        pub fn keys(&self) -> usize {
            self.map.borrow().len()
        }
    }

    impl Store for FakeStore {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.map.borrow().get(key).cloned()
        }
        fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), StoreError> {
            // Another actor gets to run between our read and this write (not re-entrantly).
            let hook = self.hook.borrow_mut().take();
            if let Some(mut h) = hook {
                h(self);
                let mut slot = self.hook.borrow_mut();
                if slot.is_none() {
                    *slot = Some(h);
                }
            }
            let mut map = self.map.borrow_mut();
            if let Some((_, current)) = map.get(key) {
                if cas != 0 && cas != *current {
                    self.mismatches.set(self.mismatches.get() + 1);
                    return Err(StoreError::CasMismatch);
                }
            }
            let next = self.next_cas.get().wrapping_add(1).max(1);
            self.next_cas.set(next);
            map.insert(key.to_owned(), (value.to_vec(), next));
            self.writes.set(self.writes.get() + 1);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::FakeStore;
    use super::*;
    use std::rc::Rc;

    fn spec(rule: usize, key: &str, limits: Limits) -> CounterSpec {
        CounterSpec {
            rule,
            key: key.into(),
            overflow_key: format!("{key}/~overflow"),
            window: Window::Fixed(3600),
            limits,
            subject: "t".into(),
        }
    }

    fn tokens(n: u64) -> Limits {
        Limits {
            tokens: Some(n),
            ..Limits::default()
        }
    }

    fn want(input: u64, output: u64) -> Want {
        Want {
            input,
            output,
            min_output: output,
            ..Want::default()
        }
    }

    const CLOCK: Clock = Clock {
        now_s: 7_200 + 100,
        ttl_s: 600,
    };

    fn ledger(store: &FakeStore) -> Ledger<'_, FakeStore> {
        Ledger {
            store,
            holder: 1,
            max_keys: 100,
        }
    }

    fn admitted(d: Decision) -> (Reservation, u64, Option<Tightest>) {
        match d {
            Decision::Admitted {
                reservation,
                output,
                tightest,
                ..
            } => (reservation, output, tightest),
            Decision::Denied { .. } => panic!("denied"),
        }
    }

    #[test]
    fn thresholds_fire_once_with_the_commit_that_crosses_them() {
        use crate::budget::thresholds::PPM;
        let store = FakeStore::default();
        let l = ledger(&store);
        let mut s = spec(0, "k", tokens(1000));
        s.window = Window::Calendar {
            unit: crate::budget::calendar::Unit::Month,
            offset_s: 0,
        };
        let th = crate::codec::json::strict::read_json(&serde_json::json!([0.5, 0.8, 1.0]), |v| {
            Thresholds::read("t", v)
        })
        .unwrap();
        let alerts = |_: usize| Some((&th, tokens(1000)));
        let clock = Clock {
            now_s: 1_772_323_200, // 2026-03-01T00:00:00Z
            ttl_s: 600,
        };
        let mut all = Vec::new();
        for used in [300u64, 300, 300, 300] {
            let Decision::Admitted { reservation, .. } =
                l.admit(&[s.clone()], &want(10, 10), &clock).unwrap()
            else {
                panic!("denied")
            };
            let amount = Amount {
                tokens: used,
                input: used,
                ..Amount::default()
            };
            let (r, fired) = l.commit_alerting(&reservation, amount, &clock, &alerts);
            r.unwrap();
            all.push(
                fired
                    .iter()
                    .flat_map(|f| f.crossings.iter().map(|c| c.threshold_ppm))
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(all, vec![vec![], vec![PPM / 2], vec![800_000], vec![PPM]]);
        // The marker is part of the counter; the next month starts afresh.
        assert_eq!(store.counter("k").marker.fired_ppm, PPM);
        let april = Clock {
            now_s: 1_775_001_600,
            ttl_s: 600,
        };
        let Decision::Admitted { reservation, .. } =
            l.admit(&[s.clone()], &want(10, 10), &april).unwrap()
        else {
            panic!("denied")
        };
        let (_, fired) = l.commit_alerting(
            &reservation,
            Amount {
                tokens: 600,
                ..Amount::default()
            },
            &april,
            &alerts,
        );
        assert_eq!(fired.len(), 1);
        assert_eq!(
            fired[0]
                .crossings
                .iter()
                .map(|c| c.threshold_ppm)
                .collect::<Vec<_>>(),
            vec![PPM / 2]
        );
        assert_eq!(fired[0].window_start, 1_775_001_600);
    }

    #[test]
    fn a_racing_commit_never_fires_a_threshold_twice() {
        let store = Rc::new(FakeStore::default());
        let l = ledger(&store);
        let s = spec(0, "k", tokens(100));
        let th = crate::codec::json::strict::read_json(&serde_json::json!([0.5]), |v| {
            Thresholds::read("t", v)
        })
        .unwrap();
        let clock = Clock {
            now_s: 10,
            ttl_s: 600,
        };
        let admit = |l: &Ledger<FakeStore>| match l
            .admit(std::slice::from_ref(&s), &want(1, 1), &clock)
            .unwrap()
        {
            Decision::Admitted { reservation, .. } => reservation,
            d => panic!("{d:?}"),
        };
        let (a, b) = (admit(&l), admit(&l));
        // Worker B commits 60 between worker A's read and its write: A's swap fails, it recomputes on B's
        // value (marker already at 0.5) and fires nothing.
        let other = Rc::clone(&store);
        let th2 = th.clone();
        let b2 = b.clone();
        let fired_by_b = Rc::new(std::cell::Cell::new(0));
        let fb = Rc::clone(&fired_by_b);
        let once = std::cell::Cell::new(false);
        store.set_hook(move |_| {
            if once.replace(true) {
                return;
            }
            let lb = Ledger {
                store: &*other,
                holder: 2,
                max_keys: 100,
            };
            let (_, f) = lb.commit_alerting(
                &b2,
                Amount {
                    tokens: 60,
                    ..Amount::default()
                },
                &clock,
                &|_| Some((&th2, tokens(100))),
            );
            fb.set(fb.get() + f.len());
        });
        let (_, fired_by_a) = l.commit_alerting(
            &a,
            Amount {
                tokens: 1,
                ..Amount::default()
            },
            &clock,
            &|_| Some((&th, tokens(100))),
        );
        assert_eq!(fired_by_b.get() + fired_by_a.len(), 1);
        assert_eq!(store.counter("k").used.tokens, 61);
        let _ = b;
    }

    #[test]
    fn encode_roundtrip_and_garbage() {
        let mut c = Counter {
            window_start: 3600,
            used: Amount {
                tokens: 5,
                input: 2,
                output: 3,
                cost_pico: 9,
            },
            pending: vec![],
            marker: Marker::default(),
        };
        c.add_pending(
            7,
            Amount {
                tokens: 1,
                ..Amount::default()
            },
        );
        assert_eq!(Counter::decode(&c.encode()), Some(c.clone()));
        assert_eq!(Counter::decode(b""), None);
        assert_eq!(Counter::decode(b"TGB1\x01"), None);
        let enc = c.encode();
        for cut in 0..enc.len() {
            let _ = Counter::decode(enc.get(..cut).unwrap());
        }
    }

    #[test]
    fn windows_align_to_the_epoch() {
        assert_eq!(window_start(3600, 7_299), 7_200);
        assert_eq!(window_start(86_400, 86_399), 0);
        assert_eq!(window_start(86_400, 86_400), 86_400);
        assert_eq!(seconds_to_reset(60, 119), 1);
        assert_eq!(seconds_to_reset(60, 120), 60);
        assert_eq!(window_start(0, 5), 5);
    }

    #[test]
    fn reserve_then_commit_replaces_the_reservation() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let specs = [spec(0, "k", tokens(1000))];
        let (res, out, t) = admitted(l.admit(&specs, &want(100, 200), &CLOCK).unwrap());
        assert_eq!(out, 200);
        assert_eq!(t.unwrap().remaining_tokens, Some(700));
        assert_eq!(store.counter("k").pending_total().tokens, 300);
        l.commit(
            &res,
            Amount {
                tokens: 150,
                input: 100,
                output: 50,
                cost_pico: 0,
            },
            &CLOCK,
        )
        .unwrap();
        let c = store.counter("k");
        assert_eq!((c.used.tokens, c.pending_total().tokens), (150, 0));
        assert!(c.pending.is_empty());
    }

    #[test]
    fn denies_what_does_not_fit_and_says_when_to_retry() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let specs = [spec(0, "k", tokens(1000))];
        admitted(l.admit(&specs, &want(400, 400), &CLOCK).unwrap());
        match l.admit(&specs, &want(100, 200), &CLOCK).unwrap() {
            Decision::Denied { tightest, .. } => {
                assert_eq!(tightest.remaining_tokens, Some(200));
                assert_eq!(tightest.limit_tokens, Some(1000));
                assert_eq!(tightest.reset_s, 3600 - 100);
            }
            d => panic!("{d:?}"),
        }
        // A denial reserves nothing.
        assert_eq!(store.counter("k").pending_total().tokens, 800);
    }

    #[test]
    fn clamping_grants_what_is_left_above_the_minimum() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let specs = [spec(0, "k", tokens(1000))];
        let w = Want {
            input: 100,
            output: 950,
            min_output: 64,
            ..Want::default()
        };
        // 1000 - 100 input leaves 900 of the 950 asked.
        let (_, out, t) = admitted(l.admit(&specs, &w, &CLOCK).unwrap());
        assert_eq!(out, 900);
        assert_eq!(t.unwrap().remaining_tokens, Some(0));
        assert!(matches!(
            l.admit(&specs, &w, &CLOCK).unwrap(),
            Decision::Denied { .. }
        ));
        // Below the minimum: refused rather than clamped to a useless size.
        let store = FakeStore::default();
        let l = ledger(&store);
        admitted(l.admit(&specs, &want(400, 450), &CLOCK).unwrap());
        assert!(matches!(
            l.admit(&specs, &w, &CLOCK).unwrap(),
            Decision::Denied { .. }
        ));
        let (_, out, _) = admitted(
            l.admit(
                &specs,
                &Want {
                    min_output: 50,
                    ..w
                },
                &CLOCK,
            )
            .unwrap(),
        );
        assert_eq!(out, 50);
    }

    #[test]
    fn tightest_of_several_rules_wins_and_earlier_counters_are_refunded() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let specs = [
            spec(0, "big", tokens(10_000)),
            spec(
                1,
                "out",
                Limits {
                    output: Some(300),
                    ..Limits::default()
                },
            ),
        ];
        let w = Want {
            input: 50,
            output: 1000,
            min_output: 10,
            ..Want::default()
        };
        let (res, out, t) = admitted(l.admit(&specs, &w, &CLOCK).unwrap());
        assert_eq!(out, 300);
        assert_eq!(store.counter("big").pending_total().tokens, 350);
        assert_eq!(store.counter("out").pending_total().output, 300);
        assert_eq!(t.unwrap().rule, 1);
        assert_eq!(res.held.len(), 2);
        // Denied on the second counter: the first is released.
        let (w2, _) = (want(50, 100), ());
        assert!(matches!(
            l.admit(&specs, &w2, &CLOCK).unwrap(),
            Decision::Denied {
                tightest: Tightest { rule: 1, .. },
                ..
            }
        ));
        assert_eq!(store.counter("big").pending_total().tokens, 350);
    }

    #[test]
    fn cost_limits_bound_output_by_price() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let specs = [spec(
            0,
            "c",
            Limits {
                cost_pico: Some(1_000_000),
                ..Limits::default()
            },
        )];
        let w = Want {
            input: 10,
            output: 1000,
            min_output: 1,
            input_cost_pico: 100_000,
            output_price_pico: 1_000,
        };
        let (_, out, t) = admitted(l.admit(&specs, &w, &CLOCK).unwrap());
        assert_eq!(out, 900);
        assert_eq!(t, None, "cost-only rules report no token headers");
    }

    #[test]
    fn window_rollover_resets_and_late_commits_vanish() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let specs = [spec(0, "k", tokens(1000))];
        let (res, _, _) = admitted(l.admit(&specs, &want(500, 500), &CLOCK).unwrap());
        let next = Clock {
            now_s: 7_200 + 3_600,
            ..CLOCK
        };
        // New window: the full budget is available at once.
        let (_, _, t) = admitted(l.admit(&specs, &want(100, 100), &next).unwrap());
        assert_eq!(t.unwrap().remaining_tokens, Some(800));
        // The old window's request finishing now does not charge the new window.
        l.commit(
            &res,
            Amount {
                tokens: 1000,
                ..Amount::default()
            },
            &next,
        )
        .unwrap();
        assert_eq!(store.counter("k").used.tokens, 0);
        // The last second of a window still belongs to it.
        let last = Clock {
            now_s: 7_200 + 3_599,
            ..CLOCK
        };
        assert_eq!(window_start(3600, last.now_s), 7_200);
    }

    #[test]
    fn uncommitted_reservations_expire_after_the_ttl() {
        let store = FakeStore::default();
        let l = ledger(&store);
        let mut s = spec(0, "k", tokens(1000));
        s.window = Window::Fixed(86_400);
        let specs = [s];
        let t0 = Clock {
            now_s: 1_000,
            ttl_s: 600,
        };
        admitted(l.admit(&specs, &want(500, 500), &t0).unwrap());
        let soon = Clock { now_s: 1_500, ..t0 };
        assert!(matches!(
            l.admit(&specs, &want(1, 1), &soon).unwrap(),
            Decision::Denied { .. }
        ));
        let later = Clock {
            now_s: 1_000 + 600 + 75,
            ..t0
        };
        admitted(l.admit(&specs, &want(500, 500), &later).unwrap());
    }

    #[test]
    fn concurrent_writer_between_read_and_write_is_retried() {
        let store = Rc::new(FakeStore::default());
        let specs = [spec(0, "k", tokens(1000))];
        let (r, _, _) = admitted(ledger(&store).admit(&specs, &want(0, 0), &CLOCK).unwrap());
        ledger(&store)
            .commit(&r, Amount::default(), &CLOCK)
            .unwrap();
        // Every first write of ours is preceded by a rival's complete reservation.
        let rival_specs = specs.clone();
        let fired = Rc::new(std::cell::Cell::new(0));
        let f = fired.clone();
        store.set_hook(move |s| {
            if f.get() < 3 {
                f.set(f.get() + 1);
                let rival = Ledger {
                    store: s,
                    holder: 2,
                    max_keys: 100,
                };
                let _ = rival.admit(&rival_specs, &want(100, 100), &CLOCK);
            }
        });
        let l = ledger(&store);
        let (_, _, t) = admitted(l.admit(&specs, &want(100, 100), &CLOCK).unwrap());
        assert!(store.mismatches.get() > 0, "the race happened");
        // Three rivals and us: 4 × 200 reserved, none lost.
        assert_eq!(store.counter("k").pending_total().tokens, 800);
        assert_eq!(t.unwrap().remaining_tokens, Some(200));
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// Many actors reserving and committing with random interleavings: admitted usage never exceeds the
    /// budget, nothing leaks, and the budget is used up to less than one request's worst case.
    #[test]
    fn randomized_interleavings_hold_the_budget() {
        for seed in 1..60u64 {
            let store = Rc::new(FakeStore::default());
            let budget = 5_000 + seed * 37;
            let specs = [spec(0, "k", tokens(budget))];
            let rng = Rc::new(std::cell::RefCell::new(Rng(seed * 0x9E37_79B9)));
            let admitted_usage = Rc::new(std::cell::Cell::new(0u64));
            let max_worst = Rc::new(std::cell::Cell::new(0u64));
            {
                let (rng, specs, used, mw) = (
                    rng.clone(),
                    specs.clone(),
                    admitted_usage.clone(),
                    max_worst.clone(),
                );
                store.set_hook(move |s| {
                    let go = rng.borrow_mut().below(3) == 0;
                    if !go {
                        return;
                    }
                    let (i, o) = {
                        let mut r = rng.borrow_mut();
                        (1 + r.below(200), 1 + r.below(300))
                    };
                    mw.set(mw.get().max(i + o));
                    let rival = Ledger {
                        store: s,
                        holder: 7,
                        max_keys: 100,
                    };
                    if let Ok(Decision::Admitted { reservation, .. }) =
                        rival.admit(&specs, &want(i, o), &CLOCK)
                    {
                        let actual = Amount {
                            tokens: i + o,
                            input: i,
                            output: o,
                            cost_pico: 0,
                        };
                        used.set(used.get() + actual.tokens);
                        rival.commit(&reservation, actual, &CLOCK).unwrap();
                    }
                });
            }
            let l = ledger(&store);
            let mut open = Vec::new();
            for _ in 0..400 {
                let (i, o, real) = {
                    let mut r = rng.borrow_mut();
                    let i = 1 + r.below(200);
                    let o = 1 + r.below(300);
                    (i, o, r.below(o + 1))
                };
                max_worst.set(max_worst.get().max(i + o));
                if let Decision::Admitted { reservation, .. } =
                    l.admit(&specs, &want(i, o), &CLOCK).unwrap()
                {
                    open.push((
                        reservation,
                        Amount {
                            tokens: i + real,
                            input: i,
                            output: real,
                            cost_pico: 0,
                        },
                    ));
                }
                if open.len() > 5 || rng.borrow_mut().below(2) == 0 {
                    if let Some((res, actual)) = open.pop() {
                        admitted_usage.set(admitted_usage.get() + actual.tokens);
                        l.commit(&res, actual, &CLOCK).unwrap();
                    }
                }
            }
            for (res, actual) in open.drain(..) {
                admitted_usage.set(admitted_usage.get() + actual.tokens);
                l.commit(&res, actual, &CLOCK).unwrap();
            }
            let c = store.counter("k");
            assert_eq!(c.pending_total(), Amount::default(), "seed {seed}: leak");
            assert_eq!(
                c.used.tokens,
                admitted_usage.get(),
                "seed {seed}: lost update"
            );
            assert!(
                c.used.tokens <= budget,
                "seed {seed}: {} > {budget}",
                c.used.tokens
            );
        }
    }

    #[test]
    fn tenant_cap_sends_new_tenants_to_the_overflow_counter() {
        let store = FakeStore::default();
        let l = Ledger {
            store: &store,
            holder: 1,
            max_keys: 2,
        };
        let mk = |t: &str| CounterSpec {
            rule: 0,
            key: counter_key("fp", t),
            overflow_key: overflow_key("fp"),
            window: Window::Fixed(60),
            limits: tokens(100),
            subject: t.into(),
        };
        for t in ["a", "b"] {
            match l.admit(&[mk(t)], &want(1, 1), &CLOCK).unwrap() {
                Decision::Admitted { overflowed, .. } => assert!(!overflowed),
                d => panic!("{d:?}"),
            }
        }
        for t in ["c", "d", "e"] {
            match l.admit(&[mk(t)], &want(1, 1), &CLOCK).unwrap() {
                Decision::Admitted {
                    overflowed,
                    reservation,
                    ..
                } => {
                    assert!(overflowed);
                    assert_eq!(reservation.held[0].key, overflow_key("fp"));
                }
                d => panic!("{d:?}"),
            }
        }
        // lock + 2 tenants + overflow: the key space is bounded.
        assert_eq!(store.keys(), 4);
        assert_eq!(store.counter(&overflow_key("fp")).pending_total().tokens, 6);
    }

    #[test]
    fn stale_lock_of_a_dead_vm_is_taken_over() {
        let store = FakeStore::default();
        let dead = Lock {
            holder: 99,
            since_s: CLOCK.now_s,
            created: 0,
        };
        store.set(LOCK_KEY, &dead.encode(), 0).unwrap();
        let l = ledger(&store);
        assert!(l
            .admit(&[spec(0, "k", tokens(10))], &want(1, 1), &CLOCK)
            .is_err());
        let later = Clock {
            now_s: CLOCK.now_s + LOCK_STALE_S,
            ..CLOCK
        };
        admitted(
            l.admit(&[spec(0, "k", tokens(10))], &want(1, 1), &later)
                .unwrap(),
        );
    }

    #[test]
    fn amounts_saturate() {
        let max = Amount {
            tokens: u64::MAX,
            input: u64::MAX,
            output: u64::MAX,
            cost_pico: u64::MAX,
        };
        assert_eq!(max.plus(max), max);
        assert_eq!(Amount::default().minus(max), Amount::default());
        let mut rng = Rng(42);
        for _ in 0..10_000 {
            let a = Amount {
                tokens: rng.next(),
                input: rng.next(),
                output: rng.next() >> 3,
                cost_pico: rng.next(),
            };
            let b = Amount {
                tokens: rng.next(),
                input: rng.next() >> 60,
                output: rng.next(),
                cost_pico: rng.next(),
            };
            let s = a.plus(b);
            assert!(s.tokens >= a.tokens && s.tokens >= b.tokens);
            assert!(a.minus(b).tokens <= a.tokens);
            let w = Want {
                input: rng.next(),
                output: rng.next(),
                min_output: rng.next(),
                input_cost_pico: rng.next(),
                output_price_pico: rng.next() >> 40,
            };
            let av = Avail {
                tokens: Some(rng.next()),
                input: Some(rng.next()),
                output: None,
                cost_pico: Some(rng.next()),
            };
            if let Some(g) = w.grant(&av) {
                assert!(g <= w.output);
                assert!(w.input.saturating_add(g) <= av.tokens.unwrap());
            }
        }
    }
}
