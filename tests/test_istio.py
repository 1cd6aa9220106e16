"""The Istio install (istio/generated/, rendered by istio/generate.py) against Istio's own schemas and rules.

- Up to date: the checked-in manifests are exactly what the generator makes from istio/values.json and
  istio/plugin-config.json.
- Schemas: every Istio object validates against the CRD schemas of the oldest and the newest Istio release
  the compatibility matrix claims (tests/fixtures/istio-crds, extracted from istio/istio at the tags), with
  unknown fields rejected as `kubectl apply`'s strict field validation does, and with the CRDs' CEL rules
  (x-kubernetes-validations) evaluated by cel-python. Kubernetes objects (the NetworkPolicy, the pod spec the
  Helm values produce) validate against Kubernetes' own schemas (kubernetes-validate). The Helm values
  validate against the istio/gateway chart's values.schema.json of both releases.
- Envoy: the Envoy configuration inside the EnvoyFilters (and what Istio makes of the WasmPlugin) runs
  through `envoy --mode validate` (Envoy 1.40), with a stub module and with the real one.
- Facts: each property the install must have is asserted on the rendered objects (no userVolume annotations
  on a gateway, SAN on every TLS DestinationRule, no port 443 exported to apps, ISTIO_MUTUAL from sidecars
  to the gateway, the header hold and the buffer limit, the digest Istio compares, ...).
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
ISTIO = REPO / "istio"
GEN = ISTIO / "generated"
CRDS = REPO / "tests" / "fixtures" / "istio-crds"
# The matrix's oldest and newest Istio releases (docs/operations.md, "Compatibility").
ISTIO_VERSIONS = ["1.28.0", "1.30.3"]
PROVIDER_IDS = {"openai", "azure-openai", "anthropic", "gemini", "vertex", "bedrock", "mistral", "cohere",
                "self-hosted"}

sys.path.insert(0, str(REPO / "tests"))
from test_deploy_configs import (  # noqa: E402
    check_plugin_config, envoy, real_wasm, rewrite_for_validation, run_envoy_validate, stub_wasm, walk)

__all__ = ["envoy", "stub_wasm"]  # pytest fixtures used below


def rel(p: Path) -> str:
    return str(p.relative_to(REPO))


def docs_of(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


MANIFESTS = sorted(p for p in GEN.rglob("*.yaml") if "helm" not in p.parts)
HELM_VALUES = sorted((GEN / "helm").glob("*.yaml"))


def all_docs() -> list[tuple[str, dict]]:
    return [(f"{rel(p)}#{i}", d) for p in MANIFESTS for i, d in enumerate(docs_of(p))]


def by_kind(kind: str) -> list[tuple[str, dict]]:
    return [(src, d) for src, d in all_docs() if d["kind"] == kind]


def values() -> dict:
    return json.loads((ISTIO / "values.json").read_text())


def plugin_config() -> dict:
    return json.loads((ISTIO / "plugin-config.json").read_text())


# --- the generator ------------------------------------------------------------------------------------


def test_generated_manifests_are_up_to_date():
    res = subprocess.run([sys.executable, str(ISTIO / "generate.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_generator_check_catches_a_stale_file(tmp_path):
    out = tmp_path / "generated"
    subprocess.run([sys.executable, str(ISTIO / "generate.py"), "--out", str(out)], check=True, capture_output=True)
    stale = out / "providers" / "openai.yaml"
    stale.write_text(stale.read_text().replace("subjectAltNames", "subjectAltNamez"))
    res = subprocess.run([sys.executable, str(ISTIO / "generate.py"), "--check", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "providers/openai.yaml" in res.stdout


def test_one_manifest_set_per_supported_provider():
    assert {p.stem for p in (GEN / "providers").glob("*.yaml")} == PROVIDER_IDS
    # Nothing left of the hand-written files the generator replaced.
    assert not list(ISTIO.glob("*.yaml"))


# --- schemas ------------------------------------------------------------------------------------------


def load_schemas(version: str) -> dict:
    with gzip.open(CRDS / f"istio-{version}.json.gz") as f:
        return json.load(f)


def strict(schema):
    """The schema with unknown fields rejected where Kubernetes' structural schema would prune them (kubectl's
    strict field validation reports them): objects with `properties` and no additionalProperties, unless they
    preserve unknown fields (protobuf Struct values: EnvoyFilter patches, WasmPlugin pluginConfig)."""
    schema = copy.deepcopy(schema)

    def visit(s):
        if isinstance(s, dict):
            if ("properties" in s and "additionalProperties" not in s
                    and not s.get("x-kubernetes-preserve-unknown-fields")):
                s["additionalProperties"] = False
            for v in s.values():
                visit(v)
        elif isinstance(s, list):
            for v in s:
                visit(v)

    visit(schema)
    return schema


def cel_functions():
    """The Kubernetes CEL library functions Istio's rules use that cel-python lacks."""
    import celpy.celtypes as ct

    def substring(s, start, end=None):
        return ct.StringType(str(s)[int(start):] if end is None else str(s)[int(start):int(end)])

    def is_url(s):
        u = urlparse(str(s))
        return ct.BoolType(bool(u.scheme and (u.netloc or u.path)))

    return {"substring": substring, "isURL": is_url, "url": lambda s: s,
            "getScheme": lambda u: ct.StringType(urlparse(str(u)).scheme)}


