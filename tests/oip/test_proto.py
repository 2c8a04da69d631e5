"""protos/grpc_inference.proto speaks Triton's wire format: every message and RPC it keeps has the
names, numbers and types of Triton's grpc_service.proto, and every part of Triton's
model_config.proto it keeps (for ModelConfig) has them too, as tritonclient ships them.

tritonclient's modules are read as text, never imported (their messages would clash with ours in
protobuf's default pool): the serialized FileDescriptorProto each embeds is decoded here.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2

from streamserve_oip._proto import grpc_inference_pb2


def triton_descriptor(module: str = "service_pb2") -> descriptor_pb2.FileDescriptorProto:
    """The descriptor of one of tritonclient's generated modules: ``service_pb2`` (Triton's
    grpc_service.proto) or ``model_config_pb2`` (its model_config.proto)."""
    spec = importlib.util.find_spec("tritonclient")  # the package's __init__ only: it is empty
    assert spec is not None and spec.submodule_search_locations
    source = (Path(spec.submodule_search_locations[0]) / "grpc" / f"{module}.py").read_text()
    match = re.search(r"AddSerializedFile\((b'.*?')\)", source, re.DOTALL)
    assert match, f"tritonclient's {module}.py no longer embeds its descriptor as expected"
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


def enums(proto: descriptor_pb2.FileDescriptorProto) -> dict[str, list[tuple[str, int]]]:
    """Every top-level enum by name -> its values (nested enums: none is kept)."""
    return {enum.name: [(v.name, v.number) for v in enum.value] for enum in proto.enum_type}


def test_every_message_kept_is_tritons_field_for_field() -> None:
    service, mine = messages(triton_descriptor()), messages(ours())
    config = messages(triton_descriptor("model_config_pb2"))
    assert ours().package == triton_descriptor().package == triton_descriptor("model_config_pb2").package
    assert not set(service) & set(config)  # one package: a name says which file it comes from
    unknown = set(mine) - set(service) - set(config)
    assert not unknown, f"not in Triton's protos: {sorted(unknown)}"
    for name, fields in mine.items():
        if name in service:
            assert fields == service[name], name
        else:  # model configuration: only what a SavedModel can tell, each field as Triton has it
            assert set(fields) <= set(config[name]), name
    assert {"ModelConfig", "ModelInput", "ModelOutput", "ModelVersionPolicy"} <= set(mine)
    # ModelStatistics' messages, every field of them (the ones never filled too).
    assert {"ModelStatisticsRequest", "ModelStatisticsResponse", "ModelStatistics", "InferStatistics",
            "InferBatchStatistics", "StatisticDuration", "MemoryUsage"} <= set(mine) & set(service)


def test_every_enum_kept_is_tritons_value_for_value() -> None:
    theirs, mine = enums(triton_descriptor("model_config_pb2")), enums(ours())
    assert mine == {"DataType": theirs["DataType"]}


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
            "ModelStreamInfer", "ModelConfig", "ModelStatistics"} <= set(mine)
    assert not ours().dependency  # self-contained: the model_config.proto parts are copied in
