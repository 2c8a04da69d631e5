"""protos/grpc_inference.proto speaks Triton's wire format: every message and RPC it keeps has the
names, numbers and types of Triton's grpc_service.proto, as tritonclient ships it.

tritonclient's module is read as text, never imported (its messages would clash with ours in
protobuf's default pool): the serialized FileDescriptorProto it embeds is decoded here.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from streamserve_oip._proto import grpc_inference_pb2


def triton_descriptor() -> descriptor_pb2.FileDescriptorProto:
    spec = importlib.util.find_spec("tritonclient")  # the package's __init__ only: it is empty
    assert spec is not None and spec.submodule_search_locations
    source = (Path(spec.submodule_search_locations[0]) / "grpc" / "service_pb2.py").read_text()
    match = re.search(r"AddSerializedFile\((b'.*?')\)", source, re.DOTALL)
    assert match, "tritonclient's service_pb2.py no longer embeds its descriptor as expected"
    return descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(match.group(1)))


def ours() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    grpc_inference_pb2.DESCRIPTOR.CopyToProto(proto)
    return proto


def messages(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, list[tuple[Any, ...]]]:
    """Every message, nested ones too, by full name -> its fields as the wire sees them."""
    found: dict[str, list[tuple[Any, ...]]] = {}

    def walk(message: descriptor_pb2.DescriptorProto, prefix: str) -> None:
        name = prefix + message.name
        found[name] = [
            (f.name, f.number, f.type, f.label, f.type_name,
             message.oneof_decl[f.oneof_index].name if f.HasField("oneof_index") else None)
            for f in message.field
        ]
        for nested in message.nested_type:
            walk(nested, name + ".")

    for message in proto.message_type:
        walk(message, "")
    return found


def test_every_message_kept_is_tritons_field_for_field() -> None:
    theirs, mine = messages(triton_descriptor()), messages(ours())
    assert ours().package == triton_descriptor().package == "inference"
    assert set(mine) <= set(theirs), f"not in Triton's proto: {sorted(set(mine) - set(theirs))}"
    for name, fields in mine.items():
        assert fields == theirs[name], name


def test_every_rpc_kept_is_tritons() -> None:
    def rpcs(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, tuple[Any, ...]]:
        (service,) = proto.service
        assert service.name == "GRPCInferenceService"
        return {m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming)
                for m in service.method}

    theirs, mine = rpcs(triton_descriptor()), rpcs(ours())
    assert {name: theirs[name] for name in mine} == mine
    # What tritonclient's basic API calls, and the streaming RPC, are all there.
    assert {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
            "ModelStreamInfer"} <= set(mine)
    assert not ours().dependency  # self-contained: no model_config.proto
