"""Prefill in the accelerator's C++: a block of tokens in one call computes exactly what one decode call
per token computes (same KV cache, same hidden states), and never looks at later tokens."""

from __future__ import annotations

import numpy as np
import pytest

from tellme.hls.csim import DecoderSim
from tellme.hls.design import Design
from tellme.host.backends import HostEnds
from tellme.models.ddr_image import unstripe_kv
from tellme.models.model_folder import open_model_folder

BLOCK = 8  # tokens per block
R = 16  # positions per K/V block (the preset)


@pytest.fixture(scope="module")
def sim(bitlinear_model, tmp_path_factory) -> DecoderSim:
    overrides = [f"prefill_block={BLOCK}", "lm_head=host-float32"]
    design = Design.for_model(bitlinear_model.model_dir, "kv260", overrides)
    return design.csim(cache_dir=tmp_path_factory.mktemp("prefill-cache"))


@pytest.fixture(scope="module")
def tiled_sim(bitlinear_model, tmp_path_factory) -> DecoderSim:
    """Small tiles: every matrix streams through in many, and a tile of qkv ends inside the first half of
    a head, where a RoPE partner would be cut from its pair if pairs were not streamed side by side."""
    base = Design.for_model(bitlinear_model.model_dir, "kv260", [f"prefill_block={BLOCK}"])
    qkv, ports, head_dim = base.layout.matrices[0], base.config.weight_ports, base.model.head_dim
    tile = next(t for t in range(64, 4096) if 0 < (t // qkv.wpr) * ports % head_dim < head_dim // 2)
    overrides = [f"prefill_block={BLOCK}", f"tlmm.tile_words={tile}", "lm_head=host-float32"]
    design = Design.for_model(bitlinear_model.model_dir, "kv260", overrides)
    assert tile // design.layout.max_wpr < max(m.rows_per_stripe for m in design.layout.matrices)
    return design.csim(cache_dir=tmp_path_factory.mktemp("prefill-tiled-cache"))


@pytest.fixture(scope="module")
def ends(bitlinear_model) -> HostEnds:
    return HostEnds(open_model_folder(bitlinear_model.model_dir))


@pytest.fixture(scope="module")
def head_sim(bitlinear_model, tmp_path_factory) -> DecoderSim:
    """The LM head on the PL: a call gives the last token's logits."""
    design = Design.for_model(bitlinear_model.model_dir, "kv260", [f"prefill_block={BLOCK}"])
    return design.csim(cache_dir=tmp_path_factory.mktemp("prefill-head-cache"))


def tokens(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(3, 320, n).tolist()


@pytest.mark.parametrize("n", [1, 2, 3, R - 1, R + 1, BLOCK, BLOCK + 1, 2 * BLOCK + 3])
@pytest.mark.parametrize("start", [0, 5, R])
def test_prefill_equals_decode_steps(sim, head_sim, ends, n, start):
    history, prompt = tokens(start, seed=1), tokens(n, seed=2)
    for s in (sim, head_sim):
        kv_pre, kv_dec = s.new_cache(), s.new_cache()
        if start:
            s.forward(ends.embed(history), kv_pre, 0)
            s.forward(ends.embed(history), kv_dec, 0)
        prefill = s.forward(ends.embed(prompt), kv_pre, start)
        decode = [s.forward(ends.embed([t]), kv_dec, start + i) for i, t in enumerate(prompt)]
        np.testing.assert_array_equal(kv_pre, kv_dec)
        if s is sim:
            np.testing.assert_array_equal(prefill, np.concatenate(decode))  # every position's hidden state
        else:
            np.testing.assert_array_equal(prefill, decode[-1])  # the last token's logits


def test_later_tokens_do_not_change_earlier_positions(sim, ends):
    prompt = tokens(3 * R + 2, seed=3)
    changed = list(prompt)
    changed[9] = (changed[9] + 1) % 320
    kv1, kv2 = sim.new_cache(), sim.new_cache()
    a = sim.forward(ends.embed(prompt), kv1, 0)
    b = sim.forward(ends.embed(changed), kv2, 0)
    np.testing.assert_array_equal(a[:9], b[:9])
    k1, _ = unstripe_kv(kv1, sim.design.layout)
    k2, _ = unstripe_kv(kv2, sim.design.layout)
    np.testing.assert_array_equal(k1[:, :9], k2[:, :9])
    assert not np.array_equal(a[9:], b[9:])


def test_prefill_over_many_weight_tiles_equals_decode_and_the_one_tile_design(sim, tiled_sim, ends):
    """Each tile serves every token of the block; the result cannot depend on how rows are tiled."""
    prompt = tokens(2 * BLOCK + 3, seed=4)
    kv_pre = tiled_sim.new_cache()
    prefill = tiled_sim.forward(ends.embed(prompt), kv_pre, 0)
    kv_dec = tiled_sim.new_cache()
    decode = np.concatenate([tiled_sim.forward(ends.embed([t]), kv_dec, i) for i, t in enumerate(prompt)])
    np.testing.assert_array_equal(prefill, decode)
    np.testing.assert_array_equal(kv_pre, kv_dec)
    np.testing.assert_array_equal(prefill, sim.forward(ends.embed(prompt), sim.new_cache(), 0))
