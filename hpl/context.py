"""One context rule for training and generation: what the model sees before each agent reply.

Before reply i of a conversation the model sees `prompt_ids(tokenizer, turns[:i], window)`: the opening
turns (instruction, "OK", the first observation with the task), then as many of the latest (reply,
observation) steps as fit in `window` tokens, oldest dropped first (an overflow drops down to REFILL of
the room, so that several replies share a window; `_first_kept`). The opening and the latest step are
never dropped; if they alone overflow, the latest observation's tail is cut (its head stays), and if even
its first token does not fit, the latest reply goes too. If the opening alone overflows, nothing sensible
is left and `ContextError` names the setting.

Training uses the very same function (`training_sequences`): a conversation becomes one sequence when every
reply's prompt is its exact prefix (whole conversations, as ETO and IPR train), and otherwise one sequence
per run of replies that share a window, each reply's loss taken in a context token-for-token equal to its
generation prompt. So SFT examples, DPO continuations and generation prompts cannot disagree.

The reply budget (`generation.max_new_tokens`) and the window are derived from the expert data by the
SFT job (`derive_rule`) and recorded with the model (`context.json`, read by every generation job), along
with a data-fit report: replies cut (always 0), trajectories windowed in training, prompts windowed.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hpl.chat import IGNORE_INDEX, IM_END, IM_START, ROLE, Encoded
from hpl.trajectory import OPENING_TURNS

# an overflowing prompt drops old steps until it fills this share of the window after the opening: the
# model then sees between REFILL and all of the room, and replies until the next overflow share a sequence
REFILL = 0.5
RULE_FILE = "context.json"


def context_settings(generation: dict) -> dict:
    """The keys of the config's `generation` block the rule depends on: the params of the jobs that derive
    it (tiny model, SFT), so that changing `parallel_episodes` or `shards` retrains nothing."""
    return {key: generation.get(key) for key in ("max_new_tokens", "reply_margin", "max_prompt_tokens")}


class ContextError(ValueError):
    """The data cannot be given to the model under the configured budgets; the message names the key."""


@dataclass(frozen=True)
class ContextRule:
    window: int  # most tokens of a prompt (the conversation so far + the reply's opening marker)
    reply: int  # most tokens of a reply (`max_new_tokens`), its closing <|im_end|> included

    @property
    def sequence(self) -> int:
        """The longest sequence training or generation ever builds: a full window plus a full reply."""
        return self.window + self.reply


def _ids(tokenizer, text: str) -> list[int]:
    return list(_cached_ids(tokenizer, text))


@functools.lru_cache(maxsize=1 << 16)
def _cached_ids(tokenizer, text: str) -> tuple[int, ...]:
    """A turn's tokens, memoized: every turn of a live conversation is tokenized again at each of its
    later turns (a fifth of an evaluation's generation time before; docs/performance.md)."""
    return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])


@dataclass
class _Turn:
    head: list[int]  # "<|im_start|>role\n"
    body: list[int]  # text + <|im_end|>
    tail: list[int]  # "\n"
    agent: bool

    def __len__(self) -> int:
        return len(self.head) + len(self.body) + len(self.tail)


def _encode(tokenizer, turns: Sequence[dict]) -> list[_Turn]:
    """Each turn tokenized on its own, exactly as `hpl.chat.encode_turns` concatenates them."""
    return [
        _Turn(
            _ids(tokenizer, f"{IM_START}{ROLE[t['from']]}\n"),
            _ids(tokenizer, t["value"] + IM_END),
            _ids(tokenizer, "\n"),
            t["from"] == "gpt",
        )
        for t in turns
    ]


@dataclass
class _Layout:
    """Which turns a sequence keeps: the opening, then turns[start:end]; turn `cut_at` (the latest
    observation of a prompt that overflowed) keeps only the first `cut` tokens of its text."""

    start: int
    end: int
    length: int = 0  # prompt tokens, reply marker included
    cut: int | None = None
    cut_at: int = -1

    @property
    def shortened(self) -> bool:
        return self.start > OPENING_TURNS or self.cut is not None

    def kept(self) -> list[int]:
        return [*range(min(OPENING_TURNS, self.end)), *range(max(self.start, OPENING_TURNS), self.end)]

    def body(self, index: int, turn: _Turn) -> list[int]:
        if self.cut is not None and index == self.cut_at:
            return turn.body[: self.cut] + turn.body[-1:]
        return turn.body


