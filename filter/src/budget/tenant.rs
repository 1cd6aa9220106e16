//! Tenant identity: validation, API-key hashing, reading a JWT claim from the dynamic metadata Envoy's
//! `jwt_authn` filter writes (`payload_in_metadata`), and mapping the caller's mTLS workload identity (the
//! URI SAN of its client certificate, e.g. Istio's `spiffe://<trust domain>/ns/<namespace>/sa/<account>`)
//! to a tenant by patterns.

use crate::codec::proto::read_message;
use crate::pricing::model_matches;
use sha2::{Digest, Sha256};

/// Longest tenant value kept; longer values fall back to the default.
pub const MAX_TENANT_LEN: usize = 64;

/// 1–64 characters of `[A-Za-z0-9._:@-]`: safe in shared-data keys, span attributes, logs and descriptors.
pub fn valid_tenant(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= MAX_TENANT_LEN
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// The outcome of resolving a request's tenant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub tenant: String,
    /// The source produced a value that failed validation (counted; the default was used).
    pub invalid: bool,
}

/// Pick the tenant from a raw source value, falling back to `default`.
pub fn resolve(raw: Option<&str>, default: &str) -> Resolved {
    match raw.map(str::trim) {
        None | Some("") => Resolved {
            tenant: default.to_owned(),
            invalid: false,
        },
        Some(v) if valid_tenant(v) => Resolved {
            tenant: v.to_owned(),
            invalid: false,
        },
        Some(_) => Resolved {
            tenant: default.to_owned(),
            invalid: true,
        },
    }
}

/// `key:` + first 16 hex digits of SHA-256 of the API key. The key itself never leaves this function.
pub fn api_key_tenant(
    authorization: Option<&str>,
    x_api_key: Option<&str>,
    goog: Option<&str>,
) -> Option<String> {
    let key = authorization
        .and_then(|a| {
            let a = a.trim();
            a.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .and_then(|_| a.get(7..))
        })
        .or(x_api_key)
        .or(goog)
        .map(str::trim)
        .filter(|k| !k.is_empty())?;
    let digest = Sha256::digest(key.as_bytes());
    Some(format!(
        "key:{}",
        crate::codec::hex::hex(digest.get(..8).unwrap_or_default())
    ))
}

/// `match` → `tenant`: a peer identity that matches the glob (`*`: any run of characters, ASCII case
/// ignored, as for model names) is the tenant the template makes of it. The template may name the parts of
/// an Istio identity, `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`: `{trust_domain}`,
/// `{namespace}`, `{service_account}`; a rule whose template names them does not apply to other identities.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRule {
    pattern: String,
    tenant: String,
}

/// What is wrong with a rule's `tenant` template.
pub const BAD_TEMPLATE: &str = "must be characters of [A-Za-z0-9._:@-] and the placeholders {trust_domain}, {namespace}, {service_account}";

