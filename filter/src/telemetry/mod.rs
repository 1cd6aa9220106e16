//! Call → OTLP spans and metrics, trace context, export queue. Pure: the host only sends bytes.

pub mod export;
pub mod logs;
pub mod metrics;
pub mod proto;
pub mod span;
pub mod trace;
pub mod webhook;

#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod legacy;
