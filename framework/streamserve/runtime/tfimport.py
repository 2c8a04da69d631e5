"""Importing TensorFlow without the lines its native code prints on import.

TensorFlow 2.18+ prints INFO lines ("oneDNN custom operations are on", "Could not find cuda
drivers") and an absl notice ("WARNING: All log messages before absl::InitializeLog() ...") straight
to file descriptor 2 while it is imported, whatever TF_CPP_MIN_LOG_LEVEL says (tensorflow#100442).
In a server log they read as alarms. So, unless the user asked for TensorFlow's log (set
TF_CPP_MIN_LOG_LEVEL below 3), the import runs with fd 2 captured, and everything captured but
those lines is written back afterwards (another thread's log line is delayed, never lost: a process
that ends while the import still runs on another thread calls :func:`release_stderr` first).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["import_tensorflow", "release_stderr"]

_NOISE = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog\(\)")
_LOCK = threading.Lock()
_RESTORE = threading.Lock()
_restore: Callable[[], None] | None = None
"""Ends the capture in progress, if any (idempotent)."""


def release_stderr() -> None:
    """Give file descriptor 2 back now, with what was captured so far, if an import holds it."""
    with _RESTORE:
        restore = _restore
    if restore is not None:
        restore()


def import_tensorflow() -> Any:
    """``import tensorflow`` (quietly, see the module docstring); returns the module."""
    global _restore
    with _LOCK:
        if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
            import tensorflow

            return tensorflow
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            done = threading.Event()

            def restore() -> None:
                global _restore
                with _RESTORE:
                    if done.is_set():
                        return
                    done.set()
                    _restore = None
                    sys.stderr.flush()
                    os.dup2(saved, 2)
                    os.close(saved)
                    captured.seek(0)
                    text = captured.read().decode(errors="replace")
                for line in text.splitlines(keepends=True):
                    if not _NOISE.match(line):
                        sys.stderr.write(line)
                sys.stderr.flush()

            os.dup2(captured.fileno(), 2)
            with _RESTORE:
                _restore = restore
            try:
                import tensorflow
            finally:
                restore()
        return tensorflow