/// The trust domain, namespace and service account of `spiffe://<td>/ns/<namespace>/sa/<account>`.
fn spiffe_parts(identity: &str) -> Option<[&str; 3]> {
    let (td, rest) = identity.strip_prefix("spiffe://")?.split_once('/')?;
    let (ns, sa) = rest.strip_prefix("ns/")?.split_once('/')?;
    let sa = sa.strip_prefix("sa/")?;
    let parts = [td, ns, sa];
    (!sa.contains('/') && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// `template` with its placeholders filled from `identity`; None when the template names a part that the
/// identity does not have, or a brace is unmatched.
fn render(template: &str, identity: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some((text, tail)) = rest.split_once('{') {
        let (name, after) = tail.split_once('}')?;
        let i = match name {
            "trust_domain" => 0,
            "namespace" => 1,
            "service_account" => 2,
            _ => return None,
        };
        out.push_str(text);
        out.push_str(spiffe_parts(identity)?.get(i)?);
        rest = after;
    }
    out.push_str(rest);
    Some(out)
}

impl IdentityRule {
    /// A rule, or which of its fields is wrong (`match` or `tenant`).
    pub fn parse(pattern: &str, tenant: &str) -> Result<IdentityRule, &'static str> {
        if pattern.is_empty() {
            return Err("match");
        }
        // Every placeholder standing in as `x` must give a valid tenant: literal text that a tenant cannot
        // hold fails here, not on every call.
        if !render(tenant, "spiffe://x/ns/x/sa/x").is_some_and(|t| valid_tenant(&t)) {
            return Err("tenant");
        }
        Ok(IdentityRule {
            pattern: pattern.to_owned(),
            tenant: tenant.to_owned(),
        })
    }

    /// The tenant for `identity`, when the rule applies to it.
    pub fn apply(&self, identity: &str) -> Option<String> {
        if !model_matches(&self.pattern, identity) {
            return None;
        }
        render(&self.tenant, identity)
    }
}

/// The tenant of a caller known by its certificate's URI SAN (`identity`, as Envoy's
/// `connection.uri_san_peer_certificate` gives it): the first rule that matches. No identity (a plaintext
/// connection, a certificate without a URI SAN) is the default tenant; an identity that no rule maps to a
/// valid tenant is the default tenant too, flagged `invalid` so that it is counted.
pub fn resolve_peer(rules: &[IdentityRule], identity: Option<&[u8]>, default: &str) -> Resolved {
    let Some(identity) = identity.filter(|i| !i.is_empty()) else {
        return resolve(None, default);
    };
    let mapped = std::str::from_utf8(identity)
        .ok()
        .and_then(|id| rules.iter().find_map(|r| r.apply(id)));
    match mapped {
        Some(t) => resolve(Some(&t), default),
        None => Resolved {
            tenant: default.to_owned(),
            invalid: true,
        },
    }
}

/// google.protobuf.Value, only the parts a claim needs (`number_value = 2`, `string_value = 3`,
/// `bool_value = 4`; the others are skipped).
#[derive(Clone, Debug, Default, PartialEq)]
struct PbValue {
    number_value: Option<f64>,
    string_value: Option<String>,
    bool_value: Option<bool>,
}

fn read_value(body: &[u8], v: &mut PbValue) -> Option<()> {
    read_message(body, |n, f| {
        match n {
            2 => v.number_value = Some(f64::from_bits(f.fixed64()?)),
            3 => v.string_value = Some(std::str::from_utf8(f.len()?).ok()?.to_owned()),
            4 => v.bool_value = Some(f.varint()? != 0),
            _ => {}
        }
        Some(())
    })
}

/// The value of `claim` in a serialized `google.protobuf.Struct { map<string, Value> fields = 1; }`: outer
/// None when the message is malformed, inner None when the claim is absent (the last entry of a key wins).
fn struct_field(bytes: &[u8], claim: &str) -> Option<Option<PbValue>> {
    let mut found = None;
    read_message(bytes, |n, f| {
        if n != 1 {
            return Some(());
        }
        // A map entry: `key = 1`, `value = 2` (repeated occurrences merge).
        let (mut key, mut value) = ("", PbValue::default());
        read_message(f.len()?, |n, f| {
            match n {
                1 => key = std::str::from_utf8(f.len()?).ok()?,
                2 => read_value(f.len()?, &mut value)?,
                _ => {}
            }
            Some(())
        })?;
        if key == claim {
            found = Some(value);
        }
        Some(())
    })?;
    Some(found)
}

/// Claim `claim` of a JSON object as a tenant candidate (strings as is, integers in decimal; the last one
/// when the key repeats); None when `bytes` is not a JSON object.
fn claim_from_json(bytes: &[u8], claim: &str) -> Option<Option<String>> {
    let text = std::str::from_utf8(bytes).ok()?;
    crate::codec::json::tape::read(text, |obj| {
        let mut found = None;
        for (k, v) in obj.members()? {
            if k == claim {
                found = v
                    .str()
                    .map(std::borrow::Cow::into_owned)
                    .or_else(|| v.u64().map(|u| u.to_string()))
                    .or_else(|| v.i64().map(|i| i.to_string()));
            }
        }
        Some(found)
    })?
}

/// Envoy returns a map-valued property (a `google.protobuf.Struct` seen through CEL) in the proxy-wasm pairs
/// encoding: u32 count, count × (u32 key length, u32 value length), then each key and value NUL-terminated.
/// String values are their bytes; numbers are 8-byte little-endian doubles.
fn pairs(bytes: &[u8]) -> Option<Vec<(&[u8], &[u8])>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        usize::try_from(u32::from_le_bytes(b)).ok()
    };
    let n = u32_at(0)?;
    if n > 4096 {
        return None;
    }
    let mut sizes = Vec::with_capacity(n);
    for i in 0..n {
        let at = 4usize.checked_add(i.checked_mul(8)?)?;
        sizes.push((u32_at(at)?, u32_at(at.checked_add(4)?)?));
    }
    let mut pos = 4usize.checked_add(n.checked_mul(8)?)?;
    let mut out = Vec::with_capacity(n);
    for (k, v) in sizes {
        let key = bytes.get(pos..pos.checked_add(k)?)?;
        pos = pos.checked_add(k)?.checked_add(1)?;
        let value = bytes.get(pos..pos.checked_add(v)?)?;
        pos = pos.checked_add(v)?.checked_add(1)?;
        out.push((key, value));
    }
    (pos == bytes.len()).then_some(out)
}

