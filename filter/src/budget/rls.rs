//! Envoy's rate-limit service protocol (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`), the
//! pure part of `budgets.backend = "rls"`: the request and response messages, the descriptors tollgate sends,
//! the decision read from an answer, and what a failed call means. The calls themselves are the
//! exchange's (`exchange/rls.rs`).
//!
//! The messages are written and read by hand (`codec::proto`) with the field numbers of
//! `envoy/service/ratelimit/v3/rls.proto` and `envoy/extensions/common/ratelimit/v3/ratelimit.proto` (fields
//! tollgate never reads are skipped as unknown fields); the tests check them against prost structs. No gRPC framing here: proxy-wasm's
//! `dispatch_grpc_call` takes the bare message and Envoy's gRPC client adds the 5-byte length prefix; the
//! answer in `GrpcReceiveBuffer` is the bare message too.
//!
//! Why admission debits 1 and the usage is debited later: the protocol has no release (`hits_addend` is
//! unsigned) and envoyproxy/ratelimit and Limitador both count every hit, so reserving a worst case would
//! spend it for good. The admission call asks with `hits_addend = 1` ("is there at least one token left?")
//! and that token is part of the request's usage; after the response a second call debits the rest
//! (`usage - 1`). The service stays the one source of truth for every replica.

use super::config::Rule;
use super::{Amount, CounterSpec, Limits};
use crate::codec::proto::{self, read_message};
use crate::reply::{Denial, Refusal};

pub const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";
pub const METHOD: &str = "ShouldRateLimit";
/// `hits_addend` of the admission call (and the part of the usage it already debited).
pub const ADMISSION_HITS: u32 = 1;
/// gRPC status codes Envoy reports for a failed call (0 is OK).
pub const GRPC_OK: u32 = 0;

pub const CODE_OK: i32 = 1;
pub const CODE_OVER_LIMIT: i32 = 2;

/// `envoy.service.ratelimit.v3.RateLimitResponse.DescriptorStatus`, the fields tollgate reads.
#[derive(Clone, Debug, Default, PartialEq)]
struct Status {
    /// `code = 1`.
    code: i32,
    /// `current_limit = 2`: its `requests_per_unit = 1`, when the limit is present.
    current_limit: Option<u32>,
    /// `limit_remaining = 3`.
    limit_remaining: u32,
    /// `duration_until_reset = 4`: its `seconds = 1`, when present.
    reset_seconds: Option<i64>,
}

/// `RateLimitResponse { overall_code = 1; repeated DescriptorStatus statuses = 2; }` (other fields skipped).
fn read_response(body: &[u8]) -> Option<(i32, Vec<Status>)> {
    let mut code = 0;
    let mut statuses = Vec::new();
    read_message(body, |n, f| {
        match n {
            1 => code = f.varint()? as i32,
            2 => statuses.push(read_status(f.len()?)?),
            _ => {}
        }
        Some(())
    })?;
    Some((code, statuses))
}

fn read_status(body: &[u8]) -> Option<Status> {
    let mut st = Status::default();
    read_message(body, |n, f| {
        match n {
            1 => st.code = f.varint()? as i32,
            // `RateLimit { requests_per_unit = 1; unit = 2; name = 3; }`; a repeated message merges.
            2 => {
                let limit = st.current_limit.get_or_insert(0);
                read_message(f.len()?, |n, f| {
                    match n {
                        1 => *limit = f.varint()? as u32,
                        2 => {
                            f.varint()?;
                        }
                        3 => {
                            std::str::from_utf8(f.len()?).ok()?;
                        }
                        _ => {}
                    }
                    Some(())
                })?;
            }
            3 => st.limit_remaining = f.varint()? as u32,
            // `google.protobuf.Duration { seconds = 1; nanos = 2; }`.
            4 => {
                let secs = st.reset_seconds.get_or_insert(0);
                read_message(f.len()?, |n, f| {
                    match n {
                        1 => *secs = f.varint()? as i64,
                        2 => {
                            f.varint()?;
                        }
                        _ => {}
                    }
                    Some(())
                })?;
            }
            _ => {}
        }
        Some(())
    })?;
    Some(st)
}

