//! `budgets.inspect`: read the budget counters from the gateway itself, without writing to them.
//!
//! ```json
//! "inspect": {"path": "/tollgate/budgets", "token_sha256": ["<hex of SHA-256 of the admin token>"],
//!             "peers": ["spiffe://cluster.local/ns/sre/*"]}
//! ```
//!
//! `GET <path>?team=payments&user=alice` answers, for every rule that applies to each named subject (the
//! same rules a call of that subject is checked against, model-scoped ones included), the counter of the
//! current window: committed usage, outstanding reservations, the limits and what is left. The gateway
//! answers it locally; the request never reaches a provider.
//!
//! Why a route and not Envoy stats: a stat per (rule, subject) would put every team and user in Envoy's
//! stats (unbounded cardinality, and the store's keys cannot be listed), while the counters are already in
//! the store, readable per subject. Who may ask: a caller presenting a bearer token whose SHA-256 is
//! listed (the configuration holds the hash, never the token), or a caller whose mTLS identity (client
//! certificate URI SAN) matches a `peers` pattern. Anyone else gets 403, and the route is found only on
//! a GET of exactly `path`.

use super::config::{BudgetConfig, TenantMatch};
use super::ledger::{Clock, Ledger, Store};
use crate::codec::json::strict::{object, opt, string, strings, under, ConfigError};
use crate::codec::json::tape::Value;
use crate::codec::json::write::Json;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InspectConfig {
    pub path: String,
    /// SHA-256 digests of the accepted bearer tokens.
    pub token_sha256: Vec<[u8; 32]>,
    /// mTLS identity patterns (`*` wildcard) of callers allowed without a token.
    pub peers: Vec<String>,
}

fn err(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        reason: reason.into(),
    }
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(b.chunks_exact(2)) {
        let d = |c: u8| (c as char).to_digit(16);
        let (Some(hi), Some(lo)) = (
            pair.first().copied().and_then(d),
            pair.get(1).copied().and_then(d),
        ) else {
            return None;
        };
        *o = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl InspectConfig {
    /// `budgets.inspect`.
    pub fn read(v: Value) -> Result<InspectConfig, ConfigError> {
        const KEY: &str = "budgets.inspect";
        let (mut path, mut tokens, mut peers) = (None, None, None);
        object(v, &["path", "token_sha256", "peers"], &mut |i, v| {
            match i {
                0 => path = opt(v, string)?,
                1 => tokens = opt(v, strings)?,
                _ => peers = opt(v, strings)?,
            }
            Ok(())
        })
        .map_err(|e| under(e, KEY))?;
        let path = path.unwrap_or_else(|| "/tollgate/budgets".into());
        if !path.starts_with('/') || path.contains(['?', '#']) || path.bytes().any(|b| b <= b' ') {
            return Err(err(
                format!("{KEY}.path"),
                "must be a path like \"/tollgate/budgets\"",
            ));
        }
        let mut token_sha256 = Vec::new();
        for (i, t) in tokens.unwrap_or_default().iter().enumerate() {
            token_sha256.push(unhex32(t).ok_or_else(|| {
                err(
                    format!("{KEY}.token_sha256[{i}]"),
                    "must be 64 hex digits: the SHA-256 of the token (`printf %s TOKEN | sha256sum`)",
                )
            })?);
        }
        let peers = peers.unwrap_or_default();
        if let Some(i) = peers.iter().position(|p| p.is_empty()) {
            return Err(err(format!("{KEY}.peers[{i}]"), "must not be empty"));
        }
        if token_sha256.is_empty() && peers.is_empty() {
            return Err(err(
                KEY,
                "needs `token_sha256` or `peers`: who may read the budgets",
            ));
        }
        Ok(InspectConfig {
            path,
            token_sha256,
            peers,
        })
    }

    /// Whether a caller presenting `authorization` (the header) from mTLS identity `peer` may read.
    pub fn allows(&self, authorization: Option<&str>, peer: Option<&str>) -> bool {
        use sha2::{Digest, Sha256};
        let token = authorization.and_then(|a| {
            let (scheme, rest) = a.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        });
        if let Some(t) = token.filter(|t| !t.is_empty()) {
            let digest: [u8; 32] = Sha256::digest(t.as_bytes()).into();
            // Compared without an early exit, so timing says nothing about how much of a digest matched.
            let hit = self.token_sha256.iter().fold(false, |acc, d| {
                acc | (d
                    .iter()
                    .zip(digest.iter())
                    .fold(0u8, |x, (a, b)| x | (a ^ b))
                    == 0)
            });
            if hit {
                return true;
            }
        }
        peer.is_some_and(|p| {
            self.peers
                .iter()
                .any(|pat| crate::pricing::model_matches(pat, p))
        })
    }
}

/// Percent-decoding of a query component (`+` is a space); None when malformed.
fn unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The subjects a query names: `(dimension, subject)` for each `<dimension>=<subject>` pair.
pub fn subjects(cfg: &BudgetConfig, query: &str) -> Result<Vec<(usize, String)>, String> {
    let mut out = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (unescape(k), unescape(v)) else {
            return Err("malformed query".into());
        };
        let d = (0..=cfg.dimensions.len())
            .find(|&d| cfg.dimension_name(d) == k)
            .ok_or_else(|| format!("unknown dimension `{k}`"))?;
        if !super::tenant::valid_tenant(&v) {
            return Err(format!(
                "`{k}` must be a subject ([A-Za-z0-9._:@-], 1-64 characters)"
            ));
        }
        if out.len() >= 16 {
            return Err("at most 16 subjects per query".into());
        }
        out.push((d, v));
    }
    if out.is_empty() {
        return Err("name at least one subject, like ?tenant=team-a".into());
    }
    Ok(out)
}

