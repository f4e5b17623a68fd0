"""The speed model follows the code: hls/perf.py's loop counts equal what the C simulation counts (built
with -DTELLME_PROFILE, every pipelined loop by its label), and no estimate beats the DDR roofline.
`tellme estimate` prints exactly the documented report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tellme.hls.csim import DecoderSim
from tellme.hls.design import Design
from tellme.hls.perf import loop_counts
from tellme.host.cli import main
from tellme.models.config import SHAPES, named_shape
from tellme.models.convert import convert_checkpoint
from tellme.models.default_model import resolve_model_dir
from tellme.models.synthetic import write_random_checkpoint

# (tokens, first position) of one call: decode steps (a block edge, a partial block) and prefills
CALLS = [(1, 0), (1, 37), (1, 48), (64, 0), (5, 30)]
REPORT_KEYS = {"shape", "board", "clock_mhz", "decode_tok_s", "prefill_tok_s", "ttft_s", "bytes_per_token",
               "bound_tok_s", "fits", "resources", "memory", "bottleneck", "model"}


@pytest.fixture(scope="module")
def layer_073b(tmp_path_factory):
    """One layer of the bitnet-0.73b shape with random weights (a small vocabulary: the LM head's loop is
    counted all the same, and the test stays small)."""
    root = tmp_path_factory.mktemp("layer073b")
    shape = named_shape("bitnet-0.73b").replace(num_hidden_layers=1, vocab_size=1000)
    convert_checkpoint(write_random_checkpoint(root / "hf", "llama", shape, seed=3), root / "model", quiet=True)
    return root / "model"


def profiled(model_dir, tmp_path_factory, overrides=(), board="kv260") -> DecoderSim:
    design = Design.for_model(model_dir, board, list(overrides))
    return DecoderSim.build(design, cache_dir=tmp_path_factory.mktemp("profile-cache"), profile=True)


def check_counts(sim: DecoderSim) -> None:
    design = sim.design
    rng = np.random.default_rng(0)
    for n, pos in CALLS:
        hidden = rng.standard_normal((n, design.model.hidden_size)).astype(np.float32)
        sim.reset_profile()
        sim.forward(hidden, sim.new_cache(), pos)
        counted = {k: v for k, v in sim.profile().items() if v}
        modelled = loop_counts(design, n, pos)
        unknown = sorted(set(counted) - set(modelled))
        assert not unknown, f"loops the speed model does not know: {unknown}"
        assert counted == modelled, f"{n} tokens at {pos}: counted {counted}, modelled {modelled}"


@pytest.mark.parametrize("board,head", [("kv260", "pl-int8-twopass"), ("kv260", "pl-int8"), ("kv260", "host-float32"),
                                        ("pynq-z2", "pl-int8")])
def test_bundled_model_counts(tmp_path_factory, board, head):
    """The KV260 preset with each LM head (the two-pass head's second pass too), and the PYNQ-Z2's (three
    norm lanes, two ports, shared attention adders)."""
    check_counts(profiled(resolve_model_dir(None), tmp_path_factory, [f"lm_head={head}"], board))


def test_one_layer_of_073b_counts(layer_073b, tmp_path_factory):
    sim = profiled(layer_073b, tmp_path_factory)
    assert sim.design.config.prefill_block < 64  # the prefill runs as several blocks
    check_counts(sim)


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("board", ["kv260", "zcu104", "pynq-z2"])
def test_no_estimate_beats_the_ddr_roofline(shape, board):
    design = Design.for_shape(named_shape(shape), board, name=shape)
    speed = design.speed()
    per = speed.bytes_per_token
    assert speed.decode_tok_s, "no decode position within the context"
    for p, rate in speed.decode_tok_s.items():
        bound = design.board.ddr_peak_bytes_s / (per["weights"] + per["lm_head"] + int(p) * per["kv_per_position"])
        assert 0 < rate <= bound
    for n, rate in speed.prefill_tok_s.items():  # every token of a block shares one read of the weights
        blocks = -(-int(n) // design.config.prefill_block)
        assert 0 < rate * blocks / int(n) <= design.board.ddr_peak_bytes_s / per["weights"]


def test_estimate_json_has_exactly_the_report(capsys):
    assert main(["estimate", "--shape", "bitnet-0.73b", "--board", "kv260", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == REPORT_KEYS
    assert set(report["decode_tok_s"]) == {"64", "256", "512"}  # 1024 is past the KV260's context
    assert set(report["prefill_tok_s"]) == set(report["ttft_s"]) == {"64", "128"}
    assert set(report["bytes_per_token"]) == {"weights", "lm_head", "kv_per_position"}
    assert set(report["resources"]) == {"LUT", "FF", "DSP", "BRAM36", "URAM"}
    assert set(report["memory"]) == {"cma", "largest_buffer", "host_ram"}
    assert all(len(v) == 2 for v in [*report["resources"].values(), *report["memory"].values()])
    assert report["model"].startswith("hls/perf.py v") and report["shape"]["num_hidden_layers"] == 24


def test_estimate_from_a_config_and_a_plot(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model_type": "llama", "vocab_size": 4000, "hidden_size": 512,
                                  "intermediate_size": 1376, "num_hidden_layers": 4, "num_attention_heads": 8}))
    assert main(["estimate", "--config", str(config), "--board", "zcu104", "--plot", str(tmp_path / "r.png")]) == 0
    out = capsys.readouterr().out
    assert "modelled" in out and "decode" in out
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_weights_stream_close_to_five_bits_per_three_weights(shape):
    """Per token the stripes carry at most 1.05 x 5/3 bits per ternary weight (the index words' spare bits,
    K padded to whole words, rows to multiples of the ports)."""
    model = named_shape(shape)
    weights = sum(n * k for n, k in model.linear_shapes().values()) * model.num_hidden_layers
    streamed = Design.for_shape(model, "kv260", name=shape).layout.bytes_per_token(0)["weights"]
    assert streamed <= 1.05 * weights * 5 / 3 / 8
