"""Finish the bundled model: convert a run's checkpoint, measure it through the numpy reference, write
MODEL_CARD.md. Uses tellme.models (convert, reference) only; no TensorFlow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..convert import convert_checkpoint
from ..reference import ReferenceModel
from .data import SAMPLE_PROMPT, load_split

SAMPLE_TEMPERATURE = 0.7
CARD = "MODEL_CARD.md"


def reference_generate(
    model: ReferenceModel, prompt: list[int], new_tokens: int, temperature: float = 0.0, seed: int = 0
) -> list[int]:
    """Continuation through the reference's KV cache: greedy at temperature 0, else seeded sampling."""
    rng = np.random.default_rng(seed)
    cache = model.new_cache(min(len(prompt) + new_tokens, model.config.max_position_embeddings))
    logits = model.lm_head_logits(model.forward(list(prompt), cache))[-1]
    out: list[int] = []
    for _ in range(new_tokens):
        if temperature <= 0:
            out.append(int(np.argmax(logits)))
        else:
            z = logits.astype(np.float64) / temperature
            probs = np.exp(z - z.max())
            out.append(int(rng.choice(len(probs), p=probs / probs.sum())))
        if cache.length >= cache.max_context:
            break
        logits = model.lm_head_logits(model.forward([out[-1]], cache))[-1]
    return out


def reference_val_loss(model: ReferenceModel, tokens: np.ndarray, length: int, windows: int) -> float:
    """Mean next-token cross-entropy (nats) over the first `windows` non-overlapping windows."""
    total, count = 0.0, 0
    for w in range(min(windows, (len(tokens) - 1) // length)):
        span = tokens[w * length : (w + 1) * length + 1].astype(np.int64)
        logits = model.logits(span[:-1].tolist()).astype(np.float64)
        peak = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - peak).sum(axis=-1)) + peak[:, 0]
        total += float((log_z - logits[np.arange(length), span[1:]]).sum())
        count += length
    return total / count


def _dir_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def _table(rows: list[tuple[str, str]]) -> str:
    lines = ["| field | value |", "|---|---|"]
    return "\n".join(lines + [f"| {name} | {value} |" for name, value in rows])


def _shape_rows(summary: dict, folder_bytes: int) -> list[tuple[str, str]]:
    s = summary["shape"]
    heads = f'{s["num_attention_heads"]} / {s["num_key_value_heads"]} / {s["hidden_size"] // s["num_attention_heads"]}'
    return [
        ("architecture", "transformers `BitNetForCausalLM` (relu2 MLP, sub-norms, GQA, rotate_half RoPE)"),
        ("parameters", f'{summary["parameters"]:,} (embedding and LM head untied and float; block linears ternary)'),
        ("hidden / intermediate", f'{s["hidden_size"]} / {s["intermediate_size"]}'),
        ("layers", str(s["num_hidden_layers"])),
        ("heads / KV heads / head dim", heads),
        ("context", str(s["max_position_embeddings"])),
        ("RoPE theta, RMSNorm eps", f'{s["rope_theta"]}, {s["rms_norm_eps"]}'),
        ("folder size", f"{folder_bytes / 1e6:.1f} MB"),
    ]


def _training_rows(summary: dict, reference: dict) -> list[tuple[str, str]]:
    t = summary["settings"]
    epochs = summary["tokens_seen"] / summary["corpus_train_tokens"]
    schedule = (
        f'AdamW, peak lr {t["peak_lr"]}, {t["warmup_steps"]} warm-up steps, cosine to '
        f'{t["final_lr_fraction"]} x peak over the time budget, weight decay {t["weight_decay"]}, '
        f'gradient clip {t["grad_clip"]}'
    )
    ref_loss = reference["val_loss"]
    keras_val = "not measured (interrupted run: last periodic export)"
    if summary.get("val_loss") is not None:
        keras_val = f'{summary["val_loss"]:.3f} nats/token, perplexity {summary["val_perplexity"]:.1f}'
    return [
        ("steps", f'{summary["steps"]:,} (batch {t["batch_size"]} x {t["seq_len"]} tokens)'),
        ("tokens seen", f'{summary["tokens_seen"]:,} (~{epochs:.1f} epochs)'),
        ("wall time of the training loop", f'{summary["train_seconds"] / 60.0:.0f} min'),
        ("optimiser", schedule),
        (f'final train loss (mean of the last {t["log_every"]} steps)', f'{summary["train_loss"]:.3f} nats/token'),
        ("validation loss, Keras (whole split)", keras_val),
        (
            f'validation loss, numpy reference on this folder (first {reference["val_tokens"]:,} tokens)',
            f"{ref_loss:.3f} nats/token, perplexity {math.exp(ref_loss):.1f}",
        ),
    ]


