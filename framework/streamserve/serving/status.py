"""The one place where exceptions become gRPC statuses.

Deliberate errors (:mod:`streamserve.errors`) keep their code and message; an
:class:`~streamserve.errors.InvalidArgument` also carries a ``google.rpc.BadRequest`` detail naming
the field, for clients that read rich status. Anything else is a bug: it is logged with its traceback
under a short reference id, and the client gets INTERNAL with that id, never the traceback.
"""

from __future__ import annotations

import logging
import uuid
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from streamserve.errors import InvalidArgument, StreamserveError

__all__ = ["abort"]

log = logging.getLogger("streamserve.errors")


async def abort(context: grpc.aio.ServicerContext, exc: BaseException, *, where: str) -> NoReturn:
    """End the call with the status ``exc`` stands for. Always raises (grpc's AbortError)."""
    if isinstance(exc, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=exc.field, description=exc.reason
        )
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
        status = status_pb2.Status(
            code=code_pb2.INVALID_ARGUMENT, message=f"{where}: {exc}", details=[detail]
        )
        await context.abort_with_status(rpc_status.to_status(status))
    if isinstance(exc, StreamserveError):
        await context.abort(exc.code, f"{where}: {exc}")
    reference = uuid.uuid4().hex[:12]
    log.error("%s: unexpected error (ref %s)", where, reference, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        f"{where}: internal error (ref {reference}); the server log has the details",
    )
    raise AssertionError("unreachable: context.abort raises")
