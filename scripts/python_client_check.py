#!/usr/bin/env python3
"""A non-Rust client against a real holdfast-server: Python grpcio.

It knows nothing of Holdfast's protos in advance. It starts a one-node
server on 127.0.0.1 (data in a temp dir), waits for grpc.health.v1 to say
SERVING, learns the Inventory service through server reflection, builds
the request classes from the descriptors it got, and makes real calls:
UpsertLocation, AdjustStock, Reserve (checked: an id and one allocation),
a retry of the same Reserve (the same answer), and a Reserve with a bad
quantity (INVALID_ARGUMENT naming the field). Exit 0 when every check
holds, 1 with the reason otherwise.

Usage: python_client_check.py PATH_TO_HOLDFAST_SERVER
"""

import os
import socket
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

SERVICE = "holdfast.inventory.v1.Inventory"
DEADLINE_S = 30


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_serving(channel):
    stub = health_pb2_grpc.HealthStub(channel)
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)  # polling interval
    raise SystemExit("health never said SERVING")


def reflect(channel):
    """Every file descriptor the server gives for SERVICE, in a pool."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    listed = next(
        stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            timeout=5,
        )
    )
    names = [s.name for s in listed.list_services_response.service]
    if SERVICE not in names:
        raise SystemExit(f"reflection does not list {SERVICE}: {names}")
    answer = next(
        stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE)]),
            timeout=5,
        )
    )
    pool = descriptor_pool.DescriptorPool()
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    added = set()
    while len(added) < len(files):  # dependencies first
        progress = False
        for f in files:
            if f.name not in added and all(d in added for d in f.dependency if d in {g.name for g in files}):
                pool.Add(f)
                added.add(f.name)
                progress = True
        if not progress:
            raise SystemExit("reflection gave files whose dependencies are missing")
    return pool, names


def unary(channel, pool, method, **fields):
    service = pool.FindServiceByName(SERVICE)
    m = service.methods_by_name[method]
    request_class = message_factory.GetMessageClass(m.input_type)
    response_class = message_factory.GetMessageClass(m.output_type)
    call = channel.unary_unary(
        f"/{SERVICE}/{method}",
        request_serializer=lambda r: r.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    return call(request_class(**fields), timeout=10)


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
            pool, names = reflect(channel)
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
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    print("python client check: passed")


if __name__ == "__main__":
    main()
