"""streamserve-anomaly: streaming anomaly detection for streamserve.

Serves ``anomaly_detection.AnomalyDetectionService``: each stream is one time series; every point
gets a score in [0, 1] saying how badly the model, looking at the stream's recent window,
failed to predict it. Train a model with ``streamserve-anomaly train --out DIR``; without one the
server builds a default model on first start.
"""

__version__ = "0.1.0"