/// A pairs-encoded value as a claim: printable UTF-8 as is, else an 8-byte double holding an integer.
fn claim_from_pair_value(v: &[u8]) -> Option<String> {
    if let Ok(s) = std::str::from_utf8(v) {
        if !s.is_empty() && s.chars().all(|c| !c.is_control()) {
            return Some(s.to_owned());
        }
    }
    let b: [u8; 8] = v.try_into().ok()?;
    let n = f64::from_le_bytes(b);
    (n.is_finite() && n.fract() == 0.0 && n.abs() < 9e15).then(|| format!("{}", n as i64))
}

/// A claim of the JWT payload as the host returned it for
/// `metadata.filter_metadata["envoy.filters.http.jwt_authn"][<metadata_key>]`: Envoy 1.40 returns the pairs
/// encoding (see `pairs`); a serialized `google.protobuf.Struct` and a JSON object are also accepted (other
/// hosts and versions).
pub fn claim_from_metadata(bytes: &[u8], claim: &str) -> Option<String> {
    if bytes.is_empty() {
        return None;
    }
    if let Some(p) = pairs(bytes) {
        return p
            .iter()
            .find(|(k, _)| *k == claim.as_bytes())
            .and_then(|(_, v)| claim_from_pair_value(v));
    }
    if bytes.first() == Some(&b'{') {
        if let Some(found) = claim_from_json(bytes, claim) {
            return found;
        }
    }
    let v = struct_field(bytes, claim)??;
    if let Some(s) = &v.string_value {
        return Some(s.clone());
    }
    if let Some(n) = v
        .number_value
        .filter(|n| n.is_finite() && n.fract() == 0.0 && n.abs() < 9e15)
    {
        return Some(format!("{}", n as i64));
    }
    let _ = v.bool_value;
    None
}

/// google.protobuf.Struct / Value as prost structs, for the tests to encode claims and check the reader.
#[cfg(test)]
mod pb {
    use std::collections::BTreeMap;

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PbStruct {
        #[prost(btree_map = "string, message", tag = "1")]
        pub fields: BTreeMap<String, PbValue>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PbValue {
        #[prost(double, optional, tag = "2")]
        pub number_value: Option<f64>,
        #[prost(string, optional, tag = "3")]
        pub string_value: Option<String>,
        #[prost(bool, optional, tag = "4")]
        pub bool_value: Option<bool>,
    }
}

#[cfg(test)]
mod tests {
    use super::pb::{PbStruct, PbValue};
    use super::*;
    use prost::Message;

    #[test]
    fn validation() {
        assert!(valid_tenant("team-a"));
        assert!(valid_tenant("user@example.com"));
        assert!(valid_tenant("key:0123abcd"));
        assert!(!valid_tenant(""));
        assert!(!valid_tenant("a b"));
        assert!(!valid_tenant("a/b"));
        assert!(!valid_tenant("é"));
        assert!(valid_tenant(&"x".repeat(64)));
        assert!(!valid_tenant(&"x".repeat(65)));
    }

