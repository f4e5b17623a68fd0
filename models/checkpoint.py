"""Hugging Face BitNet checkpoint ingestion: config.json + safetensors -> ternary weights in memory.

Each linear becomes (Wq int8 ternary [out, in], s_w float32) with y = (xq @ Wq^T) / (s_x * s_w).
How s_w is obtained depends on the checkpoint's linear class, and we always branch on it:
  bitlinear      packed 2-bit weights, weight_scale is the divisor s_w
  autobitlinear  (offline) packed or unpacked ternary weights, weight_scale multiplies: s_w = 1/scale
  latent         float weights quantised here with absmean (online autobitlinear, 1bitLLM)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import ATTENTION_PROJECTIONS, MLP_PROJECTIONS, ModelConfig, config_from_hf
from .errors import UserError
from .packing import HF_VALUES_PER_BYTE, unpack_hf_2bit
from .quant import weight_quant
from .safetensors_io import TensorStore, open_tensors

# tensors a checkpoint may carry that the model does not use
IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclass
class TernaryLinear:
    weight: np.ndarray  # int8 ternary [out, in]
    scale: np.float32  # s_w, the divisor


@dataclass
class TernaryLayer:
    norms: dict[str, np.ndarray]  # LAYER_NORMS -> float32 [dim]
    linears: dict[str, TernaryLinear]  # PROJECTIONS


@dataclass
class TernaryModel:
    """A whole BitNet b1.58 model with ternary linears, independent of the source checkpoint's format."""

    config: ModelConfig
    embed_tokens: np.ndarray  # float32 [vocab, hidden]
    norm: np.ndarray  # float32 [hidden]
    lm_head: np.ndarray | None  # float32 [vocab, hidden]; None when tied to embed_tokens
    layers: list[TernaryLayer] = field(default_factory=list)


def tensor_names(config: ModelConfig, layer: int) -> dict[str, str]:
    """Our name -> checkpoint name for one layer's norms and linears (weights only)."""
    p = f"model.layers.{layer}"
    llama = config.source_model_type == "llama"
    names = {
        "input_layernorm": f"{p}.input_layernorm.weight",
        "post_attention_layernorm": f"{p}.post_attention_layernorm.weight",
        "attn_sub_norm": f"{p}.self_attn.{'inner_attn_ln' if llama else 'attn_sub_norm'}.weight",
        "ffn_sub_norm": f"{p}.mlp.{'ffn_layernorm' if llama else 'ffn_sub_norm'}.weight",
    }
    names.update({proj: f"{p}.self_attn.{proj}.weight" for proj in ATTENTION_PROJECTIONS})
    names.update({proj: f"{p}.mlp.{proj}.weight" for proj in MLP_PROJECTIONS})
    return names


def read_hf_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} has no config.json: is it a Hugging Face checkpoint folder?")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON ({exc})") from None


