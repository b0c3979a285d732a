"""Helpers of the integration tests: the pinned tools of this virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from training.data import PROJECT_ROOT

VENV_BIN = Path(sys.executable).parent
# the deployment type the `translated` fixture picks, to see the parameter reach CodeDeploy
PICKED_DEPLOYMENT = "Linear10PercentEvery1Minute"


VENV_BIN = Path(sys.executable).parent


def run(*command: str, cwd: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    """A tool from this virtual environment; its bin first on PATH, so `sam build` finds python3.12."""
    env = {
        **os.environ,
        "SAM_CLI_TELEMETRY": "0",
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    return subprocess.run(
        [str(VENV_BIN / command[0]), *command[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def maas(cwd: Path, *args: str, code: Path = PROJECT_ROOT) -> subprocess.CompletedProcess[str]:
    """``maas`` run in ``cwd`` with the code (ops/, the layer) of the tree ``code`` first on the path."""
    env = {**os.environ, "PYTHONPATH": f"{code / 'layers' / 'runtime'}{os.pathsep}{code}"}
    return subprocess.run(
        [sys.executable, "-m", "ops.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