def cel_errors(schema, value, path="") -> tuple[list[str], int]:
    """Evaluate every x-kubernetes-validations rule on `value` where the schema has one: (failures, rules
    evaluated). Transition rules (oldSelf) need an old object and do not apply to a create."""
    import celpy

    errors, count = [], 0
    env = celpy.Environment()
    for rule in schema.get("x-kubernetes-validations", []) or []:
        if "oldSelf" in rule["rule"]:
            continue
        prog = env.program(env.compile(rule["rule"]), functions=cel_functions())
        count += 1
        try:
            ok = prog.evaluate({"self": celpy.json_to_cel(value)})
        except Exception as e:  # an evaluation error is a validation failure in Kubernetes too
            ok = e
        if ok is not True and not (hasattr(ok, "__bool__") and ok is not None and bool(ok) is True
                                   and not isinstance(ok, Exception)):
            errors.append(f"{path or '.'}: {rule.get('message', rule['rule'])} ({ok})")
    if isinstance(value, dict):
        for k, v in value.items():
            sub = (schema.get("properties") or {}).get(k)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if sub:
                e, n = cel_errors(sub, v, f"{path}.{k}")
                errors += e
                count += n
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            e, n = cel_errors(schema["items"], v, f"{path}[{i}]")
            errors += e
            count += n
    return errors, count


