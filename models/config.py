"""Model configuration: the shape and semantics of a BitNet b1.58 decoder, read from a Hugging Face
config.json of either family (transformers `bitnet`, or 1bitLLM's llama-typed `bitnet_b1_58`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import UserError

ACTIVATIONS = ("relu2", "silu")
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
PROJECTIONS = ATTENTION_PROJECTIONS + MLP_PROJECTIONS  # the ternary linears of a layer, in image order
LAYER_NORMS = ("input_layernorm", "post_attention_layernorm", "attn_sub_norm", "ffn_sub_norm")
LINEAR_CLASSES = ("bitlinear", "autobitlinear", "latent")  # "latent": 1bitLLM, quantised at load time
DEFAULT_ROPE_THETA = {"bitnet": 500000.0, "llama": 10000.0}


@dataclass(frozen=True)
class ModelConfig:
    """The shape and semantics of a BitNet b1.58 decoder: what the reference model, the accelerator, the
    synthetic checkpoints and the training code all size themselves by. Only the sizes are required;
    num_key_value_heads defaults to MHA and head_dim to hidden_size / num_attention_heads."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int = 0  # 0: as many as num_attention_heads (MHA)
    head_dim: int = 0  # 0: hidden_size // num_attention_heads
    hidden_act: str = "relu2"
    rms_norm_eps: float = 1e-5
    rope_theta: float = DEFAULT_ROPE_THETA["bitnet"]
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int | None = 1
    eos_token_id: int | None = 2
    source_model_type: str = "bitnet"  # "bitnet" or "llama" (1bitLLM)
    linear_class: str = "bitlinear"  # how the checkpoint stores its linears (see LINEAR_CLASSES)

    def __post_init__(self) -> None:
        if not self.num_key_value_heads:
            object.__setattr__(self, "num_key_value_heads", self.num_attention_heads)
        if not self.head_dim and self.num_attention_heads > 0:
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_attention_heads)
        positive = (
            "vocab_size hidden_size intermediate_size num_hidden_layers num_attention_heads "
            "num_key_value_heads head_dim max_position_embeddings"
        )
        for name in positive.split():
            if int(getattr(self, name)) <= 0:
                raise UserError(f"config.json: {name} must be positive, got {getattr(self, name)}")
        if self.hidden_act not in ACTIVATIONS:
            raise UserError(
                f"config.json: hidden_act {self.hidden_act!r} is not supported (use one of {ACTIVATIONS})"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError(
                f"config.json: num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise UserError(f"config.json: head_dim={self.head_dim} must be even for rotary embeddings")
        if self.linear_class not in LINEAR_CLASSES:
            raise UserError(f"unknown linear class {self.linear_class!r}")

    @property
    def q_size(self) -> int:
        return self.num_attention_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        return self.num_key_value_heads * self.head_dim

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(out_features, in_features) of each ternary linear in a decoder layer."""
        h, i = self.hidden_size, self.intermediate_size
        return {
            "q_proj": (self.q_size, h),
            "k_proj": (self.kv_size, h),
            "v_proj": (self.kv_size, h),
            "o_proj": (h, self.q_size),
            "gate_proj": (i, h),
            "up_proj": (i, h),
            "down_proj": (h, i),
        }

    def linear_weights(self) -> int:
        """Ternary weights in one decoder layer."""
        return sum(n * k for n, k in self.linear_shapes().values())

    def parameter_count(self) -> int:
        """Every value: embedding, each layer's linears and norms, the final norm and an untied LM head."""
        h = self.hidden_size
        norms = 2 * h + self.q_size + self.intermediate_size
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.vocab_size * h + self.num_hidden_layers * (self.linear_weights() + norms) + h + head

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - data.keys()
        if missing:
            raise UserError(f"model config lacks {sorted(missing)}: re-run tellme convert")
        return cls(**{k: data[k] for k in names})


def _first_id(value: Any) -> int | None:
    if isinstance(value, list):
        return int(value[0]) if value else None
    return None if value is None else int(value)


def _rope_theta(hf: dict[str, Any], model_type: str) -> float:
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise UserError(f"config.json: rope type {rope_type!r} is not supported (only 'default')")
    return float(params.get("rope_theta") or hf.get("rope_theta") or DEFAULT_ROPE_THETA[model_type])


def _linear_class(hf: dict[str, Any], model_type: str) -> str:
    if model_type == "llama":
        return "latent"
    quant = hf.get("quantization_config")
    if not quant:
        raise UserError(
            "config.json has no quantization_config: a bitnet checkpoint must say its linear_class "
            "(bitlinear or autobitlinear)"
        )
    if quant.get("quant_method", "bitnet") != "bitnet":
        raise UserError(f"config.json: quant_method {quant.get('quant_method')!r} is not 'bitnet'")
    if quant.get("use_rms_norm"):
        raise UserError("config.json: quantization_config.use_rms_norm=true is not supported")
    linear_class = quant.get("linear_class", "bitlinear")
    mode = quant.get("quantization_mode", "offline")
    if linear_class == "bitlinear":
        return "bitlinear"
    if linear_class == "autobitlinear":
        if mode not in ("online", "offline"):
            raise UserError(f"config.json: unknown quantization_mode {mode!r}")
        return "latent" if mode == "online" else "autobitlinear"
    raise UserError(f"config.json: unknown linear_class {linear_class!r} (bitlinear or autobitlinear)")


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """Read a Hugging Face config.json dict. Unknown families are refused, never guessed."""
    model_type = hf.get("model_type")
    if model_type not in ("bitnet", "llama"):
        raise UserError(
            f"config.json: model_type {model_type!r} is not supported "
            "(expected 'bitnet', or 'llama' for 1bitLLM bitnet_b1_58 checkpoints)"
        )
    try:
        hidden = int(hf["hidden_size"])
        heads = int(hf["num_attention_heads"])
        act_default = "relu2" if model_type == "bitnet" else "silu"
        if hf.get("attention_bias"):
            raise UserError("config.json: attention_bias=true is not supported")
        return ModelConfig(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=hidden,
            intermediate_size=int(hf["intermediate_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=heads,
            num_key_value_heads=int(hf.get("num_key_value_heads") or heads),
            head_dim=int(hf.get("head_dim") or hidden // heads),
            hidden_act=str(hf.get("hidden_act", act_default)),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-5 if model_type == "bitnet" else 1e-6)),
            rope_theta=_rope_theta(hf, model_type),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            bos_token_id=_first_id(hf.get("bos_token_id")),
            eos_token_id=_first_id(hf.get("eos_token_id")),
            source_model_type=model_type,
            linear_class=_linear_class(hf, model_type),
        )
    except KeyError as exc:
        raise UserError(f"config.json lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"config.json has a malformed value: {exc}") from None


# Published shapes, for estimates and benches that need no weights (`tellme estimate --shape NAME`).
SHAPES: dict[str, ModelConfig] = {
    # 1bitLLM/bitnet_b1_58-large: llama-typed, MHA, silu, theta 1e4
    "bitnet-0.73b": ModelConfig(
        vocab_size=32002, hidden_size=1536, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        hidden_act="silu", rms_norm_eps=1e-5, rope_theta=DEFAULT_ROPE_THETA["llama"], max_position_embeddings=2048,
        source_model_type="llama", linear_class="latent",
    ),
    # microsoft/bitnet-b1.58-2B-4T: GQA 20/5, relu2, tied embeddings
    "bitnet-2b-4t": ModelConfig(
        vocab_size=128256, hidden_size=2560, intermediate_size=6912, num_hidden_layers=30, num_attention_heads=20,
        num_key_value_heads=5, head_dim=128, hidden_act="relu2", rms_norm_eps=1e-5, rope_theta=500000.0,
        max_position_embeddings=4096, tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001,
    ),
}


def named_shape(name: str) -> ModelConfig:
    if name not in SHAPES:
        raise UserError(f"unknown shape {name!r}: use one of {', '.join(SHAPES)}")
    return SHAPES[name]