    #[test]
    fn resolve_falls_back_and_flags() {
        assert_eq!(resolve(Some("team-a"), "anon").tenant, "team-a");
        assert_eq!(
            resolve(None, "anon"),
            Resolved {
                tenant: "anon".into(),
                invalid: false
            }
        );
        assert!(!resolve(Some(""), "anon").invalid);
        let bad = resolve(Some("team a/../x"), "anon");
        assert_eq!((bad.tenant.as_str(), bad.invalid), ("anon", true));
    }

    #[test]
    fn api_key_is_hashed_never_kept() {
        let t = api_key_tenant(Some("Bearer sk-secret-123"), None, None).unwrap();
        assert!(t.starts_with("key:") && t.len() == 4 + 16, "{t}");
        assert!(!t.contains("secret"));
        assert!(valid_tenant(&t));
        // Same key through another header gives the same tenant.
        assert_eq!(
            api_key_tenant(None, Some("sk-secret-123"), None).unwrap(),
            t
        );
        assert_eq!(
            api_key_tenant(None, None, Some("sk-secret-123")).unwrap(),
            t
        );
        assert_ne!(api_key_tenant(None, Some("sk-other"), None).unwrap(), t);
        assert_eq!(api_key_tenant(Some("Basic abc"), None, None), None);
        assert_eq!(api_key_tenant(None, Some("  "), None), None);
    }

    #[test]
    fn claim_from_protobuf_struct() {
        let mut s = PbStruct::default();
        s.fields.insert(
            "sub".into(),
            PbValue {
                string_value: Some("team-jwt".into()),
                ..Default::default()
            },
        );
        s.fields.insert(
            "uid".into(),
            PbValue {
                number_value: Some(42.0),
                ..Default::default()
            },
        );
        let bytes = s.encode_to_vec();
        assert_eq!(
            claim_from_metadata(&bytes, "sub").as_deref(),
            Some("team-jwt")
        );
        assert_eq!(claim_from_metadata(&bytes, "uid").as_deref(), Some("42"));
        assert_eq!(claim_from_metadata(&bytes, "missing"), None);
        assert_eq!(claim_from_metadata(b"\xff\xff\xff", "sub"), None);
        assert_eq!(claim_from_metadata(b"", "sub"), None);
        // A JSON object: scalar claims, integers in decimal, the last of a repeated key.
        let json = br#"{"sub":"team-a","n":7,"neg":-3,"f":1.5,"o":{},"d":"x","d":"team-\u0062"}"#;
        let claim = |c| claim_from_metadata(json, c);
        assert_eq!(claim("sub").as_deref(), Some("team-a"));
        assert_eq!(claim("n").as_deref(), Some("7"));
        assert_eq!(claim("neg").as_deref(), Some("-3"));
        assert_eq!(
            (claim("f"), claim("o"), claim("missing")),
            (None, None, None)
        );
        assert_eq!(claim("d").as_deref(), Some("team-b"));
    }