def schema_errors(schemas: dict, doc: dict) -> tuple[list[str], int]:
    import jsonschema

    group_version, kind = doc["apiVersion"], doc["kind"]
    schema = schemas.get(f"{group_version}/{kind}")
    if schema is None:
        return [f"no schema for {group_version} {kind}"], 0
    # Kubernetes supplies apiVersion, kind and metadata (ObjectMeta) to every CRD; the CRD schema has the rest.
    root = strict(schema)
    root["properties"].update({"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                               "metadata": {"type": "object", "required": ["name"]}})
    validator = jsonschema.Draft4Validator(root)
    errors = [f"{'.'.join(map(str, e.absolute_path)) or '.'}: {e.message}" for e in validator.iter_errors(doc)]
    cel, count = cel_errors(schema, doc)
    return errors + cel, count


ISTIO_DOCS = [(src, d) for src, d in all_docs() if d["apiVersion"].split("/")[0].endswith("istio.io")
              and d["kind"] != "IstioOperator"]


@pytest.mark.parametrize("version", ISTIO_VERSIONS)
def test_every_istio_object_matches_the_crd_schemas(version):
    schemas = load_schemas(version)["schemas"]
    bad, rules = [], 0
    for src, doc in ISTIO_DOCS:
        errors, n = schema_errors(schemas, doc)
        rules += n
        bad += [f"{src} {doc['kind']}: {e}" for e in errors]
    assert not bad, "\n".join(bad)
    assert len(ISTIO_DOCS) > 60 and rules > 100, (len(ISTIO_DOCS), rules)


@pytest.mark.parametrize("version", ISTIO_VERSIONS)
def test_schema_check_catches_mistakes(version):
    """The check is only evidence if it fails: an unknown field, a wrong enum, a CEL rule."""
    schemas = load_schemas(version)["schemas"]
    dr = next(d for _, d in by_kind("DestinationRule") if "trafficPolicy" in d["spec"])
    typo = copy.deepcopy(dr)
    typo["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["snii"] = "x"
    assert any("snii" in e for e in schema_errors(schemas, typo)[0])
    enum = copy.deepcopy(dr)
    enum["spec"]["trafficPolicy"]["portLevelSettings"][0]["tls"]["mode"] = "ISTIO_MUTUALL"
    assert schema_errors(schemas, enum)[0]
    vs = copy.deepcopy(next(d for _, d in by_kind("VirtualService")))
    vs["spec"]["http"][0]["timeout"] = "-1s"  # a CEL rule: durations must be >= 1ms
    assert any("duration" in e.lower() or "timeout" in e.lower() for e in schema_errors(schemas, vs)[0]), \
        schema_errors(schemas, vs)
    wp = copy.deepcopy(next(d for _, d in by_kind("WasmPlugin")))
    wp["spec"]["failStrategy"] = "FAIL_OPENN"
    assert schema_errors(schemas, wp)[0]


@pytest.mark.parametrize("version", ISTIO_VERSIONS)
def test_helm_values_match_the_gateway_chart_schema(version):
    import jsonschema

    schema = load_schemas(version)["gateway_values_schema"]
    for path in HELM_VALUES:
        errors = list(jsonschema.Draft7Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
        assert not errors, f"{rel(path)}: {[e.message for e in errors]}"
    bad = {"volumez": []}
    assert list(jsonschema.Draft7Validator(schema).iter_errors(bad)), "the chart schema must reject unknown values"


def gateway_pod(values_files: list[Path]) -> dict:
    """The pod spec the istio/gateway chart's templates/deployment.yaml makes of these values (the parts the
    values set: volumes, initContainers, the istio-proxy container's volumeMounts)."""
    merged: dict = {}
    for p in values_files:
        merged.update(yaml.safe_load(p.read_text()))
    proxy = {"name": "istio-proxy", "image": "auto"}
    if merged.get("volumeMounts"):
        proxy["volumeMounts"] = merged["volumeMounts"]
    spec = {"containers": [proxy]}
    for key in ("volumes", "initContainers"):
        if merged.get(key):
            spec[key] = merged[key]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "istio-egressgateway"}, "spec": spec}


def test_kubernetes_objects_match_kubernetes_schemas():
    import kubernetes_validate

    pod = gateway_pod(HELM_VALUES)
    assert pod["spec"]["volumes"] and pod["spec"]["initContainers"]
    for version in ("1.29.0", "1.37.0"):
        kubernetes_validate.validate(pod, version, strict=True)
        for src, doc in all_docs():
            if doc["apiVersion"] == "networking.k8s.io/v1":
                kubernetes_validate.validate(doc, version, strict=True)
    broken = copy.deepcopy(pod)
    broken["spec"]["initContainers"][0]["securityContext"]["runAsNonRoots"] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.37.0", strict=True)


# --- Envoy ---------------------------------------------------------------------------------------------


def gateway_listener(http_filters: list[dict]) -> dict:
    return {
        "name": "gateway",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 18443}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                         ".HttpConnectionManager",
                "stat_prefix": "gw", "route_config": {"virtual_hosts": []},
                "http_filters": http_filters + [{
                    "name": "envoy.filters.http.router",
                    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
            }}]}],
    }


