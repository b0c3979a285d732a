"""gemma (google/gemma-3-270m from its GGUF) against llama.cpp and PyTorch, side by side.

Every gated variant of ours, llama.cpp (llama-cpp-python, in the bench's own environment
``.venv/bench``) on the very GGUF the variants were imported from, and PyTorch ``generate`` on the
dequantised fp32 model. Each run is a fresh interpreter per side (``llm_child.py``); the sides
rotate within a round (each goes first in turn), at one thread and at two. Figures: decode tok/s
(128 new tokens after a 64-token prompt, greedy), prefill of 64 and 512 tokens (the time to the
first new token of a warm model), process start to first token (every side's model fetched from
the local S3 into an empty folder first, with the same part size and concurrency: a peer with
boto3's ``download_file``, ours through the real handler and its own downloader), peak RSS, size
and perplexity.

``python -m benchmarks.llm_bench`` runs it alone; ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from benchmarks import plots
from benchmarks.stats import ratio, ratio_lines, summary
from ops.local import create_bucket, environment, local_aws_environment, moto_server
from ops.registry_admin import RegistryAdmin
from training.data import PROJECT_ROOT
from training.llm.gate import GateSpec, held_out
from training.llm.importer import SCRIPT
from training.models import gemma
from training.options import TrainOptions
from training.transformers.environment import export_python, run_export

BENCH = PROJECT_ROOT / "benchmarks"
BUCKET = "maas-bench-llm"
MODEL = "gemma"
NEW_TOKENS = 128
BOS = 2  # Gemma's <bos>: every side's prompts start with it
GATE_STEPS = GateSpec().steps
#: the issue's goals, against llama.cpp at one thread (decode, prefill, first token, RSS) and PyTorch
TARGETS = {
    "llm_decode_vs_llamacpp": (">=", 1.2),
    "llm_prefill_512_vs_llamacpp": (">=", 1.0),
    "llm_first_token_vs_llamacpp": ("<=", 0.9),
    "llm_first_token_vs_pytorch": ("<=", 0.3),
    "llm_peak_rss_vs_llamacpp": ("<=", 1.0),
}
BENCH_PYTHON = PROJECT_ROOT / ".venv" / "bench" / "bin" / "python"


def log(message: str) -> None:
    print(f"[bench llm] {message}", file=sys.stderr, flush=True)


def bench_python() -> Path:
    if not BENCH_PYTHON.is_file():
        raise SystemExit(f"error: {BENCH_PYTHON} is missing: `make bench` creates it (llama-cpp-python)")
    return BENCH_PYTHON


def prompt_ids(tokenizer_json: Path) -> tuple[list[int], list[int]]:
    """The same token ids for every side: a 64- and a 512-token prompt from Moby Dick's last
    chapters, BOS first (as every side feeds it)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    with gzip.open(PROJECT_ROOT / "data" / "moby_dick.txt.gz", "rt", encoding="utf-8") as handle:
        ids = tokenizer.encode(handle.read()[-40_000:], add_special_tokens=False).ids
    return [BOS, *ids[:63]], [BOS, *ids[1000:1511]]


