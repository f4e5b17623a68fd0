"""`tellme logits` and `tellme run`."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from tellme.models.errors import UserError

from .backends import open_backend
from .generate import GenerationStats, generate
from .sampling import Sampler, SamplingParams
from .tokenizer import StreamDecoder, Tokenizer


def resolve_model_dir(model: str | None) -> Path:
    """--model, or the bundled default model."""
    if model:
        return Path(model)
    try:
        from tellme.models.default_model import default_model_dir
    except ImportError:
        raise UserError("no bundled model in this install: pass --model DIR") from None
    return default_model_dir()


def parse_token_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"--tokens must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise UserError("--tokens is empty: give at least one token id")
    return ids


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """Write to a temp file beside path, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npy", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def logits_command(args: argparse.Namespace) -> int:
    tokens = parse_token_ids(args.tokens)
    backend = open_backend(args.backend, resolve_model_dir(args.model))
    if len(tokens) > backend.max_context:
        raise UserError(f"{len(tokens)} tokens exceed the context of {backend.max_context}")
    logits = backend.lm_head(backend.forward(tokens)).astype(np.float32)
    save_npy_atomic(Path(args.out), logits)
    print(f"wrote {args.out}: logits {list(logits.shape)}", file=sys.stderr)
    return 0


def run_command(args: argparse.Namespace) -> int:
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    sampler = Sampler(SamplingParams(args.temperature, args.top_k, args.top_p, args.seed))
    backend = open_backend(args.backend, resolve_model_dir(args.model))
    tokenizer = Tokenizer(backend.folder.tokenizer_path)
    prompt = tokenizer.encode(args.prompt)
    stats = GenerationStats()
    stream = StreamDecoder(tokenizer)
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    eos = backend.folder.config.eos_token_id
    for token in generate(backend, prompt, args.max_new_tokens, sampler, stats, eos):
        sys.stdout.write(stream.push(token))
        sys.stdout.flush()
    sys.stdout.write("\n")
    print(f"[{backend.name}] {stats.summary()}", file=sys.stderr)
    return 0
