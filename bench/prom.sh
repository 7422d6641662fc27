#!/usr/bin/env bash
# Scrape-body parser benchmark: kubeship's `prom` parser against the prometheus-parse crate on
# the same bodies (parsers/examples/prom_bench.rs generates them and checks that both parsers
# return the same values).
#
#   bench/prom.sh [--runs N] [--no-alloc] [--callgrind] [--no-build]
#
# Prints, for each body (node_exporter-like, histogram-heavy, node body repeated to 16 MiB):
#   * the example's timing table N times (default 3): on-CPU ns per sample (median of 7 rounds,
#     min-max), MB/s, million samples/s, and the median wall-clock ns per sample;
#   * allocations per sample (unless --no-alloc): `valgrind --tool=dhat` totals of one run with
#     1 pass and one with 3 passes over the body, the difference divided by the samples of 2
#     passes (what building the bodies allocates cancels out). No counting allocator: the
#     workspace forbids `unsafe`, which a `GlobalAlloc` needs;
#   * with --callgrind: instructions per sample (`valgrind --tool=callgrind`, same two-run
#     difference), which unlike times do not depend on what else runs on the machine.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubeship-target}"

runs=3 alloc=1 callgrind=0 build=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --no-alloc) alloc=0; shift ;;
    --callgrind) callgrind=1; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

if [[ $build == 1 ]]; then
  cargo build --release -p kubeship-parsers --example prom_bench
fi
BIN="$CARGO_TARGET_DIR/release/examples/prom_bench"

for ((r = 1; r <= runs; r++)); do
  printf '\n== timing run %d of %d\n' "$r" "$runs"
  "$BIN"
done

# Runs `valgrind --tool=$1` on `prom_bench --once PARSER BODY PASSES`; prints "EVENTS SAMPLES"
# where EVENTS is the dhat block total or the callgrind instruction total.
measure() { # TOOL PARSER BODY PASSES
  local tool="$1" out events samples
  case "$tool" in
    dhat) out=$(valgrind --tool=dhat --dhat-out-file=/dev/null "$BIN" --once "$2" "$3" "$4" 2>&1)
          events=$(sed -n 's/.*Total: *[0-9,]* bytes in \([0-9,]*\) blocks.*/\1/p' <<<"$out") ;;
    callgrind) out=$(valgrind --tool=callgrind --callgrind-out-file=/dev/null "$BIN" --once "$2" "$3" "$4" 2>&1)
          events=$(sed -n 's/.*refs: *\([0-9,]*\).*/\1/p' <<<"$out") ;;
  esac
  samples=$(sed -n 's/^samples \([0-9]*\)$/\1/p' <<<"$out")
  echo "${events//,/} $samples"
}

per_sample() { # TOOL LABEL
  printf '\n== %s\n%-12s %-24s %14s\n' "$2" body parser "per sample"
  for body in node histogram; do
    for parser in kubeship crate; do
      read -r e1 s1 < <(measure "$1" "$parser" "$body" 1)
      read -r e3 s3 < <(measure "$1" "$parser" "$body" 3)
      local name=$parser
      [[ $parser == crate ]] && name="prometheus-parse 0.2.5"
      awk -v b="$body" -v p="$name" -v e=$((e3 - e1)) -v s=$((s3 - s1)) \
        'BEGIN { printf "%-12s %-24s %14.2f\n", b, p, e / s }'
    done
  done
}

if [[ $alloc == 1 ]]; then
  per_sample dhat "allocations per sample (valgrind --tool=dhat, blocks)"
fi
if [[ $callgrind == 1 ]]; then
  per_sample callgrind "instructions per sample (valgrind --tool=callgrind)"
fi
