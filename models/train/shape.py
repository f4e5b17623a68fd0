"""The shape the training command uses unless told otherwise (the bundled model's; see its MODEL_CARD.md).
Shapes are tellme.models.config.ModelConfig, the one model-shape type of the project."""

from __future__ import annotations

from tellme.models.config import ModelConfig

DEFAULT_SHAPE = ModelConfig(
    vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=6, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, rope_theta=10000.0,
)


def check_trainable(shape: ModelConfig) -> None:
    """The Keras layers keep attn_sub_norm as wide as the hidden state, as transformers' BitNet does."""
    if shape.num_attention_heads * shape.head_dim != shape.hidden_size:
        raise ValueError("training needs num_attention_heads * head_dim == hidden_size")
