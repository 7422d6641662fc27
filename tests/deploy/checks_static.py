"""Checks on the bundle's files as they are: the Dockerfile and its build context,
versions, Terraform (python-hcl2), yamllint, checkov, the Argo CD Application."""

import fnmatch
import json
import os
import re
import shutil

import hcl2
import yaml

from bundle import (CHART, DEPLOY, KUSTOMIZE, ROOT, TMP, Failed, all_renders, cargo_version, expect,
                    kustomize, one, run, say, tool)

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def dockerfile_stages():
    """[(FROM image, [instruction lines])] of the Dockerfile, continuations joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append((line.split()[1], []))
        else:
            expect(stages, "an instruction before the first FROM")
            stages[-1][1].append(line)
    return stages


def build_context():
    """The files `docker build .` sends, by .dockerignore (Docker's rules: the last
    pattern matching a path or one of its parents decides; `!` includes)."""
    patterns = [p.strip() for p in (ROOT / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(rel):
        parts, verdict = rel.split("/"), False
        for pat in patterns:
            neg, pat = pat.startswith("!"), pat.lstrip("!").rstrip("/")
            for i in range(1, len(parts) + 1):
                if fnmatch.fnmatchcase("/".join(parts[:i]), pat) or (
                        pat.startswith("**/") and fnmatch.fnmatchcase(parts[i - 1], pat[3:])):
                    verdict = not neg
                    break
        return verdict

    tracked = run(["git", "-C", ROOT, "ls-files", "--cached", "--others", "--exclude-standard"]).stdout.split()
    return [f for f in tracked if not ignored(f)]


@check
def image_dockerfile():
    """Dockerfile: multi-stage, pinned bases, distroless runtime with the binary only; its context builds"""
    stages = dockerfile_stages()
    expect(len(stages) >= 2, "not a multi-stage build")
    for image, _ in stages:
        pinned = re.search(r"@sha256:[0-9a-f]{64}$", image) or re.search(r":\d+\.\d+\.\d+[\w.-]*$", image)
        expect(pinned and ":latest" not in image, f"base image {image} is not pinned by digest or exact version")
    say(f"bases pinned: {', '.join(i.split('@')[0] + ('@sha256:…' if '@' in i else '') for i, _ in stages)}")
    runtime, lines = stages[-1]
    expect(runtime.startswith(("gcr.io/distroless/", "scratch")), f"runtime {runtime} is not distroless or scratch")
    copies = [line for line in lines if line.upper().startswith(("COPY", "ADD"))]
    expect(len(copies) == 1 and "--from=" in copies[0] and copies[0].endswith("/usr/local/bin/kubeship"),
           f"the runtime stage copies more than the binary: {copies}")
    expect(not any(line.upper().startswith("RUN") for line in lines), "the runtime stage runs commands")
    expect(any(line.upper().startswith("USER ") for line in lines), "no USER in the runtime stage")
    expect(any(line.startswith('ENTRYPOINT ["/usr/local/bin/kubeship"]') for line in lines), "ENTRYPOINT is not the agent")
    comment = (ROOT / "Dockerfile").read_text()
    expect("0640" in comment and "capabilit" in comment, "no comment on why uid 0 without capabilities")
    say(f"runtime {runtime.split('@')[0]}: one COPY (the binary), USER, ENTRYPOINT; uid 0 explained")

    # The build stage's COPY sources, from the context .dockerignore leaves.
    context = build_context()
    expect(not any(f.startswith(("target/", "deploy/", ".git/", "examples/")) for f in context),
           "the build context holds target/, deploy/, .git/ or examples/")
    ctx = TMP / "docker-context"
    for f in context:
        (ctx / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, ctx / f)
    src = TMP / "docker-build-src"
    src.mkdir()
    for line in stages[0][1]:
        if line.upper().startswith("COPY "):
            *sources, _ = [w for w in line.split()[1:] if not w.startswith("--")]
            for s in sources:
                expect((ctx / s).exists(), f"COPY {s}: not in the build context (.dockerignore)")
                (shutil.copytree if (ctx / s).is_dir() else shutil.copy2)(ctx / s, src / s)
    proc = run(["cargo", "metadata", "--locked", "--offline", "--format-version", "1", "--no-deps"], cwd=src)
    expect(proc.returncode == 0, f"the build stage's files do not load as a workspace:\n{proc.stderr}")
    members = {p["name"] for p in json.loads(proc.stdout)["packages"]}
    expect("kubeship" in members, "the copied workspace has no kubeship package")
    say(f"build context: {len(context)} files; the build stage's COPYs load the workspace "
        f"({', '.join(sorted(members))}) with --locked")


@check
def versions_agree():
    """Cargo's version is the image tag, the version label and the chart's appVersion"""
    version = cargo_version()
    k = yaml.safe_load((KUSTOMIZE / "base" / "kustomization.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    found = {"kustomize image tag": k["images"][0]["newTag"],
             "kustomize app.kubernetes.io/version": k["labels"][0]["pairs"]["app.kubernetes.io/version"],
             "Chart.yaml appVersion": chart["appVersion"]}
    for what, v in found.items():
        expect(str(v) == version, f"{what} is {v}, Cargo.toml says {version}")
    image = one(kustomize(KUSTOMIZE / "base"), "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"]
    expect(image.endswith(f":{version}"), f"the base runs {image}")
    say(f"{version} everywhere ({', '.join(found)}, {image})")


def unquote(value):
    """python-hcl2 keeps HCL's quotes on literals and keys: strip them, recursively."""
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if not k.startswith("__")}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def terraform(directory):
    """{block type: [blocks]} of every .tf file in directory."""
    out = {}
    for path in sorted(directory.glob("*.tf")):
        with open(path) as f:
            try:
                doc = unquote(hcl2.load(f))
            except Exception as e:
                raise Failed(f"{path.relative_to(ROOT)} does not parse: {e}")
        for key, blocks in doc.items():
            out.setdefault(key, []).extend(blocks)
    return out


