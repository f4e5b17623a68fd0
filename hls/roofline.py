"""The roofline of a design (`tellme estimate --plot FILE.png`): its modelled decode and prefill points
against the board's DDR roof and the lookup engine's compute roof, in ternary multiply-accumulates.

Work is counted in ternary weights applied per second (a weight times an activation: what the TLMM
engine does P x TP x 25 x 3 of a cycle); intensity is weights applied per byte read from DDR. Decode
reads every weight once a token; a prefill block of B tokens reads them once for B tokens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tellme.models.atomic import write_atomic
from tellme.models.errors import UserError

if TYPE_CHECKING:
    from .design import Design


def plot_roofline(design: Design, report: dict, path: Path) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError:
        raise UserError("--plot needs matplotlib: pip install 'tellme-hls[plot]'") from None
    import io

    cfg, m = design.config, design.model
    weights = sum(n * k for n, k in m.linear_shapes().values()) * m.num_hidden_layers  # per token
    clock = cfg.clock_mhz * 1e6
    compute = cfg.weight_ports * cfg.tlmm.token_lanes * 25 * 3 * clock  # weights applied a second, at most
    ddr = design.board.ddr_peak_bytes_s
    per_token = report["bytes_per_token"]
    decode_bytes = per_token["weights"] + per_token["lm_head"] + 256 * per_token["kv_per_position"]
    points = {}
    if "256" in report["decode_tok_s"]:
        points["decode at 256"] = (weights / decode_bytes, weights * report["decode_tok_s"]["256"])
    for n, rate in report["prefill_tok_s"].items():
        blocks = -(-int(n) // cfg.prefill_block)
        points[f"prefill {n}"] = (weights * int(n) / (blocks * per_token["weights"]), weights * rate)
    lo = min([x for x, _ in points.values()] + [0.1]) / 4
    hi = max([x for x, _ in points.values()] + [compute / ddr]) * 4
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.loglog(xs, [min(ddr * x, compute) for x in xs], "k-", label=f"roof: DDR {ddr / 1e9:.1f} GB/s peak, "
              f"engine {compute / 1e9:.0f} G weights/s")
    for label, (x, y) in points.items():
        ax.loglog([x], [y], "o", label=f"{label}: {y / 1e9:.1f} G weights/s (modelled)")
    ax.set_xlabel("ternary weights applied per DDR byte")
    ax.set_ylabel("ternary weights applied per second")
    ax.set_title(f"{design.name} on {cfg.board}, {cfg.clock_mhz:g} MHz ({report['model']})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    write_atomic(path, buffer.getvalue())
    return path
