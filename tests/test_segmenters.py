"""Segmenters: fixed heuristics, pi_ref's action entropy on a real (tiny) model, parsing of LLM replies.

The semantic segmenter against a real local LLM server lives in test_llm.py, beside the session-scoped
server fixture (one server start for the whole run).
"""

import json
import logging
import math

import pytest

from hpl.models import build_tiny_model, load_model
from hpl.segmenters import SEGMENTERS, SegmentationError, segment_trajectory, validate_segments
from hpl.segmenters.fixed import fixed_k, fixed_n
from hpl.segmenters.semantic import build_messages, extract_json_list, parse_segments, semantic_segments
from hpl.segmenters.uncertainty import (
    _encode_trajectory,
    action_char_span,
    action_entropies,
    action_entropies_batch,
    entropy_threshold,
    uncertainty_segments,
)
from hpl.trajectory import build_trajectory


def _trajectory(tid, actions, observation="Nothing happens."):
    steps = [(f"Thought: step {i}.\nAction: {a}", f"{observation} ({i})") for i, a in enumerate(actions)]
    return build_trajectory(tid, "Interact with a household to solve a task.", "Your task is to: put a mug on desk 1.",
                            steps, reward=1.0)  # fmt: skip


ACTIONS = ["go to shelf 1", "take mug 1 from shelf 1", "go to sinkbasin 1", "clean mug 1 with sinkbasin 1",
           "go to desk 1", "put mug 1 in/on desk 1", "look"]  # fmt: skip


# ------------------------------------------------------------------------------------------------ fixed


@pytest.mark.parametrize(
    "n, expected",
    [
        (0, []),
        (1, [[0, 0]]),
        (2, [[0, 0], [1, 1]]),  # n < N: one action per group
        (3, [[0, 0], [1, 1], [2, 2]]),
        (4, [[0, 1], [2, 3]]),  # ceil(4/3) = 2: only two groups
        (7, [[0, 2], [3, 5], [6, 6]]),
        (9, [[0, 2], [3, 5], [6, 8]]),
        (10, [[0, 3], [4, 7], [8, 9]]),
    ],
)
def test_fixed_n(n, expected):
    assert fixed_n(n, N=3) == expected
    validate_segments(expected, n)


@pytest.mark.parametrize(
    "n, k, expected",
    [(0, 3, []), (1, 3, [[0, 0]]), (2, 3, [[0, 1]]), (3, 3, [[0, 2]]), (7, 3, [[0, 2], [3, 5], [6, 6]]),
     (5, 2, [[0, 1], [2, 3], [4, 4]]), (4, 1, [[0, 0], [1, 1], [2, 2], [3, 3]])],
)  # fmt: skip
def test_fixed_k(n, k, expected):
    assert fixed_k(n, K=k) == expected


def test_fixed_rejects_nonpositive_sizes():
    with pytest.raises(ValueError):
        fixed_n(5, N=0)
    with pytest.raises(ValueError):
        fixed_k(5, K=0)


def test_registry_runs_fixed_segmenters_on_records():
    record = _trajectory("t", ACTIONS)
    assert segment_trajectory("fixed_n", record) == [[0, 2], [3, 5], [6, 6]]
    assert segment_trajectory("fixed_k", record, K=4) == [[0, 3], [4, 6]]
    assert segment_trajectory("fixed_n", _trajectory("one", ACTIONS[:1]), N=3) == [[0, 0]]
    assert set(SEGMENTERS) == {"fixed_n", "fixed_k", "uncertainty", "semantic"}
    with pytest.raises(ValueError, match="unknown segmenter"):
        segment_trajectory("random", record)


def test_validate_segments_names_the_problem():
    validate_segments([], 0)
    with pytest.raises(SegmentationError, match="start at 3"):
        validate_segments([[0, 2], [4, 6]], 7)
    with pytest.raises(SegmentationError, match="7 actions"):
        validate_segments([[0, 2]], 7)
    with pytest.raises(SegmentationError, match="pair of ints"):
        validate_segments([[0, 2.0]], 3)


# ------------------------------------------------------------------------------------------ uncertainty


def test_uncertainty_segments_close_after_high_entropy_actions():
    assert uncertainty_segments([0.1, 2.0, 0.3, 0.2, 3.0, 0.1], 1.0) == [[0, 1], [2, 4], [5, 5]]
    assert uncertainty_segments([0.1, 1.0, 0.3], 1.0) == [[0, 2]]  # equal is not above
    assert uncertainty_segments([5.0, 5.0], 1.0) == [[0, 0], [1, 1]]
    assert uncertainty_segments([5.0], 1.0) == [[0, 0]]
    assert uncertainty_segments([], 1.0) == []


