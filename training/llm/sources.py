"""Which kind of decoder LLM a path is, and the import each kind takes (``maas import``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from training.llm.importer import import_llm, is_causal_lm_folder, is_gguf, parse_variants
from training.llm.onnx_folder import import_onnx_folder, is_kv_cache_folder


def is_llm_source(path: Path) -> bool:
    return is_gguf(path) or (path.is_dir() and (is_causal_lm_folder(path) or is_kv_cache_folder(path)))


def import_any(
    source: Path, *, name: str, out: Path, quantize: str | None, chat_template: Path | None, quiet: bool
) -> dict[str, dict[str, Any]]:
    """``{variant: manifest}`` of what was written (fp32 at ``out``)."""
    if source.is_dir() and is_kv_cache_folder(source):
        return import_onnx_folder(
            source, name=name, out=out, quantize=quantize, chat_template=chat_template, quiet=quiet
        )
    return import_llm(
        source,
        name=name,
        out=out,
        variants=parse_variants(quantize),
        chat_template=chat_template,
        quiet=quiet,
    )
