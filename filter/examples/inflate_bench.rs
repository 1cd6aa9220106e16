//! Throughput of the response inflaters and of the export compressor, natively:
//! `cargo run --release --example inflate_bench [MIB]`. Compare builds (for example a dependency's
//! `opt-level`) on one machine; figures are MiB of decoded (or compressed-from) bytes per second.
use std::io::Write;
use std::time::Instant;
use tollgate::stream::inflate::{ContentEncoding, Inflater};

fn body(mib: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0u64;
    while out.len() < mib << 20 {
        let line = format!(
            "data: {{\"id\":\"chatcmpl-{i}\",\"object\":\"chat.completion.chunk\",\"created\":1733000000,\
             \"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {} \"}},\
             \"finish_reason\":null}}]}}\n\n",
            i * 7919 % 10007
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

fn time<F: FnMut() -> usize>(label: &str, bytes: usize, mut f: F) {
    let mut sink = 0;
    for _ in 0..2 {
        sink += f();
    }
    let runs = 10;
    let start = Instant::now();
    for _ in 0..runs {
        sink += f();
    }
    let secs = start.elapsed().as_secs_f64();
    let mib = (bytes * runs) as f64 / (1 << 20) as f64;
    println!("{label}: {:.0} MiB/s ({sink} bytes out)", mib / secs);
}

fn inflate(encoding: ContentEncoding, data: &[u8]) -> usize {
    let mut inf = Inflater::new(encoding, u64::MAX);
    let mut n = 0;
    for chunk in data.chunks(16 << 10) {
        let _ = inf.push(chunk, &mut |b: &[u8]| n += b.len());
    }
    let _ = inf.finish();
    n
}

fn main() {
    let mib = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4);
    let plain = body(mib);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    let _ = gz.write_all(&plain);
    let gz = gz.finish().unwrap_or_default();
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 22);
        let _ = w.write_all(&plain);
    }
    time("gzip inflate", plain.len(), || {
        inflate(ContentEncoding::Gzip, &gz)
    });
    time("br inflate", plain.len(), || {
        inflate(ContentEncoding::Brotli, &br)
    });
    let batch = &plain[..plain.len().min(256 << 10)];
    time("export deflate (level 1, 256 KiB)", batch.len(), || {
        miniz_oxide::deflate::compress_to_vec(batch, 1).len()
    });
}
