#!/usr/bin/env python3
"""A grpcurl-style caller for any gRPC server with reflection.

It has no protos of its own: it learns services and messages through the
server's reflection, takes a request as JSON (proto field names or their
lowerCamel JSON names) and prints each response as JSON. A refusal prints
its status code, message and google.rpc details (ErrorInfo's reason and
metadata, ...) and exits 1. docs/api.md shows it against a real cluster.

Usage:
  grpc_call.py ADDR list
  grpc_call.py ADDR describe SYMBOL          (a service or a message)
  grpc_call.py ADDR call SERVICE/METHOD [-d JSON] [-H KEY:VALUE]...
               [--timeout SECONDS] [--max-messages N]

A server-streaming method prints messages until the stream ends, N
messages have come (--max-messages) or the deadline passes (--timeout,
default 10 s; reaching it after at least one message is not an error).
Run it with the Python of scripts/pyenv.sh:
  source scripts/pyenv.sh && "$HOLDFAST_PYTHON" scripts/grpc_call.py ...
"""

import argparse
import json
import sys

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

import holdfast_grpc


def describe(pool, symbol):
    try:
        service = pool.FindServiceByName(symbol)
    except KeyError:
        service = None
    if service is not None:
        print(f"service {service.full_name} {{")
        for m in service.methods:
            stream = "stream " if m.server_streaming else ""
            print(f"  rpc {m.name}({m.input_type.full_name}) returns ({stream}{m.output_type.full_name});")
        print("}")
        return
    try:
        message = pool.FindMessageTypeByName(symbol)
    except KeyError:
        raise SystemExit(f"no service or message named {symbol}")
    print(f"message {message.full_name} {{")
    for f in message.fields:
        # protobuf 6 has `is_repeated`; older releases only `label`.
        is_repeated = getattr(f, "is_repeated", None)
        if is_repeated is None:
            is_repeated = f.label == FieldDescriptor.LABEL_REPEATED
        synthetic = f.containing_oneof is not None and f.containing_oneof.name.startswith("_")
        repeated = "repeated " if is_repeated else "optional " if synthetic else ""
        if f.message_type is not None:
            kind = f.message_type.full_name
        elif f.enum_type is not None:
            kind = f.enum_type.full_name
        else:
            kind = {v: k for k, v in vars(FieldDescriptor).items() if k.startswith("TYPE_")}[f.type][5:].lower()
        print(f"  {repeated}{kind} {f.name} = {f.number};")
    print("}")


def show(message):
    print(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=2))


def refusal(error):
    """Prints a refusal with its decoded details; returns the exit code."""
    print(f"ERROR: {error.code().name}: {error.details()}")
    for type_name, detail in holdfast_grpc.status_details(error):
        if detail is None:
            print(f"  detail {type_name} (not decoded)")
        else:
            as_json = json_format.MessageToDict(detail, preserving_proto_field_name=True)
            print(f"  {type_name}: {json.dumps(as_json, sort_keys=True)}")
    return 1


def call(channel, pool, args):
    m = holdfast_grpc.method(pool, args.method)
    request = holdfast_grpc.message_class(m.input_type)()
    try:
        json_format.Parse(args.data, request)
    except json_format.ParseError as e:
        raise SystemExit(f"the request is not a {m.input_type.full_name}: {e}")
    metadata = []
    for header in args.header:
        key, sep, value = header.partition(":")
        if not sep:
            raise SystemExit(f"-H wants KEY:VALUE, got {header!r}")
        metadata.append((key.strip().lower(), value.strip()))
    stub = holdfast_grpc.callable_for(channel, m)
    try:
        if not m.server_streaming:
            show(stub(request, timeout=args.timeout, metadata=metadata))
            return 0
        seen = 0
        for message in stub(request, timeout=args.timeout, metadata=metadata):
            show(message)
            seen += 1
            if args.max_messages and seen >= args.max_messages:
                break
        return 0
    except grpc.RpcError as e:
        if m.server_streaming and e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and seen > 0:
            return 0
        return refusal(e)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("addr", help="host:port of any node")
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("list", help="the services reflection lists")
    d = sub.add_parser("describe", help="a service's methods or a message's fields")
    d.add_argument("symbol")
    c = sub.add_parser("call", help="call a unary or server-streaming method")
    c.add_argument("method", help="package.Service/Method")
    c.add_argument("-d", "--data", default="{}", help="the request as JSON (default {})")
    c.add_argument("-H", "--header", action="append", default=[], help="request metadata KEY:VALUE")
    c.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds (default 10)")
    c.add_argument("--max-messages", type=int, default=0, help="stop a stream after N messages")
    args = parser.parse_args()

    channel = grpc.insecure_channel(args.addr)
    if args.verb == "list":
        for name in holdfast_grpc.list_services(channel):
            print(name)
        return 0
    symbol = args.symbol if args.verb == "describe" else args.method.replace("/", ".").rpartition(".")[0]
    pool = holdfast_grpc.reflect(channel, symbol)
    if args.verb == "describe":
        describe(pool, symbol)
        return 0
    return call(channel, pool, args)


if __name__ == "__main__":
    sys.exit(main())
