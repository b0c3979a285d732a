"""gemma's OpenAI API through ``maas serve`` against llama.cpp's own OpenAI server, side by side.

The same request (a short prompt, 64 new tokens, greedy) through the unmodified ``openai`` client
to both servers, one thread each: streamed (time to the first chunk with text, then tokens per
second) and not streamed (the whole answer). ``maas serve`` serves the gated version from the
local S3 through the model function's streaming entry (what a function URL in RESPONSE_STREAM
mode runs on AWS); llama.cpp's server (``llama_cpp.server``, from llama-cpp-python in
``.venv/bench``) reads the GGUF the version was imported from. Both are warmed by one request
first; the rounds alternate which server goes first.

``python -m benchmarks.openai_bench`` runs it alone.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.llm_bench import bench_python, on_local_s3
from benchmarks.stats import ratio, ratio_lines, summary
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT
from training.models import gemma
from training.options import TrainOptions

BUCKET = "maas-bench-openai"
PROMPT = "The whale-ship sailed out of Nantucket on a grey morning, and the crew"
NEW_TOKENS = 64
TARGETS = {"openai_first_token_vs_llamacpp_server": ("<=", 1.0)}
MAAS = Path(sys.executable).parent / "maas"


def log(message: str) -> None:
    print(f"[bench openai] {message}", file=sys.stderr, flush=True)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _server(command: list[str], env: dict[str, str], ready: str, log_path: Path) -> Iterator[None]:
    """A server process, until the block ends; ``ready``: a regex its output prints when it listens."""
    with log_path.open("wb") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=PROJECT_ROOT
        )
        try:
            deadline = time.monotonic() + 300
            while not re.search(ready, log_path.read_text(errors="replace")):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[0]} did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.2)
            yield
        finally:
            process.terminate()
            process.wait(timeout=30)


def once(base_url: str, model: str, stream: bool) -> dict[str, float]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key="bench")
    started = time.perf_counter()
    if not stream:
        answer = client.completions.create(model=model, prompt=PROMPT, max_tokens=NEW_TOKENS, temperature=0)
        return {"whole_s": time.perf_counter() - started, "tokens": float(answer.usage.completion_tokens)}
    first = None
    pieces = 0
    for chunk in client.completions.create(
        model=model, prompt=PROMPT, max_tokens=NEW_TOKENS, temperature=0, stream=True
    ):
        if chunk.choices and chunk.choices[0].text:
            pieces += 1
            if first is None:
                first = time.perf_counter() - started
    whole = time.perf_counter() - started
    assert first is not None, f"{base_url}: no text streamed"
    return {"first_token_s": first, "whole_s": whole, "tok_s": (pieces - 1) / (whole - first)}


def run(work: Path, registry: RegistryAdmin, env: dict[str, str], repeats: int) -> dict[str, Any]:
    log("gemma's gated version (maas train gemma: the cached export), published")
    gemma.train(TrainOptions(out=work / "gemma", quantize=gemma.SERVED_VARIANTS, quiet=True))
    served = gemma.served(work / "gemma")
    version = registry.publish(served).version
    registry.set_alias("gemma", "production", version)
    gguf = gemma.assemble_gguf(work / "gguf")
    ours_port, theirs_port = _free_port(), _free_port()
    one_thread = {
        **env,
        "SESSION_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MODEL_CACHE_DIR": str(work / "cache"),
    }
    serve = [str(MAAS), "serve", "--port", str(ours_port), "--bucket", registry.bucket]
    llama = [str(bench_python()), "-m", "llama_cpp.server", "--model", str(gguf), "--n_threads", "1"]
    llama += ["--n_threads_batch", "1", "--n_ctx", "1024", "--port", str(theirs_port), "--host", "127.0.0.1"]
    urls = {"ours": f"http://127.0.0.1:{ours_port}/v1", "llamacpp": f"http://127.0.0.1:{theirs_port}/v1"}
    models = {"ours": "gemma", "llamacpp": str(gguf)}
    runs: dict[str, list[dict[str, float]]] = {f"{s}:{m}": [] for s in urls for m in ("stream", "whole")}
    with (
        _server(serve, one_thread, r"listening on http", work / "serve.log"),
        _server(llama, one_thread, r"Uvicorn running on", work / "llama.log"),
    ):
        for side in urls:  # the first request loads the model: not timed
            once(urls[side], models[side], stream=False)
        for index in range(repeats):
            order = list(urls) if index % 2 == 0 else list(reversed(urls))
            for side in order:
                runs[f"{side}:stream"].append(once(urls[side], models[side], stream=True))
                runs[f"{side}:whole"].append(once(urls[side], models[side], stream=False))
            log(f"round {index + 1} of {repeats}")
    figures = {name: {key: summary([r[key] for r in rows]) for key in rows[0]} for name, rows in runs.items()}
    return {
        "variant": gemma.variant_of(served),
        "prompt": PROMPT,
        "new_tokens": NEW_TOKENS,
        "figures": figures,
        "ratios": {
            "openai_first_token_vs_llamacpp_server": ratio(
                [r["first_token_s"] for r in runs["ours:stream"]],
                [r["first_token_s"] for r in runs["llamacpp:stream"]],
            ),
            "openai_stream_tok_s_vs_llamacpp_server": ratio(
                [r["tok_s"] for r in runs["ours:stream"]], [r["tok_s"] for r in runs["llamacpp:stream"]]
            ),
        },
    }


def markdown(results: dict[str, Any]) -> str:
    f = results["figures"]
    rows = [
        "| gemma-3-270m through the openai client, one thread "
        f"| maas serve ({results.get('variant', 'fp32')}, streamed) | llama.cpp server |",
        "| --- | --- | --- |",
        "| time to first token (streamed), ms | "
        + " | ".join(
            f"{f[f'{s}:stream']['first_token_s']['median'] * 1000:.0f}" for s in ("ours", "llamacpp")
        )
        + " |",
        "| tokens/s after it (streamed) | "
        + " | ".join(f"{f[f'{s}:stream']['tok_s']['median']:.1f}" for s in ("ours", "llamacpp"))
        + " |",
        f"| whole answer, {results['new_tokens']} tokens, not streamed, s | "
        + " | ".join(f"{f[f'{s}:whole']['whole_s']['median']:.2f}" for s in ("ours", "llamacpp"))
        + " |",
        "",
    ]
    rows += ratio_lines(results["ratios"], TARGETS)
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(write(on_local_s3("openai", BUCKET, run, args.repeats)))
    return 0


def write(results: dict[str, Any]) -> str:
    """``openai-latest.json`` and its table (``openai-latest.md``), which the table is returned as."""
    table = markdown(results)
    out = PROJECT_ROOT / "benchmarks" / "results"
    (out / "openai-latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "openai-latest.md").write_text(table)
    return table


if __name__ == "__main__":
    sys.exit(main())
