#!/usr/bin/env bash
# Log pipeline benchmarks for kubeship (release build), local sink.
#
#   bench/logs.sh [--mode drain|steady|idle|all] [--lines N] [--files M] [--duration D]
#                 [--rate R] [--idle-secs S] [--peer none|fluent-bit|vector|all] [--no-build]
#
# drain : prefill N lines (default 2,000,000) of ~200 bytes CRI over M files (default 100),
#         run `kubeship run --exit-on-eof` under /usr/bin/time -v; report lines/s, MiB/s,
#         CPU seconds (user+sys) per million lines, peak RSS.
# steady: a rate-limited writer appends R lines/s (default 10,000) over M files for D seconds
#         (default 30) while the agent runs; report the agent's CPU % of one core (from
#         /proc/<pid>/stat utime+stime) and RSS (VmRSS, VmHWM).
# idle  : the agent tails M files that do not change for S seconds (default 10); CPU % and RSS.
# --peer: run the same drain/steady load against Fluent Bit and/or Vector when installed
#         (skipped with a note otherwise) for a side-by-side comparison.
#
# Everything happens in a mktemp directory that is removed at exit. Prints a summary table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubeship-target}"

MODE=all LINES=2000000 FILES=100 DURATION=30 RATE=10000 IDLE_SECS=10 PEER=none BUILD=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --mode) MODE=$2; shift 2 ;;
    --lines) LINES=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --idle-secs) IDLE_SECS=$2; shift 2 ;;
    --peer) PEER=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
case $MODE in drain|steady|idle|all) ;; *) echo "bad --mode $MODE" >&2; exit 2 ;; esac

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
add_row() { SUMMARY+=("$(printf '%-10s %-7s %s' "$1" "$2" "$3")"); }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# write_config NODE -> NODE/kubeship.yaml (relative paths), telemetry on a free port
write_config() {
  local node=$1 port
  port=$(free_port)
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
  local: {dir: ./out}
telemetry: {listen_addr: "127.0.0.1:$port", log_format: json, log_level: warn}
EOF
}