def _layout(encoded: Sequence[_Turn], end: int, window: int, marker: int, what: str) -> _Layout:
    """The layout of the prompt before turn `end` (`encoded[:end]` ends with a human turn)."""
    opening = min(OPENING_TURNS, end)
    fixed = sum(len(t) for t in encoded[:opening]) + marker
    if fixed > window:
        raise ContextError(
            f"{what}: the instruction and the task alone take {fixed} tokens, more than the prompt window of "
            f"{window} (generation.max_prompt_tokens, or the model's context `max_positions` minus "
            "generation.max_new_tokens); raise it"
        )
    start = _first_kept(encoded, opening, end, window - fixed)
    length = fixed + sum(len(t) for t in encoded[start:end])
    if length <= window:
        return _Layout(start, end, length)
    layout = _cut_last(encoded, start, end, length, window)
    if layout is None and start + 1 < end:  # still too long: give up the latest reply before the task
        layout = _cut_last(encoded, start + 1, end, length - len(encoded[start]), window)
    if layout is None:
        raise ContextError(
            f"{what}: the task and the latest observation need more than the prompt window of {window} tokens "
            "(generation.max_prompt_tokens / the model's `max_positions`); raise it"
        )
    return layout


def _first_kept(encoded: Sequence[_Turn], opening: int, end: int, room: int) -> int:
    """Where the kept steps of the prompt before turn `end` start: `room` tokens after the opening.

    Replayed over every earlier prompt of the conversation: when a prompt overflows, the oldest steps
    are dropped until it fills at most REFILL of the room (always keeping the latest step), and later
    prompts keep that start until they overflow again. So consecutive replies share a window, and a
    long conversation trains in about 1 / (1 - REFILL) times its tokens rather than one window per reply.
    """
    start, length = opening, 0
    for point in range(opening, end + 1, 2):  # each prompt up to this one ends before turn `point`
        if point > opening:  # the previous prompt's reply and the observation after it
            length += len(encoded[point - 2]) + len(encoded[point - 1])
        if length > room:
            while length > REFILL * room and start + 2 < point:
                length -= len(encoded[start]) + len(encoded[start + 1])
                start += 2
    return start


def _cut_last(encoded: Sequence[_Turn], start: int, end: int, length: int, window: int) -> _Layout | None:
    """Cut the latest observation's text to fit (its head and <|im_end|> stay); None if nothing would."""
    if length <= window:
        return _Layout(start, end, length)
    keep = len(encoded[end - 1].body) - 1 - (length - window)
    return _Layout(start, end, window, keep, end - 1) if keep >= 1 else None


def _assemble(encoded: Sequence[_Turn], layout: _Layout, trained: set[int]) -> tuple[Encoded, dict[int, int]]:
    """Ids and labels of the layout's turns, loss on the agent turns in `trained`; and where each kept
    turn's body starts."""
    ids: list[int] = []
    labels: list[int] = []
    starts: dict[int, int] = {}
    for index in layout.kept():
        turn = encoded[index]
        body = layout.body(index, turn)
        starts[index] = len(ids) + len(turn.head)
        ids += turn.head + body + turn.tail
        labels += [IGNORE_INDEX] * len(turn.head) + (body if index in trained else [IGNORE_INDEX] * len(body))
        labels += [IGNORE_INDEX] * len(turn.tail)
    return Encoded(ids, labels), starts


def _marker(tokenizer) -> list[int]:
    return _ids(tokenizer, f"{IM_START}assistant\n")


@dataclass
class Prompt:
    ids: list[int]
    shortened: bool  # steps dropped or the latest observation cut


def prompt_ids(tokenizer, turns: Sequence[dict], window: int, what: str = "prompt") -> Prompt:
    """The generation prompt for `turns` (ending with a human turn) under the shared rule."""
    encoded = _encode(tokenizer, turns)
    marker = _marker(tokenizer)
    layout = _layout(encoded, len(encoded), window, len(marker), what)
    return Prompt(_assemble(encoded, layout, set())[0].input_ids + marker, layout.shortened)


@dataclass
class Sequences:
    """A conversation's training sequences, and where each trained reply starts in its sequence."""

    sequences: list[Encoded]
    replies: list[tuple[int, int, int]]  # (turn index, sequence index, position of the reply's first token)

    @property
    def shortened(self) -> bool:
        return len(self.sequences) > 1


