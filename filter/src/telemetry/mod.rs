//! Call → OTLP spans and metrics, trace context, export queue. Pure: the host only sends bytes.

pub mod export;
pub mod metrics;
pub mod span;
pub mod trace;

#[cfg(test)]
mod golden_test;

/// Which generation of GenAI semantic-convention names to emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Semconv {
    /// The widely deployed names (semconv v1.37–v1.41): what today's dashboards key on.
    #[default]
    Default,
    /// The newest experimental names, in addition to the default ones.
    Latest,
}
