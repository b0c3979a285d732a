"""``maas import`` of a decoder LLM from a GGUF file or a Hugging Face checkpoint folder.

The export environment (PyTorch, transformers, onnxruntime-genai's model builder) dequantises a
GGUF to fp32, answers the gate's prompts and texts with PyTorch, and builds one graph per variant.
Here, on the 3.12 side, each variant's graph is pruned for serving, measured against PyTorch
(``training.llm.gate``) and written as a version folder only if it passes. fp32 is ``--out``; a
quantised variant that passes is ``<out>-<variant>``; every variant's figures, passed or not, are
in each written manifest's ``metrics.variants``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas.core.errors import ParityError, TrainingError
from training.data import file_sha256
from training.export import WEIGHTS_FILE
from training.llm import gate, version
from training.llm.graph import describe, prune_to_last_position, shorten_rotary_caches
from training.progress import Progress
from training.transformers.environment import run_export

SCRIPT = Path(__file__).with_name("torch_llm.py")
EXPORTER = "onnxruntime-genai model builder"
#: bump when what the export writes changes: it keys the cache of ``maas train gemma``
EXPORTER_VERSION = "4"
GENAI_VERSION = "0.18.0"
SERVED_FILE = "served.onnx"


@dataclass(frozen=True, slots=True)
class Variant:
    """One graph the import writes: its precision and options (the builder's, or for ``lossless``
    precision the GGUF rewrite's: which projections get fp32 activations)."""

    name: str
    precision: str
    options: tuple[str, ...] = ()
    description: str = ""

    @property
    def quantised(self) -> bool:
        return self.precision != "fp32"

    def argument(self) -> str:
        return ",".join([f"{self.name}={self.precision}", *self.options])


VARIANTS = {
    v.name: v
    for v in (
        Variant("fp32", "fp32", (), "fp32 weights, as PyTorch's dequantised model"),
        Variant(
            "int4",
            "int4",
            ("accuracy_level=4", "algo_config=rtn", "block_size=32"),
            "MatMulNBits 4-bit, round-to-nearest, block 32, int8 activations (accuracy level 4)",
        ),
        Variant(
            "int4-kquant",
            "int4",
            ("accuracy_level=4", "algo_config=k_quant", "block_size=32"),
            "MatMulNBits 4-bit, k-quant, block 32, accuracy level 4",
        ),
        Variant(
            "int8",
            "int8",
            ("accuracy_level=4", "block_size=32"),
            "MatMulNBits 8-bit weight-only, block 32, accuracy level 4",
        ),
        Variant(
            "lossless",
            "lossless",
            (),
            "the GGUF's own integers (Q5_0/Q6_K/Q8_0 at 8 bits, Q4_K at 4 bits with its residual), "
            "never rounded twice; embedding GatherBlockQuantized 8-bit; accuracy level 4",
        ),
        Variant(
            "lossless-mixed",
            "lossless",
            ("fp32_activations=mlp.down_proj",),
            "the GGUF's own integers; fp32 activations into mlp.down_proj (4-bit kernels, 8-bit weights "
            "as two nibbles), int8 elsewhere; the lm_head shortlists 1,024 tokens at 4 bits and rescores "
            "them exactly",
        ),
        Variant(
            "exact",
            "lossless",
            ("fp32_activations=all",),
            "the GGUF's own integers with fp32 activations everywhere (4-bit kernels, 8-bit weights as "
            "two nibbles); the lm_head shortlists 1,024 tokens at 4 bits and rescores them exactly",
        ),
        Variant(
            "mixed",
            "int4",
            (
                "accuracy_level=4",
                "algo_config=rtn",
                "block_size=32",
                "matmul_mixed_precision=last_matmul:int8",
            ),
            "RTN 4-bit body, the lm_head at 8 bits, accuracy level 4",
        ),
    )
}


#: what ``all`` builds: k-quant is left out (its builder run took over 6 minutes here); ask for it by name
ALL = ("int4", "int8", "mixed", "lossless", "lossless-mixed", "exact")


def parse_variants(text: str | None) -> list[Variant]:
    """``--quantize int4,int8`` (or ``all``); fp32 is always built: it is the gate's first step."""
    names = [] if not text else (list(ALL) if text == "all" else [n.strip() for n in text.split(",")])
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise TrainingError(
            f"--quantize: unknown variant(s) {unknown}; choose from {sorted(VARIANTS)} or all"
        )
    return [VARIANTS["fp32"], *(VARIANTS[n] for n in names if n != "fp32")]


def is_gguf(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(4) == b"GGUF"


def is_causal_lm_folder(path: Path) -> bool:
    """A Hugging Face checkpoint of a decoder (``...ForCausalLM`` with PyTorch weights)."""
    config = path / "config.json"
    if not config.is_file() or (path / "model.onnx").is_file():
        return False
    architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    return weights and any(str(a).endswith("ForCausalLM") for a in architectures)


def _framework(
    source: Path, kind: str, facts: dict[str, Any], summary: dict[str, Any], variant: Variant
) -> dict[str, Any]:
    return {
        "name": "pytorch",
        "source": kind,
        "source_file": source.name,
        **({"source_sha256": file_sha256(source)} if source.is_file() else {}),
        "architecture": facts["architecture"],
        "exporter": EXPORTER,
        "exporter_version": GENAI_VERSION,
        "builder_precision": "fp32" if variant.precision == "lossless" else variant.precision,
        "builder_options": ["windowed_kv_cache=false", *variant.options],
        **(
            {"weights": "the GGUF's integers and scales (training/llm/lossless.py)"}
            if variant.precision == "lossless"
            else {}
        ),
        "graph_rewrites": [
            "lm_head pruned to the last position (served graph)",
            "rotary tables cut to the positions served",
        ],
        "torch": summary["versions"]["torch"],
        "transformers": summary["versions"]["transformers"],
    }


def _token_ids(tokenizer: Path, tokens: tuple[str, ...]) -> list[int]:
    from tokenizers import Tokenizer

    vocabulary = Tokenizer.from_file(str(tokenizer))
    ids = [vocabulary.token_to_id(token) for token in tokens]
    missing = [token for token, i in zip(tokens, ids, strict=True) if i is None]
    if missing:
        raise TrainingError(f"stop tokens {missing} are not in the tokenizer's vocabulary")
    return [int(i) for i in ids if i is not None]


def _weights(folder: Path) -> Path | None:
    data = folder / WEIGHTS_FILE
    return data if data.is_file() else None


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in (folder / "model.onnx", folder / WEIGHTS_FILE) if p.is_file())


def import_llm(
    source: Path,
    *,
    name: str,
    out: Path,
    variants: list[Variant] | None = None,
    chat_template: Path | None = None,
    spec: gate.GateSpec | None = None,
    quiet: bool = False,
    threads: int = 1,
    notices: dict[str, str] | None = None,
    keep_reference: Path | None = None,
    stop_tokens: tuple[str, ...] = (),
) -> dict[str, dict[str, Any]]:
    """Every variant that passes its gate, as ``{variant: manifest}`` (fp32 first, at ``out``).
    ``notices``: text files every version carries (a licence's NOTICE). ``keep_reference``: where
    to keep PyTorch's answers (prompt ids, greedy ids, steps) for other tests to compare with.
    ``stop_tokens``: tokens that end generation besides the source's EOS (Gemma's ``<end_of_turn>``,
    which its GGUF does not list)."""
    progress = Progress(f"import {name}", quiet=quiet)
    variants = variants or [VARIANTS["fp32"]]
    spec = spec or gate.GateSpec()
    kind = "gguf" if is_gguf(source) else "hf"
    if kind == "hf" and not is_causal_lm_folder(source):
        raise TrainingError(
            f"{source} is neither a GGUF file nor a Hugging Face ...ForCausalLM checkpoint folder"
        )
    from_gguf = [v.name for v in variants if v.precision == "lossless"]
    if kind != "gguf" and from_gguf:
        raise TrainingError(
            f"--quantize {','.join(from_gguf)}: these variants are the GGUF's own integers; "
            f"{source.name} is not a GGUF file"
        )
    template_text = chat_template.read_text(encoding="utf-8") if chat_template is not None else None
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.work.", dir=out.parent))
    try:
        (work / "texts.json").write_text(gate.texts_request(spec), encoding="utf-8")
        progress(f"export environment: {kind} -> fp32 PyTorch reference, then {[v.name for v in variants]}")
        summary = run_export(
            [
                "export",
                "--source",
                str(source),
                "--work",
                str(work),
                "--texts",
                str(work / "texts.json"),
                *[a for v in variants for a in ("--variant", v.argument())],
            ],
            SCRIPT,
            threads=threads,
        )
        facts = json.loads((work / "facts.json").read_text(encoding="utf-8"))
        tokenizer = Path(summary["hf_folder"]) / version.TOKENIZER_FILE
        facts["eos_token_ids"] += [
            t for t in _token_ids(tokenizer, stop_tokens) if t not in facts["eos_token_ids"]
        ]
        template = template_text if template_text is not None else facts.get("chat_template")
        reference = gate.Reference.read(work / "reference")
        if keep_reference is not None:
            kept = {"prompts": reference.prompts, "greedy": reference.greedy, "steps": reference.steps}
            keep_reference.write_text(json.dumps(kept), encoding="utf-8")
        progress(
            f"PyTorch fp32 perplexity {reference.perplexity:.4f} on {len(reference.texts)} held-out texts"
        )
        figures: dict[str, dict[str, Any]] = {}
        reports: dict[str, dict[str, Any]] = {}
        for variant in variants:
            folder = work / variant.name
            prune_to_last_position(folder / "model.onnx", folder / SERVED_FILE)
            measured = gate.measure(folder / "model.onnx", folder / SERVED_FILE, reference, threads=threads)
            unmet = gate.verdict(measured, reference.perplexity, variant.quantised)
            reports[variant.name] = gate.report(measured, reference, spec, unmet)
            figures[variant.name] = measured
            progress(
                f"{variant.name}: {_size(folder) / 1e6:.1f} MB, perplexity {measured['perplexity']:.4f} "
                f"({reports[variant.name]['perplexity_ratio']:.4f}x), greedy agreement "
                f"{measured['greedy_agreement']:.4f}, mean KL {measured['mean_kl']:.5f}: "
                + ("passes" if not unmet else "FAILS: " + "; ".join(unmet))
            )
            if variant.name == "fp32" and unmet:
                raise ParityError(f"refusing to write {name}: fp32 ONNX misses its gate: {'; '.join(unmet)}")
            if not unmet:  # gated: its served graph keeps the rotary rows of the positions served
                shorten_rotary_caches(folder / SERVED_FILE, version.served_context(facts))
        table = {
            v.name: {
                "description": v.description,
                "bytes": _size(work / v.name),
                "perplexity": figures[v.name]["perplexity"],
                "perplexity_ratio": reports[v.name]["perplexity_ratio"],
                "greedy_agreement": figures[v.name]["greedy_agreement"],
                "mean_kl": figures[v.name]["mean_kl"],
                "passed": reports[v.name]["passed"],
                **({"unmet": reports[v.name]["unmet"]} if "unmet" in reports[v.name] else {}),
            }
            for v in variants
        }
        metrics = {"perplexity": figures["fp32"]["perplexity"], "variants": table}
        graph_io = describe(work / "fp32" / "model.onnx").io()
        io = version.io_of(graph_io, facts, template is not None)
        fp32_bytes = table["fp32"]["bytes"]
        written: dict[str, dict[str, Any]] = {}
        for variant in variants:
            if not reports[variant.name]["passed"]:
                continue
            folder = work / variant.name
            target = out if variant.name == "fp32" else out.parent / f"{out.name}-{variant.name}"
            quantisation = (
                {
                    "scheme": variant.name,
                    "description": variant.description,
                    "builder_precision": variant.precision,
                    "builder_options": list(variant.options),
                    "fp32_bytes": fp32_bytes,
                    "bytes": table[variant.name]["bytes"],
                    "fp32_parity": reports["fp32"],
                    **reports[variant.name],
                }
                if variant.quantised
                else None
            )
            written[variant.name] = version.write(
                target,
                name=name,
                served_graph=folder / SERVED_FILE,
                weights=_weights(folder),
                tokenizer=tokenizer,
                chat_template=template,
                notices=notices or {},
                io=io,
                parity=reports[variant.name],
                quantisation=quantisation,
                metrics=metrics,
                framework=_framework(source, kind, facts, summary, variant),
                sample=version.sample_of(
                    gate.held_out(spec)[0][0],
                    reference.prompts[0],
                    figures[variant.name]["greedy"][0],
                    io,
                    tokenizer,
                ),
                provenance={
                    "source": str(source),
                    "variant": variant.name,
                    "chat_template": "--chat-template" if template_text is not None else "the source's",
                },
            )
            progress(f"wrote {target} ({table[variant.name]['bytes'] / 1e6:.1f} MB model)")
        return written
    finally:
        shutil.rmtree(work, ignore_errors=True)