def test_entropy_threshold_is_the_percentile():
    values = list(range(11))  # 0..10
    assert entropy_threshold(values, 80) == pytest.approx(8.0)
    assert entropy_threshold(values, 50) == pytest.approx(5.0)
    assert entropy_threshold([1.0, 2.0], 80) == pytest.approx(1.8)  # linear interpolation
    above = [v for v in values if v > entropy_threshold(values, 80)]
    assert above == [9, 10]  # the top 20%
    with pytest.raises(ValueError):
        entropy_threshold([], 80)


def test_action_char_span_is_the_text_after_the_last_action():
    reply = "Thought: Action: is a word.\nAction: take mug 1 from shelf 1  \n"
    start, end = action_char_span(reply)
    assert reply[start:end] == "take mug 1 from shelf 1"
    assert action_char_span("no action here") == (0, len("no action here"))


SPEC = dict(
    vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, max_positions=1024
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    records = [_trajectory("a", ACTIONS), _trajectory("b", ACTIONS[:3], "You see a cup.")]
    path = tmp_path_factory.mktemp("tiny")
    build_tiny_model(records, path, SPEC)
    model, tokenizer = load_model(path)
    return model, tokenizer, records


def test_action_tokens_are_the_action_text(tiny):
    _, tokenizer, records = tiny
    ids, positions, turns = _encode_trajectory(tokenizer, records[0]["conversations"])
    assert len(positions) == len(ACTIONS) and turns == [3, 5, 7, 9, 11, 13, 15]
    for action, pos in zip(ACTIONS, positions, strict=True):
        assert pos == list(range(pos[0], pos[-1] + 1))  # contiguous
        assert tokenizer.decode([ids[p] for p in pos]).strip() == action


def test_action_entropies_on_a_tiny_model(tiny):
    model, tokenizer, records = tiny
    vocab = model.config.vocab_size
    batch = action_entropies_batch(model, tokenizer, records, max_length=1024, batch_size=2)
    assert [len(e) for e in batch] == [len(ACTIONS), 3]
    for entropies in batch:
        assert all(math.isfinite(e) and 0.0 < e <= math.log(vocab) + 1e-4 for e in entropies)
    # the definition, computed the plain way: full logits, entropy at each action token, mean per action
    import torch

    ids, positions, _ = _encode_trajectory(tokenizer, records[0]["conversations"])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), -1)
    token_entropy = -(logp.exp() * logp).sum(-1)
    expected = [float(token_entropy[[p - 1 for p in pos]].mean()) for pos in positions]
    assert batch[0] == pytest.approx(expected, abs=1e-4)
    # batching (right padding) does not change the numbers
    single = action_entropies(model, tokenizer, records[1], max_length=1024)
    assert single == pytest.approx(batch[1], abs=1e-4)
    # segments from the model's entropies close exactly after the actions above the threshold
    threshold = entropy_threshold([e for es in batch for e in es], 80)
    for entropies in batch:
        segments = uncertainty_segments(entropies, threshold)
        validate_segments(segments, len(entropies))
        ends = {end for _, end in segments[:-1]}
        assert ends == {i for i, e in enumerate(entropies[:-1]) if e > threshold}


def test_long_trajectories_score_late_actions_in_a_fitted_context(tiny):
    model, tokenizer, records = tiny
    full = action_entropies(model, tokenizer, records[0], max_length=1024)
    ids, positions, _ = _encode_trajectory(tokenizer, records[0]["conversations"])
    window = positions[2][-1] + 1  # the first three actions fit, the rest do not
    assert window < len(ids)
    cut = action_entropies(model, tokenizer, records[0], max_length=window)
    assert len(cut) == len(ACTIONS) and all(math.isfinite(e) and e > 0 for e in cut)
    assert cut[:3] == pytest.approx(full[:3], abs=1e-4)  # same context, same numbers


def test_registry_uncertainty_reads_entropies_from_params_or_record():
    record = _trajectory("t", ACTIONS[:4])
    assert segment_trajectory("uncertainty", record, threshold=1.0, entropies=[0, 2, 0, 0]) == [
        [0, 1],
        [2, 3],
    ]
    record["action_entropies"] = [2, 0, 0, 0]
    assert segment_trajectory("uncertainty", record, threshold=1.0) == [[0, 0], [1, 3]]
    with pytest.raises(ValueError, match="3 entropies for 4 actions"):
        segment_trajectory("uncertainty", record, threshold=1.0, entropies=[0, 0, 0])


# --------------------------------------------------------------------------------------------- semantic


