#!/usr/bin/env python3
"""Build tollgate's Wasm OCI image without a container engine: an OCI image layout directory that standard
tools push unchanged (skopeo, crane, oras), and print the manifest digest to pin.

The image is the "compat" variant of the Wasm image specification that Istio's agent reads
(istio/istio pkg/wasm/imagefetcher.go, extractOCIStandardImage): an OCI image manifest whose last layer has
the media type `application/vnd.oci.image.layer.v1.tar+gzip` and holds a file named `plugin.wasm`. Istio
compares the digest of that image manifest (`img.Digest()`, pkg/wasm/imagefetcher.go PrepareFetch; checked
in pkg/wasm/cache.go getOrFetch) with a WasmPlugin's `sha256` or the `@sha256:` of its URL, so the digest to
pin is the manifest's, not the layer's or the module's.

The build is reproducible: the same module gives the same bytes and digests (fixed tar metadata, gzip
without a timestamp or a file name, no creation time unless SOURCE_DATE_EPOCH is set).

Usage: scripts/oci_image.py --wasm tollgate.wasm --out build/oci/tollgate --tag 0.1.0 [--platform linux/amd64]
Standard library only, so that it runs anywhere Python 3.9+ does."""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import time

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
# The compat variant's layer type (istio/istio pkg/wasm/imagefetcher.go: types.OCILayer).
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# The file Istio looks for in the layer (imagefetcher.go: wasmPluginFileName).
WASM_NAME = "plugin.wasm"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(obj) -> bytes:
    """JSON with sorted keys and no insignificant whitespace: a stable byte form, hence a stable digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(wasm: bytes, mtime: int) -> bytes:
    """An uncompressed tar holding only `plugin.wasm` (root-owned, 0644)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(WASM_NAME)
        info.size = len(wasm)
        info.mode = 0o644
        info.mtime = mtime
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        tar.addfile(info, io.BytesIO(wasm))
    return buf.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    buf = io.BytesIO()
    # mtime=0 and an empty file name: the gzip header carries nothing that changes between builds.
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        gz.write(data)
    return buf.getvalue()


def build(wasm: bytes, tag: str, platform: str = "linux/amd64", version: str = "", epoch: int | None = None) -> dict:
    """The image's blobs: {"blobs": {digest: bytes}, "manifest": digest, "index": bytes}."""
    if wasm[:4] != b"\0asm":
        raise ValueError("not a WebAssembly module (no \\0asm magic)")
    os_name, _, arch = platform.partition("/")
    if not os_name or not arch:
        raise ValueError(f"platform must be <os>/<architecture>, not {platform!r}")
    mtime = epoch or 0
    tar = layer_tar(wasm, mtime)
    layer = gzip_bytes(tar)
    # Platform: Istio ignores it (it reads the last layer whatever the platform), Kubernetes' image volumes
    # and `crane export` read a single-manifest image whatever it says. It is the OCI config's required field.
    config = {
        "architecture": arch,
        "os": os_name,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [sha256(tar)]},
    }
    if epoch is not None:
        config["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    config_bytes = canonical(config)
    annotations = {
        "org.opencontainers.image.title": "tollgate",
        "org.opencontainers.image.description": "tollgate proxy-wasm filter (Wasm OCI image, compat variant)",
        "org.opencontainers.image.licenses": "Apache-2.0",
    }
    if version:
        annotations["org.opencontainers.image.version"] = version
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": sha256(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": LAYER, "digest": sha256(layer), "size": len(layer)}],
        "annotations": annotations,
    }
    manifest_bytes = canonical(manifest)
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            {
                "mediaType": MANIFEST,
                "digest": sha256(manifest_bytes),
                "size": len(manifest_bytes),
                "annotations": {"org.opencontainers.image.ref.name": tag},
            }
        ],
    }
    blobs = {sha256(b): b for b in (layer, config_bytes, manifest_bytes)}
    return {"blobs": blobs, "manifest": sha256(manifest_bytes), "index": canonical(index)}


def write_layout(image: dict, out: str) -> None:
    """Write an OCI image layout (oci-layout, index.json, blobs/sha256/<hex>) at `out`, replacing it."""
    if os.path.isdir(out):
        shutil.rmtree(out)
    blob_dir = os.path.join(out, "blobs", "sha256")
    os.makedirs(blob_dir)
    for digest, data in image["blobs"].items():
        with open(os.path.join(blob_dir, digest.split(":", 1)[1]), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "oci-layout"), "wb") as f:
        f.write(canonical({"imageLayoutVersion": "1.0.0"}))
    with open(os.path.join(out, "index.json"), "wb") as f:
        f.write(image["index"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wasm", required=True, help="the module (tollgate.wasm)")
    ap.add_argument("--out", required=True, help="OCI image layout directory to write (replaced)")
    ap.add_argument("--tag", required=True, help="tag recorded in the layout's index (e.g. the version)")
    ap.add_argument("--platform", default="linux/amd64", help="the config's os/architecture")
    ap.add_argument("--repository", default="ghcr.io/YOUR-ORG/tollgate", help="shown in the push commands")
    args = ap.parse_args(argv)
    with open(args.wasm, "rb") as f:
        wasm = f.read()
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    image = build(wasm, args.tag, args.platform, args.tag, int(epoch) if epoch else None)
    write_layout(image, args.out)
    digest = image["manifest"]
    with open(args.out + ".digest", "w", encoding="utf-8") as f:
        f.write(digest + "\n")
    repo, tag, out = args.repository, args.tag, args.out
    print(f"OCI image layout: {out} (tag {tag}, module {len(wasm):,} bytes)")
    print(f"manifest digest:  {digest}")
    print("push it unchanged with one of:")
    print(f"  skopeo copy --preserve-digests oci:{out}:{tag} docker://{repo}:{tag}")
    print(f"  crane push {out} {repo}:{tag}")
    print(f"  oras cp --from-oci-layout {out}:{tag} {repo}:{tag}")
    print("pin it in istio/values.json (image.repository, image.digest) or directly:")
    print(f"  oci://{repo}@{digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
