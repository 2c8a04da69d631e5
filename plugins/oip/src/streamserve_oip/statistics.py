"""Triton's ``ModelStatistics``: what the core counted for each model, in Triton's messages.

Read from the repository's :class:`~streamserve.Models` view, so it runs no model and needs no model
to be ready. The core counts per model call (a batch, from one or many requests), not per request:
``inference_count`` (rows), ``execution_count`` (model calls), ``last_inference``, and the time of
the model calls as ``compute_infer``, overall and by batch size. Triton's per-request figures
(``success``, ``fail``, ``queue``), the input and output preparation, the cache and the memory usage
are not measured: they stay zero (docs/oip.md).
"""

from __future__ import annotations

from typing import Any

from streamserve import Models, NotFound, Outputs
from streamserve_oip._proto import grpc_inference_pb2 as pb2

__all__ = ["model_statistics"]


def model_statistics(outputs: Outputs, request: Any, models: Models) -> Any:
    """The statistics of the model named (NOT_FOUND for an unknown model or a version other than the
    one served), or of every model of the repository when no name is given (Triton's behaviour; the
    version is then ignored). Each reports the version served now, counting every version it served."""
    response = pb2.ModelStatisticsResponse()
    if request.name:
        response.model_stats.append(_model(models, request.name, request.version))
        return response
    for name in models.names():
        try:
            response.model_stats.append(_model(models, name))
        except NotFound:  # gone between the two calls
            continue
    return response


def _model(models: Models, name: str, version: str = "") -> Any:
    info = models.get(name, version)
    counted = models.statistics(name, version)
    found = pb2.ModelStatistics(
        name=name,
        version=info.version,
        last_inference=counted.last_call_ms,
        inference_count=counted.rows,
        execution_count=counted.calls,
    )
    found.inference_stats.compute_infer.CopyFrom(pb2.StatisticDuration(count=counted.calls,
                                                                       ns=counted.call_ns))
    for size, (calls, ns) in counted.batches.items():
        found.batch_stats.add(batch_size=size,
                              compute_infer=pb2.StatisticDuration(count=calls, ns=ns))
    return found