def model_card(summary: dict, reference: dict) -> str:
    """MODEL_CARD.md text from a run's summary.json and the reference measurements."""
    millions = summary["parameters"] / 1e6
    greedy = reference["greedy"].replace("\n", "\n> ")
    sampled = reference["sampled"].replace("\n", "\n> ")
    return f"""# tellme default model: a {millions:.1f}M-parameter ternary (BitNet b1.58) LM of the King James Bible

The model `tellme run` and `make demo` use when no `--model` is given. It is a tellme model folder
(`manifest.json`, `weights.safetensors` in TLMM form, `tokenizer.json`) made by `tellme convert` from a
Hugging Face BitNet checkpoint that `tellme.models.train` (Keras 3 on TensorFlow) trained and exported.
It writes King-James-flavoured English; it knows nothing else and is not meant to be useful beyond
demonstrating the flow.

## Corpus and licence

- Text: the King James Version of the Bible (1611), as packaged by Debian (`bible-kjv-text`, read with
  `bible` from `bible-kjv`). Public domain (outside the United Kingdom, where Crown letters patent
  apply). Built by `scripts/make_corpus.sh`: one verse per line, chapters separated by a blank line,
  every 20th chapter held out for validation.
- Corpus: {summary["corpus_train_tokens"]:,} training tokens; the validation split is the held-out chapters.
- Tokenizer: byte-level BPE trained with `tokenizers` on the training split, {summary["shape"]["vocab_size"]}
  tokens; `<|endoftext|>` (id 0) is BOS and EOS and starts every chapter.
- The weights are released under the project's licence (Apache-2.0).

## Shape

{_table(_shape_rows(summary, reference["folder_bytes"]))}

## Training

Quantisation-aware training from scratch (absmean ternary weights, absmax int8 activations, straight-through
estimators) with `scripts/train_default.py train`, on 2 CPU cores shared with other work.

{_table(_training_rows(summary, reference))}

## Sample

Through the numpy reference (`tellme.models.reference`) on this folder, {reference["new_tokens"]} new tokens
after the prompt. Greedy:

> {greedy}

Sampled at temperature {SAMPLE_TEMPERATURE} (numpy seed 0):

> {sampled}

## Reproduce

```
scripts/make_corpus.sh                   # build/corpus/{{train,val}}.txt
pip install -e '.[train]'
scripts/train_default.py train --run build/train/default --minutes 60
scripts/train_default.py finish --run build/train/default
```
"""


def finish_default_model(
    run: Path, dst: Path, corpus: Path, new_tokens: int = 60, val_windows: int = 64
) -> dict:
    """Convert run/hf into dst (replacing it), measure it with the reference, write dst/MODEL_CARD.md."""
    run, dst, corpus = Path(run), Path(dst), Path(corpus)
    summary = json.loads((run / "summary.json").read_text())
    convert_checkpoint(run / "hf", dst, force=True, quiet=True)
    model = ReferenceModel.load(dst)
    tokenizer = Tokenizer.from_file(str(dst / "tokenizer.json"))
    prompt = tokenizer.encode(SAMPLE_PROMPT).ids
    greedy = SAMPLE_PROMPT + tokenizer.decode(reference_generate(model, prompt, new_tokens))
    sampled = SAMPLE_PROMPT + tokenizer.decode(
        reference_generate(model, prompt, new_tokens, SAMPLE_TEMPERATURE, seed=0)
    )
    length = summary["settings"]["seq_len"]
    val_loss = reference_val_loss(model, load_split(tokenizer, corpus / "val.txt"), length, val_windows)
    reference = {
        "greedy": greedy,
        "sampled": sampled,
        "new_tokens": new_tokens,
        "val_loss": val_loss,
        "val_tokens": val_windows * length,
        "folder_bytes": _dir_size(dst),
    }
    (dst / CARD).write_text(model_card(summary, reference))
    print(f"wrote {dst} ({reference['folder_bytes'] / 1e6:.1f} MB); reference val loss {val_loss:.4f}")
    print(greedy)
    print(sampled)
    return reference
