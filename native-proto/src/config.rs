//! The prototype's filter_config: a flat JSON object, parsed without dependencies. Errors name the key.
//!
//! `{"ops": "headers,bodies,...", "budget": 50, "export_interval_ms": 300, "export_cluster": "collector",
//! "callout_cluster": "sidecar"}`. An empty string or `{}` selects no operation: the module then only
//! crosses the ABI boundary for each hook (the floor's "no-op" build).

pub const HEADERS: u32 = 1; // read the request and response header maps whole
pub const BODIES: u32 = 1 << 1; // hold the request until its body is whole and read it; read every response chunk
pub const TRACEPARENT: u32 = 1 << 2; // add one request header
pub const MUTATE: u32 = 1 << 3; // add, replace and remove a request header
pub const DENY: u32 = 1 << 4; // `x-proto-deny` answers 429 locally
pub const REWRITE: u32 = 1 << 5; // `x-proto-rewrite` replaces the whole request body
pub const CALLOUT: u32 = 1 << 6; // `x-proto-callout` makes an HTTP callout before the request continues
pub const EXPORT: u32 = 1 << 7; // a timer thread + the config scheduler + config-level callouts
pub const COUNTERS: u32 = 1 << 8; // Envoy counters
pub const BUDGET: u32 = 1 << 9; // a process-wide budget: the `budget` first requests pass, the rest get 429
pub const THREADS: u32 = 1 << 10; // response headers naming the worker, process and thread
pub const ATTRS: u32 = 1 << 11; // connection and request attributes copied into request headers
pub const PANIC: u32 = 1 << 12; // `x-proto-panic: guarded|unguarded` panics in the request headers hook
pub const ECHO_CONFIG: u32 = 1 << 13; // the filter_config bytes, as received, in a request header
pub const SCHEDULE: u32 = 1 << 14; // `x-proto-schedule`: resume the request from another thread
pub const COUNTER_PLAIN: u32 = 1 << 15; // one unlabeled counter increment per request (measure.py)

const OPS: &[(&str, u32)] = &[
    ("headers", HEADERS),
    ("bodies", BODIES),
    ("traceparent", TRACEPARENT),
    ("mutate", MUTATE),
    ("deny", DENY),
    ("rewrite", REWRITE),
    ("callout", CALLOUT),
    ("export", EXPORT),
    ("counters", COUNTERS),
    ("budget", BUDGET),
    ("threads", THREADS),
    ("attrs", ATTRS),
    ("panic", PANIC),
    ("echo_config", ECHO_CONFIG),
    ("schedule", SCHEDULE),
    ("counter_plain", COUNTER_PLAIN),
];

#[derive(Debug, Default)]
pub struct Settings {
    pub ops: u32,
    pub budget: u64,
    pub export_interval_ms: u64,
    pub export_cluster: String,
    pub callout_cluster: String,
}

pub fn parse(raw: &[u8]) -> Result<Settings, String> {
    let mut s = Settings {
        export_interval_ms: 500,
        export_cluster: "collector".into(),
        callout_cluster: "sidecar".into(),
        ..Settings::default()
    };
    let text = std::str::from_utf8(raw).map_err(|_| "filter_config: not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Ok(s);
    }
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    p.ws();
    p.expect(b'{')?;
    p.ws();
    if p.peek() == Some(b'}') {
        return Ok(s);
    }
    loop {
        p.ws();
        let key = p.string()?;
        p.ws();
        p.expect(b':')?;
        p.ws();
        match key.as_str() {
            "ops" => {
                for op in p
                    .string()?
                    .split(',')
                    .map(str::trim)
                    .filter(|o| !o.is_empty())
                {
                    let bit = OPS
                        .iter()
                        .find(|(name, _)| *name == op)
                        .map(|(_, b)| *b)
                        .ok_or_else(|| format!("filter_config.ops: unknown operation {op:?}"))?;
                    s.ops |= bit;
                }
            }
            "budget" => {
                s.budget = p
                    .number()
                    .map_err(|e| format!("filter_config.budget: {e}"))?
            }
            "export_interval_ms" => {
                s.export_interval_ms = p
                    .number()
                    .map_err(|e| format!("filter_config.export_interval_ms: {e}"))?
            }
            "export_cluster" => s.export_cluster = p.string()?,
            "callout_cluster" => s.callout_cluster = p.string()?,
            other => return Err(format!("filter_config: unknown key {other:?}")),
        }
        p.ws();
        match p.next() {
            Some(b',') => continue,
            Some(b'}') => break,
            _ => return Err("filter_config: expected ',' or '}'".into()),
        }
    }
    Ok(s)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let c = self.peek();
        self.i += 1;
        c
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\n' | b'\r' | b'\t')) {
            self.i += 1;
        }
    }
    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.next() == Some(c) {
            Ok(())
        } else {
            Err(format!(
                "filter_config: expected {:?} at byte {}",
                c as char,
                self.i.saturating_sub(1)
            ))
        }
    }
    /// A JSON string without escapes (the prototype's values never need them).
    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let start = self.i;
        while let Some(c) = self.next() {
            match c {
                b'"' => return Ok(String::from_utf8_lossy(&self.b[start..self.i - 1]).into_owned()),
                b'\\' => return Err("filter_config: escapes are not supported".into()),
                _ => {}
            }
        }
        Err("filter_config: unterminated string".into())
    }
    /// A non-negative number; a fraction (a protobuf Struct renders numbers as doubles) must be zero.
    fn number(&mut self) -> Result<u64, String> {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9' | b'.')) {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.b[start..self.i]).unwrap_or("");
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty() || !frac.bytes().all(|c| c == b'0') {
            return Err(format!("expected a non-negative integer, got {t:?}"));
        }
        int.parse()
            .map_err(|_| format!("expected a non-negative integer, got {t:?}"))
    }
}
