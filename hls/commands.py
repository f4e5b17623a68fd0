"""`tellme hls`, `tellme build` and `tellme package`: parse, call the Design, print."""

from __future__ import annotations

import argparse
from pathlib import Path

from tellme.models.default_model import resolve_model_dir

from .design import Design


def _design(args: argparse.Namespace) -> Design:
    return Design.for_model(resolve_model_dir(args.model), args.board, list(args.set))


def hls_command(args: argparse.Namespace) -> int:
    design = _design(args)
    out = design.write_project(Path(args.out), force=args.force)
    config, m = design.config, design.model
    print(f"wrote {out}: top {config.top} for {config.board} ({config.part}, {config.clock_mhz:g} MHz), "
          f"{m.num_hidden_layers} layers, context {design.context}; testbenches: decoder and TLMM on "
          f"{design.name}'s weights")
    return 0


def build_command(args: argparse.Namespace) -> int:
    return _design(args).build(Path(args.out) if args.out else None, dry_run=args.dry_run, force=args.force)


def package_command(args: argparse.Namespace) -> int:
    from .package import package_design

    out = package_design(Path(args.design), resolve_model_dir(args.model), Path(args.out) if args.out else None,
                         images=args.images)
    print(f"wrote {out}: copy it to the board, tar xzf it there and run tellme selftest --backend pynq "
          f"--bitstream <unpacked folder>")
    return 0
