"""A transformer's own tokeniser (``tokenizer.json``), applied with Hugging Face's ``tokenizers``.

The Rust library alone, installed without its dependencies: no transformers, no PyTorch in the
layer. The file is an artifact of the version, so the ids served are the ids the model was
exported and checked with. Truncation and padding are set here, not taken from the file (an
exported ``tokenizer.json`` often pads every text to a fixed 128): texts are cut at the version's
``max_length`` and a batch is padded to its longest text only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from maas.core.errors import ConfigurationError

ID_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class Encoded:
    """A batch of token ids, its mask and segment ids, and which texts lost tokens to truncation."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    token_type_ids: np.ndarray
    truncated: np.ndarray

    def feeds(self, names: list[str], dtypes: dict[str, str]) -> dict[str, np.ndarray]:
        """The arrays a graph takes, by its input names, in its dtypes."""
        arrays = {n: getattr(self, n) for n in ID_INPUTS}
        return {name: arrays[name].astype(np.dtype(dtypes[name]), copy=False) for name in names}


class SubwordTokenizer:
    """``tokenizer.json`` with truncation at ``max_length`` and padding to the batch's longest text."""

    def __init__(self, path: Path, max_length: int) -> None:
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # the Rust library's own parse errors
            raise ConfigurationError(f"{path.name} is not a tokenizers file: {error}") from None
        if max_length < 2:
            raise ConfigurationError(f"max_length must be at least 2, not {max_length}")
        pad_id, pad_token = _padding(path, tokenizer)
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding(pad_id=pad_id, pad_token=pad_token)
        self.tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, texts: list[str]) -> Encoded:
        encodings = self.tokenizer.encode_batch(texts)
        return Encoded(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),
            token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),
            truncated=np.array([bool(e.overflowing) for e in encodings], dtype=bool),
        )


def _padding(path: Path, tokenizer: Tokenizer) -> tuple[int, str]:
    """The pad token the file declares, else BERT's ``[PAD]``."""
    declared = json.loads(path.read_text(encoding="utf-8")).get("padding") or {}
    token = str(declared.get("pad_token", "[PAD]"))
    pad_id = declared.get("pad_id", tokenizer.token_to_id(token))
    if pad_id is None:
        raise ConfigurationError(f"{path.name} declares no padding token and has no [PAD]")
    return int(pad_id), token
