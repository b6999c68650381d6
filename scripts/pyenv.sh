#!/usr/bin/env bash
# A Python with grpcio, grpcio-reflection, grpcio-health-checking and
# googleapis-common-protos (google.rpc error details), for
# the non-Rust client check (scripts/python_client_check.py) and the
# grpcurl-style scripts/grpc_call.py. Sourced by
# scripts/test.sh; sets HOLDFAST_PYTHON. The virtualenv lives outside the
# clone (like the cargo target dir) and is made only once per machine.
set -euo pipefail

HOLDFAST_PYENV="${HOLDFAST_PYENV:-/var/tmp/holdfast-pyenv}"
if ! python3 -m venv --help >/dev/null 2>&1; then
    echo "setup: installing python3-venv"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
fi
if ! "$HOLDFAST_PYENV/bin/python" -c "import grpc, grpc_reflection, grpc_health, google.rpc.error_details_pb2" >/dev/null 2>&1; then
    echo "setup: creating $HOLDFAST_PYENV with grpcio"
    python3 -m venv "$HOLDFAST_PYENV"
    "$HOLDFAST_PYENV/bin/pip" install -q grpcio grpcio-reflection grpcio-health-checking protobuf googleapis-common-protos
fi
export HOLDFAST_PYTHON="$HOLDFAST_PYENV/bin/python"
