"""Build the corpus of recorded exchanges from other projects' HTTP cassettes (vcrpy, pytest-recording and
go-vcr files recorded against the live provider APIs).

    python tests/corpus/import_cassettes.py SOURCE GIT_DIR [COMMIT]

reads every cassette of SOURCE (see SOURCES below) from the git repository GIT_DIR at COMMIT (default HEAD)
and writes tests/corpus/SOURCE/exchanges.jsonl.gz: one exchange per line, only the inference calls tollgate
reads (reader.classify), each with its expectations from the independent reader (reader.expect). Identical
exchanges are kept once. What is kept of each exchange, and what is changed, is in tests/corpus/README.md.

    python tests/corpus/import_cassettes.py --expect

writes the expectations of every stored exchange again, after a change to the reader.
"""

import base64
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from urllib.parse import parse_qsl, urlencode, urlsplit

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reader  # noqa: E402

# Which files of each source are cassettes.
SOURCES = {
    "pydantic-ai": r"(^|/)cassettes/.*\.ya?ml$",
    "opentelemetry-python-contrib": r"(^|/)cassettes/.*\.ya?ml$",
    "openllmetry": r"(^|/)cassettes/.*\.ya?ml$",
    "fantasy": r"^providertests/testdata/.*\.ya?ml$",
}

# Response headers kept: what decides framing and decoding, and Bedrock's metering and request id.
KEEP_RESPONSE_HEADERS = re.compile(r"^(content-type|content-encoding|x-amzn-requestid|x-amzn-bedrock-.*)$")
# Query parameters that carry credentials (Gemini's `key`) are dropped.
SECRET_QUERY = {"key", "api_key", "api-key", "access_token", "token", "sig", "signature"}
# A request's JSON strings longer than this are shortened (base64 images and documents), and so are long
# lists of numbers (media bytes): the request only matters for its parameters, and the corpus stays small.
MAX_REQUEST_STRING = 512
MAX_RESPONSE_BYTES = 160 * 1024

Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def git(gd, *args):
    return subprocess.run(["git", "--git-dir", gd, *args], check=True, capture_output=True).stdout


def first(v):
    if isinstance(v, list):
        v = v[0] if v else None
    if isinstance(v, bytes):
        v = v.decode("utf-8", "replace")
    return v


def as_bytes(v):
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    return str(v).encode("utf-8")


