"""The Benchmarks page's charts, drawn from the stored results (no measurement is rerun).

``make bench`` calls ``draw`` after writing its results; ``python -m benchmarks.plots`` redraws
them from ``benchmarks/results/`` alone. One chart per family of results, each drawn only when its
results exist: cold start of each model against its peer, MiniLM's throughput, batch rates, the
warm overhead, and the LLM's decode rate, prefill and first token against llama.cpp and PyTorch
(``llm-latest.json``, written by the LLM bench). Bars are medians, whiskers min to max.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.data import PROJECT_ROOT

RESULTS = PROJECT_ROOT / "benchmarks" / "results"
FIGURES = PROJECT_ROOT / "docs" / "assets" / "benchmarks"
OURS, PEER = "tab:blue", "tab:gray"
_DATED = re.compile(r"\d{4}-\d{2}-\d{2}\.json")


def latest_results(results: Path = RESULTS) -> dict[str, Any]:
    """The newest dated run, with the newest minilm and LLM runs where they were made apart."""
    dated = sorted(p for p in results.glob("*.json") if _DATED.fullmatch(p.name))
    found: dict[str, Any] = json.loads(dated[-1].read_text()) if dated else {}
    minilm = results / "minilm-latest.json"
    if "minilm" not in found and minilm.is_file():
        found["minilm"] = json.loads(minilm.read_text())
    llm = results / "llm-latest.json"
    if llm.is_file():
        found["llm"] = json.loads(llm.read_text())
    return found


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


Bar = tuple[str, dict[str, float], str]  # label, summary (median, min, max), colour


def _bar_chart(axis: Any, bars: list[Bar], title: str, unit: str) -> bool:
    """Median bars with min-max whiskers, each labelled with its median; False when there are none."""
    if not bars:
        return False
    stats = [stat for _, stat, _ in bars]
    medians = [s["median"] for s in stats]
    errors = [
        [s["median"] - s.get("min", s["median"]) for s in stats],
        [s.get("max", s["median"]) - s["median"] for s in stats],
    ]
    drawn = axis.bar([b[0] for b in bars], medians, yerr=errors, capsize=4, color=[b[2] for b in bars])
    axis.bar_label(drawn, labels=[_figure(m) for m in medians], padding=2, fontsize=8)
    axis.set(title=title, ylabel=unit)
    axis.tick_params(axis="x", labelsize=8)
    return True


def cold_start(results: dict[str, Any], axis: Any) -> bool:
    """Spawn to first response of each model, ours against the usual way of serving it."""
    bars: list[Bar] = []
    cold = results.get("cold_start")
    if cold:
        bars += [
            (f"{cold['model']}\nONNX (ours)", cold["ours"]["s"], OURS),
            (f"{cold['model']}\nscikit-learn", cold["baselines"]["sklearn_handler"]["s"], PEER),
        ]
    for model, figures in results.get("keras", {}).get("cold_start", {}).items():
        bars += [
            (f"{model}\nONNX (ours)", figures["ours"]["s"], OURS),
            (f"{model}\nTensorFlow", figures["baselines"]["keras_handler"]["s"], PEER),
        ]
    minilm = results.get("minilm", {}).get("cold_start_s")
    if minilm:
        bars += [
            ("minilm\nint8 (ours)", minilm["int8"], OURS),
            ("minilm\nfp32 (ours)", minilm["fp32"], OURS),
            ("minilm\nPyTorch", minilm["pytorch"], PEER),
        ]
    return _bar_chart(axis, bars, "Cold start: spawn to first answer (Powertools on both sides)", "seconds")


def minilm_throughput(results: dict[str, Any], axis: Any) -> bool:
    """Texts per second at batch 1 and 32: int8 and fp32 against sentence-transformers."""
    figures = results.get("minilm", {}).get("throughput_ms")
    if not figures:
        return False
    sides = [
        ("int8", "int8 (ours)", OURS),
        ("fp32", "fp32 (ours)", "tab:cyan"),
        ("pytorch", "sentence-transformers", PEER),
    ]
    width = 0.27
    for index, (side, label, color) in enumerate(sides):
        rates = []
        for batch, key in ((1, "batch1_ms"), (32, "batch32_ms")):
            ms = figures[side][key]
            rates.append(
                {k: batch * 1000 / ms[v] for k, v in (("median", "median"), ("min", "max"), ("max", "min"))}
            )
        x = [position + (index - 1) * width for position in range(2)]
        bars = axis.bar(
            x,
            [r["median"] for r in rates],
            width,
            yerr=[[r["median"] - r["min"] for r in rates], [r["max"] - r["median"] for r in rates]],
            capsize=4,
            label=label,
            color=color,
        )
        axis.bar_label(bars, labels=[f"{r['median']:.0f}" for r in rates], padding=2, fontsize=8)
    axis.set_xticks(range(2), ["batch 1", "batch 32"])
    axis.set(title="all-MiniLM-L6-v2 embeddings, one thread", ylabel="texts per second")
    axis.legend(fontsize=8)
    return True


def batch_rates(results: dict[str, Any], axis: Any) -> bool:
    """spam_nb rows per second on each batch path, against session.run and predict_proba."""
    bars: list[Bar] = []
    batch = results.get("batch")
    if batch:
        bars += [
            ("session.run\n(in memory)", batch["session_run_rows_per_s"], OURS),
            ("scikit-learn\npredict_proba", batch["sklearn_predict_proba_rows_per_s"], PEER),
        ]
    events = results.get("events", {})
    if "s3" in events:
        bars.append(("S3 file\n(one invocation)", events["s3"]["s3_rows_per_s"], OURS))
    if "sqs" in events:
        bars.append(("SQS batches", events["sqs"]["sqs_rows_per_s"], OURS))
    jobs = events.get("jobs", {}).get("rows_per_s", {})
    bars += [(f"batch job\n{n} at a time", jobs[n], "tab:cyan") for n in ("1", "2", "4") if n in jobs]
    return _bar_chart(axis, bars, "spam_nb batch rates (local S3, 2 CPUs)", "rows per second")


def warm_overhead(results: dict[str, Any], axis: Any) -> bool:
    """p50 of one warm one-instance request through the handler, against session.run alone."""
    rows: list[tuple[str, float, float]] = []
    warm = results.get("warm_overhead")
    if warm:
        rows.append(("spam_nb", warm["handler_ms"]["p50"], warm["session_run_ms"]["p50"]))
    for name, figures in results.get("keras", {}).get("warm_overhead", {}).items():
        rows.append((name, figures["handler_ms_p50"], figures["session_run_ms_p50"]))
    if not rows:
        return False
    x = list(range(len(rows)))
    axis.bar([i - 0.2 for i in x], [r[1] for r in rows], 0.4, label="full handler", color=OURS)
    axis.bar([i + 0.2 for i in x], [r[2] for r in rows], 0.4, label="session.run alone", color=PEER)
    axis.set_xticks(x, [r[0] for r in rows])
    axis.set(title="Warm one-instance request, p50", ylabel="ms")
    axis.legend(fontsize=8)
    return True


def _llm_panel(results: dict[str, Any], axis: Any, key: str, title: str, unit: str) -> bool:
    llm = results.get("llm", {})
    figures = llm.get("threads", {}).get("1", {})
    names = {"llamacpp": "llama.cpp", "pytorch": "PyTorch"}
    bars: list[Bar] = [
        (
            names.get(side, side.replace("ours:", "") + "\n(ours)"),
            figures[side][key],
            OURS if side.startswith("ours:") else PEER,
        )
        for side in llm.get("sides", [])
        if key in figures.get(side, {})
    ]
    return _bar_chart(axis, bars, title, unit)


def llm_decode(results: dict[str, Any], axis: Any) -> bool:
    return _llm_panel(results, axis, "decode_tok_s", "Gemma 3 270M decode, one thread", "tokens per second")


def llm_prefill(results: dict[str, Any], axis: Any) -> bool:
    return _llm_panel(results, axis, "prefill_512_s", "Prefill of a 512-token prompt, one thread", "seconds")


def llm_first_token(results: dict[str, Any], axis: Any) -> bool:
    return _llm_panel(results, axis, "first_token_s", "First token (cold), one thread", "seconds")


CHARTS: dict[str, tuple[Callable[[dict[str, Any], Any], bool], tuple[float, float]]] = {
    "cold-start.png": (cold_start, (10, 4.2)),
    "minilm-throughput.png": (minilm_throughput, (6, 4)),
    "batch-rates.png": (batch_rates, (10, 4.2)),
    "warm-overhead.png": (warm_overhead, (7, 3.6)),
    "llm-decode.png": (llm_decode, (6, 3.8)),
    "llm-prefill.png": (llm_prefill, (6, 3.8)),
    "llm-first-token.png": (llm_first_token, (6, 3.8)),
}


def draw(results: dict[str, Any], out: Path = FIGURES) -> list[Path]:
    """Draw every chart whose results exist into ``out``; the paths drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    drawn = []
    for name, (chart, size) in CHARTS.items():
        figure, axis = plt.subplots(figsize=size)
        if chart(results, axis):
            axis.grid(axis="y", alpha=0.3)
            figure.tight_layout()
            figure.savefig(out / name, dpi=90, metadata={"Software": None})
            drawn.append(out / name)
        plt.close(figure)
    return drawn


