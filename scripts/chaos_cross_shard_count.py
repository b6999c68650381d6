#!/usr/bin/env python3
"""Counts the cross-shard operations of a chaos history (holdfast-chaos
run ... --out DIR writes DIR/history.jsonl): reserves whose lines carry
their own shard, their answers, and the confirms/releases of joined ids.

    python3 scripts/chaos_cross_shard_count.py DIR/history.jsonl
"""
import json, sys, collections
path = sys.argv[1]
out = {}
c = collections.Counter()
acked, invoked, unknown_ids, refused = set(), set(), set(), collections.Counter()
joined_ops = collections.Counter()
for line in open(path):
    e = json.loads(line)
    ev = e["event"]
    if ev == "invoke":
        out[e["process"]] = e["op"]
        op = e["op"]
        if op["kind"] == "reserve" and any("shard" in l for l in op["lines"]):
            invoked.add(op["request_id"])
        continue
    if ev == "fault":
        continue
    op = out.pop(e["process"])
    xs = op["kind"] == "reserve" and any("shard" in l for l in op["lines"])
    if xs:
        if ev == "ok":
            assert "+" in e["result"]["reservation_id"], e
            acked.add(op["request_id"])
        elif ev == "refused":
            refused[e["reason"] or e["code"]] += 1
        else:
            unknown_ids.add(op["request_id"])
    if op["kind"] in ("confirm", "release") and "+" in op["reservation_id"]:
        key = op["kind"] + ("-partial" if op.get("quantities") else "")
        joined_ops[(key, ev if ev != "refused" else "refused:" + (e["reason"] or e["code"]))] += 1
print("cross-shard reserves invoked (distinct ids):", len(invoked))
print("acknowledged (distinct ids, joined id answered):", len(acked))
print("attempts refused by reason:", dict(refused))
print("ids with an unknown attempt:", len(unknown_ids), " of them acknowledged later:", len(unknown_ids & acked))
print("confirm/release of joined ids (attempts):", dict(joined_ops))
