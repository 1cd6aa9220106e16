//! The only code that calls proxy-wasm. `root` owns configuration, the export queue and the tick;
//! `http` follows one request top to bottom in the order Envoy calls it.

mod abi;
mod budget;
mod http;
mod metrics;
mod redaction;
mod rls;
mod root;
mod stats;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(root::Root::default()) });
}}

/// Wall clock in ns since the Unix epoch (0 if the host cannot say).
pub(crate) fn now_ns() -> u64 {
    proxy_wasm::hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Random bytes from WASI `random_get`; a clock-derived fallback keeps ids unique-ish if it ever fails.
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    if getrandom::fill(&mut buf).is_err() {
        let t = now_ns().to_le_bytes();
        for (i, b) in buf.iter_mut().enumerate() {
            *b = t.get(i % 8).copied().unwrap_or(0) ^ (i as u8).wrapping_mul(151);
        }
    }
    buf
}

/// Uniform draw in [0, 1) for sampling and jitter.
pub(crate) fn random_unit() -> f64 {
    let r: [u8; 8] = random();
    (u64::from_le_bytes(r) >> 11) as f64 / (1u64 << 53) as f64
}

pub(crate) fn log(level: LogLevel, msg: &str) {
    let _ = proxy_wasm::hostcalls::log(level, msg);
}
