"""Property-based: whatever sequence of messages a client sends, the server answers with a defined
status, never crashes, and keeps serving. Against a real `streamserve serve` process."""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamserve.testing import ServerProcess
from streamserve_anomaly._proto import anomaly_detection_pb2 as anomaly_pb2

pytestmark = pytest.mark.e2e

floats = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from([0.0, -0.0, 3.4e38, -3.4e38, 1e-45, math.nan, math.inf, -math.inf]),
)
timestamps = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 2**63 - 1, -(2**63)]),
)
points = st.lists(st.tuples(floats, timestamps), max_size=80)
PROFILE = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def channel(server_process: ServerProcess) -> Any:
    with grpc.insecure_channel(server_process.address) as open_channel:
        yield open_channel


def still_serving(channel: grpc.Channel) -> None:
    reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@PROFILE
@given(points)
def test_anomaly_stream_of_anything_gets_a_defined_answer(channel: grpc.Channel, sent: list[Any]) -> None:
    detect = channel.stream_stream(
        "/anomaly_detection.AnomalyDetectionService/DetectAnomalyStream",
        request_serializer=anomaly_pb2.DataPoint.SerializeToString,
        response_deserializer=anomaly_pb2.AnomalyScore.FromString,
    )
    requests = [anomaly_pb2.DataPoint(value=v, timestamp=t) for v, t in sent]
    first_bad = next((i for i, (v, _) in enumerate(sent) if not math.isfinite(v)), None)
    answered = []
    try:
        for reply in detect(iter(requests), timeout=30):
            answered.append(reply)
        status = grpc.StatusCode.OK
    except grpc.RpcError as error:
        status = error.code()
        assert first_bad is not None, f"unexpected {status}: {error.details()}"
        assert status == grpc.StatusCode.INVALID_ARGUMENT
        assert f"message {first_bad}" in error.details() and "value" in error.details()
    expected = len(sent) if first_bad is None else first_bad
    assert status == (grpc.StatusCode.OK if first_bad is None else grpc.StatusCode.INVALID_ARGUMENT)
    # Every point before the first bad one is answered, in order, with its own timestamp.
    assert [r.timestamp for r in answered] == [t for _, t in sent[:expected]]
    assert all(0.0 <= r.score <= 1.0 for r in answered)
    still_serving(channel)


@PROFILE
@given(st.lists(st.lists(floats, max_size=20), max_size=20))
def test_scaler_stream_of_anything_gets_a_defined_answer(
    channel: grpc.Channel, scaler_plugin: ModuleType, sent: list[list[float]]
) -> None:
    pb2 = scaler_plugin.scaler_pb2
    scale = channel.stream_stream(
        "/streamserve_test.Scaler/ScaleStream",
        request_serializer=pb2.Values.SerializeToString,
        response_deserializer=pb2.Values.FromString,
    )
    first_bad = next((i for i, values in enumerate(sent) if not all(map(math.isfinite, values))), None)
    answered = []
    try:
        for reply in scale(iter(pb2.Values(values=v) for v in sent), timeout=30):
            answered.append(list(reply.values))
        assert first_bad is None
    except grpc.RpcError as error:
        assert first_bad is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, error
    expected = len(sent) if first_bad is None else first_bad
    assert len(answered) == expected
    assert [len(a) for a in answered] == [len(v) for v in sent[:expected]]
    still_serving(channel)
