#!/usr/bin/env bash
# Log pipeline benchmarks for kubeship (release build), local sink and/or CloudWatch Logs sink.
#
#   bench/logs.sh [--mode drain|steady|idle|all] [--sink local|cloudwatch|both] [--lines N]
#                 [--files M] [--duration D] [--rate R] [--idle-secs S] [--kube] [--repeat K]
#                 [--peer none|fluent-bit|vector|all] [--perf] [--callgrind]
#                 [--cw-validate fast|full] [--extra YAML] [--bin PATH] [--metas LIST] [--no-build]
#
# drain : prefill N lines (default 2,000,000) of ~200 bytes CRI over M files (default 100),
#         run `kubeship run --exit-on-eof` under /usr/bin/time -v; report lines/s, MiB/s,
#         CPU seconds (user+sys) per million lines, peak RSS.
# steady: a rate-limited writer appends R lines/s (default 10,000) over M files for D seconds
#         (default 30) while the agent runs; report the agent's CPU % of one core (from
#         /proc/<pid>/stat utime+stime), CPU seconds per million lines and RSS: VmRSS sampled every
#         0.5 s during the load (median and largest sample) and VmHWM (peak since start).
#         Near idle, as a small node rests: --files 4 --rate 4 (one line/s per container).
# idle  : the agent tails M files that do not change for S seconds (default 10); CPU % and RSS.
# --sink: local (default) writes into the embedded local sink. cloudwatch ships with the real
#         CloudWatch sink (AWS SDK: JSON encoding, SigV4, HTTP) to bench/cw_endpoint.py, a
#         count-only CloudWatch Logs endpoint on 127.0.0.1 that checks every PutLogEvents request
#         against the API limits (a run with violations is reported INVALID) and records each
#         event's delivery latency (receive time - the line's CRI timestamp, which the steady
#         writer sets to the wall clock at write time). drain checks that the endpoint counted
#         exactly N events; steady also reports p50/p99/max delivery latency. The endpoint runs
#         on the same cores: its own CPU is printed on a separate `cw-endpoint` row and is not
#         in kubeship's numbers; when it reaches ~100% of a core (Python, one GIL) it is the
#         bottleneck and the row says so. both: local, then cloudwatch.
# --perf: record the agent with `perf record -g` during each drain and each steady load and print
#         the threads and the top symbols (perf adds a few % of overhead to those numbers).
#         Environment: PERF_FREQ (samples/s, default 999), PERF_CALLGRAPH (default -g; e.g.
#         "--call-graph dwarf"); PERF_KEEP=FILE keeps the steady
#         load's perf.data there for `perf report -i FILE`.
# --cw-validate: the endpoint's validator (see bench/cw_endpoint.py --help); default full.
# --kube: what pod metadata costs. Every drain runs three times on the same input: `path` (pod
#         metadata off: the 6 path fields), `kube` (on, against `fake-kube-api`, the tests' fake
#         API server, serving one realistic pod per file: the uid of its directory, 8 labels, 2
#         kept annotations of 4, a ReplicaSet owner, image, imageID, containerID; see
#         bench/writer.py pods) and `path+pad` (off, with the node name padded so that each
#         record has the size, the `"` count and so the escaped size of a `kube` record: the
#         cost of bigger records without the enrichment step). Steady runs `path` and `kube`.
#         Every run checks its records: `kube` ones must all carry `pod_ip` (the full metadata),
#         the others none; the fake API server must see no unexpected request. A table compares
#         the variants: CPU-s per million lines, lines/s, peak RSS, bytes per record, overhead.
# --repeat: run each drain K times (variants interleaved, order rotated); the comparison table
#         shows the median and the range of the K runs.
# --callgrind: run the drains under `valgrind --tool=callgrind` (~50x slower: use --lines 200000)
#         and report instructions per line (nearly deterministic where CPU seconds are noisy),
#         split into the tailer thread (of which encode_record, Vec growth, the enrichment step:
#         Enricher::info/lookup), the pod watch (kube client, list, watch, cache), the exit report
#         (`--exit-on-eof` re-reads the local sink's files to count their lines) and the rest
#         (sink, checkpoints, runtime). Vec growth depends on timing (how far a chunk's records
#         overshoot a batch), so totals are also compared without it. Times and RSS of these
#         runs are valgrind's; under valgrind the CloudWatch sink's SigV4 SHA-256 runs in
#         software (no SHA extensions), so its share is far larger than natively.
# --extra: YAML merged into kubeship's config, map by map (experiments, e.g.
#         --extra 'pipeline: {batch_timeout_ms: 2000}'); the summary notes them.
# --bin: the kubeship binary to run (default: the release build, or $KUBESHIP_BIN_RELEASE); to
#         compare two builds interleaved, copy one aside and alternate runs with --bin A / --bin B
#         (with --no-build).
# --metas: only these pod-metadata variants, comma-separated (path, pad, kube; e.g. --kube --metas
#         kube runs the drain and steady loads with pod metadata on only).
# --peer: run the same drain/steady load against Fluent Bit and/or Vector when installed
#         (skipped with a note otherwise) for a side-by-side comparison (file outputs).
#
# Everything happens in a mktemp directory (under $TMPDIR: TMPDIR=/dev/shm keeps a disk's writeback
# out of the numbers) that is removed at exit. Prints a summary table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubeship-target}"

MODE=all LINES=2000000 FILES=100 DURATION=30 RATE=10000 IDLE_SECS=10 PEER=none BUILD=1
SINK=local PERF=0 CW_VALIDATE=full KUBE=0 REPEAT=1 CALLGRIND=0 EXTRA="" BIN_ARG="" METAS=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --mode) MODE=$2; shift 2 ;;
    --lines) LINES=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --idle-secs) IDLE_SECS=$2; shift 2 ;;
    --peer) PEER=$2; shift 2 ;;
    --sink) SINK=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --cw-validate) CW_VALIDATE=$2; shift 2 ;;
    --kube) KUBE=1; shift ;;
    --repeat) REPEAT=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --callgrind) CALLGRIND=1; shift ;;
    --extra) EXTRA=$2; shift 2 ;;
    --bin) BIN_ARG=$2; shift 2 ;;
    --metas) METAS=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $MODE in drain|steady|idle|all) ;; *) echo "bad --mode $MODE" >&2; exit 2 ;; esac
