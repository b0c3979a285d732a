"""The layer's imports run one way: entry -> adapters (http, events) -> core; adapters never
import each other, and the registry function imports no onnxruntime."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from training.data import PROJECT_ROOT

LAYER = PROJECT_ROOT / "layers" / "runtime"
PACKAGE = LAYER / "maas"
# What each package of the layer may import from the others.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "http": {"core"},
    "events": {"core"},
    "entry": {"core", "http", "events"},
}


def layer_package(module: str) -> str | None:
    """``maas.core.tasks.png`` -> ``core``; ``maas`` itself (its version) -> None."""
    parts = module.split(".")
    return parts[1] if parts[0] == "maas" and len(parts) > 1 else None


def imports_of(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if len(relative.parts) == 1:  # maas/__init__.py
            continue
        source = relative.parts[0]
        for module in imports_of(path):
            target = layer_package(module)
            if target is not None and target in ALLOWED and target != source:
                graph[source].add(target)
    return graph


def test_every_layer_module_lives_in_one_of_the_four_packages() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == []
    assert sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(
        ALLOWED
    )


def test_imports_run_one_way_entry_adapters_core() -> None:
    graph = package_graph()
    print("layer import graph:", {source: sorted(targets) for source, targets in sorted(graph.items())})
    for source, targets in graph.items():
        assert targets <= ALLOWED[source], f"maas.{source} imports {sorted(targets - ALLOWED[source])}"
    assert graph["entry"] >= {"core", "http"}, "the entry dispatches to the adapters"


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [("core", "http"), ("core", "events"), ("http", "events"), ("events", "http"), ("core", "entry")],
)
def test_the_direction_check_catches_a_wrong_import(tmp_path: Path, source: str, forbidden: str) -> None:
    """The check above is not vacuous: a file importing against the direction is found."""
    bad = tmp_path / "bad.py"
    bad.write_text(f"from maas.{forbidden}.x import y\n")
    targets = {layer_package(m) for m in imports_of(bad)} - {None}
    assert forbidden in targets and forbidden not in ALLOWED[source]


def test_the_registry_function_imports_neither_onnxruntime_nor_numpy() -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(LAYER)!r}); import maas.entry.registry; "
        "print(sorted(m for m in ('onnxruntime', 'numpy') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_small_model_cold_start_imports_no_boto3() -> None:
    """The entry point and everything a model load runs import neither boto3 nor its transfer
    manager (~34 ms); a large file's ranged download does not either (test_light_download)."""
    code = (
        f"import sys; sys.path.insert(0, {str(LAYER)!r}); import maas.entry.model, maas.core.download, "
        "maas.core.registry, maas.core.store, maas.core.service, maas.core.s3_reads; "
        "print(sorted({m.split('.')[0] for m in sys.modules if m.split('.')[0] in ('boto3', 's3transfer')}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
