//! `budgets.webhook`: where threshold alerts are POSTed (an Envoy cluster, path and headers) and how hard
//! delivery tries. The queue that delivers them is `telemetry::webhook`.

use crate::codec::json::strict::{
    object, opt, required, string, string_map, uint, under, ConfigError,
};
use crate::codec::json::tape::Value as Json;

/// Where and how alerts are posted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Envoy cluster of the receiver.
    pub cluster: String,
    /// `:authority` of the requests.
    pub authority: String,
    pub path: String,
    /// Extra request headers (lowercase names), e.g. the receiver's credentials.
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
    pub max_queue: usize,
    pub max_attempts: u32,
}

fn err(key: String, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

/// Headers tollgate sets itself, or that only the connection may carry.
const RESERVED: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "user-agent",
];

fn valid_header_name(n: &str) -> bool {
    !n.is_empty()
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl WebhookConfig {
    /// `key` is the full key (`budgets.webhook`); errors name the member (`budgets.webhook.timeout_ms`).
    pub fn read(key: &str, v: Json) -> Result<WebhookConfig, ConfigError> {
        let (mut cluster, mut authority, mut path, mut headers) = (None, None, None, None);
        let (mut timeout_ms, mut max_queue, mut max_attempts) = (None, None, None);
        object(
            v,
            &[
                "cluster",
                "authority",
                "path",
                "headers",
                "timeout_ms",
                "max_queue",
                "max_attempts",
            ],
            &mut |i, v| {
                match i {
                    0 => cluster = Some(string(v)?),
                    1 => authority = opt(v, string)?,
                    2 => path = opt(v, string)?,
                    3 => headers = opt(v, string_map)?,
                    4 => timeout_ms = opt(v, uint)?,
                    5 => max_queue = opt(v, uint)?,
                    _ => max_attempts = opt(v, uint)?,
                }
                Ok(())
            },
        )
        .map_err(|e| under(e, key))?;
        let cluster = required(cluster, "cluster").map_err(|e| under(e, key))?;
        if cluster.is_empty() {
            return Err(err(format!("{key}.cluster"), "must name an Envoy cluster"));
        }
        let path = path.unwrap_or_else(|| "/".into());
        if !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(err(
                format!("{key}.path"),
                "must be a request path starting with `/`, without spaces or control characters",
            ));
        }
        let authority = authority.unwrap_or_else(|| cluster.clone());
        if authority.is_empty() || authority.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(err(format!("{key}.authority"), "must be a host name"));
        }
        let mut extra = Vec::new();
        for (name, value) in headers.unwrap_or_default() {
            let lower = name.to_ascii_lowercase();
            let hkey = format!("{key}.headers.{name}");
            if !valid_header_name(&lower) {
                return Err(err(hkey, "must be a header name"));
            }
            if RESERVED.contains(&lower.as_str()) {
                return Err(err(hkey, "is set by tollgate or the connection"));
            }
            if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
                return Err(err(hkey, "must not contain CR, LF or NUL"));
            }
            extra.push((lower, value));
        }
        let bounded = |name: &str, v: Option<u64>, default: u64, max: u64| {
            let v = v.unwrap_or(default);
            if v == 0 || v > max {
                Err(err(
                    format!("{key}.{name}"),
                    format!("must be between 1 and {max}"),
                ))
            } else {
                Ok(v)
            }
        };
        Ok(WebhookConfig {
            cluster,
            authority,
            path,
            headers: extra,
            timeout_ms: bounded("timeout_ms", timeout_ms, 2_000, 60_000)?,
            max_queue: usize::try_from(bounded("max_queue", max_queue, 100, 10_000)?)
                .unwrap_or(100),
            max_attempts: u32::try_from(bounded("max_attempts", max_attempts, 5, 20)?).unwrap_or(5),
        })
    }

    /// The headers of one POST of a `body_len`-byte payload.
    pub fn request_headers(&self, body_len: usize) -> Vec<(&str, String)> {
        let mut h = vec![
            (":method", "POST".to_owned()),
            (":path", self.path.clone()),
            (":authority", self.authority.clone()),
            ("content-type", "application/json".to_owned()),
            ("content-length", body_len.to_string()),
            (
                "user-agent",
                format!("tollgate/{}", env!("CARGO_PKG_VERSION")),
            ),
        ];
        h.extend(self.headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
        h
    }
}
