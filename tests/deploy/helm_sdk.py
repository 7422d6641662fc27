"""Helm v4 (the Go library in PyPI's helm-sdkpy) for tests/deploy/check.py: lint and render.

Run as a process of its own, because the Go runtime reads HELM_DRIVER and HELM_*_HOME
once, when the library loads (and writes to stdout itself, so results go to a file):

    HELM_DRIVER=memory python3 helm_sdk.py RESULTS.json < jobs.json

jobs.json is a list of {"op": "lint", "chart": DIR} and
{"op": "render", "chart": DIR, "values": {...}, "namespace": NS, "release": NAME};
each result is {"ok": bool, "error": str} plus, for lint, "messages" (severity and path
of each finding: helm-sdkpy passes Go's errors on as empty objects, so their text is
lost) and, for render, "manifest".

helm-sdkpy has lint but no `helm template`, so a render is Helm's install action with
the release kept in memory (HELM_DRIVER=memory), against a fake API server on loopback
that answers discovery for the kinds the chart makes, 404 to each lookup and 201 to
each create. The manifest is what Helm's engine rendered, after values.schema.json and
Helm's parsing of every rendered object; the fake stays loud: any other request makes
the render fail.
"""

import asyncio
import json
import os
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# group/version -> [(resource, kind, namespaced)]
API = {
    "v1": [
        ("configmaps", "ConfigMap", True),
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("daemonsets", "DaemonSet", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
    ],
    "monitoring.coreos.com/v1": [
        ("servicemonitors", "ServiceMonitor", True),
        ("prometheusrules", "PrometheusRule", True),
    ],
}
KUBE_VERSION = {"major": "1", "minor": "34", "gitVersion": "v1.34.0", "platform": "linux/amd64"}


def object_path_pattern():
    """Collection and object paths of the kinds above, namespaced or not."""
    paths = []
    for gv, resources in API.items():
        prefix = "/api/v1" if gv == "v1" else f"/apis/{gv}"
        for name, _, namespaced in resources:
            paths.append(f"{prefix}/namespaces/[^/]+/{name}" if namespaced else f"{prefix}/{name}")
    return re.compile(f"^({'|'.join(paths)})(/[^/]+)?$")


OBJECT_PATH = object_path_pattern()


class FakeApi(BaseHTTPRequestHandler):
    unexpected = []  # requests the fake did not expect (the render fails)

    def log_message(self, *args):
        pass

    def reply(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/version":
            return self.reply(200, KUBE_VERSION)
        if path == "/api":
            return self.reply(200, {"kind": "APIVersions", "versions": ["v1"]})
        if path == "/apis":
            groups = [gv.split("/") for gv in API if gv != "v1"]
            return self.reply(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for g, v in groups]})
        for gv, resources in API.items():
            if path == ("/api/v1" if gv == "v1" else f"/apis/{gv}"):
                return self.reply(200, {
                    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [{"name": n, "singularName": "", "namespaced": ns, "kind": k,
                                   "verbs": ["create", "get", "list", "patch", "update"]}
                                  for n, k, ns in resources]})
        if OBJECT_PATH.match(path):
            return self.reply(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                    "reason": "NotFound", "code": 404})
        self.fail_request()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if OBJECT_PATH.match(self.path.split("?")[0]):
            return self.reply(201, json.loads(body))
        self.fail_request()

    def fail_request(self):
        FakeApi.unexpected.append(f"{self.command} {self.path}")
        self.reply(500, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500,
                         "message": f"the fake API server does not expect {self.command} {self.path}"})


def kubeconfig(port, directory):
    path = os.path.join(directory, "kubeconfig")
    with open(path, "w") as f:
        json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                   "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                   "users": [{"name": "fake", "user": {}}],
                   "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}]}, f)
    return path


def run(jobs, kubeconfig_path):
    import helm_sdkpy as helm

    results = []
    for job in jobs:
        FakeApi.unexpected.clear()
        config = helm.Configuration(namespace=job.get("namespace", "kubeship"), kubeconfig=kubeconfig_path)
        try:
            if job["op"] == "lint":
                out = asyncio.run(helm.Lint(config).run(job["chart"]))
                messages = [{"severity": m["Severity"], "path": m["Path"]} for m in out.get("Messages") or []]
                # support.ErrorSev = 3 in Helm's lint rules.
                errors = [m for m in messages if m["severity"] >= 3]
                results.append({"ok": not errors and not out.get("Errors"), "messages": messages,
                                "error": "" if not errors else
                                "lint errors in " + ", ".join(m["path"] for m in errors)})
            else:
                out = asyncio.run(helm.Install(config).run(
                    job.get("release", "kubeship"), job["chart"], values=job.get("values") or None,
                    wait=False, timeout=60))
                ok = not FakeApi.unexpected
                results.append({"ok": ok, "manifest": out.get("manifest", ""),
                                "error": "" if ok else f"unexpected requests: {FakeApi.unexpected}"})
        except helm.HelmError as e:
            results.append({"ok": False, "error": str(e)})
    return results


def main():
    if os.environ.get("HELM_DRIVER") != "memory":
        sys.exit("helm_sdk.py: run with HELM_DRIVER=memory (the Go runtime reads it once, at load)")
    results_path = sys.argv[1]
    jobs = json.load(sys.stdin)
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="kubeship-helm-") as tmp:
        results = run(jobs, kubeconfig(server.server_address[1], tmp))
    server.shutdown()
    with open(results_path, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