    /// The hand-written Struct reader accepts and rejects what prost does and finds the same value: every
    /// truncation and single-byte corruption of an encoded Struct, and duplicate keys (the last wins).
    #[test]
    fn struct_reader_agrees_with_prost() {
        let mut s = PbStruct::default();
        for (k, v) in [
            (
                "sub",
                PbValue {
                    string_value: Some("team-jwt".into()),
                    ..Default::default()
                },
            ),
            (
                "uid",
                PbValue {
                    number_value: Some(42.0),
                    bool_value: Some(true),
                    ..Default::default()
                },
            ),
            ("", PbValue::default()),
        ] {
            s.fields.insert(k.into(), v);
        }
        let golden = s.encode_to_vec();
        let dup = [
            golden.clone(),
            golden.get(..golden.len() / 2).unwrap().to_vec(),
        ]
        .concat();
        let mut inputs = vec![golden.clone(), dup, vec![]];
        for i in 0..golden.len() {
            inputs.push(golden[..i].to_vec());
            for x in [
                0x00, 0x01, 0x0a, 0x11, 0x12, 0x1a, 0x1b, 0x20, 0x7f, 0x80, 0xff,
            ] {
                let mut m = golden.clone();
                m[i] = x;
                inputs.push(m);
            }
        }
        let mut agreed_ok = 0;
        for b in &inputs {
            let theirs = PbStruct::decode(b.as_slice()).ok();
            for claim in ["sub", "uid", "", "missing"] {
                let ours = struct_field(b, claim);
                let expect = theirs.as_ref().map(|t| {
                    t.fields.get(claim).map(|v| super::PbValue {
                        number_value: v.number_value,
                        string_value: v.string_value.clone(),
                        bool_value: v.bool_value,
                    })
                });
                // NaN never equals itself: compare the bits.
                let bits = |v: &Option<Option<super::PbValue>>| {
                    format!(
                        "{:?}",
                        v.as_ref().map(|v| v.as_ref().map(|v| (
                            v.number_value.map(f64::to_bits),
                            &v.string_value,
                            v.bool_value
                        )))
                    )
                };
                assert_eq!(bits(&ours), bits(&expect), "{b:02x?} {claim}");
                agreed_ok += usize::from(ours.is_some());
            }
        }
        assert!(agreed_ok > 40);
    }

