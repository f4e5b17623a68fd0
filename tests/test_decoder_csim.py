"""The whole decoder in the accelerator's C++ (tellme_top, compiled by g++) against the numpy reference
with the design's arithmetic (tellme.models.numerics): bit for bit, in every checkpoint flavour, with the
LM head on the PL and on the host."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from oracle_utils import oracle_report

from tellme.hls.csim import DecoderSim, run_testbench
from tellme.hls.design import Design
from tellme.host.backends import open_backend
from tellme.host.cli import main
from tellme.host.generate import GenerationStats, generate
from tellme.host.sampling import Sampler, SamplingParams
from tellme.models.ddr_image import qkv_row_order
from tellme.models.default_model import resolve_model_dir
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder
from tellme.models.reference import ReferenceModel
from tellme.models.tlmm import TlmmWeights

CLI = [sys.executable, "-m", "tellme.host.cli"]
HEADS = {"pl-int8-twopass": ["lm_head=pl-int8-twopass"], "pl-int8": ["lm_head=pl-int8"],
         "host-float32": ["lm_head=host-float32"]}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("decoder-csim-cache")


def build(model_dir, cache, sets=()) -> tuple[Design, DecoderSim]:
    design = Design.for_model(model_dir, "kv260", list(sets))
    return design, design.csim(cache_dir=cache)


def run_logits(design: Design, sim: DecoderSim, model: ReferenceModel, tokens: list[int]) -> np.ndarray:
    """Logits [n, vocab] of every position from one decode call per token."""
    kv = sim.new_cache()
    outs = [sim.forward(model.embed([t]), kv, i) for i, t in enumerate(tokens)]
    if design.config.head_on_pl:
        return np.stack(outs)
    return model.lm_head_logits(np.concatenate(outs))


def test_every_matrix_is_bit_exact(bitlinear_model, cache):
    """Every matrix of the image through the TLMM engine, unit scales: the integer sums of numpy's TLMM."""
    design, sim = build(bitlinear_model.model_dir, cache)
    folder, lay = design.folder, design.layout
    rng = np.random.default_rng(0)
    parts = {"qkv": ("q_proj", "k_proj", "v_proj"), "o": ("o_proj",), "gateup": ("gate_proj", "up_proj"),
             "down": ("down_proj",)}
    for layer in range(folder.config.num_hidden_layers):
        for matrix in lay.matrices:
            start = layer * lay.layer_words + matrix.offset
            stripes = np.stack([s.reshape(-1, 16)[start : start + matrix.words].reshape(-1)
                                for s in sim.image.stripes])
            for xq in (rng.integers(-128, 128, (3, matrix.k)), np.full((1, matrix.k), -128),
                       np.full((2, matrix.k), 127)):
                xq = xq.astype(np.int8)
                got = sim.matrix(stripes, matrix.rows_per_stripe, matrix.wpr, xq, np.ones(len(xq), np.float32))
                sums = [TlmmWeights(folder.tensor(f"layers.{layer}.{p}.tlmm"), matrix.k).matmul(xq)
                        for p in parts[matrix.name]]
                want = np.stack(sums, axis=-1).reshape(len(xq), -1) if matrix.name == "gateup" else \
                    np.concatenate(sums, axis=1)
                if matrix.name == "qkv":  # q and k rows stream in RoPE pairs
                    want = want[:, qkv_row_order(folder.config)]
                np.testing.assert_array_equal(got[:, : matrix.n], want.astype(np.float32))


@pytest.mark.parametrize("head", sorted(HEADS))
def test_logits_equal_the_reference(tiny_model, cache, head):
    """72 positions, one call each: the reference with the design's arithmetic, bit for bit."""
    design, sim = build(tiny_model.model_dir, cache, HEADS[head])
    model = design.reference()
    tokens = np.random.default_rng(5).integers(3, design.model.vocab_size, 72).tolist()
    ours = run_logits(design, sim, model, tokens)
    theirs = model.lm_head_logits(model.forward(tokens, model.new_cache(design.context)))
    np.testing.assert_array_equal(ours, theirs)


def test_pynq_z2_design_equals_its_reference(cache):
    """The PYNQ-Z2 preset orders its float work differently (norms three lanes a step, two ports: chunks of
    16, four attention lanes): its reference follows, bit for bit, prefill and decode alike."""
    design = Design.for_model(resolve_model_dir(None), "pynq-z2")
    assert design.config.elementwise_lanes == 3 and design.config.weight_ports == 2
    sim, model = design.csim(cache_dir=cache), design.reference()
    tokens = np.random.default_rng(6).integers(3, design.model.vocab_size, 24).tolist()
    ours = run_logits(design, sim, model, tokens)
    theirs = model.lm_head_logits(model.forward(tokens, model.new_cache(design.context)))
    np.testing.assert_array_equal(ours, theirs)
    prefill = sim.forward(model.embed(tokens), sim.new_cache(), 0)
    np.testing.assert_array_equal(prefill, ours[-1])  # the last token's logits


