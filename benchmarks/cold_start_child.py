"""One cold start, in a fresh interpreter: import the handler, invoke it once, report.

Run by ``benchmarks.run`` as ``python benchmarks/cold_start_child.py KIND HANDLER_DIR EVENT``;
it prints one JSON line with the wall-clock times of the end of the handler's import and of the
first response, and the peak RSS. The
handler is imported the way Lambda does (the function's code folder and the layer first on
``sys.path``, the handler module by name), so nothing else of this project is imported first.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
import time


class Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


def peak_rss_kb() -> int:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over from the parent
    across fork and exec, so a child spawned by a large process reports the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    kind, handler_dir, event_path = sys.argv[1:4]
    sys.path[:0] = [handler_dir, *sys.argv[4:]]
    with open(event_path) as handle:
        event = json.load(handle)
    # ours: the layer's one entry module (MODEL_NAME says which model); the baselines: a module each
    name = {"onnx": "maas.entry.model"}.get(kind, kind)
    module = importlib.import_module(name)
    imported = time.time()
    response = module.lambda_handler(event, Context())
    done = time.time()
    peak_kb = peak_rss_kb()
    status = response["statusCode"]
    print(
        json.dumps(
            {"imported_at": imported, "done_at": done, "peak_rss_mb": peak_kb / 1024, "status": status}
        ),
        file=sys.__stdout__,
    )


if __name__ == "__main__":
    main()
