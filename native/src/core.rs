//! Every path into the `tollgate` core crate the native host uses, in one place: the core's module layout
//! may move without the host's code changing, only this file.

pub use tollgate::budget::ledger;
pub use tollgate::budget::BackendKind;
pub use tollgate::call::Call;
pub use tollgate::config::{Compression, Config, Otlp, Semconv};
pub use tollgate::headers::Headers;
pub use tollgate::reply::Reply;
pub use tollgate::rls;
pub use tollgate::rng::SplitMix64;
pub use tollgate::telemetry::export::{self, ExportStats, Outcome, Resource, SpanQueue};
pub use tollgate::telemetry::metrics::{Aggregator, MetricsStats};
pub use tollgate::telemetry::proto::partial_success;
pub use tollgate::telemetry::span::Span;
