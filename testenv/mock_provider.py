"""A local mock LLM provider speaking the providers' real wire formats.

Responses are scripted from fixture files (testenv/fixtures/<provider>/<case>.json): a request carrying
`x-mock-fixture: <provider>/<case>` gets that fixture's status, headers and body, byte for byte. Optional
request headers shape the delivery:
  x-mock-chunk: N        send the body in N-byte chunks (chunked transfer encoding)
  x-mock-delay-ms: D     sleep D ms between chunks
  x-mock-gzip: 1         gzip the body (content-encoding: gzip)
  x-mock-encoding: E     compress the body with E = gzip | deflate | br (content-encoding: E)
  x-mock-truncate: N     send only the first N bytes, then reset the connection
  x-mock-usage: max      (OpenAI chat shape) generate exactly the request's max_completion_tokens/max_tokens
                         output tokens, as a JSON body or an SSE stream (`stream: true`; the usage chunk only
                         when `stream_options.include_usage`); prompt_tokens = x-mock-prompt-tokens (default 10).
                         Lets budget tests know each call's exact usage and see clamped max tokens honoured.
  x-mock-reset: N        same as truncate: N bytes, then a TCP RST (SO_LINGER 0); N=0 resets before headers
  x-mock-close: N        send N bytes of a body announced with its full content-length, then close (FIN)
  x-mock-wait-ms: D      wait D ms before sending anything (the gateway waits for response headers)
  x-mock-stall-ms: D     after the headers and the first chunk, stall D ms before sending the rest
  x-mock-content-type: T replace the response content-type
  x-mock-body-b64: B     replace the response body with base64 B (invalid JSON, binary garbage, ...)
  x-mock-header-bytes: N add an `x-mock-big` response header of N bytes
  x-mock-add-header: K=V add response header K with value V
Without a fixture header, OpenAI-shaped paths get a small canned chat completion (used by `make run` and the
benchmark). Every request is recorded (method, path, headers, body) for assertions, and every TCP connection
the server accepts is counted: `GET /__connections` answers {"connections": accepted connections other than
the ones that only carried these /__ control requests, "requests": provider requests} since the last
`DELETE /__requests` (which clears both).
"""

import argparse
import base64
import gzip
import json
import os
import socket
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")


def eventstream_message(headers, payload: bytes) -> bytes:
    """Encode one AWS event-stream message (string headers only), CRCs included."""
    hbytes = b""
    for name, value in headers.items():
        n = name.encode()
        v = value.encode()
        hbytes += bytes([len(n)]) + n + bytes([7]) + len(v).to_bytes(2, "big") + v
    total = 12 + len(hbytes) + len(payload) + 4
    prelude = total.to_bytes(4, "big") + len(hbytes).to_bytes(4, "big")
    prelude += zlib.crc32(prelude).to_bytes(4, "big")
    msg = prelude + hbytes + payload
    return msg + zlib.crc32(msg).to_bytes(4, "big")


def fixture_body(fx) -> bytes:
    """The exact response bytes a fixture describes."""
    resp = fx["response"]
    if "body" in resp:
        body = resp["body"]
        return body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if "body_base64" in resp:
        return base64.b64decode(resp["body_base64"])
    if "eventstream" in resp:
        out = b""
        for ev in resp["eventstream"]:
            if "payload_anthropic_event" in ev:
                inner = json.dumps(ev["payload_anthropic_event"]).encode()
                payload = json.dumps({"bytes": base64.b64encode(inner).decode(), "p": "abcdefghij"}).encode()
            else:
                payload = ev.get("payload", {})
                payload = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            out += eventstream_message(ev["headers"], payload)
        return out
    return b""


