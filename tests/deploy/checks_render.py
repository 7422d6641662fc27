"""Checks on what kustomize and Helm render: the tools' own verdicts (render, lint,
values schema, Kubernetes schemas), the manifests' contract, and the agent's configs."""

import json
import os
import shutil

import kubernetes_validate
import yaml

from bundle import (CHART, HELM_CASES, KUSTOMIZE, OVERLAYS, TMP, Failed, agent_config,
                    all_renders, chart_copy, expect, helm, helm_renders, helm_values, kinds,
                    kustomize_renders, load_all, merge, one, pod_env, run, say)

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


BASE_KINDS = sorted(["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ConfigMap",
                     "DaemonSet", "Service", "ServiceMonitor"])
# What an overlay's kustomization.yaml may hold besides `resources: [../../base]`.
OVERLAY_KEYS = {"apiVersion", "kind", "resources", "patches", "configMapGenerator", "images"}


@check
def kustomize_renders_base_and_overlays():
    """`kubectl kustomize` renders the base and every overlay; overlays only patch"""
    for path in sorted((KUSTOMIZE / "base").glob("*.yaml")):
        if path.name in ("kustomization.yaml", "kubeship.yaml"):
            continue
        docs = load_all(path.read_text())
        expect(len(docs) == 1, f"base/{path.name} holds {len(docs)} objects, not one")
    say("base: one object per file")
    for name, objects in kustomize_renders().items():
        want = [k for k in BASE_KINDS if not (name.endswith("/local") and k == "ServiceMonitor")]
        expect(kinds(objects) == want, f"{name} renders {kinds(objects)}, not {want}")
        say(f"{name}: {', '.join(kinds(objects))}")
    for o in OVERLAYS:
        k = yaml.safe_load((KUSTOMIZE / "overlays" / o / "kustomization.yaml").read_text())
        expect(k.get("resources") == ["../../base"], f"overlay {o} has resources besides ../../base")
        expect(set(k) <= OVERLAY_KEYS, f"overlay {o} uses {sorted(set(k) - OVERLAY_KEYS)}")
        for gen in k.get("configMapGenerator", []):
            expect(gen.get("behavior") in ("replace", "merge"), f"overlay {o} adds ConfigMap {gen['name']}")
    say(f"overlays {', '.join(OVERLAYS)}: only ../../base, patches and replaced generators")
    base = yaml.safe_load((KUSTOMIZE / "base" / "kubeship.yaml").read_text())
    for o, differs in (("local", "output"), ("amp", "metrics")):
        config = yaml.safe_load((KUSTOMIZE / "overlays" / o / "kubeship.yaml").read_text())
        same = {k: v for k, v in config.items() if k != differs}
        expect(same == {k: v for k, v in base.items() if k != differs} and config.get(differs) != base.get(differs),
               f"overlay {o}'s config differs from the base's in more than `{differs}`")
    say("the configs of overlays local and amp are the base's but for output / metrics")


@check
def helm_lint():
    """Helm's lint passes on the chart with its defaults and each ci/ values file, and fails on a broken template"""
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jobs = [{"op": "lint", "chart": CHART}]
    for case in HELM_CASES:
        jobs.append({"op": "lint", "chart": chart_copy(f"lint-{case}", merge(defaults, helm_values(case)))})
    broken = chart_copy("lint-broken", extra={"templates/broken.yaml": "{{- if .Values.clusterName }}\nkind: x\n"})
    jobs.append({"op": "lint", "chart": broken})
    results = helm(jobs)
    for name, result in zip(["defaults", *HELM_CASES], results):
        expect(result["ok"], f"lint with {name}: {result['error']} {result['messages']}")
        say(f"lint, values {name}: ok ({len(result['messages'])} notes: "
            f"{', '.join(sorted({m['path'] for m in result['messages']})) or 'none'})")
    expect(not results[-1]["ok"] and "templates/" in results[-1]["error"],
           f"lint did not fail on an unclosed {{{{ if }}}} in a template: {results[-1]}")
    say(f"lint of a copy with an unclosed {{{{ if }}}} fails: {results[-1]['error']}")


