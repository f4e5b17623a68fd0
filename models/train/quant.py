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


def ternary_weights(w: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-tensor absmean ternary: (clamp(round(W*s), -1, 1), s) with s = 1/mean|W| (floor 1e-5).

    The one place the training layers' weight quantiser is written, so whatever reads a trained
    BitLinear's ternary weights (the hls4ml plugin) gets the numbers its forward pass uses."""
    scale = 1.0 / tf.maximum(tf.reduce_mean(tf.abs(w)), SCALE_FLOOR)
    return tf.clip_by_value(tf.round(w * scale), -1.0, 1.0), scale


@tf.custom_gradient
def weight_quant_ste(w: tf.Tensor) -> tuple[tf.Tensor, object]:
    """Per-tensor absmean ternary, dequantised: ternary_weights' clamp(round(W*s), -1, 1) / s."""
    ternary, scale = ternary_weights(w)
    quantised = ternary / scale

    def grad(upstream: tf.Tensor) -> tf.Tensor:
        return upstream

    return quantised, grad
