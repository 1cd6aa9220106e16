//! tollgate: an Envoy proxy-wasm filter that makes LLM egress observable, attributable and bounded.
//!
//! Everything outside `host` is pure logic with no proxy-wasm calls, unit-tested natively and in wasm32.
//! The path of one response chunk: `host::http` receives bytes → `stream` frames them → `providers`
//! interpret events → `call` accumulates → on completion `telemetry` (and budgets) consume the `Call`.

pub mod call;
pub mod config;
pub mod providers;
pub mod redact;
pub mod stream;
pub mod telemetry;
