"""The DDR image of a model: the buffers the accelerator streams, their layout and their offsets
(models/FORMAT.md has the byte-level description; hls/kernels/prefetch.h reads exactly this).

Everything is in 128-bit words. Three kinds of buffer:
  stripes  P weight buffers, one per weight port. Every ternary matrix of every layer, in schedule
           order (qkv, o, gate/up, down), then the int8 LM head: row r of a matrix lives on stripe
           r % P, so the P ports stream P rows side by side and the engine consumes them in lockstep.
           A ternary row is ceil(ceil(K/3)/25) index words of 25 five-bit group indices (the zero
           group 13 past K); an LM-head row is ceil(hidden/16) words of int8 and one word holding
           its float32 divisor. A split head (the two-pass head) streams rows of ceil(hidden/32)
           words of high nibbles and the divisor word, and keeps the low nibbles after them, read
           only for the rows the head rescores.
  kv       one fp16 K/V cache, stripe-major: each stripe's share of every row sits together, in blocks
           of R positions (R K rows, then R V rows), so a weight port streams its part of a layer's
           cache in one burst. Each head is padded to a whole number of chunks (8 fp16 per port).
  io       params (norm weights, weight divisors, RoPE half tables: float32), hidden states in and out,
           logits out: read and written through the accelerator's io port.
numpy only: the board host builds the image too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .config import LAYER_NORMS, ModelConfig
from .model_folder import ModelFolder
from .packing import WORD_INDICES, ZERO_INDEX, G, pack_vectors, unpack_index_vectors, unpack_vectors

WORD_BYTES = 16  # every streamed buffer is in 128-bit words
FLOATS_PER_WORD = WORD_BYTES // 4
HALVES_PER_WORD = WORD_BYTES // 2
INT8_PER_WORD = WORD_BYTES
NIBBLES_PER_WORD = 2 * WORD_BYTES
SCALE_SLOTS = 8  # per layer: the divisors s_w of q, k, v, o, gate, up, down, and one spare
# schedule order of a layer's matrices; qkv stacks q, k, v rows (q and k in RoPE pairs: rope_pairs); gateup
# interleaves gate and up rows
MATRICES = ("qkv", "o", "gateup", "down")
SCALE_INDEX = {"q_proj": 0, "k_proj": 1, "v_proj": 2, "o_proj": 3, "gate_proj": 4, "up_proj": 5, "down_proj": 6}


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def round_up(a: int, b: int) -> int:
    return ceil_div(a, b) * b


def words_per_row(k: int) -> int:
    """Index words of one ternary row of k inputs."""
    return ceil_div(ceil_div(k, G), WORD_INDICES)


@dataclass(frozen=True)
class MatrixLayout:
    """One of a layer's four streamed matrices."""

    name: str  # qkv | o | gateup | down
    n: int  # output rows (before padding to the ports)
    k: int  # inputs
    rows_per_stripe: int
    wpr: int  # index words per row
    offset: int  # words from the start of the layer, in every stripe

    @property
    def words(self) -> int:
        return self.rows_per_stripe * self.wpr


