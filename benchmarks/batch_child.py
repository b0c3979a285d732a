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
import sys
import time
from pathlib import Path

from training.event_sources import s3_put_event
from training.local import invoke


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


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
