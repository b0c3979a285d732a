"""Bring your own transformer: a folder laid out the way Hugging Face's ONNX exporters write it.

``model.onnx`` (weights inline or as external data next to it), ``tokenizer.json`` and
``config.json``. Two kinds, told apart by the graph's output (or ``--task``):

- ``last_hidden_state`` (feature extraction) becomes a ``text-embedding`` model: mean pooling
  over the attention mask and L2 normalisation are appended to the graph, so the layer serves it
  exactly like ``minilm``;
- ``logits`` (sequence classification) becomes a ``transformer-classification`` model: a softmax
  is appended, and the labels are ``config.json``'s ``id2label`` in class order.

The parity gate runs the folder's own graph untouched, one text at a time (no padding), with the
folder's own tokenizer, pools (or softmaxes) in numpy, and compares the served path on the batched
sample. ``--quantize int8`` quantises the rewritten graph behind its own gate.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from maas.core.errors import TrainingError
from maas.core.predictor import Predictor
from maas.core.registry import check_model_name
from maas.core.tasks import task_for
from maas.core.tasks.subwords import ID_INPUTS
from maas.core.tasks.transformer import TextEmbedder, TransformerClassifier
from training.embedding_parity import (
    FP32_MIN_COSINE,
    INT8_MIN_COSINE,
    INT8_MIN_OVERLAP,
    QUERIES,
    compare_embeddings,
)
from training.export import (
    WEIGHTS_FILE,
    Candidate,
    ParityReport,
    compare_classifier,
    externalised,
    write_version,
)
from training.importer import INT8_PROBABILITY_TOLERANCE
from training.progress import Progress
from training.quantize import quantisation
from training.text import text_request_schema, token_feeds

FOLDER_FILES = ("model.onnx", "tokenizer.json", "config.json")
TOKENIZER = "tokenizer.json"


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and all((path / name).is_file() for name in FOLDER_FILES)


def _config(folder: Path) -> dict[str, Any]:
    try:
        config: dict[str, Any] = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as error:
        raise TrainingError(f"{folder / 'config.json'} is not JSON: {error}") from None
    return config


def labels_of(config: dict[str, Any]) -> list[str]:
    """``id2label`` in class order; a classifier without it cannot say what it predicts."""
    id2label = config.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        raise TrainingError("config.json has no id2label: a sequence classifier needs its labels")
    try:
        order = sorted(id2label, key=int)
    except ValueError:
        raise TrainingError("config.json's id2label keys must be class indices") from None
    if [int(k) for k in order] != list(range(len(order))):
        raise TrainingError(f"config.json's id2label must number classes 0..n-1, not {order}")
    return [str(id2label[k]) for k in order]


def _task(model: onnx.ModelProto, task: str | None) -> tuple[str, str]:
    outputs = [o.name for o in model.graph.output]
    inputs = [i.name for i in model.graph.input]
    if "input_ids" not in inputs or set(inputs) - set(ID_INPUTS):
        raise TrainingError(f"the graph takes {inputs}; a transformer folder's takes {list(ID_INPUTS)}")
    chosen = task or ("transformer-classification" if "logits" in outputs else "text-embedding")
    wanted = "logits" if chosen == "transformer-classification" else "last_hidden_state"
    if chosen not in (TextEmbedder.name, TransformerClassifier.name):
        raise TrainingError(
            f"a transformer folder is a text-embedding or transformer-classification model, not {chosen}"
        )
    if wanted not in outputs:
        raise TrainingError(f"a {chosen} folder's graph gives {wanted!r}; this one gives {outputs}")
    return chosen, wanted


def pooled(model: onnx.ModelProto) -> onnx.ModelProto:
    """``last_hidden_state`` -> mean over the attention mask -> L2 norm, as ``embeddings``."""
    one = helper.make_tensor("pool.one", TensorProto.INT64, [1], [1])
    minus = helper.make_tensor("pool.last", TensorProto.INT64, [1], [-1])
    tiny = helper.make_tensor("pool.tiny", TensorProto.FLOAT, [], [1e-9])
    model.graph.initializer.extend([one, minus, tiny])
    model.graph.node.extend(
        [
            helper.make_node("Cast", ["attention_mask"], ["pool.mask"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["pool.mask", "pool.last"], ["pool.mask3"]),
            helper.make_node("Mul", ["last_hidden_state", "pool.mask3"], ["pool.masked"]),
            helper.make_node("ReduceSum", ["pool.masked", "pool.one"], ["pool.sum"], keepdims=0),
            helper.make_node("ReduceSum", ["pool.mask3", "pool.one"], ["pool.count"], keepdims=0),
            helper.make_node("Max", ["pool.count", "pool.tiny"], ["pool.safe"]),
            helper.make_node("Div", ["pool.sum", "pool.safe"], ["pool.mean"]),
            helper.make_node("LpNormalization", ["pool.mean"], ["embeddings"], axis=1, p=2),
        ]
    )
    return _outputs(model, "embeddings", ["batch", None])


def softmaxed(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.node.extend([helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1)])
    return _outputs(model, "probabilities", ["batch", None])


def _outputs(model: onnx.ModelProto, name: str, shape: list[Any]) -> onnx.ModelProto:
    del model.graph.output[:]
    model.graph.output.extend([helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)])
    return model


def max_length(config: dict[str, Any], folder: Path) -> int:
    """The tokenizer's own truncation length, else the model's positions (512 for BERT)."""
    declared = (json.loads((folder / TOKENIZER).read_text(encoding="utf-8")).get("truncation") or {}).get(
        "max_length"
    )
    positions = int(config.get("max_position_embeddings", 512))
    return min(int(declared), positions) if declared else positions


def reference_answers(folder: Path, texts: list[str], output: str) -> np.ndarray:
    """The folder's own graph and tokenizer, one text at a time: pooled (or softmaxed) in numpy."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
    tokenizer.no_padding()
    source = Predictor(folder / "model.onnx")
    rows = []
    for text in texts:
        encoding = tokenizer.encode(text)
        arrays = {
            "input_ids": np.array([encoding.ids], dtype=np.int64),
            "attention_mask": np.array([encoding.attention_mask], dtype=np.int64),
            "token_type_ids": np.array([encoding.type_ids], dtype=np.int64),
        }
        feeds = {name: arrays[name] for name in source.input_names}
        answer = source.run(feeds, [output])[output][0].astype(np.float64)
        if output == "logits":
            e = np.exp(answer - answer.max())
            rows.append(e / e.sum())
        else:
            mean = answer.mean(axis=0)
            rows.append(mean / np.linalg.norm(mean))
    return np.stack(rows)