/// `envoy.config.core.v3.GrpcService` with only `envoy_grpc` set: what `dispatch_grpc_call` takes as its
/// upstream. A bare cluster name also works but Envoy first tries to parse it as this message, and a name
/// can happen to parse; the serialized message is unambiguous and carries the `:authority` too.
pub fn grpc_service(cluster: &str, authority: &str) -> Vec<u8> {
    // GrpcService { EnvoyGrpc envoy_grpc = 1 { cluster_name = 1; authority = 2; } }
    let mut b = Vec::with_capacity(8 + cluster.len() + authority.len());
    proto::message(&mut b, 1, |b| {
        proto::opt_bytes(b, 1, cluster.as_bytes());
        proto::opt_bytes(b, 2, authority.as_bytes());
    });
    b
}

/// The `envoy.type.v3.RateLimitUnit` of a budget window, when the protocol has one. MONTH is 30 days in
/// envoyproxy/ratelimit and in the test service; other windows cannot be expressed.
pub fn unit_for_window(secs: u64) -> Option<i32> {
    match secs {
        1 => Some(1),
        60 => Some(2),
        3_600 => Some(3),
        86_400 => Some(4),
        2_592_000 => Some(5),
        _ => None,
    }
}

/// Which quantity a service counter measures (one budget rule can limit several).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tokens,
    Input,
    Output,
    /// Micro-USD (the protocol's limits are 32-bit: up to $4294.97 per window).
    CostMicroUsd,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Tokens, Kind::Input, Kind::Output, Kind::CostMicroUsd];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tokens => "tokens",
            Kind::Input => "input_tokens",
            Kind::Output => "output_tokens",
            Kind::CostMicroUsd => "cost_micro_usd",
        }
    }

    /// The rule's limit in this kind's unit.
    pub fn limit(self, l: &Limits) -> Option<u64> {
        match self {
            Kind::Tokens => l.tokens,
            Kind::Input => l.input,
            Kind::Output => l.output,
            Kind::CostMicroUsd => l.cost_pico.map(|p| p / 1_000_000),
        }
    }

    /// What a call used, in this kind's unit (cost rounded up).
    pub fn amount(self, a: &Amount) -> u64 {
        match self {
            Kind::Tokens => a.tokens,
            Kind::Input => a.input,
            Kind::Output => a.output,
            Kind::CostMicroUsd => a.cost_pico.div_ceil(1_000_000),
        }
    }
}

/// One budget counter in the service: one limit of a rule, for one tenant. Its descriptor is
/// `[tenant=<tenant>, rule=<fingerprint>, limit=<kind>]` with the limit attached as the descriptor override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counter {
    /// The tenant the counter belongs to (the request's tenant for `"*"` rules).
    pub tenant: String,
    /// The rule's fingerprint (tenant, window, models): stable across reloads and reorderings.
    pub rule: String,
    pub kind: Kind,
    /// Limit per window, in the kind's unit.
    pub limit: u32,
    /// Window in seconds (one of those `unit_for_window` accepts).
    pub window_secs: u64,
}

impl Counter {
    /// `RateLimitDescriptor { repeated Entry entries = 1 { key = 1; value = 2; };
    /// RateLimitOverride limit = 2 { requests_per_unit = 1; unit = 2; } }` as field `field`.
    fn write_descriptor(&self, b: &mut Vec<u8>, field: u32) {
        proto::message(b, field, |b| {
            for (k, v) in [
                ("tenant", self.tenant.as_str()),
                ("rule", self.rule.as_str()),
                ("limit", self.kind.as_str()),
            ] {
                proto::message(b, 1, |b| {
                    proto::opt_bytes(b, 1, k.as_bytes());
                    proto::opt_bytes(b, 2, v.as_bytes());
                });
            }
            if let Some(unit) = unit_for_window(self.window_secs) {
                proto::message(b, 2, |b| {
                    proto::opt_varint(b, 1, u64::from(self.limit));
                    proto::opt_varint(b, 2, i64::from(unit) as u64);
                });
            }
        });
    }
}

