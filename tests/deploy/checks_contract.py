"""The manifests' contract, asserted on every kustomize and Helm render: the DaemonSet's
security settings, probes, mounts, env and scheduling; RBAC; the metrics Service and
ServiceMonitor; labels. And: the chart's defaults render what the kustomize base does."""

import json

import yaml

from bundle import (agent_config, all_renders, expand, expect, helm_renders, kustomize_renders, one, pod_env,
                    say)

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


# README.md "Benchmarks" -> deploy/kustomize/base/daemonset.yaml and the chart's values.
RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}
LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
          "app.kubernetes.io/part-of", "app.kubernetes.io/managed-by")
DOWNWARD = {"NODE_NAME": "spec.nodeName", "NODE_IP": "status.hostIP", "POD_NAME": "metadata.name",
            "POD_NAMESPACE": "metadata.namespace"}


def daemonset_contract(name, objects, config):
    ds = one(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    expect(len(pod["containers"]) == 1 and not pod.get("initContainers"), f"{name}: one container, no init")
    c = pod["containers"][0]
    sc = c["securityContext"]
    expect(sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation is not false")
    expect(sc.get("capabilities") == {"drop": ["ALL"]}, f"{name}: capabilities are not drop [ALL], add none")
    expect(sc.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem not read-only")
    expect(sc.get("privileged") in (None, False), f"{name}: privileged")
    for where, ctx in (("container", sc), ("pod", pod.get("securityContext", {}))):
        expect(ctx.get("seccompProfile") == {"type": "RuntimeDefault"}, f"{name}: {where} seccomp not RuntimeDefault")
    expect(not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC"), f"{name}: host namespaces")
    # The kubelet rejects a pod with an AppArmor profile on nodes without AppArmor (EKS's
    # Amazon Linux 2023, Bottlerocket): the agent would run nowhere there.
    expect("appArmorProfile" not in json.dumps(pod), f"{name}: an appArmorProfile keeps the pod off AL2023 nodes")
    expect(pod.get("priorityClassName") == "system-node-critical", f"{name}: not system-node-critical")
    expect(pod.get("tolerations") == [{"operator": "Exists"}], f"{name}: tolerations are not [{{operator: Exists}}]")
    rolling = ds["spec"]["updateStrategy"]
    expect(rolling["type"] == "RollingUpdate" and rolling["rollingUpdate"] == {"maxUnavailable": "10%", "maxSurge": 0},
           f"{name}: rolling update is not maxUnavailable 10%, maxSurge 0: {rolling}")
    grace, drain = pod.get("terminationGracePeriodSeconds", 30), config.get("shutdown_timeout_secs", 25)
    expect(grace > drain, f"{name}: terminationGracePeriodSeconds {grace} <= shutdown_timeout_secs {drain}")
    expect(c["resources"] == RESOURCES, f"{name}: resources {c['resources']} are not the benchmarked {RESOURCES}")

    port = int(config["telemetry"]["listen_addr"].rsplit(":", 1)[1])
    expect(c["ports"] == [{"name": "telemetry", "containerPort": port, "protocol": "TCP"}],
           f"{name}: the telemetry port is not named 'telemetry' on {port} (telemetry.listen_addr)")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        expect(c[probe]["httpGet"] == {"path": path, "port": "telemetry"}, f"{name}: {probe} is not {path} on telemetry")

    env = {e["name"]: e for e in c["env"]}
    for var, field in DOWNWARD.items():
        expect(env.get(var, {}).get("valueFrom") == {"fieldRef": {"fieldPath": field}}, f"{name}: {var} not from {field}")
    expect(env.get("CLUSTER_NAME", {}).get("value"), f"{name}: no CLUSTER_NAME")
    expect(config.get("cluster") == "${CLUSTER_NAME}", f"{name}: the config does not take cluster from CLUSTER_NAME")
    if "cloudwatch" in config.get("output", {}) and not name.endswith(("/base", "/default")):
        expect(env.get("AWS_REGION", {}).get("value"), f"{name}: ships to CloudWatch without AWS_REGION")

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    host = {m["mountPath"]: (volumes[m["name"]]["hostPath"], m.get("readOnly", False))
            for m in c["volumeMounts"] if "hostPath" in volumes[m["name"]]}
    state = config.get("state_dir", "/var/lib/kubeship")
    expect(host == {"/var/log": ({"path": "/var/log", "type": "Directory"}, True),
                    state: ({"path": "/var/lib/kubeship", "type": "DirectoryOrCreate"}, False)},
           f"{name}: hostPath mounts are not /var/log read-only and {state} read-write: {host}")
    expect(all(m.get("readOnly") for p, m in mounts.items() if p != state), f"{name}: a writable mount besides {state}")
    expect("configMap" in volumes[mounts["/etc/kubeship"]["name"]] and c["args"] == ["run", "--config", "/etc/kubeship/kubeship.yaml"],
           f"{name}: the agent does not run the mounted config")
    return ds


def rbac_contract(name, objects, config):
    rules = one(objects, "ClusterRole")["rules"]
    want = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]}]
    if config.get("kubernetes", {}).get("namespace_labels"):
        want.append({"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]})
    key = json.dumps
    expect(sorted(map(key, rules)) == sorted(map(key, want)), f"{name}: ClusterRole rules are {rules}, not {want}")
    sa = one(objects, "ServiceAccount")
    binding = one(objects, "ClusterRoleBinding")
    expect(binding["roleRef"]["name"] == one(objects, "ClusterRole")["metadata"]["name"], f"{name}: binding's role")
    expect(binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": sa["metadata"]["namespace"]}], f"{name}: binding's subject")
    ds = one(objects, "DaemonSet")
    expect(ds["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"], f"{name}: pod's account")
    role_arn = sa["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")
    irsa = "irsa" in name or name.endswith("/amp")
    expect(bool(role_arn) == irsa, f"{name}: IRSA role annotation {'missing' if irsa else 'present'}")
    return len(rules)


def metrics_contract(name, objects):
    """With the metrics pipeline on: the kubelet's address and RBAC, SigV4's region and
    credentials. Returns what it found, for the report."""
    env = pod_env(objects)
    metrics = yaml.safe_load(expand(agent_config(objects)[1], env)).get("metrics")
    if metrics is None:
        return "metrics off"
    scrape = metrics.get("scrape", {})
    if scrape.get("kubelet", {}).get("enabled", True):
        expect("address" in scrape["kubelet"] or "NODE_IP" in env, f"{name}: the kubelet scrape has no NODE_IP")
        rules = one(objects, "ClusterRole")["rules"]
        expect({"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]} in rules,
               f"{name}: the kubelet scrape is on without get on nodes/metrics")
    endpoints = metrics.get("remote_write", [])
    for e in endpoints:
        if "sigv4" not in e:
            continue
        region = (e["sigv4"] or {}).get("region") or env.get("AWS_REGION")
        expect(region, f"{name}: a SigV4 endpoint without a region (sigv4.region, AWS_REGION)")
        sa = one(objects, "ServiceAccount")["metadata"].get("annotations", {})
        expect("eks.amazonaws.com/role-arn" in sa, f"{name}: SigV4 to AMP without an IRSA role")
        expect(e["url"].startswith("https://"), f"{name}: SigV4 over {e['url']}")
    return (f"metrics on: kubelet {'on' if scrape.get('kubelet', {}).get('enabled', True) else 'off'}, "
            f"{len(endpoints)} remote-write endpoint(s)" + (", SigV4" if any("sigv4" in e for e in endpoints) else ""))


def service_contract(name, objects, ds):
    svc = one(objects, "Service")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    expect(svc["spec"].get("publishNotReadyAddresses") is True, f"{name}: Service lacks publishNotReadyAddresses")
    expect(svc["spec"]["ports"] == [{"name": "telemetry", "port": 2020, "targetPort": "telemetry", "protocol": "TCP"}],
           f"{name}: Service port is not telemetry")
    expect(svc["spec"]["selector"].items() <= pod_labels.items(), f"{name}: Service selects no agent pod")
    monitors = [o for o in objects if o["kind"] == "ServiceMonitor"]
    for sm in monitors:
        expect(sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items(),
               f"{name}: ServiceMonitor selects no Service")
        expect([(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("telemetry", "/metrics")],
               f"{name}: ServiceMonitor does not scrape telemetry /metrics")
    for o in objects:
        missing = [lb for lb in LABELS if lb not in o["metadata"].get("labels", {})]
        expect(not missing, f"{name}: {o['kind']}/{o['metadata']['name']} lacks labels {missing}")
    return len(monitors)


@check
def manifests_contract():
    """Security settings, probes, mounts, env, scheduling, RBAC, Service and labels on every render"""
    for name, objects in all_renders().items():
        config, _ = agent_config(objects)
        ds = daemonset_contract(name, objects, config)
        rules = rbac_contract(name, objects, config)
        monitors = service_contract(name, objects, ds)
        metrics = metrics_contract(name, objects)
        say(f"{name}: DaemonSet ok, ClusterRole {rules} rules, Service ok, {monitors} ServiceMonitor, {metrics}")


def comparable(objects):
    """The fields both tools must agree on, without tool-specific labels and names."""
    out = {}
    for o in objects:
        o = json.loads(json.dumps(o))
        o["metadata"] = {k: v for k, v in o["metadata"].items() if k == "annotations"}
        if o["kind"] == "DaemonSet":
            tpl = o["spec"]["template"]
            tpl["metadata"].pop("labels")
            tpl["metadata"].get("annotations", {}).pop("checksum/config", None)
            tpl["metadata"] = {k: v for k, v in tpl["metadata"].items() if v}
            for v in tpl["spec"]["volumes"]:
                v.get("configMap", {}).pop("name", None)
        if o["kind"] == "ConfigMap":
            o["data"] = {k: yaml.safe_load(v) for k, v in o["data"].items()}
        out[o["kind"]] = o
    return out


@check
def helm_matches_kustomize():
    """The chart's defaults render the objects and settings of the kustomize base (Namespace aside)"""
    base = comparable(o for o in kustomize_renders()["kustomize/base"] if o["kind"] != "Namespace")
    chart = comparable(helm_renders()["helm/default"])
    expect(sorted(base) == sorted(chart), f"kinds differ: {sorted(base)} vs {sorted(chart)}")
    for kind in sorted(base):
        a, b = base[kind], chart[kind]
        expect(a == b, f"{kind} differs:\n  kustomize {json.dumps(a, sort_keys=True)}\n  helm      {json.dumps(b, sort_keys=True)}")
        say(f"{kind}: same")


@check
def helm_matches_kustomize_amp():
    """The chart with ci/amp-values.yaml runs the config, RBAC and IRSA of overlay amp"""
    overlay, chart = kustomize_renders()["kustomize/amp"], helm_renders()["helm/amp"]
    configs = []
    for objects in (overlay, chart):
        _, text = agent_config(objects)
        configs.append(yaml.safe_load(expand(text, pod_env(objects))))
    expect(configs[0] == configs[1], "the agent's configs differ once the pods' environments are applied:\n"
           f"  kustomize {json.dumps(configs[0], sort_keys=True)}\n  helm      {json.dumps(configs[1], sort_keys=True)}")
    expect(configs[0].get("metrics", {}).get("remote_write"), "overlay amp does not remote-write")
    say(f"agent config: same (metrics: {', '.join(sorted(configs[0]['metrics']))})")
    key = json.dumps
    rules = [sorted(map(key, one(o, "ClusterRole")["rules"])) for o in (overlay, chart)]
    expect(rules[0] == rules[1], f"ClusterRole rules differ: {rules}")
    annotations = [one(o, "ServiceAccount")["metadata"].get("annotations") for o in (overlay, chart)]
    expect(annotations[0] == annotations[1], f"ServiceAccount annotations differ: {annotations}")
    say("ClusterRole and ServiceAccount annotations: same")
