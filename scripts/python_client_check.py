#!/usr/bin/env python3
"""A non-Rust client against a real holdfast-server: Python grpcio.

It knows nothing of Holdfast's protos in advance. It starts a one-node
server on 127.0.0.1 (data in a temp dir), waits for grpc.health.v1 to say
SERVING, learns the Inventory service through server reflection, builds
the request classes from the descriptors it got, and makes real calls:
UpsertLocation, AdjustStock, Reserve (checked: an id and one allocation),
a retry of the same Reserve (the same answer), a Reserve with a bad
quantity (INVALID_ARGUMENT naming the field) and one for more than there
is (FAILED_PRECONDITION with a google.rpc.ErrorInfo: OUT_OF_STOCK, the SKU
and the units available). Exit 0 when every check holds, 1 with the reason
otherwise.

Usage: python_client_check.py PATH_TO_HOLDFAST_SERVER
"""

import os
import socket
import subprocess
import sys
import tempfile

import grpc

from holdfast_grpc import INVENTORY as SERVICE
from holdfast_grpc import callable_for, list_services, message_class, method, reflect, status_details, wait_serving


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unary(channel, pool, name, **fields):
    m = method(pool, f"{SERVICE}/{name}")
    request = message_class(m.input_type)(**fields)
    return callable_for(channel, m)(request, timeout=10)


def check(what, ok):
    if not ok:
        raise SystemExit(f"python client check failed: {what}")
    print(f"  ok: {what}")


def main():
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    server = sys.argv[1]
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        proc = subprocess.Popen(
            [server, "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(data, "n1")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            wait_serving(channel)
            check("health says SERVING", True)
            names = list_services(channel)
            if SERVICE not in names:
                raise SystemExit(f"reflection does not list {SERVICE}: {names}")
            pool = reflect(channel)
            check(f"reflection lists {len(names)} services, {SERVICE} among them", True)
            unary(channel, pool, "UpsertLocation", request_id="py-loc", location="berlin", region="eu", priority=1)
            unary(channel, pool, "AdjustStock", request_id="py-stock", sku="PY-1", location="berlin", delta=10)
            line = {"sku": "PY-1", "quantity": 3, "location": "berlin"}
            reserve = dict(request_id="py-r1", owner_id="cart", customer_id="cust", lines=[line], ttl_ms=60000)
            first = unary(channel, pool, "Reserve", **reserve)
            check(
                f"Reserve answered {first.reservation_id} with {len(first.allocations)} allocation",
                first.reservation_id and len(first.allocations) == 1 and first.allocations[0].available_after == 7,
            )
            again = unary(channel, pool, "Reserve", **reserve)
            check("a retry with the same request id gets the same answer", again.reservation_id == first.reservation_id)
            bad = dict(reserve, request_id="py-bad", lines=[dict(line, quantity=0)])
            try:
                unary(channel, pool, "Reserve", **bad)
                check("a zero quantity is refused", False)
            except grpc.RpcError as e:
                check(
                    f"a zero quantity is refused: {e.code().name}: {e.details()}",
                    e.code() == grpc.StatusCode.INVALID_ARGUMENT and "quantity" in e.details(),
                )
            too_many = dict(reserve, request_id="py-r2", lines=[dict(line, quantity=8)])
            try:
                unary(channel, pool, "Reserve", **too_many)
                check("8 units of 7 are refused", False)
            except grpc.RpcError as e:
                infos = [d for name, d in status_details(e) if name == "google.rpc.ErrorInfo"]
                check(
                    f"8 units of 7 are refused: {e.code().name}, ErrorInfo "
                    f"{infos[0].reason if infos else None} {dict(infos[0].metadata) if infos else {}}",
                    e.code() == grpc.StatusCode.FAILED_PRECONDITION
                    and len(infos) == 1
                    and infos[0].reason == "OUT_OF_STOCK"
                    and infos[0].domain == "holdfast.dev"
                    and infos[0].metadata["sku"] == "PY-1"
                    and infos[0].metadata["available"] == "7",
                )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("python client check: passed")


if __name__ == "__main__":
    main()
