#!/usr/bin/env bash
# The test command of the README: sets up a fresh Debian machine if needed,
# then runs every test of the workspace (unit, property, multi-node).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo test --workspace --locked "$@"
