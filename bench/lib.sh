# Helpers shared by bench/logs.sh and bench/metrics.sh (sourced, not run).
#
# bench_workdir PREFIX sets WORK to a fresh temporary directory and PIDS=(): at exit every
# process in PIDS is killed and WORK removed.

bench_workdir() {
  WORK="$(mktemp -d -t "$1.XXXXXX")"
  PIDS=()
  trap bench_cleanup EXIT
}
bench_cleanup() {
  for p in "${PIDS[@]:-}"; do
    [[ -n $p ]] && kill "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}

CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; } # PID: user+sys
cpu_ticks2() { awk '{print $14, $15}' "/proc/$1/stat" 2>/dev/null || echo 0 0; } # PID: user sys
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; } # PID FIELD
rss_sampler() { # PID FILE: VmRSS (KiB) every 0.5 s until the process ends
  while kill -0 "$1" 2>/dev/null; do status_kb "$1" VmRSS >> "$2"; sleep 0.5; done
}
stop_pid() {
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
now() { date +%s.%N; }
calc() { python3 -c "from math import *; print($1)"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import json, sys; s = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"; }

# merge_yaml FILE YAML: YAML's maps merged into FILE's (keys of YAML win; PyYAML, which moto
# brings along)
merge_yaml() {
  python3 - "$1" "$2" <<'PY'
import sys, yaml
path, extra = sys.argv[1], yaml.safe_load(sys.argv[2])
cfg = yaml.safe_load(open(path))
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
merge(cfg, extra)
yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)
PY
}
