"""Model configuration: the shape and semantics of a BitNet b1.58 decoder, read from a Hugging Face
config.json of either family (transformers `bitnet`, or 1bitLLM's llama-typed `bitnet_b1_58`)."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from .errors import UserError

ACTIVATIONS = ("relu2", "silu")
ATTENTION_PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_PROJECTIONS = ("gate_proj", "up_proj", "down_proj")
PROJECTIONS = ATTENTION_PROJECTIONS + MLP_PROJECTIONS  # the ternary linears of a layer, in image order
LAYER_NORMS = ("input_layernorm", "post_attention_layernorm", "attn_sub_norm", "ffn_sub_norm")
LINEAR_CLASSES = ("bitlinear", "autobitlinear", "latent")  # "latent": 1bitLLM, quantised at load time
SOURCE_MODEL_TYPES = ("bitnet", "llama")
DEFAULT_ROPE_THETA = {"bitnet": 500000.0, "llama": 10000.0}
MAX_POSITIONS = 1 << 20  # a context beyond this is a mistake, not a model (the KV cache would not fit)
# integer fields: inclusive bounds, far beyond any published BitNet, that stop absurd allocations
SIZE_LIMITS = {
    "vocab_size": (1, 1 << 24),
    "hidden_size": (1, 1 << 18),
    "intermediate_size": (1, 1 << 20),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1024),
    "num_key_value_heads": (1, 1024),
    "head_dim": (2, 4096),
    "max_position_embeddings": (1, MAX_POSITIONS),
}
REAL_LIMITS = {"rms_norm_eps": (0.0, 1.0), "rope_theta": (0.0, math.inf)}  # exclusive bounds


class ConfigError(UserError):
    """A model config value of the wrong type or out of range; the message names the field, and the
    caller adds where the config came from."""


def _integer(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    return int(value)


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
        """Every field is checked for type and range, wherever the config comes from (a checkpoint's
        config.json, a model folder's manifest, training options), so that a bad value is one line here
        and never a traceback, a NaN or a huge allocation later. Raises ConfigError."""
        for name, (low, high) in SIZE_LIMITS.items():
            value = _integer(name, getattr(self, name))
            if name == "num_key_value_heads" and value == 0:
                value = self.num_attention_heads  # MHA (checked above)
            if name == "head_dim" and value == 0 and self.num_attention_heads > 0:
                value = self.hidden_size // self.num_attention_heads
            if not low <= value <= high:
                raise ConfigError(f"{name} must lie in [{low}, {high}], got {value}")
            object.__setattr__(self, name, value)
        for name, (low, high) in REAL_LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not low < value < high:
                raise ConfigError(f"{name} must be a number in ({low:g}, {high:g}), got {value!r}")
            object.__setattr__(self, name, float(value))
        for name in ("bos_token_id", "eos_token_id"):
            value = getattr(self, name)
            if value is not None and _integer(name, value) < 0:
                raise ConfigError(f"{name} must be a token id (>= 0) or null, got {value!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ConfigError(f"tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}")
        for name, allowed in (("hidden_act", ACTIVATIONS), ("source_model_type", SOURCE_MODEL_TYPES),
                              ("linear_class", LINEAR_CLASSES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} {getattr(self, name)!r} is not supported (use one of {allowed})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )
        if self.head_dim % 2:
            raise ConfigError(f"head_dim={self.head_dim} must be even for rotary embeddings")

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
    def from_dict(cls, data: Any, where: str = "model config") -> ModelConfig:
        """A config as to_dict wrote it (a model folder's manifest); every field is required and checked."""
        if not isinstance(data, dict):
            raise UserError(f"{where} is not a JSON object: re-run tellme convert")
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - data.keys()
        if missing:
            raise UserError(f"{where} lacks {sorted(missing)}: re-run tellme convert")
        try:
            return cls(**{k: data[k] for k in names})
        except ConfigError as exc:
            raise UserError(f"{where}: {exc}: re-run tellme convert") from None


def _first_id(value: Any) -> Any:
    if isinstance(value, list):
        return value[0] if value else None
    return value


def _hf_integer(value: Any) -> Any:
    """config.json writers sometimes store an integer as 4096.0 or 1e12: take the integer it names (its
    range is ModelConfig's business); anything else goes through for ModelConfig to refuse."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _section(hf: dict[str, Any], key: str) -> dict[str, Any]:
    value = hf.get(key) or {}
    if not isinstance(value, dict):
        raise UserError(f"config.json: {key} must be an object, got {value!r}")
    return value


def _rope_theta(hf: dict[str, Any], model_type: str) -> Any:
    params = _section(hf, "rope_parameters")
    scaling = _section(hf, "rope_scaling")
    rope_type = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise UserError(f"config.json: rope type {rope_type!r} is not supported (only 'default')")
    return params.get("rope_theta") or hf.get("rope_theta") or DEFAULT_ROPE_THETA[model_type]


def _linear_class(hf: dict[str, Any], model_type: str) -> str:
    if model_type == "llama":
        return "latent"
    quant = _section(hf, "quantization_config")
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


def config_from_hf(hf: Any) -> ModelConfig:
    """Read a Hugging Face config.json dict. Unknown families are refused, never guessed; values are not
    coerced (a string where a number belongs is refused by ModelConfig)."""
    if not isinstance(hf, dict):
        raise UserError(f"config.json is a JSON {type(hf).__name__}, not an object: is it a Hugging Face config?")
    model_type = hf.get("model_type")
    if model_type not in SOURCE_MODEL_TYPES:
        raise UserError(
            f"config.json: model_type {model_type!r} is not supported "
            "(expected 'bitnet', or 'llama' for 1bitLLM bitnet_b1_58 checkpoints)"
        )
    if hf.get("attention_bias"):
        raise UserError("config.json: attention_bias=true is not supported")
    required = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
    missing = [key for key in required if key not in hf]
    if missing:
        raise UserError(f"config.json lacks {missing[0]!r}")
    sizes = {key: _hf_integer(hf[key]) for key in required}
    try:
        return ModelConfig(
            **sizes,
            num_key_value_heads=_hf_integer(hf.get("num_key_value_heads") or 0),
            head_dim=_hf_integer(hf.get("head_dim") or 0),
            hidden_act=hf.get("hidden_act", "relu2" if model_type == "bitnet" else "silu"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-5 if model_type == "bitnet" else 1e-6),
            rope_theta=_rope_theta(hf, model_type),
            max_position_embeddings=_hf_integer(hf.get("max_position_embeddings", 2048)),
            tie_word_embeddings=hf.get("tie_word_embeddings", False),
            bos_token_id=_hf_integer(_first_id(hf.get("bos_token_id"))),
            eos_token_id=_hf_integer(_first_id(hf.get("eos_token_id"))),
            source_model_type=model_type,
            linear_class=_linear_class(hf, model_type),
        )
    except ConfigError as exc:
        raise UserError(f"config.json: {exc}") from None


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
