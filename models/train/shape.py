"""The shape of a BitNet decoder: the numbers that config.json records and the layers are built from."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelShape:
    """Hyper-parameters of a BitNet b1.58 decoder (transformers' BitNetConfig names, relu2 MLP)."""

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 6
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 256
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError("hidden_size must be a multiple of num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads")
        if self.head_dim % 2:
            raise ValueError("head_dim must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        """Width of one attention head (attn_sub_norm needs heads * head_dim == hidden_size)."""
        return self.hidden_size // self.num_attention_heads

    def parameter_count(self) -> int:
        """Number of trainable values: embedding, every block, final norm and the untied LM head."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        attention = 2 * h * h + 2 * h * kv + h
        mlp = 3 * h * i + i
        norms = 2 * h
        return 2 * self.vocab_size * h + self.num_hidden_layers * (attention + mlp + norms) + h

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (for summaries)."""
        return asdict(self)