def shorten(v):
    if isinstance(v, str) and len(v) > MAX_REQUEST_STRING:
        return v[:MAX_REQUEST_STRING // 2] + "…"
    if isinstance(v, list):
        if len(v) > 64 and all(isinstance(x, (int, float)) for x in v):  # bytes or vectors as numbers
            v = v[:8]
        return [shorten(x) for x in v]
    if isinstance(v, dict):
        return {k: shorten(x) for k, x in v.items()}
    return v


def request_body(raw):
    """The request body, JSON strings shortened (see MAX_REQUEST_STRING)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return raw[:64 * 1024]  # not JSON (one recorded body is not): kept as recorded, up to 64 KiB
    if raw and len(raw) > MAX_REQUEST_STRING:
        return json.dumps(shorten(doc)).encode()
    return raw


def body_field(b):
    """Text when it is UTF-8, else base64."""
    try:
        return {"body": b.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_b64": base64.b64encode(b).decode()}


def interactions(doc):
    """(method, url, request body, status, response headers, response body) of each recorded interaction, in
    any of the three cassette formats."""
    for it in doc.get("interactions") or []:
        rq, rs = it.get("request") or {}, it.get("response") or {}
        url = rq.get("uri") or rq.get("url")
        if not url:
            continue  # not HTTP (gRPC recordings)
        if "parsed_body" in rq:  # pydantic-ai's serializer keeps JSON bodies parsed; json.dumps restores them
            rbody = json.dumps(rq["parsed_body"]).encode()
        else:
            rbody = as_bytes(rq.get("body"))
        if isinstance(rs.get("status"), dict):  # vcrpy
            status = rs["status"].get("code")
        else:  # go-vcr
            status = rs.get("code")
        headers = {k.lower(): first(v) for k, v in (rs.get("headers") or {}).items()}
        if "parsed_body" in rs:
            body = json.dumps(rs["parsed_body"]).encode()
        else:
            b = rs.get("body")
            body = as_bytes(b.get("string") if isinstance(b, dict) else b)
        yield (rq.get("method") or "POST").upper(), url, rbody, status, headers, body


def write_gz(path, data):
    """gzip without a timestamp: importing the same cassettes again writes the same bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
        gz.write(data)


def load(path):
    """The exchanges of one `exchanges.jsonl.gz`."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def clean_path(url):
    u = urlsplit(url)
    q = [(k, v) for k, v in parse_qsl(u.query, keep_blank_values=True) if k.lower() not in SECRET_QUERY]
    path = u.path + ("?" + urlencode(q) if q else "")
    return u.hostname or "", path


def refresh():
    """Write every stored exchange's expectations again with the reader as it is now."""
    for source in sorted(SOURCES):
        path = os.path.join(HERE, source, "exchanges.jsonl.gz")
        if not os.path.exists(path):
            continue
        out = load(path)
        for x in out:
            x["expect"] = reader.expect(x)
        write_gz(path, "".join(json.dumps(x, ensure_ascii=False, sort_keys=True) + "\n" for x in out).encode())
        print(f"{source}: {len(out)} expectations written")


def main():
    if sys.argv[1:] == ["--expect"]:
        refresh()
        return
    source, gd = sys.argv[1], sys.argv[2]
    commit = sys.argv[3] if len(sys.argv) > 3 else "HEAD"
    commit = git(gd, "rev-parse", commit).decode().strip()
    pattern = re.compile(SOURCES[source])
    files = [f for f in git(gd, "ls-tree", "-r", "--name-only", commit).decode().split("\n") if pattern.search(f)]
    out, seen, skipped = [], set(), {}
    for f in sorted(files):
        try:
            doc = yaml.load(git(gd, "show", f"{commit}:{f}"), Loader=Loader)
        except subprocess.CalledProcessError:  # listed but not in the snapshot (large files)
            skipped["absent"] = skipped.get("absent", 0) + 1
            continue
        except yaml.YAMLError:
            skipped["not YAML"] = skipped.get("not YAML", 0) + 1
            continue
        if not isinstance(doc, dict):
            continue
        for n, (method, url, rbody, status, headers, body) in enumerate(interactions(doc)):
            host, path = clean_path(url)
            if method != "POST" or reader.classify(host, path) is None or not isinstance(status, int):
                continue
            if len(body) > MAX_RESPONSE_BYTES:
                skipped["response over 160 KiB"] = skipped.get("response over 160 KiB", 0) + 1
                continue
            x = {
                "id": f"{source}/{f}#{n}",
                "method": method,
                "host": host,
                "path": path,
                "request": body_field(request_body(rbody)),
                "response": {"status": status,
                             "headers": {k: v for k, v in sorted(headers.items())
                                         if KEEP_RESPONSE_HEADERS.match(k) and isinstance(v, str)},
                             **body_field(body)},
            }
            key = hashlib.sha256(json.dumps([host, path, x["request"], x["response"]], sort_keys=True)
                                 .encode()).hexdigest()
            if key in seen:
                skipped["duplicate"] = skipped.get("duplicate", 0) + 1
                continue
            seen.add(key)
            try:
                x["expect"] = reader.expect(x)
            except Exception as exc:  # a body the reader cannot read is not a usable recording
                skipped[f"unreadable ({type(exc).__name__})"] = skipped.get(f"unreadable ({type(exc).__name__})", 0) + 1
                continue
            out.append(x)
    dest = os.path.join(HERE, source)
    os.makedirs(dest, exist_ok=True)
    text = "".join(json.dumps(x, ensure_ascii=False, sort_keys=True) + "\n" for x in out)
    write_gz(os.path.join(dest, "exchanges.jsonl.gz"), text.encode())
    print(f"{source} @ {commit}: {len(out)} exchanges from {len(files)} files; skipped {skipped}")


if __name__ == "__main__":
    main()