# Values that values.schema.json (or a template's `fail`) must refuse, and what the
# error must name.
BAD_VALUES = [
    ({"output": {"sink": "s3"}}, "/output/sink"),
    ({"clusterName": "bad name!"}, "/clusterName"),
    ({"region": "eu-west"}, "/region"),
    ({"aws": {"credentials": "irsa"}}, "/aws/irsaRoleArn"),
    ({"aws": {"credentials": "podIdentity", "irsaRoleArn": "arn:aws:iam::111122223333:role/x"}}, "/aws/irsaRoleArn"),
    ({"image": {"tag": "latest"}}, "/image/tag"),
    ({"updateStrategy": {"maxUnavailable": "ten"}}, "/updateStrategy/maxUnavailable"),
    ({"config": {"telemetry": {"listen_addr": "off"}}}, "/config"),
    ({"logLevel": "debug"}, "logLevel"),
    ({"terminationGracePeriodSeconds": 25}, "must be above shutdownTimeoutSecs"),
    ({"metrics": {"enabled": True, "scrape": {"intervalSecs": 0}}}, "/metrics/scrape/intervalSecs"),
    ({"metrics": {"enabled": True, "remoteWrite": {"url": "ftp://x/w"}}}, "/metrics/remoteWrite/url"),
    ({"metrics": {"enabled": True, "remoteWrite": {"region": "eu-west"}}}, "/metrics/remoteWrite/region"),
    ({"metrics": {"scrape": {"kubelet": {"insecure_skip_verify": True}}}}, "/metrics/scrape/kubelet"),
    ({"config": {"metrics": {"scrape": {"sample_limit": 10}}}}, "config.metrics needs metrics.enabled"),
]


@check
def helm_values_schema():
    """values.schema.json and the templates refuse bad values before anything renders"""
    results = helm([{"op": "render", "chart": CHART, "values": v} for v, _ in BAD_VALUES])
    for (values, needle), result in zip(BAD_VALUES, results):
        expect(not result["ok"], f"values {values} rendered")
        expect(needle in result["error"], f"values {values} failed without naming {needle}: {result['error']}")
        say(f"{json.dumps(values)}: refused ({needle})")


@check
def helm_renders_each_use_case():
    """Helm renders the chart with its defaults and each ci/ values file"""
    has_rules = any((CHART / "files" / "alerts").glob("*.y*ml"))
    dashboards = len(list((CHART / "files" / "dashboards").glob("*.json")))
    for name, objects in helm_renders().items():
        want = [k for k in BASE_KINDS if k != "Namespace"]
        if name == "helm/local":
            want.remove("ServiceMonitor")
        if name == "helm/monitoring":
            # The toggles on, with the synced rule files and dashboards of this repository.
            want += ["ConfigMap"] * dashboards + ["PrometheusRule"] * has_rules
            want.sort()
        expect(kinds(objects) == want, f"{name} renders {kinds(objects)}, not {want}")
        say(f"{name}: {', '.join(kinds(objects))}")


RULES = "groups:\n  - name: kubeship\n    rules:\n      - alert: KubeshipDown\n        expr: up == 0\n"
PROMTOOL_TEST = "rule_files: [kubeship.rules.yaml]\ntests: []\n"
DASHBOARD = json.dumps({"uid": "kubeship-logs", "title": "kubeship", "panels": []})


@check
def helm_alerts_and_dashboards():
    """PrometheusRule and dashboard ConfigMaps come from the synced files, only when toggled on and present"""
    root = TMP / "sync-root"
    (root / "alerts" / "tests").mkdir(parents=True)
    (root / "dashboards").mkdir()
    (root / "alerts" / "kubeship.rules.yaml").write_text(RULES)
    (root / "alerts" / "tests" / "kubeship_test.yaml").write_text(PROMTOOL_TEST)
    (root / "alerts" / "alertmanager.yaml").write_text("route: {receiver: sns}\nreceivers: [{name: sns}]\n")
    (root / "dashboards" / "kubeship-logs.json").write_text(DASHBOARD)
    (root / "deploy" / "helm").mkdir(parents=True)
    shutil.copy(CHART.parent / "sync-files.sh", root / "deploy" / "helm")
    with_files = chart_copy("with-files")
    proc = run(["bash", root / "deploy" / "helm" / "sync-files.sh", with_files / "files"])
    expect(proc.returncode == 0, f"sync-files.sh failed: {proc.stderr}")
    synced = sorted(str(p.relative_to(with_files / "files")) for p in (with_files / "files").rglob("*") if p.is_file())
    expect(synced == ["alerts/kubeship.rules.yaml", "dashboards/kubeship-logs.json"],
           f"sync-files.sh copied {synced}: only rule files and dashboards belong in the chart")
    say("sync-files.sh copies rule files and dashboards, not promtool tests or Alertmanager configs")
    monitoring = helm_values("monitoring")
    off = merge(monitoring, {"prometheusRule": {"enabled": False}, "dashboards": {"enabled": False}})
    without_files = chart_copy("without-files")
    shutil.rmtree(without_files / "files", ignore_errors=True)
    results = helm([{"op": "render", "chart": with_files, "values": monitoring},
                    {"op": "render", "chart": with_files, "values": off},
                    {"op": "render", "chart": without_files, "values": monitoring}])
    for r in results:
        expect(r["ok"], f"render failed: {r['error']}")
    on_objs, off_objs, none_objs = (load_all(r["manifest"]) for r in results)
    rule = one(on_objs, "PrometheusRule")
    expect(rule["spec"] == yaml.safe_load(RULES), "the PrometheusRule's spec is not the rule file")
    expect(rule["metadata"]["labels"].get("release") == "monitoring", "PrometheusRule lacks its release label")
    dash = [o for o in on_objs if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]]
    expect(len(dash) == 1 and json.loads(dash[0]["data"]["kubeship-logs.json"]) == json.loads(DASHBOARD),
           "one dashboard ConfigMap holding the dashboard JSON")
    say(f"toggles on, files present: PrometheusRule {rule['metadata']['name']}, "
        f"ConfigMap {dash[0]['metadata']['name']}")
    for objs, what in ((off_objs, "toggles off"), (none_objs, "toggles on, no files")):
        expect("PrometheusRule" not in kinds(objs), f"{what}: a PrometheusRule rendered")
        expect(not any("grafana_dashboard" in o["metadata"].get("labels", {}) for o in objs),
               f"{what}: a dashboard ConfigMap rendered")
        say(f"{what}: neither")


