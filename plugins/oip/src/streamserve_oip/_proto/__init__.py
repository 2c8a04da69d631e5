"""Modules generated from ``protos/grpc_inference.proto`` by ``protos/generate.py``.

Do not edit the ``*_pb2*`` files here: change the .proto and run ``python protos/generate.py``; the
test suite runs ``--check`` and fails when they drift.
"""