def training_sequences(
    tokenizer, conversations: Sequence[dict], window: int, first_trained: int = 1, what: str = "conversation"
) -> Sequences:
    """Sequences that train the agent turns of `conversations` from index `first_trained` on (SFT: 1, the
    opening "OK" included, as ETO; a DPO continuation: the length of its prompt), each in exactly the
    context `prompt_ids` gives it at generation time. Replies sharing a window share one sequence."""
    encoded = _encode(tokenizer, conversations)
    marker = len(_marker(tokenizer))
    groups: list[tuple[_Layout, list[int]]] = []
    for index in range(first_trained, len(encoded)):
        if not encoded[index].agent:
            continue
        # the opening "OK" is trained in the context of the instruction alone, a prefix of every layout
        layout = (
            _Layout(OPENING_TURNS, index)
            if index < OPENING_TURNS
            else _layout(encoded, index, window, marker, f"{what}, turn {index}")
        )
        last = groups[-1][0] if groups else None
        # a reply joins the previous sequence when its prompt is a prefix-extension of it: same start,
        # no observation cut in either (a cut observation appears whole in later prompts)
        if last is not None and last.cut is None and layout.cut is None and last.start == layout.start:
            groups[-1] = (layout, [*groups[-1][1], index])
        else:
            groups.append((layout, [index]))
    sequences, replies = [], []
    for number, (layout, trained) in enumerate(groups):
        full = _Layout(layout.start, trained[-1] + 1, cut=layout.cut, cut_at=layout.cut_at)
        seq, starts = _assemble(encoded, full, set(trained))
        sequences.append(seq)
        replies += [(index, number, starts[index]) for index in trained]
    return Sequences(sequences, replies)


def _agent_indices(encoded: Sequence[_Turn]) -> list[int]:
    """The ReAct replies (the opening "OK" excluded: it is never generated)."""
    return [i for i, turn in enumerate(encoded) if turn.agent and i >= OPENING_TURNS]


def longest_reply(tokenizer, records: Sequence[dict]) -> tuple[int, str]:
    """Tokens of the longest reply in `records` (text + <|im_end|>, what generation must emit), and where."""
    best, where = 0, "no reply"
    for record in records:
        encoded = _encode(tokenizer, record["conversations"])
        for index in _agent_indices(encoded):
            if len(encoded[index].body) > best:
                best, where = len(encoded[index].body), f"{record.get('id', '?')!r}, turn {index}"
    return best, where


def longest_prompt(tokenizer, records: Sequence[dict]) -> int:
    """Tokens of the longest whole-history prompt before any reply: the window no expert reply needs cut."""
    marker = len(_marker(tokenizer))
    best = 0
    for record in records:
        encoded = _encode(tokenizer, record["conversations"])
        indices = _agent_indices(encoded)
        if indices:
            best = max(best, sum(len(t) for t in encoded[: indices[-1]]) + marker)
    return best


def reply_budget(tokenizer, records: Sequence[dict], generation: dict) -> int:
    """`generation.max_new_tokens`, or (null) the longest expert reply + `generation.reply_margin`.
    A set value shorter than the longest reply would cut a valid reply before its action: refused."""
    longest, where = longest_reply(tokenizer, records)
    budget = generation.get("max_new_tokens")
    if budget is None:
        return longest + generation.get("reply_margin", 0)
    if budget < longest:
        raise ContextError(
            f"generation.max_new_tokens is {budget}, but the longest expert reply ({where}) takes {longest} "
            "tokens: replies that long would be cut before their action. Set it to at least that, or null "
            "to derive it from the expert data (longest reply + generation.reply_margin)"
        )
    return budget