class _Reader:
    """Reads and validates tensors, remembering which ones were used."""

    def __init__(self, store: TensorStore, config: ModelConfig):
        self.store = store
        self.config = config
        self.used: set[str] = set()

    def float_tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        array = self._get(name)
        if array.dtype.kind != "f":
            raise UserError(f"tensor {name!r} has dtype {array.dtype}, expected a float type")
        self._check_shape(name, array, shape)
        return self._finite(name, np.ascontiguousarray(array, dtype=np.float32))

    def linear(self, name: str, shape: tuple[int, int]) -> TernaryLinear:
        kind = self.config.linear_class
        array = self._get(name)
        out_features, in_features = shape
        if kind == "latent":
            self._check_shape(name, array, shape)
            wq, s_w = weight_quant(self._finite(name, array.astype(np.float32)))
            return TernaryLinear(wq, s_w)
        packed_shape = (out_features // HF_VALUES_PER_BYTE, in_features)
        if array.dtype == np.uint8 and array.shape == packed_shape and out_features % HF_VALUES_PER_BYTE == 0:
            weight = unpack_hf_2bit(array)
            if weight.min() < -1 or weight.max() > 1:
                raise UserError(f"tensor {name!r} holds the 2-bit code 3, which is no ternary value")
        elif kind == "autobitlinear":
            self._check_shape(name, array, shape)
            if not np.isin(array, (-1, 0, 1)).all():
                raise UserError(f"tensor {name!r}: offline autobitlinear weights must be ternary")
            weight = array.astype(np.int8)
        else:
            raise UserError(
                f"tensor {name!r} has shape {list(array.shape)} and dtype {array.dtype}; bitlinear expects "
                f"packed uint8 {list(packed_shape)}: the config does not match the checkpoint"
            )
        scale_name = name.removesuffix("weight") + "weight_scale"
        scale = self._get(scale_name).astype(np.float32).reshape(-1)
        if scale.size != 1 or not np.isfinite(scale[0]) or scale[0] <= 0:
            raise UserError(f"tensor {scale_name!r} must be one positive number, got {scale[:4]}")
        s_w = scale[0] if kind == "bitlinear" else np.float32(1.0) / scale[0]
        return TernaryLinear(weight, np.float32(s_w))

    @staticmethod
    def _finite(name: str, array: np.ndarray) -> np.ndarray:
        """A NaN or infinity in a weight would make every logit NaN at run time: refused here."""
        if not np.isfinite(array).all():
            bad = np.argwhere(~np.isfinite(array))[0].tolist()
            raise UserError(f"tensor {name!r} holds NaN or infinite values (first at {bad}): the checkpoint is "
                            "damaged; re-download or re-export it")
        return array

    def _get(self, name: str) -> np.ndarray:
        self.used.add(name)
        return self.store.get(name)

    @staticmethod
    def _check_shape(name: str, array: np.ndarray, shape: tuple[int, ...]) -> None:
        if tuple(array.shape) != tuple(shape):
            raise UserError(
                f"tensor {name!r} has shape {list(array.shape)}, the config implies {list(shape)}: "
                "the config does not match the checkpoint"
            )


def load_hf_checkpoint(
    folder: Path, progress: Callable[[int, int], None] | None = None
) -> TernaryModel:
    """Read and validate a whole checkpoint. progress(done_layers, total_layers) is called per layer."""
    folder = Path(folder)
    config = config_from_hf(read_hf_config(folder))
    c = config
    with open_tensors(folder) as store:
        reader = _Reader(store, c)
        embed = reader.float_tensor("model.embed_tokens.weight", (c.vocab_size, c.hidden_size))
        norm = reader.float_tensor("model.norm.weight", (c.hidden_size,))
        lm_head = None
        if not c.tie_word_embeddings:
            lm_head = reader.float_tensor("lm_head.weight", (c.vocab_size, c.hidden_size))
        shapes = c.linear_shapes()
        norm_dims = {
            "input_layernorm": c.hidden_size,
            "post_attention_layernorm": c.hidden_size,
            "attn_sub_norm": c.q_size,
            "ffn_sub_norm": c.intermediate_size,
        }
        layers = []
        for i in range(c.num_hidden_layers):
            names = tensor_names(c, i)
            layers.append(
                TernaryLayer(
                    norms={k: reader.float_tensor(names[k], (d,)) for k, d in norm_dims.items()},
                    linears={k: reader.linear(names[k], shapes[k]) for k in shapes},
                )
            )
            if progress:
                progress(i + 1, c.num_hidden_layers)
        unused = sorted(
            n for n in store.names - reader.used
            if not n.endswith(IGNORED_SUFFIXES) and not (c.tie_word_embeddings and n == "lm_head.weight")
        )
        if unused:
            shown = ", ".join(unused[:3]) + (" ..." if len(unused) > 3 else "")
            raise UserError(
                f"checkpoint has {len(unused)} tensor(s) the config does not account for ({shown}): "
                "the config does not match the checkpoint"
            )
    return TernaryModel(config=c, embed_tokens=embed, norm=norm, lm_head=lm_head, layers=layers)
