"""The documentation site: built strictly, every page in the navigation, generated pages current."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks import plots
from ops import reference_docs
from training.data import PROJECT_ROOT

DOCS = PROJECT_ROOT / "docs"


class _Loader(yaml.SafeLoader):
    """mkdocs.yml with its ``!!python/name:`` tags kept as text."""


_Loader.add_multi_constructor("tag:yaml.org,2002:python/", lambda loader, suffix, node: suffix)


def nav_pages(entries: Any) -> list[str]:
    if isinstance(entries, str):
        return [entries]
    if isinstance(entries, list):
        return [page for entry in entries for page in nav_pages(entry)]
    if isinstance(entries, dict):
        return [page for value in entries.values() for page in nav_pages(value)]
    return []


def test_mkdocs_build_strict_passes(tmp_path: Path) -> None:
    """A broken link, a missing anchor or a page outside the navigation fails the build."""
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "mkdocs"),
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert not re.search(r"^WARNING", result.stderr, re.MULTILINE), result.stderr
    assert (tmp_path / "site" / "tutorials" / "first-model" / "index.html").is_file()


def test_every_page_is_reachable_from_the_navigation() -> None:
    config = yaml.load((PROJECT_ROOT / "mkdocs.yml").read_text(), Loader=_Loader)
    in_nav = nav_pages(config["nav"])
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    assert sorted(set(in_nav)) == pages
    assert len(in_nav) == len(set(in_nav)), "a page is listed twice"


def test_every_fence_is_closed() -> None:
    """An unclosed fence swallows the rest of a page, and mkdocs builds it without a word."""
    for page in [PROJECT_ROOT / "README.md", *DOCS.rglob("*.md")]:
        fences = [line for line in page.read_text().splitlines() if line.startswith("```")]
        assert len(fences) % 2 == 0, page


def test_the_generated_reference_pages_are_up_to_date() -> None:
    assert reference_docs.stale() == [], "run `python -m ops.reference_docs --write`"


def test_the_cli_reference_documents_every_command() -> None:
    from ops.cli import build_parser

    page = (DOCS / "reference" / "cli.md").read_text()
    for name, _, sub in reference_docs._subcommands(build_parser()):
        assert f"## `maas {name}`" in page
        for child, _, _ in reference_docs._subcommands(sub):
            assert f"`maas {name} {child}`" in page


def test_every_chart_of_the_stored_results_is_drawn_and_shown(tmp_path: Path) -> None:
    drawn = plots.draw(plots.latest_results(), tmp_path)
    names = {path.name for path in drawn}
    assert {"cold-start.png", "minilm-throughput.png", "batch-rates.png", "warm-overhead.png"} <= names
    page = (DOCS / "benchmarks.md").read_text()
    for name in names:
        assert f"(assets/benchmarks/{name})" in page, name
        assert (DOCS / "assets" / "benchmarks" / name).is_file(), f"run `python -m benchmarks.plots`: {name}"


def test_the_llm_charts_draw_from_the_llm_benchs_results(tmp_path: Path) -> None:
    """The shape benchmarks/llm_bench.py writes to llm-latest.json: per thread count, per side."""

    def figure(median: float) -> dict[str, float]:
        return {"median": median, "min": median * 0.9, "max": median * 1.1, "n": 3}

    sides = ["ours:int4", "llamacpp", "pytorch"]
    one_thread = {
        side: {
            "decode_tok_s": figure(rate),
            "prefill_64_s": figure(0.1),
            "prefill_512_s": figure(0.8),
            "first_token_s": figure(1.5),
            "peak_rss_mb": figure(400),
        }
        for side, rate in zip(sides, (58.0, 49.0, 9.0), strict=True)
    }
    drawn = plots.draw({"llm": {"sides": sides, "threads": {"1": one_thread}}}, tmp_path)
    assert [p.name for p in drawn] == ["llm-decode.png", "llm-prefill.png", "llm-first-token.png"]
    assert all(p.stat().st_size > 10_000 for p in drawn)


def test_the_readme_is_short_and_its_links_and_headline_figures_hold() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (PROJECT_ROOT / target).exists(), target
    start, end = plots.HEADLINE
    table = readme.split(start, 1)[1].split(end, 1)[0].strip()
    assert table == plots.headline(plots.latest_results()), "run `python -m benchmarks.plots`"
