//! The unit tests' Envoy: the same functions as `envoy.rs`, over a recording fake kept per test thread.
//! `fake::*` reads what the code under test did.

#![allow(dead_code)]

use crate::abi::{FilterConfigEnvoyPtr, FilterEnvoyPtr};
use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stream(pub FilterEnvoyPtr);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfigHandle(pub FilterConfigEnvoyPtr);

type Pairs = Vec<(String, Vec<u8>)>;

#[derive(Default)]
struct Fake {
    logs: Vec<(u32, String)>,
    counter_names: Vec<String>,
    counters: HashMap<String, u64>,
    gauge_names: Vec<String>,
    gauges: HashMap<String, u64>,
    /// (cluster, headers, body, timeout, id)
    config_streams: Vec<(String, Pairs, Vec<u8>, u64, u64)>,
    callouts: Vec<(String, Pairs, Vec<u8>, u64, u64)>,
    /// Request (0) and response (2) header maps of the one fake stream, by header type.
    headers: HashMap<u32, Pairs>,
    bodies: HashMap<u32, Vec<u8>>,
    replies: Vec<(u32, Pairs, Vec<u8>)>,
    continued: u32,
    commits: Vec<u64>,
    next_id: u64,
    concurrency: u32,
}

thread_local! {
    static FAKE: RefCell<Fake> = RefCell::new(Fake { concurrency: 2, ..Fake::default() });
}

fn with<T>(f: impl FnOnce(&mut Fake) -> T) -> T {
    FAKE.with(|x| f(&mut x.borrow_mut()))
}

fn pairs(headers: &[(&str, &[u8])]) -> Pairs {
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_vec()))
        .collect()
}

pub fn log(level: u32, msg: &str) {
    let _ = FAKE.try_with(|x| {
        if let Ok(mut f) = x.try_borrow_mut() {
            f.logs.push((level, msg.to_string()));
        }
    });
}

pub fn log_enabled(_level: u32) -> bool {
    true
}

pub fn concurrency() -> u32 {
    with(|f| f.concurrency)
}

impl Stream {
    pub fn worker_index(self) -> u32 {
        self.0 as usize as u32
    }
    pub fn header<'a>(self, ty: u32, key: &str) -> Option<&'a [u8]> {
        with(|f| {
            f.headers
                .get(&ty)
                .and_then(|h| h.iter().find(|(k, _)| k == key))
                .map(|(_, v)| &*Box::leak(v.clone().into_boxed_slice()))
        })
    }
    pub fn for_each_header(self, ty: u32, mut visit: impl FnMut(&[u8], &[u8])) -> usize {
        let h = with(|f| f.headers.get(&ty).cloned().unwrap_or_default());
        for (k, v) in &h {
            visit(k.as_bytes(), v);
        }
        h.len()
    }
    pub fn headers<'a>(self, ty: u32) -> Vec<(&'a [u8], &'a [u8])> {
        let h = with(|f| f.headers.get(&ty).cloned().unwrap_or_default());
        h.into_iter()
            .map(|(k, v)| {
                (
                    &*Box::leak(k.into_bytes().into_boxed_slice()),
                    &*Box::leak(v.into_boxed_slice()),
                )
            })
            .collect()
    }
    pub fn add_header(self, ty: u32, key: &str, value: &[u8]) -> bool {
        with(|f| {
            f.headers
                .entry(ty)
                .or_default()
                .push((key.to_string(), value.to_vec()))
        });
        true
    }
    pub fn set_header(self, ty: u32, key: &str, value: &[u8]) -> bool {
        self.remove_header(ty, key);
        self.add_header(ty, key, value)
    }
    pub fn remove_header(self, ty: u32, key: &str) -> bool {
        with(|f| f.headers.entry(ty).or_default().retain(|(k, _)| k != key));
        true
    }
    pub fn for_each_body_slice(self, ty: u32, mut visit: impl FnMut(&[u8])) -> usize {
        let b = with(|f| f.bodies.get(&ty).cloned().unwrap_or_default());
        if !b.is_empty() {
            visit(&b);
        }
        b.len()
    }
    pub fn body_size(self, ty: u32) -> usize {
        with(|f| f.bodies.get(&ty).map_or(0, Vec::len))
    }
    /// As Envoy: false for a body that does not exist (nothing buffered; no chunk in this hook).
    pub fn drain_body(self, ty: u32, n: usize) -> bool {
        with(|f| match f.bodies.get_mut(&ty) {
            Some(b) => {
                let n = n.min(b.len());
                b.drain(..n);
                true
            }
            None => false,
        })
    }
    pub fn append_body(self, ty: u32, data: &[u8]) -> bool {
        with(|f| f.bodies.entry(ty).or_default().extend_from_slice(data));
        true
    }
    pub fn send_response(
        self,
        status: u32,
        headers: &[(&str, &[u8])],
        body: &[u8],
        _details: &str,
    ) {
        with(|f| f.replies.push((status, pairs(headers), body.to_vec())));
    }
    pub fn continue_decoding(self) {
        with(|f| f.continued += 1);
    }
    pub fn continue_encoding(self) {}
    pub fn attr_string<'a>(self, _id: u32) -> Option<&'a [u8]> {
        None
    }
    pub fn attr_int(self, _id: u32) -> Option<u64> {
        None
    }
    pub fn increment_counter(self, _id: usize, _value: u64) -> u32 {
        0
    }
    pub fn start_http_stream(
        self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        _end_stream: bool,
        timeout_ms: u64,
    ) -> (u32, u64) {
        with(|f| {
            f.next_id += 1;
            let id = f.next_id;
            f.callouts.push((
                cluster.to_string(),
                pairs(headers),
                body.to_vec(),
                timeout_ms,
                id,
            ));
            (0, id)
        })
    }
    pub fn reset_http_stream(self, _stream_id: u64) {}
}

