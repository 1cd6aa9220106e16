#!/usr/bin/env python3
"""Render tollgate's Istio manifests from one source into istio/generated/.

Sources (edit these, then run `python3 istio/generate.py`):
  istio/values.json         the install: gateway namespace, labels and identity, the image and its digest,
                            buffer limit, failure policy, per-provider parameters (regions, resource names)
  istio/plugin-config.json  the plugin configuration, written once: every install variant embeds it
  PROVIDERS below           what each supported provider needs (host, how clients reach it)

`--check` renders into memory and fails when istio/generated/ differs (the test suite runs it), so the
checked-in manifests are always what this script makes. Python 3.9+, standard library only.

Why a generator rather than kustomize or Helm: the per-provider objects differ in the host name in a dozen
places (hosts, SNI, SAN, routes, subsets), which kustomize cannot template; Helm could, but neither
renderer installs from the registries this project's test machines reach, and manifests that are never
rendered in a test are not evidence. The output is plain YAML: `kubectl apply -f` it, or vendor it into
your own kustomization or chart.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "generated")

# Files of the istio/istio repository that the manifests depend on, cited in the generated comments.
SRC = {
    "gateway_chart": "manifests/charts/gateway/values.yaml, templates/deployment.yaml",
    "injection": "manifests/charts/istio-control/istio-discovery/files/gateway-injection-template.yaml",
    "cluster_tls": "pilot/pkg/networking/core/cluster_tls.go",
    "dr_merge": "pilot/pkg/model/destination_rule.go, mergeDestinationRule",
    "visibility": "pilot/pkg/model/push_context.go, initServiceRegistry; sidecar.go",
    "imagefetcher": "pkg/wasm/imagefetcher.go, PrepareFetch; pkg/wasm/cache.go",
    "convert": "pkg/wasm/convert.go",
    "extensions": "pilot/pkg/model/extensions.go, buildWasmConfig",
    "envoyfilter_ecds": "pilot/pkg/networking/core/envoyfilter/extension_configuration_patch.go",
    "envoyfilter_unknown": "pilot/pkg/model/envoyfilter.go",
}

# Each provider: host (with {parameters} from values.json), default parameters, the client settings that
# keep the SDK's paths right, and whether it is a template to adapt rather than a fixed endpoint.
PROVIDERS = [
    {"id": "openai", "name": "OpenAI", "host": "api.openai.com",
     "client": "OPENAI_BASE_URL=http://api.openai.com/v1"},
    {"id": "azure-openai", "name": "Azure OpenAI", "host": "{resource}.openai.azure.com",
     "params": {"resource": "my-resource"},
     "client": 'AzureOpenAI(azure_endpoint="http://{host}", api_key=...): API keys only; SDKs that send '
               "Entra ID bearer tokens refuse http:// (see istio/README.md, clients that insist on https)"},
    {"id": "anthropic", "name": "Anthropic", "host": "api.anthropic.com",
     "client": "ANTHROPIC_BASE_URL=http://api.anthropic.com (no /v1: the SDK adds /v1/messages)"},
    {"id": "gemini", "name": "Gemini (Generative Language API)", "host": "generativelanguage.googleapis.com",
     "client": 'google-genai: genai.Client(http_options={{"base_url": "http://generativelanguage.googleapis.com"}})'
               " (no version: the SDK adds /v1beta/models/...)"},
    {"id": "vertex", "name": "Vertex AI", "host": "{region}-aiplatform.googleapis.com",
     "params": {"region": "us-central1"},
     "client": 'google-genai: genai.Client(vertexai=True, project=..., location="{region}", '
               'http_options={{"base_url": "http://{host}"}}); AnthropicVertex(base_url="http://{host}/v1")'},
    {"id": "bedrock", "name": "Amazon Bedrock runtime", "host": "bedrock-runtime.{region}.amazonaws.com",
     "params": {"region": "us-east-1"},
     "client": 'boto3.client("bedrock-runtime", region_name="{region}", endpoint_url="http://{host}") '
               "(no path: the SDK adds /model/...; SigV4 signs this host, which the gateway keeps)"},
    {"id": "mistral", "name": "Mistral", "host": "api.mistral.ai",
     "client": 'Mistral(server_url="http://api.mistral.ai") (the SDK adds /v1/...)'},
    {"id": "cohere", "name": "Cohere", "host": "api.cohere.com",
     "client": 'cohere.ClientV2(base_url="http://api.cohere.com") (the SDK adds /v2/...)'},
    {"id": "self-hosted", "name": "a self-hosted OpenAI-compatible or Ollama server (template)",
     "host": "{host}", "params": {"host": "llm.example.internal", "provider": "vllm"}, "template": True,
     "client": "OPENAI_BASE_URL=http://{host}/v1 (vLLM, TGI, LiteLLM, ...) or OLLAMA_HOST=http://{host}; add "
               '{{"host": "{host}", "provider": "{provider}"}} to "routes" in istio/plugin-config.json so '
               "tollgate knows the API, and serve TLS on 443 with a certificate for {host} that the gateway trusts (a public CA, or add caCertificates to the upstream DestinationRule)"},
]

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


# --- a small YAML writer: block style, stable, only what these manifests need --------------------------

PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(v) -> str:
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, (int, float)):
        return json.dumps(v)
    s = str(v)
    if PLAIN.fullmatch(s) and s.lower() not in RESERVED:
        return s
    return json.dumps(s)


def emit(node, indent=0) -> list[str]:
    pad = " " * indent
    lines = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = scalar(k)
            if isinstance(v, str) and "\n" in v:
                lines.append(f"{pad}{key}: |")
                lines += [(pad + "  " + ln) if ln else "" for ln in v.rstrip("\n").split("\n")]
            elif isinstance(v, dict) and v:
                lines.append(f"{pad}{key}:")
                lines += emit(v, indent + 2)
            elif isinstance(v, list) and v:
                lines.append(f"{pad}{key}:")
                lines += emit(v, indent)
            elif isinstance(v, (dict, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(v, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {scalar(v)}")
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)) and item:
                sub = emit(item, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines += sub[1:]
            else:
                lines.append(f"{pad}- {scalar(item) if not isinstance(item, (dict, list)) else '{}'}")
    else:
        lines.append(pad + scalar(node))
    return lines


def comment_lines(text: str) -> str:
    """`text` as YAML comment lines, its paragraphs reflowed at 108 columns. A line that starts with
    spaces, `- ` or `1. ` starts an item (wrapped under its own indentation); other lines continue the one
    before; blank lines separate paragraphs."""
    items: list[tuple[str, str, str]] = []  # (first-line prefix, hanging indent, text)
    for ln in text.strip("\n").split("\n"):
        m = re.match(r"(\s*(?:- |\d+\. )?)(.*)", ln)
        lead, body = m.group(1), m.group(2)
        if not ln.strip():
            items.append(("", "", ""))
        elif lead or not items or not items[-1][2]:
            items.append((lead, " " * len(lead), body))
        else:
            first, hang, prev = items[-1]
            items[-1] = (first, hang, prev + " " + body)
    out = []
    for first, hang, body in items:
        wrapped = textwrap.wrap(body, 108 - len(hang), break_on_hyphens=False, break_long_words=False) or [""]
        out += [(first if i == 0 else hang) + w for i, w in enumerate(wrapped)]
    return "".join(f"# {ln}".rstrip() + "\n" for ln in out)


def document(comment: str, obj: dict) -> str:
    return (comment_lines(comment) if comment else "") + "\n".join(emit(obj)) + "\n"


def yaml_file(header: str, docs: list[tuple[str, dict]]) -> str:
    out = comment_lines(header)
    out += "# Generated by istio/generate.py from istio/values.json and istio/plugin-config.json: edit those.\n"
    out += "# Source paths in comments are files of the istio/istio repository.\n"
    return out + "".join("---\n" + document(c, o) for c, o in docs)


# --- the install ---------------------------------------------------------------------------------------


class Install:
    def __init__(self, values: dict, plugin: dict):
        self.v = values
        self.plugin = plugin
        g = values["gateway"]
        self.ns = g["namespace"]
        self.labels = g["labels"]
        self.gw_host = f"{g['service']}.{self.ns}.svc.cluster.local"
        self.td = g["trust_domain"]
        img = values["image"]
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", img["digest"]):
            raise SystemExit("values.json: image.digest must be sha256:<64 hex> (what `make image` prints)")
        self.digest_hex = img["digest"].split(":", 1)[1]
        self.oci_url = f"oci://{img['repository']}@{img['digest']}"
        self.image_ref = f"{img['repository']}@{img['digest']}"
        self.buffer = int(values["request_buffer_bytes"])
        # tollgate holds a request body only while it fits `max_request_body` (default 1 MiB, Envoy's own
        # limit), and Envoy answers 413 to a held body over the listener's buffer limit: the two go together
        # (docs/wire.md, "Buffer limit"). The plugin JSON says it, at most the listener's limit.
        mrb = plugin.get("max_request_body", 1024 * 1024)
        if not isinstance(mrb, int) or mrb > self.buffer:
            raise SystemExit("plugin-config.json: max_request_body must be at most values.json "
                             f"request_buffer_bytes ({self.buffer})")
        self.failure = values["failure_policy"]
        if self.failure not in ("FAIL_OPEN", "FAIL_CLOSED", "FAIL_RELOAD"):
            raise SystemExit("values.json: failure_policy must be FAIL_OPEN, FAIL_CLOSED or FAIL_RELOAD")
        otlp = plugin.get("otlp") or {}
        self.collector_cluster = otlp.get("cluster", "")
        host, _, port = otlp.get("authority", "").rpartition(":")
        if not self.collector_cluster or not host or not port.isdigit():
            raise SystemExit("plugin-config.json: otlp.cluster and otlp.authority (host:port) are required")
        self.collector = (host, int(port))
        self.plugin_json = json.dumps(plugin, indent=2) + "\n"
        self.providers = []
        for p in PROVIDERS:
            params = dict(p.get("params", {}))
            params.update(values.get("providers", {}).get(p["id"], {}))
            host = p["host"].format(**params)
            fmt = dict(params, host=host)
            self.providers.append(dict(p, host=host, params=params, client=p["client"].format(**fmt)))

    def meta(self, name, ns=None):
        return {"name": name, "namespace": ns or self.ns}

    # Per provider ---------------------------------------------------------------------------------------

    def provider_docs(self, p) -> list[tuple[str, dict]]:
        pid, host = p["id"], p["host"]
        upstream = f"{pid}.upstream.tollgate.internal"
        gw_name = f"egress-{pid}"
        docs = []
        docs.append((
            f"""Apps' view of {host}: the name and port 80 only, exported to every namespace so sidecars can route
