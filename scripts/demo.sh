#!/usr/bin/env bash
# The main job of the README: sets up a fresh Debian machine if needed,
# builds in release mode, starts a local 3-node cluster and runs the demo
# on it; the cluster stays up until Ctrl-C. Arguments go to cluster-demo
# (see `cluster-demo --help`: --data-dir, --base-port, --buyers, --units,
# --seconds, --no-wait).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo build --release --locked -p holdfast-server -p holdfast-bench
exec "$CARGO_TARGET_DIR/release/cluster-demo" "$@"