def named(tf, block, kind):
    """The bodies of `block "kind" "name"` (resource/data) or `block "name"`, by name."""
    out = {}
    for b in tf.get(block, []):
        if kind is None:
            out.update(b)
        elif kind in b:
            out.update(b[kind])
    return out


# The agent's IAM policy, exactly (tests read the statements as written in iam.tf).
POLICY = {
    "LogGroups": ({"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutRetentionPolicy"},
                  '${flatten([for g in aws_cloudwatch_log_group.app : [g.arn, "${g.arn}:*"]])}'),
    "LogEvents": ({"logs:PutLogEvents"}, '${[for g in aws_cloudwatch_log_group.app : "${g.arn}:log-stream:*"]}'),
    "RemoteWrite": ({"aps:RemoteWrite"}, ["${statement.value}"]),
}


@check
def terraform_least_privilege():
    """Terraform parses; the agent's IAM policy is exactly the least-privilege set on the cluster's log groups and workspace"""
    tf = terraform(DEPLOY / "terraform")
    example = terraform(DEPLOY / "terraform" / "examples" / "eks")
    say(f"parsed: module ({sum(len(v) for v in tf.values())} blocks), examples/eks "
        f"({sum(len(v) for v in example.values())} blocks)")
    doc = named(tf, "data", "aws_iam_policy_document")["agent"]
    statements = list(doc.get("statement", []))
    for dyn in doc.get("dynamic", []):
        body = dyn["statement"]
        expect(body["for_each"] == "${local.amp_workspace == null ? [] : [local.amp_workspace]}",
               f"a dynamic statement not guarded by the AMP workspace: {body['for_each']}")
        statements += body["content"]
    got = {s["sid"]: (set(s["actions"]), s["resources"]) for s in statements}
    expect(set(got) == set(POLICY), f"statements {sorted(got)}, want {sorted(POLICY)}")
    for sid, (actions, resources) in POLICY.items():
        expect(got[sid] == (actions, resources), f"statement {sid} is {got[sid]}, want {(actions, resources)}")
        expect(all(s.get("effect", "Allow") == "Allow" and "condition" not in s for s in statements), "odd statement")
    actions = sorted(a for a, _ in POLICY.values() for a in a)
    say(f"actions exactly {', '.join(actions)}")
    groups = named(tf, "resource", "aws_cloudwatch_log_group")
    expect(list(groups) == ["app"] and groups["app"]["for_each"] == "${toset(local.log_groups)}",
           "the policy's log groups are not the module's own")
    local = {k: v for b in tf["locals"] for k, v in b.items()}
    expect(local["log_groups"] == '${coalesce(var.log_groups, ["/aws/containerinsights/${var.cluster_name}/application"])}',
           f"log groups default to {local['log_groups']}, not the cluster's application group")
    expect(local["amp_workspace"] == "${var.create_amp_workspace ? aws_prometheus_workspace.this[0].arn : var.amp_workspace_arn}",
           "aps:RemoteWrite is not scoped to the configured workspace")
    say("resources: the cluster's log groups (and :*, :log-stream:*), the AMP workspace only when configured")
    trust = named(tf, "data", "aws_iam_policy_document")["trust"]
    irsa = trust["dynamic"][0]["statement"]["content"][0]
    expect({c["variable"]: c["values"] for c in irsa["condition"]} ==
           {"${local.oidc_issuer}:sub": ["${local.service_account}"], "${local.oidc_issuer}:aud": ["sts.amazonaws.com"]},
           "the IRSA trust is not limited to the agent's ServiceAccount")
    say("IRSA trust: only system:serviceaccount:<namespace>:<service_account>, audience sts")
    modules = named(example, "module", None)
    expect(modules["kubeship"]["source"] == "../.." and "cluster_name" in modules["kubeship"],
           "examples/eks does not call the module with cluster_name")


