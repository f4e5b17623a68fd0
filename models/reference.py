"""Numpy reference forward of a BitNet b1.58 decoder, read top to bottom in one sitting.

It computes what transformers' BitNetForCausalLM computes (float32 RMSNorm and softmax, per-token
int8 activations, ternary weights), with every ternary matmul done by table lookup (TLMM), as the
accelerator does. `matmul="naive"` swaps in a plain integer matmul; the two are bit-exact, which
the tests check. `kv_dtype=np.float16` stores the KV cache as the accelerator does; `order` (an
AcceleratorOrder) makes every float operation the accelerator's, in its order (tellme.models.numerics):
norms summed in lanes, exp by polynomial, attention as a block online softmax; `lm_head="int8"`
gathers embeddings from the int8 table and computes logits with the int8 LM head, as the accelerator
with its head on the PL does (an int8 row times the int8-quantised final hidden state, int32, then
divided by s_x * the row's divisor); `lm_head="int8-twopass"` is the PL's two-pass head: every logit
from the rows' high nibbles, then the best `head_candidates` rows scored exactly as the int8 head does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import numerics
from .config import LAYER_NORMS, PROJECTIONS, ModelConfig
from .errors import UserError
from .model_folder import ModelFolder, open_model_folder
from .packing import unpack_tlmm
from .quant import act_quant
from .tlmm import TlmmWeights, naive_matmul

LM_HEADS = ("float32", "int8", "int8-twopass")
HEAD_CANDIDATES = 16  # rows the two-pass head scores exactly (hls/config.py head_candidates)


@dataclass
class BitLinear:
    """A ternary linear: y = (xq @ Wq^T) / (s_x * s_w), the integer part by TLMM or naively."""

    weights: TlmmWeights
    scale: np.float32  # s_w
    naive: np.ndarray | None = None  # int8 [N, K] when the naive path is selected

    def int_matmul(self, xq: np.ndarray) -> np.ndarray:
        return self.weights.matmul(xq) if self.naive is None else naive_matmul(xq, self.naive)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xq, s_x = act_quant(x)
        return self.int_matmul(xq).astype(np.float32) / (s_x * self.scale)


@dataclass
class Layer:
    norms: dict[str, np.ndarray]
    linears: dict[str, BitLinear]


class KVCache:
    """Keys and values of every layer for positions [0, length), in the chosen storage dtype."""

    def __init__(self, config: ModelConfig, max_context: int, dtype: type = np.float32):
        shape = (config.num_hidden_layers, max_context, config.num_key_value_heads, config.head_dim)
        self.k = np.zeros(shape, dtype=dtype)
        self.v = np.zeros(shape, dtype=dtype)
        self.max_context = max_context
        self.length = 0


def check_token_ids(tokens: list[int], vocab_size: int) -> None:
    """Refuse ids outside the vocabulary; checked as Python integers, so that an id too large for int64
    is refused too (and not an OverflowError)."""
    bad = next((t for t in tokens if not 0 <= int(t) < vocab_size), None)
    if bad is not None:
        raise UserError(f"token ids must lie in [0, {vocab_size}), got {bad}")


def gather_embeddings(table: np.ndarray, tokens: list[int]) -> np.ndarray:
    """Rows of the embedding table for token ids, refusing ids outside the vocabulary."""
    check_token_ids(tokens, table.shape[0])
    return table[np.asarray(tokens, dtype=np.int64)]


def gather_int8_embeddings(table_q: np.ndarray, divisor: np.ndarray, tokens: list[int]) -> np.ndarray:
    """Embeddings from the int8 table: the gathered rows only, dequantised as q / divisor (float32)."""
    ids = np.asarray(tokens, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= table_q.shape[0]):
        raise UserError(f"token ids must lie in [0, {table_q.shape[0]})")
    return table_q[ids].astype(np.float32) / divisor[ids].reshape(-1, 1)


def int8_head_logits(table_q: np.ndarray, divisor: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """The int8 LM head: acc = int8(hidden) @ table_q^T (int32), logits = float32(acc) / (s_x * divisor)."""
    xq, s_x = act_quant(np.asarray(hidden, dtype=np.float32).reshape(-1, hidden.shape[-1]))
    acc = xq.astype(np.int32) @ table_q.astype(np.int32).T
    logits = acc.astype(np.float32) / (s_x * divisor.reshape(1, -1))
    return logits.reshape(*hidden.shape[:-1], -1)


def approx_head_weights(table_q: np.ndarray) -> np.ndarray:
    """The two-pass head's first-pass weights: each int8 weight's high nibble h = w >> 4 (what the PL
    streams, 4 bits a weight) taken at the middle of its bucket, 16 h + 8 (int32)."""
    return (table_q.astype(np.int32) >> 4) * 16 + 8


def twopass_head_logits(table_q: np.ndarray, divisor: np.ndarray, hidden: np.ndarray,
                        candidates: int = HEAD_CANDIDATES) -> np.ndarray:
    """The two-pass int8 head: every row's logit from the high nibbles (approx_head_weights), then the
    `candidates` rows with the largest of those (ties: the lower row) scored exactly with the whole int8
    row, as int8_head_logits does. The greedy token is the int8 head's whenever the int8 head's argmax is
    among the candidates; the other rows keep their first-pass logits."""
    xq, s_x = act_quant(np.asarray(hidden, dtype=np.float32).reshape(-1, hidden.shape[-1]))
    x32 = xq.astype(np.int32)
    rows = divisor.reshape(1, -1)
    logits = (x32 @ approx_head_weights(table_q).T).astype(np.float32) / (s_x * rows)
    k = min(candidates, table_q.shape[0])
    for t in range(logits.shape[0]):
        best = np.argsort(-logits[t], kind="stable")[:k]
        acc = table_q[best].astype(np.int32) @ x32[t]
        logits[t, best] = acc.astype(np.float32) / (s_x[t, 0] * divisor[best])
    return logits.reshape(*hidden.shape[:-1], -1)


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(np.square(x), axis=-1, keepdims=True, dtype=np.float32)
    return weight * (x * (np.float32(1.0) / np.sqrt(variance + np.float32(eps))))


def rope_tables(config: ModelConfig, positions: int) -> tuple[np.ndarray, np.ndarray]:
    """cos, sin [positions, head_dim] in transformers' layout: the frequencies repeated twice."""
    d = config.head_dim
    inv_freq = np.float32(1.0) / (np.float32(config.rope_theta) ** (np.arange(0, d, 2, dtype=np.float32) / d))
    freqs = np.arange(positions, dtype=np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([freqs, freqs], axis=-1)
    return np.cos(emb), np.sin(emb)


def rotate_half(x: np.ndarray) -> np.ndarray:
    half = x.shape[-1] // 2
    return np.concatenate([-x[..., half:], x[..., :half]], axis=-1)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "relu2":
        return np.square(np.maximum(x, np.float32(0)))
    return x / (np.float32(1) + np.exp(-x))  # silu


class ReferenceModel:
    """The model in numpy. forward() appends n tokens to a KV cache: prefill and decode alike."""

    def __init__(self, folder: ModelFolder, matmul: str = "tlmm", kv_dtype: type = np.float32,
                 lm_head: str = "float32", order: numerics.AcceleratorOrder | None = None,
                 head_candidates: int = HEAD_CANDIDATES):
        if matmul not in ("tlmm", "naive"):
            raise ValueError(f"matmul must be 'tlmm' or 'naive', got {matmul!r}")
        if lm_head not in LM_HEADS:
            raise ValueError(f"lm_head must be one of {LM_HEADS}, got {lm_head!r}")
        self.config = c = folder.config
        self.folder = folder
        self.kv_dtype = kv_dtype
        self.head = lm_head
        self.head_candidates = head_candidates
        self.order = order
        if lm_head.startswith("int8"):
            self.embed_q, self.embed_div = folder.int8_table("embed_tokens")
            self.head_q, self.head_div = folder.int8_table(folder.head_name)
        else:
            self.embed_tokens = folder.tensor("embed_tokens")
            self.lm_head = self.embed_tokens if c.tie_word_embeddings else folder.tensor("lm_head")
        self.norm = folder.tensor("norm")
        shapes = c.linear_shapes()
        self.layers: list[Layer] = []
        for i in range(c.num_hidden_layers):
            linears = {}
            for name in PROJECTIONS:
                packed = folder.tensor(f"layers.{i}.{name}.tlmm")
                k = shapes[name][1]
                naive = unpack_tlmm(packed, k) if matmul == "naive" else None
                scale = np.float32(folder.tensor(f"layers.{i}.{name}.scale")[0])
                linears[name] = BitLinear(TlmmWeights(packed, k), scale, naive)
            norms = {name: folder.tensor(f"layers.{i}.{name}") for name in LAYER_NORMS}
            self.layers.append(Layer(norms, linears))
        self.cos, self.sin = rope_tables(c, c.max_position_embeddings)

    @classmethod
    def load(cls, model_dir: Path | str, **kwargs) -> ReferenceModel:
        return cls(open_model_folder(Path(model_dir)), **kwargs)

    def new_cache(self, max_context: int | None = None) -> KVCache:
        size = max_context or self.config.max_position_embeddings
        if size > self.config.max_position_embeddings:
            raise UserError(
                f"context {size} exceeds the model's max_position_embeddings "
                f"({self.config.max_position_embeddings})"
            )
        return KVCache(self.config, size, self.kv_dtype)

    def embed(self, tokens: list[int]) -> np.ndarray:
        if self.head.startswith("int8"):
            return gather_int8_embeddings(self.embed_q, self.embed_div, tokens)
        return gather_embeddings(self.embed_tokens, tokens)

    def attention(self, layer: int, x: np.ndarray, cache: KVCache) -> np.ndarray:
        c, lin = self.config, self.layers[layer].linears
        n, start = x.shape[0], cache.length
        q = lin["q_proj"](x).reshape(n, c.num_attention_heads, c.head_dim)
        k = lin["k_proj"](x).reshape(n, c.num_key_value_heads, c.head_dim)
        v = lin["v_proj"](x).reshape(n, c.num_key_value_heads, c.head_dim)
        cos = self.cos[start : start + n, None, :]
        sin = self.sin[start : start + n, None, :]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        cache.k[layer, start : start + n] = k
        cache.v[layer, start : start + n] = v
        group = c.num_attention_heads // c.num_key_value_heads
        keys = np.repeat(cache.k[layer, : start + n].astype(np.float32), group, axis=1)  # [t, H, d]
        values = np.repeat(cache.v[layer, : start + n].astype(np.float32), group, axis=1)
        if self.order is not None:  # the accelerator's arithmetic: each query over its positions 0..p
            out = np.stack([numerics.block_attention(q[i], keys[: start + i + 1], values[: start + i + 1],
                                                     c.head_dim, self.order) for i in range(n)])
            return out.reshape(n, c.q_size)
        scores = np.einsum("nhd,thd->hnt", q, keys) * np.float32(c.head_dim**-0.5)
        causal = np.arange(start + n)[None, :] > (start + np.arange(n))[:, None]  # [n, t]
        scores = np.where(causal[None], np.float32(-np.inf), scores)
        out = np.einsum("hnt,thd->nhd", softmax(scores), values)
        return out.reshape(n, c.q_size)

    def forward(self, tokens: list[int], cache: KVCache) -> np.ndarray:
        """Run n tokens at positions [cache.length, +n); returns final-normed hidden states [n, hidden]."""
        return self.forward_hidden(self.embed(tokens), cache)

    def forward_hidden(self, h: np.ndarray, cache: KVCache) -> np.ndarray:
        """forward() from gathered embeddings [n, hidden]: the accelerator's boundary (the host embeds)."""
        c = self.config
        n = h.shape[0]
        if cache.length + n > cache.max_context:
            raise UserError(
                f"{cache.length + n} tokens exceed the context of {cache.max_context}: "
                "shorten the prompt or lower --max-new-tokens"
            )
        order = self.order
        norm = (lambda x, w, eps: numerics.rms_norm(x, w, eps, order.norm_lanes)) if order is not None else rms_norm
        act = (lambda x: numerics.silu(x)) if self.order is not None and c.hidden_act == "silu" else (
            lambda x: activation(c.hidden_act, x))
        for i, layer in enumerate(self.layers):
            norms, lin = layer.norms, layer.linears
            a = self.attention(i, norm(h, norms["input_layernorm"], c.rms_norm_eps), cache)
            h = h + lin["o_proj"](norm(a, norms["attn_sub_norm"], c.rms_norm_eps))
            x = norm(h, norms["post_attention_layernorm"], c.rms_norm_eps)
            m = act(lin["gate_proj"](x)) * lin["up_proj"](x)
            h = h + lin["down_proj"](norm(m, norms["ffn_sub_norm"], c.rms_norm_eps))
        cache.length += n
        return norm(h, self.norm, c.rms_norm_eps)

    def lm_head_logits(self, hidden: np.ndarray) -> np.ndarray:
        if self.head == "int8":
            return int8_head_logits(self.head_q, self.head_div, hidden)
        if self.head == "int8-twopass":
            return twopass_head_logits(self.head_q, self.head_div, hidden, self.head_candidates)
        return hidden @ self.lm_head.T

    def logits(self, tokens: list[int]) -> np.ndarray:
        """float32 logits [n, vocab] for every position of a fresh sequence."""
        cache = self.new_cache(max(len(tokens), 1))
        return self.lm_head_logits(self.forward(list(tokens), cache))
