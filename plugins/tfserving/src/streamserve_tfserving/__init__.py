"""streamserve-tfserving: TF Serving's gRPC ``PredictionService`` for streamserve's model repository.

``Predict`` and ``GetModelMetadata`` answer for every model under ``model_repository:``, so clients
written for TensorFlow Serving (``tensorflow_serving.apis``) work unchanged. Importing this package
does not import TensorFlow (see :mod:`streamserve_tfserving.apis`).
"""

__version__ = "0.1.0"
