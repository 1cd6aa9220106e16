"""A local OTLP/HTTP receiver that decodes what tollgate exports with the official protobuf definitions
(the `opentelemetry-proto` package) and keeps it for assertions.

Endpoints: POST /v1/traces, POST /v1/metrics, POST /v1/logs (protobuf, optionally gzip). Control:
  GET  /__spans            decoded spans as JSON (attributes flattened to {key: value})
  GET  /__metrics          decoded metric export requests as JSON (MessageToDict)
  GET  /__points           every metric data point, flattened: name, unit, kind, temporality, attributes,
                           resource, count/sum/bucket_counts/explicit_bounds (histograms) or value (sums)
  GET  /__logs             decoded log records: event_name, severity, body, attributes, trace/span id, resource
  GET  /__requests         every export request: path, arrival time, content-encoding, status answered
  GET  /__raw              hex of every request body received (to search exported bytes)
  POST /__mode             {"status": 503, "retry_after": 1, "delay_ms": 0, "rejected": 0} — how to answer
                           next exports ("rejected" > 0: 200 with a partial_success rejecting that many)
  DELETE /__spans          forget everything received
"""

import argparse
import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [any_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: any_value(kv.value) for kv in kvs}


class Store:
    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []
        self.metrics = []
        self.points = []
        self.logs = []
        self.log = []
        self.raw = []
        self.requests = 0
        self.mode = {"status": 200, "retry_after": None, "delay_ms": 0, "rejected": 0}

    def clear(self):
        with self.lock:
            self.spans.clear()
            self.metrics.clear()
            self.points.clear()
            self.logs.clear()
            self.log.clear()
            self.raw.clear()
            self.requests = 0


def decode_traces(body, store):
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        resource = attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({
                    "name": s.name,
                    "kind": s.kind,
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "trace_state": s.trace_state,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "status": {"code": s.status.code, "message": s.status.message},
                    "attributes": attrs(s.attributes),
                    "events": [{"name": e.name, "attributes": attrs(e.attributes)} for e in s.events],
                    "resource": resource,
                    "scope": {"name": ss.scope.name, "version": ss.scope.version},
                })
    with store.lock:
        store.spans.extend(out)


def decode_metrics(body, store):
    req = ExportMetricsServiceRequest()
    req.ParseFromString(body)
    d = MessageToDict(req, preserving_proto_field_name=True)
    points = []
    for rm in req.resource_metrics:
        resource = attrs(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                base = {"name": m.name, "unit": m.unit, "kind": kind, "resource": resource,
                        "scope": sm.scope.name}
                if kind == "histogram":
                    for p in m.histogram.data_points:
                        points.append(dict(base, temporality=m.histogram.aggregation_temporality,
                                           attributes=attrs(p.attributes), start=p.start_time_unix_nano,
                                           time=p.time_unix_nano, count=p.count, sum=p.sum,
                                           bucket_counts=list(p.bucket_counts),
                                           explicit_bounds=list(p.explicit_bounds)))
                elif kind == "sum":
                    for p in m.sum.data_points:
                        points.append(dict(base, temporality=m.sum.aggregation_temporality,
                                           monotonic=m.sum.is_monotonic, attributes=attrs(p.attributes),
                                           start=p.start_time_unix_nano, time=p.time_unix_nano,
                                           value=p.as_int if p.WhichOneof("value") == "as_int" else p.as_double))
    with store.lock:
        store.metrics.append(d)
        store.points.extend(points)


def decode_logs(body, store):
    req = ExportLogsServiceRequest()
    req.ParseFromString(body)
    out = []
    for rl in req.resource_logs:
        resource = attrs(rl.resource.attributes)
        for sl in rl.scope_logs:
            for r in sl.log_records:
                out.append({
                    "event_name": r.event_name,
                    "severity_number": r.severity_number,
                    "severity_text": r.severity_text,
                    "time": r.time_unix_nano,
                    "body": any_value(r.body),
                    "attributes": attrs(r.attributes),
                    "trace_id": r.trace_id.hex(),
                    "span_id": r.span_id.hex(),
                    "resource": resource,
                    "scope": {"name": sl.scope.name, "version": sl.scope.version},
                })
    with store.lock:
        store.logs.extend(out)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store = None

    def log_message(self, fmt, *args):
        pass

    def _send(self, status, body=b"", ctype="application/json", extra=None):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        s = self.store
        with s.lock:
            if self.path == "/__spans":
                body = json.dumps(s.spans)
            elif self.path == "/__metrics":
                body = json.dumps(s.metrics)
            elif self.path == "/__points":
                body = json.dumps(s.points)
            elif self.path == "/__logs":
                body = json.dumps(s.logs)
            elif self.path == "/__requests":
                body = json.dumps(s.log)
            elif self.path == "/__raw":
                body = json.dumps([r.hex() for r in s.raw])
            elif self.path == "/__stats":
                body = json.dumps({"requests": s.requests, "spans": len(s.spans)})
            else:
                self._send(404)
                return
        self._send(200, body.encode())

    def do_DELETE(self):
        self.store.clear()
        self._send(200)

    def do_POST(self):
        n = int(self.headers.get("content-length", "0") or 0)
        body = self.rfile.read(n)
        s = self.store
        if self.path == "/__mode":
            with s.lock:
                s.mode.update(json.loads(body or b"{}"))
            self._send(200)
            return
        with s.lock:
            mode = dict(s.mode)
            s.requests += 1
            s.log.append({"path": self.path, "t": time.time(), "status": mode.get("status", 200),
                          "encoding": self.headers.get("content-encoding"),
                          "user_agent": self.headers.get("user-agent"),
                          "content_type": self.headers.get("content-type")})
        if mode.get("delay_ms"):
            time.sleep(mode["delay_ms"] / 1000.0)
        if mode.get("status", 200) != 200:
            extra = {"retry-after": str(mode["retry_after"])} if mode.get("retry_after") is not None else {}
            self._send(mode["status"], b"{}", extra=extra)
            return
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        with s.lock:
            s.raw.append(body)
        rejected = int(mode.get("rejected") or 0)
        if self.path == "/v1/traces":
            decode_traces(body, s)
            resp = ExportTraceServiceResponse()
            if rejected:
                resp.partial_success.rejected_spans = rejected
                resp.partial_success.error_message = "test rejection"
            self._send(200, resp.SerializeToString(), "application/x-protobuf")
        elif self.path == "/v1/metrics":
            decode_metrics(body, s)
            resp = ExportMetricsServiceResponse()
            if rejected:
                resp.partial_success.rejected_data_points = rejected
                resp.partial_success.error_message = "test rejection"
            self._send(200, resp.SerializeToString(), "application/x-protobuf")
        elif self.path == "/v1/logs":
            decode_logs(body, s)
            resp = ExportLogsServiceResponse()
            if rejected:
                resp.partial_success.rejected_log_records = rejected
                resp.partial_success.error_message = "test rejection"
            self._send(200, resp.SerializeToString(), "application/x-protobuf")
        else:
            self._send(404)


def make_server(port=0, host="127.0.0.1"):
    store = Store()
    handler = type("BoundHandler", (Handler,), {"store": store})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.store = store
    return server


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=4318)
    args = ap.parse_args()
    server = make_server(args.port, args.host)
    print(f"OTLP receiver listening on {args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
