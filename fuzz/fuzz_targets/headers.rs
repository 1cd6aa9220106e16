#![no_main]
//! Header maps as the host serializes them: any bytes read as a (possibly shorter) list of pairs without
//! panicking, and a map serialized from pairs reads back exactly.
use libfuzzer_sys::fuzz_target;
use tollgate::codec::headers::{serialize, Headers};

fuzz_target!(|data: &[u8]| {
    let h = Headers::new(data.to_vec());
    let n = h.iter().count();
    assert!(n <= data.len() / 8 + 1);
    let _ = h.get(":path");
    let _ = h.get_string("content-type");
    // Round trip: the input's text split into lines of name=value pairs.
    let text = String::from_utf8_lossy(data);
    let pairs: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once('=').unwrap_or((l, "")))
        .filter(|(k, v)| !k.contains('\0') && !v.contains('\0'))
        .collect();
    let back = Headers::new(serialize(&pairs));
    let read: Vec<(&[u8], &[u8])> = back.iter().collect();
    assert_eq!(read.len(), pairs.len());
    for ((k, v), (rk, rv)) in pairs.iter().zip(read) {
        assert_eq!((k.as_bytes(), v.as_bytes()), (rk, rv));
    }
});
