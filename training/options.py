"""What every trainer takes from the command line (``maas train <model> ...``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class TrainOptions:
    out: Path
    seed: int = 13
    epochs: int | None = None
    data: Path | None = None
    dataset: str | None = None
    limit: int | None = None
    quiet: bool = False
    #: ``--quantize int8``: write the quantised variant, behind its own gate (``training.quantize``)
    quantize: str | None = None
