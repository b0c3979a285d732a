"""The causal-lm task on tiny random-init decoders (gemma3 and llama, made and imported by the real
export path once per session): greedy equal to PyTorch's, seeded sampling, stop strings, EOS, the
deadline, rows sharing one prefill, log-probabilities, chat templates and every refusal."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from maas.core.deadline import GATEWAY_SECONDS, MARGIN_SECONDS, deadline_for
from maas.core.errors import RequestError
from maas.core.predictor import Predictor
from maas.core.tasks import kv_cache, task_for
from maas.core.tasks.causal_lm import CausalLM, CompletionRequest, Delta
from maas.core.tasks.sampling import Sampler, Sampling, log_softmax
from ops.local import LambdaContext

ARCHITECTURES = ("gemma3", "llama")
PROMPT = "Call me Ishmael. Some years ago"


def load(folder: Path, **io: Any) -> CausalLM:
    """The version folder's task, as the service builds it (``io`` overrides the manifest's)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["io"] = {**manifest["io"], **io}
    task = task_for(Predictor(folder / "model.onnx"), manifest, folder)
    assert isinstance(task, CausalLM)
    return task


@pytest.fixture(scope="module", params=ARCHITECTURES)
def tiny(request: pytest.FixtureRequest, tiny_llms: dict[str, Path]) -> CausalLM:
    return load(tiny_llms[request.param])


def reference(tiny_llms: dict[str, Path], arch: str) -> dict[str, Any]:
    folder = tiny_llms[arch]
    document: dict[str, Any] = json.loads((folder.parent / f"{folder.name}.reference.json").read_text())
    return document


def ask(task: CausalLM, **fields: Any) -> CompletionRequest:
    return task.parse({"prompt": PROMPT, **fields})


def with_ids(task: CausalLM, ids: list[int], **fields: Any) -> CompletionRequest:
    """A request for prompt ids as they are (PyTorch's reference prompts are ids)."""
    return replace(ask(task, **fields), prompt_ids=tuple(ids))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_greedy_tokens_equal_pytorch_greedy_for_every_reference_prompt(
    tiny_llms: dict[str, Path], arch: str
) -> None:
    task = load(tiny_llms[arch], eos_token_ids=[])  # PyTorch's reference runs its full length
    ref = reference(tiny_llms, arch)
    for prompt, want in zip(ref["prompts"], ref["greedy"], strict=True):
        (got,) = task.complete(with_ids(task, prompt, temperature=0, max_new_tokens=len(want)))
        assert list(got.token_ids) == want
        assert got.finish_reason == "length" and got.tokens == len(want)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_a_prompt_that_starts_like_the_last_one_reuses_its_cache_and_answers_the_same(
    tiny_llms: dict[str, Path], arch: str
) -> None:
    """A chat's next turn re-sends the conversation: only what follows the last prompt prefills."""
    longer = PROMPT + " - never mind how long precisely - having little or no money"
    fields = {"temperature": 0, "max_new_tokens": 12}
    alone = {
        p: load(tiny_llms[arch]).complete(ask(load(tiny_llms[arch]), prompt=p, **fields))
        for p in (PROMPT, longer)
    }
    task = load(tiny_llms[arch])
    first = ask(task, **fields)
    assert task.complete(first) == alone[PROMPT] and task.reused_tokens == 0
    assert task.complete(ask(task, prompt=longer, **fields)) == alone[longer]
    assert kv_cache.MIN_REUSE <= task.reused_tokens <= len(first.prompt_ids)
    assert task.complete(first) == alone[PROMPT]  # the same prompt again: all but its last two
    assert task.reused_tokens == len(first.prompt_ids) - kv_cache.MIN_TAIL
    task.complete(ask(task, prompt="Whale " + PROMPT, **fields))  # another start: nothing to reuse
    assert task.reused_tokens == 0
    task.forget_prefix()  # what a benchmark does before timing a prefill: the same prompt prefills whole
    assert task.complete(ask(task, prompt="Whale " + PROMPT, **fields)) and task.reused_tokens == 0


def test_the_stream_is_the_completion_one_step_at_a_time(tiny: CausalLM) -> None:
    request = ask(tiny, temperature=0.8, seed=3, num_return_sequences=3, max_new_tokens=24)
    steps = list(tiny.stream(request))
    completions = tiny.complete(request)
    for row, completion in enumerate(completions):
        deltas = [d for step in steps for d in step if d.index == row]
        assert "".join(d.text for d in deltas) == completion.text
        assert tuple(d.token_id for d in deltas) == completion.token_ids
        # exactly one finish_reason per row, on its last delta
        assert [d.finish_reason for d in deltas][:-1] == [None] * (len(deltas) - 1)
        assert deltas[-1].finish_reason == completion.finish_reason
    # each step holds one delta per row still live: never more rows than requested
    assert all(len({d.index for d in step}) == len(step) <= 3 for step in steps)


