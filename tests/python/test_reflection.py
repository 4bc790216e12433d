"""gRPC server reflection over both protocols, with Python's grpcio-reflection.

grpcio-reflection's client (`ProtoReflectionDescriptorDatabase`) speaks only
`grpc.reflection.v1alpha`; grpcurl and newer tools speak `grpc.reflection.v1`. The two
protocols have identical messages, so v1 is exercised with the same generated message
classes on the v1 method path. Both must list Tribunal and the health service, and
resolve Tribunal's descriptors far enough to name its methods.
"""

from __future__ import annotations

from typing import List

import pytest

from conftest import need

grpc = need("grpc", "grpcio grpcio-reflection")
from google.protobuf.descriptor_pool import DescriptorPool  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)

SERVICES = ["grpc.health.v1.Health", "tribunal.v1.Tribunal"]


def list_services(channel: "grpc.Channel", version: str) -> List[str]:
    call = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )
    (answer,) = list(call(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    return sorted(s.name for s in answer.list_services_response.service)


@pytest.mark.parametrize("version", ["v1", "v1alpha"])
def test_reflection_lists_tribunal_and_health(keyed, version: str) -> None:
    with grpc.insecure_channel(keyed.grpc) as channel:
        services = list_services(channel, version)
    assert [s for s in services if not s.startswith("grpc.reflection.")] == SERVICES


def test_grpcio_reflection_client_resolves_the_tribunal_service(keyed) -> None:
    with grpc.insecure_channel(keyed.grpc) as channel:
        db = ProtoReflectionDescriptorDatabase(channel)
        assert set(SERVICES) <= set(db.get_services())
        pool = DescriptorPool(db)
        tribunal = pool.FindServiceByName("tribunal.v1.Tribunal")
        methods = {m.name for m in tribunal.methods}
        assert {"Grade", "SubmitJob", "StreamJobResults", "GetJobSummary"} <= methods
        health = pool.FindServiceByName("grpc.health.v1.Health")
        assert "Check" in {m.name for m in health.methods}
