#!/usr/bin/env bash
# Run every cargo-fuzz target for FUZZ_SECONDS each (default 25), seeded from the fixtures, and print a
# summary (runs, execs/s, new crashes). A crash leaves its reproducer in fuzz/artifacts/<target>/ and fails
# the run; turn it into a regression unit test in the crate (see docs/development.md, "Fuzzing").
set -uo pipefail
cd "$(dirname "$0")/.."
secs=${FUZZ_SECONDS:-25}
targets=${FUZZ_TARGETS:-"sse ndjson json_array eventstream inflate providers lenient traceparent headers config redaction sse_edit skim wire"}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/fuzz}
.venv/bin/python scripts/fuzz-seeds.py
(cd fuzz && cargo +nightly fuzz build -O) || exit 1
failed=0
printf '%-12s %10s %8s %10s %s\n' target runs secs execs/s result
for t in $targets; do
  log=$(mktemp)
  (cd fuzz && cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$secs" -max_len=4096 \
      -rss_limit_mb=1024 -print_final_stats=1) >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  took=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' | tail -1)
  runs=${runs:-0}; took=${took:-$secs}
  result=ok
  if [ $rc -ne 0 ]; then result="CRASH (see $log, fuzz/artifacts/$t/)"; failed=1; else rm -f "$log"; fi
  printf '%-12s %10s %8s %10s %s\n' "$t" "$runs" "$took" "$((runs / (took > 0 ? took : 1)))" "$result"
done
exit $failed
