#!/usr/bin/env bash
# Metrics pipeline benchmark: kubeship and vmagent scraping the same loopback targets and
# forwarding with Prometheus remote write, side by side in one run.
#
#   bench/metrics.sh [--targets N] [--series S] [--interval I] [--duration D] [--warmup W]
#                    [--agents LIST] [--with-huge] [--huge-bytes B] [--body-limit BYTES]
#                    [--perf] [--extra YAML] [--bin PATH] [--no-build]
#
# Targets: `metrics-targets` (tests/bin/metrics_targets.rs, one process, one thread) serves N
#         ports on 127.0.0.1 (default 200), each a /metrics of S series (default 500: ~40 %
#         counters, ~40 % histogram buckets/_sum/_count, the rest gauges; text format with
#         # HELP and # TYPE, ~90 bytes a sample, uncompressed), new values at every scrape.
#         Its CPU is printed on its own `targets` row (not in the agents' numbers).
# Receiver: `rw-counter` (tests/bin/rw_counter.rs), a count-only remote-write 1.0 receiver
#         (snappy + protobuf decoded whole, every sample and distinct series counted, answers
#         204). Each agent gets its own, so counts are per agent; its CPU is on a `receiver` row.
# Agents: one after the other (fairer on a 2-core machine than concurrently), each with a
#         fresh targets process and receiver: kubeship (metrics.scrape.static_targets, pods,
#         kubelet and self_metrics off, one remote_write endpoint with its defaults) and vmagent
#         (Debian package victoria-metrics, installed with apt-get when missing; its service is
#         stopped and disabled; -promscrape.config with static_configs, -remoteWrite.url,
#         -remoteWrite.tmpDataPath in the run's directory, other flags at their defaults). Both
#         scrape every I seconds (default 15) with a 10 s timeout and the same body limit
#         (--body-limit, default 16 MiB: kubeship's default body_limit_bytes,
#         vmagent's -promscrape.maxScrapeSize=16MiB, its default too), and send the same label
#         sets: job, instance, node (a target label), cluster (kubeship's default
#         external label; vmagent -remoteWrite.label).
# Measure: each agent runs under /usr/bin/time -v; once its receiver has seen a first sample,
#         W seconds of warm-up (default I + 5: every target scraped once, caches built), then D
#         seconds (default 120) measured: CPU seconds from /proc/<pid>/stat (utime + stime),
#         samples received in the window (all: the targets' series and the per-scrape report
#         series up, scrape_*), VmRSS sampled every 0.5 s (median, largest) and VmHWM (peak
#         since start). Reported: CPU seconds per million samples received, samples/s, peak and
#         median RSS; the whole run's CPU and maximum RSS from /usr/bin/time.
# Check:  samples of the targets' series received in the window against what the targets
#         served in it (targets x series x scrapes; within 5 % when the window spans 4
#         intervals or more); after the agent stopped, all received
#         against all served, distinct series (N x S expected), the report series per
#         scrape, staleness markers, undecodable requests. A run far off is noted INVALID.
# --with-huge: one more target streams a B-byte body (default 52428800, 50 MB; chunked, distinct
#         series) to both agents; its scrapes fail at the body limit (each agent stops reading
#         there). The run reports peak RSS against kubeship's goal (<= 64 MiB) and how much of
#         each huge body the agent read.
# --agents: comma-separated, default kubeship,vmagent.
# --perf: `perf record -g` of each agent during its window; prints threads and top symbols
#         (PERF_FREQ, default 999; PERF_CALLGRAPH, default -g, e.g. "--call-graph dwarf";
#         PERF_KEEP=DIR keeps the perf.data files there as AGENT.perf.data).
# --extra: YAML merged into kubeship's config, map by map (e.g.
#         --extra 'metrics: {remote_write: ...}' replaces the list), noted in the summary.
# --bin: the kubeship binary (default: the release build, or $KUBESHIP_BIN_RELEASE).
#
# Everything happens in a mktemp directory that is removed at exit. Prints a summary table and
# the ratios kubeship/vmagent against the goals (<= 0.5x vmagent's CPU per sample and RSS).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubeship-target}"