plain http://{host} to the egress gateway. No port 443 here (nor anywhere apps can see it): under
REGISTRY_ONLY an app's own https://{host} finds no route (BlackHoleCluster) instead of leaving past the
gateway. Visibility: {SRC['visibility']}.""",
            {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": self.meta(pid),
             "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                      "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                      "exportTo": ["*"]}},
        ))
        docs.append((
            f"""The real endpoint, {host}:443, known only in {self.ns} (exportTo "."), under a name of its own so it
never shadows or merges with the apps' entry above.""",
            {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": self.meta(f"{pid}-upstream"),
             "spec": {"hosts": [upstream], "location": "MESH_EXTERNAL", "resolution": "DNS",
                      "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
                      "endpoints": [{"address": host}], "exportTo": ["."]}},
        ))
        docs.append((
            f"""The gateway accepts {host} on 443 only with Istio mTLS: the sidecar's certificate is checked against
the mesh CA, the API key travels encrypted, and the caller's identity reaches tollgate
(tenant.peer_identity). tollgate reads plaintext because the gateway terminates this mTLS.""",
            {"apiVersion": "networking.istio.io/v1", "kind": "Gateway", "metadata": self.meta(gw_name),
             "spec": {"selector": dict(self.labels),
                      "servers": [{"port": {"number": 443, "name": f"https-{pid}", "protocol": "HTTPS"},
                                   "hosts": [host], "tls": {"mode": "ISTIO_MUTUAL"}}]}},
        ))
        docs.append((
            f"""Sidecar -> gateway: ISTIO_MUTUAL with SNI {host}, which picks this provider's server on the gateway.
The subjectAltNames default to the gateway's service account ({SRC['cluster_tls']}). Every provider adds
its subset to the same host; the rules merge ({SRC['dr_merge']}).""",
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
             "metadata": self.meta(f"egressgateway-for-{pid}"),
             "spec": {"host": self.gw_host, "exportTo": ["*"],
                      "subsets": [{"name": pid, "trafficPolicy": {"portLevelSettings": [
                          {"port": {"number": 443}, "tls": {"mode": "ISTIO_MUTUAL", "sni": host}}]}}]}},
        ))
        docs.append((
            f"""Leg 1, every sidecar: http://{host} goes to the egress gateway. No retries: an LLM call costs money and
is not idempotent (Istio's default would retry a 503). 600 s covers long streams.""",
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": self.meta(f"{gw_name}-mesh"),
             "spec": {"hosts": [host], "gateways": ["mesh"], "exportTo": ["*"],
                      "http": [{"match": [{"port": 80}],
                                "route": [{"destination": {"host": self.gw_host, "subset": pid,
                                                           "port": {"number": 443}}}],
                                "timeout": "600s", "retries": {"attempts": 0}}]}},
        ))
        docs.append((
            f"""Leg 2, the gateway only: on to {host}:443 with TLS the gateway originates (below).""",
            {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": self.meta(gw_name),
             "spec": {"hosts": [host], "gateways": [f"{self.ns}/{gw_name}"], "exportTo": ["."],
                      "http": [{"match": [{"port": 443}],
                                "route": [{"destination": {"host": upstream, "port": {"number": 443}}}],
                                "timeout": "600s", "retries": {"attempts": 0}}]}},
        ))
        docs.append((
            f"""TLS to the provider: SNI {host}, and the certificate must name {host} (subjectAltNames) besides
chaining to the system CAs. With sni set, Istio turns on no automatic SAN check, so without
subjectAltNames any publicly trusted certificate would do ({SRC['cluster_tls']}).""",
            {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": self.meta(f"{pid}-upstream"),
             "spec": {"host": upstream, "exportTo": ["."],
                      "trafficPolicy": {"portLevelSettings": [
                          {"port": {"number": 443},
                           "tls": {"mode": "SIMPLE", "sni": host, "subjectAltNames": [host]}}]}}},
        ))
        return docs

    def provider_file(self, p) -> str:
        template = (
            "\n\nTEMPLATE: set providers.self-hosted in istio/values.json to your server, and adapt. For a server inside\n"
            "the cluster, drop the two ServiceEntries and the upstream DestinationRule and route leg 2 to its Service."
            if p.get("template") else ""
        )
        header = f"""Egress to {p['name']} ({p['host']}) through the egress gateway, where tollgate reads the traffic.

  app --http://{p['host']}--> sidecar ==Istio mTLS==> {self.gw_host}:443 (tollgate)
      --TLS, SNI and SAN {p['host']}--> {p['host']}:443

Client: {p['client']}{template}

Apply after the files in base/ and one of install/."""
        return yaml_file(header, self.provider_docs(p))

    # Gateway-wide ----------------------------------------------------------------------------------------

    def wasm_config(self, code: dict, hold: bool = True) -> dict:
        cfg = {"name": "tollgate", "root_id": "tollgate", "failure_policy": self.failure}
        if hold:
            cfg["allow_on_headers_stop_iteration"] = True
        cfg["vm_config"] = {"vm_id": "tollgate", "runtime": "envoy.wasm.runtime.v8", "code": code}
        cfg["configuration"] = {"@type": STRING_VALUE, "value": self.plugin_json}
        return cfg

    def listener_patch(self) -> dict:
        return {"applyTo": "LISTENER", "match": {"context": "GATEWAY"},
                "patch": {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": self.buffer}}}

    def router_match(self) -> dict:
        return {"context": "GATEWAY", "listener": {"filterChain": {"filter": {
            "name": "envoy.filters.network.http_connection_manager",
            "subFilter": {"name": "envoy.filters.http.router"}}}}}

    def selector(self) -> dict:
        return {"labels": dict(self.labels)}

    def install_oci(self) -> str:
        ecds = {"applyTo": "EXTENSION_CONFIG", "patch": {"operation": "ADD", "value": {
            "name": "tollgate",
            "typed_config": {"@type": WASM_TYPE, "config": self.wasm_config({"remote": {
                # The agent fetches oci:// itself; the cluster is never used (Istio writes "_" too).
                "http_uri": {"uri": self.oci_url, "cluster": "_", "timeout": "30s"},
                "sha256": self.digest_hex}})}}}}
        use = {"applyTo": "HTTP_FILTER", "match": self.router_match(), "patch": {
            "operation": "INSERT_BEFORE", "value": {"name": "tollgate", "config_discovery": {
                "config_source": {"ads": {}}, "type_urls": [WASM_TYPE]}}}}
        header = f"""RECOMMENDED: tollgate from the OCI image, pulled and digest-checked by Istio's agent, with every
setting a production install needs. Use this OR install/wasmplugin.yaml OR install/file-module.yaml.

The image is the one `make image` builds; image.digest in values.json is the manifest digest it prints,
the digest Istio compares ({SRC['imagefetcher']}). The agent pulls oci:// URLs for EnvoyFilter extension
configs as it does for WasmPlugins ({SRC['convert']}).

Why an EnvoyFilter and not a WasmPlugin: the header hold that keeps refused calls off the provider is
Envoy's allow_on_headers_stop_iteration, which no WasmPlugin field sets ({SRC['extensions']}), and which
no EnvoyFilter can add to a WasmPlugin's config ({SRC['envoyfilter_ecds']}).
It needs Istio 1.28 or later: older istiods drop the field without an error ({SRC['envoyfilter_unknown']})."""
        doc = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": self.meta("tollgate"),
               "spec": {"workloadSelector": self.selector(), "configPatches": [ecds, use, self.listener_patch()]}}
        return yaml_file(header, [(
            f"""1. The Wasm filter's configuration, served over ECDS: failure_policy {self.failure}, the header hold, and
   the module by digest. If the pull fails, the agent serves an allow-all (FAIL_OPEN) or deny-all filter
   in its place ({SRC['convert']}): watch the gateway's log and `istioctl proxy-status`.
2. The filter before the router on every gateway HTTP listener.
3. Room for whole request bodies: tollgate buffers a non-streamed body to read it, and over the listener
   limit (1 MiB by default) Envoy answers 413.""", doc)])

    def install_wasmplugin(self) -> str:
        header = f"""ALTERNATIVE: tollgate as an Istio WasmPlugin from the OCI image. Use this OR install/oci-envoyfilter.yaml
OR install/file-module.yaml.

What it cannot do: hold request headers until tollgate decides. A WasmPlugin has no field for Envoy's
allow_on_headers_stop_iteration ({SRC['extensions']}), and an EnvoyFilter cannot add it to the
WasmPlugin's config ({SRC['envoyfilter_ecds']}). A call that a budget or a redaction block refuses then has
its request headers (path, API key) sent to the provider before tollgate refuses it and the gateway resets
that upstream stream: the body never leaves, but the provider sees the request start and the gateway opens a
provider connection per refused call. Everything else works as with install/oci-envoyfilter.yaml."""
        plugin = {"apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin", "metadata": self.meta("tollgate"),
                  "spec": {"selector": {"matchLabels": dict(self.labels)},
                           "url": f"oci://{self.v['image']['repository']}:{self.v['image']['tag']}",
                           "sha256": self.digest_hex, "imagePullPolicy": "IfNotPresent",
                           "pluginName": "tollgate",
                           "failStrategy": {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSED": "FAIL_CLOSE",
                                            "FAIL_RELOAD": "FAIL_RELOAD"}[self.failure],
                           "pluginConfig": self.plugin}}
        buffer = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
                  "metadata": self.meta("tollgate-buffer-limit"),
                  "spec": {"workloadSelector": self.selector(), "configPatches": [self.listener_patch()]}}
        return yaml_file(header, [
            (f"""sha256 is the image MANIFEST digest `make image` prints, which Istio compares ({SRC['imagefetcher']});
a digest of plugin.wasm or of the layer fails with a checksum mismatch. No phase: the filter runs last,
just before the router. For a private registry add imagePullSecret (a Secret in {self.ns}).""", plugin),
            ("""WasmPlugin has no buffer setting: this raises the gateway listeners' limit so that request bodies up to
it reach tollgate instead of a 413 from Envoy.""", buffer),
        ])

    def install_file(self) -> str:
        path = self.v["file_module"]["directory"].rstrip("/") + "/plugin.wasm"
        doc = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter", "metadata": self.meta("tollgate"),
               "spec": {"workloadSelector": self.selector(), "configPatches": [
                   {"applyTo": "HTTP_FILTER", "match": self.router_match(), "patch": {
                       "operation": "INSERT_BEFORE", "value": {
                           "name": "envoy.filters.http.wasm",
                           "typed_config": {"@type": WASM_TYPE,
                                            "config": self.wasm_config({"local": {"filename": path}})}}}},
                   self.listener_patch()]}}
        header = f"""ALTERNATIVE: tollgate from a file on the gateway pod, for gateways whose agent may not pull images.
Use this OR install/oci-envoyfilter.yaml OR install/wasmplugin.yaml.

The module comes from helm/gateway-values-file-module.yaml: an init container copies plugin.wasm out of the
same OCI image (pinned by digest) into an emptyDir mounted at {self.v['file_module']['directory']}, so the module's size is
not bound by a ConfigMap's 1 MiB. The istio/gateway chart mounts it with its volumes/volumeMounts values;
the sidecar.istio.io/userVolume annotations do nothing on a gateway: only the sidecar injection template
reads them, not the gateway one ({SRC['injection']}).
Same settings as install/oci-envoyfilter.yaml (header hold: Istio 1.28 or later)."""
        return yaml_file(header, [("""1. The Wasm filter before the router, module from the mounted file.
2. Room for whole request bodies (the listener's 1 MiB default would answer 413).""", doc)])

    def collector_cluster_file(self) -> str:
        host, port = self.collector
        doc = {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
               "metadata": self.meta("tollgate-otel-collector"),
               "spec": {"workloadSelector": self.selector(), "configPatches": [{
                   "applyTo": "CLUSTER", "match": {"context": "GATEWAY"}, "patch": {"operation": "ADD", "value": {
                       "name": self.collector_cluster, "type": "STRICT_DNS", "connect_timeout": "2s",
                       "load_assignment": {"cluster_name": self.collector_cluster, "endpoints": [{"lb_endpoints": [
                           {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}]}]}}}}]}}
        header = f"""The OTLP/HTTP collector cluster tollgate exports to (otlp.cluster "{self.collector_cluster}" in plugin-config.json):
dispatch_http_call needs an Envoy cluster name, and a gateway only gets clusters for hosts routed through it.
Plain HTTP/1.1 to {host}:{port}: the collector's port must accept plaintext (PeerAuthentication PERMISSIVE
for it) or run outside the mesh. Alternative: annotate the collector Service with
networking.istio.io/always-include-in-gateways: "true" and set otlp.cluster to
outbound|{port}||{host} (that cluster gets Istio mTLS)."""
        return yaml_file(header, [("", doc)])

    def lockdown_file(self) -> str:
        sidecar = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
                   "metadata": self.meta("default", self.v["gateway"]["mesh_root_namespace"]),
                   "spec": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}}
        header = """Egress lockdown for sidecars: only hosts in the registry are reachable, so an app cannot reach a
provider (or anything else outside) except through entries like those in providers/.

A Sidecar named "default" without a workloadSelector in the mesh's root namespace is the default for
every namespace that has no Sidecar of its own. Namespaces with their own Sidecar must set
outboundTrafficPolicy.mode: REGISTRY_ONLY themselves, or set it mesh-wide (mesh-config.yaml).
Sidecars do not apply to gateways."""
        return yaml_file(header, [("", sidecar)])

    def meshconfig_file(self) -> str:
        iop = {"apiVersion": "install.istio.io/v1alpha1", "kind": "IstioOperator",
               "metadata": self.meta("tollgate-mesh-settings"),
               "spec": {"meshConfig": {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                                       "defaultConfig": {"proxyStatsMatcher": {"inclusionPrefixes": ["wasmcustom"]}}}}}
        header = """Mesh-wide settings, as an IstioOperator fragment for `istioctl install -f` (with Helm, set the same under
the istiod chart's meshConfig):
- outboundTrafficPolicy REGISTRY_ONLY: the egress lockdown for every sidecar, whatever Sidecar resources say;
- proxyStatsMatcher wasmcustom: keep tollgate's Envoy stats (helm/gateway-values.yaml does it for the
  gateway pods alone)."""
        return yaml_file(header, [("", iop)])

    def authz_file(self) -> str:
        allowed = self.v["gateway"].get("allowed_namespaces") or []
        source = {"namespaces": allowed} if allowed else {"principals": [f"{self.td}/*"]}
        doc = {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
               "metadata": self.meta("tollgate-egress-callers"),
               "spec": {"selector": {"matchLabels": dict(self.labels)}, "action": "ALLOW",
                        "rules": [{"from": [{"source": source}], "to": [{"operation": {"ports": ["443"]}}]}]}}
        who = (f"workloads in namespaces {', '.join(allowed)}" if allowed else
               f"any workload with an identity of trust domain {self.td} (gateway.allowed_namespaces in values.json narrows it)")
        header = f"""Who may use the egress gateway: {who},
over Istio mTLS on 443 (the servers of providers/). Anything else, including callers without a mesh
identity, is denied: an ALLOW policy denies what it does not match."""
        return yaml_file(header, [("", doc)])

    def networkpolicy_file(self) -> str:
        app = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "egress-only-inside-the-cluster", "namespace": "my-app"},
               "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                   {"to": [{"namespaceSelector": {}}]},
                   {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}
        header = """EXAMPLE (edit the namespace): pods of an app namespace may reach pods inside the cluster (the egress
gateway included) and DNS, but no address outside it. This covers what the mesh cannot: pods without a
sidecar, and pods whose sidecar is bypassed (traffic.sidecar.istio.io/excludeOutboundIPRanges or
excludeOutboundPorts annotations, or an init container that changed iptables). It needs a CNI that enforces
NetworkPolicy (Calico, Cilium, ...; kind's default does not). The Kubernetes API server is not a pod: add an
ipBlock for it if the apps call it.

The egress gateway's own namespace needs no policy to reach providers; if it has a default-deny policy,
allow its pods egress to 0.0.0.0/0 on TCP 443 (and DNS, istiod on 15012, the collector)."""
        return yaml_file(header, [("", app)])

    def helm_values(self) -> str:
        g = self.v["gateway"]
        values = {
            "labels": dict(self.labels, app=g["service"]),
            "serviceAccount": {"name": g["service_account"]},
            "service": {"type": "ClusterIP", "ports": [
                {"name": "status-port", "port": 15021, "protocol": "TCP", "targetPort": 15021},
                {"name": "https", "port": 443, "protocol": "TCP", "targetPort": 443}]},
            "podAnnotations": {"proxy.istio.io/config": json.dumps(
                {"proxyStatsMatcher": {"inclusionPrefixes": ["wasmcustom"]}}, separators=(",", ":"))},
        }
        header = f"""Helm values for the istio/gateway chart (the egress gateway tollgate runs in):
  helm install {g['service']} istio/gateway -n {self.ns} -f istio/generated/helm/gateway-values.yaml
The pods carry the labels every manifest selects; the Service is internal and serves only 443 (the Istio
mTLS servers of providers/) besides the status port; Envoy keeps tollgate's wasmcustom.* stats, which Istio
drops otherwise. Chart values: {SRC['gateway_chart']}."""
        return comment_lines(header) + "# Generated by istio/generate.py from istio/values.json: edit that. Source " \
            "paths are files of the istio/istio repository.\n" + \
            "\n".join(emit(values)) + "\n"

    def helm_values_file_module(self) -> str:
        d = self.v["file_module"]["directory"]
        values = {
            "volumes": [{"name": "tollgate-wasm", "emptyDir": {"sizeLimit": "16Mi"}}],
            "initContainers": [{
                "name": "tollgate-wasm",
                "image": self.v["file_module"]["fetcher_image"],
                "command": ["sh", "-c", f"crane export {self.image_ref} - | tar -xf - -C /wasm plugin.wasm"],
                "volumeMounts": [{"name": "tollgate-wasm", "mountPath": "/wasm"}],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}},
            }],
            "volumeMounts": [{"name": "tollgate-wasm", "mountPath": d, "readOnly": True}],
        }
        header = f"""Helm values for install/file-module.yaml only, on top of gateway-values.yaml:
  helm install ... -f istio/generated/helm/gateway-values.yaml -f istio/generated/helm/gateway-values-file-module.yaml
An init container (crane, which verifies what it pulls against the digest) copies plugin.wasm out of the
image {self.image_ref} into an emptyDir that the gateway's istio-proxy container mounts at {d}: the
chart's volumes, initContainers and volumeMounts values ({SRC['gateway_chart']}). Not the
sidecar.istio.io/userVolume annotations, which the gateway injection template ignores ({SRC['injection']}).
For a private registry, give the init container a docker config (DOCKER_CONFIG and a mounted Secret).
On Kubernetes with image volumes (the ImageVolume feature), a volume with `image: {{reference: ...}}`
can mount the image directly instead of the init container."""
        return comment_lines(header) + "# Generated by istio/generate.py from istio/values.json: edit that. Source " \
            "paths are files of the istio/istio repository.\n" + \
            "\n".join(emit(values)) + "\n"

    def files(self) -> dict[str, str]:
        out = {
            "helm/gateway-values.yaml": self.helm_values(),
            "helm/gateway-values-file-module.yaml": self.helm_values_file_module(),
            "base/egress-lockdown.yaml": self.lockdown_file(),
            "base/authorization-policy.yaml": self.authz_file(),
            "base/collector-cluster.yaml": self.collector_cluster_file(),
            "install/oci-envoyfilter.yaml": self.install_oci(),
            "install/wasmplugin.yaml": self.install_wasmplugin(),
            "install/file-module.yaml": self.install_file(),
            "mesh/mesh-config.yaml": self.meshconfig_file(),
            "mesh/networkpolicy-example.yaml": self.networkpolicy_file(),
        }
        for p in self.providers:
            out[f"providers/{p['id']}.yaml"] = self.provider_file(p)
        return out


