"""`make image` (scripts/oci_image.py): the Wasm OCI image Istio's agent pulls.

What is checked, and against what:
- the layout is a valid OCI image layout: every digest and size matches its blob, the media types are the
  OCI ones, the config's diff_id is the uncompressed layer's digest;
- the image is what Istio's agent extracts (istio/istio pkg/wasm/imagefetcher.go): not a Docker schema-2
  manifest, so the "compat" variant: the last layer is `application/vnd.oci.image.layer.v1.tar+gzip` and
  holds `plugin.wasm`, byte for byte the module;
- the digest the script prints is the one Istio compares: `img.Digest()` of the image manifest (imagefetcher.go
  PrepareFetch → pkg/wasm/cache.go getOrFetch). skopeo (Debian) reads the layout and pushes it to a real
  registry (Debian's docker-registry, the CNCF distribution server) started on 127.0.0.1 with
  `--preserve-digests`; the manifest the registry then serves by tag hashes to the printed digest and carries
  it as Docker-Content-Digest, which is what a puller resolving the tag (go-containerregistry, Istio) sees;
- the build is reproducible: the same module gives the same digest.
"""

import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import oci_image  # noqa: E402

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def module() -> bytes:
    """The built module when there is one; otherwise a small valid Wasm module (the image does not care)."""
    wasm = Path(os.environ.get("TOLLGATE_WASM", REPO / "tollgate.wasm"))
    if wasm.is_file():
        return wasm.read_bytes()
    return b"\0asm\x01\0\0\0" + bytes(range(256)) * 64


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("oci") / "tollgate"
    wasm = tmp_path_factory.mktemp("wasm") / "tollgate.wasm"
    wasm.write_bytes(module())
    res = subprocess.run([sys.executable, str(REPO / "scripts/oci_image.py"), "--wasm", str(wasm), "--out",
                          str(out), "--tag", "0.1.0"], capture_output=True, text=True, check=True)
    digest = next(line.split()[-1] for line in res.stdout.splitlines() if line.startswith("manifest digest:"))
    return out, digest, wasm.read_bytes(), res.stdout


def blob(layout: Path, digest: str) -> bytes:
    algo, hexd = digest.split(":")
    assert algo == "sha256"
    data = (layout / "blobs" / "sha256" / hexd).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"blob {digest} does not hash to its name"
    return data


def istio_compat_extract(manifest: dict, layers: list[bytes]) -> bytes:
    """What istio/istio pkg/wasm/imagefetcher.go does with an image that is not a Docker schema-2 one:
    extractOCIStandardImage reads the LAST layer, requires the OCI tar+gzip media type, and returns the first
    tar entry whose base name is plugin.wasm."""
    assert manifest.get("mediaType") != DOCKER_MANIFEST
    assert manifest["layers"], "number of layers must be greater than zero"
    last = manifest["layers"][-1]
    assert last["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layers[-1]))) as tar:
        for member in tar:
            if os.path.basename(member.name) == "plugin.wasm":
                return tar.extractfile(member).read()
    raise AssertionError("plugin.wasm not found in the archive")


def test_layout_is_a_valid_oci_image_that_istio_extracts(built):
    layout, digest, wasm, stdout = built
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2 and index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    (desc,) = index["manifests"]
    assert desc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert desc["annotations"]["org.opencontainers.image.ref.name"] == "0.1.0"
    raw = blob(layout, desc["digest"])
    assert desc["size"] == len(raw) and desc["digest"] == digest
    manifest = json.loads(raw)
    assert manifest["schemaVersion"] == 2 and manifest["mediaType"] == desc["mediaType"]
    cfg_raw = blob(layout, manifest["config"]["digest"])
    assert manifest["config"]["size"] == len(cfg_raw)
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    layers = []
    for layer in manifest["layers"]:
        data = blob(layout, layer["digest"])
        assert layer["size"] == len(data)
        layers.append(data)
    config = json.loads(cfg_raw)
    assert config["os"] and config["architecture"]
    diff_ids = ["sha256:" + hashlib.sha256(gzip.decompress(d)).hexdigest() for d in layers]
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert istio_compat_extract(manifest, layers) == wasm
    # Nothing else in the layer: the image volume / initContainer paths mount or extract it as is.
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layers[-1]))) as tar:
        assert [(m.name, m.mode, m.uid) for m in tar.getmembers()] == [("plugin.wasm", 0o644, 0)]
    assert f"oci://ghcr.io/YOUR-ORG/tollgate@{digest}" in stdout
    assert (Path(str(layout) + ".digest")).read_text().strip() == digest


def test_the_build_is_reproducible(built, tmp_path):
    layout, digest, wasm, _ = built
    again = oci_image.build(wasm, "0.1.0", version="0.1.0")
    assert again["manifest"] == digest
    other = oci_image.build(wasm + b"\0", "0.1.0", version="0.1.0")
    assert other["manifest"] != digest
    with pytest.raises(ValueError):
        oci_image.build(b"not wasm", "0.1.0")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path):
    """Debian's docker-registry (distribution) on 127.0.0.1, storing in tmp_path."""
    binary = shutil.which("docker-registry")
    if not binary or not shutil.which("skopeo"):
        pytest.skip("skopeo / docker-registry not installed (scripts/setup.sh installs them)")
    port = free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(json.dumps({
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(tmp_path / "data")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    log = open(tmp_path / "registry.log", "wb")
    proc = subprocess.Popen([binary, "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 20
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/v2/")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or proc.poll() is not None:
                raise AssertionError(f"registry did not start: {(tmp_path / 'registry.log').read_text()}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def get(host, path, accept):
    c = http.client.HTTPConnection(*host.split(":"), timeout=10)
    try:
        c.request("GET", path, headers={"Accept": accept})
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


def test_skopeo_pushes_it_unchanged_and_the_registry_serves_the_printed_digest(built, registry):
    layout, digest, wasm, _ = built
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci:{layout}:0.1.0"], capture_output=True,
                         check=True).stdout
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == digest
    push = subprocess.run(["skopeo", "copy", "--preserve-digests", "--dest-tls-verify=false",
                           f"oci:{layout}:0.1.0", f"docker://{registry}/tollgate:0.1.0"],
                          capture_output=True, text=True)
    assert push.returncode == 0, push.stderr
    accept = "application/vnd.oci.image.manifest.v1+json"
    status, headers, body = get(registry, "/v2/tollgate/manifests/0.1.0", accept)
    assert status == 200
    assert headers["docker-content-digest"] == digest
    assert "sha256:" + hashlib.sha256(body).hexdigest() == digest
    manifest = json.loads(body)
    # Pulled back from the registry by digest, the image still yields the module.
    layers = []
    for layer in manifest["layers"]:
        status, _, data = get(registry, f"/v2/tollgate/blobs/{layer['digest']}", "*/*")
        assert status == 200 and "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
        layers.append(data)
    assert istio_compat_extract(manifest, layers) == wasm
    assert get(registry, f"/v2/tollgate/manifests/{digest}", accept)[0] == 200