case $SINK in local|cloudwatch) SINKS=("$SINK") ;; both) SINKS=(local cloudwatch) ;;
  *) echo "bad --sink $SINK" >&2; exit 2 ;; esac
case $CW_VALIDATE in fast|full) ;; *) echo "bad --cw-validate $CW_VALIDATE" >&2; exit 2 ;; esac
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || { echo "bad --repeat $REPEAT" >&2; exit 2; }
if [[ $KUBE == 1 ]]; then DRAIN_METAS=(path pad kube); STEADY_METAS=(path kube); else
  DRAIN_METAS=(path); STEADY_METAS=(path); fi
if [[ -n $METAS ]]; then
  IFS=, read -r -a want <<<"$METAS"
  for m in "${want[@]}"; do
    case $m in path|pad|kube) ;; *) echo "bad --metas entry $m" >&2; exit 2 ;; esac
    [[ $m == path || $KUBE == 1 ]] || { echo "--metas $m needs --kube" >&2; exit 2; }
  done
  keep() { local m; for m in "$@"; do [[ ",$METAS," == *",$m,"* ]] && echo "$m"; done; return 0; }
  mapfile -t DRAIN_METAS < <(keep "${DRAIN_METAS[@]}")
  mapfile -t STEADY_METAS < <(keep "${STEADY_METAS[@]}")
fi

ensure_time() {
  [[ -x /usr/bin/time ]] && return 0
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null
}
ensure_python() {
  command -v python3 >/dev/null 2>&1 || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 >/dev/null
  }
}
ensure_time
ensure_python
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null 2>&1; then
  echo "note: perf is not installed; --perf ignored" >&2
  PERF=0
fi
if [[ $CALLGRIND == 1 ]] && ! command -v valgrind >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
fi

if [[ $BUILD == 1 ]]; then
  cargo build --release -p kubeship
  if [[ $KUBE == 1 ]]; then cargo build --release -p kubeship-tests --bin fake-kube-api; fi
fi
BIN="${BIN_ARG:-${KUBESHIP_BIN_RELEASE:-$CARGO_TARGET_DIR/release/kubeship}}"
[[ -x $BIN ]] || { echo "error: $BIN not found (build with cargo build --release -p kubeship)" >&2; exit 1; }
"$BIN" --version
FAKE_API="${KUBESHIP_FAKE_API_BIN:-$CARGO_TARGET_DIR/release/fake-kube-api}"
if [[ $KUBE == 1 && ! -x $FAKE_API ]]; then
  echo "error: $FAKE_API not found (build with cargo build --release -p kubeship-tests --bin fake-kube-api)" >&2
  exit 1
fi

WRITER="$ROOT/bench/writer.py"
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_workdir kubeship-bench
CHECK=""
SUMMARY=()
NOTES=()
ROW_FMT='%-11s %-10s %-7s %-8s %s'
add_row() { SUMMARY+=("$(printf "$ROW_FMT" "$1" "$2" "$3" "$4" "$5")"); } # AGENT SINK MODE META RESULT
# One line per kubeship drain: sink meta rep cpu_s_per_mline lines_per_s peak_rss_mib record_bytes
# [instructions_per_line (--callgrind)]; CG_RESULTS: sink meta rep group instructions_per_line
RESULTS="$WORK/drain-results.txt" CG_RESULTS="$WORK/callgrind-results.txt"
: > "$RESULTS"
: > "$CG_RESULTS"
meta_label() { case $1 in path) echo path ;; pad) echo path+pad ;; kube) echo kube ;; *) echo "$1" ;; esac; }


# write_config NODE [SINK [ENDPOINT_URL [META]]] -> NODE/kubeship.yaml (relative paths), telemetry
# on a free port (TELEMETRY_PORT). META: path (pod metadata off), pad (off, node name
# PAD_NODE_NAME), kube (on, NODE/kubeconfig, the two annotations the bench pods' records keep).
write_config() {
  local node=$1 sink=${2:-local} url=${3:-} meta=${4:-path} port output node_name=bench-node kube
  port=$(free_port)
  TELEMETRY_PORT=$port
  case $sink in
    local) output="local: {dir: ./out}" ;;
    cloudwatch) output="cloudwatch: {region: us-east-1, endpoint_url: \"$url\", create_group: true}" ;;
  esac
  case $meta in
    path) kube="{enabled: false}" ;;
    pad) kube="{enabled: false}"; node_name=$PAD_NODE_NAME ;;
    kube) kube="{enabled: true, kubeconfig: ./kubeconfig, annotations: [prometheus.io/scrape, prometheus.io/port]}" ;;
  esac
  cat > "$node/kubeship.yaml" <<EOF
cluster: bench
node_name: '$node_name'
state_dir: ./state
logs:
  containers_dir: ./logs/containers
  read_from: beginning
  eof_flush_ms: 1000
output:
  group: "/aws/containerinsights/{cluster}/application"
  stream: "{pod}_{namespace}_{container}"
  $output
kubernetes: $kube
telemetry: {listen_addr: "127.0.0.1:$port", log_format: json, log_level: warn}
EOF
  [[ -z $EXTRA ]] || merge_yaml "$node/kubeship.yaml" "$EXTRA"
}


count_out() { # DIR -> number of output lines
  local n
  n=$(find "$1" -type f \( -name '*.jsonl' -o -name '*.log' -o -name '*.json' \) -exec cat {} + 2>/dev/null | wc -l)
  echo "${n:-0}"
}

# sink_stats DIR -> "records bytes_per_record records_with_pod_ip" of a local sink's output (a
# record's bytes without its newline; `"pod_ip":` occurs once in a record with full metadata,
# and a log message cannot hold it unescaped)
sink_stats() {
  local lines bytes ip
  read -r lines bytes < <(find "$1" -type f -name '*.jsonl' -exec cat {} + 2>/dev/null | wc -lc)
  ip=$(find "$1" -type f -name '*.jsonl' -exec grep -hc '"pod_ip":' {} + 2>/dev/null | awk '{s += $1} END {print s + 0}')
  echo "${lines:-0} $(calc "round((${bytes:-0} - ${lines:-0}) / max(1, ${lines:-0}), 1)") $ip"
}

