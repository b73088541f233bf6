"""Admissible-action decoding (`generation.actions: admissible`), a documented protocol variant.

The thought stays free. Once a reply has written "Action:", the next tokens are constrained to spell one of
the environment's admissible actions (ALFWorld's admissible commands, WebShop's page buttons), followed by
the end of the turn. An admissible entry ending in "[...]" (WebShop's `search[...]`) fixes only its prefix
(`search[`); what follows stays free. A `FreeArgument` entry says the same with its own close and, where the
benchmark has one, a lexicon the free text must follow (InterCode-SQL: every bare word of the query is an
SQL keyword or function, or a name of the task's database: `hpl.intercode.lexicon`).

The constraint masks the logits of every token that leaves the set of admissible actions, so greedy
decoding picks the most likely admissible continuation token by token, and sampling (`KeyedSampler`)
draws from the model's own distribution renormalised over admissible actions: exploration and Monte Carlo
rollouts stay proper samples of the policy restricted to valid actions.

Actions are tokenized as they follow "Action:" in a training reply (`action_token_ids`), so the path the
constraint allows is the one the model saw in training (tested on real expert data).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

ACTION_MARKER = "Action:"
FREE_SUFFIX = "[...]"  # an admissible entry ending so fixes only its prefix (WebShop: "search[...]")
FREE_CLOSE = "]"  # what ends a "[...]" free argument


class Lexicon(Protocol):
    """Rules for a free argument's text, as a state machine over its characters. `extend` returns None when
    the text breaks a rule; states are hashable, so the tokens allowed in a state are computed once."""

    def start(self) -> Hashable: ...

    def extend(self, state: Hashable, text: str) -> Hashable | None: ...

    def closed(self, state: Hashable) -> bool: ...


@dataclass(frozen=True, eq=False)
class FreeArgument:
    """An admissible action with a free argument: `prefix`, then text up to `close`; with a `lexicon`, the
    text must follow it, and the lexicon says when the close has been written."""

    prefix: str
    close: str
    lexicon: Lexicon | None = None
    excluded: str = ""  # characters the text may not contain (without a lexicon)


def as_entry(action: str | FreeArgument) -> str | FreeArgument:
    """An admissible entry as a string action or a FreeArgument ("search[...]" -> FreeArgument("search[", "]"))."""
    if isinstance(action, str) and action.endswith(FREE_SUFFIX):
        # a "[" inside would unbalance the brackets, which WebShop refuses: a measured 4% of free searches
        # ("search[... color: b black [SEP]")
        return FreeArgument(action[: -len(FREE_SUFFIX) + 1], FREE_CLOSE, excluded="[")
    return action


@dataclass
class TokenTrie:
    """Token-id sequences of the admissible actions of one state, as a prefix tree."""

    children: dict[int, TokenTrie] = field(default_factory=dict)
    end: bool = False  # an action ends here (the turn may end)
    free: FreeArgument | None = None  # a free prefix ends here: its argument follows

    def depth(self) -> int:
        """Tokens of the longest path (a free prefix counts its prefix only)."""
        return max((1 + child.depth() for child in self.children.values()), default=0)

    def has_free(self) -> bool:
        return self.free is not None or any(child.has_free() for child in self.children.values())

    def add(self, ids: Sequence[int], free: FreeArgument | None = None) -> None:
        node = self
        for token in ids:
            node = node.children.setdefault(token, TokenTrie())
        if free is not None:
            node.free = free
        else:
            node.end = True

    def walk(self, ids: Sequence[int]) -> tuple[TokenTrie | None, int]:
        """(node after `ids`, ids consumed): None when they leave the trie; a free node stops the walk."""
        node = self
        for used, token in enumerate(ids):
            if node.free is not None:
                return node, used
            node = node.children.get(token)
            if node is None:
                return None, used
        return node, len(ids)


def action_token_ids(tokenizer, action: str) -> tuple[int, ...]:
    """The ids of `action` as they follow "Action:" in a reply ("Action: go to shelf 1"). Cached: the same
    commands come back turn after turn, and encoding them was 7% of a constrained decode's time."""
    return _action_token_ids(tokenizer, action)