def usage_max_response(body: bytes, prompt_tokens: int):
    """An OpenAI chat completion whose output is exactly the request's max tokens (see x-mock-usage)."""
    req = json.loads(body or b"{}")
    n = req.get("max_completion_tokens", req.get("max_tokens", 16))
    usage = {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}
    model = req.get("model", "gpt-4o")
    text = "tok " * n
    if not req.get("stream"):
        doc = {"id": "chatcmpl-max", "object": "chat.completion", "model": model,
               "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                            "finish_reason": "length"}], "usage": usage}
        return {"content-type": "application/json"}, json.dumps(doc).encode()

    def chunk(choices, extra=None):
        c = {"id": "chatcmpl-max", "object": "chat.completion.chunk", "model": model, "choices": choices}
        c.update(extra or {})
        return b"data: " + json.dumps(c).encode() + b"\n\n"

    out = chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
    out += chunk([{"index": 0, "delta": {"content": text}, "finish_reason": None}])
    out += chunk([{"index": 0, "delta": {}, "finish_reason": "length"}])
    if (req.get("stream_options") or {}).get("include_usage"):
        out += chunk([], {"usage": usage})
    out += b"data: [DONE]\n\n"
    return {"content-type": "text/event-stream"}, out
def compress(encoding, payload):
    if encoding == "gzip":
        return gzip.compress(payload)
    if encoding == "deflate":
        return zlib.compress(payload)
    if encoding == "br":
        import brotli  # testenv/requirements.txt

        return brotli.compress(payload)
    raise ValueError(f"unknown x-mock-encoding {encoding}")


def load_fixture(name):
    with open(os.path.join(FIXTURES, name + ".json"), encoding="utf-8") as f:
        return json.load(f)


CANNED = {
    "id": "chatcmpl-mock",
    "object": "chat.completion",
    "model": "gpt-4o-mini-2024-07-18",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock provider."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
}


class Recorder:
    """The last MAX_KEPT requests, and how many arrived since the last clear (`GET /__count`); the TCP
    connections accepted, and of those the ones whose first request was a /__ control request."""

    MAX_KEPT = 2000

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []
        self.count = 0
        self.accepted = 0
        self.control = 0

    def connection(self):
        with self.lock:
            self.accepted += 1

    def control_connection(self):
        with self.lock:
            self.control += 1

    def connections(self):
        with self.lock:
            return {"connections": self.accepted - self.control, "requests": self.count}

    def add(self, item):
        with self.lock:
            self.count += 1
            self.requests.append(item)
            if len(self.requests) > self.MAX_KEPT:
                del self.requests[0]

    def snapshot(self):
        with self.lock:
            return list(self.requests)

    def clear(self):
        with self.lock:
            self.requests.clear()
            self.count = 0
            # This clear arrives on a control connection that was counted on both sides.
            self.accepted = self.control = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    recorder: Recorder = None  # set by make_server

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.first_request = True

    def parse_request(self):
        ok = super().parse_request()
        if ok and self.first_request:
            self.first_request = False
            if self.path.startswith("/__"):
                self.recorder.control_connection()
        return ok

    def _read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline().strip().split(b";")[0]
                if not line:
                    return data  # the gateway reset the stream mid-body (e.g. it answered locally)
                size = int(line, 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length", "0") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        if self.path == "/__requests":
            body = json.dumps(self.recorder.snapshot()).encode()
            self._send(200, {"content-type": "application/json"}, body)
        elif self.path == "/__count":
            self._send(200, {"content-type": "application/json"}, json.dumps(self.recorder.count).encode())
        elif self.path == "/__connections":
            self._send(200, {"content-type": "application/json"},
                       json.dumps(self.recorder.connections()).encode())
        elif self.path == "/__health":
            self._send(200, {"content-type": "text/plain"}, b"ok")
        else:
            self._send(404, {"content-type": "text/plain"}, b"not found")

    def do_DELETE(self):
        self.recorder.clear()
        self._send(200, {"content-type": "text/plain"}, b"cleared")

    def do_POST(self):
        body = self._read_body()
        self.record(body)
        self.answer(body)

    def record(self, body, **extra):
        self.recorder.add({
            "method": "POST", "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"),
            "body_base64": base64.b64encode(body).decode(),
            **extra,
        })

    def fixture_name(self):
        """The fixture to answer with (`x-mock-fixture`); subclasses may choose by path."""
        return self.headers.get("x-mock-fixture")

    def answer(self, body):
        name = self.fixture_name()
        if self.headers.get("x-mock-usage") == "max":
            status = 200
            headers, payload = usage_max_response(body, int(self.headers.get("x-mock-prompt-tokens", "10")))
        elif name:
            fx = load_fixture(name)
            status = fx["response"].get("status", 200)
            headers = dict(fx["response"].get("headers", {}))
            payload = fixture_body(fx)
        else:
            status, headers, payload = 200, {"content-type": "application/json"}, json.dumps(CANNED).encode()
        wait = int(self.headers.get("x-mock-wait-ms", "0") or 0)
        if wait:
            time.sleep(wait / 1000.0)
        if self.headers.get("x-mock-body-b64") is not None:
            payload = base64.b64decode(self.headers["x-mock-body-b64"])
        if self.headers.get("x-mock-content-type") is not None:
            headers["content-type"] = self.headers["x-mock-content-type"]
        if self.headers.get("x-mock-header-bytes"):
            headers["x-mock-big"] = "b" * int(self.headers["x-mock-header-bytes"])
        if self.headers.get("x-mock-add-header"):
            k, _, v = self.headers["x-mock-add-header"].partition("=")
            headers[k.strip().lower()] = v.strip()
        encoding = "gzip" if self.headers.get("x-mock-gzip") == "1" else self.headers.get("x-mock-encoding")
        if encoding:
            payload = compress(encoding, payload)
            headers["content-encoding"] = encoding
        chunk = int(self.headers.get("x-mock-chunk", "0") or 0)
        delay = int(self.headers.get("x-mock-delay-ms", "0") or 0) / 1000.0
        stall = int(self.headers.get("x-mock-stall-ms", "0") or 0) / 1000.0
        truncate = self.headers.get("x-mock-truncate") or self.headers.get("x-mock-reset")
        if truncate is not None and int(truncate) == 0:
            self._reset()
        elif truncate is not None:
            self._send_truncated(status, headers, payload[: int(truncate)])
        elif self.headers.get("x-mock-close") is not None:
            self._send_closed(status, headers, payload, int(self.headers["x-mock-close"]))
        elif chunk > 0 or stall:
            self._send_chunked(status, headers, payload, chunk or len(payload) or 1, delay, stall)
        else:
            self._send(status, headers, payload)

    def _head(self, status, headers):
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)

    def _send(self, status, headers, payload):
        self._head(status, headers)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()

    def _send_chunked(self, status, headers, payload, size, delay, stall=0.0):
        self._head(status, headers)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for n, i in enumerate(range(0, len(payload), size)):
            part = payload[i:i + size]
            try:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            except OSError:  # the gateway gave up on this stream (client abort)
                self.close_connection = True
                return
            if delay:
                time.sleep(delay)
            if stall and n == 0:
                time.sleep(stall)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _reset(self):
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()
        self.close_connection = True

    def _send_closed(self, status, headers, payload, n):
        self._head(status, headers)
        self.send_header("content-length", str(len(payload)))
        self.send_header("connection", "close")
        self.end_headers()
        self.wfile.write(payload[:n])
        self.wfile.flush()
        self.connection.shutdown(socket.SHUT_WR)
        self.close_connection = True

    def _send_truncated(self, status, headers, part):
        self._head(status, headers)
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        self.wfile.flush()
        time.sleep(0.05)
        # Abort without the terminating chunk: the gateway sees an upstream reset mid-body.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.connection.close()
        self.close_connection = True


class CountingServer(ThreadingHTTPServer):
    """Counts every TCP connection it accepts (before any byte is read from it)."""

    daemon_threads = True
    # 50 concurrent refused calls must not meet a full listen queue.
    request_queue_size = 256

    def process_request(self, request, client_address):
        self.recorder.connection()
        super().process_request(request, client_address)


def make_server(port=0, host="127.0.0.1", handler_class=Handler, server_class=CountingServer):
    recorder = Recorder()
    handler = type("BoundHandler", (handler_class,), {"recorder": recorder})
    server = server_class((host, port), handler)
    server.recorder = recorder  # before serve_forever accepts anything
    return server


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    server = make_server(args.port, args.host)
    print(f"mock provider listening on {args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