def import_transformer(
    folder: Path,
    *,
    name: str,
    out: Path,
    texts: list[str],
    task: str | None = None,
    quantize: str | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Write a version folder from a Hugging Face ONNX folder, checked on the sample ``texts``."""
    check_model_name(name)
    if not is_hf_folder(folder):
        raise TrainingError(f"{folder} is not a transformer folder: it needs {', '.join(FOLDER_FILES)}")
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise TrainingError("a sample of non-empty texts is needed (--sample, one JSON string a line)")
    progress = Progress(f"import {name}", quiet=quiet)
    config = _config(folder)
    model = onnx.load(str(folder / "model.onnx"))
    chosen, output = _task(model, task)
    labels = labels_of(config) if chosen == TransformerClassifier.name else []
    length = max_length(config, folder)
    progress(
        f"task {chosen}, {len(texts)} sample texts, max_length {length}"
        + (f", labels {labels}" if labels else "")
    )
    reference = reference_answers(folder, texts, output)
    graph = pooled(model) if output == "last_hidden_state" else softmaxed(model)
    io: dict[str, Any] = {"tokenizer": TOKENIZER, "max_length": length}
    io["embedding_output" if not labels else "probability_output"] = (
        "embeddings" if not labels else "probabilities"
    )
    manifest = {"task": chosen, "io": io, "labels": labels}

    def answers(predictor: Predictor) -> np.ndarray:
        served = task_for(predictor, manifest)
        key = str(io.get("embedding_output") or io["probability_output"])
        batches = [texts[i : i + 32] for i in range(0, len(texts), 32)]
        return np.concatenate([served.run_outputs(served.prepare(b), [key])[key] for b in batches])  # type: ignore[attr-defined]

    def gate(min_cosine: float, overlap: float | None, tolerance: float) -> Any:
        def check(predictor: Predictor) -> ParityReport:
            got = answers(predictor)
            if labels:
                named = np.array(labels)
                report = compare_classifier(named[got.argmax(1)], got, named[reference.argmax(1)], reference)
                return replace(report, tolerance=tolerance)
            return compare_embeddings(got, reference, min_cosine=min_cosine, min_overlap=overlap)

        return check

    retrieval = INT8_MIN_OVERLAP if len(texts) > QUERIES + 5 else None
    onnx_bytes, weights = externalised(graph)
    candidate = Candidate(
        name=name,
        task=chosen,
        onnx_bytes=onnx_bytes,
        labels=labels,
        io=io,
        metrics={},
        framework={
            "name": "onnx",
            "source_format": "Hugging Face ONNX export folder",
            "model_type": config.get("model_type"),
            "architectures": config.get("architectures"),
            "rewrite": "mean pooling + L2 norm appended" if not labels else "softmax appended",
        },
        provenance={"source": folder.name, "imported": True, "sample_rows": len(texts)},
        request_schema=text_request_schema(),
        opsets={entry.domain or "ai.onnx": entry.version for entry in graph.opset_import},
        artifacts={TOKENIZER: (folder / TOKENIZER).read_bytes(), WEIGHTS_FILE: weights},
        external_data=(WEIGHTS_FILE,),
        sample=texts[:3],
    )
    # the sample is all an import has: int8's smoothing calibrates on it, and its gate checks it
    calibration = token_feeds(folder / TOKENIZER, length, texts) if quantize else []
    int8 = quantisation(quantize, gate(INT8_MIN_COSINE, retrieval, INT8_PROBABILITY_TOLERANCE), calibration)
    return write_version(candidate, out, gate(FP32_MIN_COSINE, None, 1e-4), progress, int8)
