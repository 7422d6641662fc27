#!/usr/bin/env bash
# Copies the repository's Prometheus rule files and Grafana dashboards into the chart,
# which can only read files inside itself (.Files):
#   alerts/**/*.y{a,}ml with a top-level `groups:` key -> kubeship/files/alerts/
#   dashboards/**/*.json                                -> kubeship/files/dashboards/
# Promtool tests, Alertmanager configs and ConfigMap wrappers are left out. Run it after
# changing alerts/ or dashboards/; tests/deploy/check.py fails while the copies differ.
#
#   deploy/helm/sync-files.sh [OUT_DIR]   # OUT_DIR defaults to the chart's files/
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="${1:-$root/deploy/helm/kubeship/files}"

list() { # DIR FIND_TESTS...: files under DIR, NUL-separated, sorted; nothing without DIR
  [[ -d $1 ]] || return 0
  find "$1" -type f \( "${@:2}" \) -print0 | sort -z
}

rules_only() { # keeps the files (NUL-separated) that are Prometheus rule files
  local f
  while IFS= read -r -d '' f; do
    if grep -q '^groups:' "$f"; then printf '%s\0' "$f"; fi
  done
}

copy_to() { # DEST: copies the files (NUL-separated) into DEST, flat
  local dest="$1" f
  rm -rf "$dest"
  while IFS= read -r -d '' f; do
    if [[ -e $dest/${f##*/} ]]; then
      echo "error: two files named ${f##*/} for $dest" >&2
      exit 1
    fi
    install -D -m 0644 "$f" "$dest/${f##*/}"
  done
}

list "$root/alerts" -name '*.yaml' -o -name '*.yml' | rules_only | copy_to "$out/alerts"
list "$root/dashboards" -name '*.json' | copy_to "$out/dashboards"
