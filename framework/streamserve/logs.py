"""Logging set-up for the server: text for people, one JSON object per line for collectors.

Lifecycle lines (a stream opened or closed, a model loaded or rejected) carry structured fields
(``stream_id``, ``plugin``, ``method``, ``status``, ...) through ``extra=``; the JSON format emits
them as keys. Nothing is logged per message.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

__all__ = ["configure_logging"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str, format: Literal["text", "json"] = "text") -> None:
    """Send the process's logs to stderr at ``level``, as text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if format == "json":
        handler.setFormatter(JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        ))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # TensorFlow's Python side logs INFO chatter when a plugin builds a model ("Assets written
    # to ..."); its warnings stay, and DEBUG shows everything.
    for chatty in ("tensorflow", "absl"):
        logging.getLogger(chatty).setLevel(level if level == "DEBUG" else max(
            logging.getLevelName(level), logging.WARNING))