def _median(stat: dict[str, float], unit: str, scale: float = 1.0) -> str:
    value = stat["median"] * scale
    return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.2f} {unit}"


def headline(results: dict[str, Any]) -> str:
    """The README's table: one line per family, ours against the usual way, from the results."""
    rows = ["| | ours (ONNX on the layer) | the usual way | ratio |", "| --- | --- | --- | --- |"]
    cold = results.get("cold_start")
    if cold:
        baseline = cold["baselines"]["sklearn_handler"]
        rows.append(
            f"| cold start, {cold['model']} (TF-IDF + naive Bayes) | {_median(cold['ours']['s'], 's')} "
            f"| {_median(baseline['s'], 's')} scikit-learn + joblib | {baseline['ratio']['median']:.2f}× |"
        )
    keras = results.get("keras", {}).get("cold_start", {}).get("digits_cnn")
    if keras:
        baseline = keras["baselines"]["keras_handler"]
        rows.append(
            f"| cold start, digits_cnn (Keras CNN) | {_median(keras['ours']['s'], 's')} "
            f"| {_median(baseline['s'], 's')} TensorFlow SavedModel | {baseline['ratio']['median']:.2f}× |"
        )
    minilm = results.get("minilm", {})

    def ratio(name: str, ours: dict[str, float], peer: dict[str, float], *, invert: bool) -> float:
        """The bench's median of paired ratios when it stored one, else the ratio of medians."""
        if name in minilm.get("ratios", {}):
            return float(minilm["ratios"][name]["median"])
        return peer["median"] / ours["median"] if invert else ours["median"] / peer["median"]

    if minilm.get("cold_start_s"):
        ours, peer = minilm["cold_start_s"]["int8"], minilm["cold_start_s"]["pytorch"]
        rows.append(
            f"| cold start, all-MiniLM-L6-v2 int8 | {_median(ours, 's')} "
            f"| {_median(peer, 's')} sentence-transformers on PyTorch | {ratio('minilm_cold_start_int8_vs_pytorch', ours, peer, invert=False):.2f}× |"
        )
    if minilm.get("throughput_ms"):
        ours, peer = (
            minilm["throughput_ms"]["int8"]["batch32_ms"],
            minilm["throughput_ms"]["pytorch"]["batch32_ms"],
        )
        rows.append(
            f"| MiniLM embeddings, batch 32 | {_median(ours, 'ms')} | {_median(peer, 'ms')} "
            f"sentence-transformers | {ratio('minilm_int8_batch32_vs_pytorch', ours, peer, invert=True):.2f}× as fast |"
        )
    llm = results.get("llm", {})
    one = llm.get("threads", {}).get("1", {})
    ours_sides = [
        s for s in llm.get("sides", []) if s.startswith("ours:") and "decode_tok_s" in one.get(s, {})
    ]
    if ours_sides and "llamacpp" in one:
        best = max(ours_sides, key=lambda side: one[side]["decode_tok_s"]["median"])
        ours, peer = one[best]["decode_tok_s"], one["llamacpp"]["decode_tok_s"]
        rows.append(
            f"| Gemma 3 270M decode, one thread ({best.removeprefix('ours:')}) | {_median(ours, 'tok/s')} "
            f"| {_median(peer, 'tok/s')} llama.cpp | {ours['median'] / peer['median']:.2f}× as fast |"
        )
    batch = results.get("batch")
    if batch:
        rows.append(
            f"| batch scoring, spam_nb | {_median(batch['session_run_rows_per_s'], 'rows/s')} "
            f"| {_median(batch['sklearn_predict_proba_rows_per_s'], 'rows/s')} `predict_proba` "
            f"| {batch['ratio']['median']:.2f}× as fast |"
        )
    return "\n".join(rows)


HEADLINE = ("<!-- headline:start -->", "<!-- headline:end -->")


def embed_headline(results: dict[str, Any], readme: Path = PROJECT_ROOT / "README.md") -> None:
    """Rewrite the README's headline table between its markers."""
    text = readme.read_text()
    start, end = HEADLINE
    if start in text and end in text:
        head, rest = text.split(start, 1)
        readme.write_text(f"{head}{start}\n{headline(results)}\n{end}{rest.split(end, 1)[1]}")


def main() -> int:
    results = latest_results()
    if not results:
        print(f"no results under {RESULTS}: run `make bench` first", file=sys.stderr)
        return 1
    for path in draw(results):
        print(f"drew {path.relative_to(PROJECT_ROOT)}")
    embed_headline(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
