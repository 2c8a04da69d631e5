"""Client helpers: a bidirectional stream that survives a server going away.

Long-lived streams outlive servers: a replica is drained for a rollout or scaled in, or the server
ends connections on purpose (``server.max_connection_age_*``) so that load balancers can move
clients. The stream then ends with UNAVAILABLE, and the client has to open a new one, on the same
channel (which, with ``round_robin`` or a Kubernetes Service, reaches another replica) and go on
where it left off. :func:`resilient_stream` does that for any one-response-per-request method, such
as ``AnomalyDetectionService.DetectAnomalyStream``::

    with grpc.insecure_channel(target, options=[("grpc.service_config", ROUND_ROBIN)]) as channel:
        stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
        for score in resilient_stream(stub.DetectAnomalyStream, points, replay=64):
            ...

Which requests are re-sent: a request counts as done once its response has arrived. Everything the
dead stream had taken from ``requests`` without answering is sent again first, in order, then the
stream goes on with the rest; so every request is answered once, in order, though a request whose
answer was lost in flight is processed twice (at-least-once). Server-side per-stream state does not
move with the client: the new stream starts afresh unless ``replay`` re-sends recent answered
requests to rebuild it (their responses are dropped).

This is the blocking (``grpc.insecure_channel``) API: grpc's asyncio client may report a stream the
server ends while the client is still writing as INTERNAL instead of the server's status
(grpc/grpc#36066), which would hide the UNAVAILABLE this helper retries on.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from typing import Generic, TypeVar

import grpc

__all__ = ["ROUND_ROBIN", "resilient_stream"]

log = logging.getLogger(__name__)

Request = TypeVar("Request")
Response = TypeVar("Response")

ROUND_ROBIN = '{"loadBalancingConfig": [{"round_robin": {}}]}'
"""A gRPC service config (channel option ``grpc.service_config``) that spreads calls over every
address the target resolves to: a ``dns:///`` name of a headless Kubernetes Service (one address
per ready pod) or an ``ipv4:HOST:PORT,HOST:PORT`` list. gRPC's default, ``pick_first``, would send
every stream of the channel to one address."""


class _Outbox(Generic[Request]):
    """The requests taken from the source, numbered; the unanswered ones are kept for re-sending.

    grpc reads each attempt's request iterator in its own thread, and a dead attempt's thread may
    still be inside ``next(source)``: ``_pull`` serialises the source, ``_state`` guards the rest
    (held briefly, so responses are never delayed by a slow source).
    """

    def __init__(self, requests: Iterable[Request], replay: int) -> None:
        self._source = iter(requests)
        self._exhausted = False
        self._pull = threading.Lock()
        self._state = threading.Lock()
        self._pending: collections.deque[Request] = collections.deque()  # taken, not answered
        self._answered_recently: collections.deque[Request] = collections.deque(maxlen=replay)
        self.answered = 0  # requests answered so far: the number of the first pending one
        self.taken = 0  # requests taken from the source so far
        self.attempt = 0

    def begin_attempt(self) -> tuple[int, list[Request]]:
        """A new attempt's number, and the answered requests it should replay first."""
        with self._state:
            self.attempt += 1
            return self.attempt, list(self._answered_recently)

    def end_attempts(self) -> None:
        """Makes every attempt's iterator stop taking requests."""
        with self._state:
            self.attempt += 1

    def answer(self) -> None:
        """The oldest pending request got its response."""
        with self._state:
            if not self._pending:
                raise RuntimeError("the server sent more responses than it was sent requests; "
                                   "resilient_stream needs one response per request")
            self._answered_recently.append(self._pending.popleft())
            self.answered += 1

    def unanswered(self) -> int:
        with self._state:
            return self.taken - self.answered

    def requests(self, attempt: int, replay: list[Request]) -> Iterator[Request]:
        """What attempt ``attempt`` sends: ``replay``, the pending requests, then new ones."""
        yield from replay
        cursor = -1
        while True:
            with self._state:
                if self.attempt != attempt:
                    return
                cursor = max(cursor, self.answered)
                if cursor < self.taken:
                    request = self._pending[cursor - self.answered]
                    cursor += 1
                    resend = True
                else:
                    resend = False
            if not resend:
                with self._pull:
                    with self._state:
                        if self.attempt != attempt or self._exhausted:
                            return
                        if cursor < self.taken:  # another attempt's thread took one meanwhile
                            continue
                    try:
                        request = next(self._source)
                    except StopIteration:
                        with self._state:
                            self._exhausted = True
                        return
                    with self._state:
                        self._pending.append(request)
                        self.taken += 1
                        cursor += 1
            yield request


def resilient_stream(
    open_call: Callable[[Iterator[Request]], Iterator[Response]],
    requests: Iterable[Request],
    *,
    replay: int = 0,
    max_attempts: int = 5,
    initial_backoff: float = 0.1,
    max_backoff: float = 2.0,
    retry_codes: Collection[grpc.StatusCode] = (grpc.StatusCode.UNAVAILABLE,),
    on_retry: Callable[[grpc.RpcError, int], None] | None = None,
) -> Iterator[Response]:
    """Yield one response per request, in order, re-opening the stream when it fails with a
    ``retry_codes`` status.

    :param open_call: opens the stream, given a request iterator: a bidirectional stub method such
        as ``stub.DetectAnomalyStream`` (wrap it in a lambda to pass a timeout or metadata).
    :param requests: the requests; read lazily, at the pace the calls take them.
    :param replay: re-send up to this many of the last answered requests at the start of a new
        stream and drop their responses, to rebuild per-stream server state (for the anomaly
        detector: its window and warm-up; 0 starts the new stream afresh).
    :param max_attempts: give up (raise the last error) after this many attempts in a row that got
        no response; an attempt that got one resets the count, so a stream that is moved now and
        then (max_connection_age, rollouts) goes on, while a dead service fails in bounded time.
    :param initial_backoff: seconds before the first re-open; doubles per failed attempt in a row,
        up to ``max_backoff``, with jitter so that many clients do not come back in step.
    :param on_retry: called with the error and the number of the failed attempt in a row before
        each re-open (for logs and metrics).
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    outbox = _Outbox(requests, replay)
    failures = 0
    call: Iterator[Response] | None = None
    try:
        while True:
            attempt, replayed = outbox.begin_attempt()
            call = open_call(outbox.requests(attempt, replayed))
            to_drop = len(replayed)
            try:
                for response in call:
                    if to_drop:
                        to_drop -= 1
                        continue
                    outbox.answer()
                    failures = 0
                    yield response
            except grpc.RpcError as error:
                if error.code() not in retry_codes:
                    raise
                failures += 1
                if failures >= max_attempts:
                    raise
                if on_retry is not None:
                    on_retry(error, failures)
                log.info("stream ended with %s after %d answered requests; re-opening it "
                         "(attempt %d in a row)", error.code().name, outbox.answered, failures)
                outbox.end_attempts()
                _cancel(call)
                backoff = min(max_backoff, initial_backoff * 2 ** (failures - 1))
                time.sleep(backoff * random.uniform(0.5, 1.0))
                continue
            if outbox.unanswered():
                raise RuntimeError(
                    f"the stream ended OK with {outbox.unanswered()} requests unanswered; "
                    "resilient_stream needs one response per request"
                )
            call = None
            return
    finally:  # also when the caller stops reading early: stop taking requests, end the call
        outbox.end_attempts()
        if call is not None:
            _cancel(call)


def _cancel(call: object) -> None:
    cancel = getattr(call, "cancel", None)
    if callable(cancel):
        cancel()
