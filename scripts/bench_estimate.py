#!/usr/bin/env python3
"""Modelled speed and fit of the accelerator for the named shapes and the bundled model on each board.

Nothing here is measured: every figure is `tellme estimate`'s report (hls/perf.py v2 for speed, hls/fit.py
for resources), made with tellme.hls.estimate.estimate_report on each design. It prints a speed table, a
fit table and the project's goal checks, and saves every report to JSON keyed "shape@board".

    python scripts/bench_estimate.py [--out bench/estimate.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from bench_common import machine, save_json  # noqa: E402

from tellme.hls.design import Design  # noqa: E402
from tellme.hls.estimate import estimate_report  # noqa: E402
from tellme.hls.perf import MODEL_VERSION, POSITIONS, PROMPTS  # noqa: E402
from tellme.models.config import named_shape  # noqa: E402
from tellme.models.default_model import resolve_model_dir  # noqa: E402

SHAPE_BOARDS = {"bitnet-0.73b": ("kv260", "zcu104"), "bitnet-2b-4t": ("kv260", "zcu104")}
BUNDLED_BOARDS = ("kv260", "zcu104", "pynq-z2")
RESOURCES = ("LUT", "DSP", "BRAM36", "URAM")


def designs(model: str | None) -> dict[str, Design]:
    """Every design of the bench, keyed "shape@board" (the bundled model is "default" unless --model)."""
    out: dict[str, Design] = {}
    for shape, boards in SHAPE_BOARDS.items():
        for board in boards:
            out[f"{shape}@{board}"] = Design.for_shape(named_shape(shape), board, name=shape)
    folder = resolve_model_dir(model)
    for board in BUNDLED_BOARDS:
        design = Design.for_model(folder, board, verify=False)
        out[f"{design.name}@{board}"] = design
    return out


def cell(table: dict[str, float], key: str, fmt: str) -> str:
    return format(table[key], fmt) if key in table else "-"


def print_tables(reports: dict[str, dict]) -> None:
    width = max(len(k) for k in reports) + 2
    decode = "  ".join(f"{p:>6}" for p in POSITIONS)
    prompts = "  ".join(f"{n:>6}" for n in PROMPTS)
    print(f"speed (modelled, {MODEL_VERSION}; decode = a whole token at KV length p, with the host's work)")
    print(f"{'':<{width}}{'decode tok/s at p':^{8 * len(POSITIONS)}}{'prefill tok/s':^{8 * len(PROMPTS)}}"
          f"{'TTFT s':^{8 * len(PROMPTS)}} {'DDR bound':>10} {'clock':>6}")
    print(f"{'design':<{width}}{decode}  {prompts}  {prompts}  {'tok/s@256':>10} {'MHz':>6}")
    for key, r in reports.items():
        row = "  ".join(f"{cell(r['decode_tok_s'], str(p), '.1f'):>6}" for p in POSITIONS)
        pre = "  ".join(f"{cell(r['prefill_tok_s'], str(n), '.0f'):>6}" for n in PROMPTS)
        ttft = "  ".join(f"{cell(r['ttft_s'], str(n), '.3f'):>6}" for n in PROMPTS)
        print(f"{key:<{width}}{row}  {pre}  {ttft}  {cell(r['bound_tok_s'], '256', '.1f'):>10} "
              f"{r['clock_mhz']:>6g}")
    print()
    print("fit (modelled, hls/fit.py): need / have")
    head = "".join(f"{name:>18}" for name in RESOURCES)
    print(f"{'design':<{width}}{'fits':>5}{head}{'CMA MiB':>16}")
    for key, r in reports.items():
        res = "".join(f"{r['resources'][n][0]:>9,.0f} /{r['resources'][n][1]:>7,.0f}" for n in RESOURCES)
        need, have = r["memory"]["cma"]
        cma = f"{need / 2**20:>7,.0f} /{have / 2**20:>6,.0f}"
        print(f"{key:<{width}}{'yes' if r['fits'] else 'NO':>5}{res}{cma:>16}")


def goal_checks(reports: dict[str, dict]) -> list[dict]:
    """The project's speed goals on the KV260, each MET or NOT MET with its figures (modelled)."""
    checks = []
    r = reports["bitnet-0.73b@kv260"]
    decode, ttft = r["decode_tok_s"].get("256", 0.0), r["ttft_s"].get("64", float("inf"))
    checks.append({"goal": "bitnet-0.73b on kv260: decode >= 50 tok/s at 256, TTFT(64) <= 0.30 s, fits",
                   "met": decode >= 50 and ttft <= 0.30 and r["fits"],
                   "figures": {"decode_tok_s_256": decode, "ttft_s_64": ttft, "fits": r["fits"]}})
    r = reports["bitnet-2b-4t@kv260"]
    decode = r["decode_tok_s"].get("256", 0.0)
    checks.append({"goal": "bitnet-2b-4t on kv260: decode >= 20 tok/s at 256, fits",
                   "met": decode >= 20 and r["fits"], "figures": {"decode_tok_s_256": decode, "fits": r["fits"]}})
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench/estimate.json"), help="JSON output")
    parser.add_argument("--model", default=None, help="model folder in place of the bundled model")
    args = parser.parse_args(argv)

    reports = {key: estimate_report(design) for key, design in designs(args.model).items()}
    print_tables(reports)
    checks = goal_checks(reports)
    print()
    print(f"goals (modelled, {MODEL_VERSION}, not measured on a board)")
    for c in checks:
        figures = ", ".join(f"{k} {v}" for k, v in c["figures"].items())
        print(f"  {'MET' if c['met'] else 'NOT MET':<8} {c['goal']}: {figures}")
    save_json(args.out, {"what": "tellme estimate reports (modelled, never measured), keyed shape@board",
                         "model": MODEL_VERSION, "machine": machine(), "goals": checks, "reports": reports})
    return 0


if __name__ == "__main__":
    sys.exit(main())
