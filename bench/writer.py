#!/usr/bin/env python3
"""Load generator for bench/logs.sh: a kubelet-like node layout with CRI log files.

  writer.py layout  --dir NODE --files M [--lines-per-file K]
  writer.py prefill --dir NODE --files M --lines N [--line-bytes B]
  writer.py steady  --dir NODE --files M --rate R --duration D [--line-bytes B]
  writer.py pods    --files M [--node NAME]

NODE/logs/containers/<pod>_<ns>_<container>-<id>.log are relative symlinks to
NODE/logs/pods/<ns>_<pod>_<uid>/<container>/0.log. `prefill` spreads N lines of about B bytes
over M files; `steady` appends R lines/s (10 ms ticks, round-robin over the files) for D
seconds and prints the number of lines it wrote. `pods` prints, for the fake API server
(`fake-kube-api --pods`), one realistic pod per file of that layout: the uid of its
directory, 8 labels (app, pod-template-hash, app.kubernetes.io/*, team), 4 annotations
(prometheus.io/scrape and prometheus.io/port, the two `bench/logs.sh --kube` keeps, and two it
does not), a ReplicaSet owner, and the container's ECR image, imageID and containerID (the
id of the log link's name). Standard library only.

CRI timestamps: `steady` stamps each line with the wall clock (nanoseconds, UTC) at the moment
it is written, so `receive time - timestamp` downstream is the delivery latency; `prefill` and
`layout` use the start second plus the line's sequence number as nanoseconds (ordered per file).
"""

import argparse
import hashlib
import json
import os
import sys
import time

PAD = "abcdefghijklmnopqrstuvwxyz0123456789" * 64


def container_ids(i):
    """(namespace, pod, container, pod uid, container id) of file i."""
    ns, pod, name = "bench", f"load-{i:04d}", "app"
    uid = hashlib.sha256(f"uid/{i}".encode()).hexdigest()
    uid = f"{uid[0:8]}-{uid[8:12]}-{uid[12:16]}-{uid[16:20]}-{uid[20:32]}"
    cid = hashlib.sha256(f"container/{i}".encode()).hexdigest()
    return ns, pod, name, uid, cid


def container_paths(node, i):
    ns, pod, name, uid, cid = container_ids(i)
    rel = f"pods/{ns}_{pod}_{uid}/{name}"
    link = os.path.join(node, "logs", "containers", f"{pod}_{ns}_{name}-{cid}.log")
    return os.path.join(node, "logs", rel), link, f"../{rel}/0.log"


def make_layout(node, files):
    os.makedirs(os.path.join(node, "logs", "containers"), exist_ok=True)
    paths = []
    for i in range(files):
        d, link, target = container_paths(node, i)
        os.makedirs(d, exist_ok=True)
        live = os.path.join(d, "0.log")
        open(live, "a").close()
        if not os.path.lexists(link):
            os.symlink(target, link)
        paths.append(live)
    return paths


def now_base():
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())


class WallClock:
    """RFC 3339 UTC timestamps of the current wall-clock time, nanosecond precision."""

    def __init__(self):
        self.sec = None
        self.prefix = ""

    def now(self):
        ns = time.time_ns()
        sec, frac = divmod(ns, 1_000_000_000)
        if sec != self.sec:
            self.sec = sec
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self.prefix}.{frac:09d}Z"


def line(file_idx, seq, line_bytes, base=None, stream="stdout", ts=None):
    ts = ts or (base or now_base()) + f".{seq % 10**9:09d}Z"
    head = f"{ts} {stream} F bench f={file_idx} seq={seq} "
    pad = max(0, line_bytes - len(head) - 1)
    return head + PAD[seq % 36 : seq % 36 + pad] + "\n"