TARGETS=200 SERIES=500 INTERVAL=15 DURATION=120 WARMUP="" AGENTS=kubeship,vmagent HUGE=0
HUGE_BYTES=52428800 BODY_LIMIT=16777216 PERF=0 EXTRA="" BIN_ARG="" BUILD=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --targets) TARGETS=$2; shift 2 ;;
    --series) SERIES=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --agents) AGENTS=$2; shift 2 ;;
    --with-huge) HUGE=1; shift ;;
    --huge-bytes) HUGE_BYTES=$2; shift 2 ;;
    --body-limit) BODY_LIMIT=$2; shift 2 ;;
    --perf) PERF=1; shift ;;
    --extra) EXTRA=$2; shift 2 ;;
    --bin) BIN_ARG=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for v in TARGETS SERIES INTERVAL DURATION HUGE_BYTES BODY_LIMIT; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "bad --${v,,} ${!v}" >&2; exit 2; }
done
WARMUP=${WARMUP:-$((INTERVAL + 5))}
[[ $WARMUP =~ ^[0-9]+$ ]] || { echo "bad --warmup $WARMUP" >&2; exit 2; }
IFS=, read -r -a AGENT_LIST <<<"$AGENTS"
for a in "${AGENT_LIST[@]}"; do
  case $a in kubeship|vmagent) ;; *) echo "bad --agents entry $a" >&2; exit 2 ;; esac
done

