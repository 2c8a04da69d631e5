"""streamserve-oip: the Open Inference Protocol v2 (KServe, Triton, MLServer clients) over gRPC,
serving every model of streamserve's model repository. See docs/oip.md."""
