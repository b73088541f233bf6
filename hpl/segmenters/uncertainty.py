"""Uncertainty segmentation (paper section 3.3.2): cut where the reference policy is unsure.

The intuition (paper, after Guo et al. 2025): pi_ref's uncertainty rises at sub-task boundaries, so a group
is closed after every action whose entropy exceeds a threshold, the 80th percentile of all action entropies
over the training set.

**Action entropy** (the release does not define it; this is our definition): the mean, over the tokens of
the action text, of the entropy in nats of pi_ref's full next-token distribution at that token,

    H(a_j) = 1/|a_j| * sum_{t in a_j} H(p_ref(. | x_{<t})),   H(p) = -sum_v p(v) log p(v),

where x is the conversation in `hpl.chat`'s ChatML encoding (the exact token layout pi_ref was trained and
samples on) and the history x_{<t} is everything before the token: the task, all earlier turns, and the
agent turn's own thought and the action's earlier tokens. The action text is what follows the last
"Action:" of the agent turn up to the end of that line (as `hpl.react.parse_action` reads it); a token
counts when it overlaps that character span. A turn with no action is scored over its whole text (the
policy's uncertainty about what to write at all). Using the full distribution's entropy rather than the
sampled token's surprisal measures how undecided the policy is, not how unlikely the expert's choice was.

One forward pass per trajectory (trajectories batched, logits only at the needed positions). When a
trajectory is longer than `max_length` tokens, actions beyond the first window are scored in the context
pi_ref would act from (`hpl.policy.fit_context`: opening turns kept, oldest middle turns dropped), one
extra sequence per such action.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpl.chat import IM_END, IM_START, ROLE
from hpl.policy import fit_context
from hpl.segmenters.base import segments_from_cuts

_ACTION = re.compile(r"Action:[ \t]*(.*)")  # as hpl.react.parse_action: the last match counts
FIRST_ACTION_TURN = 3  # instruction, "OK", first observation come first


@dataclass
class _Sequence:
    """Token ids to run, and for each action it scores the positions of its tokens."""

    ids: list[int]
    actions: dict[int, list[int]]  # action index -> token positions in `ids`


def action_char_span(reply: str) -> tuple[int, int]:
    """[start, end) characters of the action in an agent turn; the whole turn when it has no action."""
    matches = list(_ACTION.finditer(reply))
    if matches:
        start = matches[-1].start(1)
        end = start + len(matches[-1].group(1).rstrip())
        if end > start:
            return start, end
    return 0, len(reply)


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _reply_tokens(tokenizer, reply: str) -> tuple[list[int], list[int]]:
    """Ids of an agent turn's body (text + <|im_end|>, as hpl.chat encodes it) and its action's token indices."""
    body = reply + IM_END
    encoded = tokenizer(body, add_special_tokens=False, return_offsets_mapping=True)
    start, end = action_char_span(reply)
    positions = [
        i for i, (a, b) in enumerate(encoded["offset_mapping"]) if a < end and b > start and a < len(reply)
    ]
    return encoded["input_ids"], positions


def _encode_trajectory(tokenizer, conversations: list[dict]) -> tuple[list[int], list[list[int]], list[int]]:
    """Full ChatML ids, each action's token positions, and each action's conversation turn index."""
    ids: list[int] = []
    positions: list[list[int]] = []
    turn_index: list[int] = []
    for index, turn in enumerate(conversations):
        ids += _ids(tokenizer, f"{IM_START}{ROLE[turn['from']]}\n")
        if turn["from"] == "gpt" and index >= FIRST_ACTION_TURN:
            body, local = _reply_tokens(tokenizer, turn["value"])
            positions.append([len(ids) + p for p in local])
            turn_index.append(index)
        else:
            body = _ids(tokenizer, turn["value"] + IM_END)
        ids += body + _ids(tokenizer, "\n")
    return ids, positions, turn_index


def _sequences(tokenizer, conversations: list[dict], max_length: int) -> tuple[list[_Sequence], int]:
    """The sequences to run for one trajectory (usually one) and its number of actions."""
    ids, positions, turn_index = _encode_trajectory(tokenizer, conversations)
    first = _Sequence(ids[:max_length], {})
    extra: list[_Sequence] = []
    for action, pos in enumerate(positions):
        if pos and pos[-1] < max_length:
            first.actions[action] = pos
            continue
        # beyond the window: score it in the context pi_ref would act from
        body, local = _reply_tokens(tokenizer, conversations[turn_index[action]]["value"])
        history = conversations[: turn_index[action]]
        prompt = fit_context(tokenizer, history, max(1, max_length - len(body)))
        seq = (prompt + body)[-max_length:]
        shift = len(seq) - len(body)
        extra.append(_Sequence(seq, {action: [shift + p for p in local if shift + p >= 1]}))
    return [first, *extra], len(positions)


def _run(model, sequences: Sequence[_Sequence], pad_id: int, batch_size: int) -> dict[tuple[int, int], float]:
    """Mean entropy per (sequence index, action index), batched with right padding (no attention mask
    needed: hpl.trainer.right_padded)."""
    import torch

    device = next(model.parameters()).device
    result: dict[tuple[int, int], float] = {}
    for start in range(0, len(sequences), batch_size):
        batch = sequences[start : start + batch_size]
        width = max(len(s.ids) for s in batch)
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        # the positions whose logits predict an action token
        keep = torch.zeros((len(batch), width), dtype=torch.bool)
        for row, seq in enumerate(batch):
            input_ids[row, : len(seq.ids)] = torch.tensor(seq.ids)
            for pos in seq.actions.values():
                keep[row, [p - 1 for p in pos if p >= 1]] = True
        if not keep.any():
            continue
        with torch.no_grad():
            logits = model(
                input_ids=input_ids.to(device),
                logits_to_keep=keep.to(device),
            ).logits
        logits = logits.reshape(-1, logits.shape[-1]).float()  # (number of kept positions, vocab), row-major
        logp = torch.log_softmax(logits, dim=-1)
        entropy = (-(logp.exp() * logp).sum(-1)).clamp_min(0.0).cpu()  # clamp: rounding can give -1e-7
        rows, cols = keep.nonzero(as_tuple=True)
        where = {(int(r), int(c)): i for i, (r, c) in enumerate(zip(rows, cols, strict=True))}
        for row, seq in enumerate(batch):
            for action, pos in seq.actions.items():
                values = [float(entropy[where[(row, p - 1)]]) for p in pos if p >= 1]
                if values:
                    result[(start + row, action)] = sum(values) / len(values)
    return result


def action_entropies_batch(
    model, tokenizer, trajectories: Sequence[dict], max_length: int = 2048, batch_size: int = 4
) -> list[list[float]]:
    """Per trajectory, one entropy (nats) per action, as defined in the module docstring."""
    model.eval()
    plans: list[tuple[int, int, int]] = []  # (first sequence index, number of sequences, number of actions)
    sequences: list[_Sequence] = []
    for trajectory in trajectories:
        seqs, n = _sequences(tokenizer, trajectory["conversations"], max_length)
        plans.append((len(sequences), len(seqs), n))
        sequences += seqs
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores = _run(model, sequences, pad, batch_size)
    out: list[list[float]] = []
    for first, count, n in plans:
        found = {a: v for (s, a), v in scores.items() if first <= s < first + count}
        out.append([found.get(a, 0.0) for a in range(n)])  # 0.0 only for an action with no tokens at all
    return out


def action_entropies(model, tokenizer, trajectory: dict, max_length: int = 2048) -> list[float]:
    """One entropy (nats) per action of `trajectory`: mean next-token entropy of pi_ref over the action's tokens."""
    return action_entropies_batch(model, tokenizer, [trajectory], max_length)[0]


def entropy_threshold(all_entropies: Sequence[float], percentile: float = 80) -> float:
    """The `percentile`-th percentile (linear interpolation) of all action entropies of the training set.

    With 80, the actions strictly above it are the top ~20% most uncertain: where groups close.
    """
    values = [float(v) for v in all_entropies if v is not None and math.isfinite(v)]
    if not values:
        raise ValueError("no action entropies to take a percentile of")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile}")
    return float(np.percentile(values, percentile))


def uncertainty_segments(entropies: Sequence[float], threshold: float) -> list[list[int]]:
    """Close a group after every action whose entropy is strictly greater than `threshold`.

    >>> uncertainty_segments([0.1, 2.0, 0.3, 0.2, 3.0, 0.1], 1.0)
    [[0, 1], [2, 4], [5, 5]]
    """
    cuts = [i for i, value in enumerate(entropies) if value > threshold]
    return segments_from_cuts(cuts, len(entropies))
