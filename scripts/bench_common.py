"""Helpers shared by the bench scripts: timing and atomic JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

from tellme.models.atomic import write_atomic


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Best wall time of `repeats` calls, in seconds (the least disturbed run)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def machine() -> dict:
    """This machine, and its load when the figures were taken (the timings are of a possibly shared machine)."""
    load = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "load_average": load}


def save_json(path: Path, data: dict) -> None:
    write_atomic(path, json.dumps(data, indent=2) + "\n")
    print(f"saved {path}")
