"""The decoder graph's facts (layers, KV heads, head size) and the served form of it.

The served graph computes logits for the last position only: prefill then costs one lm_head row
instead of one per prompt token (262,144 x 640 per token for Gemma 3 270M). The full graph is kept
for the gate, which needs every position's logits for perplexity and KL.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas.core.errors import TrainingError

PAST_KEY = re.compile(r"^past_key_values\.(\d+)\.key$")
LAST_POSITION = "logits_last_position"
LM_HEAD_OPS = ("MatMul", "MatMulNBits", "Gemm")


@dataclass(frozen=True, slots=True)
class DecoderGraph:
    """What the layer needs to feed the graph, read from the graph (and the builder's config)."""

    num_layers: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    has_position_ids: bool

    def io(self) -> dict[str, Any]:
        return {
            "input_ids": "input_ids",
            "attention_mask": "attention_mask",
            "position_ids": "position_ids" if self.has_position_ids else None,
            "logits": "logits",
            "logits_last_only": True,
            "past_key": "past_key_values.{i}.key",
            "past_value": "past_key_values.{i}.value",
            "present_key": "present.{i}.key",
            "present_value": "present.{i}.value",
            "num_layers": self.num_layers,
            "num_kv_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "kv_dtype": "float32",
            "vocab_size": self.vocab_size,
        }


def _dims(value: Any) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _head_dim(folder: Path, declared: int | str) -> int:
    if isinstance(declared, int) and declared > 0:
        return declared
    genai = folder / "genai_config.json"
    if genai.is_file():
        return int(json.loads(genai.read_text())["model"]["decoder"]["head_size"])
    config = json.loads((folder / "config.json").read_text())
    return int(config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"])


def describe(model_file: Path) -> DecoderGraph:
    """Refuses a graph without the past/present names the layer's loop feeds back."""
    import onnx

    model = onnx.load(str(model_file), load_external_data=False)
    inputs = {i.name: i for i in model.graph.input}
    outputs = {o.name: o for o in model.graph.output}
    layers = sorted(int(m.group(1)) for name in inputs if (m := PAST_KEY.match(name)))
    missing = [n for n in ("input_ids", "attention_mask") if n not in inputs] + (
        [] if "logits" in outputs else ["logits (output)"]
    )
    if not layers or layers != list(range(len(layers))) or missing:
        raise TrainingError(
            f"{model_file} is not a decoder with a KV cache: it needs input_ids, attention_mask, "
            f"past_key_values.N.key/value and logits/present.N.* (missing: {missing or 'past_key_values'})"
        )
    for i in layers:
        for name in (f"past_key_values.{i}.value", f"present.{i}.key", f"present.{i}.value"):
            if name not in inputs and name not in outputs:
                raise TrainingError(f"{model_file}: {name} is missing (the KV cache of layer {i})")
    key = _dims(inputs["past_key_values.0.key"])
    vocab = _dims(outputs["logits"])[-1]
    if not isinstance(vocab, int) or vocab <= 0:
        vocab = int(json.loads((model_file.parent / "config.json").read_text())["vocab_size"])
    return DecoderGraph(
        num_layers=len(layers),
        num_kv_heads=int(key[1]),
        head_dim=_head_dim(model_file.parent, key[3]),
        vocab_size=int(vocab),
        has_position_ids="position_ids" in inputs,
    )


def _lm_head(model: Any) -> Any:
    """The node that multiplies the final hidden state by the vocabulary matrix."""
    producers = {out: node for node in model.graph.node for out in node.output}
    name = "logits"
    for _ in range(8):  # a few elementwise nodes (a soft-cap) may follow the lm_head
        node = producers.get(name)
        if node is None:
            break
        if node.op_type in LM_HEAD_OPS:
            return node
        name = node.input[0]
    raise TrainingError("cannot find the lm_head (a MatMul producing logits): the graph cannot be pruned")


def prune_to_last_position(source: Path, target: Path) -> None:
    """``target`` (next to ``source``, sharing its external data): the lm_head's input sliced to the
    last position, so ``logits`` is [batch, 1, vocab] in prefill as in decoding. The cache's head
    size, symbolic in the builder's graph, is written in, so the served graph describes itself."""
    import onnx
    from onnx import helper

    if source.parent.resolve() != target.parent.resolve():
        raise TrainingError("the pruned graph must sit next to the full one (they share external data)")
    head_dim = describe(source).head_dim
    model = onnx.load(str(source), load_external_data=False)
    for value in [*model.graph.input, *model.graph.output]:
        if value.name.startswith(("past_key_values.", "present.")):
            dim = value.type.tensor_type.shape.dim[3]
            dim.ClearField("dim_param")
            dim.dim_value = head_dim
    head = _lm_head(model)
    sliced = f"{head.input[0]}/{LAST_POSITION}"
    constants = {f"{LAST_POSITION}/{n}": v for n, v in (("starts", -1), ("ends", 2**62), ("axes", 1))}
    added = [
        helper.make_node(
            "Constant", [], [name], value=helper.make_tensor(name, onnx.TensorProto.INT64, [1], [v])
        )
        for name, v in constants.items()
    ]
    added.append(
        helper.make_node("Slice", [head.input[0], *constants], [sliced], name=f"/{LAST_POSITION}/Slice")
    )
    hidden = head.input[0]
    consumers = [node for node in model.graph.node if hidden in node.input]
    position = min(list(model.graph.node).index(node) for node in consumers)
    for offset, node in enumerate(added):
        model.graph.node.insert(position + offset, node)
    # every node reading the final hidden state reads its last position: the lm_head, and what a
    # shortlisting lm_head (training/llm/lossless.py) rescores with
    for node in consumers:
        node.input[:] = [sliced if name == hidden else name for name in node.input]
    logits = next(o for o in model.graph.output if o.name == "logits")
    logits.type.tensor_type.shape.dim[1].ClearField("dim_param")
    logits.type.tensor_type.shape.dim[1].dim_value = 1
    onnx.save_model(model, str(target))


#: GroupQueryAttention's inputs 7 and 8: its rotary tables, one row per position
ROTARY_INPUTS = (7, 8)


def shorten_rotary_caches(graph_file: Path, rows: int) -> int:
    """Cut GroupQueryAttention's cos/sin tables to their first ``rows`` positions, and return the
    bytes the external data file lost (0 for tables stored in the graph). The builder writes them
    for the model's whole context (Gemma 3: 4 x 32,768 x 128 fp32, 67 MB of a 463 MB version), the
    layer serves at most ``max_context`` positions (4,096), and row p is position p's, so the cut
    is exact for every position served.

    The external data file is rewritten with only what ``graph_file`` reads, in its order: a
    graph beside it sharing that file (the full graph of the gate) no longer loads after this."""
    import onnx

    model = onnx.load(str(graph_file), load_external_data=False)
    tables = {
        node.input[i]
        for node in model.graph.node
        if node.op_type == "GroupQueryAttention"
        for i in ROTARY_INPUTS
        if len(node.input) > i and node.input[i]
    }
    lengths: dict[str, int] = {}
    cut = [t for t in model.graph.initializer if t.name in tables and t.dims[0] > rows]
    if not cut:  # nothing to rewrite: the graph and its weights stay as they are
        return 0
    for tensor in cut:
        row_bytes = _element_bytes(tensor.data_type) * math.prod(tensor.dims[1:])
        tensor.dims[0] = rows
        if tensor.external_data:
            lengths[tensor.name] = rows * row_bytes
        elif tensor.raw_data:
            tensor.raw_data = tensor.raw_data[: rows * row_bytes]
        else:  # typed fields (float_data, ...): one element each
            field = onnx.helper.tensor_dtype_to_field(tensor.data_type)
            del getattr(tensor, field)[rows * math.prod(tensor.dims[1:]) :]
    if not lengths:
        onnx.save_model(model, str(graph_file))
        return 0
    external = [t for t in model.graph.initializer if t.external_data]
    locations = {_external(t)["location"] for t in external}
    if len(locations) != 1:
        raise TrainingError(f"{graph_file.name}: its weights are in {len(locations)} files, not one")
    data = graph_file.parent / locations.pop()
    compacted = data.with_name(f".{data.name}.compacted")
    before = data.stat().st_size
    with data.open("rb") as source, compacted.open("wb") as target:
        for tensor in sorted(external, key=lambda t: int(_external(t).get("offset", 0))):
            entry = _external(tensor)
            stored = _element_bytes(tensor.data_type) * math.prod(tensor.dims)
            length = lengths.get(tensor.name, int(entry.get("length", stored)))
            source.seek(int(entry.get("offset", 0)))
            offset = target.tell()
            target.write(source.read(length))
            _set_external(tensor, offset=offset, length=length)
    compacted.replace(data)
    onnx.save_model(model, str(graph_file))
    return before - data.stat().st_size


def _external(tensor: Any) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def _set_external(tensor: Any, *, offset: int, length: int) -> None:
    kept = [(e.key, e.value) for e in tensor.external_data if e.key not in ("offset", "length")]
    del tensor.external_data[:]
    for key, value in [*kept, ("offset", str(offset)), ("length", str(length))]:
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _element_bytes(data_type: int) -> int:
    import onnx

    return int(onnx.helper.tensor_dtype_to_np_dtype(data_type).itemsize)
