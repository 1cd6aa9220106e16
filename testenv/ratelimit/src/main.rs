//! A small Envoy rate-limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`)
//! for tollgate's tests and `make run`, counting in Redis.
//!
//! Usage: `tollgate-ratelimit <port> [redis-url]` (default `redis://127.0.0.1:6379`); it listens on
//! 127.0.0.1:<port>, HTTP/2 cleartext, and prints `ready <port>` on stdout once it accepts calls.
//!
//! Limits are not configured here: each descriptor carries its own through the standard
//! `RateLimitDescriptor.limit` override (`requests_per_unit`, `unit`), so the budget is defined once, in
//! tollgate's plugin JSON (envoyproxy/ratelimit honours the same override). A descriptor without an
//! override is not limited (status OK, no `current_limit`).
//!
//! Semantics, as envoyproxy/ratelimit's fixed windows: a descriptor's counter is keyed by the domain, its
//! entries (keys and values, never the limit value, so a changed budget keeps what was spent) and the
//! window, which starts at a multiple of the unit since the Unix epoch (as tollgate's local budgets).
//! Every hit is counted, also when the answer is OVER_LIMIT: a request is over when its hits take a
//! counter past its limit. `hits_addend` 0 counts as 1, as the protocol says. One Lua script per request
//! increments all counters atomically in Redis, so several instances of this service can share one Redis.
//! When Redis is unreachable the call fails with UNAVAILABLE (the caller's failure mode decides).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

mod proto;
use proto::*;

const SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// KEYS: one counter per limited descriptor; ARGV[1]: hits; ARGV[1+i]: seconds left in KEYS[i]'s window.
/// Returns value, ttl pairs.
const SCRIPT: &str = r"
local out = {}
for i, k in ipairs(KEYS) do
  local v = redis.call('INCRBY', k, ARGV[1])
  local ttl = redis.call('TTL', k)
  if ttl < 0 then
    ttl = tonumber(ARGV[i + 1])
    redis.call('EXPIRE', k, ttl)
  end
  out[#out + 1] = v
  out[#out + 1] = ttl
end
return out
";

struct Limiter {
    redis: redis::aio::ConnectionManager,
    script: redis::Script,
}

fn unit_seconds(unit: i32) -> Option<u64> {
    match unit {
        1 => Some(1),
        2 => Some(60),
        3 => Some(3_600),
        4 => Some(86_400),
        5 => Some(30 * 86_400),
        6 => Some(365 * 86_400),
        7 => Some(7 * 86_400),
        _ => None,
    }
}

/// An unambiguous Redis key: every part length-prefixed.
fn counter_key(domain: &str, window_start: u64, unit: u64, entries: &[Entry]) -> String {
    let mut k = format!(
        "tollgate-rls:{}:{domain}:{unit}:{window_start}",
        domain.len()
    );
    for e in entries {
        k.push_str(&format!(
            "|{}:{}={}:{}",
            e.key.len(),
            e.key,
            e.value.len(),
            e.value
        ));
    }
    k
}

impl Limiter {
    async fn should_rate_limit(
        &self,
        req: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        if req.domain.is_empty() {
            return Err(tonic::Status::invalid_argument("domain must not be empty"));
        }
        if req.descriptors.is_empty() {
            return Err(tonic::Status::invalid_argument(
                "descriptors must not be empty",
            ));
        }
        let hits = u64::from(req.hits_addend.max(1));
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut inv = self.script.prepare_invoke();
        inv.arg(hits);
        let mut limited = Vec::new(); // (descriptor index, limit)
        for (i, d) in req.descriptors.iter().enumerate() {
            let Some(limit) = &d.limit else { continue };
            let Some(unit) = unit_seconds(limit.unit) else {
                return Err(tonic::Status::invalid_argument(format!(
                    "descriptor {i}: unknown unit {}",
                    limit.unit
                )));
            };
            let start = now / unit * unit;
            inv.key(counter_key(&req.domain, start, unit, &d.entries));
            inv.arg((start + unit).saturating_sub(now).max(1));
            limited.push((i, limit.clone()));
        }
        let mut statuses: Vec<DescriptorStatus> = req
            .descriptors
            .iter()
            .map(|_| DescriptorStatus {
                code: CODE_OK,
                ..Default::default()
            })
            .collect();
        let mut overall = CODE_OK;
        if !limited.is_empty() {
            let mut con = self.redis.clone();
            let values: Vec<i64> = inv
                .invoke_async(&mut con)
                .await
                .map_err(|e| tonic::Status::unavailable(format!("redis: {e}")))?;
            for (n, (i, limit)) in limited.iter().enumerate() {
                let value = values.get(2 * n).copied().unwrap_or(0).max(0) as u64;
                let ttl = values.get(2 * n + 1).copied().unwrap_or(0).max(0);
                let max = u64::from(limit.requests_per_unit);
                let Some(st) = statuses.get_mut(*i) else {
                    continue;
                };
                if value > max {
                    st.code = CODE_OVER_LIMIT;
                    overall = CODE_OVER_LIMIT;
                }
                st.limit_remaining = u32::try_from(max.saturating_sub(value)).unwrap_or(u32::MAX);
                st.current_limit = Some(RateLimit {
                    name: String::new(),
                    requests_per_unit: limit.requests_per_unit,
                    unit: limit.unit,
                });
                st.duration_until_reset = Some(Duration {
                    seconds: ttl,
                    nanos: 0,
                });
            }
        }
        Ok(RateLimitResponse {
            overall_code: overall,
            statuses,
        })
    }
}

/// The one-method gRPC service, routed by hand (no code generation, no protoc).
#[derive(Clone)]
struct Svc(Arc<Limiter>);

impl tonic::server::NamedService for Svc {
    const NAME: &'static str = SERVICE;
}

struct Unary(Arc<Limiter>);

impl tonic::server::UnaryService<RateLimitRequest> for Unary {
    type Response = RateLimitResponse;
    type Future = std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<tonic::Response<RateLimitResponse>, tonic::Status>,
                > + Send,
        >,
    >;
    fn call(&mut self, request: tonic::Request<RateLimitRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move {
            inner
                .should_rate_limit(request.into_inner())
                .await
                .map(tonic::Response::new)
        })
    }
}

impl<B> tonic::codegen::Service<tonic::codegen::http::Request<B>> for Svc
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = tonic::codegen::http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: tonic::codegen::http::Request<B>) -> Self::Future {
        let inner = self.0.clone();
        if req.uri().path() == format!("/{SERVICE}/ShouldRateLimit") {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::default());
                Ok(grpc.unary(Unary(inner), req).await)
            })
        } else {
            Box::pin(async move { Ok(tonic::Status::unimplemented("unknown method").into_http()) })
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .ok_or("usage: tollgate-ratelimit <port> [redis-url]")?
        .parse()?;
    let redis = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let client = redis::Client::open(redis.as_str())?;
    let cfg = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(std::time::Duration::from_secs(1))
        .set_response_timeout(std::time::Duration::from_secs(1));
    let redis = redis::aio::ConnectionManager::new_with_config(client, cfg).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("ready {port}");
    tonic::transport::Server::builder()
        .add_service(Svc(Arc::new(Limiter {
            redis,
            script: redis::Script::new(SCRIPT),
        })))
        .serve_with_incoming_shutdown(tokio_stream_listener(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

fn tokio_stream_listener(
    l: tokio::net::TcpListener,
) -> impl tonic::codegen::tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    tonic::codegen::tokio_stream::wrappers::TcpListenerStream::new(l)
}