def gate_ids(tokenizer_json: Path) -> tuple[list[list[int]], list[list[int]]]:
    """The gate's held-out prompts and texts (``training.llm.gate``), as token ids: llama.cpp is
    measured on exactly what our variants' manifests report."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    spec = GateSpec()
    prompts, texts = held_out(spec)

    def ids(text: str) -> list[int]:
        found = tokenizer.encode(text, add_special_tokens=False).ids
        return found if found[:1] == [BOS] else [BOS, *found]

    return [ids(p) for p in prompts], [ids(t)[: spec.text_tokens] for t in texts]


def variants(work: Path) -> dict[str, Path]:
    """The gated variants ``maas train gemma`` wrote: fp32 at ``gemma``, the others at ``gemma-<name>``."""
    return {
        gemma.variant_of(folder): folder
        for folder in sorted(work.glob(f"{MODEL}*"))
        if (folder / "manifest.json").is_file()
    }


def once(side: str, spec: dict[str, Any], work: Path, env: dict[str, str]) -> dict[str, Any]:
    spec_path = work / f"spec-{side}-{spec['threads']}-{time.time_ns()}.json"
    spec_path.write_text(json.dumps(spec))
    python = {"llamacpp": bench_python(), "pytorch": export_python()}.get(side, Path(sys.executable))
    kind = "ours" if side.startswith("ours") else side
    spawned = time.time()
    result = subprocess.run(
        [str(python), str(BENCH / "llm_child.py"), kind, str(spec_path)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{side} failed: {result.stderr[-3000:]}")
    figures: dict[str, Any] = json.loads(lines[-1])
    figures["first_token_s"] = figures.pop("first_token_at") - spawned
    # ours: the rate the handler logged for the graph's download from the local S3
    downloads = [json.loads(line) for line in lines[:-1] if '"downloaded"' in line]
    if downloads:
        biggest = max(downloads, key=lambda d: d.get("bytes", 0))
        figures["download_mb_per_s"] = biggest.get("mb_per_s")
        figures["download_mb"] = biggest.get("bytes", 0) / 1e6
    return figures


def run(work: Path, registry: RegistryAdmin, env: dict[str, str], repeats: int) -> dict[str, Any]:
    log("maas train gemma (the export is cached by the GGUF's sha256 and the exporter's version)")
    gemma.train(TrainOptions(out=work / MODEL))
    folders = variants(work)
    versions = {name: registry.publish(folder).version for name, folder in folders.items()}
    log("the GGUF for llama.cpp, and its fp32 dequantisation for PyTorch")
    gguf = gemma.assemble_gguf(work / "gguf")
    hf_folder = work / "hf"
    run_export(["load", "--source", str(gguf), "--out", str(hf_folder)], SCRIPT)
    peer_keys = {"llamacpp": upload_peer(gguf, "llamacpp"), "pytorch": upload_peer(hf_folder, "pytorch")}
    tokenizer_json = folders["fp32"] / "tokenizer.json"
    prompt_64, prompt_512 = prompt_ids(tokenizer_json)
    gate_prompts, gate_texts = gate_ids(tokenizer_json)
    event = json.loads((PROJECT_ROOT / "events" / "moby_gen" / "generate.json").read_text())
    event.update(rawPath=f"/models/{MODEL}/generate", routeKey="POST /models/{model}/generate")
    event["pathParameters"] = {"model": MODEL}
    event["body"] = json.dumps({"prompt": "Call me Ishmael.", "max_new_tokens": 1, "temperature": 0})
    (work / "event.json").write_text(json.dumps(event))
    sides = [f"ours:{name}" for name in folders] + ["llamacpp", "pytorch"]
    results: dict[str, Any] = {"sides": sides, "threads": {}}
    for threads in (1, 2):
        runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        for index in range(repeats):
            order = sides[index % len(sides) :] + sides[: index % len(sides)]
            for side in order:
                spec: dict[str, Any] = {
                    "threads": threads,
                    "prompt_64": prompt_64,
                    "prompt_512": prompt_512,
                    "new_tokens": NEW_TOKENS,
                    "gguf": str(gguf),
                    "hf_folder": str(hf_folder),
                    "model": MODEL,
                }
                child_env = dict(env)
                if side.startswith("ours:"):
                    variant = side.split(":", 1)[1]
                    spec["event"] = str(work / "event.json")
                    spec["paths"] = [
                        str(PROJECT_ROOT / "functions"),
                        str(PROJECT_ROOT / "layers" / "runtime"),
                    ]
                    child_env.update(
                        MODEL_NAME=MODEL,
                        MODEL_VERSION=str(versions[variant]),
                        MODEL_CACHE_DIR=tempfile.mkdtemp(dir=work),
                        POWERTOOLS_SERVICE_NAME=MODEL,
                        SESSION_THREADS=str(threads),
                    )
                if side in peer_keys:  # fetched from the local S3 into an empty folder, as ours
                    spec["peer_fetch"] = {**peer_keys[side], "into": tempfile.mkdtemp(dir=work)}
                if side in ("llamacpp", "pytorch") and threads == 2 and index == 0:
                    # the gate's figures, measured once (two threads: PyTorch's loop is slow)
                    spec.update(gate_prompts=gate_prompts, gate_texts=gate_texts, gate_steps=GATE_STEPS)
                log(f"{threads} thread(s), round {index + 1}: {side}")
                runs[side].append(once(side, spec, work, child_env))
                # each cold start downloads afresh: up to 1.1 GB
                for folder in (child_env.get("MODEL_CACHE_DIR"), spec.get("peer_fetch", {}).get("into")):
                    if folder:
                        shutil.rmtree(folder, ignore_errors=True)
        results["threads"][str(threads)] = {
            side: {
                key: summary([r[key] for r in runs[side]])
                for key in ("decode_tok_s", "prefill_64_s", "prefill_512_s", "first_token_s", "peak_rss_mb")
            }
            for side in sides
        }
        results["threads"][str(threads)]["_runs"] = runs
    results["sizes_mb"] = {
        **{f"ours:{name}": _folder_mb(folder) for name, folder in folders.items()},
        "llamacpp": gguf.stat().st_size / 1e6,
        "pytorch": _folder_mb(hf_folder),
    }
    measured = {side: results["threads"]["2"]["_runs"][side][0] for side in ("llamacpp", "pytorch")}
    reference = measured["pytorch"]["greedy"]
    agree = sum(
        int(a == b)
        for mine, want in zip(measured["llamacpp"]["greedy"], reference, strict=True)
        for a, b in zip(mine, want, strict=True)
    )
    gates = {name: _gate(folder) for name, folder in folders.items()}
    results["perplexity"] = {
        **{f"ours:{name}": gate.get("perplexity") for name, gate in gates.items()},
        "llamacpp": measured["llamacpp"]["perplexity"],
        "pytorch": next(iter(gates.values())).get("reference_perplexity"),
    }
    results["greedy_agreement"] = {
        **{f"ours:{name}": gate.get("greedy_agreement") for name, gate in gates.items()},
        "llamacpp": agree / sum(len(row) for row in reference),
        "pytorch": 1.0,
    }
    results["gates"] = gates
    results["download_mb_per_s"] = {
        side: summary([r["download_mb_per_s"] for r in results["threads"]["1"]["_runs"][side]])
        for side in sides
        if side.startswith("ours:")
        and all(r.get("download_mb_per_s") for r in results["threads"]["1"]["_runs"][side])
    }
    results["ratios"] = ratios(results)
    return results


def upload_peer(path: Path, side: str) -> dict[str, Any]:
    """A peer's model (the GGUF, or the fp32 HF folder) into the bench bucket, for ``peer_fetch``
    in ``llm_child.py``: what its child fetches, and the file or folder it then loads."""
    s3 = boto3.client("s3")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    keys = {}
    for file in files:
        relative = file.relative_to(path.parent).as_posix()
        keys[relative] = f"peers/{side}/{relative}"
        s3.upload_file(str(file), BUCKET, keys[relative])
    return {"bucket": BUCKET, "keys": keys, "root": path.name}


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def _gate(folder: Path) -> dict[str, Any]:
    manifest = json.loads((folder / "manifest.json").read_text())
    gate: dict[str, Any] = dict(manifest.get("quantisation") or manifest.get("parity") or {})
    return gate


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """Per alternating pair at one thread: the best gated variant of ours against each peer."""
    runs = results["threads"]["1"]["_runs"]
    ours = [side for side in results["sides"] if side.startswith("ours:")]
    best = max(ours, key=lambda side: summary([r["decode_tok_s"] for r in runs[side]])["median"])

    def pair(key: str, peer: str, invert: bool = False) -> dict[str, Any]:
        a = [r[key] for r in runs[best]]
        b = [r[key] for r in runs[peer]]
        return ratio(b, a) if invert else ratio(a, b)

    return {
        "best_variant": best,
        "llm_decode_vs_llamacpp": pair("decode_tok_s", "llamacpp"),
        "llm_prefill_512_vs_llamacpp": pair("prefill_512_s", "llamacpp", invert=True),
        "llm_first_token_vs_llamacpp": pair("first_token_s", "llamacpp"),
        "llm_first_token_vs_pytorch": pair("first_token_s", "pytorch"),
        "llm_peak_rss_vs_llamacpp": pair("peak_rss_mb", "llamacpp"),
        "llm_decode_vs_pytorch": pair("decode_tok_s", "pytorch"),
    }


def markdown(results: dict[str, Any]) -> str:
    sides = results["sides"]
    rows = []
    for threads, figures in results["threads"].items():
        rows += [
            f"| gemma-3-270m, {threads} thread(s) | " + " | ".join(sides) + " |",
            "| --- |" + " --- |" * len(sides),
        ]
        for key, label, fmt in (
            ("decode_tok_s", "decode, tok/s", "{:.1f}"),
            ("prefill_64_s", "prefill 64 tokens, ms", "{:.0f}"),
            ("prefill_512_s", "prefill 512 tokens, ms", "{:.0f}"),
            ("first_token_s", "process start to first token, s", "{:.2f}"),
            ("peak_rss_mb", "peak RSS, MB", "{:.0f}"),
        ):
            scale = 1000 if key.startswith("prefill") else 1
            rows.append(
                f"| {label} | "
                + " | ".join(fmt.format(figures[s][key]["median"] * scale) for s in sides)
                + " |"
            )
        rows.append("")
    rows.append("| size, MB | " + " | ".join(f"{results['sizes_mb'][s]:.0f}" for s in sides) + " |")
    rows.append(
        "| perplexity | "
        + " | ".join(f"{results['perplexity'][s]:.2f}" if results["perplexity"].get(s) else "" for s in sides)
        + " |"
    )
    rows.append(
        "| greedy agreement with PyTorch fp32 (gate prompts) | "
        + " | ".join(f"{results['greedy_agreement'][s]:.3f}" for s in sides)
        + " |"
    )
    for side, rate in results.get("download_mb_per_s", {}).items():
        rows.append(f"- {side}: the graph downloaded from the local S3 at {rate['median']:.0f} MB/s (median)")
    rows.append("")
    rows += ratio_lines(results["ratios"], TARGETS)
    return "\n".join(rows) + "\n"


def on_local_s3(
    name: str,
    bucket: str,
    bench: Callable[[Path, RegistryAdmin, dict[str, str], int], dict[str, Any]],
    repeats: int,
    extra_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A gemma bench run alone: a moto server with ``bucket``, a work folder deleted afterwards
    (the versions, the GGUF, the fp32 folder: gigabytes)."""
    work = Path(tempfile.mkdtemp(prefix=f"maas-bench-{name}-"))
    try:
        with moto_server() as endpoint, environment(local_aws_environment(endpoint)):
            create_bucket(bucket)
            env = {**os.environ, "POWERTOOLS_METRICS_NAMESPACE": "MaasBench", **(extra_env or {})}
            return bench(work, RegistryAdmin(bucket), env, repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results = on_local_s3("llm", BUCKET, run, args.repeats, {"MODEL_BUCKET": BUCKET})
    print(write(results))
    stored = plots.latest_results()
    plots.draw(stored)  # the Benchmarks page's LLM charts beside the others
    plots.embed_headline(stored)
    return 0


def write(results: dict[str, Any]) -> str:
    """``llm-latest.json`` and its table (``llm-latest.md``), which the table is returned as."""
    out = PROJECT_ROOT / "benchmarks" / "results" / "llm-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (PROJECT_ROOT / "benchmarks" / "results" / "llm-latest.md").write_text(table)
    return table


if __name__ == "__main__":
    sys.exit(main())
