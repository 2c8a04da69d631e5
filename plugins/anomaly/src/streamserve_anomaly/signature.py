"""The SavedModel signature shared by the serving plugin and the trainer, so they cannot disagree.

The model predicts the next normalised value of a series from the normalised window of the
``WINDOW`` values before it, and reports how far the actual value is from that prediction.
"""

from __future__ import annotations

from streamserve import Signature, TensorSpec

__all__ = [
    "ERROR",
    "HISTORY",
    "PREDICTION",
    "SIGNATURE",
    "VALUE",
    "WINDOW",
]

WINDOW = 32
"""How many previous values the model sees. Changing it needs a newly trained model."""

HISTORY = "history"
"""Input: the normalised previous ``WINDOW`` values, oldest first, float32[batch, WINDOW]."""
VALUE = "value"
"""Input: the normalised current value, float32[batch]."""
PREDICTION = "prediction"
"""Output: the predicted normalised current value, float32[batch]."""
ERROR = "error"
"""Output: ``abs(prediction - value)``, float32[batch]; the postprocessor turns it into a score."""

SIGNATURE = Signature(
    inputs=(
        TensorSpec(HISTORY, "float32", (None, WINDOW)),
        TensorSpec(VALUE, "float32", (None,)),
    ),
    outputs=(
        TensorSpec(PREDICTION, "float32", (None,)),
        TensorSpec(ERROR, "float32", (None,)),
    ),
)
"""The ``serving_default`` signature every anomaly model exports and the plugin declares."""
