"""When the server can answer: one log line once the models are loaded, and a ready file for tools.

The port opens (and "listening on" is logged) before the models load, which may take seconds; only
then do the services turn SERVING. So after :meth:`Server.load_models` the server logs one line
saying which services are SERVING and which are not (and why), and ``serve --ready-file PATH``
writes one JSON object to PATH, atomically::

    {"ready": true, "address": "127.0.0.1:50051", "health_address": null, "pid": 4242,
     "services": {"anomaly_detection.AnomalyDetectionService": "SERVING"},
     "models": {"anomaly": "SERVING"}, "not_configured": {}}

Tools wait for the file instead of parsing the log (:func:`streamserve.testing.serve_subprocess`).
``serve`` removes the file when it starts and when it begins to stop, so the file exists exactly
while the server answers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from streamserve.runtime.repository import ServedModel
from streamserve.serving.server import Server

__all__ = ["readiness", "ready_line", "write_ready_file"]

SERVING = "SERVING"


def _status(model: ServedModel | None) -> str:
    if model is None or model.batcher is not None:  # a protocol plugin serves once it is up
        return SERVING
    return f"NOT_SERVING ({model.refused or model.load_error or 'loading'})"


def readiness(server: Server) -> dict[str, Any]:
    """What the ready file says: the address, and each service's and model's status."""
    return {
        "ready": True,
        "address": server.address,
        "health_address": server.health_address,
        "pid": os.getpid(),
        "services": {p.service_name: _status(p.model) for p in server.plugins},
        "models": {name: _status(model) for name, model in sorted(server.repository.public.items())},
        "not_configured": dict(server.not_configured),
    }


def ready_line(server: Server) -> str:
    """The one log line after start-up: what answers, what does not and why."""
    ready = readiness(server)
    serving = [name for name, status in ready["services"].items() if status == SERVING]
    parts = [f"ready on {ready['address']}: SERVING {', '.join(serving) or 'nothing'}"]
    parts += [f"{name} is {status}" for name, status in ready["services"].items() if status != SERVING]
    parts += [f"model {name!r} is {status}" for name, status in ready["models"].items()
              if status != SERVING]
    if ready["not_configured"]:
        parts.append(f"installed, not configured: {', '.join(ready['not_configured'])}")
    return "; ".join(parts)


def write_ready_file(path: Path, server: Server) -> None:
    """Write :func:`readiness` to ``path`` as one JSON line; readers never see half a file."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(readiness(server)) + "\n", encoding="utf-8")
    os.replace(partial, path)