@pytest.mark.parametrize(
    "reply, status, segments",
    [
        ("[[0, 2], [3, 5], [6, 6]]", "ok", [[0, 2], [3, 5], [6, 6]]),
        ("Here are the sub-goals:\n```json\n[[0, 1], [2, 6]]\n```\nHope this helps.", "ok", [[0, 1], [2, 6]]),
        ('{"groups": [[0, 3], [4, 6]]}', "ok", [[0, 3], [4, 6]]),
        ("[[0, 3], [2, 6]]", "repaired", [[0, 3], [4, 6]]),  # overlap: cut at the earlier end
        ("[[0, 1], [4, 6]]", "repaired", [[0, 1], [2, 6]]),  # gap joins the next group
        ("[[1, 2], [3, 5]]", "repaired", [[0, 2], [3, 6]]),  # first start forced to 0, last end to n-1
        ("[[3, 6], [0, 2]]", "repaired", [[0, 2], [3, 6]]),  # out of order
        ("[[0, 2], [3, 9]]", "repaired", [[0, 2], [3, 6]]),  # partly out of range: clipped
        ("[[1, 3], [4, 7]]", "repaired", [[0, 2], [3, 6]]),  # 1-based numbering
        ("[[8, 9], [10, 12]]", "fallback", [[0, 2], [3, 5], [6, 6]]),  # wholly out of range
        ("[]", "fallback", [[0, 2], [3, 5], [6, 6]]),
        ("I would group them by location.", "fallback", [[0, 2], [3, 5], [6, 6]]),
        ("[[0, 2], [3, 6]", "fallback", [[0, 2], [3, 5], [6, 6]]),  # truncated: no complete outer list...
        ('[[0, "2"], [3, 6]]', "fallback", [[0, 2], [3, 5], [6, 6]]),  # non-ints
        ("[[0, 2.5], [3, 6]]", "fallback", [[0, 2], [3, 5], [6, 6]]),
        ("[[0, 2, 4], [5, 6]]", "fallback", [[0, 2], [3, 5], [6, 6]]),  # not pairs
        ("[[2, 0], [3, 6]]", "fallback", [[0, 2], [3, 5], [6, 6]]),  # start > end
    ],
)
def test_parse_segments(reply, status, segments):
    got, got_status, reason = parse_segments(reply, 7, fallback_k=3)
    assert (got, got_status) == (segments, status)
    validate_segments(got, 7)
    assert (reason == "") == (status == "ok")


def test_truncated_reply_finds_no_outer_list():
    # the inner [0, 2] is a list but not of pairs: the reply falls back rather than guessing
    assert extract_json_list("[[0, 2], [3, 6]") == [0, 2]


def test_prompt_numbers_actions_with_observations():
    record = _trajectory("t", ACTIONS[:3], "You see a cup.")
    messages = build_messages(record)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]  # one worked example
    assert json.loads(messages[2]["content"]) == [[0, 1], [2, 3], [4, 6]]
    assert [m["role"] for m in build_messages(record, example=False)] == ["system", "user"]
    text = messages[-1]["content"]
    assert "Your task is to: put a mug on desk 1." in text
    assert "0. go to shelf 1 -> You see a cup. (0)" in text
    assert "2. go to sinkbasin 1 -> (episode ended)" in text  # the last observation is not kept
    assert "last group ends at 2" in text


class _ScriptedClient:
    """A stand-in for hpl.llm.ChatClient answering with a fixed reply (the real one is in test_llm.py)."""

    def __init__(self, reply):
        self.reply, self.messages = reply, []

    def chat(self, messages, temperature=0.0, max_tokens=256):
        assert temperature == 0.0
        self.messages.append(messages)
        return self.reply


def test_semantic_segments_status_and_fallback_warning(caplog):
    record = _trajectory("t7", ACTIONS)
    ok = semantic_segments(record, _ScriptedClient("[[0, 1], [2, 3], [4, 6]]"))
    assert (ok.segments, ok.status) == ([[0, 1], [2, 3], [4, 6]], "ok")
    with caplog.at_level(logging.WARNING, logger="hpl.segmenters.semantic"):
        bad = semantic_segments(record, _ScriptedClient("no idea"), fallback_k=2)
    assert bad.status == "fallback" and bad.segments == fixed_k(7, 2)
    assert "t7" in caplog.text and "Fixed-K(2)" in caplog.text
    assert segment_trajectory("semantic", record, client=_ScriptedClient("[[0, 6]]")) == [[0, 6]]


def test_semantic_needs_no_call_for_trivial_trajectories():
    client = _ScriptedClient("unused")
    assert semantic_segments(_trajectory("one", ACTIONS[:1]), client).segments == [[0, 0]]
    assert client.messages == []
