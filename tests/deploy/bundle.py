"""What the deploy checks share: paths, tools, and the bundle's renders (made once).

Renders: `kubectl kustomize` of the base and each overlay, and Helm's render of the chart
with its default values and with each use case's values (deploy/helm/kubeship/ci/), all
as lists of objects. Helm's lint and every other Helm job run in one helm_sdk.py process.
"""

import atexit
import copy
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUSTOMIZE = DEPLOY / "kustomize"
CHART = DEPLOY / "helm" / "kubeship"
OVERLAYS = ("eks-irsa", "eks-pod-identity", "local", "amp")
HELM_CASES = tuple(sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml")))
# Work files of this run; removed at exit unless KUBESHIP_KEEP_TMP is set.
TMP = Path(tempfile.mkdtemp(prefix="kubeship-deploy-"))
if not os.environ.get("KUBESHIP_KEEP_TMP"):
    atexit.register(shutil.rmtree, TMP, True)


class Failed(Exception):
    """A check found something wrong."""


def expect(condition, message):
    if not condition:
        raise Failed(message)


def say(message):
    print(f"  - {message}", flush=True)


def run(cmd, **kwargs):
    """Runs a tool and returns the finished process (text output captured)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run([str(c) for c in cmd], **kwargs)
    return proc


def tool(name, env_var=None, default=None):
    """A tool's executable: $env_var, next to this interpreter (pip's scripts dir),
    `default`, PATH."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var]
    for path in (Path(sysconfig.get_path("scripts")) / name, default and Path(default).expanduser()):
        if path and path.exists():
            return str(path)
    found = shutil.which(name)
    if not found:
        raise Failed(f"{name} is not installed (tests/run.sh installs it)")
    return found


def load_all(text):
    return [d for d in yaml.safe_load_all(text) if d]


def kinds(objects):
    return sorted(o["kind"] for o in objects)


def one(objects, kind):
    found = [o for o in objects if o["kind"] == kind]
    expect(len(found) == 1, f"expected one {kind}, found {len(found)}")
    return found[0]


@functools.cache
def kustomize(path):
    """`kubectl kustomize PATH` as objects."""
    proc = run([tool("kubectl"), "kustomize", path])
    expect(proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}")
    return load_all(proc.stdout)


def kustomize_renders():
    """name -> objects, for the base and every overlay."""
    renders = {"kustomize/base": kustomize(KUSTOMIZE / "base")}
    for o in OVERLAYS:
        renders[f"kustomize/{o}"] = kustomize(KUSTOMIZE / "overlays" / o)
    return renders


def helm_values(case):
    return yaml.safe_load((CHART / "ci" / f"{case}-values.yaml").read_text())


def merge(base, over):
    """Helm's merge of user values over a chart's: maps merge, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def chart_copy(name, values=None, extra=None):
    """A copy of the chart under TMP: values.yaml replaced by `values` (for lint, which
    reads no other values), files in `extra` (relative path -> text) added."""
    dest = TMP / "charts" / name / "kubeship"
    shutil.copytree(CHART, dest)
    if values is not None:
        (dest / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    for rel, text in (extra or {}).items():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text(text)
    return dest


def helm(jobs):
    """Runs Helm jobs (helm_sdk.py) in one process; results in the jobs' order."""
    home = TMP / "helm-home"
    env = dict(os.environ, HELM_DRIVER="memory", HELM_CACHE_HOME=str(home / "cache"),
               HELM_CONFIG_HOME=str(home / "config"), HELM_DATA_HOME=str(home / "data"))
    results = TMP / f"helm-results-{os.getpid()}-{len(jobs)}.json"
    proc = run([sys.executable, Path(__file__).with_name("helm_sdk.py"), results],
               input=json.dumps([{k: (str(v) if isinstance(v, Path) else v) for k, v in j.items()} for j in jobs]),
               env=env)
    expect(proc.returncode == 0 and results.exists(), f"helm_sdk.py failed:\n{proc.stderr[-3000:]}")
    return json.loads(results.read_text())


@functools.cache
def helm_renders():
    """name -> objects: the chart with its defaults and with each ci/ values file."""
    names = ["helm/default", *(f"helm/{c}" for c in HELM_CASES)]
    jobs = [{"op": "render", "chart": CHART}] + [
        {"op": "render", "chart": CHART, "values": helm_values(c)} for c in HELM_CASES]
    out = {}
    for name, result in zip(names, helm(jobs)):
        expect(result["ok"], f"{name}: Helm's render failed: {result['error']}")
        out[name] = load_all(result["manifest"])
    return out


def all_renders():
    return {**kustomize_renders(), **helm_renders()}


def agent_config(objects):
    """(config dict, config text) of the ConfigMap the DaemonSet mounts at /etc/kubeship."""
    ds = one(objects, "DaemonSet")
    vol = [v for v in ds["spec"]["template"]["spec"]["volumes"] if "configMap" in v]
    expect(len(vol) == 1, "the DaemonSet mounts one ConfigMap (the agent's config)")
    name = vol[0]["configMap"]["name"]
    cms = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name]
    expect(len(cms) == 1, f"ConfigMap {name} (the DaemonSet's config volume) is rendered")
    text = cms[0]["data"]["kubeship.yaml"]
    return yaml.safe_load(text), text


def pod_env(objects):
    """The agent container's environment as the kubelet would set it (downward API faked)."""
    fields = {"spec.nodeName": "node-1", "status.hostIP": "10.0.1.7", "metadata.name": "kubeship-x7k2p",
              "metadata.namespace": "kubeship"}
    env = {}
    for e in one(objects, "DaemonSet")["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
        else:
            env[e["name"]] = fields[e["valueFrom"]["fieldRef"]["fieldPath"]]
    return env


def expand(text, env):
    """The agent's `${NAME}` / `${NAME:-default}` expansion (full-line comments kept as they are)."""
    def one_ref(m):
        name, default = m.group(1), m.group(3)
        if env.get(name):
            return env[name]
        expect(default is not None or name in env, f"${{{name}}} is not in the pod's environment")
        return default or ""
    return "\n".join(line if line.lstrip().startswith("#") else
                     re.sub(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}", one_ref, line)
                     for line in text.split("\n"))


def cargo_version():
    for line in (ROOT / "Cargo.toml").read_text().splitlines():
        if line.startswith("version = "):
            return line.split('"')[1]
    raise Failed("no workspace version in Cargo.toml")
