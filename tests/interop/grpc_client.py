#!/usr/bin/env python3
"""Check a running docket-ticket from grpcio, the reference Python gRPC stack.

The client uses no code generated from Docket's protos: it checks grpc.health.v1, lists
the services through server reflection (v1alpha), builds the TicketService message
classes from the reflected descriptors, creates a ticket and reads it back by key.
It prints one line per step and exits with 1 on the first failed step, 2 on bad usage.

Example:
    target/python-venv/bin/python tests/interop/grpc_client.py --addr 127.0.0.1:50051
"""

import argparse
import sys
import uuid

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

TICKET_SERVICE = "docket.ticket.v1.TicketService"


class StepFailed(Exception):
    """A check failed; the message names the step and what was received."""


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", required=True, help="host:port of docket-ticket, for example 127.0.0.1:50051")
    parser.add_argument("--token", help="bearer token sent as the authorization header")
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call in seconds")
    return parser.parse_args(argv)


def call_metadata(args):
    metadata = []
    if args.token:
        metadata.append(("authorization", f"Bearer {args.token}"))
    return metadata


def check_health(channel, timeout):
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", TICKET_SERVICE):
        request = health_pb2.HealthCheckRequest(service=service)
        response = stub.Check(request, timeout=timeout)
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            raise StepFailed(f"health of {service or 'the server'!r} is {status}, expected SERVING")
        print(f"ok   health {service or '(server)'}: {status}")


def list_services(database):
    services = sorted(database.get_services())
    if TICKET_SERVICE not in services:
        raise StepFailed(f"reflection lists {services}, which lacks {TICKET_SERVICE}")
    print(f"ok   reflection lists {len(services)} services: {', '.join(services)}")


def ticket_methods(channel, database):
    """Build the CreateTicket and GetTicket calls and their request classes from the
    descriptors the server sent through reflection."""
    pool = descriptor_pool.DescriptorPool(database)
    service = pool.FindServiceByName(TICKET_SERVICE)
    methods = {}
    for name in ("CreateTicket", "GetTicket"):
        method = service.methods_by_name[name]
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        call = channel.unary_unary(
            f"/{TICKET_SERVICE}/{name}",
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )
        methods[name] = (call, request_class)
    print(f"ok   built {len(methods)} methods of {TICKET_SERVICE} from reflected descriptors")
    return methods


def enum_number(message_class, field, value_name):
    enum_type = message_class.DESCRIPTOR.fields_by_name[field].enum_type
    return enum_type.values_by_name[value_name].number


def create_ticket(methods, metadata, timeout):
    call, request_class = methods["CreateTicket"]
    request = request_class(
        request_id=f"interop-{uuid.uuid4()}",
        title="Interop check: phishing mail reported by grpcio client",
        description="Created by tests/interop/grpc_client.py to check a non-Rust client.",
        severity=enum_number(request_class, "severity", "SEVERITY_MEDIUM"),
        category=enum_number(request_class, "category", "CATEGORY_PHISHING"),
        reporter="interop-client",
        detection_source="interop",
    )
    ticket = call(request, metadata=metadata, timeout=timeout)
    if not ticket.key or not ticket.id:
        raise StepFailed(f"CreateTicket returned a ticket without id or key: {ticket}")
    print(f"ok   CreateTicket: {ticket.key} ({ticket.id})")
    return ticket


def get_ticket(methods, metadata, timeout, created):
    call, request_class = methods["GetTicket"]
    ticket = call(request_class(ticket=created.key), metadata=metadata, timeout=timeout)
    if ticket.id != created.id or ticket.title != created.title:
        raise StepFailed(f"GetTicket {created.key} returned id {ticket.id!r} and title {ticket.title!r}, "
                         f"expected {created.id!r} and {created.title!r}")
    print(f"ok   GetTicket {created.key}: same id and title, version {ticket.version}")


def main(argv):
    args = parse_args(argv)
    metadata = call_metadata(args)
    step = "connect"
    with grpc.insecure_channel(args.addr) as channel:
        try:
            grpc.channel_ready_future(channel).result(timeout=args.timeout)
            step = "health"
            check_health(channel, args.timeout)
            step = "reflection"
            database = ProtoReflectionDescriptorDatabase(channel)
            list_services(database)
            methods = ticket_methods(channel, database)
            step = "CreateTicket"
            created = create_ticket(methods, metadata, args.timeout)
            step = "GetTicket"
            get_ticket(methods, metadata, args.timeout, created)
        except grpc.FutureTimeoutError:
            print(f"FAIL connect: no connection to {args.addr} within {args.timeout}s", file=sys.stderr)
            return 1
        except grpc.RpcError as error:
            print(f"FAIL {step}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        except (StepFailed, KeyError) as error:
            print(f"FAIL {step}: {error}", file=sys.stderr)
            return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
