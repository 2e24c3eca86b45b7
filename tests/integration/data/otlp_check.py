#!/usr/bin/env python3
"""Checks what otlp_receiver.py recorded against the OTLP logs JSON shape and the audit log.

otlp_check.py RECEIVED AUDIT_LOG FORBIDDEN...: every POST went to /v1/logs as application/json;
every body is an ExportLogsServiceRequest (resourceLogs[].resource.attributes,
scopeLogs[].scope, logRecords[] with timeUnixNano as a decimal string, severityNumber, a string
body, attributes as key + AnyValue); every audit line arrived once, as a body, with the resource
naming the session; no body holds any FORBIDDEN string (secrets, placeholders). Prints `ok` and
the attributes seen, or the first problem.
"""
import json
import sys

ANY = {"stringValue", "boolValue", "intValue", "doubleValue", "arrayValue", "kvlistValue",
       "bytesValue"}


def fail(msg):
    print("FAIL", msg)
    sys.exit(1)


def check_any(v, where):
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ANY:
        fail(f"{where}: not an AnyValue: {v!r}")
    k, x = next(iter(v.items()))
    if k == "intValue" and not (isinstance(x, str) and x.lstrip("-").isdigit()):
        fail(f"{where}: intValue must be a decimal string: {x!r}")
    if k == "arrayValue":
        for e in x.get("values", []):
            check_any(e, where)


def check_attrs(attrs, where):
    if not isinstance(attrs, list):
        fail(f"{where}: attributes is not a list")
    out = {}
    for a in attrs:
        if set(a) != {"key", "value"} or not isinstance(a["key"], str):
            fail(f"{where}: not a KeyValue: {a!r}")
        check_any(a["value"], f"{where}.{a['key']}")
        out[a["key"]] = a["value"]
    return out


received, audit_log, forbidden = sys.argv[1], sys.argv[2], sys.argv[3:]
bodies, resources, records = [], [], []
for line in open(received):
    doc = json.loads(line)
    if doc["path"] != "/v1/logs" or doc["content_type"] != "application/json":
        fail(f"posted to {doc['path']} as {doc['content_type']}")
    bodies.append(doc["body"])
    req = json.loads(doc["body"])
    for rl in req["resourceLogs"]:
        resources.append(check_attrs(rl["resource"]["attributes"], "resource"))
        for sl in rl["scopeLogs"]:
            if sl["scope"]["name"] != "agentbox.audit":
                fail(f"scope {sl['scope']!r}")
            for r in sl["logRecords"]:
                t = r.get("timeUnixNano")
                if not (isinstance(t, str) and t.isdigit() and int(t) > 1.6e18):
                    fail(f"timeUnixNano {t!r}")
                if r.get("severityNumber") not in (9, 13):
                    fail(f"severityNumber {r.get('severityNumber')!r}")
                if not isinstance(r["body"].get("stringValue"), str):
                    fail("body is not a string")
                records.append((r["body"]["stringValue"], check_attrs(r["attributes"], "record")))
for b in bodies:
    for f in forbidden:
        if f and f in b:
            fail(f"a payload holds the forbidden string {f[:6]}...")
lines = [l.rstrip("\n") for l in open(audit_log) if l.strip()]
got = [b for b, _ in records]
if sorted(got) != sorted(lines):
    missing = [l for l in lines if l not in got]
    fail(f"{len(got)} records for {len(lines)} audit lines; missing {missing[:2]}")
session = json.loads(lines[0])["session"]
for r in resources:
    if r.get("agentbox.session.id") != {"stringValue": session}:
        fail(f"resource without the session: {r!r}")
    for k in ("service.name", "host.name", "user.name", "agentbox.profile", "agentbox.workspace"):
        if k not in r:
            fail(f"resource without {k}")
print("ok", len(records))
for k, v in sorted(resources[0].items()):
    print("resource", k, json.dumps(v))
for body, attrs in records:
    ev = json.loads(body)["type"]
    for k, v in sorted(attrs.items()):
        print("attr", ev, k, json.dumps(v))
