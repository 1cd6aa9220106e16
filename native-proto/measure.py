#!/usr/bin/env python3
"""Instructions per request of the dynamic-module floor, measured like `make bench-instructions`.

Same setup as bench/instructions.py (whose `count` this reuses): real Envoy 1.40 with `--concurrency 1` under
callgrind, counting every instruction of the Envoy process over N sequential 1 KiB OpenAI-like chat
requests on one connection after a warm-up, nginx as the upstream. Callgrind counts do not depend on the
load of the machine. Scenarios:

- Envoy without filters, and with one C++ filter that does nothing (the cost of any extra filter);
- the proxy-wasm no-op module (bench/noop), and the same making tollgate's host calls (`headers`, `bodies`,
  `traceparent`);
- the native prototype (native-proto) doing nothing (every hook is still called across the C ABI), and
  making the same host calls: read both header maps whole, hold the request until its body is whole and read
  it, read every response chunk as it passes, add one request header; then each of those alone; and counter
  increments: one unlabeled per request, or three (an unlabeled and a labeled one per request, one per
  response chunk).

    .venv/bin/python native-proto/measure.py [--requests 1000] [--streams 100] [--only none,native-noop]

Needs `make bench-noop` (the Wasm no-op module) and scripts/bench-setup.sh (nginx, valgrind). Writes
bench/results/<date>-<host>-native-instructions.{md,json}.
"""

import argparse
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, HERE)

import instructions  # noqa: E402
import run as bench  # noqa: E402
import run_checks  # noqa: E402

NATIVE_FLOOR = ["headers", "bodies", "traceparent"]


# The cost of any extra HTTP filter in the chain, for comparison: Envoy's own header_mutation filter with
# nothing to do.
CPP_NOOP = """
          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations: {}"""


def native_filter(ops):
    return run_checks.module_filter(run_checks.string_value({"ops": ",".join(ops)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--module", default=os.path.join(ROOT, "target/native-proto/release/libtollgate.so"))
    ap.add_argument("--noop", default=os.path.join(ROOT, "target/bench/tollgate_bench_noop.wasm"))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results"))
    args = ap.parse_args()
    for tool in ("valgrind", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"measure: {tool} is not installed (scripts/bench-setup.sh installs it)")
    if not os.path.exists(args.module):
        run_checks.build_module()
    module_dir = os.path.dirname(os.path.abspath(args.module))
    if os.path.basename(args.module) != "libtollgate.so":
        sys.exit("measure: the module file must be named libtollgate.so (Envoy looks it up by name)")
    # Envoy (started by instructions.count) inherits the search path.
    os.environ["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = module_dir

    wasm = lambda ops: bench.wasm_filter("noop", args.noop, ",".join(ops))  # noqa: E731
    small = [("none", "no filter", ""), ("cpp-noop", "a C++ filter doing nothing (empty header_mutation)", CPP_NOOP)]
    if os.path.exists(args.noop):
        small += [("wasm-noop", "no-op Wasm", wasm([])),
                  ("wasm-floor", "no-op Wasm + headers, bodies, traceparent", wasm(NATIVE_FLOOR))]
    small += [("native-noop", "no-op native", native_filter([])),
              ("native-floor", "no-op native + headers, bodies, traceparent", native_filter(NATIVE_FLOOR))]
    small += [(f"native-{op}", f"no-op native + {op}", native_filter([op])) for op in NATIVE_FLOOR]
    small += [("native-counter-plain", "no-op native + 1 unlabeled counter increment",
               native_filter(["counter_plain"])),
              ("native-counters", "no-op native + 3 counter increments, 1 labeled", native_filter(["counters"]))]
    streams = [("none", "no filter", ""), ("native-noop", "no-op native", native_filter([])),
               ("native-floor", "no-op native + headers, bodies, traceparent", native_filter(NATIVE_FLOOR))]
    only = set(filter(None, args.only.split(",")))

    res = instructions.run_scenarios(small, streams, args.requests, args.streams, only)
    res["machine"] = bench.machine()
    res["valgrind"] = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    res["module_bytes"] = os.path.getsize(args.module)
    write(res, args)


def write(res, args):
    m = res["machine"]
    base = instructions.save_json(res, args.out, "native-instructions")
    lines = [f"# Dynamic-module floor: instructions per request — {m['date']}", "",
             f"Envoy {m['envoy']} (`--concurrency 1`) under {res['valgrind']} callgrind, commit `{m['commit']}`; "
             f"the native prototype `libtollgate.so` (native-proto, {res['module_bytes']} bytes) against the "
             "proxy-wasm no-op module (bench/noop). Instructions of the whole Envoy process per request, "
             f"averaged over {res['requests']} sequential small requests or {res['streams']} streams after a "
             "warm-up (native-proto/measure.py, the setup of bench/instructions.py).", ""]
    for part, title, unit in (("small", "Small requests (1 KiB in / 1 KiB out)", "request"),
                              ("sse", "Streams (1,000-event SSE, 247 KiB)", "stream")):
        rows = res[part]
        if not rows:
            continue
        none = rows.get("none", {}).get("instructions")
        lines += [f"## {title}", "", f"| scenario | instructions per {unit} | added vs no filter |", "|---|---:|---:|"]
        for r in rows.values():
            v = r["instructions"]
            lines.append(f"| {r['label']} | {v:,.0f} | {(v - none) if none else 0:+,.0f} |")
        lines.append("")
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    print(f"measure: wrote {base}.md and .json")


if __name__ == "__main__":
    main()