@dataclass(frozen=True)
class DdrLayout:
    """Where everything sits, for one model shape and one accelerator geometry."""

    model: ModelConfig
    ports: int  # P: weight ports = stripes
    context: int  # positions of the KV cache
    kv_block: int  # R: positions per K/V block
    lm_head: bool  # the int8 LM head streams after the layers
    head_split: bool = False  # the head in two nibble planes (the two-pass head): high nibbles, then low

    # --- weights ---
    @cached_property
    def matrices(self) -> tuple[MatrixLayout, ...]:
        m = self.model
        h, i, q, kv = m.hidden_size, m.intermediate_size, m.q_size, m.kv_size
        shapes = {"qkv": (q + 2 * kv, h), "o": (h, q), "gateup": (2 * i, h), "down": (h, i)}
        out, at = [], 0
        for name in MATRICES:
            n, k = shapes[name]
            layout = MatrixLayout(name, n, k, ceil_div(n, self.ports), words_per_row(k), at)
            out.append(layout)
            at += layout.words
        return tuple(out)

    @property
    def layer_words(self) -> int:
        return sum(m.words for m in self.matrices)

    @property
    def max_wpr(self) -> int:
        return max(m.wpr for m in self.matrices)

    @property
    def head_offset(self) -> int:
        return self.model.num_hidden_layers * self.layer_words

    @property
    def head_values_per_word(self) -> int:
        """Weights in a streamed head word: 16 int8, or 32 nibbles of a split head."""
        return NIBBLES_PER_WORD if self.head_split else INT8_PER_WORD

    @property
    def head_row_words(self) -> int:
        """A streamed LM-head row: its int8 values (a split head: their high nibbles), then one word with
        the row's divisor."""
        return ceil_div(self.model.hidden_size, self.head_values_per_word) + 1

    @property
    def head_rows_per_stripe(self) -> int:
        return ceil_div(self.model.vocab_size, self.ports) if self.lm_head else 0

    @property
    def head_low_offset(self) -> int:
        """A split head's low nibbles: after the streamed rows, head_low_row_words a row, same row order."""
        return self.head_offset + self.head_rows_per_stripe * self.head_row_words

    @property
    def head_low_row_words(self) -> int:
        return self.head_row_words - 1 if self.head_split else 0

    @property
    def stripe_words(self) -> int:
        return self.head_low_offset + self.head_rows_per_stripe * self.head_low_row_words

    # --- KV cache ---
    @property
    def chunk(self) -> int:
        """fp16 values the ports deliver per cycle: one word (8 values) each."""
        return HALVES_PER_WORD * self.ports

    @property
    def head_dim_pad(self) -> int:
        return round_up(self.model.head_dim, self.chunk)

    @property
    def kv_row_values(self) -> int:
        return self.model.num_key_value_heads * self.head_dim_pad

    @property
    def kv_row_words(self) -> int:
        """Words of one K (or V) row in one stripe."""
        return self.kv_row_values // self.chunk

    @property
    def kv_blocks(self) -> int:
        return ceil_div(self.context, self.kv_block)

    @property
    def kv_layer_words(self) -> int:
        return self.kv_blocks * 2 * self.kv_block * self.kv_row_words

    @property
    def kv_stripe_words(self) -> int:
        return self.model.num_hidden_layers * self.kv_layer_words

    @property
    def kv_words(self) -> int:
        return self.ports * self.kv_stripe_words

    def kv_row_offset(self, stripe: int, layer: int, position: int, value: bool) -> int:
        """Word offset of one stripe's share of a K (value=False) or V row."""
        block, row = divmod(position, self.kv_block)
        return (stripe * self.kv_stripe_words + layer * self.kv_layer_words
                + (block * 2 * self.kv_block + row + (self.kv_block if value else 0)) * self.kv_row_words)

    # --- params and io ---
    @cached_property
    def param_offsets(self) -> dict[str, int]:
        """Float offsets of a layer's vectors (inside a layer) and of the globals, all word-aligned."""
        m = self.model
        dims = {"input_layernorm": m.hidden_size, "post_attention_layernorm": m.hidden_size,
                "attn_sub_norm": m.q_size, "ffn_sub_norm": m.intermediate_size}
        out, at = {}, 0
        for name in LAYER_NORMS:
            out[name] = at
            at += round_up(dims[name], FLOATS_PER_WORD)
        out["scales"] = at
        at += SCALE_SLOTS
        out["layer_stride"] = at
        at = m.num_hidden_layers * at
        out["final_norm"] = at
        at += round_up(m.hidden_size, FLOATS_PER_WORD)
        out["rope_cos"] = at
        at += self.context * self.rope_half_pad
        out["rope_sin"] = at
        at += self.context * self.rope_half_pad
        out["total"] = at
        return out

    @property
    def rope_half_pad(self) -> int:
        """Floats of one position's half table (cos[i] == cos[i + head_dim/2]), padded to whole words."""
        return round_up(self.model.head_dim // 2, FLOATS_PER_WORD)

    @property
    def hidden_pad(self) -> int:
        return round_up(self.model.hidden_size, FLOATS_PER_WORD)

    @property
    def vocab_pad(self) -> int:
        return round_up(self.model.vocab_size, FLOATS_PER_WORD)

    def bytes_per_token(self, position: int) -> dict[str, int]:
        """What one decode step at KV length `position` streams through the weight ports."""
        blocks = ceil_div(position, self.kv_block)
        return {
            "weights": self.ports * self.head_offset * WORD_BYTES,
            "lm_head": self.ports * self.head_rows_per_stripe * self.head_row_words * WORD_BYTES,
            "kv": self.ports * self.model.num_hidden_layers * (2 * position * self.kv_row_words) * WORD_BYTES,
            "kv_blocks": blocks,
        }


# --- building the weights stripes ---

def row_indices(packed: np.ndarray, k: int, wpr: int) -> np.ndarray:
    """Stored TLMM form [N, Kp/84, 18] -> group indices [N, wpr*25], zero group past K."""
    idx = unpack_index_vectors(np.asarray(packed, dtype=np.uint8))
    used = ceil_div(k, G)
    if idx.shape[1] < used or np.any(idx[:, used:] != ZERO_INDEX):
        raise ValueError(f"stored TLMM weights of shape {packed.shape} do not hold K={k}")
    out = np.full((idx.shape[0], wpr * WORD_INDICES), ZERO_INDEX, dtype=np.uint8)
    out[:, :used] = idx[:, :used]
    return out


def matrix_words(indices: np.ndarray, wpr: int) -> np.ndarray:
    """Group indices [N, wpr*25] -> index words uint8 [N, wpr, 16]."""
    return pack_vectors(indices, WORD_INDICES).reshape(indices.shape[0], wpr, WORD_BYTES)


def word_indices(words: np.ndarray) -> np.ndarray:
    """Inverse of matrix_words: [N, wpr, 16] -> [N, wpr*25] indices."""
    words = np.asarray(words, dtype=np.uint8)
    return unpack_vectors(words, WORD_INDICES).reshape(words.shape[0], -1)


def stripe_rows(rows: np.ndarray, ports: int) -> list[np.ndarray]:
    """[N, ...] rows (N a multiple of ports) -> per stripe [N/ports, ...]: row r to stripe r % ports."""
    return [rows[p::ports] for p in range(ports)]


def _pad_rows(words: np.ndarray, rows: int, fill: np.ndarray) -> np.ndarray:
    if words.shape[0] == rows:
        return words
    pad = np.broadcast_to(fill, (rows - words.shape[0], *words.shape[1:]))
    return np.concatenate([words, pad])


def _zero_row(wpr: int) -> np.ndarray:
    return matrix_words(np.full((1, wpr * WORD_INDICES), ZERO_INDEX, dtype=np.uint8), wpr)[0]


def rope_pairs(rows: np.ndarray, head_dim: int) -> np.ndarray:
    """q or k rows (heads x head_dim) in RoPE pairs: per head, rows d and d + head_dim/2 one after the other,
    so the engine rotates a pair from two consecutive outputs (hls/kernels/decoder.h step_sink)."""
    half = head_dim // 2
    return rows.reshape(-1, 2, half, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def qkv_row_order(model: ModelConfig) -> np.ndarray:
    """The natural row (q, k, v stacked) of each streamed qkv row: what rope_pairs did to them."""
    natural = np.arange(model.q_size + 2 * model.kv_size)
    q, k, v = np.split(natural, [model.q_size, model.q_size + model.kv_size])
    return np.concatenate([rope_pairs(q, model.head_dim), rope_pairs(k, model.head_dim), v])


def matrix_rows(folder: ModelFolder, layer: int, matrix: MatrixLayout) -> np.ndarray:
    """A streamed matrix's rows as index words [rows_per_stripe * P, wpr, 16], in row order."""
    m = folder.config

    def words(proj: str) -> np.ndarray:
        return matrix_words(row_indices(folder.tensor(f"layers.{layer}.{proj}.tlmm"), matrix.k, matrix.wpr),
                            matrix.wpr)

    if matrix.name == "qkv":
        rows = np.concatenate([rope_pairs(words("q_proj"), m.head_dim), rope_pairs(words("k_proj"), m.head_dim),
                               words("v_proj")])
    elif matrix.name == "gateup":
        gate, up = words("gate_proj"), words("up_proj")
        rows = np.empty((2 * m.intermediate_size, matrix.wpr, WORD_BYTES), dtype=np.uint8)
        rows[0::2], rows[1::2] = gate, up
    else:
        rows = words(f"{matrix.name}_proj")
    return rows


def ternary_stripes(w: np.ndarray, ports: int) -> tuple[np.ndarray, int, int]:
    """One ternary matrix [N, K] (values in {-1, 0, 1}) laid out as the stripes carry a matrix: uint8
    [P, rows * wpr * 16], with its row-steps and words per row (for tests and benches of the TLMM engine)."""
    from .packing import pack_tlmm

    n, k = w.shape
    wpr = words_per_row(k)
    rows = ceil_div(n, ports)
    words = _pad_rows(matrix_words(row_indices(pack_tlmm(w), k, wpr), wpr), rows * ports, _zero_row(wpr))
    return np.stack([s.reshape(-1) for s in stripe_rows(words, ports)]), rows, wpr


def nibble_words(nibbles: np.ndarray, words: int) -> np.ndarray:
    """Values 0..15 [rows, n] -> words uint8 [rows, words, 16]: value j in bits 4(j % 32).. of word j // 32
    (little-endian, as the kernels read a word's two 64-bit halves)."""
    rows, n = nibbles.shape
    flat = np.zeros((rows, words * NIBBLES_PER_WORD), dtype=np.uint8)
    flat[:, :n] = nibbles
    return (flat[:, 0::2] | (flat[:, 1::2] << 4)).reshape(rows, words, WORD_BYTES)


def with_divisor_word(data: np.ndarray, divisors: np.ndarray) -> np.ndarray:
    """A head's row words [vocab, n, 16] and row divisors [vocab] -> the streamed rows [vocab, n + 1, 16]:
    the data, then a word whose low 32 bits are the row's float32 divisor."""
    vocab, n, _ = data.shape
    rows = np.zeros((vocab, n + 1, WORD_BYTES), dtype=np.uint8)
    rows[:, :n] = data
    rows[:, n, :4] = np.asarray(divisors, dtype="<f4").reshape(vocab, 1).view(np.uint8)
    return rows


def split_head_rows(table_q: np.ndarray, divisors: np.ndarray, layout: DdrLayout) -> tuple[np.ndarray, np.ndarray]:
    """int8 LM head [vocab, hidden] -> the streamed rows (high nibbles w >> 4 as 4-bit two's complement,
    then the divisor word) [vocab, head_row_words, 16] and the low nibbles w & 15 [vocab, low words, 16]."""
    w = table_q.astype(np.int16)
    data = layout.head_low_row_words
    high = nibble_words(((w >> 4) & 15).astype(np.uint8), data)
    return with_divisor_word(high, divisors), nibble_words((w & 15).astype(np.uint8), data)


def head_rows(table_q: np.ndarray, divisors: np.ndarray, layout: DdrLayout) -> np.ndarray:
    """int8 LM head [vocab, hidden] and its row divisors [vocab] -> words uint8 [rows, head_row_words, 16]."""
    vocab, hidden = table_q.shape
    data = layout.head_row_words - 1
    flat = np.zeros((vocab, data * INT8_PER_WORD), dtype=np.int8)
    flat[:, :hidden] = table_q
    return with_divisor_word(flat.view(np.uint8).reshape(vocab, data, WORD_BYTES), divisors)


@dataclass
class DdrImage:
    """The static buffers the host uploads once: the weight stripes and the params."""

    layout: DdrLayout
    stripes: list[np.ndarray]  # P x uint8 [stripe_words * 16]
    params: np.ndarray  # float32 [param_offsets["total"]]

    def named_buffers(self) -> dict[str, np.ndarray]:
        """The static buffers by the names the design's top interface gives them (its "image" buffers):
        the board host uploads each into its own contiguous buffer."""
        out = {f"weights{p}": s for p, s in enumerate(self.stripes)}
        out["params"] = self.params
        return out


def build_params(folder: ModelFolder, layout: DdrLayout) -> np.ndarray:
    from .reference import rope_tables

    c, off = folder.config, layout.param_offsets
    params = np.zeros(off["total"], dtype=np.float32)
    for i in range(c.num_hidden_layers):
        base = i * off["layer_stride"]
        for name in LAYER_NORMS:
            vector = folder.tensor(f"layers.{i}.{name}")
            params[base + off[name] : base + off[name] + vector.size] = vector
        for proj, slot in SCALE_INDEX.items():
            params[base + off["scales"] + slot] = folder.tensor(f"layers.{i}.{proj}.scale")[0]
    params[off["final_norm"] : off["final_norm"] + c.hidden_size] = folder.tensor("norm")
    cos, sin = rope_tables(c, layout.context)
    half = c.head_dim // 2
    for name, table in (("rope_cos", cos), ("rope_sin", sin)):
        rows = np.zeros((layout.context, layout.rope_half_pad), dtype=np.float32)
        rows[:, :half] = table[:, :half]
        params[off[name] : off[name] + rows.size] = rows.ravel()
    return params


def build_ddr_image(folder: ModelFolder, layout: DdrLayout, head: tuple[np.ndarray, np.ndarray] | None = None
                    ) -> DdrImage:
    """The stripes and params for a model folder. `head` is the int8 LM head and its row divisors,
    required when the layout streams the head."""
    c = folder.config
    if layout.context > c.max_position_embeddings:
        raise ValueError(f"context {layout.context} exceeds max_position_embeddings {c.max_position_embeddings}")
    p = layout.ports
    stripes = np.zeros((p, layout.stripe_words, WORD_BYTES), dtype=np.uint8)
    for i in range(c.num_hidden_layers):
        for matrix in layout.matrices:
            rows = _pad_rows(matrix_rows(folder, i, matrix), matrix.rows_per_stripe * p, _zero_row(matrix.wpr))
            start = i * layout.layer_words + matrix.offset
            for s, part in enumerate(stripe_rows(rows, p)):
                stripes[s, start : start + matrix.words] = part.reshape(matrix.words, WORD_BYTES)
    if layout.lm_head:
        if head is None:
            raise ValueError("this layout streams the int8 LM head: pass it")
        table_q, divisors = head
        zero_row = (np.zeros((1, c.hidden_size), np.int8), np.ones(1, np.float32), layout)
        if layout.head_split:
            planes = zip(split_head_rows(table_q, divisors, layout), split_head_rows(*zero_row),
                         (layout.head_offset, layout.head_low_offset), strict=True)
        else:
            planes = [(head_rows(table_q, divisors, layout), head_rows(*zero_row), layout.head_offset)]
        for words, filler, offset in planes:
            words = _pad_rows(words, layout.head_rows_per_stripe * p, filler[0])
            n = layout.head_rows_per_stripe * words.shape[1]
            for s, part in enumerate(stripe_rows(words, p)):
                stripes[s, offset : offset + n] = part.reshape(n, WORD_BYTES)
    return DdrImage(layout, [stripes[s].reshape(-1) for s in range(p)], build_params(folder, layout))


# --- the KV cache ---

def kv_cache_words(layout: DdrLayout) -> int:
    return layout.kv_words


def unstripe_kv(kv: np.ndarray, layout: DdrLayout) -> tuple[np.ndarray, np.ndarray]:
    """The KV buffer (fp16 bits, uint16) -> K and V [layers, context, kv_heads, head_dim] (fp16 bits)."""
    m = layout.model
    p, r, rw = layout.ports, layout.kv_block, layout.kv_row_words
    words = np.asarray(kv, dtype=np.uint16).reshape(p, m.num_hidden_layers, layout.kv_blocks, 2, r, rw,
                                                     HALVES_PER_WORD)
    # [p, layer, block, kv, row, chunk, 8] -> [layer, block, row, kv, chunk, p, 8]
    values = words.transpose(1, 2, 4, 3, 5, 0, 6).reshape(m.num_hidden_layers, layout.kv_blocks * r, 2,
                                                            layout.kv_row_values)
    values = values[:, : layout.context].reshape(m.num_hidden_layers, layout.context, 2, m.num_key_value_heads,
                                                 layout.head_dim_pad)[..., : m.head_dim]
    return values[:, :, 0], values[:, :, 1]
