#!/usr/bin/env bash
# The main job of the README: sets up a fresh Debian machine if needed,
# builds in release mode and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --release --locked -p holdfast-bench --bin engine-demo -- "$@"
