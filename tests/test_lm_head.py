"""The two-pass LM head's arithmetic (tellme.models.reference.twopass_head_logits) and its DDR planes
(tellme.models.ddr_image.split_head_rows), which the C simulation follows bit for bit
(tests/test_decoder_csim.py)."""

from __future__ import annotations

import numpy as np
import pytest

from tellme.hls.design import Design, default_head
from tellme.models.config import named_shape
from tellme.models.ddr_image import WORD_BYTES, DdrLayout, split_head_rows
from tellme.models.reference import approx_head_weights, int8_head_logits, twopass_head_logits


def nibbles(words: np.ndarray, count: int) -> np.ndarray:
    """words uint8 [rows, n, 16] -> values 0..15 [rows, count] (value j at bits 4(j % 32) of word j // 32)."""
    flat = words.reshape(len(words), -1)
    out = np.empty((len(words), flat.shape[1] * 2), dtype=np.int16)
    out[:, 0::2], out[:, 1::2] = flat & 15, flat >> 4
    return out[:, :count]


def test_split_planes_rebuild_every_int8_weight():
    shape = named_shape("bitnet-0.73b").replace(hidden_size=100, vocab_size=256)
    layout = DdrLayout(shape, 6, 16, 16, True, head_split=True)
    table = np.arange(-128, 128, dtype=np.int16).astype(np.int8)
    table = np.stack([np.roll(np.resize(table, 100), r) for r in range(256)])  # every value, every column
    divisors = np.linspace(1.0, 2.0, 256, dtype=np.float32)
    high, low = split_head_rows(table, divisors, layout)
    assert high.shape == (256, layout.head_row_words, WORD_BYTES) and layout.head_row_words == 4 + 1
    assert low.shape == (256, layout.head_low_row_words, WORD_BYTES)
    h = nibbles(high[:, :-1], 100)
    h = np.where(h >= 8, h - 16, h)  # 4-bit two's complement
    np.testing.assert_array_equal(16 * h + nibbles(low, 100), table)
    np.testing.assert_array_equal(high[:, -1, :4].copy().view("<f4").ravel(), divisors)
    assert not high[:, :-1].reshape(256, -1)[:, 50:].any()  # past the row: zero nibbles


def test_candidates_get_the_int8_logits_and_the_rest_the_first_pass():
    rng = np.random.default_rng(1)
    table = rng.integers(-127, 128, (300, 64)).astype(np.int8)
    divisors = rng.uniform(0.5, 2.0, 300).astype(np.float32)
    hidden = rng.standard_normal((3, 64)).astype(np.float32)
    exact = int8_head_logits(table, divisors, hidden)
    got = twopass_head_logits(table, divisors, hidden, candidates=8)
    for t in range(3):
        same = got[t] == exact[t]
        assert same.sum() >= 8
        first = twopass_head_logits(table, divisors, hidden[t : t + 1], candidates=1)[0]
        assert np.argmax(got[t]) == np.argmax(exact[t])  # the int8 head's token is among 8 candidates here
        assert first[np.argmax(first)] == exact[t, np.argmax(first)]  # the best first-pass row is rescored
    np.testing.assert_array_equal(twopass_head_logits(table, divisors, hidden, candidates=300), exact)


def test_first_pass_takes_each_weight_at_the_middle_of_its_bucket():
    w = np.array([[-128, -113, -1, 0, 15, 16, 127]], dtype=np.int8)
    np.testing.assert_array_equal(approx_head_weights(w), [[-120, -120, -8, 8, 8, 24, 120]])
    assert np.abs(approx_head_weights(w) - w.astype(np.int32)).max() <= 8


def test_equal_first_pass_logits_keep_the_lower_row():
    """Rows 1 and 2 tie in the first pass and differ in the int8 one: the candidate is row 1, as the
    kernel's strict comparison keeps the earlier row."""
    table = np.zeros((4, 32), dtype=np.int8)
    table[1, 0], table[2, 0], table[3, 0] = 16, 31, -64  # high nibbles 1, 1, -4
    hidden = np.zeros((1, 32), dtype=np.float32)
    hidden[0, 0] = 1.0
    got = twopass_head_logits(table, np.ones(4, np.float32), hidden, candidates=1)[0]
    assert got[1] == 16.0 and got[2] == 24.0  # row 1 rescored (w = 16); row 2 keeps 16 h + 8


@pytest.mark.parametrize("shape,head", [("bitnet-0.73b", "pl-int8"), ("bitnet-2b-4t", "pl-int8-twopass")])
def test_default_head_follows_the_heads_share_of_a_token(shape, head):
    model = named_shape(shape)
    assert default_head(model, 6) == head
    assert Design.for_shape(model, "kv260", name=shape).config.lm_head == head
    assert Design.for_shape(model, "kv260", ["lm_head=pl-int8"], name=shape).config.lm_head == "pl-int8"


def test_a_default_two_pass_head_that_does_not_fit_gives_way():
    """The bundled model's head is a large share of its bytes: two-pass on the KV260; on the PYNQ-Z2 the
    two-pass head's logic does not fit beside the rest, so the whole-row head is taken (and a user's
    explicit choice is kept, fitting or not)."""
    from tellme.models.default_model import resolve_model_dir

    model = resolve_model_dir(None)
    assert Design.for_model(model, "kv260").config.lm_head == "pl-int8-twopass"
    pynq = Design.for_model(model, "pynq-z2")
    assert pynq.config.lm_head == "pl-int8" and pynq.fit().fits
    assert Design.for_model(model, "pynq-z2", ["lm_head=pl-int8-twopass"]).config.lm_head == "pl-int8-twopass"