@functools.lru_cache(maxsize=1 << 16)
def _action_token_ids(tokenizer, action: str) -> tuple[int, ...]:
    head = tokenizer.encode(ACTION_MARKER, add_special_tokens=False)
    full = tokenizer.encode(f"{ACTION_MARKER} {action}", add_special_tokens=False)
    if full[: len(head)] == head:
        return tuple(full[len(head) :])
    return tuple(
        tokenizer.encode(f" {action}", add_special_tokens=False)
    )  # the marker merged with the action


def action_trie(tokenizer, actions: Iterable[str | FreeArgument]) -> TokenTrie:
    trie = TokenTrie()
    for action in map(as_entry, actions):
        if isinstance(action, FreeArgument):
            trie.add(action_token_ids(tokenizer, action.prefix), free=action)
        else:
            trie.add(action_token_ids(tokenizer, action))
    return trie


@functools.cache
def token_texts(tokenizer) -> tuple[str, ...]:
    """Each token id's text alone (a lexicon judges a token by it); "" for special tokens."""
    return tuple(tokenizer.decode([i], skip_special_tokens=True) for i in range(len(tokenizer)))


_WITH: dict[tuple[int, str], list[int]] = {}  # (tokenizer's texts, characters) -> token ids


def tokens_with(tokenizer, characters: str) -> list[int]:
    """The tokens whose text contains any of `characters` (cached per tokenizer and characters)."""
    if not characters:
        return []
    texts = token_texts(tokenizer)  # cached for the process: its id names the tokenizer
    key = (id(texts), characters)
    if key not in _WITH:
        _WITH[key] = [i for i, text in enumerate(texts) if any(c in text for c in characters)]
    return _WITH[key]


# lexicon -> {(tokenizer's texts, state): allowed token ids}; weak, so a lexicon's cache goes with it
_ALLOWED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lexicon_tokens(tokenizer, lexicon: Lexicon, state: Hashable) -> list[int]:
    """The tokens whose text keeps the argument within `lexicon` from `state` (cached: states recur)."""
    texts = token_texts(tokenizer)  # cached for the process: its id names the tokenizer
    cache = _ALLOWED.setdefault(lexicon, {})
    key = (id(texts), state)
    if key not in cache:
        cache[key] = [i for i, text in enumerate(texts) if text and lexicon.extend(state, text) is not None]
    return cache[key]


