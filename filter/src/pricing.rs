//! `pricing`: USD per million tokens per model pattern → `tollgate.cost.usd` and cost budgets.
//!
//! Usage has the semconv meaning (input INCLUDES cached tokens), so cost is
//! `(input − cache_read − cache_write) × input + cache_read × cache_read_price + cache_write × cache_write_price
//!  + output × output_price`; an absent cache price falls back to the input price.

use crate::call::Usage;
use crate::codec::json::strict::{float, object, opt, required, under, ConfigError};
use crate::codec::json::tape::Value;

/// Prices in USD per million tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: Option<f64>,
    pub cache_write: Option<f64>,
}

impl Price {
    fn read(v: Value) -> Result<Price, ConfigError> {
        let (mut input, mut output, mut cache_read, mut cache_write) = (None, None, None, None);
        object(
            v,
            &["input", "output", "cache_read", "cache_write"],
            &mut |i, v| {
                match i {
                    0 => input = Some(float(v)?),
                    1 => output = Some(float(v)?),
                    2 => cache_read = opt(v, float)?,
                    _ => cache_write = opt(v, float)?,
                }
                Ok(())
            },
        )?;
        Ok(Price {
            input: required(input, "input")?,
            output: required(output, "output")?,
            cache_read,
            cache_write,
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Pricing {
    /// (lowercase pattern, price), most specific first.
    entries: Vec<(String, Price)>,
}

/// Case-insensitive glob with `*` (any run of characters) — `gpt-4o*` covers dated snapshots. ASCII case is
/// folded byte by byte, without building lowercase copies: it runs for every price entry on every call.
pub fn model_matches(pattern: &str, model: &str) -> bool {
    let (p, m) = (pattern.as_bytes(), model.as_bytes());
    let mut parts = p.split(|&b| b == b'*').peekable();
    let first = parts.next().unwrap_or_default();
    if parts.peek().is_none() {
        return p.eq_ignore_ascii_case(m);
    }
    let Some(mut rest) = strip_prefix_ci(m, first) else {
        return false;
    };
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            return rest.len() >= part.len()
                && rest
                    .get(rest.len() - part.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(part));
        }
        match find_ci(rest, part) {
            Some(i) => rest = rest.get(i + part.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    true
}

fn strip_prefix_ci<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let (head, tail) = s.split_at_checked(prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then_some(tail)
}

/// The first position of `needle` in `hay`, ASCII case folded.
fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

/// Exact names beat patterns; among patterns, more literal characters beat fewer.
fn specificity(pattern: &str) -> (bool, usize) {
    (
        !pattern.contains('*'),
        pattern.chars().filter(|&c| c != '*').count(),
    )
}

/// USD → pico-USD, rounded up (never under-charge).
pub fn usd_to_pico(usd: f64) -> Option<u64> {
    if !usd.is_finite() || usd < 0.0 {
        return None;
    }
    let p = (usd * 1e12).ceil();
    if p >= u64::MAX as f64 {
        None
    } else {
        Some(p as u64)
    }
}

fn per_token_pico(usd_per_million: f64) -> u64 {
    // 1 USD per million tokens = 1e-6 USD = 1e6 pico-USD per token; rounded up.
    usd_to_pico(usd_per_million / 1e6).unwrap_or(u64::MAX)
}

impl Price {
    /// USD for a usage record.
    pub fn cost_usd(&self, u: &Usage) -> f64 {
        let input = u.input.unwrap_or(0);
        let read = u.cache_read.unwrap_or(0).min(input);
        let write = u.cache_write.unwrap_or(0).min(input - read);
        let plain = input - read - write;
        (plain as f64 * self.input
            + read as f64 * self.cache_read.unwrap_or(self.input)
            + write as f64 * self.cache_write.unwrap_or(self.input)
            + u.output.unwrap_or(0) as f64 * self.output)
            / 1e6
    }

    /// Worst-case pico-USD per input token (cache writes may cost more than plain input).
    pub fn input_pico_worst(&self) -> u64 {
        per_token_pico(self.input.max(self.cache_write.unwrap_or(0.0)))
    }

    pub fn output_pico(&self) -> u64 {
        per_token_pico(self.output)
    }

    /// Exact pico-USD for a usage record (for committing into cost budgets).
    pub fn cost_pico(&self, u: &Usage) -> u64 {
        usd_to_pico(self.cost_usd(u)).unwrap_or(u64::MAX)
    }
}

impl Pricing {
    /// Tests: `read` of a `json!` value.
    #[cfg(test)]
    pub fn parse(v: serde_json::Value) -> Result<Pricing, ConfigError> {
        crate::codec::json::strict::read_json(&v, Self::read)
    }

    /// The `pricing` key.
    pub fn read(v: Value) -> Result<Pricing, ConfigError> {
        let Some(members) = v.members() else {
            return Err(ConfigError {
                key: "pricing".into(),
                reason: "must be an object of model pattern → prices".into(),
            });
        };
        // In key order, a later duplicate winning: as the map serde_json read them into.
        let mut members: Vec<_> = members.collect();
        crate::sort::sort_by(&mut members, |a, b| a.0 < b.0);
        let mut entries = Vec::with_capacity(members.len());
        let mut members = members.into_iter().peekable();
        while let Some((pattern, v)) = members.next() {
            if members.peek().is_some_and(|next| next.0 == pattern) {
                continue;
            }
            let key = format!("pricing.{pattern}");
            let raw = Price::read(v).map_err(|e| under(e, &key))?;
            if pattern.is_empty() {
                return Err(ConfigError {
                    key,
                    reason: "model pattern must not be empty".into(),
                });
            }
            for (name, p) in [
                ("input", Some(raw.input)),
                ("output", Some(raw.output)),
                ("cache_read", raw.cache_read),
                ("cache_write", raw.cache_write),
            ] {
                if let Some(p) = p {
                    if !p.is_finite() || !(0.0..=1e6).contains(&p) {
                        return Err(ConfigError {
                            key: format!("{key}.{name}"),
                            reason: "must be a price in USD per million tokens (0 to 1000000)"
                                .into(),
                        });
                    }
                }
            }
            entries.push((pattern.to_ascii_lowercase(), raw));
        }
        crate::sort::sort_by(&mut entries, |a, b| specificity(&a.0) > specificity(&b.0));
        Ok(Pricing { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The highest of every price in the table: what a call of unknown model may cost at most (cost budgets
    /// reserve a request whose body was not read by it).
    pub fn worst(&self) -> Option<Price> {
        let max = |f: fn(&Price) -> Option<f64>| {
            self.entries
                .iter()
                .filter_map(|(_, p)| f(p))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        Some(Price {
            input: max(|p| Some(p.input))?,
            output: max(|p| Some(p.output))?,
            cache_read: max(|p| p.cache_read),
            cache_write: max(|p| p.cache_write),
        })
    }

    /// The most specific price whose pattern matches `model`.
    pub fn lookup(&self, model: &str) -> Option<&Price> {
        self.entries
            .iter()
            .find(|(p, _)| model_matches(p, model))
            .map(|(_, price)| price)
    }
}

/// `tollgate.cost.usd` of a finished call: priced by the request model, else the response model; None when
/// no price matches or no usage is known.
pub fn call_cost(pricing: &Pricing, call: &crate::call::Call) -> Option<f64> {
    if pricing.is_empty() || call.response.usage.is_empty() {
        return None;
    }
    let price = call
        .request_model()
        .and_then(|m| pricing.lookup(m))
        .or_else(|| {
            call.response
                .model
                .as_deref()
                .and_then(|m| pricing.lookup(m))
        })?;
    Some(price.cost_usd(&call.response.usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The allocating matcher `model_matches` replaced (lowercase copies, `str::find`).
    fn model_matches_reference(pattern: &str, model: &str) -> bool {
        let p = pattern.to_ascii_lowercase();
        let m = model.to_ascii_lowercase();
        let parts: Vec<&str> = p.split('*').collect();
        if parts.len() == 1 {
            return p == m;
        }
        let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
            return false;
        };
        let Some(mut rest) = m.strip_prefix(first) else {
            return false;
        };
        for part in &parts[1..parts.len() - 1] {
            match rest.find(part) {
                Some(i) => rest = &rest[i + part.len()..],
                None => return false,
            }
        }
        rest.len() >= last.len() && rest.ends_with(last)
    }

    #[test]
    fn worst_price_of_the_table() {
        let p = Pricing::parse(json!({
            "a*": {"input": 1.0, "output": 8.0},
            "b": {"input": 3.0, "output": 2.0, "cache_write": 5.0}
        }))
        .unwrap();
        let w = p.worst().unwrap();
        assert_eq!(
            (w.input, w.output, w.cache_read, w.cache_write),
            (3.0, 8.0, None, Some(5.0))
        );
        assert_eq!(Pricing::default().worst(), None);
    }

    #[test]
    fn glob_matches_the_reference_matcher() {
        let patterns = [
            "",
            "*",
            "**",
            "gpt-4o",
            "GPT-4o*",
            "*mini",
            "*sonnet*",
            "a*b*c",
            "a**c",
            "*a*a*",
            "é*",
            "*É*",
            "claude-3-5-*-v1:0",
            "x*",
            "*x",
            "ab*ba",
            "aba*aba",
            "*-v2*",
            "Ä*ß",
        ];
        let models = [
            "",
            "a",
            "gpt-4o",
            "GPT-4O-2024-08-06",
            "gpt-4o-mini",
            "anthropic.claude-3-5-sonnet-20240620-v1:0",
            "abc",
            "aXbXc",
            "ac",
            "aa",
            "aaa",
            "ababa",
            "aba",
            "abaaba",
            "é",
            "éa",
            "É",
            "xx",
            "ab-v2-ba",
            "äSS",
            "Äß",
            "claude-3-5-haiku-v1:0",
        ];
        for p in patterns {
            for m in models {
                assert_eq!(
                    model_matches(p, m),
                    model_matches_reference(p, m),
                    "{p:?} {m:?}"
                );
            }
        }
    }

    #[test]
    fn globs() {
        assert!(model_matches("gpt-4o*", "gpt-4o-2024-08-06"));
        assert!(model_matches("gpt-4o*", "GPT-4O"));
        assert!(!model_matches("gpt-4o*", "gpt-4"));
        assert!(model_matches(
            "*sonnet*",
            "anthropic.claude-3-5-sonnet-20240620-v1:0"
        ));
        assert!(model_matches("claude-*-haiku", "claude-3-5-haiku"));
        assert!(!model_matches("claude-*-haiku", "claude-3-5-haiku-x"));
        assert!(model_matches("a*a", "aa"));
        assert!(!model_matches("a*a", "a"));
        assert!(model_matches("*", ""));
        assert!(model_matches("exact", "EXACT"));
        assert!(!model_matches("exact", "exact2"));
    }

    #[test]
    fn most_specific_pattern_wins() {
        let p = Pricing::parse(json!({
            "gpt-4o*": {"input": 2.5, "output": 10},
            "gpt-4o-mini*": {"input": 0.15, "output": 0.6},
            "gpt-4o-mini-2024-07-18": {"input": 0.1, "output": 0.5},
            "*": {"input": 1, "output": 1}
        }))
        .unwrap();
        assert_eq!(p.lookup("gpt-4o-2024-08-06").unwrap().input, 2.5);
        assert_eq!(p.lookup("gpt-4o-mini-2024-09-01").unwrap().input, 0.15);
        assert_eq!(p.lookup("gpt-4o-mini-2024-07-18").unwrap().input, 0.1);
        assert_eq!(p.lookup("llama3").unwrap().input, 1.0);
        assert!(Pricing::parse(json!({"x": {"input": 1}})).is_err());
    }

    #[test]
    fn cost_charges_cached_tokens_at_their_price() {
        let price = Price {
            input: 2.5,
            output: 10.0,
            cache_read: Some(1.25),
            cache_write: Some(3.75),
        };
        let u = Usage {
            input: Some(1_000_000),
            output: Some(100_000),
            cache_read: Some(400_000),
            cache_write: Some(100_000),
            reasoning: None,
        };
        // 500k plain × 2.5 + 400k × 1.25 + 100k × 3.75 + 100k × 10, per million.
        let want = 1.25 + 0.5 + 0.375 + 1.0;
        assert!(
            (price.cost_usd(&u) - want).abs() < 1e-9,
            "{}",
            price.cost_usd(&u)
        );
        // Without cache prices cached tokens cost the input price.
        let plain = Price {
            cache_read: None,
            cache_write: None,
            ..price
        };
        assert!((plain.cost_usd(&u) - (2.5 + 1.0)).abs() < 1e-9);
        // Inconsistent reports (cache > input) never go negative.
        let odd = Usage {
            input: Some(10),
            cache_read: Some(50),
            ..Usage::default()
        };
        assert!(price.cost_usd(&odd) >= 0.0);
        assert_eq!(price.output_pico(), 10_000_000);
        assert_eq!(price.input_pico_worst(), 3_750_000);
        assert_eq!(
            price.cost_pico(&Usage {
                output: Some(1),
                ..Usage::default()
            }),
            10_000_000
        );
    }

    #[test]
    fn call_cost_uses_request_then_response_model() {
        let p = Pricing::parse(json!({"gpt-4o*": {"input": 2.5, "output": 10}})).unwrap();
        let mut call = crate::call::Call::default();
        assert_eq!(call_cost(&p, &call), None);
        call.response.usage = Usage {
            input: Some(1000),
            output: Some(100),
            ..Usage::default()
        };
        assert_eq!(call_cost(&p, &call), None, "no model");
        call.response.model = Some("gpt-4o-2024-08-06".into());
        assert!((call_cost(&p, &call).unwrap() - 0.0035).abs() < 1e-12);
        call.request.model = Some("claude".into());
        assert!(
            call_cost(&p, &call).is_some(),
            "falls back to the response model"
        );
        assert_eq!(call_cost(&Pricing::default(), &call), None);
    }

    #[test]
    fn errors_name_the_key() {
        let e = Pricing::parse(json!({"m": {"input": -1, "output": 1}})).unwrap_err();
        assert_eq!(e.key, "pricing.m.input");
        let e = Pricing::parse(json!({"m": {"input": 1, "output": 1, "typo": 1}})).unwrap_err();
        assert!(e.key.starts_with("pricing.m"), "{e:?}");
        assert!(Pricing::parse(json!([1])).is_err());
    }
}
