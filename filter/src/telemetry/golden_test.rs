//! Golden OTLP bytes: spans, trace export requests and metric export requests for a representative set of
//! calls, compared byte for byte with `telemetry/golden/*.bin.gz` (written once by the encoder whose output
//! decoded with the official opentelemetry-proto types to the structures it was checked against). A change
//! that alters a single byte on the wire fails here; the message shows both sides decoded with prost.
//!
//! After an intended change of the wire format, `TOLLGATE_BLESS=1 cargo test -p tollgate golden` rewrites
//! the files; review their decoded diff before committing them.

use super::{export, metrics, span, Semconv};
use crate::call::{Api, BudgetOutcome as Budget, Call, Route, ToolCall, Usage, Verdict};
use crate::redact::{RedactionConfig, Redactor};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource as PResource;
use opentelemetry_proto::tonic::trace::v1::Span as PSpan;
use prost::Message;
use std::io::{Read, Write};
use std::path::PathBuf;

fn route(api: Api, provider: &str) -> Option<Route> {
    Some(Route {
        api,
        provider: provider.into(),
        path_model: None,
        path_stream: false,
    })
}

/// Calls covering every attribute and value type, events, parents, status, redaction and odd values.
fn calls() -> Vec<Call> {
    let mut out = vec![Call::default()];

    let mut full = Call {
        route: route(Api::OpenAiChat, "openai"),
        http_status: Some(200),
        server_address: "api.openai.com".into(),
        server_port: Some(443),
        conversation_id: Some("conv jane@example.com".into()),
        start_ns: 1_763_700_000_000_000_000,
        end_ns: 1_763_700_001_500_000_000,
        first_chunk_ns: Some(1_763_700_000_250_000_000),
        usage_estimated: true,
        tenant: Some("team-a".into()),
        cost_usd: Some(0.0125),
        budget: Some(Budget {
            verdict: Verdict::Clamped,
            rule: Some("rules[2]".into()),
            remaining_tokens: Some(1234),
        }),
        ..Default::default()
    };
    full.ids.trace_id = [0xab; 16];
    full.ids.span_id = [0x01, 2, 3, 4, 5, 6, 7, 8];
    full.ids.parent_span_id = Some([9; 8]);
    full.ids.sampled = true;
    full.ids.tracestate = "vendor=a,other=b".into();
    let r = &mut full.request;
    r.model = Some("gpt-4o".into());
    r.stream = true;
    r.max_tokens = Some(256);
    r.temperature = Some(0.2);
    r.top_p = Some(0.9);
    r.top_k = Some(40.0);
    r.frequency_penalty = Some(-0.5);
    r.presence_penalty = Some(0.0);
    r.seed = Some(-42);
    r.choice_count = Some(3);
    r.stop_sequences = vec!["END".into(), "call 555-123-4567".into(), String::new()];
    r.output_type = Some("json");
    r.tool_names = vec!["get_weather".into(), "lookup jane@example.com".into()];
    r.system_prompt_hash = Some("0123456789abcdef".into());
    r.service_tier = Some("flex".into());
    r.embedding_dimensions = Some(512);
    r.encoding_formats = vec!["float".into()];
    let p = &mut full.response;
    p.id = Some("chatcmpl-1".into());
    p.model = Some("gpt-4o-2024-08-06".into());
    p.finish_reasons = vec!["stop".into(), "tool_calls".into()];
    p.usage = Usage {
        input: Some(100),
        output: Some(20),
        cache_read: Some(40),
        cache_write: Some(3),
        reasoning: Some(5),
    };
    p.tool_calls = vec![
        ToolCall {
            id: "call_1".into(),
            name: "get_weather".into(),
        },
        ToolCall {
            id: String::new(),
            name: "mail jane@example.com".into(),
        },
        ToolCall::default(),
    ];
    p.service_tier = Some("default".into());
    p.system_fingerprint = Some("fp_1".into());
    p.incomplete = true;
    let ev = &mut full.evidence;
    ev.active = true;
    ev.findings.merge(
        &Redactor::new(&RedactionConfig::default())
            .unwrap()
            .redact("a@example.com and 555-123-4567")
            .1,
    );
    ev.flags = vec!["prompt_injection.ignore_instructions", "other.flag"];
    ev.content = vec![
        ("gen_ai.input.messages", "[{\"role\":\"user\"}]".into()),
        ("gen_ai.output.messages", "[]".into()),
    ];
    ev.truncated = true;
    out.push(full.clone());

    // Errors: provider error type, HTTP status, transport failure, an empty error type.
    let mut e = full.clone();
    e.response.error_type = Some("rate_limit_exceeded".into());
    e.http_status = Some(429);
    e.ids.parent_span_id = None;
    e.ids.tracestate.clear();
    e.ids.sampled = false;
    out.push(e.clone());
    e.response.error_type = None;
    e.tenant = None;
    out.push(e.clone());
    e.http_status = None;
    e.transport_error = Some("stream_interrupted");
    out.push(e.clone());
    e.transport_error = None;
    e.response.error_type = Some(String::new());
    out.push(e);

    // Other providers and operations, a model only in the path, non-finite and huge numbers, long values.
    let mut a = Call {
        route: route(Api::AnthropicMessages, "anthropic"),
        server_address: "api.anthropic.com".into(),
        http_status: Some(200),
        start_ns: 10,
        end_ns: 5,
        ..Default::default()
    };
    a.route.as_mut().unwrap().path_model = Some("claude-x".into());
    a.route.as_mut().unwrap().path_stream = true;
    a.request.temperature = Some(f64::NAN);
    a.request.top_p = Some(f64::INFINITY);
    a.request.max_tokens = Some(u64::MAX);
    a.request.choice_count = Some(1);
    a.response.usage.input = Some(7);
    a.response.model = Some("é".repeat(300));
    a.tenant = Some("t".repeat(200));
    a.budget = Some(Budget {
        verdict: Verdict::DryRunDenied,
        rule: None,
        remaining_tokens: None,
    });
    out.push(a);
    let mut emb = Call {
        route: route(Api::OpenAiEmbeddings, "azure.ai.openai"),
        http_status: Some(200),
        start_ns: 1,
        end_ns: 2,
        ..Default::default()
    };
    emb.request.model = Some("text-embedding-3-small".into());
    emb.response.usage.input = Some(8);
    out.push(emb);
    let mut responses = full.clone();
    responses.route = route(Api::OpenAiResponses, "azure.ai.openai");
    responses.evidence = Default::default();
    responses.response.tool_calls.clear();
    responses.budget = Some(Budget {
        verdict: Verdict::Denied,
        rule: None,
        remaining_tokens: Some(0),
    });
    out.push(responses);
    out
}

