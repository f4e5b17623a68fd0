"""Progress lines for a training run: step, loss, learning rate, throughput, elapsed time and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """Writes one line per report; the ETA is the nearer of the step budget and the time budget."""

    def __init__(self, max_steps: int, budget_s: float, stream: TextIO | None = None) -> None:
        self.max_steps, self.budget_s = max_steps, budget_s
        self.stream = stream or sys.stdout
        self.start = time.monotonic()

    def report(self, step: int, loss: float, tokens: int, lr: float) -> str:
        """Print and return the line for `step`."""
        elapsed = time.monotonic() - self.start
        rate = tokens / elapsed if elapsed > 0 else 0.0
        by_steps = elapsed / step * (self.max_steps - step) if step else float("inf")
        eta = min(by_steps, self.budget_s - elapsed)
        line = (
            f"step {step:6d}  loss {loss:.4f}  lr {lr:.2e}  {rate:7.0f} tok/s  "
            f"tokens {tokens:,}  elapsed {_clock(elapsed)}  eta {_clock(eta)}"
        )
        self.note(line)
        return line

    def note(self, line: str) -> None:
        """Print a free-form line (evaluations, checkpoints)."""
        print(line, file=self.stream, flush=True)