# meta_check META RECORDS WITH_POD_IP -> CHECK: "full metadata in N/N records" (kube), "path
# metadata in N records" (path, pad), or the problem (then noted: the run is invalid)
meta_check() {
  local meta=$1 n=$2 ip=$3
  if [[ $meta == kube && $ip == "$n" && $n != 0 ]]; then CHECK="full metadata in $ip/$n records"
  elif [[ $meta != kube && $ip == 0 ]]; then CHECK="path metadata in $n records"
  else
    CHECK="INVALID: $ip of $n records carry the pod's metadata ($(meta_label "$meta") run)"
    NOTES+=("$CHECK")
  fi
}


# --- the CloudWatch endpoint (bench/cw_endpoint.py) ------------------------------------------

# The agent's environment for the CloudWatch sink: static dummy credentials, no IMDS, no proxy.
CW_ENV=(AWS_ACCESS_KEY_ID=AKIDKUBESHIPBENCH AWS_SECRET_ACCESS_KEY=kubeship-bench-secret
  AWS_EC2_METADATA_DISABLED=true NO_PROXY=127.0.0.1 no_proxy=127.0.0.1)
CW_PID="" CW_URL=""

start_endpoint() { # -> CW_PID, CW_URL
  local portfile="$WORK/cw-endpoint.port" i
  : > "$portfile"
  python3 "$ROOT/bench/cw_endpoint.py" --port 0 --validate "$CW_VALIDATE" \
    --count-substring '\"pod_ip\":' > "$portfile" 2> "$WORK/cw-endpoint.stderr" &
  CW_PID=$!
  PIDS+=("$CW_PID")
  for i in $(seq 100); do
    [[ -s $portfile ]] && break
    sleep 0.1
  done
  [[ -s $portfile ]] || { echo "cw_endpoint.py did not start:"; cat "$WORK/cw-endpoint.stderr"; return 1; }
  CW_URL="http://127.0.0.1:$(head -1 "$portfile")"
}

stop_endpoint() {
  [[ -n $CW_PID ]] && stop_pid "$CW_PID"
  if [[ -s $WORK/cw-endpoint.stderr ]]; then echo "cw_endpoint.py said:"; cat "$WORK/cw-endpoint.stderr"; fi
  CW_PID="" CW_URL=""
  return 0
}

# http GET|POST URL -> body on stdout (no proxies from the environment)
http() {
  python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(sys.argv[2], data=b"" if sys.argv[1] == "POST" else None, method=sys.argv[1])
sys.stdout.write(op.open(req, timeout=10).read().decode())
EOF
}

# jget FILE EXPR -> EXPR evaluated with s = the JSON document in FILE

cw_events() { http GET "$1/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["events"])' 2>/dev/null || echo 0; }

# delivered SPEC -> records delivered; SPEC is local:DIR or cw:URL
delivered() {
  case $1 in
    local:*) count_out "${1#local:}" ;;
    cw:*) cw_events "${1#cw:}" ;;
  esac
}

# wait_until_count SPEC N TIMEOUT_S -> 0 when SPEC holds >= N records
wait_until_count() {
  local deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    (( $(delivered "$1") >= $2 )) && return 0
    sleep 0.5
  done
  return 1
}

# endpoint_row MODE META CPU_S WALL_S STATS_FILE: the endpoint's own CPU, on its own row
endpoint_row() {
  local mode=$1 meta=$2 cpu=$3 wall=$4 st=$5 pct note=""
  pct=$(calc "round($cpu / $wall * 100, 1)")
  if python3 -c "import sys; sys.exit(0 if $pct >= 95 else 1)"; then
    note="  SATURATED (>= 95% of one core, one GIL): the endpoint may be what bounds lines/s"
    NOTES+=("cloudwatch $mode: the Python endpoint was saturated ($pct% of one core); the agent's lines/s is a lower bound")
  fi
  add_row cw-endpoint cloudwatch "$mode" "$(meta_label "$meta")" "$(printf '%6.2f CPU-s = %5.1f%% of one core over %.1fs (separate process, NOT in kubeship'"'"'s numbers)  %s PutLogEvents, %s events/request, validator %s%s' \
    "$cpu" "$pct" "$wall" "$(jget "$st" 's["requests"]')" \
    "$(jget "$st" 'round(s["events"] / max(1, s["requests"]))')" "$(jget "$st" 's["validator"]["mode"]')" "$note")"
}

