//! `budgets.inspect`: a GET of the configured path is answered here, from the budget store, and never
//! forwarded. Who may read and what the answer holds are `budget::inspect`'s.

use super::host::{Attribute, Counter, Host};
use crate::budget::inspect;
use crate::budget::ledger::{Clock, Ledger};
use crate::codec::headers::Headers;
use crate::config::Config;
use crate::reply::Reply;

fn json(status: u16, body: String) -> Reply {
    Reply {
        status,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

fn error(status: u16, message: &str) -> Reply {
    let body = crate::codec::json::write::Json::obj([(
        "error",
        crate::codec::json::write::Json::str(message),
    )]);
    json(status, body.text())
}

/// The answer when `headers` ask for the inspection route, None for any other request.
pub fn on_request_headers<H: Host>(host: &mut H, cfg: &Config, headers: &Headers) -> Option<Reply> {
    let b = cfg.budgets.as_ref()?;
    let ins = b.inspect.as_ref()?;
    let full = headers.get_str(":path")?;
    let (path, query) = full.split_once('?').unwrap_or((&full, ""));
    if path != ins.path {
        return None;
    }
    if headers.get(":method") != Some(b"GET") {
        return Some(error(405, "use GET"));
    }
    let peer = host
        .attribute(Attribute::PeerUriSan)
        .and_then(|v| String::from_utf8(v).ok());
    if !ins.allows(headers.get_str("authorization").as_deref(), peer.as_deref()) {
        host.count(Counter::BudgetInspectRefused, 1);
        return Some(error(403, "not allowed to read the budgets"));
    }
    let subjects = match inspect::subjects(b, query) {
        Ok(s) => s,
        Err(e) => return Some(error(400, &e)),
    };
    host.count(Counter::BudgetInspections, 1);
    let clock = Clock {
        now_s: host.now_ns() / 1_000_000_000,
        ttl_s: b.reservation_ttl_s,
    };
    let holder = host.store_holder();
    let ledger = Ledger {
        store: host.store(),
        holder,
        max_keys: b.max_tenants,
    };
    Some(json(200, inspect::view(b, &ledger, &subjects, &clock)))
}
