"""Decoder LLMs through the import path: tiny random-init Gemma 3 and Llama checkpoints, built by
onnxruntime-genai's model builder, pruned for serving, gated against PyTorch, written as
``causal-lm`` version folders (the same code ``maas import`` and ``maas train gemma`` run)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from tokenizers import Tokenizer

from maas.core.manifest import Manifest
from ops.cli import main as maas
from tests.unit.test_manifest import check_both
from training.llm import gate
from training.llm.decode import Decoder
from training.llm.graph import shorten_rotary_caches
from training.llm.importer import SCRIPT, import_llm, parse_variants
from training.llm.tiny import SPEC
from training.llm.version import write_tokenizer
from training.transformers.environment import run_export


def _manifest(folder: Path) -> dict:  # type: ignore[type-arg]
    return json.loads((folder / "manifest.json").read_text())


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_a_tiny_decoder_is_written_as_a_gated_causal_lm_version(
    tiny_llms: dict[str, Path], arch: str
) -> None:
    folder = tiny_llms[arch]
    manifest = _manifest(folder)
    check_both(manifest)  # the typed manifest and the JSON Schema accept it
    assert Manifest.from_dict(manifest).task == "causal-lm" and manifest["name"] == f"tiny_{arch}"
    parity, io = manifest["parity"], manifest["io"]
    # fp32 reproduces PyTorch's greedy tokens on every prompt, and its perplexity
    assert parity["passed"] and parity["greedy_agreement"] == 1.0
    assert parity["greedy_identical_prompts"] == SPEC.prompts
    assert parity["perplexity_ratio"] == pytest.approx(1.0, abs=1e-4)
    assert parity["mean_kl"] < 1e-5
    assert io["logits_last_only"] and io["num_layers"] == 2 and io["vocab_size"] == 512
    assert io["eos_token_ids"] == [1] and io["bos_token_id"] == 2 and io["add_bos"]
    assert io["max_context"] <= io["context_length"] == 256
    assert (folder / "chat_template.jinja").read_text().startswith("{{ bos_token }}")
    for name, entry in manifest["artifacts"].items():
        assert (folder / name).stat().st_size == entry["size"]
    assert manifest["framework"]["architecture"].startswith(arch)


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_the_served_graph_answers_its_sample_with_last_position_logits(
    tiny_llms: dict[str, Path], arch: str
) -> None:
    folder = tiny_llms[arch]
    manifest = _manifest(folder)
    sample = manifest["sample"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = tokenizer.encode(sample["prompt"]).ids
    assert ids == sample["prompt_token_ids"] and ids[0] == manifest["io"]["bos_token_id"]
    decoder = Decoder(folder / "model.onnx")
    logits, _ = decoder.forward(ids, decoder._empty_cache(), 0)
    assert logits.shape == (1, 512)  # prefill computed one row, not one per prompt token
    tokens, _ = decoder.greedy(ids, sample["max_new_tokens"])
    assert tokens[: len(sample["token_ids"])] == sample["token_ids"]
    assert tokenizer.decode(sample["token_ids"], skip_special_tokens=True) == sample["continuation"]
    kept = json.loads((folder.parent / f"tiny-{arch}.reference.json").read_text())  # PyTorch's answers
    assert kept["prompts"][0] == ids and kept["greedy"][0][: len(sample["token_ids"])] == sample["token_ids"]
    assert len(kept["greedy"]) == SPEC.prompts and {len(g) for g in kept["greedy"]} == {kept["steps"]}


@pytest.mark.parametrize("arch", ["gemma3", "llama"])
def test_the_written_tokenizer_has_merges_as_strings_and_tokenises_like_the_checkpoints(
    tiny_llms: dict[str, Path], arch: str
) -> None:
    """The version's tokenizer.json is the checkpoint's with its merges as "a b" strings (faster
    and smaller to load at a cold start), and gives the same ids and text."""
    written_path = tiny_llms[arch] / "tokenizer.json"
    source_path = tiny_llms[arch].parent / "hf" / arch / "tokenizer.json"
    written, source = (json.loads(path.read_text()) for path in (written_path, source_path))
    assert source["model"]["merges"] and all(isinstance(m, list) for m in source["model"]["merges"])
    assert written["model"]["merges"] == [" ".join(m) for m in source["model"]["merges"]]
    assert {k: v for k, v in written.items() if k != "model"} == {
        k: v for k, v in source.items() if k != "model"
    }
    with gzip.open(gate.MOBY_DICK, "rt", encoding="utf-8") as handle:
        text = handle.read()[:20_000]
    mine, theirs = (Tokenizer.from_file(str(path)) for path in (written_path, source_path))
    ids = theirs.encode(text).ids
    assert mine.encode(text).ids == ids and len(ids) > 2_000
    assert mine.decode(ids) == theirs.decode(ids)


def test_the_rotary_tables_are_cut_to_the_positions_served_and_every_answer_stays(
    tiny_llms: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "version"
    shutil.copytree(tiny_llms["gemma3"], folder)
    ids = _manifest(folder)["sample"]["prompt_token_ids"]  # 42 tokens, then 24 more: 66 positions
    tokens, first = Decoder(folder / "model.onnx").greedy(ids, 24)
    size = (folder / "model.onnx.data").stat().st_size
    cut = 4 * (256 - 96) * 8 * 4  # four tables (cos and sin, local and global) of 8 fp32 a row
    assert shorten_rotary_caches(folder / "model.onnx", 96) == cut
    assert (folder / "model.onnx.data").stat().st_size == size - cut
    graph = onnx.load(str(folder / "model.onnx"), load_external_data=False)
    tables = [t for t in graph.graph.initializer if t.name.startswith(("cos_cache", "sin_cache"))]
    assert len(tables) == 4 and all(list(t.dims) == [96, 8] for t in tables)
    decoder = Decoder(folder / "model.onnx")
    again, logits = decoder.greedy(ids, 24)
    assert again == tokens and np.array_equal(logits, first)
    # past the rows kept, onnxruntime refuses: why the layer's max_context is the number of rows
    with pytest.raises(Exception, match="cos_cache dimension 0"):
        decoder.greedy(ids, 60)
    assert shorten_rotary_caches(folder / "model.onnx", 96) == 0  # nothing left to cut


def test_a_merge_holding_a_space_keeps_the_pair_form(tmp_path: Path) -> None:
    document = {"model": {"type": "BPE", "vocab": {"a": 0, "a b": 1}, "merges": [["a", " b"]]}}
    source = tmp_path / "source.json"
    source.write_text(json.dumps(document, indent=2))
    write_tokenizer(source, tmp_path / "written.json")
    assert (tmp_path / "written.json").read_bytes() == source.read_bytes()


def test_quantised_variants_are_written_only_when_they_pass(
    tiny_llms: dict[str, Path], tmp_path: Path
) -> None:
    source = tiny_llms["llama"].parent / "hf" / "llama"
    written = import_llm(
        source, name="tiny_q", out=tmp_path / "q", variants=parse_variants("int4,int8"), spec=SPEC
    )
    table = written["fp32"]["metrics"]["variants"]
    assert set(table) == {"fp32", "int4", "int8"}
    for variant, figures in table.items():
        folder = tmp_path / ("q" if variant == "fp32" else f"q-{variant}")
        assert folder.is_dir() == figures["passed"], variant
        assert figures["passed"] == (
            variant == "fp32"
            or (
                figures["perplexity_ratio"] <= gate.MAX_PERPLEXITY_RATIO
                and figures["greedy_agreement"] >= gate.MIN_AGREEMENT
            )
        )
        if figures["passed"] and variant != "fp32":
            quantisation = _manifest(folder)["quantisation"]
            assert quantisation["scheme"] == variant and quantisation["bytes"] < quantisation["fp32_bytes"]
            graph = (folder / "model.onnx").read_bytes()
            assert b"MatMulNBits" in graph and b"accuracy_level" in graph
    assert not table["int4"]["passed"]  # random weights at 4 bits drift, as Gemma's RTN int4 does
    assert "greedy agreement" in " ".join(table["int4"]["unmet"])


def test_maas_import_takes_a_checkpoint_folder_and_a_chat_template(
    tiny_llms: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "chat.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    source = tiny_llms["gemma3"].parent / "hf" / "gemma3"
    out = tmp_path / "v"
    assert (
        maas(
            [
                "import",
                str(source),
                "--name",
                "tiny_chat",
                "--out",
                str(out),
                "--chat-template",
                str(template),
                "--quiet",
            ]
        )
        == 0
    )
    assert (out / "chat_template.jinja").read_text() == template.read_text()
    assert "greedy agreement 1.0000" in capsys.readouterr().out
    manifest = _manifest(out)
    assert manifest["name"] == "tiny_chat" and manifest["parity"]["passed"]


def test_the_gate_refuses_a_graph_that_does_not_answer_like_pytorch(
    tiny_llms: dict[str, Path], tmp_path: Path
) -> None:
    reference_dir = tmp_path / "ref"
    folder = tiny_llms["gemma3"]
    decoder = Decoder(folder / "model.onnx")
    prompts = [[2, 40, 41, 42], [2, 50, 51]]
    greedy = [decoder.greedy(p, 8)[0] for p in prompts]
    greedy[1][3] = (greedy[1][3] + 1) % 512  # PyTorch "said" another token at one step
    reference_dir.mkdir()
    # the served graph has one logits row: a two-token text is all it can measure perplexity on
    np.save(reference_dir / "kl_logprobs.npy", decoder.logprobs([2, 40]))
    doc = {
        "prompts": prompts,
        "texts": [[2, 40]],
        "steps": 8,
        "kl_positions": 1,
        "greedy": greedy,
        "nll": [[1.0]],
    }
    (reference_dir / "reference.json").write_text(json.dumps(doc))
    reference = gate.Reference.read(reference_dir)
    figures = gate.measure(folder / "model.onnx", folder / "model.onnx", reference)
    assert figures["greedy_agreement"] == pytest.approx(15 / 16)
    unmet = gate.verdict(figures, reference.perplexity, quantised=False)
    assert unmet and "fp32 greedy tokens differ" in unmet[0]


def test_an_onnxruntime_genai_folder_is_checked_against_its_own_uncached_graph(
    tiny_llms: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "genai"
    run_export(
        ["build", "--hf", str(tiny_llms["llama"].parent / "hf" / "llama"), "--out", str(source)], SCRIPT
    )
    assert (source / "genai_config.json").is_file()
    out = tmp_path / "v"
    assert maas(["import", str(source), "--name", "tiny_genai", "--out", str(out), "--quiet"]) == 0
    manifest = _manifest(out)
    assert manifest["parity"]["passed"] and manifest["parity"]["greedy_agreement"] == 1.0
    assert manifest["framework"]["source"] == "onnxruntime-genai folder"
    assert manifest["io"]["eos_token_ids"] == [1] and manifest["io"]["logits_last_only"]
    # the same weights as the checkpoint import: its version answers the sample alike
    sample = manifest["sample"]
    tokens, _ = Decoder(tiny_llms["llama"] / "model.onnx").greedy(sample["prompt_token_ids"], 8)
    assert tokens[: len(sample["token_ids"])] == sample["token_ids"]
    assert "tiny_genai fp32" in capsys.readouterr().out
    assert (
        maas(["import", str(source), "--name", "x", "--out", str(tmp_path / "w"), "--quantize", "int4"]) != 0
    )


def test_the_lossless_graph_computes_with_the_gguf_weights_exactly(tmp_path: Path) -> None:
    """Random blocks of each GGUF type in Gemma's file (Q8_0, Q5_0, Q6_K, Q4_K with its residual,
    the Q8_0 embedding), written as MatMulNBits / GatherBlockQuantized by training/llm/lossless.py
    (in the export environment, where gguf is): onnxruntime computes x @ W^T with W exactly as
    gguf.quants.dequantize gives it (fp32 activations here; only the summation order differs), both
    as the 8-bit kernel and as two nibbles at the 4-bit one. The shortlisting lm_head scores every
    token roughly, then its best 64 exactly from the embedding's own table, stored once."""
    import onnxruntime as ort

    summary = run_export(["--out", str(tmp_path)], SCRIPT.with_name("lossless.py"))  # gguf: export env only
    session = ort.InferenceSession(str(tmp_path / "lossless.onnx"), providers=["CPUExecutionProvider"])
    expected = np.load(tmp_path / "expected.npz")
    x = np.random.default_rng(1).standard_normal((1, 3, 512)).astype(np.float32)
    ids = np.array([[0, 5, 63]], dtype=np.int64)
    names = [o.name for o in session.get_outputs()]
    out = dict(zip(names, session.run(None, {"x": x, "ids": ids}), strict=True))
    for kind in ("Q8_0", "Q5_0", "Q6_K", "Q4_K"):
        want = x @ expected[kind].T
        for output in (f"y_{kind}", f"y_{kind}_nibbles"):
            assert np.abs(out[output] - want).max() <= 1e-5 * np.abs(want).max(), output
    assert np.array_equal(out["embedded"][0], expected["embedding"][[0, 5, 63]])
    exact = x @ expected["embedding"].T  # [1, 3, 4 x shortlist]
    tolerance = 1e-5 * np.abs(exact).max()
    rescored = np.abs(out["logits"] - exact) <= tolerance
    exact_scores = rescored.sum(axis=-1)  # the shortlist, each row (a rough score may land close too)
    assert ((exact_scores >= summary["shortlist"]) & (exact_scores <= summary["shortlist"] + 16)).all()
    best = np.argsort(-exact, axis=-1)[..., :8]  # the top is always among them
    assert np.take_along_axis(rescored, best, axis=-1).all()
    assert np.array_equal(out["logits"].argmax(-1), exact.argmax(-1))
    rough = np.abs(out["logits"] - exact).max()  # the rest: a 4-bit score, close but not exact
    assert rough <= 0.25 * np.abs(exact).max()  # uniform random integers: the worst case
    graph = onnx.load(str(tmp_path / "lossless.onnx")).graph
    assert [i.name for i in graph.initializer].count("model.embed_tokens.qdata") == 1
    ops = {node.op_type for node in graph.node}
    assert ops == {
        "MatMulNBits",
        "GatherBlockQuantized",
        "Reshape",
        "ReduceSum",
        "MatMul",
        "Sub",
        "Concat",
        "TopK",
        "Unsqueeze",
        "Squeeze",
        "ScatterElements",
    }
