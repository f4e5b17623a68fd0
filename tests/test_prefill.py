"""Prefill in the accelerator's C++: a block of tokens in one call computes exactly what one decode call
per token computes (same KV cache, same hidden states), and never looks at later tokens."""

from __future__ import annotations

import numpy as np
import pytest

from tellme.hls.csim import DecoderSim
from tellme.hls.design import Design
from tellme.host.backends import HostEnds
from tellme.models.model_folder import open_model_folder

N_PE = 4
BLOCK = 8


@pytest.fixture(scope="module")
def sim(bitlinear_model, tmp_path_factory) -> DecoderSim:
    overrides = [f"attention_pes={N_PE}", f"prefill_block={BLOCK}"]
    design = Design.for_model(bitlinear_model.model_dir, "kv260", overrides)
    return design.csim(cache_dir=tmp_path_factory.mktemp("prefill-cache"))


@pytest.fixture(scope="module")
def tiled_sim(bitlinear_model, tmp_path_factory) -> DecoderSim:
    """A weight buffer of 3 lines: every matrix streams through in many tiles of 3 rows."""
    overrides = [f"attention_pes={N_PE}", f"prefill_block={BLOCK}", "tlmm.weight_buffer_depth=3"]
    design = Design.for_model(bitlinear_model.model_dir, "kv260", overrides)
    assert design.config.tile_rows == 3
    return design.csim(cache_dir=tmp_path_factory.mktemp("prefill-tiled-cache"))


@pytest.fixture(scope="module")
def ends(bitlinear_model) -> HostEnds:
    return HostEnds(open_model_folder(bitlinear_model.model_dir))


def tokens(n: int, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(3, 320, n).tolist()


@pytest.mark.parametrize("n", [1, 2, N_PE - 1, N_PE, N_PE + 1, 3 * N_PE + 2, BLOCK, 2 * BLOCK + 1])
@pytest.mark.parametrize("start", [0, 5])
def test_prefill_equals_decode_steps(sim, ends, n, start):
    history, prompt = tokens(start, seed=1), tokens(n, seed=2)
    k_pre, v_pre = sim.new_cache()
    k_dec, v_dec = sim.new_cache()
    if start:
        sim.forward(ends.embed(history), k_pre, v_pre, 0)
        sim.forward(ends.embed(history), k_dec, v_dec, 0)
    prefill = sim.forward(ends.embed(prompt), k_pre, v_pre, start)
    decode = np.concatenate([sim.forward(ends.embed([t]), k_dec, v_dec, start + i) for i, t in enumerate(prompt)])
    np.testing.assert_array_equal(k_pre, k_dec)
    np.testing.assert_array_equal(v_pre, v_dec)
    np.testing.assert_array_equal(prefill, decode)  # every position, so the last logits too
    np.testing.assert_array_equal(ends.lm_head(prefill[-1:]), ends.lm_head(decode[-1:]))


def test_later_tokens_do_not_change_earlier_positions(sim, ends):
    prompt = tokens(3 * N_PE + 2, seed=3)
    changed = list(prompt)
    changed[9] = (changed[9] + 1) % 320
    k1, v1 = sim.new_cache()
    k2, v2 = sim.new_cache()
    a = sim.forward(ends.embed(prompt), k1, v1, 0)
    b = sim.forward(ends.embed(changed), k2, v2, 0)
    np.testing.assert_array_equal(a[:9], b[:9])
    np.testing.assert_array_equal(k1[:, :9], k2[:, :9])
    assert not np.array_equal(a[9:], b[9:])


def test_prefill_over_many_weight_tiles_equals_decode_and_the_one_tile_design(sim, tiled_sim, ends):
    """Each tile serves every token of the block; the result cannot depend on how rows are tiled."""
    prompt = tokens(2 * BLOCK + 3, seed=4)
    k_pre, v_pre = tiled_sim.new_cache()
    prefill = tiled_sim.forward(ends.embed(prompt), k_pre, v_pre, 0)
    k_dec, v_dec = tiled_sim.new_cache()
    decode = np.concatenate([tiled_sim.forward(ends.embed([t]), k_dec, v_dec, i) for i, t in enumerate(prompt)])
    np.testing.assert_array_equal(prefill, decode)
    np.testing.assert_array_equal(k_pre, k_dec)
    k_one, v_one = sim.new_cache()
    np.testing.assert_array_equal(prefill, sim.forward(ends.embed(prompt), k_one, v_one, 0))
