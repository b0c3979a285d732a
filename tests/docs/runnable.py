"""The documentation's runnable shell blocks: found, run in a fresh project, compared with the page.

A block is runnable when its fence says so: ```` ```console { .runnable } ````. In it, a line
starting with ``$ `` is a command (a trailing backslash continues it on the next line); the lines
up to the next command are what it prints (stdout and stderr, as a terminal shows them). In the
expected text, a line ``...`` stands for any number of lines and ``…`` for any text within a line.
Volatile parts are masked on both sides: timings in progress lines, ports, pids, request ids and
the project's own path (``/path/to/project``). ``maas serve`` runs in the background for the rest
of the page; what it printed up to "listening on" is compared.

All runnable blocks of one page run in order in one fresh copy of the project, as a reader would
type them there; each command is a ``bash -c`` of its own (nothing is exported between them: the
point of the local loop is that nothing needs to be).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from training.data import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"
FENCE = re.compile(r"^```console \{ \.runnable \}\s*$")
DOCUMENTED_PORT = "3000"
SERVE = "maas serve"
# What the reader's project holds that the documented commands read (the code comes from this tree).
PROJECT_PARTS = ("models.toml", "template.yaml", "infra", "events", "examples", "functions")
MASKS = [
    (re.compile(r"(\[\w+(?: \w+)?\s+)\d+\.\d+s\]"), r"\1N.Ns]"),
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"(127\.0\.0\.1|localhost):\d+"), r"\1:PORT"),
    (re.compile(r"\bpid \d+"), "pid N"),
]


@dataclass(frozen=True, slots=True)
class Command:
    page: str
    line: int  # 1-based line of the command in its page
    text: str
    expected: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def commands(page: Path) -> list[Command]:
    """The runnable commands of one page, in order."""
    found: list[Command] = []
    lines = page.read_text().splitlines()
    name = page.resolve().relative_to(PROJECT_ROOT).as_posix()
    index = 0
    while index < len(lines):
        if not FENCE.match(lines[index]):
            index += 1
            continue
        index += 1
        current: tuple[int, list[str], list[str]] | None = None
        while not lines[index].startswith("```"):
            line = lines[index]
            if line.startswith("$ "):
                if current is not None:
                    found.append(Command(name, current[0], " ".join(current[1]), tuple(current[2])))
                current = (index + 1, [line[2:].rstrip("\\").strip()], [])
                while line.endswith("\\"):
                    index += 1
                    line = lines[index]
                    current[1].append(line.rstrip("\\").strip())
            elif current is not None:
                current[2].append(line)
            index += 1
        if current is not None:
            found.append(Command(name, current[0], " ".join(current[1]), tuple(current[2])))
        index += 1
    return found


def runnable_pages() -> list[Path]:
    """The README's first example and every docs page with a runnable block."""
    pages = [PROJECT_ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [page for page in pages if commands(page)]


def mask(text: str, project: Path) -> str:
    text = text.replace(str(project.resolve()), "/path/to/project").replace(str(project), "/path/to/project")
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def _line_matches(expected: str, actual: str) -> bool:
    if "…" not in expected:
        return expected == actual
    pattern = ".*".join(re.escape(part) for part in expected.split("…"))
    return re.fullmatch(pattern, actual) is not None


def matches(expected: list[str], actual: list[str]) -> bool:
    """``expected`` (with ``...`` lines and ``…`` in lines) against ``actual``, both masked."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    return bool(actual) and _line_matches(head, actual[0]) and matches(rest, actual[1:])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reader_environment(home: Path) -> dict[str, str]:
    """A reader's shell after ``source .venv/bin/activate``: no AWS settings at all, this tree's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "MODEL_BUCKET"}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": f"{PROJECT_ROOT / 'layers' / 'runtime'}{os.pathsep}{PROJECT_ROOT}",
            "PYTHONUNBUFFERED": "1",  # stdout and stderr interleave as on a terminal
            "AWS_EC2_METADATA_DISABLED": "true",  # no instance-metadata probe for credentials
            "AWS_CA_BUNDLE": os.environ.get("AWS_CA_BUNDLE", ""),
            "MODEL_CACHE_DIR": str(home / "model-cache"),
            "HOME": str(home),
        }
    )
    if not env["AWS_CA_BUNDLE"]:
        del env["AWS_CA_BUNDLE"]
    return env


def copy_project(target: Path) -> Path:
    target.mkdir(parents=True)
    for part in PROJECT_PARTS:
        source = PROJECT_ROOT / part
        if source.is_dir():
            shutil.copytree(source, target / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target / part)
    return target


@dataclass
class Outcome:
    command: Command
    actual: list[str]
    ok: bool


class Session:
    """One page's commands in one project, with the background server stopped at the end."""

    def __init__(self, project: Path, home: Path) -> None:
        self.project = project
        self.env = reader_environment(home)
        self.port = str(free_port())
        self.background: list[subprocess.Popen[bytes]] = []

    def run(self, command: Command) -> Outcome:
        text = command.text.replace(f"localhost:{DOCUMENTED_PORT}", f"localhost:{self.port}")
        text = text.replace(f"--port {DOCUMENTED_PORT}", f"--port {self.port}")
        if text.startswith(SERVE):
            output = self._serve(text)
        else:
            done = subprocess.run(
                ["bash", "-c", text],
                cwd=self.project,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=600,
            )
            output = done.stdout.decode(errors="replace")
        actual = mask(output, self.project).rstrip("\n").split("\n") if output.strip() else []
        expected = [mask(line, self.project) for line in command.expected]
        while expected and not expected[-1].strip():
            expected.pop()
        return Outcome(command, actual, matches(expected, actual))

    def _serve(self, text: str) -> str:
        log = self.project / ".serve.log"
        handle = log.open("wb")
        process = subprocess.Popen(
            ["bash", "-c", f"exec {text}"],
            cwd=self.project,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append(process)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            output = log.read_text(errors="replace")
            if "listening on" in output and (self.project / ".maas" / "local.json").exists():
                return output[: output.index("\n", output.index("listening on")) + 1]
            time.sleep(0.1)
        return log.read_text(errors="replace")

    def close(self) -> None:
        for process in self.background:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)


@contextmanager
def session(tmp: Path) -> Iterator[Session]:
    running = Session(copy_project(tmp / "project"), tmp / "home")
    (tmp / "home").mkdir()
    try:
        yield running
    finally:
        running.close()


def report(outcome: Outcome) -> str:
    expected = "\n".join(outcome.command.expected)
    actual = "\n".join(outcome.actual)
    return f"{outcome.command.where}: $ {outcome.command.text}\n--- the page shows\n{expected}\n--- it printed\n{actual}"
