"""Every error streamserve raises on purpose, each knowing the gRPC status it maps to.

    StreamserveError                  (INTERNAL)
    ├── ConfigError                   a bad YAML file: names the file and the key path
    ├── PluginError                   a plugin that cannot be used: names the plugin and its package
    │   └── SignatureMismatch         the model's signature_def is not what the plugin declared
    ├── ModelLoadError                a model directory that cannot be loaded
    ├── InvalidArgument               (INVALID_ARGUMENT) bad request content: names the field
    ├── Unavailable                   (UNAVAILABLE) the model is not ready, or the server is draining
    ├── NotFound                      (NOT_FOUND) an unknown model or model version
    ├── Unimplemented                 (UNIMPLEMENTED) a method the plugin does not serve
    ├── ResourceExhausted             (RESOURCE_EXHAUSTED) a limit was reached
    ├── DeadlineExceeded              (DEADLINE_EXCEEDED) a stream was idle for too long
    └── Cancelled                     (CANCELLED) the client went away: sending to it failed

Start-up errors (config, plugin, model) end the process with one clear message. Request errors end
only their own call: :mod:`streamserve.serving.status` turns them into a gRPC status.
"""

from __future__ import annotations

import grpc

__all__ = [
    "Cancelled",
    "ConfigError",
    "DeadlineExceeded",
    "InvalidArgument",
    "ModelLoadError",
    "NotFound",
    "PluginError",
    "ResourceExhausted",
    "SignatureMismatch",
    "StreamserveError",
    "Unavailable",
    "Unimplemented",
]


class StreamserveError(Exception):
    """Base of every deliberate streamserve error."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ConfigError(StreamserveError):
    """The configuration file is missing, not YAML, or does not validate."""


class PluginError(StreamserveError):
    """A plugin failed to load, register or validate."""

    def __init__(self, message: str, *, plugin: str, distribution: str | None = None) -> None:
        where = f"plugin {plugin!r}"
        if distribution:
            where += f" (from package {distribution})"
        super().__init__(f"{where}: {message}")
        self.plugin = plugin
        self.distribution = distribution


class SignatureMismatch(PluginError):
    """The plugin's declared signature does not match the SavedModel's."""


class ModelLoadError(StreamserveError):
    """A model directory is missing, corrupt or not a SavedModel."""


class InvalidArgument(StreamserveError):
    """A request field has a value the plugin cannot use."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Unavailable(StreamserveError):
    """The service cannot answer now; the client should retry later or elsewhere."""

    code = grpc.StatusCode.UNAVAILABLE


class NotFound(StreamserveError):
    """The request names a model (or model version) that the server does not serve."""

    code = grpc.StatusCode.NOT_FOUND


class Unimplemented(StreamserveError):
    """The plugin's service has this method, but the plugin does not serve it."""

    code = grpc.StatusCode.UNIMPLEMENTED


class ResourceExhausted(StreamserveError):
    """A configured limit was reached."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class DeadlineExceeded(StreamserveError):
    """A time limit of the server ran out (for example the per-stream idle timeout)."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(StreamserveError):
    """The call is gone on the client's side (cancelled, disconnected): nothing can be sent to it."""

    code = grpc.StatusCode.CANCELLED