fn settings() -> Vec<span::Settings> {
    vec![
        span::Settings::default(),
        span::Settings {
            emit_gen_ai_system: true,
        },
    ]
}

/// Calls that exercise the series table: many models and tenants (overflow), every verdict, errors.
fn metric_calls() -> Vec<Call> {
    let mut out = calls();
    let base = out.get(1).cloned().unwrap();
    let verdicts = [
        Verdict::Allowed,
        Verdict::Denied,
        Verdict::Clamped,
        Verdict::DryRunDenied,
    ];
    for i in 0..40u32 {
        let mut c = base.clone();
        c.request.model = Some(format!("model-{}", i % 7));
        c.response.model = (i % 3 != 0).then(|| format!("model-{}-resp", i % 5));
        c.tenant = (i % 4 != 0).then(|| format!("tenant-{}", i % 6));
        c.http_status = Some(if i % 9 == 0 { 500 } else { 200 });
        c.request.stream = i % 2 == 0;
        c.cost_usd = (i % 5 != 0).then_some(f64::from(i) * 0.001);
        c.budget = (i % 3 != 1).then(|| Budget {
            verdict: verdicts[i as usize % 4],
            rule: None,
            remaining_tokens: None,
        });
        c.response.usage.input = (i % 8 != 0).then_some(u64::from(i) * 37);
        c.response.usage.output = (i % 6 != 0).then_some(u64::from(i) * 1000);
        c.response.usage.cache_read = (i % 2 == 0).then_some(u64::from(i));
        c.end_ns = c.start_ns + u64::from(i) * 150_000_000;
        c.server_port = (i % 10 != 0).then_some(443);
        out.push(c);
    }
    out
}

/// What a record holds, for a readable message when bytes differ.
#[derive(Clone, Copy)]
enum Kind {
    Span,
    Resource,
    Traces,
    Metrics,
    Text,
}

/// Named records, in order, compared with (or, blessing, written to) `golden/<file>`: each record is its
/// name's length (u32 LE), the name, its data's length (u32 LE), the data.
struct Golden {
    file: &'static str,
    records: Vec<(String, Kind, Vec<u8>)>,
}

impl Golden {
    fn new(file: &'static str) -> Golden {
        Golden {
            file,
            records: Vec::new(),
        }
    }

    fn add(&mut self, name: String, kind: Kind, data: &[u8]) {
        self.records.push((name, kind, data.to_vec()));
    }