fn amounts(
    tokens: Option<u64>,
    input: Option<u64>,
    output: Option<u64>,
    pico: Option<u64>,
) -> Json {
    let mut m = Vec::new();
    let int = |v: u64| Json::Lit(v.to_string());
    for (k, v) in [
        ("tokens", tokens),
        ("input_tokens", input),
        ("output_tokens", output),
    ] {
        if let Some(v) = v {
            m.push((k.to_owned(), int(v)));
        }
    }
    if let Some(p) = pico {
        // Pico-USD as a decimal, exactly.
        let (usd, frac) = (p / 1_000_000_000_000, p % 1_000_000_000_000);
        let mut text = usd.to_string();
        if frac != 0 {
            let f = format!("{frac:012}");
            text.push('.');
            text.push_str(f.trim_end_matches('0'));
        }
        m.push(("cost_usd".to_owned(), Json::Lit(text)));
    }
    Json::Obj(m)
}

/// The JSON answer for `subjects`, read from the store without writing.
pub fn view<S: Store>(
    cfg: &BudgetConfig,
    ledger: &Ledger<'_, S>,
    subjects: &[(usize, String)],
    clock: &Clock,
) -> String {
    let mut rows = Vec::new();
    for (d, subject) in subjects {
        let named = cfg.rules.iter().any(|r| {
            r.dimension == *d && matches!(&r.tenant, TenantMatch::Named(t) if t == subject)
        });
        for r in cfg.rules.iter().filter(|r| r.dimension == *d) {
            let applies = match &r.tenant {
                TenantMatch::Named(t) => t == subject,
                TenantMatch::Each => !named,
            };
            if !applies {
                continue;
            }
            let key = super::ledger::counter_key(&r.fingerprint, subject);
            let c = ledger.read(&key, &r.window, clock).unwrap_or_default();
            let bounds = r.window.bounds(clock.now_s);
            let (u, p, l) = (c.used, c.pending_total(), r.limits);
            let taken = u.plus(p);
            let left = |limit: Option<u64>, t: u64| limit.map(|l| l.saturating_sub(t));
            let mut row = vec![
                ("rule".to_owned(), Json::str(&r.name)),
                (
                    "dimension".to_owned(),
                    Json::str(cfg.dimension_name(r.dimension)),
                ),
                ("subject".to_owned(), Json::str(subject)),
                (
                    "window".to_owned(),
                    Json::obj([
                        ("id", Json::str(&r.window.key(clock.now_s))),
                        ("start", Json::Lit(bounds.start.to_string())),
                        ("end", Json::Lit(bounds.end.to_string())),
                        (
                            "reset_s",
                            Json::Lit(r.window.seconds_to_reset(clock.now_s).to_string()),
                        ),
                    ]),
                ),
                (
                    "used".to_owned(),
                    amounts(
                        Some(u.tokens),
                        Some(u.input),
                        Some(u.output),
                        Some(u.cost_pico),
                    ),
                ),
                (
                    "reserved".to_owned(),
                    amounts(
                        Some(p.tokens),
                        Some(p.input),
                        Some(p.output),
                        Some(p.cost_pico),
                    ),
                ),
                (
                    "limits".to_owned(),
                    amounts(l.tokens, l.input, l.output, l.cost_pico),
                ),
                (
                    "remaining".to_owned(),
                    amounts(
                        left(l.tokens, taken.tokens),
                        left(l.input, taken.input),
                        left(l.output, taken.output),
                        left(l.cost_pico, taken.cost_pico),
                    ),
                ),
            ];
            if !r.models.is_empty() {
                row.push((
                    "models".to_owned(),
                    Json::Arr(r.models.iter().map(|m| Json::str(m)).collect()),
                ));
            }
            rows.push(Json::Obj(row));
        }
    }
    Json::obj([
        ("now", Json::Lit(clock.now_s.to_string())),
        ("counters", Json::Arr(rows)),
    ])
    .text()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::ledger::fake::FakeStore;
    use crate::budget::{counters_of, Amount};
    use serde_json::json;

    fn cfg() -> BudgetConfig {
        BudgetConfig::parse(json!({
            "dimensions": {"team": {"header": "x-team"}},
            "rules": [{"team": "*", "window": "month", "tokens": 1000, "cost_usd": 5},
                      {"tenant": "*", "window": "1h", "output_tokens": 10, "models": ["gpt-4o*"]}],
            "inspect": {"token_sha256": ["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
                        "peers": ["spiffe://cluster.local/ns/sre/*"]}
        }))
        .unwrap()
    }

    #[test]
    fn only_the_listed_token_or_peer_may_read() {
        let c = cfg();
        let i = c.inspect.as_ref().unwrap();
        assert_eq!(i.path, "/tollgate/budgets");
        // SHA-256("test").
        assert!(i.allows(Some("Bearer test"), None));
        assert!(i.allows(Some("bearer  test "), None));
        assert!(!i.allows(Some("Bearer tesT"), None));
        assert!(!i.allows(Some("Basic test"), None));
        assert!(!i.allows(None, None));
        assert!(i.allows(None, Some("spiffe://cluster.local/ns/sre/sa/oncall")));
        assert!(!i.allows(None, Some("spiffe://cluster.local/ns/app/sa/x")));
        let key = |v: serde_json::Value| {
            BudgetConfig::parse(
                json!({"rules": [{"tenant": "*", "window": "1h", "tokens": 1}], "inspect": v}),
            )
            .unwrap_err()
            .key
        };
        assert_eq!(key(json!({})), "budgets.inspect");
        assert_eq!(
            key(json!({"token_sha256": ["abc"]})),
            "budgets.inspect.token_sha256[0]"
        );
        assert_eq!(
            key(json!({"peers": ["a"], "path": "x"})),
            "budgets.inspect.path"
        );
        assert_eq!(key(json!({"peers": [""]})), "budgets.inspect.peers[0]");
        assert_eq!(
            key(json!({"peers": ["a"], "nope": 1})),
            "budgets.inspect.nope"
        );
    }

    #[test]
    fn the_view_reads_every_rule_of_each_subject_without_writing() {
        let c = cfg();
        let store = FakeStore::default();
        let l = Ledger {
            store: &store,
            holder: 1,
            max_keys: 100,
        };
        let clock = Clock {
            now_s: 1_772_323_200 + 3_600 * 30,
            ttl_s: 600,
        };
        let specs = counters_of(&c, &["acme".into(), "red".into()], Some("gpt-4o"));
        let want = crate::budget::Want {
            input: 5,
            output: 3,
            min_output: 3,
            ..Default::default()
        };
        let crate::budget::Decision::Admitted { reservation, .. } =
            l.admit(&specs, &want, &clock).unwrap()
        else {
            panic!()
        };
        l.commit(
            &reservation,
            Amount {
                tokens: 7,
                input: 5,
                output: 2,
                cost_pico: 1_500_000,
            },
            &clock,
        )
        .unwrap();
        let writes = store.writes.get();
        let q = subjects(&c, "team=red&tenant=acme&tenant=nobody").unwrap();
        let v: serde_json::Value = serde_json::from_str(&view(&c, &l, &q, &clock)).unwrap();
        assert_eq!(store.writes.get(), writes, "reading writes nothing");
        let rows = v["counters"].as_array().unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0]["dimension"], "team");
        assert_eq!(rows[0]["window"]["id"], "2026-03");
        assert_eq!(rows[0]["used"]["tokens"], 7);
        assert_eq!(rows[0]["remaining"]["tokens"], 993);
        assert_eq!(rows[0]["limits"]["cost_usd"], 5.0);
        assert_eq!(rows[0]["used"]["cost_usd"], 1.5e-6);
        assert_eq!(rows[1]["subject"], "acme");
        assert_eq!(rows[1]["models"], json!(["gpt-4o*"]));
        assert_eq!(rows[1]["remaining"]["output_tokens"], 8);
        // A subject never seen reads as an empty counter.
        assert_eq!(rows[2]["used"]["tokens"], 0);
        assert!(subjects(&c, "").is_err());
        assert!(subjects(&c, "teem=x").is_err());
        assert!(subjects(&c, "team=a%2").is_err());
        assert!(subjects(&c, "team=a%20b").is_err(), "not a valid subject");
        assert_eq!(
            subjects(&c, "team=a%2Db").unwrap(),
            vec![(1, "a-b".to_owned())]
        );
    }
}