apt_install() {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
[[ -x /usr/bin/time ]] || apt_install time
command -v python3 >/dev/null 2>&1 || apt_install python3
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null 2>&1; then
  echo "note: perf is not installed; --perf ignored" >&2
  PERF=0
fi

# vmagent: the Debian package (its binary is vmagent, or victoria-metrics-vmagent in some
# builds); the package's own service (the single-node database) is stopped and disabled.
VMAGENT=""
find_vmagent() {
  local c
  for c in "$(command -v vmagent 2>/dev/null || true)" /usr/bin/vmagent /usr/bin/victoria-metrics-vmagent \
    /usr/bin/victoria-metrics-*/vmagent; do
    [[ -n $c && -x $c && ! -d $c ]] && { VMAGENT=$c; return 0; }
  done
  return 1
}
if [[ " ${AGENT_LIST[*]} " == *" vmagent "* ]]; then
  if ! find_vmagent; then
    echo "installing vmagent (apt-get install victoria-metrics)..."
    apt_install victoria-metrics
    find_vmagent || { echo "error: no vmagent binary after installing victoria-metrics" >&2; exit 1; }
  fi
  for svc in victoria-metrics vmagent; do
    if command -v systemctl >/dev/null 2>&1; then
      systemctl stop "$svc" >/dev/null 2>&1 || true
      systemctl disable "$svc" >/dev/null 2>&1 || true
    fi
    if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
  done
fi

if [[ $BUILD == 1 ]]; then
  cargo build --release -p kubeship
  cargo build --release -p kubeship-tests --bin metrics-targets --bin rw-counter
fi
BIN="${BIN_ARG:-${KUBESHIP_BIN_RELEASE:-$CARGO_TARGET_DIR/release/kubeship}}"
TARGETS_BIN="$CARGO_TARGET_DIR/release/metrics-targets"
RECEIVER_BIN="$CARGO_TARGET_DIR/release/rw-counter"
for b in "$BIN" "$TARGETS_BIN" "$RECEIVER_BIN"; do
  [[ -x $b ]] || { echo "error: $b not found (build without --no-build)" >&2; exit 1; }
done
"$BIN" --version
VMAGENT_VERSION=""
if [[ -n $VMAGENT ]]; then
  VMAGENT_VERSION=$("$VMAGENT" -version 2>&1 | head -1 || true)
  [[ -n $VMAGENT_VERSION ]] ||
    VMAGENT_VERSION="package victoria-metrics $(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo '?')"
  echo "vmagent: $VMAGENT ($VMAGENT_VERSION)"
fi

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
bench_workdir kubeship-metrics-bench
SUMMARY=()
NOTES=()
RESULTS="$WORK/results.txt" # agent cpu_per_msample samples_per_s peak_mib median_mib
: > "$RESULTS"
ROW_FMT='%-9s %s'
add_row() { SUMMARY+=("$(printf "$ROW_FMT" "$1" "$2")"); }


# get URL FILE: the body of GET URL into FILE (no proxies from the environment)
get() {
  python3 - "$1" "$2" <<'EOF'
import sys, urllib.request
op = urllib.request.build_opener(urllib.request.ProxyHandler({}))
open(sys.argv[2], "w").write(op.open(sys.argv[1], timeout=10).read().decode())
EOF
}
# jget FILE EXPR -> EXPR evaluated with s = the JSON document in FILE

# metric FILE NAME [LABEL_SUBSTRING] -> sum of the samples of NAME (lines containing the substring)
metric() {
  awk -v n="$2" -v f="${3:-}" '($1 == n || index($1, n "{") == 1) && index($0, f) {s += $NF} END {printf "%.0f\n", s + 0}' "$1" 2>/dev/null || echo 0
}

# perf_report DATA: threads and top symbols
perf_report() {
  echo "--- perf: CPU samples by thread ---"
  perf report -i "$1" --stdio --no-children --sort comm 2>/dev/null | grep -E '^ +[0-9.]+%' | head -10 || true
  echo "--- perf: top symbols (self) ---"
  perf report -i "$1" --stdio --no-children --sort comm,dso,sym 2>/dev/null | grep -E '^ +[0-9.]+%' | head -30 || true
}



# --- targets and receiver ------------------------------------------------------------------

TGT_PID="" TGT_CONTROL="" RX_PID="" RX_URL="" HUGE_PORT=""
start_targets() { # DIR -> TGT_PID, TGT_CONTROL, DIR/targets.txt (host:port a line), DIR/huge.txt
  local dir=$1 huge=() i
  [[ $HUGE == 1 ]] && huge=(--huge-bytes "$HUGE_BYTES")
  "$TARGETS_BIN" --targets "$TARGETS" --series "$SERIES" "${huge[@]}" > "$dir/targets.out" 2> "$dir/targets.err" &
  TGT_PID=$!
  PIDS+=("$TGT_PID")
  for i in $(seq 200); do grep -q '^ready$' "$dir/targets.out" 2>/dev/null && break; sleep 0.05; done
  grep -q '^ready$' "$dir/targets.out" || { echo "metrics-targets did not start:"; cat "$dir/targets.err"; return 1; }
  TGT_CONTROL=$(awk '$1 == "control" {print $2}' "$dir/targets.out")
  awk '$1 == "target" {sub("http://", "", $2); sub("/metrics", "", $2); print $2}' "$dir/targets.out" > "$dir/targets.txt"
  awk '$1 == "huge" {sub("http://", "", $2); sub("/metrics", "", $2); print $2}' "$dir/targets.out" > "$dir/huge.txt"
  HUGE_PORT=$(sed 's/.*://' "$dir/huge.txt")
}

start_receiver() { # DIR -> RX_PID, RX_URL
  local dir=$1 i
  "$RECEIVER_BIN" > "$dir/receiver.out" 2> "$dir/receiver.err" &
  RX_PID=$!
  PIDS+=("$RX_PID")
  for i in $(seq 200); do [[ -s $dir/receiver.out ]] && break; sleep 0.05; done
  [[ -s $dir/receiver.out ]] || { echo "rw-counter did not start:"; cat "$dir/receiver.err"; return 1; }
  RX_URL=$(head -1 "$dir/receiver.out")
}
rx_stats() { get "${RX_URL%/api/v1/write}/stats" "$1"; }
tgt_stats() { get "$TGT_CONTROL/stats" "$1"; }

# --- agents ------------------------------------------------------------------------------------


TELEMETRY_URL="" AGENT_CMD=""
kubeship_cmd() { # DIR -> AGENT_CMD, the command line (after writing DIR/kubeship.yaml), TELEMETRY_URL
  local dir=$1 port t
  port=$(free_port)
  TELEMETRY_URL="http://127.0.0.1:$port"
  mkdir -p "$dir/logs/containers" "$dir/logs/pods"
  {
    cat <<EOF
cluster: bench
node_name: bench-node
state_dir: ./state
logs:
  containers_dir: ./logs/containers
kubernetes: {enabled: false}
telemetry: {listen_addr: "127.0.0.1:$port", log_format: json, log_level: warn}
metrics:
  scrape:
    interval_secs: $INTERVAL
    body_limit_bytes: $BODY_LIMIT
    pods: {enabled: false}
    kubelet: {enabled: false}
    self_metrics: false
    static_targets:
EOF
    while read -r t; do echo "      - {url: \"http://$t/metrics\", job: bench}"; done < "$dir/targets.txt"
    while read -r t; do echo "      - {url: \"http://$t/metrics\", job: huge}"; done < "$dir/huge.txt"
    cat <<EOF
  remote_write:
    - {url: "$RX_URL", name: bench}
EOF
  } > "$dir/kubeship.yaml"
  [[ -z $EXTRA ]] || merge_yaml "$dir/kubeship.yaml" "$EXTRA"
  "$BIN" validate --config "$dir/kubeship.yaml" > "$dir/validate.out" 2>&1 ||
    { echo "kubeship validate failed:" >&2; cat "$dir/validate.out" >&2; return 1; }
  AGENT_CMD="$BIN run --config $dir/kubeship.yaml"
}

vmagent_cmd() { # DIR -> AGENT_CMD, the command line (after writing DIR/scrape.yaml), TELEMETRY_URL
  local dir=$1 port job file
  port=$(free_port)
  TELEMETRY_URL="http://127.0.0.1:$port"
  {
    cat <<EOF
global:
  scrape_interval: ${INTERVAL}s
  scrape_timeout: 10s
scrape_configs:
EOF
    for job in bench huge; do
      file="$dir/targets.txt"; [[ $job == huge ]] && file="$dir/huge.txt"
      [[ -s $file ]] || continue
      echo "  - job_name: $job"
      echo "    static_configs:"
      echo "      - labels: {node: bench-node}"
      echo "        targets:"
      sed 's/^/          - /' "$file"
    done
  } > "$dir/scrape.yaml"
  mkdir -p "$dir/vmagent-data"
  AGENT_CMD="$VMAGENT -promscrape.config=$dir/scrape.yaml -remoteWrite.url=$RX_URL"
  AGENT_CMD+=" -remoteWrite.tmpDataPath=$dir/vmagent-data -remoteWrite.label=cluster=bench"
  AGENT_CMD+=" -promscrape.maxScrapeSize=$BODY_LIMIT -httpListenAddr=127.0.0.1:$port -loggerLevel=WARN"
}

# run_agent NAME: targets, receiver, the agent, warm-up, the measured window, stop, checks
run_agent() {
  local name=$1 dir="$WORK/$1" cmd tpid apid i t0 t1 u0 s0 u1 s1 g0 g1 r0 r1 ppid="" sampler
  mkdir -p "$dir"
  start_targets "$dir" || return 1
  start_receiver "$dir" || return 1
  case $name in
    kubeship) kubeship_cmd "$dir" || { stop_pid "$TGT_PID"; stop_pid "$RX_PID"; return 1; } ;;
    vmagent) vmagent_cmd "$dir" ;;
  esac
  cmd=$AGENT_CMD
  echo "$name: $TARGETS targets x $SERIES series every ${INTERVAL}s$([[ $HUGE == 1 ]] && echo " + one $HUGE_BYTES-byte target")..."
  # shellcheck disable=SC2086 # the command line is split on purpose (no spaces in its words)
  (cd "$dir" && exec /usr/bin/time -v -o "$dir/time.txt" $cmd > "$dir/agent.stdout" 2> "$dir/agent.stderr") &
  tpid=$!
  PIDS+=("$tpid")
  apid=""
  # A failed start stops what this run started, so that the next agent's run has the
  # machine to itself.
  abort() {
    echo "$1"; tail -20 "$dir/agent.stderr"
    [[ -z $apid ]] || kill -TERM "$apid" 2>/dev/null || true
    wait "$tpid" 2>/dev/null || true
    stop_pid "$TGT_PID"; stop_pid "$RX_PID"
    return 1
  }
  for i in $(seq 200); do apid=$(pgrep -P "$tpid" | head -1 || true); [[ -n $apid ]] && break; sleep 0.02; done
  [[ -n $apid ]] || { abort "$name did not start:"; return 1; }
  PIDS+=("$apid")
  for i in $(seq 120); do
    rx_stats "$dir/rx.json"
    (( $(jget "$dir/rx.json" 's["bench_samples"]') > 0 )) && break
    kill -0 "$apid" 2>/dev/null || { abort "$name exited:"; return 1; }
    sleep 0.5
  done
  (( $(jget "$dir/rx.json" 's["bench_samples"]') > 0 )) || { abort "$name sent nothing in 60s:"; return 1; }
  echo "$name: first samples received; warm-up ${WARMUP}s, then ${DURATION}s measured..."
  sleep "$WARMUP"
  if [[ $PERF == 1 ]]; then
    perf record -F "${PERF_FREQ:-999}" ${PERF_CALLGRAPH:--g} -p "$apid" -o "$dir/perf.data" > "$dir/perf.out" 2>&1 &
    ppid=$!
  fi
  rss_sampler "$apid" "$dir/rss.txt" & sampler=$!
  rx_stats "$dir/rx0.json"; tgt_stats "$dir/tgt0.json"
  read -r u0 s0 <<<"$(cpu_ticks2 "$apid")"; g0=$(cpu_ticks "$TGT_PID"); r0=$(cpu_ticks "$RX_PID"); t0=$(now)
  sleep "$DURATION"
  read -r u1 s1 <<<"$(cpu_ticks2 "$apid")"; g1=$(cpu_ticks "$TGT_PID"); r1=$(cpu_ticks "$RX_PID"); t1=$(now)
  rx_stats "$dir/rx1.json"; tgt_stats "$dir/tgt1.json"
  local hwm; hwm=$(status_kb "$apid" VmHWM)
  kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
  if [[ -n $ppid ]]; then
    kill -INT "$ppid" 2>/dev/null || true
    wait "$ppid" 2>/dev/null || true
    echo "--- perf of $name over the window ---"
    perf_report "$dir/perf.data"
    [[ -z ${PERF_KEEP:-} ]] || { mkdir -p "$PERF_KEEP"; cp "$dir/perf.data" "$PERF_KEEP/$name.perf.data"; }
  fi
  get "$TELEMETRY_URL/metrics" "$dir/self.txt" || : > "$dir/self.txt"
  # Stop: the agent (time then exits), a moment for the last requests, then the final counts.
  local ts0; ts0=$(now)
  kill -TERM "$apid" 2>/dev/null || true
  wait "$tpid" 2>/dev/null || true
  local stop_s; stop_s=$(calc "round($(now) - $ts0, 1)")
  sleep 1
  rx_stats "$dir/rx2.json"; tgt_stats "$dir/tgt2.json"
  stop_pid "$TGT_PID"; stop_pid "$RX_PID"

  # --- numbers ---
  local wall cpu samples bench served rate cpu_m med max peak whole_cpu whole_rss
  wall=$(calc "$t1 - $t0")
  cpu=$(calc "($u1 + $s1 - $u0 - $s0) / $CLK_TCK")
  samples=$(calc "$(jget "$dir/rx1.json" 's["samples"]') - $(jget "$dir/rx0.json" 's["samples"]')")
  bench=$(calc "$(jget "$dir/rx1.json" 's["bench_samples"]') - $(jget "$dir/rx0.json" 's["bench_samples"]')")
  served=$(calc "$(jget "$dir/tgt1.json" 's["samples"]') - $(jget "$dir/tgt0.json" 's["samples"]')")
  rate=$(calc "$samples / $wall")
  cpu_m=$(calc "$cpu / max(1, $samples) * 1e6")
  read -r med max <<<"$(python3 -c 'import statistics, sys; xs = [int(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{statistics.median(xs) / 1024:.1f} {max(xs) / 1024:.1f}" if xs else "0 0")' "$dir/rss.txt")"
  peak=$(calc "round($hwm / 1024, 1)")
  whole_cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {print u + s}' "$dir/time.txt")
  whole_rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.1f", $2 / 1024}' "$dir/time.txt")
  echo "$name $cpu_m $rate $peak $med" >> "$RESULTS"
  add_row "$name" "$(printf '%5.2f CPU-s per million samples (user %.2f, sys %.2f; %.1f%% of one core)  %7.0f samples/s  RSS median %s MiB, largest sample %s, peak (VmHWM) %s MiB  [whole run: %.1f CPU-s, max RSS %s MiB; stop took %ss]' \
    "$cpu_m" "$(calc "($u1 - $u0) / $CLK_TCK / max(1, $samples) * 1e6")" "$(calc "($s1 - $s0) / $CLK_TCK / max(1, $samples) * 1e6")" \
    "$(calc "$cpu / $wall * 100")" "$rate" "$med" "$max" "$peak" "$whole_cpu" "$whole_rss" "$stop_s")"

  # --- checks ---
  local tot_bench tot_stale tot_served bench_series report_per_scrape scrapes bad enc check ok=1
  tot_bench=$(jget "$dir/rx2.json" 's["bench_samples"]')
  tot_stale=$(jget "$dir/rx2.json" 's["bench_stale_samples"]')
  tot_served=$(jget "$dir/tgt2.json" 's["samples"]')
  bench_series=$(jget "$dir/rx2.json" 's["bench_series"]')
  scrapes=$(jget "$dir/tgt2.json" 's["scrapes"]')
  bad=$(jget "$dir/rx2.json" 's["bad_requests"]')
  enc=$(jget "$dir/rx2.json" '",".join(f"{k}:{v}" for k, v in s["content_encodings"].items())')
  report_per_scrape=$(jget "$dir/rx2.json" "', '.join(f'{k} {v / max(1, $scrapes + $(jget "$dir/tgt2.json" 's["huge_requests"]')):.2f}' for k, v in sorted(s['other'].items()))")
  check=$(printf 'window: %s of %s served samples received (%.2f%%); all: %s of %s (%.3f%%) + %s staleness markers; %s distinct series of %s expected; per scrape: %s; %s bad requests; %s requests (%s), %.0f B per request (snappy)' \
    "$bench" "$served" "$(calc "$bench / max(1, $served) * 100")" \
    "$((tot_bench - tot_stale))" "$tot_served" "$(calc "($tot_bench - $tot_stale) / max(1, $tot_served) * 100")" "$tot_stale" \
    "$bench_series" "$((TARGETS * SERIES))" "$report_per_scrape" "$bad" \
    "$(jget "$dir/rx2.json" 's["requests"]')" "$enc" \
    "$(jget "$dir/rx2.json" 's["bytes"] / max(1, s["requests"])')")
  # The window's count is off by what was in flight at its edges: checked when it spans
  # at least 4 intervals.
  if (( DURATION >= 4 * INTERVAL )); then
    python3 -c "import sys; sys.exit(0 if abs($bench / max(1, $served) - 1) < 0.05 else 1)" || ok=0
  fi
  python3 -c "import sys; sys.exit(0 if abs(($tot_bench - $tot_stale) / max(1, $tot_served) - 1) < 0.01 else 1)" || ok=0
  (( bench_series == TARGETS * SERIES && bad == 0 )) || ok=0
  if [[ $ok == 0 ]]; then check="INVALID: $check"; NOTES+=("$name: counts off: $check"); fi
  add_row "" "check: $check"
  add_row "" "labels of a target series: $(jget "$dir/rx2.json" '",".join(s["label_names"])')"
  add_row "targets" "$(printf '%6.2f CPU-s = %4.1f%% of one core over the window (metrics-targets, not in %s'"'"'s numbers); %s scrapes of %s bodies (%s B each)' \
    "$(calc "($g1 - $g0) / $CLK_TCK")" "$(calc "($g1 - $g0) / $CLK_TCK / $wall * 100")" "$name" \
    "$(calc "$(jget "$dir/tgt1.json" 's["scrapes"]') - $(jget "$dir/tgt0.json" 's["scrapes"]')")" "$TARGETS" \
    "$(jget "$dir/tgt2.json" 's["body_bytes"]')")"
  add_row "receiver" "$(printf '%6.2f CPU-s = %4.1f%% of one core over the window (rw-counter, not in %s'"'"'s numbers)' \
    "$(calc "($r1 - $r0) / $CLK_TCK")" "$(calc "($r1 - $r0) / $CLK_TCK / $wall * 100")" "$name")"
  if [[ $HUGE == 1 ]]; then
    local hr hb hc fail
    hr=$(jget "$dir/tgt2.json" 's["huge_requests"]')
    hb=$(jget "$dir/tgt2.json" 's["huge_bytes"]')
    hc=$(jget "$dir/tgt2.json" 's["huge_complete"]')
    if [[ $name == kubeship ]]; then
      fail="scrapes_total{outcome=body_too_large} $(metric "$dir/self.txt" kubeship_scrapes_total 'outcome="body_too_large"')"
    else
      fail="vm_promscrape_scrapes_failed_total $(metric "$dir/self.txt" vm_promscrape_scrapes_failed_total)"
    fi
    add_row "huge" "$(printf '%s requests for the %s-byte body, %.1f MiB written per request before %s stopped reading, %s read whole; agent: %s; peak RSS %s MiB%s' \
      "$hr" "$HUGE_BYTES" "$(calc "$hb / max(1, $hr) / 1048576")" "$name" "$hc" "$fail" "$peak" \
      "$([[ $name == kubeship ]] && calc "'  (goal <= 64 MiB: ' + ('met' if $peak <= 64 else 'NOT met') + ')'")")"
  fi
  # Errors the agent logged, but for the huge target's expected failures.
  local errs
  errs=$(grep -iE 'panic|error' "$dir/agent.stderr" | grep -viE "${HUGE_PORT:-no-huge-target}|too large|body_limit|maxScrapeSize" |
    head -3 | cut -c1-300 | tr '\n' ' ' || true)
  [[ -z $errs ]] || add_row "" "$name's stderr (errors, first 3): $errs"
}