def required_positions(tokenizer, records: Sequence[dict], generation: dict, multiple: int = 64) -> int:
    """The context (`max_positions`) whole expert conversations need: the longest prompt plus the reply
    budget, rounded up to `multiple`."""
    need = longest_prompt(tokenizer, records) + reply_budget(tokenizer, records, generation)
    return -(-need // multiple) * multiple


def derive_rule(
    tokenizer, records: Sequence[dict], generation: dict, context: int, max_length: int | None = None
) -> ContextRule:
    """The rule a model trained on `records` is trained and run with: reply budget from the data (or the
    config, checked against it); window = the model's context (`context` positions) minus the reply
    budget, capped by `generation.max_prompt_tokens` and by `max_length` (training sequence length)
    minus the reply budget where those are set."""
    reply = reply_budget(tokenizer, records, generation)
    limits = {
        f"the model's context of {context} positions (max_positions) minus the reply budget": context - reply
    }
    if generation.get("max_prompt_tokens") is not None:
        limits["generation.max_prompt_tokens"] = generation["max_prompt_tokens"]
    if max_length is not None:
        limits[f"training.sft.max_length {max_length} minus the reply budget"] = max_length - reply
    binding = min(limits, key=limits.get)
    window = limits[binding]
    opening = longest_opening(tokenizer, records)
    if opening > window:
        raise ContextError(
            f"the prompt window is {window} tokens ({binding}; reply budget {reply}), but the instruction and "
            f"task of the longest expert opening take {opening}: no prompt could hold its task. Raise {binding}"
        )
    return ContextRule(window, reply)


def longest_opening(tokenizer, records: Sequence[dict]) -> int:
    """Tokens of the longest prompt that holds only the opening turns (the least any prompt keeps)."""
    marker = len(_marker(tokenizer))
    return max(
        (sum(map(len, _encode(tokenizer, r["conversations"][:OPENING_TURNS]))) + marker for r in records),
        default=0,
    )


def data_fit(tokenizer, records: Sequence[dict], rule: ContextRule) -> dict:
    """How `records` fit `rule`: replies cut (must be 0), trajectories split into windows in training,
    prompts shortened at generation, and the tokens an SFT example costs."""
    marker = len(_marker(tokenizer))
    replies = cut = prompts = shortened = windowed = 0
    lengths: list[int] = []
    examples: list[int] = []
    for record in records:
        encoded = _encode(tokenizer, record["conversations"])
        lengths.append(sum(len(t) for t in encoded))
        for index in _agent_indices(encoded):
            replies += 1
            cut += len(encoded[index].body) > rule.reply
            prompts += 1
            shortened += _layout(encoded, index, rule.window, marker, str(record.get("id"))).shortened
        seqs = training_sequences(tokenizer, record["conversations"], rule.window, what=str(record.get("id")))
        windowed += seqs.shortened
        examples += [len(seq) for seq in seqs.sequences]
    return {
        "max_new_tokens": rule.reply,
        "max_prompt_tokens": rule.window,
        "replies": replies,
        "replies_cut": cut,
        "longest_reply": longest_reply(tokenizer, records)[0],
        "trajectories": len(records),
        "trajectories_shortened": windowed,
        "longest_trajectory": max(lengths, default=0),
        "prompts": prompts,
        "prompts_shortened": shortened,
        "sft_examples": len(examples),
        "tokens_per_example": round(sum(examples) / len(examples), 1) if examples else 0,
        "longest_example": max(examples, default=0),
    }


def write_rule(folder: str | Path, rule: ContextRule, fit: dict | None = None) -> None:
    """Record the rule with a model (`context.json`), read back by every job that generates with it."""
    data = {"max_new_tokens": rule.reply, "max_prompt_tokens": rule.window, "data_fit": fit}
    (Path(folder) / RULE_FILE).write_text(json.dumps(data, indent=2) + "\n")


def read_rule(folder: str | Path) -> ContextRule | None:
    """The rule recorded with a model folder (None: a model this pipeline did not train, e.g. a hub id)."""
    path = Path(folder) / RULE_FILE
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return ContextRule(data["max_prompt_tokens"], data["max_new_tokens"])


def generation_rule(
    model_path: str | Path, max_new_tokens: int | None, max_prompt_tokens: int | None, positions: int | None
) -> ContextRule:
    """The rule a policy generates under: the one recorded with a model trained here (context.json), else
    the configured budgets within the model's `positions` (a hub model, an untrained base)."""
    rule = read_rule(model_path)
    if rule is not None:
        return rule
    if max_new_tokens is None:
        raise ContextError(
            f"{model_path} records no reply budget (context.json, written by SFT here): set "
            "generation.max_new_tokens for it"
        )
    positions = positions or max_prompt_tokens
    return ContextRule(
        window=min(max_prompt_tokens or positions, positions - max_new_tokens), reply=max_new_tokens
    )


def copy_rule(source: str | Path, folder: str | Path) -> None:
    """Give a model trained from `source` (DPO from pi_ref) the same rule, data fit included."""
    import shutil

    shutil.copyfile(Path(source) / RULE_FILE, Path(folder) / RULE_FILE)