class AdmissibleActions:
    """A logits processor that shapes a reply as "<free thought line>\nAction: <admissible action>".

    `actions[row]` lists the admissible actions of that row's state (None: the row is free). The first line
    is free, but cannot end the turn; once it ends, the next tokens must be "Action:" (the reply format of
    every expert turn), then a path of the row's action trie, then the end of the turn: a stop token or a
    newline (`ActionLineStop` then ends the reply). A thought line that itself writes "Action:" goes
    straight to the action. A free argument (after `search[`) is any text up to "]", which must come.
    With `max_new_tokens`, the thought is ended early enough for the longest action to fit (for a state
    with a free argument: at half the budget), and a free argument is closed at the budget's end.
    """

    def __init__(
        self,
        tokenizer,
        actions: Sequence[Sequence[str | FreeArgument] | None],
        prompt_width: int,
        stop_ids: Sequence[int],
        max_new_tokens: int | None = None,
    ) -> None:
        self.tokenizer, self.width, self.budget = tokenizer, prompt_width, max_new_tokens
        self.tries = [None if row is None else action_trie(tokenizer, row) for row in actions]
        self.marker = tokenizer.encode(ACTION_MARKER, add_special_tokens=False)
        self.line_ends: list[int | None] = [None] * len(self.tries)  # where the thought line ended
        self.starts: list[int | None] = [None] * len(self.tries)  # where the action's tokens begin
        self.stop_ids = list(stop_ids)
        self.newline = tokenizer.encode("\n", add_special_tokens=False)[-1]
        self.turn_end = sorted(set(stop_ids) | {self.newline})
        self.thought_budget = [self._thought_budget(trie) for trie in self.tries]
        self.arguments: list[tuple[int, str, Hashable | None] | None] = [None] * len(
            self.tries
        )  # `_argument`
        self.close_ids: dict[str, list[int]] = {}  # a close's unwritten part -> its token ids

    def _thought_budget(self, trie: TokenTrie | None) -> int | None:
        """Tokens the thought may take: the rest must hold a newline, "Action:", the action, the turn end."""
        if trie is None or self.budget is None:
            return None
        budget = self.budget - (len(self.marker) + trie.depth() + 2)
        return min(budget, self.budget // 2) if trie.has_free() else budget

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.width :].tolist()
        for row, trie in enumerate(self.tries):
            rule = None if trie is None else self._rule(row, trie, generated[row])
            if rule is None:
                continue
            only, tokens = rule
            if only:
                keep = torch.full_like(scores[row], float("-inf"))
                keep[tokens] = 0.0
                scores[row] = scores[row] + keep
            else:
                scores[row, tokens] = float("-inf")
        return scores

    def _rule(self, row: int, trie: TokenTrie, generated: list[int]) -> tuple[bool, list[int]] | None:
        """(True, the only tokens allowed) or (False, tokens forbidden) for the row's next token; None: any."""
        n = len(generated)
        if self.starts[row] is None and n and self.line_ends[row] is None:
            # tokens read one by one (cached texts): the ASCII marker and "\n" read the same as in a full decode
            texts = token_texts(self.tokenizer)
            tail = "".join(texts[token] for token in generated[-len(self.marker) - 1 :])
            if tail.endswith(ACTION_MARKER):
                self.starts[row] = n
            elif "\n" in texts[generated[-1]]:
                self.line_ends[row] = n
        if self.starts[row] is None and self.line_ends[row] is not None:
            written = n - self.line_ends[row]
            if written < len(self.marker):
                return True, [self.marker[written]]
            self.starts[row] = n
        if self.starts[row] is None:  # still in the thought: it cannot end the turn
            budget = self.thought_budget[row]
            return (True, [self.newline]) if budget is not None and n >= budget else (False, self.stop_ids)
        path = generated[self.starts[row] :]
        node, used = trie.walk(path)
        if node is None:
            return None  # a finished row (its padding)
        if node.free is not None:
            return self._free_argument(row, node.free, path[used:], n)
        return True, list(node.children) + (self.turn_end if node.end or not node.children else [])

    def _free_argument(
        self, row: int, free: FreeArgument, argument: list[int], n: int
    ) -> tuple[bool, list[int]]:
        """Text up to the close (forced at the budget's end), within the lexicon if there is one; then only
        the turn's end."""
        text, state = self._argument(row, free, argument)
        lexicon = free.lexicon
        closed = free.close in text if lexicon is None else state is None or lexicon.closed(state)
        if closed:
            return True, self.turn_end
        close_ids = self._close_ids(_unwritten(free.close, text))
        if self.budget is not None and n >= self.budget - len(close_ids) - 1:
            return True, close_ids[:1]
        if lexicon is not None:
            # a lexicon state no token continues (none is known; a lexicon must not allow one) closes the
            # argument, as the budget would, instead of masking every token
            return True, lexicon_tokens(self.tokenizer, lexicon, state) or close_ids[:1]
        forbidden = self.turn_end + (close_ids[:1] if not text.strip() else [])  # no empty argument
        return False, forbidden + tokens_with(self.tokenizer, free.excluded)

    def _argument(self, row: int, free: FreeArgument, argument: list[int]) -> tuple[str, Hashable | None]:
        """The argument's text and lexicon state, kept per row and extended by the newest token only, so a
        long query costs one lexicon step per token, not a rerun from its start. Tokens are read as their
        own texts, as `lexicon_tokens` judged them when it allowed them."""
        texts = token_texts(self.tokenizer)
        known = self.arguments[row]
        if (
            known is None or known[0] != len(argument) - 1
        ):  # a new argument (or a row restarted): from its start
            lexicon = free.lexicon
            known = (0, "", None if lexicon is None else lexicon.start())
        used, text, state = known
        for token in argument[used:]:
            piece = texts[token]
            text += piece
            if free.lexicon is not None and state is not None:
                state = free.lexicon.extend(state, piece)
        self.arguments[row] = (len(argument), text, state)
        return text, state

    def _close_ids(self, close: str) -> list[int]:
        if close not in self.close_ids:
            self.close_ids[close] = self.tokenizer.encode(close, add_special_tokens=False)
        return self.close_ids[close]


def lexicon_admits(lexicon: Lexicon, text: str) -> bool:
    """Whether `text` is a whole argument within `lexicon`, its close written."""
    state = lexicon.extend(lexicon.start(), text)
    return state is not None and lexicon.closed(state)


def _unwritten(close: str, text: str) -> str:
    """What of `close` is still to write after `text` (which may end with its first characters)."""
    for written in range(len(close) - 1, 0, -1):
        if text.endswith(close[:written]):
            return close[written:]
    return close
