"""`tellme logits`, `tellme run` and `tellme selftest`."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from tellme.models.atomic import write_atomic
from tellme.models.errors import UserError
from tellme.models.model_folder import open_model_folder
from tellme.models.output_path import check_output
from tellme.models.reference import check_token_ids

from .backends import open_backend
from .generate import ContextFull
from .sampling import SamplingParams
from .session import Session, resolve_model_dir
from .tokenizer import check_utf8

CHAT_HELP = "chat: type a message and Enter; /reset starts over, /quit (or Ctrl-D) ends"


def parse_token_ids(text: str) -> list[int]:
    try:
        ids = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"--tokens must be comma-separated integers, got {text!r}") from None
    if not ids:
        raise UserError("--tokens is empty: give at least one token id")
    return ids


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    """A reader never sees half a file (tellme.models.atomic)."""
    check_output(path, what=f"--out {path}")
    buffer = io.BytesIO()
    np.save(buffer, array)
    write_atomic(path, buffer.getvalue())


def logits_command(args: argparse.Namespace) -> int:
    tokens = parse_token_ids(args.tokens)
    model_dir = resolve_model_dir(args.model)
    check_output(args.out, inputs=[model_dir], what=f"--out {args.out}")  # before any work
    folder = open_model_folder(model_dir)
    check_token_ids(tokens, folder.config.vocab_size)  # before a device is built (csim compiles)
    with open_backend(args.backend, folder, kv_cache=args.kv_cache) as backend:
        if len(tokens) > backend.max_context:
            raise UserError(f"{len(tokens)} tokens exceed the context of {backend.max_context}")
        logits = backend.all_logits(tokens).astype(np.float32)
    save_npy_atomic(Path(args.out), logits)
    print(f"wrote {args.out}: logits {list(logits.shape)}", file=sys.stderr)
    return 0


def _sampling(args: argparse.Namespace) -> dict:
    """The sampling options, checked before any model is loaded."""
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be >= 1, got {args.max_new_tokens}")
    SamplingParams(args.temperature, args.top_k, args.top_p, args.seed).validate()
    return {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
            "top_p": args.top_p, "seed": args.seed}


def _stream(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    sys.stdout.flush()


def _read_line() -> str | None:
    """One line of stdin without its newline; None at the end. Read as bytes and decoded with
    surrogateescape, so that bytes which are not UTF-8 reach the tokenizer's check (one line, the chat
    goes on) instead of failing inside the reader."""
    stream = getattr(sys.stdin, "buffer", None)
    line = stream.readline() if stream is not None else sys.stdin.readline()
    if not line:
        return None
    if isinstance(line, bytes):
        line = line.decode("utf-8", "surrogateescape")
    return line.rstrip("\r\n")


def _chat(session: Session, first: str | None, sampling: dict) -> int:
    print(f"[{session.name}] {CHAT_HELP}; context {session.max_context} positions", file=sys.stderr)
    messages = [first] if first else []
    while True:
        if messages:
            message = messages.pop()
        else:
            print("> ", end="", file=sys.stderr, flush=True)
            message = _read_line()
            if message is None:
                return 0
        if message.strip() == "/quit":
            return 0
        if message.strip() == "/reset":
            session.reset()
            print("[conversation reset]", file=sys.stderr)
            continue
        if not message.strip():
            continue
        try:
            _stream(session.chat(message, **sampling))
        except ContextFull as exc:
            print(f"[{exc}: type /reset]", file=sys.stderr)
            continue
        except UserError as exc:  # this message is refused; the conversation goes on
            print(f"[{exc}]", file=sys.stderr)
            continue
        print(f"[{session.name}] {session.stats.summary()} | context {session.position}/{session.max_context}",
              file=sys.stderr)
        if session.context_full:
            print(f"[{session.notice}: type /reset]", file=sys.stderr)


def run_command(args: argparse.Namespace) -> int:
    sampling = _sampling(args)
    if args.prompt is None and not args.chat:
        raise UserError("--prompt is required (or --chat for a conversation)")
    if args.prompt is not None:
        check_utf8(args.prompt)  # before the model is loaded
    with Session(args.model, args.backend, args.bitstream, args.board, kv_cache=args.kv_cache) as session:
        if args.chat:
            return _chat(session, args.prompt, sampling)
        pieces = session.generate(args.prompt, **sampling)
        sys.stdout.write(args.prompt)
        sys.stdout.flush()
        _stream(pieces)
        print(f"[{session.name}] {session.stats.summary()}", file=sys.stderr)
    return 0


def selftest_command(args: argparse.Namespace) -> int:
    """One line per check; exit 1 at the first hard failure."""
    from .selftest import selftest

    return selftest(Path(args.bitstream), args.model)
