"""The lossless graph of a GGUF: the builder's fp32 graph with each weight replaced by the GGUF's
own integers and scales, never rounded a second time.

Run in the export environment (it needs ``gguf``), by ``torch_llm.py export`` for the variants
of precision ``lossless``. Per GGUF type (block layouts as ggml defines them, decoded as ``gguf.quants`` does):

- Q8_0 (block 32, int8 x, fp16 d): MatMulNBits bits=8, x+128, zero point 128, scale d;
- Q5_0 (block 32, 5-bit x, fp16 d): bits=8, x, zero point 16;
- Q6_K (16 sub-blocks of 16, 6-bit x, int8 sub-scales, fp16 d): bits=8, block 16, zero point 32,
  scale d*sc (the signed sub-block scale folded in);
- Q4_K (8 sub-blocks of 32, 4-bit x, 6-bit sc and m, fp16 d and dmin; w = d*sc*x - dmin*m):
  bits=4, block 32, s = d*sc, zero point z = round(dmin*m / s) clipped to 0..15; the residual
  c = dmin*m - z*s is subtracted as ReduceSum of the input over each 32-block times c (a small
  fp32 MatMul);
- the embedding (Q8_0): GatherBlockQuantized at 8 bits with fp32 scales; the tied lm_head: the
  same integers as a MatMulNBits.

Every replaced weight is checked against the fp32 graph's (which transformers dequantised):
they must be equal to fp32 rounding, or the mapping is wrong and nothing is written.

Three variants are built this way (``build_lossless(..., fp32_activations=...)``), measured on the
gate's 64 prompts x 32 greedy tokens against PyTorch fp32 (threshold 0.70; llama.cpp on the same
file: 0.588):

- ``lossless``: every product at accuracy level 4 (int8 activations per 32-block, as llama.cpp
  computes). The activations' rounding alone flips greedy near-ties: agreement 0.637.
- ``lossless-mixed``: fp32 activations into ``mlp.down_proj`` only, whose inputs (GeLU(gate) x up)
  carry the outliers that int8 blocks round worst: agreement 0.789, at lossless' speed (the lm_head
  below pays for the slower down_proj).
- ``exact``: fp32 activations everywhere, as PyTorch computes: agreement 1.0, about 0.6x the speed.

fp32 activations: onnxruntime's 8-bit kernel has no fast path without int8 activations (3.07 ms
against 0.032 ms for a 640 x 2,048 product at one thread here); its 4-bit one has (0.108 ms). So
an 8-bit weight (Q5_0, Q6_K, Q8_0) is written as its two 4-bit nibbles against the input given
twice (K doubled; the high half's scale is 16 times the low's, its zero point the weight's over 16).

With fp32 activations anywhere, the lm_head (262,144 x 640, the largest product) shortlists: a
4-bit copy at int8 activations, blocks of ``SHORTLIST_BLOCK``, scores every token (4.8 ms against
10.5 ms at 8 bits), then the ``SHORTLIST`` best are scored again with fp32 activations from the
embedding table's own integers (shared with the embedding's Gather, stored once), and those scores
replace theirs. The greedy token and the top of every distribution are the exact weights'; tokens
outside the shortlist keep their 4-bit score. On the 64 prompts the shortlist at blocks of 128
chose the same 2,048 greedy tokens as at blocks of 32.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from gguf import GGMLQuantizationType, GGUFReader
from gguf.quants import Q4_K, dequantize
from onnx import helper, numpy_helper

ACCURACY_LEVEL = 4
#: fp32 activations (onnxruntime's accuracy level 1)
FP32_ACTIVATIONS = 1
#: tokens the shortlisting lm_head scores again with fp32 activations: 1,024, not 64, for the
#: distribution's sake (mean KL against fp32 over 384 positions: 0.0066 against 0.0224; greedy
#: tokens are the same), at about 1.4 ms a token more
SHORTLIST = 1024
#: the shortlist's 4-bit block: 128 (4.8 ms a token here) rather than 32 (7.6 ms); it only ranks
SHORTLIST_BLOCK = 128
QK_K = 256
#: builder initializer name (without ``.MatMul.weight``) -> GGUF tensor names, concatenated along N
PROJECTIONS = {
    "attn.qkv_proj": ("attn_q", "attn_k", "attn_v"),
    "attn.q_proj": ("attn_q",),
    "attn.k_proj": ("attn_k",),
    "attn.v_proj": ("attn_v",),
    "attn.o_proj": ("attn_output",),
    "mlp.gate_proj": ("ffn_gate",),
    "mlp.up_proj": ("ffn_up",),
    "mlp.down_proj": ("ffn_down",),
}
LAYER_WEIGHT = re.compile(r"^model\.layers\.(\d+)\.(.+)\.MatMul\.weight$")


class Quantised:
    """One weight as MatMulNBits inputs: q [N, K/block, block] (unpacked), scales and zero points
    [N, K/block], and for Q4_K the residual c [N, K/block]."""

    def __init__(
        self,
        q: np.ndarray,
        scales: np.ndarray,
        zero: np.ndarray,
        bits: int,
        residual: np.ndarray | None = None,
    ) -> None:
        self.q, self.scales, self.zero, self.bits, self.residual = q, scales, zero, bits, residual

    @property
    def block(self) -> int:
        return int(self.q.shape[2])

    def dense(self) -> np.ndarray:
        """[N, K] as the graph computes it."""
        w = self.scales[..., None] * (self.q.astype(np.float32) - self.zero[..., None].astype(np.float32))
        if self.residual is not None:
            w = w - self.residual[..., None]
        return w.reshape(self.q.shape[0], -1)


def _blocks(tensor: Any, size: int) -> np.ndarray:
    return np.asarray(tensor.data).reshape(-1, size)


def integers(tensor: Any) -> Quantised:
    rows = int(tensor.shape[1]) if len(tensor.shape) > 1 else 1
    kind = tensor.tensor_type
    if kind == GGMLQuantizationType.Q8_0:
        blocks = _blocks(tensor, 34)
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)[:, 0]
        q = (blocks[:, 2:].copy().view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return Quantised(
            q.reshape(rows, -1, 32), d.reshape(rows, -1), np.full((rows, d.size // rows), 128, np.uint8), 8
        )
    if kind == GGMLQuantizationType.Q5_0:
        blocks = _blocks(tensor, 22)
        n = blocks.shape[0]
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)[:, 0]
        qh = blocks[:, 2:6].copy().view(np.uint32).reshape(n, 1) >> np.arange(32, dtype=np.uint32).reshape(
            1, 32
        )
        ql = blocks[:, 6:].reshape(n, 1, 16) >> np.array([0, 4], dtype=np.uint8).reshape(1, 2, 1)
        q = ((ql & 0x0F).reshape(n, 32) | ((qh & 1).astype(np.uint8) << 4)).astype(np.uint8)
        return Quantised(
            q.reshape(rows, -1, 32), d.reshape(rows, -1), np.full((rows, n // rows), 16, np.uint8), 8
        )
    if kind == GGMLQuantizationType.Q6_K:
        blocks = _blocks(tensor, 210)
        n = blocks.shape[0]
        ql, qh = blocks[:, :128], blocks[:, 128:192]
        sc = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)
        d = blocks[:, 208:210].copy().view(np.float16).astype(np.float32)
        scales = (d * sc).reshape(n * 16)
        low = (ql.reshape(n, -1, 1, 64) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)) & 0x0F
        high = (qh.reshape(n, -1, 1, 32) >> np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)) & 0x03
        q = (low.reshape(n, -1, 32) | (high.reshape(n, -1, 32) << 4)).astype(np.uint8).reshape(n * 16, 16)
        return Quantised(
            q.reshape(rows, -1, 16),
            scales.reshape(rows, -1),
            np.full((rows, n * 16 // rows), 32, np.uint8),
            8,
        )
    if kind == GGMLQuantizationType.Q4_K:
        blocks = _blocks(tensor, 144)
        n = blocks.shape[0]
        d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
        dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
        sc, m = Q4_K.get_scale_min(blocks[:, 4:16].copy())
        s = (d * sc.astype(np.float32)).reshape(-1)
        offset = (dmin * m.astype(np.float32)).reshape(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            zero = np.where(s > 0, np.clip(np.round(offset / s), 0, 15), 0).astype(np.uint8)
        residual = offset - zero.astype(np.float32) * s
        qs = blocks[:, 16:].reshape(n, -1, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
        q = (qs & 0x0F).reshape(n * 8, 32).astype(np.uint8)
        return Quantised(
            q.reshape(rows, -1, 32),
            s.reshape(rows, -1),
            zero.reshape(rows, -1),
            4,
            residual.reshape(rows, -1),
        )
    raise ValueError(f"{tensor.name}: GGUF type {kind.name} has no lossless form here")


def _pack(q: np.ndarray, bits: int) -> np.ndarray:
    """MatMulNBits' B: [N, K/block, block*bits/8], two 4-bit values a byte, low nibble first."""
    if bits == 8:
        return q
    return (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)


