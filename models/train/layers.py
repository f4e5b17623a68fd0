"""Keras 3 layers (TensorFlow backend) with the block math of transformers' BitNet.

Linear weights are stored as [out, in], the layout of the Hugging Face checkpoint, so export is a copy.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tellme.models.config import ModelConfig

from .quant import act_quant_ste, weight_quant_ste

INIT_STD = 0.02


def _normal() -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(stddev=INIT_STD)


def _matmul_wt(x: tf.Tensor, weight: tf.Tensor) -> tf.Tensor:
    """x [..., in] times weight [out, in] transposed, as one 2-D matmul."""
    rows = tf.reshape(x, [-1, tf.shape(x)[-1]])
    out = tf.matmul(rows, weight, transpose_b=True)
    return tf.reshape(out, tf.concat([tf.shape(x)[:-1], tf.shape(weight)[:1]], axis=0))


class RMSNorm(keras.layers.Layer):
    """x * rsqrt(mean(x^2) + eps), then times a learned per-channel weight (initialised to 1)."""

    def __init__(self, width: int, eps: float, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.eps = eps
        self.weight = self.add_weight(shape=(width,), initializer="ones", name="weight")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        variance = tf.reduce_mean(tf.square(x), axis=-1, keepdims=True)
        return self.weight * (x * tf.math.rsqrt(variance + self.eps))


class Linear(keras.layers.Layer):
    """A bias-free float linear layer y = x W^T (the LM head)."""

    def __init__(self, in_features: int, out_features: int, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.weight = self.add_weight(shape=(out_features, in_features), initializer=_normal(), name="weight")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return _matmul_wt(x, tf.convert_to_tensor(self.weight))


class BitLinear(Linear):
    """BitNet b1.58 linear: int8 per-token activations times absmean-ternary weights (fake-quant, STE)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        weight = weight_quant_ste(tf.convert_to_tensor(self.weight))
        return _matmul_wt(act_quant_ste(x), weight)


def rope_tables(shape: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [max_positions, head_dim] for HF's rotate_half RoPE: emb = cat(freqs, freqs)."""
    d = shape.head_dim
    inv_freq = 1.0 / (shape.rope_theta ** (np.arange(0, d, 2, dtype=np.float32) / np.float32(d)))
    positions = np.arange(shape.max_position_embeddings, dtype=np.float32)
    freqs = np.outer(positions, inv_freq.astype(np.float32)).astype(np.float32)
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)


def apply_rope(x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
    """x * cos + rotate_half(x) * sin, with rotate_half(x) = cat(-x2, x1); x is [B, H, T, D]."""
    x1, x2 = tf.split(x, 2, axis=-1)
    return x * cos + tf.concat([-x2, x1], axis=-1) * sin


class Attention(keras.layers.Layer):
    """Causal grouped-query self-attention with RoPE and BitNet's attn_sub_norm before o_proj."""

    def __init__(self, shape: ModelConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        h, d = shape.hidden_size, shape.head_dim
        self.heads, self.kv_heads, self.head_dim = shape.num_attention_heads, shape.num_key_value_heads, d
        self.q_proj = BitLinear(h, self.heads * d, name="q_proj")
        self.k_proj = BitLinear(h, self.kv_heads * d, name="k_proj")
        self.v_proj = BitLinear(h, self.kv_heads * d, name="v_proj")
        self.o_proj = BitLinear(self.heads * d, h, name="o_proj")
        self.attn_sub_norm = RMSNorm(h, shape.rms_norm_eps, name="attn_sub_norm")

    def _split(self, x: tf.Tensor, heads: int) -> tf.Tensor:
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, [batch, length, heads, self.head_dim]), [0, 2, 1, 3])

    def call(self, x: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
        batch, length = tf.shape(x)[0], tf.shape(x)[1]
        q = apply_rope(self._split(self.q_proj(x), self.heads), cos, sin)
        k = apply_rope(self._split(self.k_proj(x), self.kv_heads), cos, sin)
        v = self._split(self.v_proj(x), self.kv_heads)
        repeat = self.heads // self.kv_heads
        k, v = tf.repeat(k, repeat, axis=1), tf.repeat(v, repeat, axis=1)
        scores = tf.matmul(q, k, transpose_b=True) * (self.head_dim**-0.5)
        causal = tf.linalg.band_part(tf.ones([length, length], dtype=tf.bool), -1, 0)
        scores = tf.where(causal, scores, tf.constant(-1e30, dtype=scores.dtype))
        context = tf.matmul(tf.nn.softmax(scores, axis=-1), v)
        context = tf.reshape(tf.transpose(context, [0, 2, 1, 3]), [batch, length, self.heads * self.head_dim])
        return self.o_proj(self.attn_sub_norm(context))


class MLP(keras.layers.Layer):
    """down_proj(ffn_sub_norm(relu(gate_proj(x))**2 * up_proj(x)))."""

    def __init__(self, shape: ModelConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        h, i = shape.hidden_size, shape.intermediate_size
        self.gate_proj = BitLinear(h, i, name="gate_proj")
        self.up_proj = BitLinear(h, i, name="up_proj")
        self.down_proj = BitLinear(i, h, name="down_proj")
        self.ffn_sub_norm = RMSNorm(i, shape.rms_norm_eps, name="ffn_sub_norm")

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return self.down_proj(self.ffn_sub_norm(tf.square(tf.nn.relu(self.gate_proj(x))) * self.up_proj(x)))


class DecoderBlock(keras.layers.Layer):
    """Pre-norm residual block: h += attn(input_layernorm(h)); h += mlp(post_attention_layernorm(h))."""

    def __init__(self, shape: ModelConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.input_layernorm = RMSNorm(shape.hidden_size, shape.rms_norm_eps, name="input_layernorm")
        self.self_attn = Attention(shape, name="self_attn")
        self.post_attention_layernorm = RMSNorm(
            shape.hidden_size, shape.rms_norm_eps, name="post_attention_layernorm"
        )
        self.mlp = MLP(shape, name="mlp")

    def call(self, h: tf.Tensor, cos: tf.Tensor, sin: tf.Tensor) -> tf.Tensor:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin)
        return h + self.mlp(self.post_attention_layernorm(h))
