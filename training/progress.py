"""Progress lines for long steps, on stderr so stdout stays parseable (version numbers, JSON)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, label: str, *, quiet: bool = False) -> None:
        self.label = label
        self.quiet = quiet
        self.started = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.started
            print(f"[{self.label} {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
