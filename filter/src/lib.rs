//! tollgate: an Envoy filter that makes LLM egress observable, attributable and bounded.
//!
//! Everything outside `host` is pure logic with no proxy call, unit-tested natively and in wasm32. The
//! modules, bottom-up (an import only ever points down; `docs/architecture.md`):
//! - `codec`: byte formats (JSON, protobuf, header maps, hex, CRC-32, SigV4); `call`: the record of one
//!   call; `reply`: a local reply; `sort`, `rng`;
//! - `stream`: framing and decompression; `pricing`; `redact`; `budget`; `capture`;
//! - `providers`: one file per API shape behind the `Provider` trait; `telemetry`: spans, metrics, export;
//! - `config`: the plugin JSON, composing every section;
//! - `exchange`: one request's state machine, written against the `Host` trait;
//! - `host`: the proxy-wasm glue (wasm32 only).
//!
//! The path of one response chunk: the host hands the bytes to `exchange` → `stream` frames them →
//! `providers` interpret each event → `call` accumulates → at the end `budget` commits and `telemetry`
//! turns the `Call` into metrics and a span.

// A panic traps the Wasm VM and, depending on Envoy's failure_policy, fails or bypasses every request.
// Non-test code therefore may not contain any panicking construct; an `allow` needs a comment proving it
// cannot fire. Tests may unwrap freely. Checked by `make clippy` (native and wasm32, host glue included).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo
    )
)]

pub mod budget;
pub mod call;
pub mod capture;
pub mod codec;
pub mod config;
pub mod exchange;
pub mod pricing;
pub mod providers;
pub mod redact;
pub mod reply;
pub mod rng;
pub mod sort;
pub mod stream;
pub mod telemetry;

#[cfg(all(target_arch = "wasm32", target_os = "wasi", not(test)))]
mod host;

/// libtest's std references `pthread_join`/`pthread_detach`, which the single-threaded wasm32-wasip1 libc
/// does not define. The unit tests run with `--test-threads=1` under Node's WASI, so these are never called.
#[cfg(all(test, target_arch = "wasm32", target_os = "wasi"))]
mod wasi_test_shims {
    #[no_mangle]
    pub extern "C" fn pthread_join(_thread: usize, _retval: *mut *mut u8) -> i32 {
        58 // ENOTSUP
    }
    #[no_mangle]
    pub extern "C" fn pthread_detach(_thread: usize) -> i32 {
        58
    }
}
