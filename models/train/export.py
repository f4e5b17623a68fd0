"""Export a trained BitNetLM as a Hugging Face BitNet checkpoint (latent float32 weights, online quant)."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from tellme.models.config import ModelConfig

from .data import DOC_TOKEN
from .model import BitNetLM


def hf_config(shape: ModelConfig, bos_token_id: int, eos_token_id: int) -> dict[str, object]:
    """config.json for BitNetForCausalLM with quantization_config "autobitlinear" / "online"."""
    return {
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_act": "relu2",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "head_dim": shape.head_dim,
        "vocab_size": shape.vocab_size,
        "max_position_embeddings": shape.max_position_embeddings,
        "rms_norm_eps": shape.rms_norm_eps,
        "rope_theta": shape.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": shape.rope_theta},
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
        "torch_dtype": "float32",
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": "autobitlinear",
            "quantization_mode": "online",
        },
    }


def state_dict(model: BitNetLM) -> dict[str, np.ndarray]:
    """The model's weights under transformers' BitNet tensor names, float32, [out, in] for linears."""
    tensors = {"model.embed_tokens.weight": model.embed_tokens.embeddings}
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}."
        tensors[prefix + "input_layernorm.weight"] = block.input_layernorm.weight
        tensors[prefix + "post_attention_layernorm.weight"] = block.post_attention_layernorm.weight
        attn, mlp = block.self_attn, block.mlp
        for name in ("q_proj", "k_proj", "v_proj", "o_proj", "attn_sub_norm"):
            tensors[f"{prefix}self_attn.{name}.weight"] = getattr(attn, name).weight
        for name in ("gate_proj", "up_proj", "down_proj", "ffn_sub_norm"):
            tensors[f"{prefix}mlp.{name}.weight"] = getattr(mlp, name).weight
    tensors["model.norm.weight"] = model.norm.weight
    tensors["lm_head.weight"] = model.lm_head.weight
    return {name: np.ascontiguousarray(np.asarray(v), dtype=np.float32) for name, v in tensors.items()}


def tokenizer_config(max_length: int) -> dict[str, object]:
    """tokenizer_config.json so that transformers' AutoTokenizer reads tokenizer.json."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": DOC_TOKEN,
        "eos_token": DOC_TOKEN,
        "unk_token": DOC_TOKEN,
        "pad_token": DOC_TOKEN,
        "model_max_length": max_length,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
    }


def export_checkpoint(model: BitNetLM, tokenizer: Tokenizer, out_dir: Path) -> Path:
    """Write config.json, model.safetensors, tokenizer files into out_dir, replacing it atomically."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    doc_id = tokenizer.token_to_id(DOC_TOKEN)
    shape = model.model_shape
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    staging.chmod(0o755)
    (staging / "config.json").write_text(json.dumps(hf_config(shape, doc_id, doc_id), indent=2) + "\n")
    generation = {"bos_token_id": doc_id, "eos_token_id": doc_id, "pad_token_id": doc_id}
    (staging / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    save_file(state_dict(model), str(staging / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save(str(staging / "tokenizer.json"))
    config = tokenizer_config(shape.max_position_embeddings)
    (staging / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if out_dir.exists():
        previous = out_dir.with_name(out_dir.name + ".old")
        shutil.rmtree(previous, ignore_errors=True)
        out_dir.rename(previous)
        staging.rename(out_dir)
        shutil.rmtree(previous)
    else:
        staging.rename(out_dir)
    return out_dir
