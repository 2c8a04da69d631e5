"""The benchmark harness: streamserve against an echo ceiling and the naive per-message design.

``make bench`` (or ``python -m benchmarks``) starts three servers as separate processes on
127.0.0.1, drives each with the same multi-process grpc.aio load generator, and writes a markdown
table and a JSON file into ``benchmarks/results/``. See docs/performance.md.
"""
