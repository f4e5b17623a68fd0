"""Fake quantisers with straight-through gradients, rounding as transformers' BitNet does (float32).

The forward pass returns exactly the dequantised values transformers computes (no `x + (q - x)`
round-off); the backward pass hands the incoming gradient through unchanged.
"""

from __future__ import annotations

import tensorflow as tf

SCALE_FLOOR = 1e-5


@tf.custom_gradient
def act_quant_ste(x: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Per-token absmax int8: s = 127/max|x| (floor 1e-5), clamp(round_half_even(x*s), -128, 127) / s."""
    scale = 127.0 / tf.maximum(tf.reduce_max(tf.abs(x), axis=-1, keepdims=True), SCALE_FLOOR)
    quantised = tf.clip_by_value(tf.round(x * scale), -128.0, 127.0) / scale

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return upstream

    return quantised, grad


@tf.custom_gradient
def weight_quant_ste(w: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Per-tensor absmean ternary: s = 1/mean|W| (floor 1e-5), clamp(round(W*s), -1, 1) / s."""
    scale = 1.0 / tf.maximum(tf.reduce_mean(tf.abs(w)), SCALE_FLOOR)
    quantised = tf.clip_by_value(tf.round(w * scale), -1.0, 1.0) / scale

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return upstream

    return quantised, grad
