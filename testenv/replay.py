"""A provider that answers with recorded exchanges (tests/corpus): the recorded status, content type,
content encoding, Bedrock headers and body bytes, delivered in pieces cut where the test asks.

A request names its exchange and delivery in headers:
  x-replay: <source>:<n>       exchange n (0-based) of tests/corpus/<source>/exchanges.jsonl.gz
  x-replay-cuts: 12,57,300     send the body in pieces cut at these byte offsets (chunked transfer
                               encoding), pausing x-replay-pause-ms (default 2) between pieces so that
                               Envoy reads each piece on its own; without cuts, the body in one write with
                               its content-length
Every request is recorded (`GET /__requests`: path, headers, body) for the test to compare what left the
gateway.
"""

import os
import sys
import threading
import time
from http.server import ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "tests", "corpus")
sys.path.insert(0, CORPUS)

import import_cassettes  # noqa: E402
import mock_provider  # noqa: E402
import reader  # noqa: E402

_corpus = {}
_lock = threading.Lock()


def corpus():
    """{source: [exchange, ...]} of tests/corpus, loaded once."""
    with _lock:
        if not _corpus:
            for source in sorted(os.listdir(CORPUS)):
                path = os.path.join(CORPUS, source, "exchanges.jsonl.gz")
                if os.path.exists(path):
                    _corpus[source] = import_cassettes.load(path)
        return _corpus


class Recorder(mock_provider.Recorder):
    """Every request of a corpus run (the mock provider's keeps the last 2,000)."""

    MAX_KEPT = 100_000


class Handler(mock_provider.Handler):
    """The mock provider's handler (its `GET /__requests`, `DELETE`, body reading), answering POSTs from the
    corpus."""

    def do_POST(self):
        body = self._read_body()
        self.recorder.add({"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                           "body": body.decode("utf-8", "replace")})
        source, _, n = self.headers.get("x-replay", "").partition(":")
        try:
            x = corpus()[source][int(n)]
        except (KeyError, ValueError, IndexError):
            self.send_error(404, "no such exchange")
            return
        resp = x["response"]
        payload = reader.body_bytes(resp)
        self.send_response(resp["status"])
        for k, v in resp["headers"].items():
            self.send_header(k, v)
        cuts = [int(c) for c in self.headers.get("x-replay-cuts", "").split(",") if c]
        if not cuts:
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        pause = int(self.headers.get("x-replay-pause-ms", "2")) / 1000.0
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        last = 0
        for c in cuts + [len(payload)]:
            piece = payload[last:c]
            last = c
            if not piece:
                continue
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            time.sleep(pause)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def make_server(port=0, host="127.0.0.1"):
    handler = type("ReplayHandler", (Handler,), {"recorder": Recorder()})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
