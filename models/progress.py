"""Progress lines on stderr for long work, rewritten in place on a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def progress_printer(label: str) -> Callable[[int, int], None]:
    """A callback progress(done, total) that prints `label: done/total (elapsed)` to stderr."""
    start = time.perf_counter()
    tty = sys.stderr.isatty()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - start
        end = "\n" if (done >= total or not tty) else "\r"
        print(f"{label}: {done}/{total} ({elapsed:.1f} s)", end=end, file=sys.stderr, flush=True)

    return report
