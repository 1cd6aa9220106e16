#![no_main]
//! Plugin configuration: any bytes either parse or give an error that says what is wrong.
use libfuzzer_sys::fuzz_target;
use tollgate::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Config::parse(data) {
        assert!(!e.reason.is_empty());
        let _ = e.to_string();
    }
});
