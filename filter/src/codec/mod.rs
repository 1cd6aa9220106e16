//! Byte formats, the bottom layer: nothing here imports anything else of the crate.
//!
//! - `json`: reading (the tape, the skimmer for the stream fast paths, the lenient readers of provider
//!   bodies, the strict readers of the plugin configuration) and writing.
//! - `proto`: the protobuf wire format OTLP and the rate-limit service speak.
//! - `headers`: a header map as proxy-wasm serializes it.
//! - `hex`, `crc32`: what trace ids, gzip and AWS event-stream frames need.
//! - `sigv4`: what an AWS Signature Version 4 covers, read from a request's headers and path.

pub mod crc32;
pub mod headers;
pub mod hex;
pub mod json;
pub mod proto;
pub mod sigv4;