# validity STATS_FILE EXPECTED_EVENTS -> "valid" or "INVALID: ..." (also noted)
validity() {
  local st=$1 want=$2 v ev out=()
  v=$(jget "$st" 's["violations"]'); ev=$(jget "$st" 's["events"]')
  (( v == 0 )) || out+=("$v requests broke PutLogEvents limits $(jget "$st" 's["violation_reasons"]')")
  [[ -z $want || $ev == "$want" ]] || out+=("endpoint counted $ev events for $want lines")
  if (( ${#out[@]} == 0 )); then echo "valid: 0 limit violations, events == lines"; else
    NOTES+=("INVALID run: ${out[*]}"); echo "INVALID: ${out[*]}"; fi
}

# metrics_scraper PORT FILE PID: keeps the agent's latest /metrics in FILE while PID lives (it may
# not answer yet at first: a slow start, e.g. under callgrind)
metrics_scraper() {
  while kill -0 "$3" 2>/dev/null; do
    if http GET "http://127.0.0.1:$1/metrics" > "$2.tmp" 2>/dev/null; then mv -f "$2.tmp" "$2"; fi
    sleep 2
  done
}

# metric FILE NAME -> sum of the samples of NAME (all label sets)
metric() {
  awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $NF} END {printf "%.6f\n", s + 0}' "$1" 2>/dev/null || echo 0
}

# perf_report DATA: threads and top symbols
perf_report() {
  echo "--- perf: agent CPU samples by thread ---"
  perf report -i "$1" --stdio --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9.]+%' | head -8 || true
  echo "--- perf: top symbols (self) ---"
  perf report -i "$1" --stdio --no-children --sort comm,dso,sym 2>/dev/null | grep -E '^ +[0-9.]+%' | head -25 || true
}

# --- pod metadata: the fake API server (--kube) -----------------------------------------------

PODS_JSON="$WORK/pods.json"
API_PID="" API_SUMMARY=""

# start_api NODE -> API_PID: fake-kube-api serving one pod per file of the layout (the same uids
# for the same --files), NODE/kubeconfig pointing at it
start_api() {
  local node=$1
  [[ -s $PODS_JSON ]] || python3 "$WRITER" pods --files "$FILES" --node bench-node > "$PODS_JSON"
  : > "$node/api.url"
  "$FAKE_API" --node bench-node --kubeconfig "$node/kubeconfig" --pods "$PODS_JSON" \
    > "$node/api.url" 2> "$node/api.stderr" &
  API_PID=$!
  PIDS+=("$API_PID")
  for _ in $(seq 200); do [[ -s $node/api.url ]] && break; sleep 0.05; done
  [[ -s $node/api.url ]] || { echo "fake-kube-api did not start:"; cat "$node/api.stderr"; return 1; }
}

# stop_api NODE -> API_SUMMARY (what the fake answered); the run is noted INVALID when the fake
# saw requests it does not expect from the agent (it lists them and exits 1)
stop_api() {
  local node=$1 rc=0
  [[ -n $API_PID ]] || return 0
  kill -TERM "$API_PID" 2>/dev/null || true
  wait "$API_PID" 2>/dev/null || rc=$?
  API_PID=""
  API_SUMMARY="api: $(sed -n 's/.*answered \(.*\)/\1/p' "$node/api.stderr" | tail -1)"
  if (( rc != 0 )); then
    echo "fake-kube-api exited with $rc:"
    cat "$node/api.stderr"
    NOTES+=("INVALID run: the fake API server exited with $rc (unexpected requests, listed above)")
    API_SUMMARY+=" INVALID (exit $rc)"
  fi
  return 0
}

# calibrate_pad -> PAD_NODE_NAME. One line per file through `path` and `kube` (local sink) tells
# what the pod metadata adds to a record: B bytes, 2q of them bare `"`. The `path+pad` node name
# (kubernetes.host) adds the same: q `"` (a `\"` in the record: 2 bytes, both escaped again in a
# PutLogEvents body, as the 2q bare ones are) and B - 2q plain bytes.
PAD_NODE_NAME=bench-node
calibrate_pad() {
  local node="$WORK/calibrate" meta
  mkdir -p "$node"
  python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 1 > /dev/null
  for meta in path kube; do
    rm -rf "$node/state" "$node/out"
    if [[ $meta == kube ]]; then start_api "$node" || return 1; fi
    write_config "$node" local "" "$meta"
    "$BIN" run --config "$node/kubeship.yaml" --exit-on-eof > "$node/agent.stdout" 2> "$node/agent.stderr" \
      || { echo "kubeship failed:"; tail -20 "$node/agent.stderr"; return 1; }
    stop_api "$node"
    python3 - "$node/out" > "$node/$meta.stats" <<'EOF'
import pathlib, sys
recs = [l for f in pathlib.Path(sys.argv[1]).rglob("*.jsonl") for l in f.read_bytes().splitlines()]
n = max(1, len(recs))
print(len(recs), sum(map(len, recs)) / n, sum(r.count(b'"') for r in recs) / n,
      sum(b'"pod_ip":' in r for r in recs))
EOF
  done
  PAD_NODE_NAME=$(python3 - "$node/path.stats" "$node/kube.stats" "$FILES" <<'EOF'
import sys
off, on = (open(p).read().split() for p in sys.argv[1:3])
files = int(sys.argv[3])
if int(on[0]) != files or int(on[3]) != files or int(off[0]) != files or int(off[3]) != 0:
    sys.exit(f"calibration failed: kube {on}, path {off} (records, bytes, quotes, with pod_ip)")
extra = round(float(on[1]) - float(off[1]))
q = round((float(on[2]) - float(off[2])) / 2)
if extra - 3 * q < 0:
    sys.exit(f"calibration failed: {extra} bytes with {2 * q} quotes")
print("bench-node" + '-"' * q + "p" * (extra - 3 * q))
EOF
) || return 1
  echo "kube: pod metadata makes a record $(calc "round($(cut -d' ' -f2 "$node/kube.stats") - $(cut -d' ' -f2 "$node/path.stats"))") bytes longer; the path+pad node name has ${#PAD_NODE_NAME} bytes"
  rm -rf "$node"
}

# --- kubeship ----------------------------------------------------------------------------------

DRAIN_DATA="" DRAIN_BYTES=0
prefill_drain() { # -> DRAIN_DATA: one prefilled layout, read by every drain run
  local info
  [[ -n $DRAIN_DATA ]] && return 0
  DRAIN_DATA="$WORK/drain-data"
  mkdir -p "$DRAIN_DATA"
  echo "drain: prefilling $LINES lines over $FILES files..."
  info=$(python3 "$WRITER" prefill --dir "$DRAIN_DATA" --files "$FILES" --lines "$LINES")
  DRAIN_BYTES=${info##*bytes=}
}

# callgrind_groups OUT LINES -> "group instructions_per_line" lines of a callgrind profile
# (inclusive costs of whole functions, as callgrind_annotate names them; run from / because in a
# directory holding the sources it also reports the costs of their relative paths apart)
callgrind_groups() {
  (cd / && callgrind_annotate --auto=no --inclusive=yes --threshold=100 "$1" 2>/dev/null) | python3 -c '
import re, sys
lines = int(sys.argv[1])
cost = {}
total = 0
for l in sys.stdin:
    m = re.match(r"\s*([0-9,]+) \([ 0-9.]+%\)\s+(.*)$", l)
    if not m:
        continue
    n = int(m.group(1).replace(",", ""))
    if "PROGRAM TOTALS" in l:
        total = n
        continue
    f = re.search(r":([^:\[][^\[]*?) \[", m.group(2))  # "file:function [object]": a whole function
    if f:
        cost[f.group(1)] = max(cost.get(f.group(1), 0), n)
c = lambda *names: sum(cost.get(x, 0) for x in names)
tailer = c("kubeship::logs::tail::Tailer::run")
pods = c("kubeship::app::start_pod_watch", "kubeship::kube::watch::run::{{closure}}")
report = max(0, c("kubeship::cli::main") - c("kubeship::app::run"))
groups = [
    ("total", total),
    ("tailer", tailer),
    ("encode_record", c("kubeship::logs::encode::encode_record")),
    ("vec_growth", c("alloc::raw_vec::RawVecInner<A>::finish_grow")),
    ("enrichment", c("kubeship::logs::enrich::Enricher::info", "kubeship::logs::enrich::Enricher::lookup")),
    ("pod_watch", pods),
    ("exit_report", report),
    ("other", total - tailer - pods - report),
]
for g, n in groups:
    print(g, round(n / lines, 1))
' "$2"
}

bench_drain() { # SINK META REP
  local sink=$1 meta=$2 rep=$3 node="$WORK/drain-$1-$2-$3" label t0 t1 wall user sys rss env=() tpid apid ppid=""
  local e0 e1 st="$WORK/drain-cw-stats.json" scraper="" extra="" valid="" records recb ip api="" cpu
  label=$(meta_label "$meta")
  mkdir -p "$node"
  ln -s "$DRAIN_DATA/logs" "$node/logs"
  if [[ $meta == kube ]]; then start_api "$node" || return 1; fi
  if [[ $sink == cloudwatch ]]; then
    start_endpoint
    write_config "$node" cloudwatch "$CW_URL" "$meta"
    env=("${CW_ENV[@]}")
    e0=$(cpu_ticks "$CW_PID")
  else
    write_config "$node" local "" "$meta"
  fi
  local cg=()
  [[ $CALLGRIND == 1 ]] && cg=(valgrind --tool=callgrind -q --callgrind-out-file="$node/callgrind.out")
  echo "drain ($sink, $label, run $rep/$REPEAT): running kubeship --exit-on-eof${cg:+ under callgrind}..."
  t0=$(now)
  /usr/bin/time -v -o "$node/time.txt" env "${env[@]}" "${cg[@]}" "$BIN" run --config "$node/kubeship.yaml" --exit-on-eof \
    > "$node/agent.stdout" 2> "$node/agent.stderr" &
  tpid=$!
  PIDS+=("$tpid")
  if [[ $PERF == 1 || $sink == cloudwatch ]]; then
    for _ in $(seq 200); do apid=$(pgrep -P "$tpid" | head -1 || true); [[ -n $apid ]] && break; sleep 0.01; done
    if [[ -n ${apid:-} && $PERF == 1 ]]; then
      perf record -F "${PERF_FREQ:-999}" ${PERF_CALLGRAPH:--g} -p "$apid" -o "$node/perf.data" > "$node/perf.out" 2>&1 &
      ppid=$!
    fi
    if [[ -n ${apid:-} && $sink == cloudwatch ]]; then
      metrics_scraper "$TELEMETRY_PORT" "$node/metrics.txt" "$apid" & scraper=$!
    fi
  fi
  wait "$tpid" || { echo "kubeship failed:"; tail -20 "$node/agent.stderr"; [[ $sink == cloudwatch ]] && stop_endpoint; stop_api "$node"; return 1; }
  t1=$(now)
  [[ -n $scraper ]] && { kill "$scraper" 2>/dev/null || true; wait "$scraper" 2>/dev/null || true; }
  [[ -n $ppid ]] && { wait "$ppid" 2>/dev/null || true; perf_report "$node/perf.data"; }
  if [[ $meta == kube ]]; then stop_api "$node"; api="  $API_SUMMARY"; fi
  wall=$(calc "$t1 - $t0")
  user=$(awk -F': ' '/User time/ {print $2}' "$node/time.txt")
  sys=$(awk -F': ' '/System time/ {print $2}' "$node/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$node/time.txt")
  grep -q "not everything in flight was delivered" "$node/agent.stdout" && echo "WARNING: kubeship did not deliver everything before its shutdown timeout"
  if [[ $sink == cloudwatch ]]; then
    e1=$(cpu_ticks "$CW_PID")
    http GET "$CW_URL/stats" > "$st"
    valid="  $(validity "$st" "$LINES")"
    [[ $valid != *INVALID* ]] || NOTES+=("drain ($sink, $label, run $rep):$valid")
    records=$(jget "$st" 's["events"]')
    recb=$(jget "$st" 'round(s["bytes"] / max(1, s["events"]), 1)')
    ip=$(jget "$st" 's["substring_count"]')
    if [[ -s $node/metrics.txt ]]; then
      local n d
      n=$(metric "$node/metrics.txt" kubeship_cloudwatch_request_duration_seconds_count)
      d=$(metric "$node/metrics.txt" kubeship_cloudwatch_request_duration_seconds_sum)
      extra=$(printf '  agent: mean PutLogEvents %.1f ms (last scrape, %.0f calls)' "$(calc "$d / max(1, $n) * 1000")" "$n")
    fi
  else
    read -r records recb ip <<<"$(sink_stats "$node/out")"
    [[ $records == "$LINES" ]] || echo "WARNING: drain delivered $records records for $LINES lines"
  fi
  meta_check "$meta" "$records" "$ip"
  cpu=$(calc "($user + $sys) / ($LINES / 1e6)")
  local ir=""
  if [[ $CALLGRIND == 1 ]]; then
    callgrind_groups "$node/callgrind.out" "$LINES" | sed "s/^/$sink $meta $rep /" >> "$CG_RESULTS"
    ir=$(awk -v s="$sink" -v m="$meta" -v r="$rep" '$1 == s && $2 == m && $3 == r && $4 == "total" {print $5}' "$CG_RESULTS")
    extra+="  callgrind: $ir instructions/line (times and RSS are valgrind's)"
  fi
  add_row kubeship "$sink" drain "$label" "$(printf '%10.0f lines/s  %7.1f MiB/s  %6.2f CPU-s/Mlines (user %.2f, sys %.2f)  peak RSS %6.1f MiB  record %s B  (%s lines in %.2fs)  %s%s%s%s' \
    "$(calc "$LINES / $wall")" "$(calc "$DRAIN_BYTES / $wall / 1048576")" \
    "$cpu" "$(calc "$user / ($LINES / 1e6)")" "$(calc "$sys / ($LINES / 1e6)")" \
    "$(calc "$rss / 1024")" "$recb" "$LINES" "$wall" "$CHECK" "$api" "$valid" "$extra")"
  echo "$sink $meta $rep $cpu $(calc "$LINES / $wall") $(calc "$rss / 1024") $recb $ir" >> "$RESULTS"
  if [[ $sink == cloudwatch ]]; then
    endpoint_row drain "$meta" "$(calc "($e1 - $e0) / $CLK_TCK")" "$wall" "$st"
    stop_endpoint
  fi
  rm -rf "$node"
}

# compare_drains: per sink, the drain variants side by side (median [min-max] over the runs), and
# what pod metadata costs per line: kube vs path (end to end, with its bigger records), kube vs
# path+pad (records of the same size: the enrichment step), path+pad vs path (record size alone).
# Overheads are per run pair (the runs of one repetition ran back to back).
compare_drains() {
  [[ -s $RESULTS && ( $KUBE == 1 || $REPEAT -gt 1 || $CALLGRIND == 1 ) ]] || return 0
  python3 - "$RESULTS" "$CG_RESULTS" <<'EOF'
import statistics, sys
from collections import defaultdict

# (sink, meta) -> {rep: (cpu per Mline, lines/s, peak RSS MiB, record B[, instructions/line])}
runs = defaultdict(dict)
for line in open(sys.argv[1]):
    sink, meta, rep, *vals = line.split()
    runs[(sink, meta)][int(rep)] = tuple(map(float, vals))
cg = defaultdict(lambda: defaultdict(list))  # (sink, meta) -> group -> [instructions/line]
groups = []
for line in open(sys.argv[2]):
    sink, meta, rep, group, n = line.split()
    cg[(sink, meta)][group].append(float(n))
    groups += [group] if group not in groups else []
label = {"path": "path", "pad": "path+pad", "kube": "kube"}


def spread(xs, fmt):
    m = fmt.format(statistics.median(xs))
    return m if len(xs) == 1 else f"{m} [{fmt.format(min(xs))}-{fmt.format(max(xs))}]"


def paired(a, b, i):
    """(b / a - 1) in % of value i, per repetition both ran in."""
    return [(runs[b][r][i] / runs[a][r][i] - 1) * 100 for r in sorted(runs[a]) if r in runs[b]]


for sink in dict.fromkeys(s for s, _ in runs):
    metas = [m for m in ("path", "pad", "kube") if (sink, m) in runs]
    n = max(len(runs[(sink, m)]) for m in metas)
    print(f"\n== drain -> {sink} sink: pod metadata off vs on ({n} run(s) each, median [min-max]) ==")
    has_ir = all(len(v) > 4 for m in metas for v in runs[(sink, m)].values())
    print(f"{'meta':9} {'CPU-s/Mlines':19} {'lines/s':27} {'peak RSS MiB':19} {'record B':9}"
          + (" instructions/line" if has_ir else ""))
    for m in metas:
        cols = list(zip(*runs[(sink, m)].values()))
        print(f"{label[m]:9} {spread(cols[0], '{:.3f}'):19} {spread(cols[1], '{:,.0f}'):27} "
              f"{spread(cols[2], '{:.1f}'):19} {statistics.median(cols[3]):<9.0f}"
              + (f" {spread(cols[4], '{:,.0f}')}" if has_ir else ""))
    for a, b, what in (("path", "kube", "end to end, bigger records"),
                       ("pad", "kube", "same record size: the enrichment step"),
                       ("path", "pad", "record size alone")):
        if (sink, a) not in runs or (sink, b) not in runs:
            continue
        c = paired((sink, a), (sink, b), 0)
        t = paired((sink, a), (sink, b), 1)
        runs_txt = ", ".join(f"{x:+.1f}" for x in c)
        ir = ""
        if has_ir:
            ir = f", instructions per line {statistics.median(paired((sink, a), (sink, b), 4)):+.1f}%"
            ga, gb = cg[(sink, a)], cg[(sink, b)]
            med = lambda g, k: statistics.median(g[k]) if g[k] else 0.0
            if ga["total"] and gb["total"]:
                # Both per-byte costs of the harness / batcher, the second timing-dependent.
                na, nb = (med(g, "total") - med(g, "exit_report") for g in (ga, gb))
                ma, mb = (med(g, "total") - med(g, "exit_report") - med(g, "vec_growth")
                          for g in (ga, gb))
                ir += (f" ({(nb / na - 1) * 100:+.1f}% without the exit report, "
                       f"{(mb / ma - 1) * 100:+.1f}% without it and Vec growth)")
        print(f"{label[b]} vs {label[a]} ({what}): CPU per line {statistics.median(c):+.1f}% "
              f"(runs {runs_txt}), lines/s {statistics.median(t):+.1f}%{ir}")
    if any((sink, m) in cg for m in metas):
        print(f"callgrind, instructions per line (median of runs), by where they go:")
        print(f"{'group':14} " + " ".join(f"{label[m]:>10}" for m in metas))
        for g in groups:
            print(f"{g:14} " + " ".join(
                f"{statistics.median(cg[(sink, m)][g]):>10,.1f}" if cg[(sink, m)][g] else f"{'-':>10}"
                for m in metas))
EOF
}

# rss_sampler PID FILE: appends PID's VmRSS (KiB) to FILE every 0.5 s until killed

# measure_running PID SECONDS -> "cpu% rss_mib hwm_mib" over SECONDS (sleeping is the point here)
measure_running() {
  local pid=$1 secs=$2 c0 c1 t0 t1
  c0=$(cpu_ticks "$pid"); t0=$(now)
  sleep "$secs"
  c1=$(cpu_ticks "$pid"); t1=$(now)
  printf '%s %s %s' "$(calc "round(($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100, 1)")" \
    "$(calc "round($(status_kb "$pid" VmRSS) / 1024, 1)")" "$(calc "round($(status_kb "$pid" VmHWM) / 1024, 1)")"
}

start_kubeship() { # NODE [SINK [META]] -> sets AGENT_PID (cloudwatch: to the running endpoint, CW_URL)
  local env=()
  if [[ ${2:-local} == cloudwatch ]]; then
    write_config "$1" cloudwatch "$CW_URL" "${3:-path}"
    env=("${CW_ENV[@]}")
  else
    write_config "$1" local "" "${3:-path}"
  fi
  env "${env[@]}" "$BIN" run --config "$1/kubeship.yaml" > "$1/agent.stdout" 2> "$1/agent.stderr" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
}


# steady_load NAME SINK PID NODE SPEC [META]: writer for DURATION s while sampling PID; SPEC
# (local:DIR or cw:URL) is where delivered records are counted. cw: the endpoint's counters are
# reset first, so its latency histogram holds exactly the steady lines. META (kubeship: path or
# kube): the records are checked to carry that metadata.
steady_load() {
  local name=$1 sink=$2 pid=$3 node=$4 spec=$5 meta=${6:--} u0 s0 u1 s1 t0 t1 info written cpu base e0=0 e1=0
  local st="$WORK/steady-cw-stats.json" lat="" valid="" check="" records recb ip
  if [[ $spec == cw:* ]]; then http POST "${spec#cw:}/reset" >/dev/null; base=0; e0=$(cpu_ticks "$CW_PID");
  else base=$(delivered "$spec"); fi
  local ppid=""
  if [[ $PERF == 1 && $name == kubeship ]]; then
    perf record -F "${PERF_FREQ:-999}" ${PERF_CALLGRAPH:--g} -p "$pid" -o "$node/perf.data" > "$node/perf.out" 2>&1 &
    ppid=$!
  fi
  rss_sampler "$pid" "$node/rss.txt" & local sampler=$!
  read -r u0 s0 <<<"$(cpu_ticks2 "$pid")"; t0=$(now)
  info=$(python3 "$WRITER" steady --dir "$node" --files "$FILES" --rate "$RATE" --duration "$DURATION")
  read -r u1 s1 <<<"$(cpu_ticks2 "$pid")"; t1=$(now)
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  if [[ -n $ppid ]]; then
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    perf_report "$node/perf.data"
    [[ -z ${PERF_KEEP:-} ]] || cp "$node/perf.data" "$PERF_KEEP"
  fi
  [[ $spec == cw:* ]] && e1=$(cpu_ticks "$CW_PID")
  written=$(sed -E 's/.*lines=([0-9]+).*/\1/' <<<"$info")
  cpu=$(calc "round(($u1 + $s1 - $u0 - $s0) / $CLK_TCK / ($t1 - $t0) * 100, 1)")
  local rss hwm lag=ok
  rss=$(python3 -c 'import statistics, sys; xs = [int(l) for l in open(sys.argv[1]) if l.strip()]
print(f"median {statistics.median(xs) / 1024:.1f}, max {max(xs) / 1024:.1f}" if xs else "-")' "$node/rss.txt")
  hwm=$(calc "round($(status_kb "$pid" VmHWM) / 1024, 1)")
  if ! wait_until_count "$spec" $((base + written)) 60; then
    lag="only $(( $(delivered "$spec") - base )) of $written delivered 60s after the load"
  fi
  if [[ $spec == cw:* ]]; then
    http GET "${spec#cw:}/stats" > "$st"
    lat=$(printf '  latency p50 %s ms, p99 %s ms, max %s ms' "$(jget "$st" 's["latency_ms"]["p50"]')" \
      "$(jget "$st" 's["latency_ms"]["p99"]')" "$(jget "$st" 's["latency_ms"]["max"]')")
    valid="  $(validity "$st" "$written")"
    [[ $valid != *INVALID* ]] || NOTES+=("steady ($sink, $(meta_label "$meta")):$valid")
    if [[ $meta != - ]]; then
      meta_check "$meta" "$(jget "$st" 's["events"]')" "$(jget "$st" 's["substring_count"]')"
      check="  record $(jget "$st" 'round(s["bytes"] / max(1, s["events"]), 1)') B, $CHECK"
    fi
  elif [[ $meta != - ]]; then
    read -r records recb ip <<<"$(sink_stats "${spec#local:}")"
    meta_check "$meta" "$records" "$ip"
    check="  record $recb B, $CHECK"
  fi
  add_row "$name" "$sink" steady "$(meta_label "$meta")" "$(printf '%6s%% CPU of one core  %5.2f CPU-s/Mlines (user %.2f, sys %.2f)  RSS %s MiB (VmHWM %s MiB)%s  %s lines at %s/s for %ss, delivery: %s%s%s' \
    "$cpu" "$(calc "($u1 + $s1 - $u0 - $s0) / $CLK_TCK / max(1, $written) * 1e6")" \
    "$(calc "($u1 - $u0) / $CLK_TCK / max(1, $written) * 1e6")" "$(calc "($s1 - $s0) / $CLK_TCK / max(1, $written) * 1e6")" \
    "$rss" "$hwm" "$lat" "$written" "$RATE" "$DURATION" "$lag" "$check" "$valid")"
  [[ $spec == cw:* ]] && endpoint_row steady "$meta" "$(calc "($e1 - $e0) / $CLK_TCK")" "$(calc "$t1 - $t0")" "$st"
  return 0
}

bench_steady() { # SINK META
  local sink=$1 meta=$2 node="$WORK/steady-$1-$2" spec
  mkdir -p "$node"
  python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 1 >/dev/null
  if [[ $meta == kube ]]; then start_api "$node" || return 1; fi
  if [[ $sink == cloudwatch ]]; then start_endpoint; spec="cw:$CW_URL"; else spec="local:$node/out"; fi
  start_kubeship "$node" "$sink" "$meta"
  wait_until_count "$spec" "$FILES" 60 || { echo "kubeship did not start delivering"; tail -20 "$node/agent.stderr"; return 1; }
  echo "steady ($sink, $(meta_label "$meta")): $RATE lines/s over $FILES files for ${DURATION}s..."
  steady_load kubeship "$sink" "$AGENT_PID" "$node" "$spec" "$meta"
  stop_pid "$AGENT_PID"
  if [[ $meta == kube ]]; then
    stop_api "$node"
    # The kubeship row: the last one, or the one before the endpoint's.
    if [[ $sink == cloudwatch ]]; then SUMMARY[-2]+="  $API_SUMMARY"; else SUMMARY[-1]+="  $API_SUMMARY"; fi
  fi
  [[ $sink == cloudwatch ]] && stop_endpoint
  rm -rf "$node"
}

bench_idle() { # SINK
  local sink=$1 node="$WORK/idle-$1" spec
  mkdir -p "$node"
  python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 10 >/dev/null
  if [[ $sink == cloudwatch ]]; then start_endpoint; spec="cw:$CW_URL"; else spec="local:$node/out"; fi
  start_kubeship "$node" "$sink"
  wait_until_count "$spec" $((FILES * 10)) 60 || { echo "kubeship did not deliver"; tail -20 "$node/agent.stderr"; return 1; }
  echo "idle ($sink): $FILES quiet files for ${IDLE_SECS}s..."
  read -r cpu rss hwm <<<"$(measure_running "$AGENT_PID" "$IDLE_SECS")"
  add_row kubeship "$sink" idle path "$(printf '%6s%% CPU of one core  RSS %6s MiB (peak %s MiB)  %s files, %ss' "$cpu" "$rss" "$hwm" "$FILES" "$IDLE_SECS")"
  stop_pid "$AGENT_PID"
  [[ $sink == cloudwatch ]] && stop_endpoint
  rm -rf "$node"
}

# --- peers (comparison hook; only when installed) ------------------------------------------

peer_cmd() { # NAME NODE OUTDIR -> prints the command line after writing its config
  local name=$1 node=$2 out=$3
  mkdir -p "$out"
  case $name in
    fluent-bit)
      cat > "$node/fluent-bit.conf" <<EOF
[SERVICE]
    flush        1
    log_level    warn
    storage.path $node/fb-storage
[INPUT]
    name              tail
    path              $node/logs/containers/*.log
    multiline.parser  cri, docker
    read_from_head    true
    refresh_interval  1
    db                $node/fb-state.db
    mem_buf_limit     64MB
[OUTPUT]
    name   file
    match  *
    path   $out
    file   out.log
    format plain
EOF
      echo "fluent-bit -c $node/fluent-bit.conf" ;;
    vector)
      cat > "$node/vector.yaml" <<EOF
data_dir: $node/vector-data
sources:
  k8s_files:
    type: file
    include: ["$node/logs/containers/*.log"]
    read_from: beginning
sinks:
  out:
    type: file
    inputs: [k8s_files]
    path: "$out/out.log"
    encoding: {codec: json}
EOF
      mkdir -p "$node/vector-data"
      echo "vector --quiet --config $node/vector.yaml" ;;
  esac
}

bench_peer() {
  local name=$1 cmd node pid t0 t1 c0 c1 wall
  if ! command -v "$name" >/dev/null 2>&1; then
    echo "note: $name is not installed; skipping the peer comparison"
    add_row "$name" file "-" "-" "not installed (skipped)"
    return 0
  fi
  if [[ $MODE == drain || $MODE == all ]]; then
    node="$WORK/peer-drain-$name"; mkdir -p "$node"
    python3 "$WRITER" prefill --dir "$node" --files "$FILES" --lines "$LINES" >/dev/null
    cmd=$(peer_cmd "$name" "$node" "$node/out")
    t0=$(now)
    $cmd > "$node/peer.stdout" 2> "$node/peer.stderr" & pid=$!; PIDS+=("$pid")
    c0=$(cpu_ticks "$pid")
    if wait_until_count "local:$node/out" "$LINES" 600; then
      t1=$(now); c1=$(cpu_ticks "$pid"); wall=$(calc "$t1 - $t0")
      add_row "$name" file drain "-" "$(printf '%10.0f lines/s  %6.2f CPU-s/Mlines  peak RSS %6.1f MiB' \
        "$(calc "$LINES / $wall")" "$(calc "($c1 - $c0) / $CLK_TCK / ($LINES / 1e6)")" \
        "$(calc "$(status_kb "$pid" VmHWM) / 1024")")"
    else
      add_row "$name" file drain "-" "did not deliver $LINES lines within 600s"
    fi
    stop_pid "$pid"; rm -rf "$node"
  fi
  if [[ $MODE == steady || $MODE == all ]]; then
    node="$WORK/peer-steady-$name"; mkdir -p "$node"
    python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 1 >/dev/null
    cmd=$(peer_cmd "$name" "$node" "$node/out")
    $cmd > "$node/peer.stdout" 2> "$node/peer.stderr" & pid=$!; PIDS+=("$pid")
    wait_until_count "local:$node/out" "$FILES" 60 || true
    steady_load "$name" file "$pid" "$node" "local:$node/out"
    stop_pid "$pid"; rm -rf "$node"
  fi
}

if [[ " ${DRAIN_METAS[*]} " == *" pad "* && ( $MODE == drain || $MODE == all ) ]]; then calibrate_pad; fi
if [[ $MODE == drain || $MODE == all ]]; then prefill_drain; fi
for sink in "${SINKS[@]}"; do
  if [[ $MODE == drain || $MODE == all ]]; then
    # Variants back to back, their order rotated each repetition.
    for rep in $(seq "$REPEAT"); do
      n=${#DRAIN_METAS[@]}
      for k in $(seq 0 $((n - 1))); do bench_drain "$sink" "${DRAIN_METAS[$(( (k + rep - 1) % n ))]}" "$rep"; done
    done
  fi
  if [[ $MODE == steady || $MODE == all ]]; then
    for meta in "${STEADY_METAS[@]}"; do bench_steady "$sink" "$meta"; done
  fi
  if [[ $MODE == idle || $MODE == all ]]; then bench_idle "$sink"; fi
done
case $PEER in
  none) ;;
  all) bench_peer fluent-bit; bench_peer vector ;;
  fluent-bit|vector) bench_peer "$PEER" ;;
  *) echo "unknown --peer $PEER" >&2; exit 2 ;;
esac

echo
echo "== kubeship log benchmark summary ($(nproc) cores; files=$FILES${EXTRA:+; extra config: $EXTRA}) =="
printf "$ROW_FMT\n" agent sink mode meta result
for row in "${SUMMARY[@]}"; do echo "$row"; done
compare_drains
for note in "${NOTES[@]:-}"; do [[ -n $note ]] && echo "note: $note"; done
exit 0
