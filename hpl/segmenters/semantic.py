"""Semantic segmentation (paper section 3.3.2): an LLM splits a trajectory into sub-goals.

The LLM (the paper: GPT-4o at temperature 0; here any OpenAI-compatible endpoint through `hpl.llm`) gets
the task and the numbered actions, each with the observation it produced, and answers with a JSON list of
inclusive [start, end] pairs. One worked example (an ALFWorld-style task and its answer) precedes the
question by default (`example=True`). The paper's prompt is not published. Replies are judged in three grades:

- "ok": the first JSON list in the reply is a list of int pairs that already covers 0..n-1 contiguously.
- "repaired": int pairs with start <= end that need fixing, and are fixed like this: numbers that look
  1-based (the smallest start is 1 and the largest end is n) are shifted down; pairs are sorted; ends are
  clipped into 0..n-1 and pairs wholly outside are dropped; then the groups' *ends* are kept as cut points
  except the last group's, which is extended to n-1 (as HPL's release forces). So the first group starts
  at 0, overlaps are cut at the earlier group's end, and a gap joins the group after it.
- "fallback": nothing usable (no JSON list, an empty list, a non-int or malformed pair, start > end, all
  pairs out of range): Fixed-K segments (K = `fallback_k`) and a logged warning.

Trajectories of 0 or 1 actions have exactly one segmentation and cost no LLM call. An endpoint that fails
after its retries raises `hpl.llm.LLMError`: a dead endpoint should stop the job, not silently turn a whole
dataset into Fixed-K.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from hpl.react import parse_action
from hpl.segmenters.base import SegmentationError, segments_from_cuts, validate_segments
from hpl.segmenters.base import n_actions as count_actions
from hpl.segmenters.fixed import fixed_k

log = logging.getLogger(__name__)

OK, REPAIRED, FALLBACK = "ok", "repaired", "fallback"

SYSTEM_PROMPT = "You split the trajectory of an agent into its sub-goals. You answer with JSON only."

USER_TEMPLATE = """Task: {task}

Actions of the agent (numbered from 0), each with the observation it produced:
{actions}

