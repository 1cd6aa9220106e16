//! Every path into the `tollgate` core crate the native host uses, in one place: the core's module layout
//! may move without the host's code changing, only this file.

pub use tollgate::budget::rls;
pub use tollgate::call::Call;
pub use tollgate::codec::headers::{serialize, Headers};
pub use tollgate::codec::proto::partial_success;
pub use tollgate::config::{Compression, Config, Otlp};
pub use tollgate::exchange::host::{
    Attribute, Body, Counter, GrpcCall, Host, Level, Map, Once, Support,
};
pub use tollgate::exchange::{self, Action, Exchange};
pub use tollgate::reply::Reply;
pub use tollgate::rng::SplitMix64;
pub use tollgate::telemetry::export::{self, ExportStats, Outcome, Resource, SpanQueue};
pub use tollgate::telemetry::logs::{LogQueue, LogRecord, LogStats};
pub use tollgate::telemetry::metrics::{Aggregator, Attr, Instrument, MetricsStats};
pub use tollgate::telemetry::span::Span;
pub use tollgate::telemetry::webhook::{WebhookQueue, WebhookStats};
pub use tollgate::telemetry::Semconv;
