"""Tiny random-init decoders through the real import path: what tests and the layer's tests serve.

``make_tiny(out_dir)`` writes, in the export environment, a two-layer Gemma 3 and a two-layer
Llama (64 wide, a 512-token byte-level BPE trained on Moby Dick, a chat template), then imports
each with ``training.llm.importer.import_llm``, exactly as ``maas import`` would: builder graph,
pruned lm_head, gate against PyTorch, ``causal-lm`` version folder.
"""

from __future__ import annotations

from pathlib import Path

from training.llm import gate
from training.llm.gate import MOBY_DICK
from training.llm.importer import SCRIPT, Variant, import_llm
from training.transformers.environment import run_export

ARCHITECTURES = ("gemma3", "llama")
#: enough to fail on a wrong graph, small enough for seconds
SPEC = gate.GateSpec(prompts=4, steps=32, texts=2, text_tokens=64, kl_positions=8)


def make_hf(out_dir: Path, architectures: tuple[str, ...] = ARCHITECTURES, seed: int = 13) -> dict[str, Path]:
    """Hugging Face checkpoint folders (``config.json``, ``model.safetensors``, tokenizer files)."""
    arguments = ["tiny", "--out", str(out_dir), "--corpus", str(MOBY_DICK), "--seed", str(seed)]
    summary = run_export([*arguments, *(a for arch in architectures for a in ("--arch", arch))], SCRIPT)
    return {arch: Path(folder) for arch, folder in summary["folders"].items()}


def make_tiny(
    out_dir: Path,
    architectures: tuple[str, ...] = ARCHITECTURES,
    variants: list[Variant] | None = None,
    quiet: bool = True,
) -> dict[str, Path]:
    """``{architecture: version folder}`` (model name ``tiny_<arch>``); the HF folders stay under
    ``out_dir/hf``, PyTorch's greedy answers in ``out_dir/tiny-<arch>.reference.json``."""
    sources = make_hf(out_dir / "hf", architectures)
    folders: dict[str, Path] = {}
    for arch, source in sources.items():
        target = out_dir / f"tiny-{arch}"
        kept = out_dir / f"tiny-{arch}.reference.json"
        import_llm(
            source,
            name=f"tiny_{arch}",
            out=target,
            variants=variants,
            spec=SPEC,
            quiet=quiet,
            keep_reference=kept,
        )
        folders[arch] = target
    return folders