@check
def terraform_documented():
    """Every Terraform variable and output has a description and is in deploy/terraform/README.md"""
    readme = (DEPLOY / "terraform" / "README.md").read_text()
    for directory in (DEPLOY / "terraform", DEPLOY / "terraform" / "examples" / "eks"):
        tf = terraform(directory)
        variables, outputs = named(tf, "variable", None), named(tf, "output", None)
        for name, body in {**variables, **outputs}.items():
            expect(body.get("description"), f"{directory.name}: {name} has no description")
        for name, body in variables.items():
            expect(body.get("type"), f"{directory.name}: variable {name} has no type")
        if directory == DEPLOY / "terraform":
            for name in [*variables, *outputs]:
                expect(f"`{name}`" in readme, f"deploy/terraform/README.md does not document `{name}`")
        say(f"{directory.relative_to(DEPLOY)}: {len(variables)} variables, {len(outputs)} outputs described")


def record_fields():
    """kubernetes.* fields of the record format in DESIGN.md (the JSON example)."""
    design = (ROOT / "DESIGN.md").read_text()
    section = design[design.index("## Record format"):]
    example = section[section.index("```json"):section.index("```", section.index("```json") + 3)]
    inner = example[example.index('"kubernetes":{'):]
    return set(re.findall(r'"(\w+)":', inner)) - {"kubernetes"}


@check
def logs_insights_queries():
    """The saved Logs Insights queries and the metric filter use fields of the agent's record format"""
    tf = terraform(DEPLOY / "terraform")
    queries = {k: v for b in tf["locals"] for k, v in b.items()}["queries"]
    fields = record_fields()
    expect({"pod_name", "namespace_name", "container_name"} <= fields, f"DESIGN.md's record fields: {fields}")
    want = {"errors-by-container", "top-talkers", "pod-recent-logs", "exceptions"}
    expect(set(queries) == want, f"queries {sorted(queries)}, want {sorted(want)}")
    for name, text in queries.items():
        used = set(re.findall(r"kubernetes\.(\w+)", text))
        expect(used and used <= fields, f"query {name} uses kubernetes.{sorted(used - fields)}, not in DESIGN.md")
        expect(re.search(r"\blog\b", text), f"query {name} does not read log")
        say(f"{name}: kubernetes.{{{', '.join(sorted(used))}}}")
    variables = named(tf, "variable", None)
    pattern = variables["error_filter_pattern"]["default"]
    expect(re.fullmatch(r"\{ \$\.log = %[^%]+% \}", pattern), f"metric filter pattern {pattern} does not read $.log")
    say(f"metric filter: {pattern}")


