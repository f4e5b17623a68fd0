"""Keras 3 layer handlers: the training layers (tellme.models.train.layers) as hls4ml layer dicts.

A handler reads the Keras layer's weights through the layer's own quantiser, so the ternary matrix and
its scale are the numbers the Keras forward pass uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from hls4ml.converters.keras_v3._base import KerasV3LayerHandler, registry

KERAS_MODULE = "tellme.models.train.layers"


def _static_shape(layer: Any, tensor: Any) -> list[int]:
    shape = list(tensor.shape[1:])
    if not shape or any(d is None for d in shape):
        raise ValueError(f"layer {layer.name}: hls4ml needs a fixed input shape, got {tuple(tensor.shape)}")
    return [int(d) for d in shape]


class BitLinearHandler(KerasV3LayerHandler):
    """tellme.models.train.layers.BitLinear -> BitLinear (ternary weights [out, in] and s_w)."""

    def handle(self, layer: Any, in_tensors: Sequence[Any], out_tensors: Sequence[Any]) -> dict[str, Any]:
        from tellme.models.train.quant import ternary_weights

        shape = _static_shape(layer, in_tensors[0])
        ternary, scale = ternary_weights(layer.weight)
        wq = np.asarray(ternary, dtype=np.float32).astype(np.int8)
        if wq.shape[1] != shape[-1]:
            raise ValueError(f"layer {layer.name}: weight {wq.shape} does not take {shape[-1]} inputs")
        return {"class_name": "BitLinear", "n_in": shape[-1], "n_out": wq.shape[0], "ternary_data": wq,
                "weight_scale": float(np.float32(scale))}


class RMSNormHandler(KerasV3LayerHandler):
    """tellme.models.train.layers.RMSNorm -> RMSNorm (float32 weight, eps)."""

    def handle(self, layer: Any, in_tensors: Sequence[Any], out_tensors: Sequence[Any]) -> dict[str, Any]:
        shape = _static_shape(layer, in_tensors[0])
        weight = np.asarray(layer.weight.numpy(), dtype=np.float32)
        return {"class_name": "RMSNorm", "n_in": shape[-1], "weight_data": weight,
                "epsilon": float(np.float32(layer.eps))}


HANDLERS = {f"{KERAS_MODULE}.BitLinear": BitLinearHandler, f"{KERAS_MODULE}.RMSNorm": RMSNormHandler}


def register_handlers() -> None:
    """Add the handlers to hls4ml's Keras 3 registry (keyed by the layer's module and class name)."""
    for key, handler in HANDLERS.items():
        registry[key] = handler()
