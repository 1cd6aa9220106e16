"""Mock providers behind real TLS: one server, one certificate per provider host name (chosen by SNI), issued by a
test CA (testenv/pki.py), so a gateway that originates TLS sees what it sees in production: SNI, a chain to
verify, a SAN to match. A test can swap the certificate served for a name (a certificate for another name, or
from a CA the gateway does not trust) and read the SNI names clients sent.

Requests to a Bedrock host are checked for a valid SigV4 signature (testenv/sigv4_mock.py); the others are
answered like testenv/mock_provider.py (fixtures by `x-mock-fixture`)."""

import os
import ssl
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import mock_provider  # noqa: E402
import sigv4_mock  # noqa: E402


class TLSServer(mock_provider.CountingServer):
    """The mock provider's server, speaking TLS (HTTP/1.1 by ALPN) with a certificate per SNI name."""

    def __init__(self, address, handler):
        super().__init__(address, handler)
        self.contexts = {}
        self.default = None
        self.snis = []
        self.lock = threading.Lock()

    def serve(self, name, leaf):
        """Answer SNI `name` with `leaf` (a `pki.Leaf`); the first name served is also the default."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(leaf.cert, leaf.key)
        ctx.set_alpn_protocols(["http/1.1"])
        ctx.sni_callback = self._sni
        with self.lock:
            self.contexts[name] = ctx
            self.default = self.default or ctx

    def _sni(self, sock, name, _ctx):
        with self.lock:
            self.snis.append(name)
            ctx = self.contexts.get(name)
        if ctx is not None:
            sock.context = ctx

    def sni_names(self):
        with self.lock:
            return list(self.snis)

    def finish_request(self, request, client_address):
        # In the connection's own thread: a slow or failed handshake never blocks accepting others.
        try:
            tls = self.default.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client refused our certificate (or went away)
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass


class Handler(sigv4_mock.Handler):
    """SigV4 verification for Bedrock hosts; the plain mock for every other provider."""

    def do_POST(self):
        if self.headers.get("host", "").startswith("bedrock-runtime."):
            return super().do_POST()
        return mock_provider.Handler.do_POST(self)

    def fixture_name(self):
        if self.headers.get("host", "").startswith("bedrock-runtime."):
            return super().fixture_name()
        return mock_provider.Handler.fixture_name(self)


def make_server(secrets, port=0, host="127.0.0.1"):
    """A TLS mock; call `serve(name, leaf)` for each provider host before traffic. `secrets`: AWS access key
    id → secret, for the Bedrock signatures it verifies."""
    handler = type("TLSMockHandler", (Handler,), {"secrets": dict(secrets)})
    return mock_provider.make_server(port, host, handler_class=handler, server_class=TLSServer)
