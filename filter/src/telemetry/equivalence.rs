//! The direct protobuf writers against the code they replaced (`legacy`: the same logic building
//! opentelemetry-proto's prost structs): for a representative set of calls the bytes must be identical, and
//! they must decode with the official types to the structures the old code built.

use super::legacy;
use super::{export, metrics, span};
use crate::call::{Api, Call, Route, ToolCall, Usage};
use crate::call::{BudgetOutcome as Budget, Verdict};
use crate::config::Config;
use crate::redact::{RedactionConfig, Redactor};
use crate::telemetry::Semconv;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span as PSpan;
use prost::Message;

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

fn configs() -> Vec<Config> {
    let with_system = Config {
        emit_gen_ai_system: true,
        ..Config::default()
    };
    vec![Config::default(), with_system]
}

fn legacy_span(call: &Call, cfg: &Config, redactor: Option<&Redactor>) -> PSpan {
    let mut s = legacy::span::build_span(call, cfg);
    if let Some(r) = redactor {
        legacy::span::scrub(&mut s, r);
    }
    s
}

#[test]
fn spans_are_byte_identical() {
    let redactor = Redactor::new(&RedactionConfig::default()).unwrap();
    for cfg in configs() {
        for (i, call) in calls().iter().enumerate() {
            for r in [None, Some(&redactor)] {
                let old = legacy_span(call, &cfg, r);
                let (new, findings) = span::build(call, &cfg.span_settings(), r);
                assert_eq!(
                    new.as_bytes(),
                    old.encode_to_vec(),
                    "call {i}, redact {}",
                    r.is_some()
                );
                assert_eq!(span::decode(&new), old, "call {i}");
                if r.is_some() {
                    let mut again = legacy::span::build_span(call, &cfg);
                    assert_eq!(findings, legacy::span::scrub(&mut again, &redactor));
                }
            }
        }
    }
}

#[test]
fn export_requests_are_byte_identical() {
    use std::io::Read;
    let extra = vec![
        ("deployment.environment".to_owned(), "prod".to_owned()),
        ("service.name".to_owned(), "overridden".to_owned()),
    ];
    for extra in [vec![], extra] {
        let old_res = legacy::export::resource("gw", "0b8f-instance", &extra);
        let new_res = export::resource("gw", "0b8f-instance", &extra);
        assert_eq!(new_res.as_bytes(), old_res.encode_to_vec());
        let cfg = Config::default();
        let calls = calls();
        for n in [0, 1, calls.len()] {
            let old: Vec<PSpan> = calls
                .iter()
                .take(n)
                .map(|c| legacy_span(c, &cfg, None))
                .collect();
            let new: Vec<span::Span> = calls
                .iter()
                .take(n)
                .map(|c| span::build_span(c, &cfg.span_settings(), None))
                .collect();
            let old_body = legacy::export::encode(&old_res, &old);
            let body = export::encode(&new_res, &new);
            assert_eq!(body, old_body, "{n} spans");
            let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
            assert_eq!(
                decoded,
                ExportTraceServiceRequest::decode(old_body.as_slice()).unwrap()
            );
            // Through the queue, with gzip on and off.
            let mut q = export::SpanQueue::new(new_res.clone(), 100, 100);
            for s in new.iter().cloned() {
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

#[test]
fn metric_exports_are_byte_identical() {
    let calls = metric_calls();
    for semconv in [Semconv::Default, Semconv::Latest] {
        for max_series in [1, 3, 10, 1000] {
            let old_res = legacy::export::resource("gw", "vm", &[]);
            let new_res = export::resource("gw", "vm", &[]);
            let mut old = legacy::metrics::Aggregator::new(max_series, 5);
            let mut new = metrics::Aggregator::new(max_series, 5);
            // Two intervals, the second starting where the first ended.
            for (interval, chunk) in calls.chunks(calls.len() / 2 + 1).enumerate() {
                for c in chunk {
                    old.record(c, semconv);
                    new.record(c, semconv);
                    assert_eq!(new.series_count(), old.series_count());
                }
                assert_eq!(new.stats.overflow, old.stats.overflow);
                let now = 2_000_000_000 * (interval as u64 + 1);
                old.close_interval(&old_res, now);
                new.close_interval(&new_res, now);
                let old_body = old.next_request().unwrap().to_vec();
                let body = new.next_request().unwrap().to_vec();
                let what = format!("{semconv:?}, max_series {max_series}, interval {interval}");
                let decoded = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
                assert_eq!(
                    decoded,
                    ExportMetricsServiceRequest::decode(old_body.as_slice()).unwrap(),
                    "{what}"
                );
                assert_eq!(body, old_body, "{what}");
                old.finish(legacy::export::Outcome::Success);
                new.finish(export::Outcome::Success);
                assert_eq!(new.series_count(), 0);
            }
            assert!(new.stats.exported_points > 0);
        }
    }
}
