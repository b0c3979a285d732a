"""``maas import`` of a decoder already exported to ONNX with a KV cache: an onnxruntime-genai
folder (``genai_config.json``) or an optimum ``text-generation-with-past`` folder (``model.onnx``
taking ``past_key_values.*``, ``config.json``).

There is no PyTorch model to compare with, so the gate checks what the export could have broken
and we rely on: decoding with the cache (the served, pruned graph feeding ``present`` back) gives
the same greedy tokens as recomputing every prefix without it on the full graph, and the served
graph's last logits equal the full graph's. Perplexity on the held-out text is recorded.
Quantised variants need the source model: import the checkpoint or GGUF instead.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.errors import ParityError, TrainingError
from training.export import WEIGHTS_FILE
from training.llm import gate, version
from training.llm.decode import Decoder
from training.llm.graph import PAST_KEY, describe, prune_to_last_position, shorten_rotary_caches
from training.progress import Progress

MODEL = "model.onnx"


def is_kv_cache_folder(path: Path) -> bool:
    if (path / "genai_config.json").is_file():
        return True
    if not (path / MODEL).is_file():
        return False
    import onnx

    graph = onnx.load(str(path / MODEL), load_external_data=False).graph
    return any(PAST_KEY.match(i.name) for i in graph.input)


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _eos(*values: Any) -> list[int]:
    found: list[int] = []
    for value in values:
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in found:
                found.append(token)
    return found


def facts_of(folder: Path) -> dict[str, Any]:
    """Special tokens, context length and chat template from the folder's own configuration."""
    genai = _json(folder / "genai_config.json").get("model", {})
    config, generation = _json(folder / "config.json"), _json(folder / "generation_config.json")
    tokenizer_config = _json(folder / "tokenizer_config.json")
    bos = genai.get("bos_token_id", config.get("bos_token_id", generation.get("bos_token_id")))
    eos = _eos(genai.get("eos_token_id"), generation.get("eos_token_id"), config.get("eos_token_id"))
    template_file = folder / version.CHAT_TEMPLATE_FILE
    template = (
        template_file.read_text(encoding="utf-8")
        if template_file.is_file()
        else tokenizer_config.get("chat_template")
    )
    context = genai.get("context_length") or config.get("max_position_embeddings")
    if not eos or not context:
        raise TrainingError(f"{folder}: no EOS token id or context length in genai_config.json / config.json")
    return {
        "architecture": genai.get("type") or config.get("model_type", "unknown"),
        "bos_token_id": bos,
        "add_bos": bool(tokenizer_config.get("add_bos_token", bos is not None)),
        "eos_token_ids": eos,
        "pad_token_id": genai.get("pad_token_id", config.get("pad_token_id", eos[0])),
        "context_length": int(context),
        "chat_template": template if isinstance(template, str) else None,
    }


def _encoder(tokenizer_file: Path, facts: dict[str, Any]) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))

    def encode(text: str) -> list[int]:
        ids = list(tokenizer.encode(text).ids)
        bos = facts["bos_token_id"]
        return [bos, *ids] if facts["add_bos"] and bos is not None and (not ids or ids[0] != bos) else ids

    return encode


def _staged(source: Path, work: Path) -> Path | None:
    """The folder's graph in ``work`` with its one external-data file renamed ``model.onnx.data``."""
    import onnx

    model = onnx.load(str(source / MODEL), load_external_data=False)
    locations = {
        entry.value
        for tensor in model.graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    }
    if len(locations) > 1:
        raise TrainingError(f"{source}: weights in {len(locations)} external files; one is supported")
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = WEIGHTS_FILE
    onnx.save_model(model, str(work / MODEL))
    for config in ("genai_config.json", "config.json"):  # the head size, when the graph leaves it symbolic
        if (source / config).is_file():
            shutil.copyfile(source / config, work / config)
    if not locations:
        return None
    shutil.copyfile(source / locations.pop(), work / WEIGHTS_FILE)
    return work / WEIGHTS_FILE


def _uncached_greedy(decoder: Decoder, prompt: list[int], steps: int) -> list[int]:
    ids = list(prompt)
    for _ in range(steps):
        logits, _ = decoder.forward(ids, decoder._empty_cache(), 0)
        ids.append(int(np.argmax(logits[-1])))
    return ids[len(prompt) :]


