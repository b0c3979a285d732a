"""Training data: the SpamAssassin corpus shipped in ``data/`` and reproducible held-out splits."""

from __future__ import annotations

import gzip
import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maas.core.errors import TrainingError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SPAMASSASSIN = PROJECT_ROOT / "data" / "spamassassin.jsonl.gz"


@dataclass(frozen=True, slots=True)
class TextExample:
    id: str
    text: str
    label: str

    @property
    def group(self) -> str:
        """The corpus folder (``easy-ham-1``, ``hard-ham-1``, ``spam-2`` …): the stratum of the split."""
        return self.id.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class Split:
    train: list[TextExample]
    test: list[TextExample]
    description: dict[str, object]


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_spamassassin(path: Path = SPAMASSASSIN) -> list[TextExample]:
    if not path.is_file():
        raise TrainingError(f"data file {path} does not exist (see data/README.md for where it comes from)")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [TextExample(id=str(r["id"]), text=str(r["text"]), label=str(r["label"])) for r in rows]


def _rank(seed: int, example_id: str) -> str:
    return hashlib.sha256(f"{seed}:{example_id}".encode()).hexdigest()


def split_by_id(
    examples: Sequence[TextExample], *, test_fraction: float = 0.2, seed: int = 13, limit: int | None = None
) -> Split:
    """A reproducible split by message id, stratified by corpus folder.

    Every folder (so every label, and ``hard-ham-1``'s look-alike ham) is on both sides in the same
    proportion. The order within a folder comes from a hash of seed and id, so the split does not
    depend on the file's order. ``limit`` keeps a stratified sample of that many rows (tests).
    """
    by_group: dict[str, list[TextExample]] = defaultdict(list)
    for example in examples:
        by_group[example.group].append(example)
    total = len(examples)
    train: list[TextExample] = []
    test: list[TextExample] = []
    for group in sorted(by_group):
        members = sorted(by_group[group], key=lambda e: _rank(seed, e.id))
        if limit is not None and limit < total:
            members = members[: max(4, round(len(members) * limit / total))]
        cut = max(1, round(len(members) * test_fraction))
        test.extend(members[:cut])
        train.extend(members[cut:])
    description = {
        "method": "by message id, stratified by corpus folder, sha256(seed:id) order",
        "seed": seed,
        "test_fraction": test_fraction,
        "limit": limit,
        "train_rows": len(train),
        "test_rows": len(test),
        "groups": {g: sum(1 for e in test if e.group == g) for g in sorted(by_group)},
    }
    return Split(train=train, test=test, description=description)
