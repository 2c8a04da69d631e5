from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class DataPoint(_message.Message):
    __slots__ = ("value", "timestamp", "series_id")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    value: float
    timestamp: int
    series_id: str
    def __init__(self, value: _Optional[float] = ..., timestamp: _Optional[int] = ..., series_id: _Optional[str] = ...) -> None: ...

class AnomalyScore(_message.Message):
    __slots__ = ("score", "timestamp", "series_id", "is_anomaly", "model_version")
    SCORE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    IS_ANOMALY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    score: float
    timestamp: int
    series_id: str
    is_anomaly: bool
    model_version: str
    def __init__(self, score: _Optional[float] = ..., timestamp: _Optional[int] = ..., series_id: _Optional[str] = ..., is_anomaly: _Optional[bool] = ..., model_version: _Optional[str] = ...) -> None: ...

class DataChunk(_message.Message):
    __slots__ = ("series_id", "values", "timestamps")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    series_id: str
    values: _containers.RepeatedScalarFieldContainer[float]
    timestamps: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, series_id: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ..., timestamps: _Optional[_Iterable[int]] = ...) -> None: ...

class ScoreChunk(_message.Message):
    __slots__ = ("series_id", "scores", "timestamps", "is_anomaly", "model_version")
    SERIES_ID_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    IS_ANOMALY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    series_id: str
    scores: _containers.RepeatedScalarFieldContainer[float]
    timestamps: _containers.RepeatedScalarFieldContainer[int]
    is_anomaly: _containers.RepeatedScalarFieldContainer[bool]
    model_version: str
    def __init__(self, series_id: _Optional[str] = ..., scores: _Optional[_Iterable[float]] = ..., timestamps: _Optional[_Iterable[int]] = ..., is_anomaly: _Optional[_Iterable[bool]] = ..., model_version: _Optional[str] = ...) -> None: ...