    #[test]
    fn claim_from_envoy_pairs() {
        // What Envoy 1.40 returned for a jwt_authn payload {"iss","sub","exp"} (captured from a real run).
        let exp = 1_795_000_000f64.to_le_bytes();
        let mut b = Vec::new();
        b.extend_from_slice(&3u32.to_le_bytes());
        for (k, v) in [(3u32, 13u32), (3, 8), (3, 8)] {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        for (k, v) in [
            (&b"iss"[..], &b"tollgate-test"[..]),
            (b"sub", b"team-jwt"),
            (b"exp", &exp[..]),
        ] {
            b.extend_from_slice(k);
            b.push(0);
            b.extend_from_slice(v);
            b.push(0);
        }
        assert_eq!(claim_from_metadata(&b, "sub").as_deref(), Some("team-jwt"));
        assert_eq!(
            claim_from_metadata(&b, "iss").as_deref(),
            Some("tollgate-test")
        );
        assert_eq!(
            claim_from_metadata(&b, "exp").as_deref(),
            Some("1795000000")
        );
        assert_eq!(claim_from_metadata(&b, "aud"), None);
        // Truncated encodings are rejected, never read out of bounds.
        for cut in 0..b.len() {
            let _ = claim_from_metadata(b.get(..cut).unwrap(), "sub");
        }
    }

    #[test]
    fn peer_identity_templates() {
        let id = "spiffe://cluster.local/ns/team-a/sa/checkout";
        let tenant = |t| IdentityRule::parse("*", t).unwrap().apply(id);
        assert_eq!(tenant("{namespace}").as_deref(), Some("team-a"));
        assert_eq!(
            tenant("{namespace}:{service_account}").as_deref(),
            Some("team-a:checkout")
        );
        assert_eq!(
            tenant("{trust_domain}:{namespace}:{service_account}").as_deref(),
            Some("cluster.local:team-a:checkout")
        );
        let ns = IdentityRule::parse("*", "{namespace}").unwrap();
        for other in [
            "spiffe://cluster.local/ns/team-a/sa",
            "spiffe://cluster.local/ns/team-a/sa/checkout/extra",
            "spiffe://cluster.local/ns//sa/checkout",
            "spiffe:///ns/team-a/sa/checkout",
            "spiffe://cluster.local/namespace/team-a/sa/checkout",
            "https://cluster.local/ns/team-a/sa/checkout",
            "spiffe:/cluster.local/ns/team-a/sa/checkout",
            "",
        ] {
            assert_eq!(ns.apply(other), None, "{other}");
        }
    }

    #[test]
    fn peer_identity_patterns() {
        let rule = |m: &str, t: &str| IdentityRule::parse(m, t).unwrap();
        // Several namespaces, one team; a fixed trust domain.
        let payments = rule("spiffe://cluster.local/ns/payments-*/sa/*", "payments");
        for id in [
            "spiffe://cluster.local/ns/payments-eu/sa/default",
            "spiffe://cluster.local/ns/payments-us/sa/api",
        ] {
            assert_eq!(payments.apply(id).as_deref(), Some("payments"), "{id}");
        }
        for other in [
            "spiffe://cluster.local/ns/billing/sa/default",
            "spiffe://other.domain/ns/payments-eu/sa/default",
        ] {
            assert_eq!(payments.apply(other), None, "{other}");
        }
        let both = rule("spiffe://cluster.local/*", "{service_account}@{namespace}");
        assert_eq!(
            both.apply("spiffe://cluster.local/ns/red/sa/cron")
                .as_deref(),
            Some("cron@red")
        );
        // A template naming identity parts does not apply to an identity that lacks them.
        assert_eq!(both.apply("spiffe://cluster.local/workload/cron"), None);
        // A fixed tenant applies to any identity the glob matches.
        let urn = rule("urn:team:*", "t-urn");
        assert_eq!(urn.apply("URN:TEAM:x").as_deref(), Some("t-urn"));
        // No input panics.
        for id in [
            "/",
            "spiffe://",
            "spiffe:///ns//sa/",
            "{",
            "*",
            "\u{e9}/\u{e9}",
        ] {
            let _ = (both.apply(id), urn.apply(id), payments.apply(id));
        }
    }

    #[test]
    fn peer_identity_rule_errors() {
        let err = |m: &str, t: &str| IdentityRule::parse(m, t).unwrap_err();
        assert_eq!(err("", "t"), "match");
        assert_eq!(err("*", "{pod}"), "tenant");
        assert_eq!(err("*", "{namespace}/b"), "tenant");
        assert_eq!(err("*", ""), "tenant");
        assert_eq!(err("*", "{namespace"), "tenant");
        assert_eq!(err("*", "{}"), "tenant");
        assert_eq!(err("*", &"t".repeat(65)), "tenant");
    }

    #[test]
    fn resolve_peer_identity() {
        let rules = [
            IdentityRule::parse("spiffe://cluster.local/ns/payments-*/sa/*", "payments").unwrap(),
            IdentityRule::parse("*", "{namespace}").unwrap(),
        ];
        let r = |id: Option<&[u8]>| resolve_peer(&rules, id, "anonymous");
        // The first matching rule wins.
        let t = r(Some(b"spiffe://cluster.local/ns/payments-eu/sa/api"));
        assert_eq!((t.tenant.as_str(), t.invalid), ("payments", false));
        let t = r(Some(b"spiffe://cluster.local/ns/team-a/sa/api"));
        assert_eq!((t.tenant.as_str(), t.invalid), ("team-a", false));
        // No certificate, or one without a URI SAN: the default, not counted.
        for none in [None, Some(&b""[..])] {
            assert_eq!(r(none), resolve(None, "anonymous"));
        }
        // An identity no rule maps, a mapped value that is not a valid tenant, bytes that are not UTF-8:
        // the default, counted.
        let long = format!("spiffe://cluster.local/ns/{}/sa/x", "n".repeat(65));
        for bad in [
            &b"urn:team-a"[..],
            long.as_bytes(),
            b"spiffe://c/ns/\xff/sa/x",
        ] {
            let t = r(Some(bad));
            assert_eq!((t.tenant.as_str(), t.invalid), ("anonymous", true));
        }
    }

    #[test]
    fn claim_from_json_object() {
        assert_eq!(
            claim_from_metadata(br#"{"sub":"t1","n":7,"o":{}}"#, "sub").as_deref(),
            Some("t1")
        );
        assert_eq!(
            claim_from_metadata(br#"{"n":7}"#, "n").as_deref(),
            Some("7")
        );
        assert_eq!(claim_from_metadata(br#"{"o":{}}"#, "o"), None);
    }
}
