//! Test-only: the telemetry encoders as they were before the direct protobuf writers (see `equivalence`).
pub mod export;
pub mod metrics;
pub mod span;
