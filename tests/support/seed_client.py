"""A client generated from the seed proto, run as its own process: ``seed_client.py OUT ADDR N``.

Compiles tests/support/seed_anomaly_detection.proto into OUT with grpc_tools, streams N points
through the generated stub, and prints the replies as JSON lines.
"""

import json
import math
import shutil
import sys
from pathlib import Path

import grpc
from grpc_tools import protoc

out, address, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
proto = Path(__file__).with_name("seed_anomaly_detection.proto")
out.mkdir(parents=True, exist_ok=True)
shutil.copy(proto, out / "anomaly_detection.proto")
assert protoc.main(["protoc", f"-I{out}", f"--python_out={out}", f"--grpc_python_out={out}",
                    str(out / "anomaly_detection.proto")]) == 0
sys.path.insert(0, str(out))
import anomaly_detection_pb2 as pb2  # noqa: E402
import anomaly_detection_pb2_grpc as pb2_grpc  # noqa: E402

points = (pb2.DataPoint(value=math.sin(i / 10), timestamp=1_700_000_000 + i) for i in range(count))
with grpc.insecure_channel(address) as channel:
    stub = pb2_grpc.AnomalyDetectionServiceStub(channel)
    for reply in stub.DetectAnomalyStream(points, timeout=120):
        print(json.dumps({"score": reply.score, "timestamp": reply.timestamp}))