    fn path(&self) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/telemetry/golden")
            .join(format!("{}.gz", self.file))
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, _, data) in &self.records {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(data);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let mut rest = bytes;
        let take = |n: usize, rest: &mut &[u8]| {
            let (a, b) = rest.split_at(n);
            *rest = b;
            a.to_vec()
        };
        while !rest.is_empty() {
            let n = u32::from_le_bytes(take(4, &mut rest).try_into().unwrap()) as usize;
            let name = String::from_utf8(take(n, &mut rest)).unwrap();
            let n = u32::from_le_bytes(take(4, &mut rest).try_into().unwrap()) as usize;
            out.push((name, take(n, &mut rest)));
        }
        out
    }

    /// The bytes as the official types read them, for the failure message.
    fn readable(kind: Kind, data: &[u8]) -> String {
        match kind {
            Kind::Span => format!("{:#?}", PSpan::decode(data)),
            Kind::Resource => format!("{:#?}", PResource::decode(data)),
            Kind::Traces => format!("{:#?}", ExportTraceServiceRequest::decode(data)),
            Kind::Metrics => format!("{:#?}", ExportMetricsServiceRequest::decode(data)),
            Kind::Text => String::from_utf8_lossy(data).into_owned(),
        }
    }

    fn check(self) {
        let path = self.path();
        if std::env::var_os("TOLLGATE_BLESS").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&self.encode()).unwrap();
            std::fs::write(&path, gz.finish().unwrap()).unwrap();
            return;
        }
        let mut raw = Vec::new();
        flate2::read::GzDecoder::new(std::fs::read(&path).unwrap().as_slice())
            .read_to_end(&mut raw)
            .unwrap();
        let want = Golden::decode(&raw);
        let names = |v: &mut dyn Iterator<Item = &String>| v.cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&mut self.records.iter().map(|r| &r.0)),
            names(&mut want.iter().map(|r| &r.0)),
            "{}: the cases",
            self.file
        );
        for ((name, kind, got), (_, want)) in self.records.iter().zip(&want) {
            if got != want {
                panic!(
                    "{}: {name} differs from the golden bytes\n--- golden\n{}\n--- now\n{}",
                    self.file,
                    Golden::readable(*kind, want),
                    Golden::readable(*kind, got)
                );
            }
        }
    }
}

fn findings_text(f: &crate::call::Findings) -> String {
    let per: Vec<String> = f.per_type().map(|(t, n)| format!("{t}={n}")).collect();
    format!("count {}: {}", f.count, per.join(","))
}

#[test]
fn spans_match_the_golden_bytes() {
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
    let mut g = Golden::new("spans.bin");
    for (s, settings) in settings().iter().enumerate() {
        for (i, call) in calls().iter().enumerate() {
            for r in [None, Some(&redactor)] {
                let name = format!("settings {s}, call {i}, redact {}", r.is_some());
                let (span, findings) = span::build(call, settings, r);
                // The official types read it, and read back the same span.
                let decoded = span::decode(&span);
                assert_eq!(decoded.encode_to_vec(), span.as_bytes(), "{name}");
                g.add(name.clone(), Kind::Span, span.as_bytes());
                if r.is_some() {
                    g.add(
                        format!("{name}: findings"),
                        Kind::Text,
                        findings_text(&findings).as_bytes(),
                    );
                }
            }
        }
    }
    g.check();
}

#[test]
fn export_requests_match_the_golden_bytes() {
    let extra = vec![
        ("deployment.environment".to_owned(), "prod".to_owned()),
        ("service.name".to_owned(), "overridden".to_owned()),
    ];
    let mut g = Golden::new("traces.bin");
    for (e, extra) in [vec![], extra].iter().enumerate() {
        let res = export::resource("gw", "0b8f-instance", extra);
        g.add(format!("resource {e}"), Kind::Resource, res.as_bytes());
        let calls = calls();
        for n in [0, 1, calls.len()] {
            let spans: Vec<span::Span> = calls
                .iter()
                .take(n)
                .map(|c| span::build_span(c, &span::Settings::default(), None))
                .collect();
            let body = export::encode(&res, &spans);
            let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            g.add(format!("resource {e}, {n} spans"), Kind::Traces, &body);
            // Through the queue, with gzip on and off.
            let mut q = export::SpanQueue::new(res.clone(), 100, 100);
            for s in spans.iter().cloned() {
                q.push(s);
            }
            if let Some(queued) = q.next_request() {
                assert_eq!(queued, body);
                let gz = export::gzip(&queued).unwrap();
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(gz.as_slice())
                    .read_to_end(&mut plain)
                    .unwrap();
                assert_eq!(
                    ExportTraceServiceRequest::decode(plain.as_slice()).unwrap(),
                    decoded
                );
            }
        }
    }
    g.check();
}

#[test]
fn metric_exports_match_the_golden_bytes() {
    let calls = metric_calls();
    let mut g = Golden::new("metrics.bin");
    for semconv in [Semconv::Default, Semconv::Latest] {
        for max_series in [1, 3, 10, 1000] {
            let res = export::resource("gw", "vm", &[]);
            let mut agg = metrics::Aggregator::new(max_series, 5);
            // Two intervals, the second starting where the first ended.
            for (interval, chunk) in calls.chunks(calls.len() / 2 + 1).enumerate() {
                let mut series = Vec::new();
                for c in chunk {
                    agg.record(c, semconv);
                    series.push(agg.series_count().to_string());
                }
                let what = format!("{semconv:?}, max_series {max_series}, interval {interval}");
                g.add(
                    format!("{what}: series after each call, overflow"),
                    Kind::Text,
                    format!("{} / {}", series.join(","), agg.stats.overflow).as_bytes(),
                );
                let now = 2_000_000_000 * (interval as u64 + 1);
                agg.close_interval(&res, now);
                let body = agg.next_request().unwrap().to_vec();
                ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
                g.add(what, Kind::Metrics, &body);
                agg.finish(export::Outcome::Success);
                assert_eq!(agg.series_count(), 0);
            }
            assert!(agg.stats.exported_points > 0);
        }
    }
    g.check();
}
