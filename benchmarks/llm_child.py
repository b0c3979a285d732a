"""One side of the decoder-LLM benchmark, in a fresh interpreter: cold first token, then warm figures.

``python benchmarks/llm_child.py SIDE SPEC.json`` prints one JSON line. SIDE is

- ``ours``: the real model handler (``maas.entry.model``) answers a one-token ``/generate`` event,
  the version downloaded from the local S3 into an empty cache (the first token from process
  start, as a cold Lambda gives it); then the same warm task prefills and decodes;
- ``llamacpp``: llama-cpp-python on the original GGUF (the bench's own environment, .venv/bench);
- ``pytorch``: transformers on the dequantised fp32 folder (the export environment).

A peer's first token comes from the local S3 as ours does: its file(s) fetched into an empty
folder (``peer_fetch``, boto3's transfer manager with ours' part size and concurrency).

Every side gets the same token ids (the 64- and 512-token prompts, the text the perplexity is
measured on) from the parent, so tokenisers never differ. This file imports nothing of the project
at module level: the llama.cpp and PyTorch sides run in environments without it.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any


def peak_rss_mb() -> float:
    """VmHWM (not ru_maxrss, which a child inherits from a large parent across fork and exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


class Context:
    function_name = "bench"
    memory_limit_in_mb = 3538
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
    aws_request_id = "bench"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 900_000


def timed(run: Callable[[], Any]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def warm(
    decode: Callable[[list[int], int], int], spec: dict[str, Any], first_token_at: float
) -> dict[str, Any]:
    """A side's warm figures, the same way for every side: prefill = the time to the first new token
    (the best of two), decode = the rest of a 64-token prompt's continuation."""
    figures: dict[str, Any] = {
        "first_token_at": first_token_at,
        "prefill_64_s": min(timed(lambda: decode(spec["prompt_64"], 1)) for _ in range(2)),
        "prefill_512_s": min(timed(lambda: decode(spec["prompt_512"], 1)) for _ in range(2)),
    }
    started = time.perf_counter()
    produced = decode(spec["prompt_64"], spec["new_tokens"])
    figures["decode_s"] = time.perf_counter() - started - figures["prefill_64_s"]
    figures["decoded"] = produced - 1
    return figures


def ours(spec: dict[str, Any]) -> dict[str, Any]:
    sys.path[:0] = spec["paths"]
    with open(spec["event"]) as handle:
        event = json.load(handle)
    module = importlib.import_module("maas.entry.model")
    response = module.lambda_handler(event, Context())
    first_token_at = time.time()
    if response["statusCode"] != 200:
        raise SystemExit(f"the handler answered {response['statusCode']}: {response['body'][:500]}")
    served = module.runtime.service.current(spec["model"])
    task = served.task

    def decode(ids: list[int], new: int) -> int:
        # the same prompt again would reuse its KV cache (kv_cache.Prefix) and time two tokens,
        # not a prefill: forgotten first, as llama.cpp's side resets
        task.forget_prefix()
        request = task.parse({"prompt": "x", "max_new_tokens": new, "temperature": 0})
        request = _replace(request, prompt_ids=tuple(ids))
        steps = task.stream(request)
        produced = 0
        for deltas in steps:
            produced += sum(1 for d in deltas if d.token_id is not None)
        return produced

    return warm(decode, spec, first_token_at)


def _replace(request: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(request, **changes)


def peer_fetch(spec: dict[str, Any]) -> str:
    """The peer's model files from the local S3 (the environment points boto3 at it) into the
    empty folder ``spec["peer_fetch"]["into"]``, the way a user would without us: boto3's
    ``download_file``, with ours' part size and concurrency (8 MiB ranged GETs on 8 threads,
    ``maas.core.download``'s PART_BYTES and CONCURRENCY). Ours has its own downloader (no boto3
    to import, the sha256 computed as the parts arrive); a peer's file is not hashed."""
    import boto3
    from boto3.s3.transfer import TransferConfig

    fetch = spec["peer_fetch"]
    part = 8 * 1024 * 1024
    config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=8)
    s3 = boto3.client("s3")
    for relative, key in fetch["keys"].items():
        target = os.path.join(fetch["into"], relative)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(fetch["bucket"], key, target, Config=config)
    return os.path.join(fetch["into"], fetch["root"])


def llamacpp(spec: dict[str, Any]) -> dict[str, Any]:
    from llama_cpp import Llama

    threads = int(spec["threads"])
    llm = Llama(
        model_path=peer_fetch(spec),
        n_ctx=1024,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def decode(ids: list[int], new: int) -> int:
        # reset first: generate() alone reuses the cache of a prompt it has seen (a prefix match),
        # which would time one token instead of a prefill
        llm.reset()
        produced = 0
        for _ in llm.generate(ids, top_k=1, temp=0.0, reset=True):
            produced += 1
            if produced >= new:
                break
        return produced

    decode(spec["prompt_64"], 1)
    figures = warm(decode, spec, time.time())
    if spec.get("gate_texts"):
        figures["perplexity"] = llamacpp_perplexity(spec, threads)
        figures["greedy"] = [greedy(llm, ids, spec["gate_steps"]) for ids in spec["gate_prompts"]]
    return figures


def greedy(llm: Any, ids: list[int], steps: int) -> list[int]:
    llm.reset()
    tokens: list[int] = []
    for token in llm.generate(ids, top_k=1, temp=0.0, reset=True):
        tokens.append(int(token))
        if len(tokens) >= steps:
            break
    return tokens


def llamacpp_perplexity(spec: dict[str, Any], threads: int) -> float:
    """exp(mean NLL) of each token given the ones before it over the gate's held-out texts, as the
    gate computes it for our variants (``training.llm.gate.measure``)."""
    import numpy as np
    from llama_cpp import Llama

    llm = Llama(
        model_path=spec["gguf"],
        n_ctx=max(len(ids) for ids in spec["gate_texts"]) + 8,
        n_batch=512,
        n_threads=threads,
        n_threads_batch=threads,
        logits_all=True,
        verbose=False,
    )
    nll = []
    for ids in spec["gate_texts"]:
        llm.reset()
        llm.eval(ids)
        logits = np.asarray(llm.scores[: len(ids) - 1], dtype=np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        logprobs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        nll.append(-logprobs[np.arange(len(ids) - 1), ids[1:]])
    return float(math.exp(np.concatenate(nll).mean()))


def pytorch(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(int(spec["threads"]))
    model = AutoModelForCausalLM.from_pretrained(peer_fetch(spec), dtype=torch.float32)
    model.eval()

    def decode(ids: list[int], new: int) -> int:
        with torch.inference_mode():
            out = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=new,
                min_new_tokens=new,
                do_sample=False,
            )
        return int(out.shape[1] - len(ids))

    decode(spec["prompt_64"], 1)
    figures = warm(decode, spec, time.time())
    if spec.get("gate_prompts"):
        figures["greedy"] = [torch_greedy(model, ids, spec["gate_steps"]) for ids in spec["gate_prompts"]]
    return figures


def torch_greedy(model: Any, ids: list[int], steps: int) -> list[int]:
    """A plain greedy loop (EOS not suppressed, as the gate's reference and llama.cpp's loop)."""
    import torch

    tokens: list[int] = []
    past = None
    feed = torch.tensor([ids])
    with torch.inference_mode():
        for _ in range(steps):
            out = model(input_ids=feed, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tokens.append(int(out.logits[0, -1].argmax()))
            feed = torch.tensor([[tokens[-1]]])
    return tokens


SIDES = {"ours": ours, "llamacpp": llamacpp, "pytorch": pytorch}


def main() -> None:
    side, spec_path = sys.argv[1:3]
    with open(spec_path) as handle:
        spec = json.load(handle)
    os.environ.update({"OMP_NUM_THREADS": str(spec["threads"]), "SESSION_THREADS": str(spec["threads"])})
    figures = SIDES[side](spec)
    figures["decode_tok_s"] = figures["decoded"] / figures["decode_s"] if figures["decode_s"] > 0 else 0.0
    figures["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(figures), file=sys.__stdout__, flush=True)


if __name__ == "__main__":
    main()