@pytest.mark.parametrize("head", sorted(HEADS))
def test_the_accelerators_numerics_stay_close_to_transformers(tiny_model, cache, head):
    """The design (fp16 KV, polynomial exp, lane sums, and its LM head) against the transformers-numerics
    reference (float32 KV, embedding and head). With the float head: within the oracle's per-position bound
    (the fp16 cache alone moves logits by ~1e-2 of their range). The int8 head and embedding quantise what
    the bound measures, so there the bar is the argmax: the same on >= 98% of positions."""
    design, sim = build(tiny_model.model_dir, cache, HEADS[head])
    tokens = np.random.default_rng(5).integers(3, design.model.vocab_size, 72).tolist()
    ours = run_logits(design, sim, design.reference(), tokens)
    report = oracle_report(ours, ReferenceModel(design.folder).logits(tokens))
    print(tiny_model.flavour, head, report)
    assert report["argmax_agreement"] >= 0.98, report
    if head == "host-float32":
        assert report["positions_out_of_bound"] <= 1, report


def test_decode_at_every_position_up_to_the_context(bitlinear_model, cache):
    """One decode call per position, 0 .. max_context-1: identical to a single call over the same tokens
    (so the cache is addressed right at every position), and refused past the end."""
    design, sim = build(bitlinear_model.model_dir, cache, HEADS["host-float32"])
    model = design.reference()
    context = sim.max_context
    assert context == design.model.max_position_embeddings == 128
    tokens = np.random.default_rng(9).integers(3, design.model.vocab_size, context).tolist()
    kv = sim.new_cache()
    steps = np.concatenate([sim.forward(model.embed([t]), kv, pos) for pos, t in enumerate(tokens)])
    kv_one = sim.new_cache()
    np.testing.assert_array_equal(steps, sim.forward(model.embed(tokens), kv_one, 0))
    np.testing.assert_array_equal(kv, kv_one)
    np.testing.assert_array_equal(steps, model.forward(tokens, model.new_cache(context)))
    with pytest.raises(UserError, match="context"):
        sim.forward(model.embed([5]), kv, context)


def test_greedy_continuation_matches_the_reference(bitlinear_model):
    prompt = np.random.default_rng(2).integers(3, 300, 8).tolist()
    runs = {}
    for name in ("reference", "csim"):
        backend = open_backend(name, bitlinear_model.model_dir)
        runs[name] = list(generate(backend, prompt, 32, Sampler(SamplingParams()), GenerationStats()))
    assert len(runs["csim"]) == 32
    assert runs["csim"] == runs["reference"]


def test_cli_run_csim_streams_the_same_tokens_as_reference(bitlinear_model):
    outputs = {}
    for backend in ("reference", "csim"):
        result = subprocess.run(
            [*CLI, "run", "--backend", backend, "--model", str(bitlinear_model.model_dir), "--prompt",
             "And the table", "--max-new-tokens", "16"],
            capture_output=True, text=True, timeout=300, check=True,
        )
        outputs[backend] = result.stdout
        assert f"[{backend}]" in result.stderr and "decode" in result.stderr
    assert outputs["csim"] == outputs["reference"]


def test_reference_backend_predicts_the_accelerator_on_the_bundled_model():
    """The reference computes what the design computes, so the bundled model's greedy text is the same."""
    outputs = {}
    for backend in ("reference", "csim"):
        result = subprocess.run(
            [*CLI, "run", "--backend", backend, "--prompt", "And it came to pass", "--max-new-tokens", "24",
             "--temperature", "0"],
            capture_output=True, text=True, timeout=300, check=True,
        )
        outputs[backend] = result.stdout
    assert len(outputs["reference"]) > len("And it came to pass") + 24
    assert outputs["csim"] == outputs["reference"]


def test_cli_logits_csim(bitlinear_model, tmp_path):
    tokens = [5, 17, 99, 3, 250]
    for backend in ("reference", "csim"):
        subprocess.run([*CLI, "logits", "--backend", backend, "--model", str(bitlinear_model.model_dir),
                        "--tokens", ",".join(map(str, tokens)), "--out", str(tmp_path / f"{backend}.npy")],
                       check=True, capture_output=True, timeout=300)
    ours, theirs = np.load(tmp_path / "csim.npy"), np.load(tmp_path / "reference.npy")
    assert ours.shape == theirs.shape == (5, 320)
    np.testing.assert_array_equal(ours, theirs)


def test_prompt_overflowing_the_kv_cache_is_a_one_line_error(bitlinear_model):
    result = subprocess.run(
        [*CLI, "run", "--backend", "csim", "--model", str(bitlinear_model.model_dir), "--prompt",
         "the table " * 100, "--max-new-tokens", "4"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("tellme: error:")]
    assert len(errors) == 1 and "context" in errors[0]


def test_full_forward_under_asan_and_ubsan(bitlinear_model, tmp_path, cache):
    out = tmp_path / "project"
    assert main(["hls", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 0
    result = run_testbench(out, "decoder", sanitize=True, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_synthesised_types_give_the_same_logits(bitlinear_model, cache):
    """The fast C simulation's native integers against the ap_int types Vitis HLS synthesises."""
    design = Design.for_model(bitlinear_model.model_dir, "kv260")
    fast, exact = design.csim(cache_dir=cache), DecoderSim.build(design, cache_dir=cache, fast=False)
    model = design.reference()
    tokens = np.random.default_rng(3).integers(3, 320, 20).tolist()
    np.testing.assert_array_equal(run_logits(design, fast, model, tokens), run_logits(design, exact, model, tokens))


def test_a_shape_design_does_not_run(cache):
    design = Design.for_shape(open_model_folder(__import__("tellme.models.default_model", fromlist=["x"])
                                                .default_model_dir()).config, "kv260")
    sim = design.csim(cache_dir=cache)
    with pytest.raises(UserError, match="needs a model folder"):
        sim.forward(np.zeros((1, design.model.hidden_size), np.float32), sim.new_cache(), 0)