count_out() { # DIR -> number of output lines
  local n
  n=$(find "$1" -type f \( -name '*.jsonl' -o -name '*.log' -o -name '*.json' \) -exec cat {} + 2>/dev/null | wc -l)
  echo "${n:-0}"
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# wait_until_count DIR N TIMEOUT_S -> 0 when DIR holds >= N output lines
wait_until_count() {
  local deadline=$(( $(date +%s) + $3 ))
  while (( $(date +%s) < deadline )); do
    (( $(count_out "$1") >= $2 )) && return 0
    sleep 0.5
  done
  return 1
}

# --- kubeship ----------------------------------------------------------------------------------

bench_drain() {
  local node="$WORK/drain" info bytes t0 t1 wall user sys rss out
  mkdir -p "$node"
  echo "drain: prefilling $LINES lines over $FILES files..."
  info=$(python3 "$WRITER" prefill --dir "$node" --files "$FILES" --lines "$LINES")
  bytes=${info##*bytes=}
  write_config "$node"
  t0=$(now)
  /usr/bin/time -v -o "$node/time.txt" "$BIN" run --config "$node/kubeship.yaml" --exit-on-eof \
    > "$node/agent.stdout" 2> "$node/agent.stderr" || { echo "kubeship failed:"; tail -20 "$node/agent.stderr"; return 1; }
  t1=$(now)
  wall=$(calc "$t1 - $t0")
  user=$(awk -F': ' '/User time/ {print $2}' "$node/time.txt")
  sys=$(awk -F': ' '/System time/ {print $2}' "$node/time.txt")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$node/time.txt")
  out=$(count_out "$node/out")
  [[ $out == "$LINES" ]] || echo "WARNING: drain delivered $out records for $LINES lines"
  add_row kubeship drain "$(printf '%10.0f lines/s  %7.1f MiB/s  %6.2f CPU-s/Mlines (user %.2f, sys %.2f)  peak RSS %6.1f MiB  (%s lines in %.2fs)' \
    "$(calc "$LINES / $wall")" "$(calc "$bytes / $wall / 1048576")" \
    "$(calc "($user + $sys) / ($LINES / 1e6)")" "$(calc "$user / ($LINES / 1e6)")" "$(calc "$sys / ($LINES / 1e6)")" \
    "$(calc "$rss / 1024")" "$LINES" "$wall")"
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

start_kubeship() { # NODE -> sets AGENT_PID
  write_config "$1"
  "$BIN" run --config "$1/kubeship.yaml" > "$1/agent.stdout" 2> "$1/agent.stderr" &
  AGENT_PID=$!
  PIDS+=("$AGENT_PID")
}

stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# steady_load NAME PID NODE OUTDIR: writer for DURATION s while sampling PID
steady_load() {
  local name=$1 pid=$2 node=$3 outdir=$4 c0 c1 t0 t1 info written cpu base
  base=$(count_out "$outdir")
  c0=$(cpu_ticks "$pid"); t0=$(now)
  info=$(python3 "$WRITER" steady --dir "$node" --files "$FILES" --rate "$RATE" --duration "$DURATION")
  c1=$(cpu_ticks "$pid"); t1=$(now)
  written=$(sed -E 's/.*lines=([0-9]+).*/\1/' <<<"$info")
  cpu=$(calc "round(($c1 - $c0) / $CLK_TCK / ($t1 - $t0) * 100, 1)")
  local rss hwm lag=ok
  rss=$(calc "round($(status_kb "$pid" VmRSS) / 1024, 1)")
  hwm=$(calc "round($(status_kb "$pid" VmHWM) / 1024, 1)")
  if ! wait_until_count "$outdir" $((base + written)) 60; then
    lag="only $(( $(count_out "$outdir") - base )) of $written delivered 60s after the load"
  fi
  add_row "$name" steady "$(printf '%6s%% CPU of one core  RSS %6s MiB (peak %s MiB)  %s lines at %s/s for %ss, delivery: %s' \
    "$cpu" "$rss" "$hwm" "$written" "$RATE" "$DURATION" "$lag")"
}

bench_steady() {
  local node="$WORK/steady"
  mkdir -p "$node"
  python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 1 >/dev/null
  start_kubeship "$node"
  wait_until_count "$node/out" "$FILES" 60 || { echo "kubeship did not start delivering"; tail -20 "$node/agent.stderr"; return 1; }
  echo "steady: $RATE lines/s over $FILES files for ${DURATION}s..."
  steady_load kubeship "$AGENT_PID" "$node" "$node/out"
  stop_pid "$AGENT_PID"
  rm -rf "$node"
}

bench_idle() {
  local node="$WORK/idle" m
  mkdir -p "$node"
  python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 10 >/dev/null
  start_kubeship "$node"
  wait_until_count "$node/out" $((FILES * 10)) 60 || { echo "kubeship did not deliver"; tail -20 "$node/agent.stderr"; return 1; }
  echo "idle: $FILES quiet files for ${IDLE_SECS}s..."
  read -r cpu rss hwm <<<"$(measure_running "$AGENT_PID" "$IDLE_SECS")"
  add_row kubeship idle "$(printf '%6s%% CPU of one core  RSS %6s MiB (peak %s MiB)  %s files, %ss' "$cpu" "$rss" "$hwm" "$FILES" "$IDLE_SECS")"
  stop_pid "$AGENT_PID"
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
    add_row "$name" "-" "not installed (skipped)"
    return 0
  fi
  if [[ $MODE == drain || $MODE == all ]]; then
    node="$WORK/peer-drain-$name"; mkdir -p "$node"
    python3 "$WRITER" prefill --dir "$node" --files "$FILES" --lines "$LINES" >/dev/null
    cmd=$(peer_cmd "$name" "$node" "$node/out")
    t0=$(now)
    $cmd > "$node/peer.stdout" 2> "$node/peer.stderr" & pid=$!; PIDS+=("$pid")
    c0=$(cpu_ticks "$pid")
    if wait_until_count "$node/out" "$LINES" 600; then
      t1=$(now); c1=$(cpu_ticks "$pid"); wall=$(calc "$t1 - $t0")
      add_row "$name" drain "$(printf '%10.0f lines/s  %6.2f CPU-s/Mlines  peak RSS %6.1f MiB' \
        "$(calc "$LINES / $wall")" "$(calc "($c1 - $c0) / $CLK_TCK / ($LINES / 1e6)")" \
        "$(calc "$(status_kb "$pid" VmHWM) / 1024")")"
    else
      add_row "$name" drain "did not deliver $LINES lines within 600s"
    fi
    stop_pid "$pid"; rm -rf "$node"
  fi
  if [[ $MODE == steady || $MODE == all ]]; then
    node="$WORK/peer-steady-$name"; mkdir -p "$node"
    python3 "$WRITER" layout --dir "$node" --files "$FILES" --lines-per-file 1 >/dev/null
    cmd=$(peer_cmd "$name" "$node" "$node/out")
    $cmd > "$node/peer.stdout" 2> "$node/peer.stderr" & pid=$!; PIDS+=("$pid")
    wait_until_count "$node/out" "$FILES" 60 || true
    steady_load "$name" "$pid" "$node" "$node/out"
    stop_pid "$pid"; rm -rf "$node"
  fi
}

if [[ $MODE == drain || $MODE == all ]]; then bench_drain; fi
if [[ $MODE == steady || $MODE == all ]]; then bench_steady; fi
if [[ $MODE == idle || $MODE == all ]]; then bench_idle; fi
case $PEER in
  none) ;;
  all) bench_peer fluent-bit; bench_peer vector ;;
  fluent-bit|vector) bench_peer "$PEER" ;;
  *) echo "unknown --peer $PEER" >&2; exit 2 ;;
esac

echo
echo "== kubeship log benchmark summary ($(nproc) cores; files=$FILES) =="
printf '%-10s %-7s %s\n' agent mode result
for row in "${SUMMARY[@]}"; do echo "$row"; done
