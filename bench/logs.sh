#!/usr/bin/env bash
# Log pipeline benchmarks for kubeship (release build), local sink and/or CloudWatch Logs sink.
#
#   bench/logs.sh [--mode drain|steady|idle|all] [--sink local|cloudwatch|both] [--lines N]
#                 [--files M] [--duration D] [--rate R] [--idle-secs S]
#                 [--peer none|fluent-bit|vector|all] [--perf] [--cw-validate fast|full] [--no-build]
#
# drain : prefill N lines (default 2,000,000) of ~200 bytes CRI over M files (default 100),
#         run `kubeship run --exit-on-eof` under /usr/bin/time -v; report lines/s, MiB/s,
#         CPU seconds (user+sys) per million lines, peak RSS.
# steady: a rate-limited writer appends R lines/s (default 10,000) over M files for D seconds
#         (default 30) while the agent runs; report the agent's CPU % of one core (from
#         /proc/<pid>/stat utime+stime), CPU seconds per million lines and RSS (VmRSS, VmHWM).
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
# --perf: record the agent with `perf record -g` during the drain and print the threads and the
#         top symbols (perf adds a few % of overhead to that drain's numbers).
# --cw-validate: the endpoint's validator (see bench/cw_endpoint.py --help); default full.
# --peer: run the same drain/steady load against Fluent Bit and/or Vector when installed
#         (skipped with a note otherwise) for a side-by-side comparison (file outputs).
#
# Everything happens in a mktemp directory that is removed at exit. Prints a summary table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubeship-target}"

MODE=all LINES=2000000 FILES=100 DURATION=30 RATE=10000 IDLE_SECS=10 PEER=none BUILD=1
SINK=local PERF=0 CW_VALIDATE=full
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
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $MODE in drain|steady|idle|all) ;; *) echo "bad --mode $MODE" >&2; exit 2 ;; esac
case $SINK in local|cloudwatch) SINKS=("$SINK") ;; both) SINKS=(local cloudwatch) ;;
  *) echo "bad --sink $SINK" >&2; exit 2 ;; esac
case $CW_VALIDATE in fast|full) ;; *) echo "bad --cw-validate $CW_VALIDATE" >&2; exit 2 ;; esac

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

if [[ $BUILD == 1 ]]; then
  cargo build --release -p kubeship
fi
BIN="${KUBESHIP_BIN_RELEASE:-$CARGO_TARGET_DIR/release/kubeship}"
[[ -x $BIN ]] || { echo "error: $BIN not found (build with cargo build --release -p kubeship)" >&2; exit 1; }
"$BIN" --version

WRITER="$ROOT/bench/writer.py"
WORK="$(mktemp -d -t kubeship-bench.XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

CLK_TCK=$(getconf CLK_TCK)
SUMMARY=()
NOTES=()
add_row() { SUMMARY+=("$(printf '%-11s %-10s %-7s %s' "$1" "$2" "$3" "$4")"); } # AGENT SINK MODE RESULT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# write_config NODE [SINK [ENDPOINT_URL]] -> NODE/kubeship.yaml (relative paths), telemetry on a
# free port (TELEMETRY_PORT)
write_config() {
  local node=$1 sink=${2:-local} url=${3:-} port output
  port=$(free_port)
  TELEMETRY_PORT=$port
  case $sink in
    local) output="local: {dir: ./out}" ;;
    cloudwatch) output="cloudwatch: {region: us-east-1, endpoint_url: \"$url\", create_group: true}" ;;
  esac
  cat > "$node/kubeship.yaml" <<EOF
cluster: bench
node_name: bench-node
state_dir: ./state
logs:
  containers_dir: ./logs/containers
  read_from: beginning
  eof_flush_ms: 1000
output:
  group: "/aws/containerinsights/{cluster}/application"
  stream: "{pod}_{namespace}_{container}"
  $output
telemetry: {listen_addr: "127.0.0.1:$port", log_format: json, log_level: warn}
EOF
}

count_out() { # DIR -> number of output lines
  local n
  n=$(find "$1" -type f \( -name '*.jsonl' -o -name '*.log' -o -name '*.json' \) -exec cat {} + 2>/dev/null | wc -l)
  echo "${n:-0}"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
cpu_ticks2() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null || echo 0 0; } # user sys
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# --- the CloudWatch endpoint (bench/cw_endpoint.py) ------------------------------------------

