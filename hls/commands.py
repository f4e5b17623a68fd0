"""`tellme hls`, `tellme build`, `tellme estimate` and `tellme package`: parse, call the Design, print."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tellme.models.default_model import resolve_model_dir
from tellme.models.errors import UserError

from .design import Design


def _design(args: argparse.Namespace) -> Design:
    return Design.for_model(resolve_model_dir(args.model), args.board, list(args.set))


def estimate_command(args: argparse.Namespace) -> int:
    """Modelled speed and fit; with --design, beside a built design's reports."""
    import json

    from tellme.models.output_path import check_output

    from .estimate import compare_report, describe_report, design_for, design_from_folder, estimate_report, reported

    if args.design:
        if args.model or args.config or args.shape or args.set:
            raise UserError("--design takes its model and parameters from the design folder: drop --model, "
                            "--config, --shape and --set")
        design, manifest = design_from_folder(Path(args.design))
        print(compare_report(design, manifest, reported(Path(args.design), manifest)))
        return 0
    if args.plot:
        check_output(args.plot, what=f"--plot {args.plot}")
    design = design_for(args.model, args.config, args.shape, args.board, list(args.set))
    report = estimate_report(design)
    print(json.dumps(report, indent=2) if args.json else describe_report(design, report))
    if args.plot:
        from .roofline import plot_roofline

        print(f"wrote {plot_roofline(design, report, Path(args.plot))}", file=sys.stderr if args.json else sys.stdout)
    return 0


def hls_command(args: argparse.Namespace) -> int:
    design = _design(args)
    fit = design.fit()
    for warning in fit.warnings:
        print(f"tellme: warning: {warning}", file=sys.stderr)
    fit.check()  # a design over a budget is refused, with the change that makes it fit
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
