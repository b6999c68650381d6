#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build Holdfast, and nothing
# it already has. Sourced by .ci/run, scripts/demo.sh and scripts/test.sh.
set -euo pipefail

need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s clang >/dev/null 2>&1 || need+=(clang)
# RocksDB is linked from Debian's package (see .cargo/config.toml).
dpkg -s librocksdb-dev >/dev/null 2>&1 || need+=(librocksdb-dev)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
fi

# Builds are shared across clones on the same machine: RocksDB's C++ alone
# takes minutes on 2 cores (docs/development.md). A fresh machine just
# starts with an empty directory.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/holdfast-target}"
mkdir -p "$CARGO_TARGET_DIR"