def prefill(args):
    paths = make_layout(args.dir, args.files)
    per_file = args.lines // args.files
    extra = args.lines % args.files
    total_bytes = 0
    base = now_base()
    for i, p in enumerate(paths):
        n = per_file + (1 if i < extra else 0)
        with open(p, "a") as f:
            chunk = []
            for seq in range(n):
                chunk.append(line(i, seq, args.line_bytes, base))
                if len(chunk) == 4096:
                    s = "".join(chunk)
                    total_bytes += len(s)
                    f.write(s)
                    chunk = []
            s = "".join(chunk)
            total_bytes += len(s)
            f.write(s)
    print(f"lines={args.lines} bytes={total_bytes}")


def steady(args):
    paths = make_layout(args.dir, args.files)
    handles = [open(p, "a", buffering=1 << 16) for p in paths]
    seqs = [0] * len(paths)
    tick = 0.01
    per_tick = args.rate * tick
    owed = 0.0
    written = 0
    nbytes = 0
    rr = 0
    clock = WallClock()
    start = time.monotonic()
    next_t = start
    while time.monotonic() - start < args.duration:
        owed += per_tick
        n = int(owed)
        owed -= n
        touched = set()
        for _ in range(n):
            i = rr % len(paths)
            rr += 1
            s = line(i, seqs[i], args.line_bytes, ts=clock.now())
            seqs[i] += 1
            handles[i].write(s)
            touched.add(i)
            nbytes += len(s)
        for i in touched:
            handles[i].flush()
        written += n
        next_t += tick
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for h in handles:
        h.close()
    elapsed = time.monotonic() - start
    print(f"lines={written} bytes={nbytes} seconds={elapsed:.2f}")


def layout(args):
    paths = make_layout(args.dir, args.files)
    for i, p in enumerate(paths):
        with open(p, "a") as f:
            f.write("".join(line(i, s, 200) for s in range(args.lines_per_file)))
    print(f"lines={len(paths) * args.lines_per_file}")


def pod_of(i, node):
    """The pod of file i as `fake-kube-api --pods` takes it: a Deployment's pod."""
    ns, pod, name, uid, cid = container_ids(i)
    template_hash = hashlib.sha256(f"template/{i}".encode()).hexdigest()[:10]
    repo = "123456789012.dkr.ecr.us-east-1.amazonaws.com/shop/checkout-api"
    return {
        "namespace": ns,
        "name": pod,
        "uid": uid,
        "node": node,
        "ip": f"10.0.{16 + i // 250}.{i % 250 + 1}",
        "labels": {
            "app": "checkout-api",
            "pod-template-hash": template_hash,
            "app.kubernetes.io/name": "checkout-api",
            "app.kubernetes.io/instance": "checkout-api-prod",
            "app.kubernetes.io/version": "1.27.3",
            "app.kubernetes.io/component": "backend",
            "app.kubernetes.io/part-of": "shop",
            "team": "payments",
        },
        "annotations": {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9102",
            "kubectl.kubernetes.io/restartedAt": "2026-11-20T08:14:03Z",
            "checksum/config": hashlib.sha256(b"config").hexdigest(),
        },
        "owner": {"kind": "ReplicaSet", "name": f"{pod}-{template_hash}"},
        "containers": [{
            "name": name,
            "image": f"{repo}:1.27.3",
            "image_id": f"{repo}@sha256:{hashlib.sha256(b'image').hexdigest()}",
            "container_id": f"containerd://{cid}",
        }],
    }


def pods(args):
    json.dump({"pods": [pod_of(i, args.node) for i in range(args.files)]}, sys.stdout, indent=1)
    print()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pods")
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--node", default="bench-node")
    for name in ("layout", "prefill", "steady"):
        p = sub.add_parser(name)
        p.add_argument("--dir", required=True)
        p.add_argument("--files", type=int, default=100)
        p.add_argument("--line-bytes", type=int, default=200)
        if name == "layout":
            p.add_argument("--lines-per-file", type=int, default=10)
        if name == "prefill":
            p.add_argument("--lines", type=int, default=2_000_000)
        if name == "steady":
            p.add_argument("--rate", type=int, default=10_000)
            p.add_argument("--duration", type=float, default=30)
    args = ap.parse_args()
    {"layout": layout, "prefill": prefill, "steady": steady, "pods": pods}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