@check
def chart_files_in_sync():
    """The chart's files/ are what deploy/helm/sync-files.sh makes of alerts/ and dashboards/"""
    out = TMP / "synced"
    proc = run(["bash", CHART.parent / "sync-files.sh", out])
    expect(proc.returncode == 0, f"sync-files.sh failed: {proc.stderr}")

    def listing(d):
        return {str(p.relative_to(d)): p.read_bytes() for p in d.rglob("*") if p.is_file()} if d.exists() else {}

    want, have = listing(out), listing(CHART / "files")
    expect(want == have, "the chart's files/ differ from alerts/ and dashboards/: run deploy/helm/sync-files.sh "
           f"(stale or missing: {sorted(set(want.items()) ^ set(have.items()))[:5]})")
    say(f"{len(have)} files, the same as the sources" if have else "no alerts/ or dashboards/ yet: files/ is empty")


def validate_version(objects, version):
    """kubernetes-validate, strict (unknown fields are errors); CRD objects are named."""
    crds = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            crds.append(obj["kind"])
        except kubernetes_validate.ValidationError as e:
            raise Failed(f"{obj['kind']}/{obj['metadata']['name']} is invalid for Kubernetes {version}: "
                         f"{e.message} at {'.'.join(str(p) for p in e.path)}")
    return crds


@check
def kubernetes_schemas():
    """Every rendered object passes kubernetes-validate (strict) for the chart's oldest and the newest Kubernetes"""
    floor = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"].split(">=")[1].split("-")[0]
    versions = [floor, kubernetes_validate.latest_version()]
    for name, objects in all_renders().items():
        for version in versions:
            crds = validate_version(objects, version)
        say(f"{name}: {len(objects) - len(crds)} objects valid for {' and '.join(versions)}"
            + (f"; {', '.join(sorted(crds))}: CRDs, not in Kubernetes' schemas (manifests_contract)" if crds else ""))
    typo = {"name": "x", "image": "x", "securityContext": {"readOnlyRootFileSystem": True}}
    bad = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "x"},
           "spec": {"selector": {}, "template": {"spec": {"containers": [typo]}}}}
    try:
        validate_version([bad], versions[-1])
    except Failed as e:
        say(f"a misspelt field is refused: {e}")
    else:
        raise Failed("kubernetes-validate accepted readOnlyRootFileSystem: the check cannot fail")


@check
def agent_validates_configs():
    """Every rendered agent config passes the real `kubeship validate` with the DaemonSet's environment"""
    binary = kubeship_bin()
    for name, objects in all_renders().items():
        _, text = agent_config(objects)
        env = pod_env(objects)
        path = TMP / "configs" / name.replace("/", "_") / "kubeship.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        proc = run([binary, "validate", "--config", path], env={"PATH": os.environ["PATH"], **env})
        expect(proc.returncode == 0 and "config ok" in proc.stdout,
               f"{name}: kubeship validate:\n{proc.stdout}{proc.stderr}")
        say(f"{name}: config ok (env {', '.join(sorted(env))})")
    path.write_text(text + "shutdown_timeout_secs_typo: 1\n")
    proc = run([binary, "validate", "--config", path], env={"PATH": os.environ["PATH"], **env})
    expect(proc.returncode == 1, "kubeship validate accepted an unknown key: the check cannot fail")
    say(f"an unknown key is refused: {proc.stdout.strip() or proc.stderr.strip()}")


