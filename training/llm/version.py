"""A ``causal-lm`` version folder (the contract in docs/how-to/llm.md): the served graph and its
weights, ``tokenizer.json``, the chat template, and a manifest the one schema accepts.

Files are moved, not read into memory: an fp32 Gemma 3 270M graph is 1.1 GB.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnxruntime

from maas.core.manifest import Manifest
from maas.core.predictor import Predictor
from maas.core.registry import MANIFEST_NAME, MODEL_FILE, sha256_file
from training.export import WEIGHTS_FILE, code_revision

TASK = "causal-lm"
TOKENIZER_FILE = "tokenizer.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
#: what serving allows by default: bounds the KV cache's memory (the model's own may be 32,768)
MAX_CONTEXT = 4096
MAX_NEW_TOKENS = 512
MAX_RETURN_SEQUENCES = 8
SAMPLE_TOKENS = 8


def served_context(facts: dict[str, Any]) -> int:
    """The most positions the layer serves (``io.max_context``): the model's own, up to MAX_CONTEXT."""
    return min(int(facts["context_length"]), MAX_CONTEXT)


def io_of(graph_io: dict[str, Any], facts: dict[str, Any], has_template: bool) -> dict[str, Any]:
    context = int(facts["context_length"])
    return {
        "tokenizer": TOKENIZER_FILE,
        **({"chat_template": CHAT_TEMPLATE_FILE} if has_template else {}),
        **graph_io,
        "context_length": context,
        "max_context": served_context(facts),
        "bos_token_id": facts["bos_token_id"],
        "add_bos": bool(facts["add_bos"]),
        "eos_token_ids": list(facts["eos_token_ids"]),
        "pad_token_id": facts["pad_token_id"],
        "max_new_tokens": MAX_NEW_TOKENS,
        "max_return_sequences": MAX_RETURN_SEQUENCES,
    }


def sample_of(
    prompt: str, prompt_ids: list[int], greedy: list[int], io: dict[str, Any], tokenizer: Path
) -> dict[str, Any]:
    """The greedy answer written with the version; ``maas models promote`` re-answers it."""
    from tokenizers import Tokenizer

    ids: list[int] = []
    for token in greedy[:SAMPLE_TOKENS]:
        if token in io["eos_token_ids"]:
            break
        ids.append(token)
    text = Tokenizer.from_file(str(tokenizer)).decode(ids, skip_special_tokens=True)
    return {
        "prompt": prompt,
        "prompt_token_ids": prompt_ids,
        "max_new_tokens": SAMPLE_TOKENS,
        "temperature": 0,
        "continuation": text,
        "token_ids": ids,
    }


def write_tokenizer(source: Path, target: Path) -> None:
    """``tokenizer.json`` with its BPE merges as ``"a b"`` strings rather than ``["a", "b"]`` pairs,
    where no part holds a space (then the two forms are one to ``tokenizers``). Why: a cold start
    parses it. Gemma's 514,906 merges as pairs took 0.89 s and left 307 MB resident (peak 356 MB);
    as strings, 0.69 s and 144 MB (peak 181 MB), with tokenizers 0.23.3 here. Anything else is copied."""
    document = json.loads(source.read_text(encoding="utf-8"))
    model = document.get("model") or {}
    merges = model.get("merges") or []
    pairs = model.get("type") == "BPE" and all(
        isinstance(m, list) and len(m) == 2 and all(isinstance(p, str) and " " not in p for p in m)
        for m in merges
    )
    if not merges or not pairs:
        shutil.copyfile(source, target)
        return
    model["merges"] = [f"{first} {second}" for first, second in merges]
    target.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def _entry(path: Path) -> dict[str, Any]:
    return {"sha256": sha256_file(path), "size": path.stat().st_size}


def write(
    out: Path,
    *,
    name: str,
    served_graph: Path,
    weights: Path | None,
    tokenizer: Path,
    chat_template: str | None,
    io: dict[str, Any],
    notices: dict[str, str] | None = None,
    parity: dict[str, Any],
    quantisation: dict[str, Any] | None,
    metrics: dict[str, Any],
    framework: dict[str, Any],
    sample: dict[str, Any],
    provenance: dict[str, Any],
) -> dict[str, Any]:
    """Move the served graph (and its external data, which it names ``model.onnx.data``) into a
    staged folder, write the manifest, and swap the folder in at ``out``."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        os.replace(served_graph, staging / MODEL_FILE)
        artifacts = [TOKENIZER_FILE]
        if weights is not None:
            os.replace(weights, staging / WEIGHTS_FILE)
            artifacts.append(WEIGHTS_FILE)
        write_tokenizer(tokenizer, staging / TOKENIZER_FILE)
        if chat_template is not None:
            (staging / CHAT_TEMPLATE_FILE).write_text(chat_template, encoding="utf-8")
            artifacts.append(CHAT_TEMPLATE_FILE)
        for filename, text in (notices or {}).items():
            (staging / filename).write_text(text, encoding="utf-8")
            artifacts.append(filename)
        import onnx

        graph = onnx.load(str(staging / MODEL_FILE), load_external_data=False)
        opsets = {(o.domain or "ai.onnx"): int(o.version) for o in graph.opset_import}
        predictor = Predictor(staging / MODEL_FILE)
        manifest = {
            "name": name,
            "task": TASK,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "framework": framework,
            "onnx": {"opsets": opsets, "onnxruntime": onnxruntime.__version__},
            "model": {"file": MODEL_FILE, **_entry(staging / MODEL_FILE)},
            "artifacts": {artifact: _entry(staging / artifact) for artifact in artifacts},
            "signature": {
                "inputs": [spec.to_dict() for spec in predictor.inputs],
                "outputs": [spec.to_dict() for spec in predictor.outputs],
            },
            "io": io,
            "labels": [],
            "metrics": metrics,
            "parity": parity,
            **({"quantisation": quantisation} if quantisation is not None else {}),
            "sample": sample,
            "provenance": {**provenance, "code_revision": code_revision()},
        }
        del predictor
        manifest = Manifest.from_dict(manifest).to_dict()
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
        return manifest
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def with_chat_template(folder: Path, template: str, source: str) -> dict[str, Any]:
    """A written version given a chat template its source lacked (a GGUF of a base model carries
    none): the artifact, ``io.chat_template`` and where it came from, in a manifest checked again.
    Written before publishing, so the registry's write-once manifest is this one."""
    (folder / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")
    manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["artifacts"][CHAT_TEMPLATE_FILE] = _entry(folder / CHAT_TEMPLATE_FILE)
    manifest["io"]["chat_template"] = CHAT_TEMPLATE_FILE
    manifest["framework"]["chat_template"] = source
    manifest = Manifest.from_dict(manifest).to_dict()
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
