#!/usr/bin/env bash
# End-to-end check of the Istio install on a throwaway kind cluster, for machines with Docker:
#   istio/kind-e2e.sh                 # OPENAI_API_KEY optional; KEEP=1 keeps the cluster afterwards
#
# What it does, in order:
#   1. a kind cluster and a local registry (registry:2 on 127.0.0.1:5001, "kind-registry:5000" inside);
#   2. `make image`, pushed to that registry unchanged (skopeo --preserve-digests, from its container image
#      when skopeo is not installed), and istio/generated/ rendered for it into a temporary directory;
#   3. Istio ${ISTIO_VERSION} by Helm (base, istiod with REGISTRY_ONLY), an OpenTelemetry Collector that
#      logs what it receives, the egress gateway from the istio/gateway chart with the generated values;
#   4. base/, install/oci-envoyfilter.yaml and providers/openai.yaml;
#   5. checks, each printed PASS or FAIL:
#      - a sidecar'd pod's http://api.openai.com call goes through the gateway and reaches OpenAI over TLS
#        with SNI and SAN checked (200 with a key, 401 without; a TLS or SAN failure would be a 503);
#      - the same pod's own https://api.openai.com fails (no route: REGISTRY_ONLY, no 443 entry for apps);
#      - a pod without a sidecar cannot use the gateway (ISTIO_MUTUAL: no client certificate, no TLS);
#      - the gateway's Envoy runs tollgate with allow_on_headers_stop_iteration and the 8 MiB buffer limit;
#      - tollgate counted the call, and its span carries the caller's namespace as the tenant.
# kind's default CNI does not enforce NetworkPolicy, so mesh/networkpolicy-example.yaml is not exercised.
# Needs: docker, kind, kubectl, helm, python3 (and make + the Rust toolchain setup for `make image`).
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-tollgate-e2e}
ISTIO_VERSION=${ISTIO_VERSION:-1.30.3}
REGISTRY=kind-registry
APP_NS=e2e-app
WORK=$(mktemp -d)
FAILED=0

pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILED=1; }
cleanup() {
  if [ "${KEEP:-0}" != 1 ]; then
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
    docker rm -f "$REGISTRY" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

for tool in docker kind kubectl helm python3; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required"; exit 2; }
done

echo "== cluster and registry"
if ! docker inspect "$REGISTRY" >/dev/null 2>&1; then
  docker run -d --restart=always -p 127.0.0.1:5001:5000 --name "$REGISTRY" registry:2 >/dev/null
fi
kind create cluster --name "$CLUSTER" --wait 120s
docker network connect kind "$REGISTRY" 2>/dev/null || true

echo "== image"
VERSION=e2e
make image IMAGE_TAG=$VERSION
DIGEST=$(cat build/oci/tollgate.digest)
if command -v skopeo >/dev/null; then
  skopeo copy --preserve-digests --dest-tls-verify=false "oci:build/oci/tollgate:$VERSION" \
    "docker://127.0.0.1:5001/tollgate:$VERSION"
else
  docker run --rm --network host -v "$PWD/build/oci:/oci:ro" quay.io/skopeo/stable:latest copy \
    --preserve-digests --dest-tls-verify=false "oci:/oci/tollgate:$VERSION" "docker://127.0.0.1:5001/tollgate:$VERSION"
fi
# Rendered for this registry: inside the cluster it is kind-registry:5000 (plain HTTP, which Istio's agent
# falls back to by itself: pkg/wasm/imagefetcher.go).
python3 - "$DIGEST" "$WORK/values.json" <<'PY'
import json, sys
v = json.load(open("istio/values.json"))
v["image"].update(repository="kind-registry:5000/tollgate", digest=sys.argv[1])
json.dump(v, open(sys.argv[2], "w"))
PY
python3 istio/generate.py --values "$WORK/values.json" --out "$WORK/generated"
GEN=$WORK/generated

echo "== Istio $ISTIO_VERSION"
helm repo add istio https://istio-release.storage.googleapis.com/charts >/dev/null 2>&1 || true
helm repo update istio >/dev/null
helm install istio-base istio/base -n istio-system --create-namespace --version "$ISTIO_VERSION" --wait
helm install istiod istio/istiod -n istio-system --version "$ISTIO_VERSION" --wait \
  --set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY

echo "== collector (outside the mesh, logs what it receives)"
kubectl create namespace observability --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -n observability -f - <<'YAML'
apiVersion: v1
kind: ConfigMap
metadata: {name: otel-collector}
data:
  config.yaml: |
    receivers: {otlp: {protocols: {http: {endpoint: 0.0.0.0:4318}}}}
    exporters: {debug: {verbosity: detailed}}
    service: {pipelines: {traces: {receivers: [otlp], exporters: [debug]}, metrics: {receivers: [otlp], exporters: [debug]}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: otel-collector}
spec:
  selector: {matchLabels: {app: otel-collector}}
  template:
    metadata: {labels: {app: otel-collector}}
    spec:
      containers:
      - name: collector
        image: otel/opentelemetry-collector-contrib:0.147.0
        args: ["--config=/conf/config.yaml"]
        volumeMounts: [{name: conf, mountPath: /conf}]
      volumes: [{name: conf, configMap: {name: otel-collector}}]
---
apiVersion: v1
kind: Service
metadata: {name: otel-collector}
spec:
  selector: {app: otel-collector}
  ports: [{name: http-otlp, port: 4318}]
YAML
kubectl -n observability rollout status deploy/otel-collector --timeout=180s

echo "== egress gateway and tollgate"
helm install istio-egressgateway istio/gateway -n istio-system --version "$ISTIO_VERSION" \
  -f "$GEN/helm/gateway-values.yaml" --wait
kubectl apply -f "$GEN/base/" -f "$GEN/install/oci-envoyfilter.yaml" -f "$GEN/providers/openai.yaml"

echo "== apps"
kubectl create namespace "$APP_NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$APP_NS" istio-injection=enabled --overwrite
kubectl create namespace e2e-nomesh --dry-run=client -o yaml | kubectl apply -f -
for ns in "$APP_NS" e2e-nomesh; do
  kubectl -n "$ns" run curl --image=curlimages/curl:8.11.1 --restart=Never --command -- sleep 3600 \
    --dry-run=client -o yaml | kubectl apply -f -
  kubectl -n "$ns" wait --for=condition=Ready pod/curl --timeout=180s
done
sleep 10  # let the gateway pull the module and receive the listeners

GW=$(kubectl -n istio-system get pod -l istio=egressgateway -o jsonpath='{.items[0].metadata.name}')
app() { kubectl -n "$APP_NS" exec curl -c curl -- "$@"; }

echo "== checks"
code=$(app curl -s -o /dev/null -w '%{http_code}' http://api.openai.com/v1/models \
  -H "authorization: Bearer ${OPENAI_API_KEY:-sk-invalid}" || true)
case "$code" in
  200|401) pass "http://api.openai.com through the gateway reached OpenAI over verified TLS ($code)";;
  *) fail "http://api.openai.com through the gateway answered $code (503: TLS, SNI or SAN; 404: routing)";;
esac
if app curl -s -o /dev/null --max-time 10 https://api.openai.com/v1/models; then
  fail "the app reached https://api.openai.com directly"
else
  pass "the app's own https://api.openai.com has no route"
fi
if kubectl -n e2e-nomesh exec curl -- curl -sk -o /dev/null --max-time 10 \
    https://istio-egressgateway.istio-system.svc.cluster.local/v1/models -H 'host: api.openai.com'; then
  fail "a pod without a sidecar used the gateway"
else
  pass "a pod without a mesh identity cannot use the gateway"
fi
dump=$(kubectl -n istio-system exec "$GW" -c istio-proxy -- pilot-agent request GET 'config_dump?include_eds=false')
if grep -q '"allow_on_headers_stop_iteration": true' <<<"$dump" && grep -q '"per_connection_buffer_limit_bytes": 8388608' <<<"$dump"; then
  pass "tollgate runs with the header hold and the 8 MiB buffer limit"
else
  fail "the gateway's config lacks allow_on_headers_stop_iteration or the buffer limit"
fi
stats=$(kubectl -n istio-system exec "$GW" -c istio-proxy -- pilot-agent request GET stats | grep 'wasmcustom.tollgate.calls' || true)
if grep -qE 'calls[^:]*: [1-9]' <<<"$stats"; then pass "tollgate counted the call"; else fail "no tollgate call counted: $stats"; fi
sleep 5
if kubectl -n observability logs deploy/otel-collector | grep -q "tollgate.tenant: Str($APP_NS)"; then
  pass "the span's tenant is the caller's namespace ($APP_NS), from its mTLS identity"
else
  fail "no span with tollgate.tenant=$APP_NS at the collector"
fi

[ "$FAILED" = 0 ] && echo "kind-e2e: all checks passed" || { echo "kind-e2e: some checks failed"; exit 1; }