def kubeship_bin():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/kubeship-target")  # run.sh's
    binary = os.environ.get("KUBESHIP_BIN") or os.path.join(target, "debug", "kubeship")
    expect(os.access(binary, os.X_OK), f"KUBESHIP_BIN={binary} is not an executable (cargo build -p kubeship)")
    return binary


# The chart's metrics values (over ci/amp-values.yaml), and the agent's metrics section each must render.
URL = "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1/api/v1/remote_write"
METRICS_CASES = [
    ("kind: metrics to the local sink, kubelet unverified",
     {"clusterName": "local", "output": {"sink": "local"}, "serviceMonitor": {"enabled": False},
      "metrics": {"enabled": True, "remoteWrite": {"url": ""}, "scrape": {"kubelet": {"insecureSkipVerify": True}}}},
     {"scrape": {"interval_secs": 30, "pods": {"enabled": True}, "kubelet": {"enabled": True, "insecure_skip_verify": True},
                 "self_metrics": True}}),
    ("AMP in another region, every toggle off, config.metrics merged",
     {"region": "us-east-1", "metrics": {"enabled": True, "clusterLabel": False,
                                         "remoteWrite": {"url": URL, "region": "eu-west-1"},
                                         "scrape": {"intervalSecs": 15, "pods": {"enabled": False},
                                                    "kubelet": {"enabled": False}}},
      "config": {"metrics": {"scrape": {"sample_limit": 50000}, "remote_write": [{"url": URL, "shards": 8,
                                                                                "sigv4": {"region": "eu-west-1"}}]}}},
     {"scrape": {"interval_secs": 15, "pods": {"enabled": False}, "kubelet": {"enabled": False, "insecure_skip_verify": False},
                 "self_metrics": True, "sample_limit": 50000},
      "remote_write": [{"url": URL, "shards": 8, "sigv4": {"region": "eu-west-1"}}],
      "external_labels": {}}),
    ("a receiver without SigV4, no region anywhere",
     {"region": "", "metrics": {"enabled": True, "remoteWrite": {"url": "http://prometheus.monitoring:9090/api/v1/write",
                                                                 "sigv4": False}}},
     {"remote_write": [{"url": "http://prometheus.monitoring:9090/api/v1/write"}]}),
    ("SigV4 with the region from the AWS chain",
     {"region": "", "metrics": {"enabled": True}},
     {"remote_write": [{"url": None, "sigv4": {}}]}),
]


@check
def helm_metrics_values():
    """The chart's metrics values render the agent's metrics section, which `kubeship validate` accepts"""
    binary = kubeship_bin()
    amp = helm_values("amp")
    results = helm([{"op": "render", "chart": CHART, "values": merge(amp, values)} for _, values, _ in METRICS_CASES])
    for (what, values, want), result in zip(METRICS_CASES, results):
        expect(result["ok"], f"{what}: Helm's render failed: {result['error']}")
        objects = load_all(result["manifest"])
        config, text = agent_config(objects)
        metrics = config.get("metrics", {})
        for key, value in want.items():
            if key == "remote_write" and value[0]["url"] is None:
                value = [dict(value[0], url=amp["metrics"]["remoteWrite"]["url"])]
            expect(metrics.get(key) == value, f"{what}: metrics.{key} is {metrics.get(key)}, want {value}")
        # clusterLabel (default true) leaves the agent's default external label, cluster.
        if "external_labels" not in want:
            expect("external_labels" not in metrics, f"{what}: external_labels {metrics.get('external_labels')}")
        if "remote_write" not in want:
            expect("remote_write" not in metrics, f"{what}: remote_write {metrics.get('remote_write')}")
        path = TMP / "configs" / "metrics" / "kubeship.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        proc = run([binary, "validate", "--config", path], env={"PATH": os.environ["PATH"], **pod_env(objects)})
        expect(proc.returncode == 0 and "config ok" in proc.stdout, f"{what}: kubeship validate:\n{proc.stdout}{proc.stderr}")
        say(f"{what}: {', '.join(sorted(want))} as set; config ok")
    off, _ = agent_config(helm_renders()["helm/default"])
    expect("metrics" not in off, "the chart's defaults turn the metrics pipeline on")
    say("defaults: no metrics section (the pipeline is off, as in the kustomize base)")
