"""The project a command works on, and what ``maas serve`` leaves in it for the other commands.

A project is a folder with ``models.toml``; commands that read or write one (template, openapi,
events, serve, batch run) find it from the current directory, as git finds ``.git``, so that a
second clone sharing the first one's virtual environment writes its own files. ``--project DIR``
overrides the search.

``maas serve`` records the moto server it started (endpoint, registry bucket, its pid) in
``.maas/local.json``; ``maas publish``, ``maas models`` and ``maas invoke`` use it when no AWS
endpoint is configured, so the local loop needs no exported variables.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from maas.core.errors import MaasError

CATALOGUE = "models.toml"
STATE = Path(".maas") / "local.json"


def find(explicit: str | Path | None = None, start: Path | None = None) -> Path:
    """``explicit`` if it holds a catalogue, else the nearest folder up from ``start`` (the current
    directory) that does; a one-line error naming where it looked otherwise."""
    if explicit is not None:
        root = Path(explicit).resolve()
        if not (root / CATALOGUE).is_file():
            raise MaasError(f"--project {explicit}: no {CATALOGUE} there", code="not_a_project")
        return root
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CATALOGUE).is_file():
            return folder
    raise MaasError(
        f"not in a maas project: no {CATALOGUE} in {here} or any folder above it (cd into one, or pass --project DIR)",
        code="not_a_project",
    )


@dataclass(frozen=True, slots=True)
class LocalStandIn:
    """The moto server a running ``maas serve`` started, as the other commands find it."""

    endpoint: str
    bucket: str
    pid: int

    def describe(self) -> str:
        return f"the local stand-in: moto server {self.endpoint} (maas serve, pid {self.pid}), bucket {self.bucket}"


def record(root: Path, stand_in: LocalStandIn) -> Path:
    path = root / STATE
    path.parent.mkdir(exist_ok=True)
    (path.parent / ".gitignore").write_text("*\n")  # ignored by git wherever the project's .gitignore stops
    path.write_text(json.dumps(asdict(stand_in)) + "\n")
    return path


def forget(root: Path, pid: int) -> None:
    """Remove the record if it is still this process's (a second serve may have replaced it)."""
    found = read(root)
    if found is not None and found.pid == pid:
        (root / STATE).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read(root: Path) -> LocalStandIn | None:
    """The recorded stand-in while its ``maas serve`` still runs; None otherwise."""
    try:
        data = json.loads((root / STATE).read_text())
        stand_in = LocalStandIn(str(data["endpoint"]), str(data["bucket"]), int(data["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return stand_in if _alive(stand_in.pid) else None


def running_stand_in(start: Path | None = None) -> LocalStandIn | None:
    """The stand-in of the project around ``start`` (the current directory), if any runs."""
    try:
        root = find(start=start)
    except MaasError:
        return None
    return read(root)
