"""Importing TensorFlow without the lines its native code prints on import.

TensorFlow 2.18+ prints INFO lines ("oneDNN custom operations are on", "Could not find cuda
drivers") and an absl notice ("WARNING: All log messages before absl::InitializeLog() ...") straight
to file descriptor 2 while it is imported, whatever TF_CPP_MIN_LOG_LEVEL says (tensorflow#100442).
In a server log they read as alarms. So, unless the user asked for TensorFlow's log (set
TF_CPP_MIN_LOG_LEVEL below 3), the import runs with fd 2 captured, and everything captured but
those lines is written back afterwards (another thread's log line is delayed, never lost).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
from typing import Any

__all__ = ["import_tensorflow"]

_NOISE = re.compile(r"I\d{4} |WARNING: All log messages before absl::InitializeLog\(\)")
_LOCK = threading.Lock()


def import_tensorflow() -> Any:
    """``import tensorflow`` (quietly, see the module docstring); returns the module."""
    with _LOCK:
        if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
            import tensorflow

            return tensorflow
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                import tensorflow
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                captured.seek(0)
                for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                    if not _NOISE.match(line):
                        sys.stderr.write(line)
                sys.stderr.flush()
        return tensorflow
