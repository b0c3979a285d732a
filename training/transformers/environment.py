"""The export environment: Python 3.11 with PyTorch 2.13 (CPU), in ``.venv/export``.

PyTorch has no CPU wheel for the project's Python 3.12 on these machines (PyPI's cp312 build is
CUDA and does not resolve), so ``make install`` creates a second virtual environment from
``training/transformers/requirements.txt`` and the project runs ``torch_export.py`` in it as a
subprocess. Only files cross over: the 3.12 side never imports torch.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from maas.core.errors import TrainingError
from training.data import PROJECT_ROOT

SCRIPT = Path(__file__).with_name("torch_export.py")
DEFAULT_PYTHON = PROJECT_ROOT / ".venv" / "export" / "bin" / "python"


def export_python() -> Path:
    """``$MAAS_EXPORT_PYTHON``, else the Makefile's ``.venv/export``."""
    python = Path(os.environ.get("MAAS_EXPORT_PYTHON") or DEFAULT_PYTHON)
    if not python.is_file():
        raise TrainingError(
            f"the export environment is missing ({python}): `make install` creates it "
            "(Python 3.11 with PyTorch 2.13 CPU, training/transformers/requirements.txt)"
        )
    return python


def run_export(arguments: list[str], script: Path = SCRIPT, *, threads: int = 1) -> dict[str, Any]:
    """Run ``script`` (``torch_export.py``) in the export environment; its last stdout line is a
    JSON summary."""
    env = {
        **os.environ,
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": str(threads),
        "MAAS_TORCH_THREADS": str(threads),
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [str(export_python()), str(script), *arguments], capture_output=True, text=True, env=env, check=False
    )
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise TrainingError(f"the PyTorch export failed (exit {result.returncode}):\n{tail}")
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return summary