def import_onnx_folder(
    source: Path,
    *,
    name: str,
    out: Path,
    quantize: str | None = None,
    chat_template: Path | None = None,
    spec: gate.GateSpec | None = None,
    quiet: bool = False,
) -> dict[str, dict[str, Any]]:
    if quantize:
        raise TrainingError(
            "--quantize needs the source model to gate against: import the GGUF or checkpoint folder instead"
        )
    progress = Progress(f"import {name}", quiet=quiet)
    spec = spec or gate.GateSpec()
    tokenizer = source / version.TOKENIZER_FILE
    if not tokenizer.is_file():
        raise TrainingError(f"{source}: tokenizer.json is missing (the layer tokenises with it alone)")
    facts = facts_of(source)
    template = chat_template.read_text(encoding="utf-8") if chat_template else facts["chat_template"]
    encode = _encoder(tokenizer, facts)
    prompts, texts = gate.held_out(spec)
    prompt_ids = [encode(p) for p in prompts]
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work.", dir=out.parent))
    try:
        weights = _staged(source, work)
        served = work / "served.onnx"
        prune_to_last_position(work / MODEL, served)
        full, pruned = Decoder(work / MODEL), Decoder(served)
        nll = []
        for text in texts:
            ids = encode(text)[: spec.text_tokens]
            logprobs = full.logprobs(ids)
            nll.append(-logprobs[np.arange(len(ids) - 1), ids[1:]])
        agree = total = 0
        diff = 0.0
        greedy: list[list[int]] = []
        for ids in prompt_ids:
            cached, first = pruned.greedy(ids, spec.steps)
            uncached = _uncached_greedy(full, ids, spec.steps)
            full_last, _ = full.forward(ids, full._empty_cache(), 0)
            diff = max(diff, float(np.abs(first - full_last[-1]).max()))
            agree += sum(int(a == b) for a, b in zip(cached, uncached, strict=True))
            total += spec.steps
            greedy.append(cached)
        del full, pruned
        perplexity = math.exp(float(np.mean(np.concatenate(nll))))
        unmet = []
        if agree != total:
            unmet.append(
                f"decoding with the KV cache differs from recomputing without it on {total - agree} of {total} tokens"
            )
        if diff > gate.SERVED_TOLERANCE:
            unmet.append(f"the pruned graph's last logits differ from the full graph's by {diff:.2e}")
        parity = {
            "against": "the folder's own graph without its KV cache (no source model to compare with)",
            "perplexity": round(perplexity, 6),
            "greedy_agreement": round(agree / total, 6),
            "served_max_abs_logit_diff": diff,
            "held_out": {
                **spec.to_dict(),
                "texts_from": "Moby Dick (last chapters), SpamAssassin held-out ham bodies",
            },
            "passed": not unmet,
            **({"unmet": unmet} if unmet else {}),
        }
        progress(f"perplexity {perplexity:.4f}, cached vs uncached greedy agreement {agree / total:.4f}")
        if unmet:
            raise ParityError(f"refusing to write {name}: {'; '.join(unmet)}")
        kind = "onnxruntime-genai folder" if (source / "genai_config.json").is_file() else "optimum folder"
        shorten_rotary_caches(served, version.served_context(facts))
        io = version.io_of(describe(work / MODEL).io(), facts, template is not None)
        size = sum(p.stat().st_size for p in (served, weights) if p is not None)
        table = {
            "fp32": {
                "bytes": size,
                "perplexity": parity["perplexity"],
                "greedy_agreement": parity["greedy_agreement"],
                "mean_kl": 0.0,
                "passed": True,
            }
        }
        manifest = version.write(
            out,
            name=name,
            served_graph=served,
            weights=weights,
            tokenizer=tokenizer,
            chat_template=template,
            io=io,
            parity=parity,
            quantisation=None,
            metrics={"perplexity": parity["perplexity"], "variants": table},
            framework={
                "name": "onnx",
                "source": kind,
                "source_file": source.name,
                "architecture": facts["architecture"],
                "graph_rewrites": [
                    "lm_head pruned to the last position (served graph)",
                    "rotary tables cut to the positions served",
                ],
            },
            sample=version.sample_of(prompts[0], prompt_ids[0], greedy[0], io, tokenizer),
            provenance={"source": str(source), "variant": "as exported"},
        )
        progress(f"wrote {out}")
        return {"fp32": manifest}
    finally:
        shutil.rmtree(work, ignore_errors=True)