for a in "${AGENT_LIST[@]}"; do
  run_agent "$a" || { echo "error: the $a run failed"; NOTES+=("the $a run failed"); }
done

echo
echo "== metrics benchmark ($(nproc) cores;${VMAGENT_VERSION:+ vmagent: $VMAGENT_VERSION;} $TARGETS targets x $SERIES series every ${INTERVAL}s$([[ $HUGE == 1 ]] && echo ", plus one target streaming $HUGE_BYTES bytes"); body limit $BODY_LIMIT bytes; ${DURATION}s measured after ${WARMUP}s of warm-up; agents one after the other${EXTRA:+; extra config: $EXTRA}) =="
for row in "${SUMMARY[@]}"; do echo "$row"; done
echo
python3 - "$RESULTS" "$HUGE" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, *vals = line.split()
    rows[name] = list(map(float, vals))
huge = sys.argv[2] == "1"
print(f"{'agent':18} {'CPU-s/M samples':>15} {'samples/s':>10} {'peak RSS MiB':>13} {'median RSS MiB':>15}")
for name, (c, r, p, m) in rows.items():
    print(f"{name:18} {c:15.2f} {r:10.0f} {p:13.1f} {m:15.1f}")
if "kubeship" in rows and "vmagent" in rows:
    k, v = rows["kubeship"], rows["vmagent"]
    ratio = [a / b if b else float("nan") for a, b in zip(k, v)]
    print(f"{'kubeship/vmagent':18} {ratio[0]:14.2f}x {ratio[1]:9.2f}x {ratio[2]:12.2f}x {ratio[3]:14.2f}x")
    ok = lambda x: "met" if x <= 0.5 else "NOT met"
    print(f"goals (issue 13): CPU per sample <= 0.5x vmagent's: {ok(ratio[0])}; "
          f"RSS <= 0.5x vmagent's: peak {ok(ratio[2])}, median {ok(ratio[3])}")
if huge and "kubeship" in rows:
    p = rows["kubeship"][2]
    print(f"goal with the huge target: kubeship peak RSS <= 64 MiB: {'met' if p <= 64 else 'NOT met'} ({p:.1f} MiB)")
EOF
for note in "${NOTES[@]:-}"; do [[ -n $note ]] && echo "note: $note"; done
exit 0
