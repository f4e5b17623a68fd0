"""Random Hugging Face BitNet checkpoints in every storage flavour, for tests, benches and demos
that must not download anything. They load in transformers exactly like published checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

from .config import ModelConfig
from .packing import pack_hf_2bit
from .quant import weight_quant

# flavour -> (model_type, quantization_config or None)
FLAVOURS: dict[str, tuple[str, dict | None]] = {
    "bitlinear": ("bitnet", {"quant_method": "bitnet", "linear_class": "bitlinear",
                             "quantization_mode": "offline"}),
    "autobitlinear-offline": ("bitnet", {"quant_method": "bitnet", "linear_class": "autobitlinear",
                                         "quantization_mode": "offline"}),
    "online": ("bitnet", {"quant_method": "bitnet", "linear_class": "autobitlinear",
                          "quantization_mode": "online"}),
    "llama": ("llama", None),  # 1bitLLM bitnet_b1_58: latent weights, silu, MHA, other sub-norm names
}


# the default random model: hidden 120 and intermediate 200 are not multiples of 84; GQA 4:2
TINY = ModelConfig(vocab_size=320, hidden_size=120, intermediate_size=200, num_hidden_layers=2,
                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)


def hf_config(flavour: str, shape: ModelConfig) -> dict:
    """config.json of the flavour for the sizes of `shape` (its other fields come from the flavour)."""
    model_type, quant = FLAVOURS[flavour]
    llama = model_type == "llama"
    config = {
        "architectures": ["BitnetForCausalLM" if llama else "BitNetForCausalLM"],
        "model_type": model_type,
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_attention_heads if llama else shape.num_key_value_heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu" if llama else "relu2",
        "max_position_embeddings": shape.max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0 if llama else 500000.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    if quant is not None:
        config["quantization_config"] = dict(quant)
    return config


def _linear_tensors(name: str, latent: np.ndarray, flavour: str) -> dict[str, np.ndarray]:
    if flavour in ("online", "llama"):
        return {name: latent}
    wq, s_w = weight_quant(latent)
    scale_name = name.removesuffix("weight") + "weight_scale"
    if flavour == "bitlinear":
        return {name: pack_hf_2bit(wq), scale_name: np.array([s_w], dtype=np.float32)}
    return {name: pack_hf_2bit(wq), scale_name: np.array([1.0 / s_w], dtype=np.float32)}


def random_tensors(flavour: str, shape: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Tensors named as the flavour's checkpoints name them; logits spread enough to make argmax stable."""
    rng = np.random.default_rng(seed)
    model_type, _ = FLAVOURS[flavour]
    h, inter = shape.hidden_size, shape.intermediate_size
    n_heads = shape.num_attention_heads
    n_kv = n_heads if model_type == "llama" else shape.num_key_value_heads
    d = shape.head_dim

    def f32(*dims: int, scale: float = 1.0) -> np.ndarray:
        return (rng.standard_normal(dims) * scale).astype(np.float32)

    def norm(dim: int) -> np.ndarray:
        return (1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32)

    attn_sub, ffn_sub = ("inner_attn_ln", "ffn_layernorm") if model_type == "llama" else (
        "attn_sub_norm", "ffn_sub_norm")
    tensors = {
        "model.embed_tokens.weight": f32(shape.vocab_size, h),
        "model.norm.weight": norm(h),
        "lm_head.weight": f32(shape.vocab_size, h, scale=0.2),
    }
    for i in range(shape.num_hidden_layers):
        p = f"model.layers.{i}"
        tensors[f"{p}.input_layernorm.weight"] = norm(h)
        tensors[f"{p}.post_attention_layernorm.weight"] = norm(h)
        tensors[f"{p}.self_attn.{attn_sub}.weight"] = norm(n_heads * d)
        tensors[f"{p}.mlp.{ffn_sub}.weight"] = norm(inter)
        shapes = {
            "self_attn.q_proj": (n_heads * d, h),
            "self_attn.k_proj": (n_kv * d, h),
            "self_attn.v_proj": (n_kv * d, h),
            "self_attn.o_proj": (h, n_heads * d),
            "mlp.gate_proj": (inter, h),
            "mlp.up_proj": (inter, h),
            "mlp.down_proj": (h, inter),
        }
        for name, (out_f, in_f) in shapes.items():
            latent = f32(out_f, in_f, scale=0.02)
            tensors.update(_linear_tensors(f"{p}.{name}.weight", latent, flavour))
    return tensors


SPECIAL_TOKENS = ["<pad>", "<s>", "</s>"]  # ids 0, 1, 2: pad, bos, eos as hf_config names them
TOKENIZER_TEXT = (
    "In the beginning the engineers made the table and the lookup. And the table was without form, "
    "and the weights were ternary; and every group of three made one index of five bits. "
) * 4


def write_tokenizer(folder: Path, vocab_size: int) -> Path:
    """A small byte-level BPE tokenizer.json (trained on a fixed text) whose BOS/EOS match hf_config."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator([TOKENIZER_TEXT], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    path = Path(folder) / "tokenizer.json"
    tok.save(str(path))
    return path


def write_random_checkpoint(folder: Path, flavour: str = "bitlinear", shape: ModelConfig | None = None,
                            seed: int = 0) -> Path:
    """Write config.json, model.safetensors and tokenizer.json for a random model of the given flavour."""
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown flavour {flavour!r}; one of {sorted(FLAVOURS)}")
    shape = shape or TINY
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config(flavour, shape), indent=2))
    save_file(random_tensors(flavour, shape, seed), str(folder / "model.safetensors"))
    write_tokenizer(folder, shape.vocab_size)
    return folder


def as_transformers_bitnet(src: Path, dst: Path) -> Path:
    """Re-express a 1bitLLM (llama-typed) checkpoint as transformers' BitNet with online quantisation,
    so that BitNetForCausalLM can serve as its oracle. Same math: silu, MHA, latent weights."""
    from safetensors.numpy import load_file

    config = json.loads((Path(src) / "config.json").read_text())
    config.update(model_type="bitnet", architectures=["BitNetForCausalLM"],
                  quantization_config=dict(FLAVOURS["online"][1]))
    tensors = {
        k.replace("inner_attn_ln", "attn_sub_norm").replace("ffn_layernorm", "ffn_sub_norm"): v
        for k, v in load_file(str(Path(src) / "model.safetensors")).items()
    }
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "config.json").write_text(json.dumps(config, indent=2))
    save_file(tensors, str(dst / "model.safetensors"))
    return dst
