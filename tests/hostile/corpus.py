"""The hostile corpus: request content that once produced a 500, or could, and must be a 4xx.

Each case is ``(name, route, body)``: ``route`` names a stored event to send it on (``predict``,
``generate``, ``infer``, ``describe``, ``metadata``), optionally with a path (``path``); ``body``
is the raw body text (None: no body). The generated half lives in ``test_hostile_http.py``
(hypothesis); this half is the findings of issue 14, written down once so that they stay fixed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    name: str
    route: str
    body: str | None = None
    path: str | None = None
    method: str | None = None


def deep(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


NINES = "9" * 4301
BIG_INT = "1" + "0" * 4301  # 4,302 digits: past Python's int-string limit
HUGE_INT_OK = "1" + "0" * 4000  # parses, but float() of it overflows

BODY_ROUTES = ("predict", "generate", "infer", "version_infer")

CASES: list[Case] = [
    # nesting deeper than the interpreter's stack, on every route that reads a body
    *[
        Case(f"deep-{depth}-{route}", route, deep(depth))
        for depth in (990, 5000, 100_000)
        for route in BODY_ROUTES
    ],
    *[
        Case(f"deep-instances-{depth}", "predict", '{"instances": ' + deep(depth) + "}")
        for depth in (50, 500, 900, 996)
    ],
    *[
        Case(
            f"deep-data-{depth}",
            "infer",
            json.dumps(
                {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [0]}]}
            ).replace("[0]", deep(depth, '"x"')),
        )
        for depth in (50, 500, 900, 996)
    ],
    Case("deep-prompt", "generate", '{"prompt": ' + deep(3000, '"a"') + "}"),
    Case("deep-parameters", "infer", '{"parameters": {"temperature": ' + deep(980) + '}, "inputs": []}'),
    # lone surrogates: valid JSON escapes, not valid UTF-8
    Case("surrogate-predict", "predict", '{"instances": ["\\ud800"]}'),
    Case("surrogate-predict-mixed", "predict", '{"instances": ["hello there", "\\udfff", "win cash now"]}'),
    Case("surrogate-bare-list", "predict", '["\\ud800"]'),
    Case(
        "surrogate-infer",
        "infer",
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["\\ud800"]}]}',
    ),
    Case(
        "surrogate-infer-id",
        "infer",
        '{"id": "\\ud800", "inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}',
    ),
    Case(
        "surrogate-infer-name",
        "infer",
        '{"inputs": [{"name": "\\ud800", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}',
    ),
    Case("surrogate-prompt", "generate", '{"prompt": "\\ud800"}'),
    Case("surrogate-raw-body", "predict", '{"instances": ["\ud800"]}'),  # the event's own text
    # sampling temperatures that overflow a softmax, and numbers at the edges
    *[
        Case(
            f"temperature-{t}",
            "generate",
            '{"prompt": "the whale", "max_new_tokens": 5, "temperature": ' + t + "}",
        )
        for t in (
            "5e-324",
            "1e-308",
            "2.2250738585072014e-308",
            "1e-300",
            "-0.0",
            "1e400",
            "-1e400",
            "NaN",
            "Infinity",
            "-Infinity",
            HUGE_INT_OK,
            BIG_INT,
            "true",
            "null",
            '"1"',
            "[]",
            "{}",
        )
    ],
    *[
        Case(
            f"param-{name}-{value[:8]}", "generate", '{"prompt": "the whale", "' + name + '": ' + value + "}"
        )
        for name in ("max_new_tokens", "num_return_sequences", "top_k", "seed")
        for value in (HUGE_INT_OK, BIG_INT, "-1", "1.5", "1e400", "true", '"3"')
    ],
    Case(
        "infer-temperature-tiny",
        "infer",
        json.dumps(
            {
                "parameters": {"temperature": 5e-324, "max_new_tokens": 4},
                "inputs": [{"name": "prompt", "shape": [1], "datatype": "BYTES", "data": ["the whale"]}],
            }
        ),
    ),
    # integers past the int-string limit in a protocol body
    Case(
        "bigint-data",
        "infer",
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": [' + BIG_INT + "]}]}",
    ),
    Case(
        "bigint-shape",
        "infer",
        '{"inputs": [{"name": "text", "shape": [' + BIG_INT + '], "datatype": "BYTES", "data": ["a"]}]}',
    ),
    Case(
        "bigint-ok-shape",
        "infer",
        '{"inputs": [{"name": "text", "shape": [' + HUGE_INT_OK + '], "datatype": "BYTES", "data": ["a"]}]}',
    ),
    Case(
        "bigint-ok-data",
        "infer",
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [' + HUGE_INT_OK + "]}]}",
    ),
    Case("bigint-id", "infer", '{"id": ' + BIG_INT + ', "inputs": []}'),
    Case("bigint-instances", "predict", '{"instances": [' + BIG_INT + "]}"),
    Case("bigint-ok-instances", "predict", '{"instances": [' + HUGE_INT_OK + "]}"),
    Case("nan-instances", "predict", '{"instances": [NaN, Infinity]}'),
    Case(
        "inf-data",
        "infer",
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "FP32", "data": [1e400]}]}',
    ),
    Case(
        "huge-shape-product",
        "infer",
        '{"inputs": [{"name": "text", "shape": [4294967296, 4294967296, 4294967296], "datatype": "BYTES", "data": ["a"]}]}',
    ),
    # versions in the path: ASCII digits only, and in range
    *[
        Case(
            f"version-{label}-{suffix or 'metadata'}",
            "metadata",
            path=f"/v2/models/spam_nb/versions/{version}{suffix}",
        )
        for label, version in (
            ("4301-nines", NINES),
            ("superscript", "²"),
            ("arabic-indic", "١"),
            ("fullwidth", "１"),
            ("zero", "0"),
            ("negative", "-1"),
            ("float", "1.0"),
            ("exp", "1e3"),
            ("21-digits", "9" * 21),
            ("spaces", " 1 "),
            ("newline", "1%0A"),
            ("surrogate", "\ud800"),
        )
        for suffix in ("", "/ready")
    ],
    Case(
        "version-4301-infer",
        "version_infer",
        '{"inputs": []}',
        path=f"/v2/models/spam_nb/versions/{NINES}/infer",
    ),
    # model names in the path
    *[
        Case(f"model-{label}", "describe", path=f"/models/{name}")
        for label, name in (
            ("newline", "spam_nb%0A"),
            ("long", "m" * 5000),
            ("unicode", "spæm"),
            ("surrogate", "\ud800"),
        )
    ],
    Case("model-newline-ready", "metadata", path="/v2/models/spam_nb\n/ready"),
    Case("route-long", "metadata", path="/v2/" + "x/" * 3000),
    # shapes of bodies
    Case("empty-body", "predict", ""),
    Case("no-body", "infer", None),
    Case("null-body", "predict", "null"),
    Case("string-body", "infer", '"just a string"'),
    Case("number-body", "generate", "12"),
    Case("instances-objects", "predict", '{"instances": [{"a": 1}, [1, 2], null, true, 1.5]}'),
    Case("instances-empty-strings", "predict", '{"instances": ["", "   ", "\\u0000"]}'),
    Case("instances-long-text", "predict", json.dumps({"instances": ["x" * 200_000]})),
    Case(
        "infer-wrong-everything",
        "infer",
        '{"inputs": [{"name": 1, "shape": "x", "datatype": "NOPE", "data": {}}]}',
    ),
    Case(
        "infer-bool-shape",
        "infer",
        '{"inputs": [{"name": "text", "shape": [true], "datatype": "BYTES", "data": ["a"]}]}',
    ),
    Case(
        "infer-outputs-weird",
        "infer",
        '{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a"]}], "outputs": [{"name": "\\ud800"}]}',
    ),
    Case("generate-prompt-long", "generate", json.dumps({"prompt": "a" * 100_000})),
    Case("generate-prompt-unknown-chars", "generate", json.dumps({"prompt": "☃" * 5000})),
]
