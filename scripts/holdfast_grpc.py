"""What a Python client needs to talk to Holdfast without its protos.

Shared by scripts/python_client_check.py (the test of a non-Rust client)
and scripts/grpc_call.py (the grpcurl-style tool of docs/api.md): learn the
services through gRPC server reflection, build message classes from the
descriptors the server gave, and decode the google.rpc.Status details of a
refusal. Needs grpcio, grpcio-reflection, grpcio-health-checking, protobuf
and googleapis-common-protos (scripts/pyenv.sh installs them).
"""

import time

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import symbol_database
from google.rpc import error_details_pb2, status_pb2  # noqa: F401  (registers google.rpc.*)
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

INVENTORY = "holdfast.inventory.v1.Inventory"

# The trailer in which gRPC servers put a serialised google.rpc.Status.
STATUS_DETAILS_KEY = "grpc-status-details-bin"


def wait_serving(channel, service=INVENTORY, deadline_s=30):
    """Polls grpc.health.v1 until `service` is SERVING; raises otherwise."""
    stub = health_pb2_grpc.HealthStub(channel)
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.RpcError:
            pass
        time.sleep(0.05)  # polling interval
    raise SystemExit("health never said SERVING")


def _ask(stub, **request):
    return next(
        stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(**request)]),
            timeout=5,
        )
    )


def list_services(channel):
    """The service names the server's reflection lists."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    listed = _ask(stub, list_services="")
    return [s.name for s in listed.list_services_response.service]


def reflect(channel, symbol=INVENTORY):
    """A descriptor pool holding every file the server gives for `symbol`
    (the file that defines it and its dependencies), added dependencies
    first, so any message of those files can be built."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answer = _ask(stub, file_containing_symbol=symbol)
    if answer.HasField("error_response"):
        raise SystemExit(f"reflection: {symbol}: {answer.error_response.error_message}")
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in answer.file_descriptor_response.file_descriptor_proto
    ]
    pool = descriptor_pool.DescriptorPool()
    names = {f.name for f in files}
    added = set()
    while len(added) < len(files):
        progress = False
        for f in files:
            if f.name not in added and all(d in added for d in f.dependency if d in names):
                pool.Add(f)
                added.add(f.name)
                progress = True
        if not progress:
            raise SystemExit("reflection gave files whose dependencies are missing")
    return pool


def method(pool, full_name):
    """The method descriptor of "package.Service/Method" (or a dot before
    the method, as grpcurl accepts)."""
    service, _, name = full_name.replace("/", ".").rpartition(".")
    try:
        return pool.FindServiceByName(service).methods_by_name[name]
    except (KeyError, TypeError) as e:
        raise SystemExit(f"no method {full_name}: {e}")


def message_class(descriptor):
    """The generated class of a message descriptor."""
    return message_factory.GetMessageClass(descriptor)


def callable_for(channel, m):
    """A grpcio callable for method descriptor `m`: unary or server-streaming."""
    path = f"/{m.containing_service.full_name}/{m.name}"
    response = message_class(m.output_type)
    serialise = lambda r: r.SerializeToString()  # noqa: E731
    if m.server_streaming:
        return channel.unary_stream(path, request_serializer=serialise, response_deserializer=response.FromString)
    return channel.unary_unary(path, request_serializer=serialise, response_deserializer=response.FromString)


def status_details(error):
    """The google.rpc.Status details of a refusal as [(type name, message or
    None when the type is not a google.rpc one)]; empty when the server sent
    none."""
    raw = dict(error.trailing_metadata() or ()).get(STATUS_DETAILS_KEY)
    if raw is None:
        return []
    decoded = []
    for detail in status_pb2.Status.FromString(raw).details:
        type_name = detail.type_url.rpartition("/")[2]
        try:
            detail_class = symbol_database.Default().GetSymbol(type_name)
            decoded.append((type_name, detail_class.FromString(detail.value)))
        except KeyError:
            decoded.append((type_name, None))
    return decoded
