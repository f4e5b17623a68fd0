"""transformers' BitNetForCausalLM as the oracle, and the tolerances our logits must meet against it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TORCHDYNAMO_DISABLE", "1")

MEDIAN_MAX_ABS = 1e-4  # median over positions of max |logit difference|
PER_POSITION_REL = 1e-2  # every position within this fraction of max |logit|
ARGMAX_AGREEMENT = 0.99


def load_oracle(ckpt_dir: Path):
    import torch
    from transformers import BitNetForCausalLM

    torch.manual_seed(0)
    model = BitNetForCausalLM.from_pretrained(str(ckpt_dir), dtype=torch.float32)
    return model.eval()


def hf_logits(ckpt_dir: Path | object, tokens: list[int]) -> np.ndarray:
    """float32 logits [n, vocab] from one full forward of transformers' model (no cache)."""
    import torch

    model = load_oracle(ckpt_dir) if isinstance(ckpt_dir, str | Path) else ckpt_dir
    with torch.no_grad():
        out = model(torch.tensor([tokens], dtype=torch.long))
    return out.logits[0].float().numpy()


def hf_greedy(ckpt_dir: Path | object, prompt: list[int], n_new: int) -> list[int]:
    """Greedy continuation by transformers' model, recomputing the full sequence each step."""
    model = load_oracle(ckpt_dir) if isinstance(ckpt_dir, str | Path) else ckpt_dir
    tokens = list(prompt)
    for _ in range(n_new):
        tokens.append(int(hf_logits(model, tokens)[-1].argmax()))
    return tokens[len(prompt):]


def oracle_report(ours: np.ndarray, theirs: np.ndarray) -> dict:
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64)).max(axis=-1)
    bound = PER_POSITION_REL * np.abs(theirs).max(axis=-1)
    return {
        "median_max_abs": float(np.median(diff)),
        "worst_relative": float((diff / bound).max() * PER_POSITION_REL),
        "argmax_agreement": float((ours.argmax(-1) == theirs.argmax(-1)).mean()),
        "positions_out_of_bound": int((diff > bound).sum()),
    }


def assert_oracle_close(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """The oracle tolerances of the foundation issue; returns the figures for reporting."""
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    r = oracle_report(ours, theirs)
    assert r["median_max_abs"] <= MEDIAN_MAX_ABS, r
    assert r["positions_out_of_bound"] == 0, r
    assert r["argmax_agreement"] >= ARGMAX_AGREEMENT, r
    return r
