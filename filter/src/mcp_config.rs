//! The `mcp` and `realtime` sections of the plugin JSON: which hosts are MCP servers, the tool policy per
//! tenant, tool-call budgets per window, and how realtime WebSocket sessions are read. Every error names
//! its key (`mcp.tenants.team-a.deny[2]`).

use crate::budget::calendar::Window;
use crate::budget::config::parse_window;
use crate::budget::ledger::{counter_key, CounterSpec};
use crate::budget::Limits;
use crate::codec::json::strict::ConfigError;
use crate::codec::json::strict::{
    boolean, err, items, object, opt, required, string, strings, uint, under,
};
use crate::codec::json::tape::Value;
use crate::providers::mcp::{PolicyError, ToolPolicy};
use std::collections::BTreeMap;

/// A host (and path prefix) whose POSTs are MCP Streamable HTTP traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpServer {
    /// Lowercase, without port.
    pub host: String,
    pub path_prefix: String,
}

/// A limit on `tools/call` requests per tenant and window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCallRule {
    /// None: every tenant, each with its own counter.
    pub tenant: Option<String>,
    pub window_s: u64,
    pub calls: u64,
    /// `mcp.tool_calls[i]`, for spans and logs.
    pub name: String,
}

impl ToolCallRule {
    /// The ledger counter of this rule for `tenant` (tool calls are counted as tokens of 1 each).
    pub fn counter(&self, index: usize, tenant: &str) -> CounterSpec {
        let fingerprint = format!("mcp-calls.{}.{}.{}", self.window_s, self.calls, index);
        CounterSpec {
            rule: index,
            key: counter_key(&fingerprint, tenant),
            overflow_key: counter_key(&fingerprint, tenant),
            window: Window::Fixed(self.window_s),
            limits: Limits {
                tokens: Some(self.calls),
                ..Limits::default()
            },
            subject: tenant.to_string(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct McpConfig {
    pub servers: Vec<McpServer>,
    /// The policy of tenants without their own.
    pub tools: ToolPolicy,
    /// A tenant's own policy replaces `tools`.
    pub tenants: BTreeMap<String, ToolPolicy>,
    pub tool_calls: Vec<ToolCallRule>,
}

impl McpConfig {
    /// The server rule `host` and `path` fall under.
    pub fn server(&self, host: &str, path: &str) -> Option<&McpServer> {
        self.servers
            .iter()
            .find(|s| s.host.eq_ignore_ascii_case(host) && path.starts_with(s.path_prefix.as_str()))
    }

    pub fn policy(&self, tenant: Option<&str>) -> &ToolPolicy {
        tenant
            .and_then(|t| self.tenants.get(t))
            .unwrap_or(&self.tools)
    }

    /// Whether anything here can refuse a request of `tenant` (then its headers are held).
    pub fn may_refuse(&self, tenant: Option<&str>) -> bool {
        *self.policy(tenant) != ToolPolicy::default() || !self.tool_calls.is_empty()
    }

    /// The tool-call counters that apply to `tenant`: its named rules, else the rules for every tenant.
    pub fn counters(&self, tenant: &str) -> Vec<CounterSpec> {
        let named = self
            .tool_calls
            .iter()
            .any(|r| r.tenant.as_deref() == Some(tenant));
        self.tool_calls
            .iter()
            .enumerate()
            .filter(|(_, r)| match r.tenant.as_deref() {
                Some(t) => t == tenant,
                None => !named,
            })
            .map(|(i, r)| r.counter(i, tenant))
            .collect()
    }

    /// The `mcp` key.
    pub fn read(v: Value) -> Result<McpConfig, ConfigError> {
        let mut c = McpConfig::default();
        object(
            v,
            &["servers", "tools", "tenants", "tool_calls"],
            &mut |i, v| {
                match i {
                    0 => {
                        let servers = &mut c.servers;
                        items(v, &mut |v| {
                            servers.push(read_server(v)?);
                            Ok(())
                        })?;
                    }
                    1 => c.tools = read_policy(v)?,
                    2 => {
                        let members = v
                            .members()
                            .ok_or_else(|| err("", "must be an object of tenants"))?;
                        for (tenant, p) in members {
                            if !crate::budget::tenant::valid_tenant(&tenant) {
                                return Err(err(tenant.as_ref(), "is not a valid tenant name"));
                            }
                            let policy = read_policy(p).map_err(|e| under(e, &tenant))?;
                            c.tenants.insert(tenant.into_owned(), policy);
                        }
                    }
                    _ => {
                        let rules = &mut c.tool_calls;
                        items(v, &mut |v| {
                            let name = format!("mcp.tool_calls[{}]", rules.len());
                            rules.push(read_rule(v, name)?);
                            Ok(())
                        })?;
                    }
                }
                Ok(())
            },
        )
        .map_err(|e| under(e, "mcp"))?;
        Ok(c)
    }
}

fn read_server(v: Value) -> Result<McpServer, ConfigError> {
    let (mut host, mut path_prefix) = (None, String::new());
    object(v, &["host", "path_prefix"], &mut |i, v| {
        match i {
            0 => host = Some(string(v)?),
            _ => path_prefix = string(v)?,
        }
        Ok(())
    })?;
    let host = required(host, "host")?;
    if host.is_empty() || host.contains(['/', ' ', ':']) {
        return Err(err(
            "host",
            "must be a host name without scheme, path or port",
        ));
    }
    if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
        return Err(err("path_prefix", "must start with '/'"));
    }
    Ok(McpServer {
        host: host.to_ascii_lowercase(),
        path_prefix,
    })
}

fn read_policy(v: Value) -> Result<ToolPolicy, ConfigError> {
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    object(v, &["allow", "deny"], &mut |i, v| {
        match i {
            0 => allow = strings(v)?,
            _ => deny = strings(v)?,
        }
        Ok(())
    })?;
    ToolPolicy::new(allow, deny).map_err(|PolicyError::Empty { list, index }| {
        err(format!("{list}[{index}]"), "must not be empty")
    })
}

fn read_rule(v: Value, name: String) -> Result<ToolCallRule, ConfigError> {
    let (mut tenant, mut window, mut calls) = (None, None, None);
    object(v, &["tenant", "window", "calls"], &mut |i, v| {
        match i {
            0 => tenant = Some(string(v)?),
            1 => window = Some(parse_window(v).map_err(|reason| err("", reason))?),
            _ => calls = Some(uint(v)?),
        }
        Ok(())
    })?;
    let tenant = required(tenant, "tenant")?;
    if tenant != "*" && !crate::budget::tenant::valid_tenant(&tenant) {
        return Err(err("tenant", "must be `*` or a valid tenant name"));
    }
    Ok(ToolCallRule {
        tenant: (tenant != "*").then_some(tenant),
        window_s: required(window, "window")?,
        calls: required(calls, "calls")?,
        name,
    })
}

/// The `realtime` key: WebSocket sessions of OpenAI Realtime (and Azure's) and Gemini Live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealtimeConfig {
    /// Read realtime sessions at all (their upgrade requests are recognised by path).
    pub enabled: bool,
    /// Remove `permessage-deflate` from the client's `sec-websocket-extensions` offer, so that every
    /// frame is readable without inflating and a refused client message can be dropped (docs/mcp-and-realtime.md).
    pub strip_deflate: bool,
    /// Largest message (after reassembly of its fragments) that is read; larger ones pass unread, counted.
    pub max_message: usize,
}

impl Default for RealtimeConfig {
    fn default() -> Self {
        RealtimeConfig {
            enabled: true,
            strip_deflate: true,
            max_message: 1 << 20,
        }
    }
}

impl RealtimeConfig {
    pub fn read(v: Value) -> Result<RealtimeConfig, ConfigError> {
        let mut c = RealtimeConfig::default();
        let mut max = None;
        object(
            v,
            &["enabled", "strip_deflate", "max_message"],
            &mut |i, v| {
                match i {
                    0 => c.enabled = boolean(v)?,
                    1 => c.strip_deflate = boolean(v)?,
                    _ => max = opt(v, uint)?,
                }
                Ok(())
            },
        )
        .map_err(|e| under(e, "realtime"))?;
        if let Some(m) = max {
            if !(1024..=64 << 20).contains(&m) {
                return Err(err(
                    "realtime.max_message",
                    "must be between 1024 and 67108864",
                ));
            }
            c.max_message =
                usize::try_from(m).map_err(|_| err("realtime.max_message", "too large"))?;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn key_of(json: &str) -> String {
        Config::parse(json.as_bytes()).unwrap_err().key
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            key_of(r#"{"mcp":{"servers":[{"host":"a/b"}]}}"#),
            "mcp.servers[0].host"
        );
        assert_eq!(
            key_of(r#"{"mcp":{"servers":[{"path_prefix":"/"}]}}"#),
            "mcp.servers[0]"
        );
        assert_eq!(
            key_of(r#"{"mcp":{"tools":{"deny":["a",""]}}}"#),
            "mcp.tools.deny[1]"
        );
        assert_eq!(
            key_of(r#"{"mcp":{"tenants":{"t1":{"allow":[""]}}}}"#),
            "mcp.tenants.t1.allow[0]"
        );
        assert_eq!(
            key_of(r#"{"mcp":{"tenants":{"t 1":{}}}}"#),
            "mcp.tenants.t 1"
        );
        assert_eq!(
            key_of(r#"{"mcp":{"tool_calls":[{"tenant":"*","window":"1x","calls":3}]}}"#),
            "mcp.tool_calls[0].window"
        );
        assert_eq!(
            key_of(r#"{"mcp":{"tool_calls":[{"tenant":"*","window":"1h"}]}}"#),
            "mcp.tool_calls[0]"
        );
        assert_eq!(key_of(r#"{"mcp":{"toolz":1}}"#), "mcp.toolz");
        assert_eq!(
            key_of(r#"{"realtime":{"max_message":5}}"#),
            "realtime.max_message"
        );
        assert_eq!(key_of(r#"{"realtime":{"strip":true}}"#), "realtime.strip");
        assert_eq!(
            key_of(r#"{"routes":[{"host":"h","api":"mcp","provider":"p","path_prefix":"x"}]}"#),
            "routes[0].path_prefix"
        );
    }

    #[test]
    fn servers_policies_and_counters() {
        let c = Config::parse(
            br#"{"mcp":{"servers":[{"host":"Tools.Internal","path_prefix":"/mcp"}],
                "tools":{"deny":["delete_*"]},"tenants":{"ops":{"allow":["*"]}},
                "tool_calls":[{"tenant":"*","window":"1h","calls":2},{"tenant":"ops","window":"1m","calls":9}]},
               "routes":[{"host":"other.mcp","api":"mcp","provider":"x"}]}"#,
        )
        .unwrap();
        let m = &c.mcp;
        assert!(m.server("tools.internal", "/mcp/x").is_some());
        assert!(m.server("tools.internal", "/v1").is_none());
        assert!(
            m.server("other.mcp", "/anything").is_some(),
            "routes[].api = mcp"
        );
        assert!(c.routes.is_empty());
        use crate::providers::mcp::ToolDecision;
        assert_eq!(
            m.policy(Some("dev")).check("delete_repo"),
            ToolDecision::Denied { index: 0 }
        );
        assert_eq!(
            m.policy(Some("ops")).check("delete_repo"),
            ToolDecision::Allowed
        );
        assert_eq!(m.counters("dev").len(), 1);
        assert_eq!(m.counters("ops").len(), 1);
        assert_eq!(
            m.counters("ops")[0].window,
            crate::budget::calendar::Window::Fixed(60)
        );
        assert!(m.may_refuse(Some("dev")));
        assert!(c.realtime.enabled && c.realtime.strip_deflate);
    }
}
