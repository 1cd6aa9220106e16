#![no_main]
//! Any input, any chunking: no panic, and the same frames as the whole body.
use libfuzzer_sys::fuzz_target;
use tollgate::stream::Framing;

fuzz_target!(|data: &[u8]| tollgate_fuzz::check_framing(Framing::Sse, data));
