"""Score one S3 input object in a fresh interpreter and print the outcome with the peak RSS.

Run by the memory test and by ``benchmarks.batch_bench``: ``python -m benchmarks.batch_child
MODEL BUCKET KEY`` with ``AWS_ENDPOINT_URL``, ``MODEL_BUCKET`` and ``DATA_BUCKET`` set. The peak
resident set size of the whole process (imports, model, scoring) is what Lambda's memory limit
would be measured against.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ops.event_sources import s3_put_event
from ops.local import invoke
from training.data import PROJECT_ROOT


def peak_rss_kb() -> int:
    """This process's own high-water mark (``VmHWM``). Not ``ru_maxrss``: that one survives
    ``fork``+``exec`` and would report the parent's size whenever the parent is the larger."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(model: str, bucket: str, key: str) -> int:
    event = s3_put_event(model, bucket, key)
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's logs and metric records
        response = invoke(model, event)
    seconds = time.perf_counter() - started
    (outcome,) = response["files"]
    peak_kb = peak_rss_kb()
    print(
        json.dumps(
            {
                "rows": outcome.get("rows"),
                "scored": outcome.get("scored"),
                "seconds": seconds,
                "peak_rss_mb": peak_kb / 1024.0,
            }
        )
    )
    return 0


def write_rows(path: Path, rows: int, texts: Sequence[str]) -> Path:
    """A JSON Lines input of ``{"id", "instance"}`` rows cycling through ``texts``."""
    with path.open("w") as handle:
        for i in range(rows):
            handle.write(json.dumps({"id": i, "instance": texts[i % len(texts)]}) + "\n")
    return path


def score_in_child(model: str, bucket: str, key: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """Run this module in a fresh interpreter on one object; its JSON report (rows, peak RSS)."""
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.batch_child", model, bucket, key],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        env={**os.environ, **environ},
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(f"batch child failed: {result.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