@check
def yamllint():
    """yamllint (strict, .yamllint) on every YAML file of the bundle but Helm templates"""
    proc = run([tool("yamllint"), "--strict", "-c", ROOT / ".yamllint", "--list-files", "deploy"], cwd=ROOT)
    files = proc.stdout.split()
    expect(len(files) >= 20 and not any("/templates/" in f for f in files), f"yamllint would lint {files}")
    proc = run([tool("yamllint"), "--strict", "-c", ROOT / ".yamllint", "deploy", ".yamllint"], cwd=ROOT)
    expect(proc.returncode == 0, f"yamllint:\n{proc.stdout}{proc.stderr}")
    bad = TMP / "yamllint-bad.yaml"
    bad.write_text("key: value\nkey: again\n")
    proc = run([tool("yamllint"), "--strict", "-c", ROOT / ".yamllint", bad], cwd=ROOT)
    expect(proc.returncode != 0, "yamllint passed a duplicate key: the check cannot fail")
    say(f"{len(files) + 1} files clean; a duplicate key is an error")


@check
def checkov():
    """checkov on the rendered manifests, the Dockerfile and Terraform: every failure is a listed skip, every skip a failure"""
    skips = yaml.safe_load((DEPLOY / "checkov-skips.yaml").read_text())
    scan = TMP / "checkov"
    (scan / "manifests").mkdir(parents=True)
    for name, objects in all_renders().items():
        (scan / "manifests" / (name.replace("/", "_") + ".yaml")).write_text(yaml.safe_dump_all(objects))
    (scan / "docker").mkdir()
    shutil.copy(ROOT / "Dockerfile", scan / "docker" / "Dockerfile")
    shutil.copytree(DEPLOY / "terraform", scan / "terraform")
    proc = run([tool("checkov", "KUBESHIP_CHECKOV", "~/.cache/kubeship-checkov-venv/bin/checkov"), "-d", scan, "--framework", "kubernetes", "dockerfile", "terraform",
                "-o", "json", "--skip-download", "--quiet"], env=dict(os.environ, LOG_LEVEL="ERROR"))
    try:
        reports = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise Failed(f"checkov failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    reports = reports if isinstance(reports, list) else [reports]
    expect({r["check_type"] for r in reports} == {"kubernetes", "dockerfile", "terraform"},
           f"checkov scanned {[r['check_type'] for r in reports]}")
    for report in reports:
        framework = report["check_type"]
        failed = {}
        for f in report["results"]["failed_checks"]:
            failed.setdefault(f["check_id"], set()).add(f"{f['file_path']}:{f['resource']}")
        listed = set(skips.get(framework) or {})
        unexpected = {c: sorted(w) for c, w in failed.items() if c not in listed}
        expect(not unexpected, f"{framework}: checks failed that deploy/checkov-skips.yaml does not list: "
               f"{json.dumps(unexpected, indent=1)}")
        stale = listed - set(failed)
        expect(not stale, f"{framework}: deploy/checkov-skips.yaml lists {sorted(stale)}, which pass now: remove them")
        s = report["summary"]
        say(f"{framework}: {s['passed']} passed, {s['failed']} failed, all listed skips "
            f"({', '.join(sorted(listed)) or 'none'})")


@check
def argocd_application():
    """The Argo CD Application syncs an overlay of this repository with prune and self-heal"""
    app = yaml.safe_load((DEPLOY / "argocd" / "application.yaml").read_text())
    expect(app["apiVersion"] == "argoproj.io/v1alpha1" and app["kind"] == "Application", "not an Application")
    auto = app["spec"]["syncPolicy"]["automated"]
    expect(auto.get("prune") is True and auto.get("selfHeal") is True, f"automated sync is {auto}")
    path = ROOT / app["spec"]["source"]["path"]
    expect(path.is_dir() and (path / "kustomization.yaml").exists(), f"source path {path} is no kustomization here")
    ns = one(kustomize(path), "Namespace")["metadata"]["name"]
    expect(app["spec"]["destination"]["namespace"] == ns, f"destination namespace is not the overlay's {ns}")
    say(f"{app['spec']['source']['path']} into {ns}: automated, prune, selfHeal")
