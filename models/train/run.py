"""One training run end to end: tokenizer, token arrays, model, training, exports and a summary."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tokenizers import Tokenizer

from tellme.models.config import ModelConfig

from .data import SAMPLE_PROMPT, WindowSampler, eval_windows, load_split, train_tokenizer
from .export import export_checkpoint
from .loop import TrainResult, TrainSettings, evaluate, train
from .model import BitNetLM
from .progress import Progress
from .sample import generate


@dataclass(frozen=True)
class RunPaths:
    """Where a run reads its corpus and writes its outputs."""

    corpus: Path
    out: Path

    @property
    def checkpoint(self) -> Path:
        """The exported Hugging Face checkpoint (rewritten at every checkpoint)."""
        return self.out / "hf"

    @property
    def tokenizer(self) -> Path:
        return self.out / "tokenizer.json"

    @property
    def summary(self) -> Path:
        return self.out / "summary.json"


def prepare_tokenizer(paths: RunPaths, vocab_size: int) -> Tokenizer:
    """Train the BPE tokenizer on train.txt (or reuse the run's existing one)."""
    if paths.tokenizer.exists():
        return Tokenizer.from_file(str(paths.tokenizer))
    text = (paths.corpus / "train.txt").read_text(encoding="utf-8")
    tokenizer = train_tokenizer(text.splitlines(keepends=True), vocab_size)
    paths.out.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(paths.tokenizer))
    return tokenizer


def run_training(
    paths: RunPaths, shape: ModelConfig, settings: TrainSettings, eval_limit: int = 64
) -> dict[str, object]:
    """Train, export to paths.checkpoint periodically and at the end, and write summary.json."""
    progress = Progress(settings.max_steps, settings.minutes * 60.0)
    tokenizer = prepare_tokenizer(paths, shape.vocab_size)
    train_tokens = load_split(tokenizer, paths.corpus / "train.txt")
    val_tokens = load_split(tokenizer, paths.corpus / "val.txt")
    progress.note(f"corpus: {len(train_tokens):,} train tokens, {len(val_tokens):,} validation tokens")
    model = BitNetLM(shape)
    progress.note(f"model: {shape.parameter_count():,} parameters {shape.to_dict()}")
    sampler = WindowSampler(train_tokens, settings.seq_len, seed=settings.seed)
    quick_val = eval_windows(val_tokens, settings.seq_len, eval_limit)
    wall_start = time.monotonic()

    def checkpoint(result: TrainResult) -> None:
        export_checkpoint(model, tokenizer, paths.checkpoint)
        summary = _summary(shape, settings, result, len(train_tokens), None, None)
        paths.summary.write_text(json.dumps(summary, indent=2) + "\n")
        progress.note(f"step {result.steps}: exported {paths.checkpoint}")

    result = train(model, sampler, settings, quick_val, checkpoint, progress)
    full_val = eval_windows(val_tokens, settings.seq_len, len(val_tokens))
    val_loss = evaluate(model, *full_val)
    sample = generate(model, tokenizer, SAMPLE_PROMPT, new_tokens=60)
    export_checkpoint(model, tokenizer, paths.checkpoint)
    summary = _summary(shape, settings, result, len(train_tokens), val_loss, SAMPLE_PROMPT + sample)
    summary["wall_seconds_total"] = round(time.monotonic() - wall_start, 1)
    paths.summary.write_text(json.dumps(summary, indent=2) + "\n")
    progress.note(f"done: val loss {val_loss:.4f}, exported {paths.checkpoint}")
    progress.note(f"sample (Keras, greedy): {SAMPLE_PROMPT}{sample}")
    return summary


def _summary(
    shape: ModelConfig,
    settings: TrainSettings,
    result: TrainResult,
    corpus_tokens: int,
    val_loss: float | None,
    sample: str | None,
) -> dict[str, object]:
    return {
        "shape": shape.to_dict(),
        "parameters": shape.parameter_count(),
        "settings": asdict(settings),
        "corpus_train_tokens": corpus_tokens,
        "steps": result.steps,
        "tokens_seen": result.tokens,
        "train_seconds": round(result.seconds, 1),
        "train_loss": round(result.train_loss, 4),
        "val_loss": None if val_loss is None else round(val_loss, 4),
        "val_perplexity": None if val_loss is None else round(math.exp(val_loss), 2),
        "sample_keras_greedy": sample,
    }
