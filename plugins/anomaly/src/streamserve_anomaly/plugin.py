"""The ``anomaly`` plugin: what the streamserve core needs to serve ``AnomalyDetectionService``.

Found through the entry point ``anomaly = "streamserve_anomaly.plugin"`` of the group
``streamserve.plugins``. Importing this module is cheap (no TensorFlow): the core imports every
plugin just to list them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import streamserve
from streamserve_anomaly import detector
from streamserve_anomaly._proto import anomaly_detection_pb2
from streamserve_anomaly.settings import AnomalySettings
from streamserve_anomaly.signature import SIGNATURE, WINDOW

__all__ = ["DEFAULT_MODEL_VERSION", "SPEC", "default_model_dir", "streamserve_register"]

log = logging.getLogger(__name__)

DEFAULT_MODEL_VERSION = 1


def streamserve_home() -> Path:
    """Where streamserve keeps its files: ``$STREAMSERVE_HOME``, else ``~/.cache/streamserve``."""
    home = os.environ.get("STREAMSERVE_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "streamserve"


def default_model_dir() -> Path:
    """The model served when the config names none, trained on first use so the server runs as is.

    Returns ``$STREAMSERVE_HOME/models/anomaly/1``. The first call trains it on synthetic data with
    seed 0 (a few seconds); later calls, and other processes, find it there.
    """
    path = streamserve_home() / "models" / "anomaly" / str(DEFAULT_MODEL_VERSION)
    if (path / "saved_model.pb").is_file():
        return path
    from streamserve_anomaly.training import train  # imports TensorFlow only when needed

    log.info("building the default anomaly model (synthetic data, seed 0) in %s", path)
    try:
        return train(path, seed=0)
    except OSError:
        # Another process built it between our check and our rename: theirs is as good as ours.
        if (path / "saved_model.pb").is_file():
            return path
        raise


def open_state(context: streamserve.Context) -> detector.StreamState:
    """A call's state: its series, scored with the plugin's settings."""
    return detector.open_state(context.settings)


SPEC = streamserve.PluginSpec(
    name="anomaly",
    service=anomaly_detection_pb2.DESCRIPTOR.services_by_name["AnomalyDetectionService"],
    methods={
        "DetectAnomalyStream": streamserve.Method(
            preprocess=detector.preprocess_point,
            postprocess=detector.postprocess_point,
            open_state=open_state,
        ),
        "DetectAnomalyChunks": streamserve.Method(
            preprocess=detector.preprocess_chunk,
            postprocess=detector.postprocess_chunk,
            open_state=open_state,
        ),
    },
    signature=SIGNATURE,
    settings=AnomalySettings,
    default_model=default_model_dir,
    extra={
        "window": WINDOW,
        "description": "scores each point of a series against the series' recent window",
    },
)
"""The one servable this plugin provides."""


@streamserve.hookimpl
def streamserve_register(register: Callable[[streamserve.PluginSpec], None]) -> None:
    """Hand the core :data:`SPEC`."""
    register(SPEC)
