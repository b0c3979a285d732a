"""Every runnable block of the docs runs against a moto server and prints what the page shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.runnable import DOCS, commands, report, runnable_pages, session
from training.data import PROJECT_ROOT


@pytest.mark.parametrize("page", runnable_pages(), ids=lambda p: p.relative_to(PROJECT_ROOT).as_posix())
def test_the_pages_commands_print_what_it_shows(page: Path, tmp_path: Path) -> None:
    with session(tmp_path) as running:
        for command in commands(page):
            outcome = running.run(command)
            assert outcome.ok, report(outcome)
            if command.text.startswith("maas serve"):
                assert (running.project / ".maas" / "local.json").exists(), report(outcome)


def test_the_runnable_blocks_are_found() -> None:
    """The marker is parsed as written: the first tutorial's commands, continuation lines joined."""
    found = commands(DOCS / "tutorials" / "first-model.md")
    assert [c.text.split()[0:2] for c in found[:3]] == [
        ["maas", "serve"],
        ["python", "examples/byom/wine_classifier.py"],
        ["maas", "import"],
    ]
    assert all(c.expected or c.text.startswith("curl") for c in found)
