"""The MLServer runtime of ``make bench-peer``: a SavedModel's serving signature, as a user writes it.

Copied next to the ``model-settings.json`` the harness writes and loaded by MLServer (in the peer
virtualenv, never in streamserve's); MLServer's adaptive batching (``max_batch_size``,
``max_batch_time`` in the settings) merges concurrent requests before ``predict``. The SavedModel is
called through its restored ``tf.function``, as ``tf.saved_model.load`` gives it: what MLServer's
users do (MLServer ships no TensorFlow runtime of its own).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import tensorflow as tf
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class SavedModelRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        self._loaded: Any = tf.saved_model.load(self.settings.parameters.uri)
        self._serve = self._loaded.signatures["serving_default"]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {tensor.name: tf.constant(NumpyCodec.decode_input(tensor)) for tensor in payload.inputs}
        outputs = self._serve(**inputs)
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,  # the stream path does not echo it by itself; clients match answers by it
            outputs=[NumpyCodec.encode_output(name, value.numpy()) for name, value in outputs.items()],
        )

    async def predict_stream(
        self, payloads: AsyncIterator[InferenceRequest]
    ) -> AsyncIterator[InferenceResponse]:
        """ModelStreamInfer: every request of the stream answered in turn (MLModel's default
        answers the first one only). MLServer does not batch streams."""
        async for payload in payloads:
            yield await self.predict(payload)