# The agent's environment for the CloudWatch sink: static dummy credentials, no IMDS, no proxy.
CW_ENV=(AWS_ACCESS_KEY_ID=AKIDKUBESHIPBENCH AWS_SECRET_ACCESS_KEY=kubeship-bench-secret
  AWS_EC2_METADATA_DISABLED=true NO_PROXY=127.0.0.1 no_proxy=127.0.0.1)
CW_PID="" CW_URL=""

start_endpoint() { # -> CW_PID, CW_URL
  local portfile="$WORK/cw-endpoint.port" i
  : > "$portfile"
  python3 "$ROOT/bench/cw_endpoint.py" --port 0 --validate "$CW_VALIDATE" \
    > "$portfile" 2> "$WORK/cw-endpoint.stderr" &
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
jget() { python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

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

# endpoint_row MODE CPU_S WALL_S STATS_FILE: the endpoint's own CPU, on its own row
endpoint_row() {
  local mode=$1 cpu=$2 wall=$3 st=$4 pct note=""
  pct=$(calc "round($cpu / $wall * 100, 1)")
  if python3 -c "import sys; sys.exit(0 if $pct >= 95 else 1)"; then
    note="  SATURATED (>= 95% of one core, one GIL): the endpoint may be what bounds lines/s"
    NOTES+=("cloudwatch $mode: the Python endpoint was saturated ($pct% of one core); the agent's lines/s is a lower bound")
  fi
  add_row cw-endpoint cloudwatch "$mode" "$(printf '%6.2f CPU-s = %5.1f%% of one core over %.1fs (separate process, NOT in kubeship'"'"'s numbers)  %s PutLogEvents, %s events/request, validator %s%s' \
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

# metrics_scraper PORT FILE: keeps the agent's latest /metrics in FILE while it answers
metrics_scraper() {
  while http GET "http://127.0.0.1:$1/metrics" > "$2.tmp" 2>/dev/null; do
    mv -f "$2.tmp" "$2"
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
  perf report -i "$1" --stdio --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9.]+%' | head -8
  echo "--- perf: top symbols (self) ---"
  perf report -i "$1" --stdio --no-children --sort comm,dso,sym 2>/dev/null | grep -E '^ +[0-9.]+%' | head -25
}

# --- kubeship ----------------------------------------------------------------------------------

bench_drain() { # SINK
  local sink=$1 node="$WORK/drain-$1" info bytes t0 t1 wall user sys rss out env=() tpid apid ppid="" valid=""
  local e0 e1 st="$WORK/drain-cw-stats.json" scraper="" extra=""
  mkdir -p "$node"
  echo "drain ($sink): prefilling $LINES lines over $FILES files..."
  info=$(python3 "$WRITER" prefill --dir "$node" --files "$FILES" --lines "$LINES")
  bytes=${info##*bytes=}
  if [[ $sink == cloudwatch ]]; then
    start_endpoint
    write_config "$node" cloudwatch "$CW_URL"
    env=("${CW_ENV[@]}")
    e0=$(cpu_ticks "$CW_PID")
  else
    write_config "$node"
  fi
  echo "drain ($sink): running kubeship --exit-on-eof..."
  t0=$(now)
  /usr/bin/time -v -o "$node/time.txt" env "${env[@]}" "$BIN" run --config "$node/kubeship.yaml" --exit-on-eof \
    > "$node/agent.stdout" 2> "$node/agent.stderr" &
  tpid=$!
  PIDS+=("$tpid")
  if [[ $PERF == 1 || $sink == cloudwatch ]]; then
    for _ in $(seq 200); do apid=$(pgrep -P "$tpid" | head -1 || true); [[ -n $apid ]] && break; sleep 0.01; done
    if [[ -n ${apid:-} && $PERF == 1 ]]; then
      perf record -F 999 -g -p "$apid" -o "$node/perf.data" > "$node/perf.out" 2>&1 &
      ppid=$!
    fi
    if [[ -n ${apid:-} && $sink == cloudwatch ]]; then
      metrics_scraper "$TELEMETRY_PORT" "$node/metrics.txt" & scraper=$!
    fi
  fi
  wait "$tpid" || { echo "kubeship failed:"; tail -20 "$node/agent.stderr"; [[ $sink == cloudwatch ]] && stop_endpoint; return 1; }
  t1=$(now)
  [[ -n $scraper ]] && { kill "$scraper" 2>/dev/null; wait "$scraper" 2>/dev/null || true; }
  [[ -n $ppid ]] && { wait "$ppid" 2>/dev/null || true; perf_report "$node/perf.data"; }
  wall=$(calc "$t1 - $t0")
  user=$(awk -F': ' '/User time/ {print $2}' "$node/time.txt")
  sys=$(awk -F': ' '/System time/ {print $2}' "$node/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$node/time.txt")
  grep -q "not everything in flight was delivered" "$node/agent.stdout" && echo "WARNING: kubeship did not deliver everything before its shutdown timeout"
  if [[ $sink == cloudwatch ]]; then
    e1=$(cpu_ticks "$CW_PID")
    http GET "$CW_URL/stats" > "$st"
    valid=$(validity "$st" "$LINES")
    if [[ -s $node/metrics.txt ]]; then
      local n d
      n=$(metric "$node/metrics.txt" kubeship_cloudwatch_request_duration_seconds_count)
      d=$(metric "$node/metrics.txt" kubeship_cloudwatch_request_duration_seconds_sum)
      extra=$(printf '  agent: mean PutLogEvents %.1f ms (last scrape, %.0f calls)' "$(calc "$d / max(1, $n) * 1000")" "$n")
    fi
  else
    out=$(count_out "$node/out")
    [[ $out == "$LINES" ]] || echo "WARNING: drain delivered $out records for $LINES lines"
  fi
  add_row kubeship "$sink" drain "$(printf '%10.0f lines/s  %7.1f MiB/s  %6.2f CPU-s/Mlines (user %.2f, sys %.2f)  peak RSS %6.1f MiB  (%s lines in %.2fs)%s%s' \
    "$(calc "$LINES / $wall")" "$(calc "$bytes / $wall / 1048576")" \
    "$(calc "($user + $sys) / ($LINES / 1e6)")" "$(calc "$user / ($LINES / 1e6)")" "$(calc "$sys / ($LINES / 1e6)")" \
    "$(calc "$rss / 1024")" "$LINES" "$wall" "${valid:+  $valid}" "$extra")"
  if [[ $sink == cloudwatch ]]; then
    endpoint_row drain "$(calc "($e1 - $e0) / $CLK_TCK")" "$wall" "$st"
    stop_endpoint
  fi
  rm -rf "$node"
}

# measure_running PID SECONDS -> "cpu% rss_mib hwm_mib" over SECONDS (sleeping is the point here)
measure_running() {
  local pid=$1 secs=$2 c0 c1 t0 t1
  c0=$(cpu_ticks "$pid"); t0=$(now)
  sleep "$secs"
  c1=$(cpu_ticks "$pid"); t1=$(now)
  printf '%s %s %s' "$(calc "round(($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100, 1)")" \
    "$(calc "round($(status_kb "$pid" VmRSS) / 1024, 1)")" "$(calc "round($(status_kb "$pid" VmHWM) / 1024, 1)")"
}

start_kubeship() { # NODE [SINK] -> sets AGENT_PID (cloudwatch: to the running endpoint, CW_URL)
  local env=()
  if [[ ${2:-local} == cloudwatch ]]; then
    write_config "$1" cloudwatch "$CW_URL"
    env=("${CW_ENV[@]}")
  else
    write_config "$1"
  fi
  env "${env[@]}" "$BIN" run --config "$1/kubeship.yaml" > "$1/agent.stdout" 2> "$1/agent.stderr" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
}

stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# steady_load NAME SINK PID NODE SPEC: writer for DURATION s while sampling PID; SPEC (local:DIR
# or cw:URL) is where delivered records are counted. cw: the endpoint's counters are reset first,
# so its latency histogram holds exactly the steady lines.
steady_load() {
  local name=$1 sink=$2 pid=$3 node=$4 spec=$5 u0 s0 u1 s1 t0 t1 info written cpu base e0=0 e1=0
  local st="$WORK/steady-cw-stats.json" lat="" valid=""
  if [[ $spec == cw:* ]]; then http POST "${spec#cw:}/reset" >/dev/null; base=0; e0=$(cpu_ticks "$CW_PID");
  else base=$(delivered "$spec"); fi
  read -r u0 s0 <<<"$(cpu_ticks2 "$pid")"; t0=$(now)
  info=$(python3 "$WRITER" steady --dir "$node" --files "$FILES" --rate "$RATE" --duration "$DURATION")
  read -r u1 s1 <<<"$(cpu_ticks2 "$pid")"; t1=$(now)
  [[ $spec == cw:* ]] && e1=$(cpu_ticks "$CW_PID")
  written=$(sed -E 's/.*lines=([0-9]+).*/\1/' <<<"$info")
  cpu=$(calc "round(($u1 + $s1 - $u0 - $s0) / $CLK_TCK / ($t1 - $t0) * 100, 1)")
  local rss hwm lag=ok
  rss=$(calc "round($(status_kb "$pid" VmRSS) / 1024, 1)")
  hwm=$(calc "round($(status_kb "$pid" VmHWM) / 1024, 1)")
  if ! wait_until_count "$spec" $((base + written)) 60; then
    lag="only $(( $(delivered "$spec") - base )) of $written delivered 60s after the load"
  fi
  if [[ $spec == cw:* ]]; then
    http GET "${spec#cw:}/stats" > "$st"
    lat=$(printf '  latency p50 %s ms, p99 %s ms, max %s ms' "$(jget "$st" 's["latency_ms"]["p50"]')" \
      "$(jget "$st" 's["latency_ms"]["p99"]')" "$(jget "$st" 's["latency_ms"]["max"]')")
    valid="  $(validity "$st" "$written")"
  fi
  add_row "$name" "$sink" steady "$(printf '%6s%% CPU of one core  %5.2f CPU-s/Mlines (user %.2f, sys %.2f)  RSS %6s MiB (peak %s MiB)%s  %s lines at %s/s for %ss, delivery: %s%s' \
    "$cpu" "$(calc "($u1 + $s1 - $u0 - $s0) / $CLK_TCK / max(1, $written) * 1e6")" \
    "$(calc "($u1 - $u0) / $CLK_TCK / max(1, $written) * 1e6")" "$(calc "($s1 - $s0) / $CLK_TCK / max(1, $written) * 1e6")" \
    "$rss" "$hwm" "$lat" "$written" "$RATE" "$DURATION" "$lag" "$valid")"
  [[ $spec == cw:* ]] && endpoint_row steady "$(calc "($e1 - $e0) / $CLK_TCK")" "$(calc "$t1 - $t0")" "$st"
  return 0
}

bench_steady() { # SINK
  local sink=$1 node="$WORK/steady-$1" spec
  mkdir -p "$node"
  python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 1 >/dev/null
  if [[ $sink == cloudwatch ]]; then start_endpoint; spec="cw:$CW_URL"; else spec="local:$node/out"; fi
  start_kubeship "$node" "$sink"
  wait_until_count "$spec" "$FILES" 60 || { echo "kubeship did not start delivering"; tail -20 "$node/agent.stderr"; return 1; }
  echo "steady ($sink): $RATE lines/s over $FILES files for ${DURATION}s..."
  steady_load kubeship "$sink" "$AGENT_PID" "$node" "$spec"
  stop_pid "$AGENT_PID"
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
  add_row kubeship "$sink" idle "$(printf '%6s%% CPU of one core  RSS %6s MiB (peak %s MiB)  %s files, %ss' "$cpu" "$rss" "$hwm" "$FILES" "$IDLE_SECS")"
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
    add_row "$name" file "-" "not installed (skipped)"
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
      add_row "$name" file drain "$(printf '%10.0f lines/s  %6.2f CPU-s/Mlines  peak RSS %6.1f MiB' \
        "$(calc "$LINES / $wall")" "$(calc "($c1 - $c0) / $CLK_TCK / ($LINES / 1e6)")" \
        "$(calc "$(status_kb "$pid" VmHWM) / 1024")")"
    else
      add_row "$name" file drain "did not deliver $LINES lines within 600s"
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

for sink in "${SINKS[@]}"; do
  if [[ $MODE == drain || $MODE == all ]]; then bench_drain "$sink"; fi
  if [[ $MODE == steady || $MODE == all ]]; then bench_steady "$sink"; fi
  if [[ $MODE == idle || $MODE == all ]]; then bench_idle "$sink"; fi
done
case $PEER in
  none) ;;
  all) bench_peer fluent-bit; bench_peer vector ;;
  fluent-bit|vector) bench_peer "$PEER" ;;
  *) echo "unknown --peer $PEER" >&2; exit 2 ;;
esac

echo
echo "== kubeship log benchmark summary ($(nproc) cores; files=$FILES) =="
printf '%-11s %-10s %-7s %s\n' agent sink mode result
for row in "${SUMMARY[@]}"; do echo "$row"; done
for note in "${NOTES[@]:-}"; do [[ -n $note ]] && echo "note: $note"; done
exit 0