impl ConfigHandle {
    pub fn define_counter(self, name: &str) -> Result<usize, u32> {
        Ok(with(|f| {
            f.counter_names.push(name.to_string());
            f.counter_names.len() - 1
        }))
    }
    pub fn define_gauge(self, name: &str) -> Result<usize, u32> {
        Ok(with(|f| {
            f.gauge_names.push(name.to_string());
            f.gauge_names.len() - 1
        }))
    }
    pub fn increment_counter(self, id: usize, value: u64) -> u32 {
        with(|f| {
            let name = f.counter_names[id].clone();
            *f.counters.entry(name).or_default() += value;
        });
        0
    }
    pub fn set_gauge(self, id: usize, value: u64) -> u32 {
        with(|f| {
            let name = f.gauge_names[id].clone();
            f.gauges.insert(name, value);
        });
        0
    }
    pub fn http_callout(
        self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> (u32, u64) {
        with(|f| {
            f.next_id += 1;
            let id = f.next_id;
            f.callouts.push((
                cluster.to_string(),
                pairs(headers),
                body.to_vec(),
                timeout_ms,
                id,
            ));
            (0, id)
        })
    }
    pub fn start_http_stream(
        self,
        cluster: &str,
        headers: &[(&str, &[u8])],
        body: &[u8],
        timeout_ms: u64,
    ) -> (u32, u64) {
        with(|f| {
            f.next_id += 1;
            let id = f.next_id;
            f.config_streams.push((
                cluster.to_string(),
                pairs(headers),
                body.to_vec(),
                timeout_ms,
                id,
            ));
            (0, id)
        })
    }
    pub fn new_scheduler(self) -> Option<ConfigScheduler> {
        Some(ConfigScheduler(1))
    }
}

#[derive(Debug)]
pub struct ConfigScheduler(usize);

impl ConfigScheduler {
    pub fn raw(&self) -> usize {
        self.0
    }
    pub fn commit(&self, event_id: u64) {
        commit_raw(self.0, event_id)
    }
    pub fn delete(self) {}
}

pub fn commit_raw(_scheduler: usize, event_id: u64) {
    let _ = FAKE.try_with(|x| x.borrow_mut().commits.push(event_id));
}

/// What the code under test did, on this thread.
pub mod fake {
    use super::*;

    pub fn config() -> ConfigHandle {
        ConfigHandle(std::ptr::null_mut())
    }
    pub fn stream(worker: u32) -> Stream {
        Stream(worker as usize as FilterEnvoyPtr)
    }
    pub fn logs() -> Vec<(u32, String)> {
        with(|f| f.logs.clone())
    }
    pub fn counters() -> HashMap<String, u64> {
        with(|f| f.counters.clone())
    }
    pub fn counter_names() -> Vec<String> {
        with(|f| f.counter_names.clone())
    }
    pub fn gauges() -> HashMap<String, u64> {
        with(|f| f.gauges.clone())
    }
    pub fn config_streams() -> Vec<(String, Pairs, Vec<u8>, u64, u64)> {
        with(|f| f.config_streams.clone())
    }
    pub fn callouts() -> Vec<(String, Pairs, Vec<u8>, u64, u64)> {
        with(|f| f.callouts.clone())
    }
    pub fn replies() -> Vec<(u32, Pairs, Vec<u8>)> {
        with(|f| f.replies.clone())
    }
    pub fn continued() -> u32 {
        with(|f| f.continued)
    }
    pub fn commits() -> Vec<u64> {
        with(|f| f.commits.clone())
    }
    pub fn set_header(ty: u32, key: &str, value: &[u8]) {
        Stream(std::ptr::null_mut()).set_header(ty, key, value);
    }
    pub fn set_body(ty: u32, body: &[u8]) {
        with(|f| {
            f.bodies.insert(ty, body.to_vec());
        });
    }
}