def _zero_points(zero: np.ndarray, bits: int) -> np.ndarray:
    if bits == 8:
        return zero.reshape(-1)
    rows, count = zero.shape
    padded = np.zeros((rows, count + count % 2), np.uint8)
    padded[:, :count] = zero
    return (padded[:, 0::2] | (padded[:, 1::2] << 4)).reshape(-1)


def _concat(parts: list[Quantised]) -> Quantised:
    if len(parts) == 1:
        return parts[0]
    if len({(p.bits, p.block) for p in parts}) != 1 or any(p.residual is not None for p in parts):
        raise ValueError("a fused projection mixes GGUF types of different layouts")
    return Quantised(
        np.concatenate([p.q for p in parts]),
        np.concatenate([p.scales for p in parts]),
        np.concatenate([p.zero for p in parts]),
        parts[0].bits,
    )


def nibbles(quantised: Quantised) -> Quantised:
    """An 8-bit weight as 4-bit values over an input given twice ([x, x], K doubled): the low
    nibbles at scale s and zero point 0, then the high ones at scale 16 s and zero point z / 16, so
    s*lo + 16 s*(hi - z/16) = s*(q - z). Every zero point here (16, 32, 128) divides by 16."""
    if quantised.bits != 8 or quantised.residual is not None or np.any(quantised.zero % 16):
        raise ValueError("only an 8-bit weight with zero points in multiples of 16 splits in nibbles")
    low, high = quantised.q & 0x0F, quantised.q >> 4
    return Quantised(
        np.concatenate([low, high], axis=1),
        np.concatenate([quantised.scales, quantised.scales * 16], axis=1),
        np.concatenate([np.zeros_like(quantised.zero), quantised.zero // 16], axis=1),
        4,
    )


def round_to_4_bits(quantised: Quantised, block: int = 32) -> Quantised:
    """A 4-bit round-to-nearest copy (asymmetric, per block) of a weight: the lm_head's shortlist."""
    dense = quantised.dense()
    rows, k = dense.shape
    blocks = dense.reshape(rows, k // block, block)
    low, high = np.minimum(blocks.min(axis=-1), 0), np.maximum(blocks.max(axis=-1), 0)
    scales = np.where(high > low, (high - low) / 15, 1.0).astype(np.float32)
    zero = np.clip(np.round(-low / scales), 0, 15).astype(np.uint8)
    q = np.clip(np.round(blocks / scales[..., None]) + zero[..., None], 0, 15).astype(np.uint8)
    return Quantised(q, scales, zero, 4)


class Rewriter:
    def __init__(self, model: onnx.ModelProto, accuracy_level: int = ACCURACY_LEVEL) -> None:
        self.model = model
        self.accuracy_level = accuracy_level
        self.initializers = {i.name: i for i in model.graph.initializer}
        self.added: list[onnx.TensorProto] = []
        self.checked = 0
        self.max_diff = 0.0

    def check(self, weight_name: str, quantised: Quantised, reference: np.ndarray) -> None:
        """``reference`` [N, K]: the dequantised values transformers computed."""
        ours = quantised.dense()
        diff = float(np.abs(ours - reference).max())
        tolerance = 1e-5 * max(1.0, float(np.abs(reference).max()))
        if ours.shape != reference.shape or diff > tolerance:
            raise ValueError(
                f"{weight_name}: the GGUF's integers do not give the fp32 weights (max diff {diff:.3e})"
            )
        self.checked += 1
        self.max_diff = max(self.max_diff, diff)

    def matmul(
        self, node: onnx.NodeProto, quantised: Quantised, *, fp32_activations: bool = False
    ) -> list[onnx.NodeProto]:
        """``node``'s product with the weight's integers; ``fp32_activations``: at accuracy level 1,
        an 8-bit weight as its two nibbles (``nibbles``) against the input given twice."""
        name = node.input[1].removesuffix(".weight")
        n, blocks, block = quantised.q.shape
        k = blocks * block
        source = node.input[0]
        level = FP32_ACTIVATIONS if fp32_activations else self.accuracy_level
        twice: list[onnx.NodeProto] = []
        if fp32_activations and quantised.bits == 8:
            quantised, source = nibbles(quantised), f"{node.output[0]}/twice"
            twice = [
                helper.make_node("Concat", [node.input[0]] * 2, [source], name=f"{node.name}Twice", axis=-1)
            ]
            k *= 2
        tensors = {
            f"{name}.qweight": _pack(quantised.q, quantised.bits),
            f"{name}.scales": quantised.scales.reshape(-1).astype(np.float32),
            f"{name}.qzeros": _zero_points(quantised.zero, quantised.bits),
        }
        for tensor_name, array in tensors.items():
            self.added.append(numpy_helper.from_array(array, tensor_name))
        output = node.output[0]
        main = output if quantised.residual is None else f"{output}/nbits"
        nodes = [
            *twice,
            helper.make_node(
                "MatMulNBits",
                [source, *tensors],
                [main],
                name=f"{node.name}NBits",
                domain="com.microsoft",
                K=k,
                N=n,
                bits=quantised.bits,
                block_size=quantised.block,
                accuracy_level=level,
            ),
        ]
        if quantised.residual is not None:  # y -= (sum of x over each block) @ c^T
            shape, residual = f"{name}.block_shape", f"{name}.residual"
            self.added.append(numpy_helper.from_array(np.array([0, 0, blocks, block], np.int64), shape))
            self.added.append(
                numpy_helper.from_array(quantised.residual.T.astype(np.float32).copy(), residual)
            )
            axes = f"{name}.sum_axes"
            self.added.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
            nodes += [
                helper.make_node(
                    "Reshape", [node.input[0], shape], [f"{output}/blocks"], name=f"{node.name}Blocks"
                ),
                helper.make_node(
                    "ReduceSum",
                    [f"{output}/blocks", axes],
                    [f"{output}/sums"],
                    name=f"{node.name}Sums",
                    keepdims=0,
                ),
                helper.make_node(
                    "MatMul", [f"{output}/sums", residual], [f"{output}/offset"], name=f"{node.name}Offset"
                ),
                helper.make_node("Sub", [main, f"{output}/offset"], [output], name=f"{node.name}Residual"),
            ]
        return nodes

    def table(self, quantised: Quantised, name: str = "model.embed_tokens") -> list[str]:
        """GatherBlockQuantized's data, scales and zero points for a table of 8-bit integers, added
        once: the embedding and the shortlisting lm_head share the tied table."""
        rows = quantised.q.shape[0]
        tensors = {
            f"{name}.qdata": quantised.q.reshape(rows, -1),
            f"{name}.qscales": quantised.scales.astype(np.float32),
            f"{name}.qzeros": quantised.zero,
        }
        present = {tensor.name for tensor in self.added}
        for tensor_name, array in tensors.items():
            if tensor_name not in present:
                self.added.append(numpy_helper.from_array(array, tensor_name))
        return list(tensors)

    def gather(self, node: onnx.NodeProto, quantised: Quantised) -> list[onnx.NodeProto]:
        names = self.table(quantised)
        return [
            helper.make_node(
                "GatherBlockQuantized",
                [names[0], node.input[1], names[1], names[2]],
                list(node.output),
                name=f"{node.name}Quantized",
                domain="com.microsoft",
                gather_axis=0,
                quantize_axis=1,
                block_size=quantised.block,
                bits=8,
            )
        ]

    def shortlist_head(self, node: onnx.NodeProto, quantised: Quantised, table: str) -> list[onnx.NodeProto]:
        """The shortlisting lm_head: a 4-bit copy scores every token (int8 activations), the
        ``SHORTLIST`` best are scored again from ``table``'s 8-bit integers with fp32 activations,
        and those scores replace theirs. h [.., K] -> logits [.., vocab]."""
        if quantised.bits != 8 or quantised.residual is not None:
            raise ValueError(
                "a shortlisting lm_head rescores from 8-bit integers (Q8_0, Q5_0, Q6_K), not Q4_K"
            )
        hidden, logits = node.input[0], node.output[0]
        scored = self.matmul(
            helper.make_node(
                "MatMul", [hidden, "lm_head.shortlist.weight"], [f"{logits}/rough"], name=node.name
            ),
            round_to_4_bits(quantised, SHORTLIST_BLOCK),
        )
        names = self.table(quantised, table)
        k, axes = "lm_head.shortlist.k", "lm_head.shortlist.axes"
        self.added.append(numpy_helper.from_array(np.array([SHORTLIST], np.int64), k))
        self.added.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
        return [
            *scored,
            helper.make_node(
                "TopK",
                [f"{logits}/rough", k],
                [f"{logits}/best", f"{logits}/ids"],
                name="/lm_head/TopK",
                axis=-1,
            ),
            helper.make_node(
                "GatherBlockQuantized",
                [names[0], f"{logits}/ids", names[1], names[2]],
                [f"{logits}/rows"],
                name="/lm_head/Rows",
                domain="com.microsoft",
                gather_axis=0,
                quantize_axis=1,
                block_size=quantised.block,
                bits=8,
            ),  # [.., SHORTLIST, K]
            helper.make_node("Unsqueeze", [hidden, axes], [f"{logits}/column"], name="/lm_head/Column"),
            helper.make_node(
                "MatMul",
                [f"{logits}/rows", f"{logits}/column"],
                [f"{logits}/products"],
                name="/lm_head/Exact",
            ),
            helper.make_node(
                "Squeeze", [f"{logits}/products", axes], [f"{logits}/exact"], name="/lm_head/Squeeze"
            ),
            helper.make_node(
                "ScatterElements",
                [f"{logits}/rough", f"{logits}/ids", f"{logits}/exact"],
                [logits],
                name="/lm_head/Rescore",
                axis=-1,
            ),
        ]


def build_lossless(
    gguf_file: Path, fp32_graph: Path, out: Path, *, fp32_activations: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The graph of the GGUF's own weights. ``fp32_activations``: the projections (``PROJECTIONS``'
    keys, or ``all``) computed with fp32 activations; with any, the lm_head shortlists."""
    unknown = set(fp32_activations) - {*PROJECTIONS, "all"}
    if unknown:
        raise ValueError(f"fp32_activations: unknown projections {sorted(unknown)}")
    reader = GGUFReader(str(gguf_file))
    tensors = {t.name: t for t in reader.tensors}
    model = onnx.load(str(fp32_graph))
    rewriter = Rewriter(model)
    replaced: dict[int, list[onnx.NodeProto]] = {}
    counts: dict[str, int] = {}
    producers = {out: node for node in model.graph.node for out in node.output}

    def embedding_weight(node: onnx.NodeProto) -> str | None:
        """The embedding's fp32 table: its own, or (tied) the builder's Transpose of the lm_head's."""
        if node.op_type != "Gather":
            return None
        if node.input[0] == "model.embed_tokens.weight":
            return node.input[0]
        source = producers.get(node.input[0])
        tied = (
            source is not None
            and source.op_type == "Transpose"
            and source.input[0] == "lm_head.MatMul.weight"
        )
        return "lm_head.MatMul.weight" if tied else None

    for index, node in enumerate(model.graph.node):
        sources: list[str] = []
        table = embedding_weight(node)
        exact = False
        if node.op_type == "MatMul" and (match := LAYER_WEIGHT.match(node.input[1])):
            layer, projection = match.groups()
            sources = [f"blk.{layer}.{part}.weight" for part in PROJECTIONS[projection]]
            exact = "all" in fp32_activations or projection in fp32_activations
        elif node.op_type == "MatMul" and node.input[1] == "lm_head.MatMul.weight":
            sources = ["output.weight" if "output.weight" in tensors else "token_embd.weight"]
        elif table is not None:
            sources = ["token_embd.weight"]
        if not sources:
            continue
        parts = [integers(tensors[s]) for s in sources]
        for s in sources:
            counts[tensors[s].tensor_type.name] = counts.get(tensors[s].tensor_type.name, 0) + 1
        quantised = _concat(parts)
        weight = table if table is not None else node.input[1]
        reference = numpy_helper.to_array(rewriter.initializers[weight])
        reference = reference if table == "model.embed_tokens.weight" else reference.T
        rewriter.check(weight, quantised, reference)
        for source, part in zip(sources, parts, strict=True):  # gguf's own dequantisation agrees
            expected = dequantize(tensors[source].data, tensors[source].tensor_type).reshape(
                part.q.shape[0], -1
            )
            if not np.array_equal(part.dense().astype(np.float32), expected.astype(np.float32)):
                diff = float(np.abs(part.dense() - expected).max())
                if diff > 1e-6 * max(1.0, float(np.abs(expected).max())):
                    raise ValueError(f"{source}: integers differ from gguf.quants.dequantize by {diff:.3e}")
        if node.op_type == "Gather":
            replaced[index] = rewriter.gather(node, quantised)
        elif fp32_activations and node.input[1] == "lm_head.MatMul.weight":
            tied = sources == ["token_embd.weight"]
            replaced[index] = rewriter.shortlist_head(
                node, quantised, "model.embed_tokens" if tied else "lm_head"
            )
        else:
            replaced[index] = rewriter.matmul(node, quantised, fp32_activations=exact)
    nodes = []
    for index, node in enumerate(model.graph.node):
        nodes.extend(replaced.get(index, [node]))
    outputs = {o.name for o in model.graph.output}
    while True:  # drop what fed only the replaced nodes (the tied embedding's Transpose)
        consumed = {name for node in nodes for name in node.input} | outputs
        alive = [node for node in nodes if any(out in consumed for out in node.output)]
        if len(alive) == len(nodes):
            break
        nodes = alive
    used = {name for node in nodes for name in node.input}
    kept = [i for i in model.graph.initializer if i.name in used]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, *rewriter.added])
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        str(out / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="model.onnx.data",
    )
    return {
        "fp32_activations": list(fp32_activations),
        **({"lm_head_shortlist": SHORTLIST} if fp32_activations else {}),
        "replaced": len(replaced),
        "checked": rewriter.checked,
        "max_weight_diff": rewriter.max_diff,
        "gguf_types": counts,
    }


TYPE_SIZES = {"Q8_0": (32, 34), "Q5_0": (32, 22), "Q6_K": (QK_K, 210), "Q4_K": (QK_K, 144)}


def _random_tensor(kind: str, rows: int, k: int, rng: np.random.Generator) -> Any:
    """Random blocks of a GGUF type, with sane fp16 scales: what ``integers`` must read exactly."""
    from types import SimpleNamespace

    block, size = TYPE_SIZES[kind]
    blocks = rng.integers(0, 256, size=(rows * k // block, size), dtype=np.uint8)
    scales = rng.uniform(0.001, 0.02, size=(blocks.shape[0], 2)).astype(np.float16).view(np.uint8)
    if kind == "Q6_K":
        blocks[:, 208:210] = scales[:, :2]
    else:
        blocks[:, 0:2] = scales[:, :2]
    if kind == "Q4_K":
        blocks[:, 2:4] = rng.uniform(0.001, 0.02, size=(blocks.shape[0], 1)).astype(np.float16).view(np.uint8)
    qtype = getattr(GGMLQuantizationType, kind)
    return SimpleNamespace(name=kind, data=blocks.reshape(rows, -1), shape=[k, rows], tensor_type=qtype)


def self_test(out: Path, seed: int = 0) -> dict[str, Any]:
    """A small graph of one replaced MatMul per GGUF type and the quantised embedding, built from
    random blocks with the code above, and the dense weights gguf's own dequantisation gives: a
    test runs it in onnxruntime and compares (``tests/e2e/test_llm_import.py``)."""
    rng = np.random.default_rng(seed)
    k, n, vocab = 512, 48, 4 * SHORTLIST
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, k])
    ids = helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 3])
    model = helper.make_model(helper.make_graph([], "lossless_self_test", [x, ids], []))
    rewriter = Rewriter(model, accuracy_level=1)  # fp32 activations: the comparison is exact
    nodes: list[onnx.NodeProto] = []
    expected: dict[str, np.ndarray] = {}
    for kind in TYPE_SIZES:
        tensor = _random_tensor(kind, n, k, rng)
        quantised = integers(tensor)
        dense = dequantize(tensor.data, tensor.tensor_type).reshape(n, k).astype(np.float32)
        rewriter.check(kind, quantised, dense)
        node = helper.make_node(
            "MatMul", ["x", f"{kind}.MatMul.weight"], [f"y_{kind}"], name=f"/{kind}/MatMul"
        )
        nodes += rewriter.matmul(node, quantised)
        halves = helper.make_node(  # the same weight as two nibbles at the 4-bit kernel (``exact``)
            "MatMul", ["x", f"{kind}.nibbles.weight"], [f"y_{kind}_nibbles"], name=f"/{kind}/Nibbles"
        )
        nodes += rewriter.matmul(halves, quantised, fp32_activations=True)
        expected[kind] = dense
        for name in (f"y_{kind}", f"y_{kind}_nibbles"):
            model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    table = _random_tensor("Q8_0", vocab, k, rng)
    quantised = integers(table)
    expected["embedding"] = dequantize(table.data, table.tensor_type).reshape(vocab, k).astype(np.float32)
    nodes += rewriter.gather(
        helper.make_node("Gather", ["table", "ids"], ["embedded"], name="/embed/Gather"), quantised
    )
    # the tied lm_head, shortlisting: it must read the embedding's table (stored once)
    nodes += rewriter.shortlist_head(
        helper.make_node("MatMul", ["x", "lm_head.MatMul.weight"], ["logits"], name="/lm_head/MatMul"),
        quantised,
        "model.embed_tokens",
    )
    for name in ("embedded", "logits"):
        model.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    model.graph.node.extend(nodes)
    model.graph.initializer.extend(rewriter.added)
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 10  # what the builder's graphs declare: onnxruntime 1.31 reads up to 13
    out.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(out / "lossless.onnx"))
    np.savez(out / "expected.npz", **expected)
    return {"types": list(TYPE_SIZES), "checked": rewriter.checked, "shortlist": SHORTLIST}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(self_test(Path(sys.argv[sys.argv.index("--out") + 1]))))
