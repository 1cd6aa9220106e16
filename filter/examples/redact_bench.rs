//! Redaction throughput, natively: `cargo run --release -p tollgate --example redact_bench`.
//! Prints MB/s for plain text (look-alikes and positives mixed), prose without candidates, JSON bodies,
//! custom patterns, and the per-event cost of streamed output redaction. Figures, not assertions.

use std::time::Instant;
use tollgate::redact::{
    corpus, CustomPattern, Detector, DetectorSet, FieldSelector, RedactionConfig, Redactor,
    StreamRedactor,
};

fn mbps(bytes: usize, iters: usize, f: &mut dyn FnMut()) -> f64 {
    f(); // warm up
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let s = t.elapsed().as_secs_f64();
    (bytes * iters) as f64 / s / 1e6
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("pipeline") {
        // Only the request pipeline (for callgrind).
        return request_pipeline(&Redactor::new(&RedactionConfig::default()).unwrap());
    }
    let mixed = corpus::mixed_text(7, 1 << 20);
    let prose: String =
        "The quarterly review went well and the team agreed on next steps for the launch. "
            .repeat((1 << 20) / 82);
    let json = corpus::chat_request_json(7, 64, 16 << 10);
    let all = Redactor::new(&RedactionConfig::default()).unwrap();
    let custom = Redactor::new(&RedactionConfig {
        detectors: DetectorSet::empty(),
        patterns: vec![CustomPattern {
            name: "employee_id".into(),
            regex: "E[0-9]{6}".into(),
        }],
        ..Default::default()
    })
    .unwrap();
    println!(
        "input sizes: mixed {} B, prose {} B, json {} B",
        mixed.len(),
        prose.len(),
        json.len()
    );
    for (name, text) in [("mixed", &mixed), ("prose", &prose)] {
        let v = mbps(text.len(), 5, &mut || {
            std::hint::black_box(all.redact(text));
        });
        println!("redact(all built-ins) {name:5}: {v:8.1} MB/s");
        for d in Detector::ALL {
            let mut out = Vec::new();
            let v = mbps(text.len(), 5, &mut || {
                out.clear();
                d.find_into(text, &mut out);
                std::hint::black_box(&out);
            });
            println!("  detector {:15} {name:5}: {v:8.1} MB/s", d.name());
        }
        let v = mbps(text.len(), 3, &mut || {
            std::hint::black_box(custom.redact(text));
        });
        println!("custom regex E[0-9]{{6}}  {name:5}: {v:8.1} MB/s");
        let v = mbps(text.len(), 5, &mut || {
            std::hint::black_box(tollgate::redact::security_flags(text));
        });
        println!("security_flags          {name:5}: {v:8.1} MB/s");
    }
    let v = mbps(json.len(), 5, &mut || {
        std::hint::black_box(all.redact_json_strings(&json, FieldSelector::REQUEST));
    });
    println!("redact_json_strings(REQUEST) chat body: {v:8.1} MB/s");
    request_pipeline(&all);
    // Streamed output: ~6-byte deltas (a token each), 256-byte hold-back.
    let deltas: Vec<&str> = {
        let mut v = Vec::new();
        let mut i = 0;
        while i < mixed.len() && v.len() < 100_000 {
            let mut e = (i + 6).min(mixed.len());
            while !mixed.is_char_boundary(e) {
                e += 1;
            }
            v.push(&mixed[i..e]);
            i = e;
        }
        v
    };
    let bytes: usize = deltas.iter().map(|d| d.len()).sum();
    let t = Instant::now();
    let mut s = StreamRedactor::new(256);
    let mut n = 0usize;
    for d in &deltas {
        n += s.push(&all, d).len();
    }
    n += s.finish(&all).len();
    let el = t.elapsed().as_secs_f64();
    println!(
        "stream redactor, 6-byte deltas, 256 B hold-back: {:.1} MB/s, {:.2} us per delta ({} deltas, {} B out)",
        bytes as f64 / el / 1e6,
        el * 1e6 / deltas.len() as f64,
        deltas.len(),
        n
    );
}

/// What the exchange does with a 256 KiB prose chat request when capture and egress redaction are on
/// (the bench's "redaction + capture" scenario), stage by stage.
fn request_pipeline(r: &Redactor) {
    let iters: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    use tollgate::call::{Api, Response, Route};
    use tollgate::{capture, providers};
    let route = Route {
        api: Api::OpenAiChat,
        provider: "openai".to_owned(),
        path_model: None,
        path_stream: false,
    };
    let words = "The quick brown fox jumps over the lazy dog while the gateway counts tokens. ";
    // `pipeline ITERS KIB`: the prompt's size (default 256 KiB).
    let kib: usize = std::env::args()
        .nth(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let text = words.repeat((kib * 1024 / words.len()).max(1));
    let body = format!(
        "{{\"model\":\"gpt-4o-mini\",\"stream\":false,\"max_tokens\":256,\"messages\":[{{\"role\":\"system\",\"content\":\"You are a helpful assistant.\"}},{{\"role\":\"user\",\"content\":\"{text}\"}}]}}"
    )
    .into_bytes();
    let n = body.len();
    let input = providers::capture_input(&route, &body);
    let stages: [(&str, &mut dyn FnMut()); 7] = [
        ("from_utf8", &mut || {
            std::hint::black_box(std::str::from_utf8(&body).is_ok());
        }),
        ("walk (no visit)", &mut || {
            std::hint::black_box(tollgate::redact::map_json_strings(
                &body,
                FieldSelector::REQUEST,
                &mut |_, _| None,
            ));
        }),
        ("redact text", &mut || {
            std::hint::black_box(r.redact(&text));
        }),
        ("capture input", &mut || {
            std::hint::black_box(providers::capture_input(&route, &body));
        }),
        ("redact + gather text", &mut || {
            let mut t = String::new();
            std::hint::black_box(r.redact_json_strings_observed(
                &body,
                FieldSelector::REQUEST,
                &mut |s| {
                    t.push_str(s);
                    t.push('\n');
                },
            ));
            std::hint::black_box(t);
        }),
        ("security_flags", &mut || {
            std::hint::black_box(tollgate::redact::security_flags(&text));
        }),
        ("capture::render", &mut || {
            std::hint::black_box(capture::render(
                input.as_ref(),
                &Response::default(),
                r,
                16 << 10,
            ));
        }),
    ];
    for (name, f) in stages {
        println!(
            "{kib} KiB request, {name:20}: {:8.1} MB/s",
            mbps(n, iters, f)
        );
    }
}
