#!/usr/bin/env bash
# The test command of the README: sets up a fresh Debian machine if needed,
# then runs every test of the workspace (unit, property, multi-node, real
# processes), and, without arguments, the non-Rust client check (Python
# grpcio against a real node, through health and reflection only) and the
# load harness's quick run (scripts/bench_check.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --workspace --locked --no-fail-fast "$@"
if [ $# -eq 0 ]; then
    source scripts/pyenv.sh
    echo "python client check (grpcio, reflection, health):"
    "$HOLDFAST_PYTHON" scripts/python_client_check.py "$CARGO_TARGET_DIR/debug/holdfast-server"
    bash scripts/bench_check.sh
fi
