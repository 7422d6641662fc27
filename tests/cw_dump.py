#!/usr/bin/env python3
"""Prints, as one JSON document, everything a CloudWatch Logs endpoint holds.

    cw_dump.py --endpoint http://127.0.0.1:PORT [--region us-east-1] [--group-prefix P]
               [--put GROUP STREAM MESSAGE...]

Output (stdout):

    {"groups": [{"name": ..., "retentionInDays": 7 | null, "logGroupClass": ... | null,
                 "tags": {...} | null,
                 "streams": [{"name": ..., "events": [{"timestamp": ..., "ingestionTime": ...,
                                                      "message": ...}, ...]}, ...]}, ...]}

Groups and streams are listed with pagination; every stream's events are read with
GetLogEvents(startFromHead=True), following nextForwardToken until it repeats. Used by the test
harness (tests/cw/moto.rs) against moto's server; it is boto3's view of the data, independent
of the agent's AWS SDK. `--put` first creates GROUP/STREAM if needed and puts one event per
MESSAGE (timestamps: now, in order), for the harness's own round-trip tests.

Credentials: whatever the environment gives boto3 (the harness sets testing/testing).
"""

import argparse
import json
import sys
import time

import boto3
import botocore.config
import botocore.exceptions


def client(endpoint, region):
    cfg = botocore.config.Config(
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
        # Never route loopback traffic through an HTTP proxy from the environment.
        proxies={},
    )
    return boto3.client("logs", endpoint_url=endpoint, region_name=region, config=cfg)


def paginate(call, key, **kwargs):
    token = None
    while True:
        args = dict(kwargs)
        if token:
            args["nextToken"] = token
        page = call(**args)
        yield from page.get(key, [])
        token = page.get("nextToken")
        if not token:
            return


def events_of(logs, group, stream):
    out = []
    token = None
    while True:
        args = {"logGroupName": group, "logStreamName": stream, "startFromHead": True}
        if token is not None:
            args["nextToken"] = token
        page = logs.get_log_events(**args)
        for e in page.get("events", []):
            out.append(
                {
                    "timestamp": e["timestamp"],
                    "ingestionTime": e.get("ingestionTime"),
                    "message": e["message"],
                }
            )
        nxt = page.get("nextForwardToken")
        if nxt is None or nxt == token:
            return out
        token = nxt


def tags_of(logs, group):
    arn = group.get("logGroupArn")
    try:
        if arn:
            return logs.list_tags_for_resource(resourceArn=arn).get("tags", {})
        return logs.list_tags_log_group(logGroupName=group["logGroupName"]).get("tags", {})
    except (botocore.exceptions.ClientError, AttributeError):
        return None


def put(logs, group, stream, messages):
    for call, args in (
        (logs.create_log_group, {"logGroupName": group}),
        (logs.create_log_stream, {"logGroupName": group, "logStreamName": stream}),
    ):
        try:
            call(**args)
        except logs.exceptions.ResourceAlreadyExistsException:
            pass
    now = int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": m} for i, m in enumerate(messages)]
    resp = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)
    if resp.get("rejectedLogEventsInfo"):
        raise SystemExit(f"events rejected: {resp['rejectedLogEventsInfo']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--group-prefix", default=None)
    ap.add_argument("--put", nargs="+", metavar=("GROUP", "STREAM"), default=None)
    a = ap.parse_args()
    logs = client(a.endpoint, a.region)
    if a.put:
        if len(a.put) < 3:
            ap.error("--put needs GROUP STREAM MESSAGE...")
        put(logs, a.put[0], a.put[1], a.put[2:])

    kwargs = {}
    if a.group_prefix:
        kwargs["logGroupNamePrefix"] = a.group_prefix
    groups = []
    for g in paginate(logs.describe_log_groups, "logGroups", **kwargs):
        name = g["logGroupName"]
        streams = []
        for s in paginate(
            logs.describe_log_streams, "logStreams", logGroupName=name, orderBy="LogStreamName"
        ):
            streams.append(
                {"name": s["logStreamName"], "events": events_of(logs, name, s["logStreamName"])}
            )
        groups.append(
            {
                "name": name,
                "retentionInDays": g.get("retentionInDays"),
                "logGroupClass": g.get("logGroupClass"),
                "tags": tags_of(logs, g),
                "streams": streams,
            }
        )
    json.dump({"groups": groups}, sys.stdout, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
