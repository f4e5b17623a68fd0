"""The whole decoder in the accelerator's C++ (tellme_top, compiled by g++) against the numpy reference."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from oracle_utils import assert_oracle_close, oracle_report

from tellme.hls.csim import DecoderSim, run_testbench
from tellme.hls.design import Design
from tellme.host.backends import HostEnds, open_backend
from tellme.host.cli import main
from tellme.host.generate import GenerationStats, generate
from tellme.host.sampling import Sampler, SamplingParams
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder
from tellme.models.packing import unpack_tlmm
from tellme.models.quant import act_quant
from tellme.models.reference import ReferenceModel
from tellme.models.tlmm import naive_matmul

CLI = [sys.executable, "-m", "tellme.host.cli"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("decoder-csim-cache")


def build_sim(model_dir, cache) -> DecoderSim:
    return Design.for_model(model_dir, "kv260").csim(cache_dir=cache)


def csim_logits(sim: DecoderSim, ends: HostEnds, tokens: list[int]) -> np.ndarray:
    k_cache, v_cache = sim.new_cache()
    return ends.lm_head(sim.forward(ends.embed(tokens), k_cache, v_cache, 0))


def test_integer_matmuls_are_bit_exact(bitlinear_model, cache):
    """Every projection through the decoder's on-chip TLMM path, s_x = s_w = 1: y is the int32 sum."""
    sim = build_sim(bitlinear_model.model_dir, cache)
    folder = open_model_folder(bitlinear_model.model_dir)
    rng = np.random.default_rng(0)
    for layer in range(folder.config.num_hidden_layers):
        for proj, (_, k) in folder.config.linear_shapes().items():
            w = unpack_tlmm(folder.tensor(f"layers.{layer}.{proj}.tlmm"), k)
            for xq in (rng.integers(-128, 128, k), np.full(k, -128), np.full(k, 127)):
                got = sim.matvec(layer, proj, xq, 1.0, 1.0)
                want = naive_matmul(xq[None].astype(np.int8), w)[0]
                np.testing.assert_array_equal(got, want.astype(np.float32))


def test_logits_match_the_reference(tiny_model, cache):
    """72 positions in one call, against the reference with the same fp16 KV cache."""
    folder = open_model_folder(tiny_model.model_dir)
    sim = build_sim(tiny_model.model_dir, cache)
    tokens = np.random.default_rng(5).integers(3, folder.config.vocab_size, 72).tolist()
    ours = csim_logits(sim, HostEnds(folder), tokens)
    reference = ReferenceModel(folder, kv_dtype=np.float16).logits(tokens)
    report = assert_oracle_close(ours, reference)
    print(tiny_model.flavour, report)


def test_decode_at_every_position_up_to_the_context(bitlinear_model, cache):
    """One decode call per position, 0 .. max_context-1: identical to a single call over the same tokens
    (so the cache is addressed right at every position), close to the reference, and refused past the end.
    Over 128 positions an int8 activation on a rounding boundary may round the other way once and shift
    every later position a little, so the reference check is the per-position bound and the argmax."""
    folder = open_model_folder(bitlinear_model.model_dir)
    sim = build_sim(bitlinear_model.model_dir, cache)
    ends = HostEnds(folder)
    context = sim.max_context
    assert context == folder.config.max_position_embeddings == 128
    tokens = np.random.default_rng(9).integers(3, folder.config.vocab_size, context).tolist()
    k_cache, v_cache = sim.new_cache()
    steps = np.concatenate([sim.forward(ends.embed([t]), k_cache, v_cache, pos) for pos, t in enumerate(tokens)])
    k_one, v_one = sim.new_cache()
    np.testing.assert_array_equal(steps, sim.forward(ends.embed(tokens), k_one, v_one, 0))
    np.testing.assert_array_equal(k_cache, k_one)
    np.testing.assert_array_equal(v_cache, v_one)
    report = oracle_report(ends.lm_head(steps), ReferenceModel(folder, kv_dtype=np.float16).logits(tokens))
    assert report["positions_out_of_bound"] == 0 and report["argmax_agreement"] >= 0.99, report
    with pytest.raises(UserError, match="context"):
        sim.forward(ends.embed([5]), k_cache, v_cache, context)


def test_greedy_continuation_matches_the_reference(bitlinear_model):
    prompt = np.random.default_rng(2).integers(3, 300, 8).tolist()
    runs = {}
    for name in ("reference", "csim"):
        backend = open_backend(name, bitlinear_model.model_dir)
        sampler = Sampler(SamplingParams())
        runs[name] = list(generate(backend, prompt, 32, sampler, GenerationStats()))
    assert len(runs["csim"]) == 32
    assert runs["csim"] == runs["reference"]


def test_full_forward_under_asan_and_ubsan(bitlinear_model, tmp_path, cache):
    out = tmp_path / "project"
    assert main(["hls", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 0
    result = run_testbench(out, "decoder", sanitize=True, cache_dir=cache)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS" in result.stdout


def test_decoder_testbench_fails_on_a_wrong_model(bitlinear_model, tmp_path, cache):
    out = tmp_path / "project"
    assert main(["hls", "--model", str(bitlinear_model.model_dir), "--out", str(out)]) == 0
    expected = out / "tb" / "data" / "decoder" / "hidden_out.bin"
    hidden = np.fromfile(expected, dtype=np.float32)
    hidden[3] += 0.5
    hidden.tofile(expected)
    result = run_testbench(out, "decoder", cache_dir=cache)
    assert result.returncode == 1 and "MISMATCH" in result.stdout


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
    """Both store the KV cache as fp16, so the bundled model's greedy text is the same on both."""
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
    # the reference backend keeps its KV cache in float32 (transformers' numerics), the design in fp16:
    # that alone moves logits by ~1e-2, inside the per-position bound
    report = oracle_report(ours, theirs)
    assert report["positions_out_of_bound"] == 0 and report["argmax_agreement"] == 1.0, report


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


def test_dequantised_matvec_is_bit_exact_with_numpy(bitlinear_model, cache):
    """Quantised activations and real scales: y = float32(acc) / (s_x * s_w) bit for bit, as numpy computes it."""
    sim = build_sim(bitlinear_model.model_dir, cache)
    folder = open_model_folder(bitlinear_model.model_dir)
    n, k = folder.config.linear_shapes()["down_proj"]
    x = np.random.default_rng(4).standard_normal(k).astype(np.float32)
    xq, s_x = act_quant(x[None])
    s_w = np.float32(folder.tensor("layers.1.down_proj.scale")[0])
    w = unpack_tlmm(folder.tensor("layers.1.down_proj.tlmm"), k)
    want = naive_matmul(xq, w).astype(np.float32) / (s_x * s_w)
    got = sim.matvec(1, "down_proj", xq[0], float(s_x[0, 0]), float(s_w))
    np.testing.assert_array_equal(got.view(np.uint32), want[0].view(np.uint32))
