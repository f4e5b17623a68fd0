"""Our converted model against transformers' BitNetForCausalLM, in every checkpoint flavour."""

import subprocess
import sys

import numpy as np
from oracle_utils import assert_oracle_close, hf_greedy, hf_logits, load_oracle

from tellme.models.reference import ReferenceModel

POSITIONS = 72
GREEDY_NEW = 16


def prompt_tokens(n: int, vocab: int, seed: int = 3) -> list[int]:
    return np.random.default_rng(seed).integers(3, vocab, n).tolist()


def reference_greedy(model: ReferenceModel, prompt: list[int], n_new: int) -> list[int]:
    """Prefill once, then decode through the KV cache: the path generation takes."""
    cache = model.new_cache(len(prompt) + n_new)
    hidden = model.forward(prompt, cache)
    out = []
    for _ in range(n_new):
        out.append(int(model.lm_head_logits(hidden[-1:])[0].argmax()))
        hidden = model.forward([out[-1]], cache)
    return out


def test_logits_match_transformers(tiny_model):
    tokens = prompt_tokens(POSITIONS, 320)
    theirs = hf_logits(tiny_model.oracle_checkpoint, tokens)
    ours = ReferenceModel.load(tiny_model.model_dir).logits(tokens)
    report = assert_oracle_close(ours, theirs)
    print(tiny_model.flavour, report)


def test_greedy_continuation_matches_transformers(tiny_model):
    prompt = prompt_tokens(8, 320, seed=11)
    oracle = load_oracle(tiny_model.oracle_checkpoint)
    expected = hf_greedy(oracle, prompt, GREEDY_NEW)
    assert reference_greedy(ReferenceModel.load(tiny_model.model_dir), prompt, GREEDY_NEW) == expected


def test_tlmm_path_is_bit_exact_with_naive_integer_path(bitlinear_model):
    tokens = prompt_tokens(40, 320)
    tlmm = ReferenceModel.load(bitlinear_model.model_dir, matmul="tlmm").logits(tokens)
    naive = ReferenceModel.load(bitlinear_model.model_dir, matmul="naive").logits(tokens)
    np.testing.assert_array_equal(tlmm, naive)


def test_prefill_then_decode_equals_one_pass(bitlinear_model):
    model = ReferenceModel.load(bitlinear_model.model_dir)
    tokens = prompt_tokens(20, 320)
    full = model.logits(tokens)
    cache = model.new_cache(len(tokens))
    steps = [model.lm_head_logits(model.forward(tokens[:5], cache))[-1]]
    steps += [model.lm_head_logits(model.forward([t], cache))[0] for t in tokens[5:]]
    np.testing.assert_allclose(np.stack(steps), full[4:], rtol=0, atol=1e-4)


def test_cli_convert_then_logits_reproduces_transformers(tmp_path, bitlinear_model):
    """The acceptance path, through the installed console script: with --kv-cache float32 transformers'
    numerics; by default what the accelerator computes (its fp16 KV cache, float order and int8 LM head),
    exactly as the design's reference predicts it."""
    tokens = prompt_tokens(64, 320)
    out_dir = tmp_path / "converted"
    tellme = [sys.executable, "-m", "tellme.host.cli"]
    subprocess.run([*tellme, "convert", str(bitlinear_model.checkpoint), str(out_dir)], check=True)
    logits = {}
    for kv in ("float32", "float16"):
        out = tmp_path / f"logits-{kv}.npy"
        subprocess.run([*tellme, "logits", "--model", str(out_dir), "--backend", "reference", "--kv-cache", kv,
                        "--tokens", ",".join(map(str, tokens)), "--out", str(out)], check=True)
        logits[kv] = np.load(out)
        assert logits[kv].dtype == np.float32 and logits[kv].shape == (64, 320)
    assert_oracle_close(logits["float32"], hf_logits(bitlinear_model.checkpoint, tokens))
    from tellme.hls.design import Design

    accelerator = Design.for_model(out_dir).reference()  # the KV260 preset's arithmetic, int8 head and all
    fp16 = accelerator.lm_head_logits(accelerator.forward(tokens, accelerator.new_cache(len(tokens))))
    np.testing.assert_array_equal(logits["float16"], fp16)