/// With `backend: "rls"` every limit must be expressible in the protocol: a window of 1s, 1m, 1h, 1d or
/// 30d, and a limit that fits 32 bits. Err: (the rule's key, the reason).
pub fn check_rules(rules: &[Rule]) -> Result<(), (String, String)> {
    for r in rules {
        // `rules[i]` in the object form, `budgets[i]` in the list shorthand.
        let key = if r.name.starts_with("budgets") {
            r.name.clone()
        } else {
            format!("budgets.{}", r.name)
        };
        if unit_for_window(r.window_s).is_none() {
            return Err((
                format!("{key}.window"),
                "must be 1s, 1m, 1h, 1d or 30d with backend \"rls\" (the protocol's units)".into(),
            ));
        }
        for kind in Kind::ALL {
            if kind
                .limit(&r.limits)
                .is_some_and(|v| v > u64::from(u32::MAX))
            {
                let field = match kind {
                    Kind::CostMicroUsd => "cost_usd",
                    k => k.as_str(),
                };
                return Err((
                    format!("{key}.{field}"),
                    "is too large for backend \"rls\" (the protocol's limits are 32-bit; cost is counted in micro-USD)"
                        .into(),
                ));
            }
            if kind == Kind::CostMicroUsd && kind.limit(&r.limits) == Some(0) {
                return Err((
                    format!("{key}.cost_usd"),
                    "must be at least 0.000001 with backend \"rls\" (counted in micro-USD)".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The service counters of the counters `budget::counters` chose for a request of `tenant`.
pub fn counters(rules: &[Rule], specs: &[CounterSpec], tenant: &str) -> Vec<Counter> {
    let mut out = Vec::new();
    for spec in specs {
        let Some(rule) = rules.get(spec.rule) else {
            continue;
        };
        for kind in Kind::ALL {
            if let Some(limit) = kind.limit(&rule.limits) {
                out.push(Counter {
                    tenant: tenant.to_owned(),
                    rule: rule.fingerprint.clone(),
                    kind,
                    limit: u32::try_from(limit).unwrap_or(u32::MAX),
                    window_secs: spec.window_s,
                });
            }
        }
    }
    out
}

/// The debit calls after a call used `used`: one per kind (the protocol has one `hits_addend` per request),
/// each with the kind's counters and what remains to count. `admitted`: the admission call already counted
/// `ADMISSION_HITS` on every counter.
pub fn debits(counters: &[Counter], used: &Amount, admitted: bool) -> Vec<(u32, Vec<Counter>)> {
    let mut out = Vec::new();
    for kind in Kind::ALL {
        let of_kind: Vec<Counter> = counters
            .iter()
            .filter(|c| c.kind == kind)
            .cloned()
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let amount = kind.amount(used);
        let hits = if admitted {
            debit_after(amount)
        } else {
            (amount > 0).then(|| u32::try_from(amount).unwrap_or(u32::MAX))
        };
        if let Some(h) = hits {
            out.push((h, of_kind));
        }
    }
    out
}

/// A `ShouldRateLimit` request debiting `hits` from every counter (`hits` 0 means 1 in the protocol, so
/// callers never send 0: see `debit_after`).
pub fn request(domain: &str, counters: &[Counter], hits: u32) -> Vec<u8> {
    // RateLimitRequest { domain = 1; repeated RateLimitDescriptor descriptors = 2; hits_addend = 3; }
    let mut b = Vec::with_capacity(64 + 64 * counters.len());
    proto::opt_bytes(&mut b, 1, domain.as_bytes());
    for c in counters {
        c.write_descriptor(&mut b, 2);
    }
    proto::opt_varint(&mut b, 3, u64::from(hits.max(1)));
    b
}

/// What remains to debit after the response: the usage less the admission hit, none when nothing is left.
pub fn debit_after(usage: u64) -> Option<u32> {
    let rest = usage.saturating_sub(u64::from(ADMISSION_HITS));
    (rest > 0).then(|| u32::try_from(rest).unwrap_or(u32::MAX))
}

/// What the service said about a request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub over_limit: bool,
    /// The tightest limit that answered (tokens per window).
    pub limit: Option<u64>,
    /// The least remaining among the counters with a limit.
    pub remaining: Option<u64>,
    /// Seconds until the tightest counter resets (the longest among over-limit counters when denied).
    pub reset_secs: Option<u64>,
}

/// Read an answer to a request for `counters` (statuses are in descriptor order); None when it is not a
/// `RateLimitResponse` or its code is UNKNOWN (a service that could not decide), which callers treat as a
/// failure. The limit and remaining reported are in tokens: cost counters decide but are not reported.
pub fn decision(body: &[u8], counters: &[Counter]) -> Option<Decision> {
    let (overall_code, statuses) = read_response(body)?;
    let over_limit = match overall_code {
        CODE_OK => false,
        CODE_OVER_LIMIT => true,
        _ => return None,
    };
    let mut d = Decision {
        over_limit,
        ..Decision::default()
    };
    for (i, st) in statuses.iter().enumerate() {
        let Some(requests_per_unit) = st.current_limit else {
            continue;
        };
        if counters
            .get(i)
            .is_some_and(|c| c.kind == Kind::CostMicroUsd)
        {
            continue;
        }
        let reset = st
            .reset_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(|s| s.saturating_add(1).min(u64::from(u32::MAX)));
        let counts = !over_limit || st.code == CODE_OVER_LIMIT;
        let remaining = u64::from(st.limit_remaining);
        let tighter = match d.remaining {
            Some(r) => remaining < r,
            None => true,
        };
        if tighter {
            d.remaining = Some(remaining);
            d.limit = Some(u64::from(requests_per_unit));
            if !over_limit {
                d.reset_secs = reset;
            }
        }
        if over_limit && counts {
            d.reset_secs = match (d.reset_secs, reset) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    Some(d)
}

/// What to do when the service cannot answer (unreachable, slow past the timeout, an error status, an
/// undecodable answer): `budgets.rls.failure_mode`.
pub use crate::budget::FailureMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    Admit(Decision),
    Deny(Decision),
    /// The service failed and `failure_mode` is open.
    FailOpen,
    /// The service failed and `failure_mode` is closed.
    FailClosed,
}

/// The admission outcome of an answered call: `grpc_status` as Envoy reports it (0 is OK; a timeout is
/// DEADLINE_EXCEEDED, an unreachable cluster UNAVAILABLE), `body` the bare response message.
pub fn admission(
    grpc_status: u32,
    body: &[u8],
    counters: &[Counter],
    mode: FailureMode,
) -> Admission {
    let decided = if grpc_status == GRPC_OK {
        decision(body, counters)
    } else {
        None
    };
    match (decided, mode) {
        (Some(d), _) if d.over_limit => Admission::Deny(d),
        (Some(d), _) => Admission::Admit(d),
        (None, FailureMode::Open) => Admission::FailOpen,
        (None, FailureMode::Closed) => Admission::FailClosed,
    }
}

/// The refusal of a refused admission: over a budget, 429 with `retry-after` (the service's reset) and the
/// `x-ratelimit-*-tokens` headers when the service reported them; the service failing with `failure_mode:
/// closed`, 429 with `retry-after: 1`. None when the request goes on.
pub fn refusal(admission: &Admission) -> Option<Denial> {
    match admission {
        Admission::Admit(_) | Admission::FailOpen => None,
        Admission::Deny(d) => {
            let mut denial = Denial::new(
                Refusal::BudgetExceeded,
                "token budget exceeded for this tenant; retry after the window resets",
            );
            denial.headers.push((
                "retry-after".to_string(),
                d.reset_secs.unwrap_or(1).max(1).to_string(),
            ));
            if let Some(l) = d.limit {
                denial
                    .headers
                    .push(("x-ratelimit-limit-tokens".into(), l.to_string()));
            }
            if let Some(r) = d.remaining {
                denial
                    .headers
                    .push(("x-ratelimit-remaining-tokens".into(), r.to_string()));
            }
            Some(denial)
        }
        Admission::FailClosed => {
            let mut denial = Denial::new(
                Refusal::BudgetExceeded,
                "token budget service unavailable; retry later",
            );
            denial.headers.push(("retry-after".into(), "1".into()));
            Some(denial)
        }
    }
}

/// The messages as prost structs (the field numbers of `rls.proto`, `ratelimit.proto`, `grpc_service.proto`),
/// for the tests to decode what tollgate sends and to encode golden answers.
#[cfg(test)]
pub(crate) mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitRequest {
        #[prost(string, tag = "1")]
        pub domain: String,
        #[prost(message, repeated, tag = "2")]
        pub descriptors: Vec<RateLimitDescriptor>,
        #[prost(uint32, tag = "3")]
        pub hits_addend: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitDescriptor {
        #[prost(message, repeated, tag = "1")]
        pub entries: Vec<Entry>,
        #[prost(message, optional, tag = "2")]
        pub limit: Option<RateLimitOverride>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(string, tag = "1")]
        pub key: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// The limit the descriptor carries, so the budget is defined once, in the plugin JSON.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitOverride {
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        /// `envoy.type.v3.RateLimitUnit`.
        #[prost(int32, tag = "2")]
        pub unit: i32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimitResponse {
        #[prost(int32, tag = "1")]
        pub overall_code: i32,
        #[prost(message, repeated, tag = "2")]
        pub statuses: Vec<DescriptorStatus>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DescriptorStatus {
        #[prost(int32, tag = "1")]
        pub code: i32,
        #[prost(message, optional, tag = "2")]
        pub current_limit: Option<RateLimit>,
        #[prost(uint32, tag = "3")]
        pub limit_remaining: u32,
        #[prost(message, optional, tag = "4")]
        pub duration_until_reset: Option<ProtoDuration>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RateLimit {
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(uint32, tag = "1")]
        pub requests_per_unit: u32,
        #[prost(int32, tag = "2")]
        pub unit: i32,
    }

    /// `google.protobuf.Duration`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProtoDuration {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }

    /// `envoy.config.core.v3.GrpcService` with only `envoy_grpc` set: what `dispatch_grpc_call` takes as its
    /// upstream. A bare cluster name also works but Envoy first tries to parse it as this message, and a name
    /// can happen to parse; the serialized message is unambiguous and carries the `:authority` too.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GrpcService {
        #[prost(message, optional, tag = "1")]
        pub envoy_grpc: Option<EnvoyGrpc>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EnvoyGrpc {
        #[prost(string, tag = "1")]
        pub cluster_name: String,
        #[prost(string, tag = "2")]
        pub authority: String,
    }
}

#[cfg(test)]
mod tests {
    use super::pb::*;
    use super::*;
    use crate::call::Api;
    use crate::reply::Reply;
    use prost::Message;

    fn counter() -> Counter {
        Counter {
            tenant: "team-a".into(),
            rule: "0-60".into(),
            kind: Kind::Tokens,
            limit: 1000,
            window_secs: 60,
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Golden bytes produced by the Python protobuf runtime (testenv/ratelimit/golden.py, a descriptor
    /// built with the real field numbers) (RateLimitRequest{domain="tollgate", descriptors=[{entries=[tenant=team-a, rule=0-60],
    /// limit=tokens], limit={1000, MINUTE}}], hits_addend=1}).
    #[test]
    fn request_matches_python_protobuf() {
        let got = request("tollgate", &[counter()], 1);
        assert_eq!(hex(&got), GOLDEN_REQUEST);
    }

    const GOLDEN_REQUEST: &str = "0a08746f6c6c6761746512380a100a0674656e616e7412067465616d2d61\
0a0c0a0472756c651204302d36300a0f0a056c696d69741206746f6b656e73120508e80710021801";

    #[test]
    fn zero_hits_are_sent_as_one() {
        let r = RateLimitRequest::decode(request("d", &[counter()], 0).as_slice()).unwrap();
        assert_eq!(r.hits_addend, 1);
    }

    #[test]
    fn windows_without_a_unit_carry_no_limit() {
        let mut c = counter();
        c.window_secs = 90;
        let r = RateLimitRequest::decode(request("d", &[c], 5).as_slice()).unwrap();
        assert_eq!(r.descriptors[0].limit, None);
        assert_eq!(unit_for_window(86_400), Some(4));
        assert_eq!(unit_for_window(2_592_000), Some(5));
    }

    #[test]
    fn grpc_service_names_cluster_and_authority() {
        let g = GrpcService::decode(grpc_service("ratelimit", "rls.local").as_slice()).unwrap();
        let e = g.envoy_grpc.unwrap();
        assert_eq!(
            (e.cluster_name.as_str(), e.authority.as_str()),
            ("ratelimit", "rls.local")
        );
        // field 1 (envoy_grpc), length-delimited, then cluster_name as field 1 of it.
        assert_eq!(&grpc_service("c", "")[..4], &[0x0a, 0x03, 0x0a, 0x01]);
    }

    fn status(code: i32, limit: u32, remaining: u32, reset: i64) -> DescriptorStatus {
        DescriptorStatus {
            code,
            current_limit: Some(RateLimit {
                name: String::new(),
                requests_per_unit: limit,
                unit: 2,
            }),
            limit_remaining: remaining,
            duration_until_reset: Some(ProtoDuration {
                seconds: reset,
                nanos: 0,
            }),
        }
    }

    #[test]
    fn decision_takes_the_tightest_counter() {
        let body = RateLimitResponse {
            overall_code: CODE_OK,
            statuses: vec![status(CODE_OK, 1000, 700, 40), status(CODE_OK, 500, 20, 10)],
        }
        .encode_to_vec();
        let d = decision(&body, &[]).unwrap();
        assert_eq!(
            d,
            Decision {
                over_limit: false,
                limit: Some(500),
                remaining: Some(20),
                reset_secs: Some(11),
            }
        );
    }

    #[test]
    fn cost_counters_decide_but_are_not_reported_as_tokens() {
        let body = RateLimitResponse {
            overall_code: CODE_OK,
            statuses: vec![
                status(CODE_OK, 9000, 8000, 40),
                status(CODE_OK, 2_500_000, 5, 40),
            ],
        }
        .encode_to_vec();
        let mut cost = counter();
        cost.kind = Kind::CostMicroUsd;
        let d = decision(&body, &[counter(), cost]).unwrap();
        assert_eq!((d.limit, d.remaining), (Some(9000), Some(8000)));
    }

    #[test]
    fn over_limit_reports_the_longest_reset_of_the_exhausted_counters() {
        let body = RateLimitResponse {
            overall_code: CODE_OVER_LIMIT,
            statuses: vec![
                status(CODE_OVER_LIMIT, 1000, 0, 40),
                status(CODE_OK, 500000, 20000, 3000),
                status(CODE_OVER_LIMIT, 50, 0, 5),
            ],
        }
        .encode_to_vec();
        let d = decision(&body, &[]).unwrap();
        assert!(d.over_limit);
        assert_eq!(d.remaining, Some(0));
        assert_eq!(d.reset_secs, Some(41));
    }

    /// Golden bytes from the Python protobuf runtime (testenv/ratelimit/golden.py): overall OVER_LIMIT, one
    /// status {OVER_LIMIT, limit {1000, MINUTE}, remaining 0, reset 12s}.
    /// The hand-written reader accepts and rejects what the generated decoder does and reads the same values:
    /// the golden answer, every truncation, and single-byte corruptions at every offset.
    #[test]
    fn response_reader_agrees_with_prost() {
        let mut named = status(1, 50, 7, 5);
        if let Some(l) = named.current_limit.as_mut() {
            l.name = "tokens".into();
        }
        let golden = RateLimitResponse {
            overall_code: 2,
            statuses: vec![
                status(2, 1000, 0, 30),
                named,
                DescriptorStatus::default(),
                status(1, u32::MAX, u32::MAX, -1),
            ],
        }
        .encode_to_vec();
        let mut inputs = vec![
            golden.clone(),
            vec![],
            RateLimitResponse::default().encode_to_vec(),
            // An unknown group field, then the answer.
            [vec![0x1b, 0x08, 0x01, 0x1c], golden.clone()].concat(),
            vec![0x1b, 0x08, 0x01, 0x24],
            vec![0x0c],
        ];
        for i in 0..golden.len() {
            inputs.push(golden[..i].to_vec());
            for x in [0x00, 0x01, 0x03, 0x0b, 0x12, 0x0a, 0x7f, 0x80, 0xc3, 0xff] {
                let mut m = golden.clone();
                m[i] = x;
                inputs.push(m);
            }
        }
        let mut agreed_ok = 0;
        for b in &inputs {
            let ours = read_response(b);
            let theirs = RateLimitResponse::decode(b.as_slice()).ok();
            match (ours, theirs) {
                (Some((code, statuses)), Some(r)) => {
                    agreed_ok += 1;
                    assert_eq!(code, r.overall_code, "{}", hex(b));
                    let expect: Vec<Status> = r
                        .statuses
                        .iter()
                        .map(|p| Status {
                            code: p.code,
                            current_limit: p.current_limit.as_ref().map(|l| l.requests_per_unit),
                            limit_remaining: p.limit_remaining,
                            reset_seconds: p.duration_until_reset.as_ref().map(|d| d.seconds),
                        })
                        .collect();
                    assert_eq!(statuses, expect, "{}", hex(b));
                }
                (None, None) => {}
                (ours, theirs) => panic!("{}: ours {ours:?}, prost {theirs:?}", hex(b)),
            }
        }
        assert!(agreed_ok > 50 && agreed_ok < inputs.len());
    }

    #[test]
    fn decodes_golden_response() {
        let bytes = [
            0x08, 0x02, 0x12, 0x0d, 0x08, 0x02, 0x12, 0x05, 0x08, 0xe8, 0x07, 0x10, 0x02, 0x22,
            0x02, 0x08, 0x0c,
        ];
        let d = decision(&bytes, &[]).unwrap();
        assert_eq!(
            d,
            Decision {
                over_limit: true,
                limit: Some(1000),
                remaining: Some(0),
                reset_secs: Some(13),
            }
        );
    }

    #[test]
    fn failures_follow_the_mode() {
        let ok = RateLimitResponse {
            overall_code: CODE_OK,
            statuses: vec![],
        }
        .encode_to_vec();
        assert!(matches!(
            admission(0, &ok, &[], FailureMode::Closed),
            Admission::Admit(_)
        ));
        // DEADLINE_EXCEEDED (timeout), UNAVAILABLE (unreachable).
        assert_eq!(
            admission(4, &ok, &[], FailureMode::Open),
            Admission::FailOpen
        );
        assert_eq!(
            admission(14, &[], &[], FailureMode::Closed),
            Admission::FailClosed
        );
        // Garbage and an UNKNOWN overall code are failures, not decisions.
        assert_eq!(
            admission(0, &[0xff, 0xff], &[], FailureMode::Closed),
            Admission::FailClosed
        );
        let unknown = RateLimitResponse::default().encode_to_vec();
        assert_eq!(
            admission(0, &unknown, &[], FailureMode::Open),
            Admission::FailOpen
        );
    }

    fn budgets(v: serde_json::Value) -> crate::budget::BudgetConfig {
        crate::budget::BudgetConfig::parse(v).unwrap()
    }

    #[test]
    fn counters_follow_the_rules_budget_chose() {
        let cfg = budgets(serde_json::json!([
            {"tenant": "*", "window": "1m", "tokens": 1000, "output_tokens": 300},
            {"tenant": "*", "window": "1d", "cost_usd": 2.5, "models": ["gpt-4*"]},
        ]));
        let specs = crate::budget::counters(&cfg, "team-a", Some("gpt-4o"));
        let cs = counters(&cfg.rules, &specs, "team-a");
        let got: Vec<(Kind, u32, u64)> = cs
            .iter()
            .map(|c| (c.kind, c.limit, c.window_secs))
            .collect();
        assert_eq!(
            got,
            vec![
                (Kind::Tokens, 1000, 60),
                (Kind::Output, 300, 60),
                (Kind::CostMicroUsd, 2_500_000, 86_400)
            ]
        );
        assert!(cs.iter().all(|c| c.tenant == "team-a"));
        assert_ne!(cs[0].rule, cs[2].rule);
        // Another model skips the model rule.
        let specs = crate::budget::counters(&cfg, "team-a", Some("claude"));
        assert_eq!(counters(&cfg.rules, &specs, "team-a").len(), 2);
    }

    #[test]
    fn debits_one_call_per_kind() {
        let cfg = budgets(serde_json::json!([
            {"tenant": "*", "window": "1m", "tokens": 1000, "output_tokens": 300, "cost_usd": 1},
        ]));
        let specs = crate::budget::counters(&cfg, "t", None);
        let cs = counters(&cfg.rules, &specs, "t");
        let used = Amount {
            tokens: 120,
            input: 100,
            output: 20,
            cost_pico: 1_500_001,
        };
        let d: Vec<(u32, Kind)> = debits(&cs, &used, true)
            .into_iter()
            .map(|(h, c)| (h, c[0].kind))
            .collect();
        assert_eq!(
            d,
            vec![
                (119, Kind::Tokens),
                (19, Kind::Output),
                (1, Kind::CostMicroUsd)
            ]
        );
        // Not admitted through the service (it was failing): the whole usage is debited.
        let d: Vec<u32> = debits(&cs, &used, false)
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        assert_eq!(d, vec![120, 20, 2]);
        assert!(debits(&cs, &Amount::default(), true).is_empty());
    }

    #[test]
    fn rls_budgets_are_checked_at_parse_time() {
        let parse = |v| {
            crate::budget::BudgetConfig::parse(v)
                .unwrap_err()
                .to_string()
        };
        let rls = serde_json::json!({"cluster": "ratelimit"});
        let e = parse(serde_json::json!({"backend": "rls", "rls": rls,
            "rules": [{"tenant": "*", "window": "2h", "tokens": 5}]}));
        assert!(e.contains("budgets.rules[0].window"), "{e}");
        let e = parse(
            serde_json::json!({"backend": "rls", "rls": rls, "clamp_max_tokens": true,
            "rules": [{"tenant": "*", "window": "1h", "tokens": 5}]}),
        );
        assert!(
            e.contains("budgets.clamp_max_tokens") && e.contains("rls"),
            "{e}"
        );
        // The local backend keeps every window.
        crate::budget::BudgetConfig::parse(
            serde_json::json!([{"tenant": "*", "window": "2h", "tokens": 5}]),
        )
        .unwrap();
    }

    #[test]
    fn rules_must_fit_the_protocol() {
        let ok =
            budgets(serde_json::json!([{"tenant": "*", "window": "30d", "tokens": 4294967295u64}]));
        assert_eq!(check_rules(&ok.rules), Ok(()));
        let odd = budgets(serde_json::json!([{"tenant": "a", "window": "90s", "tokens": 5}]));
        let (key, why) = check_rules(&odd.rules).unwrap_err();
        assert_eq!(key, "budgets[0].window");
        assert!(why.contains("1s, 1m, 1h, 1d or 30d"), "{why}");
        let big = budgets(
            serde_json::json!([{"tenant": "a", "window": "1h", "output_tokens": 4294967296u64}]),
        );
        assert_eq!(
            check_rules(&big.rules).unwrap_err().0,
            "budgets[0].output_tokens"
        );
        let tiny =
            budgets(serde_json::json!([{"tenant": "a", "window": "1h", "cost_usd": 0.0000001}]));
        assert_eq!(
            check_rules(&tiny.rules).unwrap_err().0,
            "budgets[0].cost_usd"
        );
    }

    #[test]
    fn refusals_speak_the_dialect() {
        let d = Decision {
            over_limit: true,
            limit: Some(190),
            remaining: Some(0),
            reset_secs: Some(42),
        };
        let dialect = |api: Api, a: &Admission| {
            let route = crate::call::Route {
                api,
                provider: String::new(),
                path_model: None,
                path_stream: false,
            };
            refusal(a).map(|d| crate::providers::reply(&route, &d))
        };
        let r = dialect(Api::AnthropicMessages, &Admission::Deny(d)).unwrap();
        assert_eq!(r.status, 429);
        let h = |r: &Reply, k: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(h(&r, "retry-after").as_deref(), Some("42"));
        assert_eq!(h(&r, "x-ratelimit-limit-tokens").as_deref(), Some("190"));
        assert_eq!(h(&r, "x-ratelimit-remaining-tokens").as_deref(), Some("0"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["type"], "rate_limit_error");
        let c = dialect(Api::OpenAiChat, &Admission::FailClosed).unwrap();
        assert_eq!(
            (c.status, h(&c, "retry-after").as_deref()),
            (429, Some("1"))
        );
        let body: serde_json::Value = serde_json::from_slice(&c.body).unwrap();
        assert_eq!(body["error"]["code"], "token_budget_exceeded");
        assert!(refusal(&Admission::FailOpen).is_none());
        assert!(refusal(&Admission::Admit(Decision::default())).is_none());
    }

    #[test]
    fn debit_after_subtracts_the_admission_hit() {
        assert_eq!(debit_after(0), None);
        assert_eq!(debit_after(1), None);
        assert_eq!(debit_after(250), Some(249));
        assert_eq!(debit_after(u64::MAX), Some(u32::MAX));
    }

    #[test]
    fn decoding_never_panics_on_truncations() {
        let body = RateLimitResponse {
            overall_code: CODE_OVER_LIMIT,
            statuses: vec![status(CODE_OVER_LIMIT, 1000, 0, 40)],
        }
        .encode_to_vec();
        for n in 0..body.len() {
            let _ = admission(0, &body[..n], &[], FailureMode::Open);
        }
    }
}
