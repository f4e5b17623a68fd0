"""The BitNet causal language model as a Keras 3 model, and its loss."""

from __future__ import annotations

import keras
import tensorflow as tf

from tellme.models.config import ModelConfig

from .layers import INIT_STD, DecoderBlock, Linear, RMSNorm, rope_tables
from .shape import check_trainable


class BitNetLM(keras.Model):
    """Float embedding, BitNet decoder blocks, final RMSNorm and an untied float LM head."""

    def __init__(self, shape: ModelConfig, **kwargs: object) -> None:
        super().__init__(**kwargs)
        check_trainable(shape)
        self.model_shape = shape
        self.embed_tokens = keras.layers.Embedding(
            shape.vocab_size,
            shape.hidden_size,
            embeddings_initializer=keras.initializers.RandomNormal(stddev=INIT_STD),
            name="embed_tokens",
        )
        self.blocks = [DecoderBlock(shape, name=f"layers_{i}") for i in range(shape.num_hidden_layers)]
        self.norm = RMSNorm(shape.hidden_size, shape.rms_norm_eps, name="norm")
        self.lm_head = Linear(shape.hidden_size, shape.vocab_size, name="lm_head")
        cos, sin = rope_tables(shape)
        self._cos, self._sin = tf.constant(cos), tf.constant(sin)
        self(tf.zeros([1, 1], dtype=tf.int32))

    def call(self, tokens: tf.Tensor) -> tf.Tensor:
        """Logits [B, T, vocab] for token ids [B, T] at positions 0..T-1."""
        length = tf.shape(tokens)[1]
        cos, sin = self._cos[:length], self._sin[:length]
        h = self.embed_tokens(tokens)
        for block in self.blocks:
            h = block(h, cos, sin)
        return self.lm_head(self.norm(h))


def lm_loss(logits: tf.Tensor, targets: tf.Tensor) -> tf.Tensor:
    """Mean next-token cross-entropy (nats) of logits [B, T, V] against target ids [B, T]."""
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    return tf.reduce_mean(losses)
