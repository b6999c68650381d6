#!/usr/bin/env bash
# The load harness in CI: `holdfast-bench --quick` (about 2 minutes) on a
# 1-node and a 3-node cluster, the gRPC floor and, when they can be
# installed and started, PostgreSQL and Redis (a peer that cannot is
# skipped with a note in the report). It fails if the harness fails or a
# Holdfast flash sale did not sell exactly its 100 units; no throughput is
# judged here (figures on a CI machine mean little, see
# docs/performance.md).
#
# It uses the debug binaries `cargo test --workspace` has just built into
# $CARGO_TARGET_DIR/debug (a release build would add minutes to CI).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=target}"
bench="$CARGO_TARGET_DIR/debug/holdfast-bench"
if [ ! -x "$bench" ]; then
    cargo build --locked -p holdfast-bench -p holdfast-server
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "load harness, quick (holdfast-bench --quick):"
start=$(date +%s)
status=0
"$bench" --quick --json "$out/bench.json" || status=$?
echo "load harness: exit $status after $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
python3 - "$out/bench.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
sales = {f["system"]: f for f in report["flash"]}
bad = []
for system in ("holdfast-1n", "holdfast-3n"):
    f = sales.get(system)
    if f is None:
        bad.append(f"{system}: no flash sale in the report")
    elif f["sold"] != f["units"] or f["units"] != 100:
        bad.append(f"{system}: sold {f['sold']} of {f['units']}")
    else:
        print(f"load harness: {system} flash sale sold exactly {f['sold']} of {f['buyers']} buyers")
skipped = [s["system"] for s in report["systems"] if not s["ran"]]
if skipped:
    print("load harness: skipped: " + ", ".join(skipped))
if bad:
    print("load harness: FAILED: " + "; ".join(bad))
    sys.exit(1)
PY
