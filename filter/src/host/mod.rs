//! The proxy-wasm host: the only code that calls proxy-wasm, and no decision of its own. `root` owns the
//! configuration, the export queue, the metrics and the tick (and dispatches the OTLP exports); `http`
//! implements the exchange's `Host` trait over the ABI and hands it every callback; `hold` probes whether
//! Envoy passes the body of held requests; `stats` and `store` are Envoy's metrics and shared data.

mod abi;
mod hold;
mod http;
mod metrics;
mod root;
mod stats;
mod store;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(root::Root::new(id)) });
}}

/// Wall clock in ns since the Unix epoch (0 if the host cannot say).
pub(crate) fn now_ns() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

thread_local! {
    /// Seeded on first use from WASI `random_get` (the clock if that ever fails).
    static RNG: std::cell::RefCell<Option<crate::rng::SplitMix64>> = const { std::cell::RefCell::new(None) };
}

pub(crate) fn with_rng<T>(f: impl FnOnce(&mut crate::rng::SplitMix64) -> T) -> Option<T> {
    RNG.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let rng = slot.get_or_insert_with(|| {
            let mut seed = [0u8; 8];
            let seed = match getrandom::fill(&mut seed) {
                Ok(()) => u64::from_le_bytes(seed),
                Err(_) => now_ns(),
            };
            crate::rng::SplitMix64::new(seed)
        });
        Some(f(rng))
    })
}

/// Random bytes for ids, from the per-VM generator (one host call per VM, none per request).
pub(crate) fn random<const N: usize>() -> [u8; N] {
    with_rng(|g| g.bytes()).unwrap_or_else(|| {
        // Unreachable in practice (nothing re-enters the generator); keep ids unique-ish anyway.
        let t = now_ns().to_le_bytes();
        let mut buf = [0u8; N];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = t.get(i % 8).copied().unwrap_or(0) ^ (i as u8).wrapping_mul(151);
        }
        buf
    })
}

/// Uniform draw in [0, 1) for sampling and jitter.
pub(crate) fn random_unit() -> f64 {
    with_rng(|g| g.unit()).unwrap_or(0.5)
}

pub(crate) fn log(level: LogLevel, msg: &str) {
    let _ = proxy_wasm::hostcalls::log(level, msg);
}