Group the actions into consecutive sub-goals, such as "find an object", "take it", "clean it", \
"put it somewhere". Every action belongs to exactly one group, groups follow each other without \
gaps or overlaps, the first group starts at 0 and the last group ends at {last}.
Answer with only a JSON list of [start, end] pairs (inclusive action numbers){hint}."""


# One worked example, sent as an earlier user/assistant exchange: it pins down the answer format, which
# strong models follow anyway and which small local models (SmolLM2-135M) only follow when shown.
EXAMPLE_TASK = "You are in the middle of a room. Your task is to: put a clean apple in fridge."
EXAMPLE_STEPS = [
    ("go to countertop 1", "On the countertop 1, you see an apple 1 and a knife 1."),
    ("take apple 1 from countertop 1", "You pick up the apple 1 from the countertop 1."),
    ("go to sinkbasin 1", "On the sinkbasin 1, you see nothing."),
    ("clean apple 1 with sinkbasin 1", "You clean the apple 1 using the sinkbasin 1."),
    ("go to fridge 1", "The fridge 1 is closed."),
    ("open fridge 1", "You open the fridge 1. The fridge 1 is open. In it, you see nothing."),
    ("put apple 1 in/on fridge 1", "You put the apple 1 in/on the fridge 1."),
]
EXAMPLE_ANSWER = "[[0, 1], [2, 3], [4, 6]]"  # get the apple; clean it; put it in the fridge


@dataclass
class SemanticResult:
    segments: list[list[int]]
    status: str  # "ok" | "repaired" | "fallback"
    reason: str = ""  # what was repaired, or why it fell back
    reply: str | None = None  # the LLM's raw reply (None when no call was needed)


# ------------------------------------------------------------------------------------------- the prompt


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _observation(turn: dict | None) -> str:
    if turn is None:
        return "(episode ended)"
    value = turn["value"]
    return value[len("Observation:") :].strip() if value.startswith("Observation:") else value


def _example_record() -> dict:
    turns = [
        {"from": "human", "value": ""},
        {"from": "gpt", "value": "OK"},
        {"from": "human", "value": EXAMPLE_TASK},
    ]
    for action, observation in EXAMPLE_STEPS:
        turns += [{"from": "gpt", "value": f"Action: {action}"}, {"from": "human", "value": observation}]
    return {"id": "example", "conversations": turns}


def _question(trajectory: dict, task_chars: int, observation_chars: int, hint: str) -> str:
    """The user prompt: the task, the numbered actions with their observations, the answer format."""
    conversations = trajectory["conversations"]
    task = _one_line(conversations[2]["value"], task_chars)
    lines = []
    for j in range(count_actions(trajectory)):
        reply = conversations[3 + 2 * j]["value"]
        action = parse_action(reply) or "(no valid action) " + reply
        nxt = conversations[4 + 2 * j] if 4 + 2 * j < len(conversations) else None
        lines.append(f"{j}. {_one_line(action, 200)} -> {_one_line(_observation(nxt), observation_chars)}")
    return USER_TEMPLATE.format(task=task, actions="\n".join(lines), last=len(lines) - 1, hint=hint)


def build_messages(
    trajectory: dict, task_chars: int = 1000, observation_chars: int = 200, example: bool = True
) -> list[dict]:
    """The chat messages asking for a segmentation of `trajectory` (task = its first observation).

    With `example`, a worked example (a question and its answer) comes before the real question; without
    it, the question names a sample answer instead.
    """
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    if example:
        messages.append(
            {"role": "user", "content": _question(_example_record(), task_chars, observation_chars, "")}
        )
        messages.append({"role": "assistant", "content": EXAMPLE_ANSWER})
    hint = "" if example else ", such as [[0, 2], [3, 4]]"
    messages.append({"role": "user", "content": _question(trajectory, task_chars, observation_chars, hint)})
    return messages


# --------------------------------------------------------------------------------------------- parsing


def extract_json_list(reply: str) -> list | None:
    """The first JSON list in `reply` (prose and code fences around it are ignored), or None."""
    decoder = json.JSONDecoder()
    index = reply.find("[")
    while index != -1:
        try:
            value, _ = decoder.raw_decode(reply, index)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list):
            return value
        index = reply.find("[", index + 1)
    return None


def _is_int(value: Any) -> bool:
    return type(value) is int  # bool is an int subclass; 2.0 and "2" are not accepted either


def _fallback(n: int, k: int, reason: str) -> tuple[list[list[int]], str, str]:
    return fixed_k(n, k), FALLBACK, reason


def parse_segments(reply: str, n: int, fallback_k: int = 3) -> tuple[list[list[int]], str, str]:
    """(segments, status, reason) for an LLM reply about a trajectory of `n` actions (see module docstring)."""
    if n <= 0:
        return [], OK, "no actions"
    pairs = extract_json_list(reply)
    if pairs is None:
        return _fallback(n, fallback_k, "no JSON list in the reply")
    if not pairs:
        return _fallback(n, fallback_k, "empty list")
    if not all(isinstance(p, list) and len(p) == 2 and all(map(_is_int, p)) for p in pairs):
        return _fallback(n, fallback_k, f"not a list of [int, int] pairs: {json.dumps(pairs)[:120]}")
    if any(start > end for start, end in pairs):
        return _fallback(n, fallback_k, "a pair has start > end")
    try:
        validate_segments(pairs, n)
        return [list(p) for p in pairs], OK, ""
    except SegmentationError as err:
        problem = str(err)
    return _repair(pairs, n, fallback_k, problem)


def _repair(
    pairs: list[list[int]], n: int, fallback_k: int, problem: str
) -> tuple[list[list[int]], str, str]:
    notes = [problem]
    starts, ends = [p[0] for p in pairs], [p[1] for p in pairs]
    if min(starts) == 1 and max(ends) == n:
        pairs = [[s - 1, e - 1] for s, e in pairs]
        notes.append("shifted from 1-based")
    in_range = [[max(s, 0), min(e, n - 1)] for s, e in sorted(pairs) if s <= n - 1 and e >= 0]
    if not in_range:
        return _fallback(n, fallback_k, f"all pairs outside 0..{n - 1}")
    # each group's end is a cut, except the last group's: it is extended to n-1, as HPL's release does
    segments = segments_from_cuts((e for _, e in in_range[:-1]), n)
    return segments, REPAIRED, "; ".join(notes)


# -------------------------------------------------------------------------------------------- segmenter


def semantic_segments(
    trajectory: dict,
    client,
    fallback_k: int = 3,
    max_tokens: int = 256,
    observation_chars: int = 200,
    example: bool = True,
) -> SemanticResult:
    """Ask `client` (an `hpl.llm.ChatClient`) to segment `trajectory`; validate, repair or fall back."""
    n = count_actions(trajectory)
    if n <= 1:
        return SemanticResult([[0, 0]] if n == 1 else [], OK, "trivial: fewer than two actions")
    messages = build_messages(trajectory, observation_chars=observation_chars, example=example)
    reply = client.chat(messages, temperature=0.0, max_tokens=max_tokens)
    segments, status, reason = parse_segments(reply, n, fallback_k)
    rid = trajectory.get("id", "?")
    if status == FALLBACK:
        log.warning("semantic segmentation of %s fell back to Fixed-K(%d): %s", rid, fallback_k, reason)
    elif status == REPAIRED:
        log.info("semantic segmentation of %s repaired: %s", rid, reason)
    return SemanticResult(segments, status, reason, reply)
