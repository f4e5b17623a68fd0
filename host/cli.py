"""`tellme` command line. Each subcommand imports its implementation lazily, so that the board install
(numpy, tokenizers, safetensors) never pulls in the generator or the training stack."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import sys
from collections.abc import Callable, Sequence

from tellme.models.errors import UserError
from tellme.models.interrupts import signal_policy

# subcommand -> "module:function"; the function takes the parsed args and returns an exit code
HANDLERS: dict[str, str] = {
    "convert": "tellme.models.commands:convert_command",
    "train": "tellme.models.commands:train_command",
    "logits": "tellme.host.commands:logits_command",
    "run": "tellme.host.commands:run_command",
    "hls": "tellme.hls.commands:hls_command",
    "build": "tellme.hls.commands:build_command",
    "estimate": "tellme.hls.commands:estimate_command",
    "package": "tellme.hls.commands:package_command",
    "selftest": "tellme.host.commands:selftest_command",
}
KV_CACHES = ("float16", "float32")

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 128 + 13  # as if killed by SIGPIPE


def _add_model_arg(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument(
        "--model",
        required=required,
        help="converted model folder (tellme convert); default: the bundled model",
    )


def _add_kv_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kv-cache", default="float16", choices=KV_CACHES,
                   help="reference backend's KV cache: float16 as the accelerator stores it (default), or "
                        "float32 as transformers does")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tellme",
        description="Ternary LLMs on FPGAs: convert checkpoints, generate HLS, simulate and run.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("convert", help="Hugging Face BitNet checkpoint -> tellme model folder")
    p.add_argument("src", help="checkpoint folder: config.json, *.safetensors, tokenizer files")
    p.add_argument("dst", help="output model folder (refused if it exists, unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing DST")

    p = sub.add_parser("train", help="train a small BitNet on a text corpus (Keras; the train extra)")
    from tellme.models.train.cli import add_arguments  # argparse only: no TensorFlow until the run

    add_arguments(p)

    p = sub.add_parser("logits", help="write float32 logits [n_tokens, vocab] for every position")
    _add_model_arg(p)
    p.add_argument("--backend", default="reference", help="reference | csim (default: reference)")
    _add_kv_cache_arg(p)
    p.add_argument("--tokens", required=True, help="comma-separated token ids, e.g. 1,2,3")
    p.add_argument("--out", required=True, help="output .npy file")

    p = sub.add_parser("run", help="generate text, streaming it as it is produced")
    _add_model_arg(p)
    p.add_argument("--backend", default="reference", help="reference | csim | pynq (default: reference)")
    _add_kv_cache_arg(p)
    p.add_argument("--bitstream", default=None, metavar="DESIGN",
                   help="design folder from tellme build (bitstreams/<board>/<design>/): required by pynq; "
                        "csim then simulates that design")
    p.add_argument("--board", default=None,
                   help="kv260 | zcu104 | pynq-z2: csim's preset without --bitstream (default: kv260), "
                        "else checked against the design")
    p.add_argument("--prompt", default=None, help="prompt text (with --chat: the first message)")
    p.add_argument("--chat", action="store_true",
                   help="converse on stdin, keeping the KV cache across turns until the context is full")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy (default)")
    p.add_argument("--top-k", type=int, default=0, help="keep the k most likely tokens (0: all)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (1.0: all)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")

    p = sub.add_parser("hls", help="write a Vitis HLS project for a model and board")
    _add_model_arg(p)
    p.add_argument("--board", default="kv260", help="kv260 | zcu104 | pynq-z2 (default: kv260)")
    p.add_argument("--out", required=True, help="output project folder")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an accelerator parameter, e.g. prefill_block=8 (repeatable)",
    )
    p.add_argument("--force", action="store_true", help="replace an existing OUT")

    p = sub.add_parser("build", help="build a bitstream with Vitis HLS and Vivado (or --dry-run)")
    _add_model_arg(p)
    p.add_argument("--board", default="kv260", help="kv260 | zcu104 | pynq-z2 (default: kv260)")
    p.add_argument("--out", default=None, help="design folder (default: bitstreams/<board>/<design>)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an accelerator parameter, e.g. prefill_block=8 (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="write and check everything, run no Xilinx tool")
    p.add_argument("--force", action="store_true", help="replace an existing design folder")

    p = sub.add_parser("estimate", help="modelled speed and fit of a design (no weights or Xilinx tools needed)")
    _add_model_arg(p)
    p.add_argument("--config", default=None, metavar="FILE", help="a Hugging Face config.json instead of a model")
    p.add_argument("--shape", default=None, help="a named shape instead of a model: bitnet-0.73b | bitnet-2b-4t")
    p.add_argument("--board", default="kv260", help="kv260 | zcu104 | pynq-z2 (default: kv260)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override an accelerator parameter, e.g. prefill_block=8 (repeatable)")
    p.add_argument("--json", action="store_true", help="print the estimate as JSON")
    p.add_argument("--plot", default=None, metavar="FILE.png", help="draw the roofline (needs matplotlib)")
    p.add_argument("--design", default=None, metavar="DIR",
                   help="a design folder from tellme build: modelled beside reported latency and resources")

    p = sub.add_parser("package", help="a slim archive of a built design for the board (with golden vectors)")
    p.add_argument("design", metavar="DESIGN", help="design folder from tellme build")
    _add_model_arg(p)
    p.add_argument("--out", default=None, help="archive to write (default: <design>.tar.gz beside DESIGN)")
    p.add_argument("--images", action="store_true",
                   help="include the DDR image's static buffers (the board then skips building them)")

    p = sub.add_parser("selftest", help="on the board: pynq, board, CMA, clock, golden vectors, speed")
    p.add_argument("--backend", default="pynq", choices=["pynq"], help="pynq (the board)")
    p.add_argument("--bitstream", required=True, metavar="DESIGN",
                   help="an unpacked archive from tellme package (or a design folder with golden.npz)")
    _add_model_arg(p)
    return parser


def _resolve(spec: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = spec.split(":")
    return getattr(importlib.import_module(module_name), func_name)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done, 1 done with a warning that matters (e.g. timing not met), 2 a mistake in the
    input (one line `tellme: error: ...`) or an interrupt (SIGINT, SIGTERM: one line, after the command's
    temporaries and child tools are gone), 141 when the reader of stdout went away."""
    with signal_policy():
        return _main(argv)


def _main(argv: Sequence[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(_resolve(HANDLERS[args.command])(args) or 0)
    except UserError as exc:
        print(f"tellme: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt as exc:  # SIGINT or SIGTERM (tellme.models.interrupts): temporaries are gone
        signal_name = str(exc) or "SIGINT"
        print(f"tellme: error: interrupted by {signal_name}: nothing half-written was left; run the command again "
              "to finish it", file=sys.stderr)
        return getattr(exc, "exit_code", EXIT_USER_ERROR)
    except BrokenPipeError:  # the reader went away (`tellme run ... | head`): stop quietly, as `yes | head` does
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except MemoryError:
        print("tellme: error: out of memory: use a smaller model or context, or a machine with more memory",
              file=sys.stderr)
        return EXIT_USER_ERROR
    except ModuleNotFoundError as exc:
        extra = {"jinja2": "hls", "hls4ml": "hls", "tensorflow": "train", "keras": "train"}.get(
            (exc.name or "").split(".")[0]
        )
        if extra is None:
            raise
        print(
            f"tellme: error: this command needs {exc.name}: pip install 'tellme-hls[{extra}]'",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit does not fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


if __name__ == "__main__":
    sys.exit(main())