def test_seeded_sampling_repeats_itself_and_another_seed_differs(tiny: CausalLM) -> None:
    fields = {"temperature": 1.0, "top_p": 0.95, "top_k": 50, "num_return_sequences": 2, "max_new_tokens": 16}
    first = tiny.complete(ask(tiny, seed=11, **fields))
    again = tiny.complete(ask(tiny, seed=11, **fields))
    other = tiny.complete(ask(tiny, seed=12, **fields))
    assert [c.token_ids for c in first] == [c.token_ids for c in again]
    assert [c.token_ids for c in first] != [c.token_ids for c in other]
    assert first[0].token_ids != first[1].token_ids  # the rows are samples of their own


def test_rows_share_one_prefill_and_greedy_rows_are_identical(
    tiny: CausalLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    shapes: list[tuple[int, ...]] = []
    run = tiny.predictor.run

    def counting(feeds: Any, outputs: Any = None) -> Any:
        shapes.append(tuple(feeds[tiny.layout.input_ids].shape))
        return run(feeds, outputs)

    monkeypatch.setattr(tiny.predictor, "run", counting)
    request = ask(tiny, temperature=0, num_return_sequences=4, max_new_tokens=6)
    completions = tiny.complete(request)
    prompt = len(request.prompt_ids)
    # the prompt runs once, for all four rows (what an earlier request's cache left of it)
    assert shapes[0] == (1, prompt - tiny.reused_tokens)
    assert all(shape == (4, 1) for shape in shapes[1:]) and len(shapes) == 6
    assert len({c.token_ids for c in completions}) == 1 and len(completions) == 4


def test_a_stop_string_ends_the_row_before_it_and_never_reaches_the_caller(tiny: CausalLM) -> None:
    (free,) = tiny.complete(ask(tiny, temperature=0, max_new_tokens=24))
    text = free.text
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert len(stop) == 2, text
    (stopped,) = tiny.complete(ask(tiny, temperature=0, max_new_tokens=24, stop=[stop, "\x7fnever"]))
    assert stopped.finish_reason == "stop"
    assert stopped.text == text[: text.index(stop)]
    deltas = [d for step in tiny.stream(ask(tiny, temperature=0, max_new_tokens=24, stop=stop)) for d in step]
    assert all(stop not in d.text for d in deltas) and "".join(d.text for d in deltas) == stopped.text


def test_an_end_of_sequence_token_ends_the_row_with_stop(tiny_llms: dict[str, Path]) -> None:
    plain = load(tiny_llms["llama"], eos_token_ids=[])
    (free,) = plain.complete(ask(plain, temperature=0, max_new_tokens=12))
    eos = free.token_ids[4]
    first = free.token_ids.index(eos)
    task = load(tiny_llms["llama"], eos_token_ids=[eos])
    (ended,) = task.complete(ask(task, temperature=0, max_new_tokens=12))
    assert ended.finish_reason == "stop"
    assert ended.token_ids == free.token_ids[: first + 1]  # the EOS counted, its text not given
    steps = list(task.stream(ask(task, temperature=0, max_new_tokens=12)))
    last: Delta = steps[-1][0]
    assert (last.token_id, last.text, last.finish_reason) == (eos, "", "stop")


def test_the_deadline_stops_generation_with_time_and_answers_what_it_has(tiny: CausalLM) -> None:
    (done,) = tiny.complete(ask(tiny, temperature=0, max_new_tokens=20, seed=1))
    passed = replace(ask(tiny, temperature=0, max_new_tokens=20), deadline=time.monotonic())
    (cut,) = tiny.complete(passed)
    assert cut.finish_reason == "time" and cut.tokens == 1
    assert cut.token_ids == done.token_ids[:1] and done.text.startswith(cut.text)
    far = replace(ask(tiny, temperature=0, max_new_tokens=20), deadline=time.monotonic() + 600)
    assert tiny.complete(far)[0].finish_reason == "length"


def test_the_deadline_is_lambdas_remaining_time_or_the_gateways_29_s_less_a_margin() -> None:
    before = time.monotonic()
    short = deadline_for(LambdaContext(function_name="f", timeout_s=10), http=True)
    long = deadline_for(LambdaContext(function_name="f", timeout_s=900), http=True)
    queued = deadline_for(LambdaContext(function_name="f", timeout_s=900), http=False)
    after = time.monotonic()
    assert short is not None and long is not None and queued is not None
    assert before + 10 - MARGIN_SECONDS - 0.1 <= short <= after + 10 - MARGIN_SECONDS
    assert before + GATEWAY_SECONDS - MARGIN_SECONDS <= long <= after + GATEWAY_SECONDS - MARGIN_SECONDS
    assert queued >= before + 900 - MARGIN_SECONDS - 0.1
    assert deadline_for(None, http=False) is None


def test_logprobs_are_the_models_own_and_the_greedy_token_is_the_most_likely(tiny: CausalLM) -> None:
    request = ask(tiny, temperature=0, max_new_tokens=3, logprobs=5)
    (completion,) = tiny.complete(request)
    first = completion.logprobs[0]
    assert first.logprob is not None and len(first.top_logprobs) == 5
    assert first.top_logprobs[0].token_id == first.token_id
    assert [t.logprob for t in first.top_logprobs] == sorted(
        (t.logprob for t in first.top_logprobs), reverse=True
    )
    # against a direct run of the graph on the prompt
    feeds = {
        tiny.layout.input_ids: np.array([request.prompt_ids], dtype=np.int64),
        tiny.layout.attention_mask: np.ones((1, len(request.prompt_ids)), dtype=np.int64),
        **{
            name: np.zeros((1, tiny.layout.num_kv_heads, 0, tiny.layout.head_dim), np.float32)
            for name in tiny.layout.past
        },
    }
    logits = tiny.predictor.run(feeds, [tiny.layout.logits])[tiny.layout.logits][0, -1]
    assert math.isclose(first.logprob, float(log_softmax(logits)[first.token_id]), abs_tol=1e-5)
    assert tiny.complete(ask(tiny, temperature=0, max_new_tokens=3))[0].logprobs == ()


def test_text_deltas_are_whole_characters_even_when_a_token_is_part_of_one(tiny: CausalLM) -> None:
    """Multi-byte characters split over byte tokens come out whole, in one delta, never as U+FFFD."""
    text = "naïve café 日本語 😀 Ishmael"
    ids = tiny.tokenize(text)
    start = [tiny.bos_token_id] if tiny.add_bos else []
    assert len(ids) - len(start) > 6  # several characters take several byte tokens here
    from maas.core.tasks.causal_lm import _Row

    row = _Row(0, list(start), 0, len(start))
    pieces = []
    for token in ids[len(start) :]:
        row.ids.append(token)
        pieces.append(tiny._detokenize(row))
    assert "".join(pieces) == text and not any("\ufffd" in p for p in pieces)
    assert "" in pieces  # a token that ends inside a character was held back until it was whole


def test_chat_messages_render_with_the_models_template(tiny_llms: dict[str, Path]) -> None:
    task = load(tiny_llms["gemma3"])
    messages = [{"role": "user", "content": "Who is Ahab?"}]
    prompt = task.render_chat(messages)
    assert "Who is Ahab?" in prompt
    request = task.parse({"messages": messages, "max_tokens": 4, "n": 2, "temperature": 0})
    assert request.prompt == prompt and request.num_return_sequences == 2 and request.max_new_tokens == 4
    assert (
        request.prompt_ids == tuple(task.tokenize(prompt))
        and request.prompt_ids.count(task.bos_token_id) == 1
    )
    without = load(tiny_llms["gemma3"], chat_template=None)
    with pytest.raises(RequestError) as caught:
        without.parse({"messages": messages})
    assert (caught.value.field, caught.value.code) == ("messages", "no_chat_template")


BAD = [
    ({"prompt": "x" * 3000}, "prompt", "prompt_too_long"),
    ({"prompt": "a\x00b"}, "prompt", "invalid_text"),
    ({"prompt": "a\ud800b"}, "prompt", "invalid_text"),
    ({"prompt": 7}, "prompt", "invalid_type"),
    ({}, "prompt", "missing_field"),
    ({"max_new_tokens": 10**6}, "max_new_tokens", "out_of_range"),
    ({"max_tokens": 0}, "max_tokens", "out_of_range"),
    ({"max_length": 2}, "max_length", "out_of_range"),
    ({"max_new_tokens": 4, "max_length": 40}, "max_length", "conflicting_fields"),
    ({"temperature": float("nan")}, "temperature", "out_of_range"),
    ({"temperature": 10**400}, "temperature", "out_of_range"),
    ({"temperature": "hot"}, "temperature", "invalid_type"),
    ({"top_p": 0}, "top_p", "out_of_range"),
    ({"top_p": float("inf")}, "top_p", "out_of_range"),
    ({"min_p": 1.5}, "min_p", "out_of_range"),
    ({"repetition_penalty": 1e308}, "repetition_penalty", "out_of_range"),
    ({"presence_penalty": -3}, "presence_penalty", "out_of_range"),
    ({"frequency_penalty": float("-inf")}, "frequency_penalty", "out_of_range"),
    ({"top_k": -1}, "top_k", "out_of_range"),
    ({"n": 99}, "n", "out_of_range"),
    ({"seed": 2**70}, "seed", "out_of_range"),
    ({"stop": ["."] * 17}, "stop", "too_many_stops"),
    ({"stop": ["ok", ""]}, "stop[1]", "invalid_type"),
    ({"stop": "\ud800"}, "stop", "invalid_text"),
    ({"logprobs": 6}, "logprobs", "out_of_range"),
    (
        {"messages": [{"role": "wizard", "content": "hi"}], "prompt": None},
        "messages[0].role",
        "invalid_value",
    ),
    (
        {"messages": [{"role": "user", "content": "a\x00"}], "prompt": None},
        "messages[0].content",
        "invalid_text",
    ),
]


@pytest.mark.parametrize(("fields", "field", "code"), BAD)
def test_bad_input_is_a_400_naming_the_field(
    tiny_llms: dict[str, Path], fields: dict[str, Any], field: str, code: str
) -> None:
    task = load(tiny_llms["gemma3"], max_context=64, max_new_tokens=32, max_return_sequences=4)
    body = {"prompt": PROMPT, **fields} if "prompt" in fields or fields else {}
    body = {k: v for k, v in body.items() if v is not None}
    with pytest.raises(RequestError) as caught:
        task.parse(body)
    assert (caught.value.field, caught.value.code) == (field, code), caught.value.message


def test_the_limits_name_the_counts_context_left_and_kv_memory(tiny_llms: dict[str, Path]) -> None:
    task = load(tiny_llms["llama"], max_context=64, max_new_tokens=60, max_return_sequences=8)
    prompt = len(task.tokenize(PROMPT))
    with pytest.raises(RequestError, match=rf"{prompt + 0} tokens leave {64 - prompt}") as caught:
        task.parse({"prompt": PROMPT, "max_new_tokens": 64 - prompt + 1})
    assert caught.value.code == "context_exceeded"
    with pytest.raises(RequestError, match=r"takes at most 63") as caught:
        task.parse({"prompt": "word " * 200})
    assert str(len(task.tokenize("word " * 200))) in caught.value.message
    # KV memory: 4 full contexts by default, so 8 rows of a whole context do not fit
    with pytest.raises(RequestError, match="KV cache") as caught:
        task.parse({"prompt": PROMPT, "n": 8, "max_new_tokens": 64 - prompt})
    assert caught.value.field == "n" and caught.value.code == "kv_cache_exceeded"
    # a default max_new_tokens is cut to what fits instead
    fitted = task.parse({"prompt": PROMPT, "n": 8})
    assert 8 * (prompt + fitted.max_new_tokens) <= 4 * 64


def test_the_penalties_follow_hugging_face_and_openai() -> None:
    """Repetition (HF): a seen token's positive logit divided, a negative one multiplied, over the
    prompt too; presence and frequency (OpenAI): subtracted per generated occurrence."""
    logits = np.array([[2.0, -2.0, 1.0, 0.5]], dtype=np.float32)
    rows = np.array([0])
    repetition = Sampler(Sampling(repetition_penalty=2.0), 1, 4, prompt_ids=[0, 1])
    assert repetition.penalised(logits, rows).tolist() == [[1.0, -4.0, 1.0, 0.5]]
    counted = Sampler(Sampling(presence_penalty=0.5, frequency_penalty=0.25), 1, 4, prompt_ids=[0])
    counted.observe(rows, np.array([2]))
    counted.observe(rows, np.array([2]))
    assert counted.penalised(logits, rows).tolist() == [[2.0, -2.0, 0.0, 0.5]]  # 1 - 0.5 - 2 x 0.25
    greedy = Sampler(Sampling(temperature=0.0, repetition_penalty=4.0), 1, 4, prompt_ids=[0])
    assert greedy.choose(logits, rows).tolist() == [2]  # 2.0 / 4 < 1.0


def test_the_warpers_sample_only_inside_top_k_top_p_and_min_p() -> None:
    probabilities = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    logits = np.log(probabilities)[None, :].astype(np.float32)
    rows = np.array([0])

    def support(**settings: Any) -> set[int]:
        sampler = Sampler(Sampling(seed=5, **settings), 1, 5, prompt_ids=[])
        return {int(sampler.choose(logits, rows)[0]) for _ in range(400)}

    assert support() == {0, 1, 2, 3, 4}
    assert support(top_k=2) == {0, 1}
    assert support(top_p=0.8) == {0, 1, 2}  # 0.5 + 0.2 < 0.8 <= 0.85
    assert support(min_p=0.3) == {0, 1}  # at least 0.3 x 0.5
    assert support(temperature=1e-300) == {0}  # a vanishing temperature is greedy, never NaN