def load(values_path: str, plugin_path: str) -> Install:
    with open(values_path, encoding="utf-8") as f:
        values = json.load(f)
    with open(plugin_path, encoding="utf-8") as f:
        plugin = json.load(f)
    return Install(values, plugin)


def existing(root: str) -> dict[str, str]:
    found = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, encoding="utf-8") as f:
                found[os.path.relpath(p, root)] = f.read()
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Render istio/generated/ from istio/values.json and plugin-config.json")
    ap.add_argument("--check", action="store_true", help="fail if istio/generated/ is not what would be written")
    ap.add_argument("--out", default=OUT, help="where to write (default istio/generated)")
    ap.add_argument("--values", default=os.path.join(HERE, "values.json"), help="default istio/values.json")
    ap.add_argument("--plugin-config", default=os.path.join(HERE, "plugin-config.json"),
                    help="default istio/plugin-config.json")
    args = ap.parse_args(argv)
    files = load(args.values, args.plugin_config).files()
    if args.check:
        have = existing(args.out) if os.path.isdir(args.out) else {}
        stale = sorted(k for k in set(files) | set(have) if files.get(k) != have.get(k))
        if stale:
            print("istio/generated is out of date; run python3 istio/generate.py. Differs: " + ", ".join(stale))
            return 1
        return 0
    for rel in set(existing(args.out)) - set(files) if os.path.isdir(args.out) else ():
        os.remove(os.path.join(args.out, rel))
    for rel, text in files.items():
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    print(f"wrote {len(files)} files under {os.path.relpath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