def install_bootstrap(install: Path, wasm: Path) -> tuple[dict, list[str]]:
    """An Envoy bootstrap with what one install/ variant and base/collector-cluster.yaml give the gateway:
    the Wasm filter (an ECDS extension config is placed where config_discovery names it; a WasmPlugin becomes
    what pilot/pkg/model/extensions.go builds), the listener patch, the collector cluster."""
    filters, clusters, listener_patch, plugins = [], [], {}, []
    ecds = {}
    docs = docs_of(install) + docs_of(GEN / "base" / "collector-cluster.yaml")
    for doc in docs:
        spec = doc["spec"]
        if doc["kind"] == "EnvoyFilter":
            for patch in spec["configPatches"]:
                value = patch["patch"].get("value")
                if patch["applyTo"] == "EXTENSION_CONFIG":
                    ecds[value["name"]] = value["typed_config"]
                elif patch["applyTo"] == "HTTP_FILTER":
                    filters.append(value)
                elif patch["applyTo"] == "CLUSTER":
                    clusters.append(value)
                elif patch["applyTo"] == "LISTENER":
                    listener_patch.update(value)
        elif doc["kind"] == "WasmPlugin":
            plugins.append(spec["pluginConfig"])
            filters.append({"name": f"{doc['metadata']['namespace']}.{doc['metadata']['name']}", "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {"name": f"{doc['metadata']['namespace']}.{doc['metadata']['name']}",
                           "root_id": spec["pluginName"],
                           "failure_policy": {"FAIL_CLOSE": "FAIL_CLOSED"}.get(spec["failStrategy"],
                                                                                spec["failStrategy"]),
                           "vm_config": {"runtime": "envoy.wasm.runtime.v8",
                                         "code": {"local": {"filename": "/agent/fetched.wasm"}}},
                           "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                             "value": json.dumps(spec["pluginConfig"])}}}})
    for f in filters:
        if "config_discovery" in f:
            # What Envoy receives over ECDS once the agent has rewritten remote code to its local cache file.
            tc = copy.deepcopy(ecds[f.pop("name")])
            assert f.pop("config_discovery")["type_urls"] == [tc["@type"]]
            tc["config"]["vm_config"]["code"] = {"local": {"filename": "/agent/fetched.wasm"}}
            f.update({"name": "tollgate", "typed_config": tc})
    listener = gateway_listener(filters)
    listener.update(listener_patch)
    tree = {"static_resources": {"listeners": [listener], "clusters": clusters}}
    names = {c["name"] for c in clusters}
    errors = []
    for cfg in plugins + [json.loads(c["configuration"]["value"]) for c in wasm_configs(tree)]:
        errors += check_plugin_config(cfg, rel(install), names)
    return rewrite_for_validation(tree, wasm), errors


def wasm_configs(tree) -> list[dict]:
    out = []
    for _, d in walk(tree):
        tc = d.get("typed_config")
        if isinstance(tc, dict) and tc.get("@type", "").endswith("envoy.extensions.filters.http.wasm.v3.Wasm"):
            out.append(tc["config"])
    return out


INSTALLS = sorted((GEN / "install").glob("*.yaml"))


@pytest.mark.parametrize("install", INSTALLS, ids=lambda p: p.name)
def test_install_variant_validates_in_envoy(install: Path, envoy: str, stub_wasm: Path, tmp_path: Path):
    tree, errors = install_bootstrap(install, stub_wasm)
    assert not errors, errors
    assert len(wasm_configs(tree)) == 1
    res = run_envoy_validate(envoy, tree, tmp_path, install.stem)
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    wasm = real_wasm()
    if wasm is not None:
        tree, _ = install_bootstrap(install, wasm)
        res = run_envoy_validate(envoy, tree, tmp_path, install.stem + "-real")
        assert res.returncode == 0, f"the real module rejects {rel(install)}:\n{res.stdout}\n{res.stderr}"


def test_ecds_filter_reference_validates_in_envoy(envoy: str, tmp_path: Path):
    """The recommended install's HTTP filter names its configuration over ECDS (config_discovery) instead of
    carrying it; that reference, with the ADS source Istio serves it from, must be valid Envoy config too."""
    (ef,) = docs_of(GEN / "install" / "oci-envoyfilter.yaml")
    (use,) = [p for p in ef["spec"]["configPatches"] if p["applyTo"] == "HTTP_FILTER"]
    (ecds,) = [p for p in ef["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG"]
    value = use["patch"]["value"]
    assert value["name"] == ecds["patch"]["value"]["name"]
    tree = {
        "dynamic_resources": {"ads_config": {"api_type": "GRPC", "grpc_services": [
            {"envoy_grpc": {"cluster_name": "xds-grpc"}}]}},
        "node": {"id": "gateway", "cluster": "gateway"},
        "static_resources": {"listeners": [gateway_listener([value])], "clusters": [{
            "name": "xds-grpc", "type": "STATIC", "connect_timeout": "1s",
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}}}},
            "load_assignment": {"cluster_name": "xds-grpc", "endpoints": [{"lb_endpoints": [{"endpoint": {
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": 15010}}}}]}]}}]},
    }
    res = run_envoy_validate(envoy, tree, tmp_path, "ecds-reference")
    assert res.returncode == 0, f"{res.stdout}\n{res.stderr}"
    broken = copy.deepcopy(tree)
    broken["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"][
        "http_filters"][0]["config_discovery"]["type_urls"] = []
    assert run_envoy_validate(envoy, broken, tmp_path, "ecds-broken").returncode != 0


# --- facts ---------------------------------------------------------------------------------------------


def test_no_user_volume_annotations_anywhere():
    """The gateway injection template does not read sidecar.istio.io/userVolume(Mount); the chart's
    volumes/volumeMounts values mount the module instead."""
    for path in sorted(ISTIO.rglob("*")):
        if path.is_file() and path.suffix in {".yaml", ".json"}:
            text = path.read_text()
            for line in text.splitlines():
                if "userVolume" in line:
                    assert line.lstrip().startswith("#"), f"{rel(path)}: {line}"


def test_module_mount_and_file_install_agree():
    v = values()
    file_values = yaml.safe_load((GEN / "helm" / "gateway-values-file-module.yaml").read_text())
    (mount,) = file_values["volumeMounts"]
    (vol,) = file_values["volumes"]
    (init,) = file_values["initContainers"]
    assert mount["name"] == vol["name"] and mount["readOnly"] is True and "emptyDir" in vol
    assert mount["mountPath"] == v["file_module"]["directory"]
    (ef,) = docs_of(GEN / "install" / "file-module.yaml")
    (cfg,) = wasm_configs(ef)
    filename = cfg["vm_config"]["code"]["local"]["filename"]
    assert filename == mount["mountPath"] + "/plugin.wasm"
    # The init container writes plugin.wasm into the volume, from the image pinned by digest.
    image_ref = f"{v['image']['repository']}@{v['image']['digest']}"
    assert image_ref in init["command"][-1] and "/wasm plugin.wasm" in init["command"][-1]
    assert {m["mountPath"] for m in init["volumeMounts"]} == {"/wasm"}


def test_oci_installs_pin_the_manifest_digest():
    """Istio compares the image manifest digest (pkg/wasm/imagefetcher.go); `make image` prints it."""
    v = values()
    digest = v["image"]["digest"]
    hexd = digest.split(":")[1]
    (ef,) = docs_of(GEN / "install" / "oci-envoyfilter.yaml")
    ecds = next(p for p in ef["spec"]["configPatches"] if p["applyTo"] == "EXTENSION_CONFIG")
    remote = ecds["patch"]["value"]["typed_config"]["config"]["vm_config"]["code"]["remote"]
    assert remote["http_uri"]["uri"] == f"oci://{v['image']['repository']}@{digest}"
    assert remote["sha256"] == hexd
    wp = next(d for d in docs_of(GEN / "install" / "wasmplugin.yaml") if d["kind"] == "WasmPlugin")
    assert wp["spec"]["sha256"] == hexd and wp["spec"]["url"].startswith("oci://")
    assert "MANIFEST digest" in (GEN / "install" / "wasmplugin.yaml").read_text()


def test_every_install_holds_headers_and_raises_the_buffer_limit():
    limit = values()["request_buffer_bytes"]
    # tollgate holds bodies up to max_request_body: at most what the listener buffers (Envoy answers 413
    # beyond it), and as much, so the raised limit is used. tollgate's own default is Envoy's 1 MiB.
    assert plugin_config()["max_request_body"] == limit
    for install in INSTALLS:
        efs = [d for d in docs_of(install) if d["kind"] == "EnvoyFilter"]
        patches = [p for ef in efs for p in ef["spec"]["configPatches"]]
        listener = [p for p in patches if p["applyTo"] == "LISTENER"]
        assert len(listener) == 1, install.name
        assert listener[0]["match"]["context"] == "GATEWAY"
        assert listener[0]["patch"] == {"operation": "MERGE", "value": {"per_connection_buffer_limit_bytes": limit}}
        configs = [c for p in patches for c in wasm_configs(p)]
        if install.name == "wasmplugin.yaml":
            # No WasmPlugin field sets it (pilot/pkg/model/extensions.go); the file says what is lost.
            assert not configs
            assert "What it cannot do: hold request headers" in install.read_text()
        else:
            (cfg,) = configs
            assert cfg["allow_on_headers_stop_iteration"] is True, install.name
            assert cfg["failure_policy"] == values()["failure_policy"]


def test_the_plugin_json_is_written_once():
    want = plugin_config()
    seen = 0
    for install in INSTALLS:
        for doc in docs_of(install):
            if doc["kind"] == "WasmPlugin":
                assert doc["spec"]["pluginConfig"] == want
                seen += 1
            for cfg in wasm_configs(doc):
                assert json.loads(cfg["configuration"]["value"]) == want
                seen += 1
    assert seen == 3
    # The Istio default: tenants are the calling workload's namespace, from its mTLS identity.
    assert want["tenant"]["peer_identity"] == "{namespace}"


def provider_objects(pid: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for d in docs_of(GEN / "providers" / f"{pid}.yaml"):
        out.setdefault(d["kind"], []).append(d)
    return out


def test_no_port_443_service_entry_is_visible_to_apps():
    for src, se in by_kind("ServiceEntry"):
        ports = {(p["number"], p["protocol"]) for p in se["spec"]["ports"]}
        if se["spec"].get("exportTo") == ["."]:
            continue
        # Visible beyond the gateway's namespace: plain HTTP on 80 only.
        assert ports == {(80, "HTTP")}, f"{src}: {ports} exported to {se['spec'].get('exportTo', ['*'])}"


def test_sidecar_to_gateway_is_istio_mutual_and_gateway_to_provider_checks_san():
    gw_host = f"{values()['gateway']['service']}.{values()['gateway']['namespace']}.svc.cluster.local"
    for pid in sorted(PROVIDER_IDS):
        objs = provider_objects(pid)
        assert set(objs) == {"ServiceEntry", "Gateway", "VirtualService", "DestinationRule"}, pid
        app_se = next(s for s in objs["ServiceEntry"] if s["spec"].get("exportTo") == ["*"])
        (host,) = app_se["spec"]["hosts"]
        # The gateway listens for this host only with Istio mTLS; no plaintext server anywhere.
        (gw,) = objs["Gateway"]
        (server,) = gw["spec"]["servers"]
        assert server["hosts"] == [host] and server["tls"] == {"mode": "ISTIO_MUTUAL"}
        assert server["port"]["protocol"] == "HTTPS" and server["port"]["number"] == 443
        mesh = next(v for v in objs["VirtualService"] if v["spec"]["gateways"] == ["mesh"])
        leg2 = next(v for v in objs["VirtualService"] if v["spec"]["gateways"] != ["mesh"])
        (route,) = mesh["spec"]["http"]
        dest = route["route"][0]["destination"]
        assert dest["host"] == gw_host and dest["port"]["number"] == 443
        assert route["retries"] == {"attempts": 0} and leg2["spec"]["http"][0]["retries"] == {"attempts": 0}
        subset_dr = next(d for d in objs["DestinationRule"] if d["spec"]["host"] == gw_host)
        (subset,) = subset_dr["spec"]["subsets"]
        assert subset["name"] == dest["subset"]
        (pls,) = subset["trafficPolicy"]["portLevelSettings"]
        assert pls["port"]["number"] == 443 and pls["tls"] == {"mode": "ISTIO_MUTUAL", "sni": host}
        # Leg 2 goes to the gateway-only upstream entry, whose DestinationRule originates TLS with SAN = host.
        assert leg2["spec"]["exportTo"] == ["."]
        assert leg2["spec"]["gateways"] == [f"{gw['metadata']['namespace']}/{gw['metadata']['name']}"]
        upstream = leg2["spec"]["http"][0]["route"][0]["destination"]
        up_se = next(s for s in objs["ServiceEntry"] if s["spec"]["hosts"] == [upstream["host"]])
        assert up_se["spec"]["exportTo"] == ["."] and up_se["spec"]["endpoints"] == [{"address": host}]
        up_dr = next(d for d in objs["DestinationRule"] if d["spec"]["host"] == upstream["host"])
        assert up_dr["spec"]["exportTo"] == ["."]


def test_every_tls_destination_rule_verifies_the_providers_name():
    """With sni set, Istio adds no automatic SAN check (pilot/pkg/networking/core/cluster_tls.go)."""
    seen = 0
    for src, dr in by_kind("DestinationRule"):
        policies = [dr["spec"].get("trafficPolicy") or {}]
        policies += [s.get("trafficPolicy") or {} for s in dr["spec"].get("subsets", [])]
        for tp in policies:
            for tls in [tp.get("tls")] + [p.get("tls") for p in tp.get("portLevelSettings", [])]:
                if tls and tls["mode"] in ("SIMPLE", "MUTUAL"):
                    seen += 1
                    assert tls.get("sni") and tls.get("subjectAltNames") == [tls["sni"]], src
    assert seen == len(PROVIDER_IDS)


def test_egress_lockdown_and_gateway_authorization():
    v = values()
    (sidecar,) = [d for _, d in by_kind("Sidecar")]
    assert sidecar["metadata"]["namespace"] == v["gateway"]["mesh_root_namespace"]
    assert sidecar["metadata"]["name"] == "default" and "workloadSelector" not in sidecar["spec"]
    assert sidecar["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    (iop,) = [d for _, d in by_kind("IstioOperator")]
    assert iop["spec"]["meshConfig"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    (authz,) = [d for _, d in by_kind("AuthorizationPolicy")]
    assert authz["spec"]["selector"]["matchLabels"] == v["gateway"]["labels"]
    assert authz["spec"]["action"] == "ALLOW"
    (rule,) = authz["spec"]["rules"]
    (src,) = rule["from"]
    # Only callers with a mesh identity: principals exist only on mTLS connections.
    assert src["source"] in ({"principals": [f"{v['gateway']['trust_domain']}/*"]},
                             {"namespaces": v["gateway"]["allowed_namespaces"]})
    (np,) = [d for _, d in by_kind("NetworkPolicy")]
    assert np["spec"]["policyTypes"] == ["Egress"] and np["spec"]["podSelector"] == {}
    for rule in np["spec"]["egress"]:
        for peer in rule["to"]:
            assert "ipBlock" not in peer, "no address outside the cluster"


def test_everything_selects_the_gateway():
    labels = values()["gateway"]["labels"]
    helm = yaml.safe_load((GEN / "helm" / "gateway-values.yaml").read_text())
    assert all(helm["labels"][k] == v for k, v in labels.items())
    assert helm["service"]["type"] == "ClusterIP"
    assert {p["port"] for p in helm["service"]["ports"]} == {15021, 443}
    stats = json.loads(helm["podAnnotations"]["proxy.istio.io/config"])
    assert stats["proxyStatsMatcher"]["inclusionPrefixes"] == ["wasmcustom"]
    for src, doc in all_docs():
        spec = doc["spec"]
        if doc["kind"] == "EnvoyFilter":
            assert spec["workloadSelector"]["labels"] == labels, src
            for patch in spec["configPatches"]:
                if patch["applyTo"] != "EXTENSION_CONFIG":
                    assert patch["match"]["context"] == "GATEWAY", src
                if patch["applyTo"] == "HTTP_FILTER":
                    assert patch["patch"]["operation"] == "INSERT_BEFORE"
                    assert patch["match"]["listener"]["filterChain"]["filter"]["subFilter"]["name"] == \
                        "envoy.filters.http.router"
        elif doc["kind"] == "WasmPlugin":
            assert spec["selector"]["matchLabels"] == labels
        elif doc["kind"] == "Gateway":
            assert spec["selector"] == labels


def test_client_base_urls_keep_the_sdks_paths():
    """Each SDK appends its own path: a base URL with the version duplicated (Anthropic /v1/v1) or invented
    (Gemini, Bedrock /v1) sends every call to a path the provider does not serve."""
    text = {pid: (GEN / "providers" / f"{pid}.yaml").read_text() for pid in PROVIDER_IDS}
    assert "ANTHROPIC_BASE_URL=http://api.anthropic.com (" in text["anthropic"]
    assert '"base_url": "http://generativelanguage.googleapis.com"}' in text["gemini"]
    assert 'endpoint_url="http://bedrock-runtime.us-east-1.amazonaws.com")' in text["bedrock"]
    assert "OPENAI_BASE_URL=http://api.openai.com/v1\n" in text["openai"]
    for pid, t in text.items():
        assert "/v1/v1" not in t, pid
        for url in re.findall(r"http://[^\s\"')]+", t):
            host = urlparse(url).hostname
            assert host, (pid, url)
