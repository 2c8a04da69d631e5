"""Serving plugins over gRPC: handlers built from descriptors, the aio server, health, reflection."""

from streamserve.serving.plugin import ServedPlugin
from streamserve.serving.server import Server

__all__ = ["ServedPlugin", "Server"]
