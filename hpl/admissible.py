"""Admissible-action decoding (`generation.actions: admissible`), a documented protocol variant.

The thought stays free. Once a reply has written "Action:", the next tokens are constrained to spell one of
the environment's admissible actions (ALFWorld's admissible commands, WebShop's page buttons), followed by
the end of the turn. An admissible entry ending in "[...]" (WebShop's `search[...]`) fixes only its prefix
(`search[`); what follows stays free.

The constraint masks the logits of every token that leaves the set of admissible actions, so greedy
decoding picks the most likely admissible continuation token by token, and sampling (`KeyedSampler`)
draws from the model's own distribution renormalised over admissible actions: exploration and Monte Carlo
rollouts stay proper samples of the policy restricted to valid actions.

Actions are tokenized as they follow "Action:" in a training reply (`action_token_ids`), so the path the
constraint allows is the one the model saw in training (tested on real expert data).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

ACTION_MARKER = "Action:"
FREE_SUFFIX = "[...]"  # an admissible entry ending so fixes only its prefix (WebShop: "search[...]")
FREE_CLOSE = "]"  # what ends a free argument


@dataclass
class TokenTrie:
    """Token-id sequences of the admissible actions of one state, as a prefix tree."""

    children: dict[int, TokenTrie] = field(default_factory=dict)
    end: bool = False  # an action ends here (the turn may end)
    free: bool = False  # a free prefix ends here: a free argument follows, closed by "]"

    def depth(self) -> int:
        """Tokens of the longest path (a free prefix counts its prefix only)."""
        return max((1 + child.depth() for child in self.children.values()), default=0)

    def has_free(self) -> bool:
        return self.free or any(child.has_free() for child in self.children.values())

    def add(self, ids: Sequence[int], free: bool = False) -> None:
        node = self
        for token in ids:
            node = node.children.setdefault(token, TokenTrie())
        if free:
            node.free = True
        else:
            node.end = True

    def walk(self, ids: Sequence[int]) -> tuple[TokenTrie | None, int]:
        """(node after `ids`, ids consumed): None when they leave the trie; a free node stops the walk."""
        node = self
        for used, token in enumerate(ids):
            if node.free:
                return node, used
            node = node.children.get(token)
            if node is None:
                return None, used
        return node, len(ids)


def action_token_ids(tokenizer, action: str) -> list[int]:
    """The ids of `action` as they follow "Action:" in a reply ("Action: go to shelf 1")."""
    head = tokenizer.encode(ACTION_MARKER, add_special_tokens=False)
    full = tokenizer.encode(f"{ACTION_MARKER} {action}", add_special_tokens=False)
    if full[: len(head)] == head:
        return full[len(head) :]
    return tokenizer.encode(f" {action}", add_special_tokens=False)  # the marker merged with the action


def action_trie(tokenizer, actions: Iterable[str]) -> TokenTrie:
    trie = TokenTrie()
    for action in actions:
        if action.endswith(FREE_SUFFIX):
            trie.add(action_token_ids(tokenizer, action[: -len(FREE_SUFFIX) + 1]), free=True)
        else:
            trie.add(action_token_ids(tokenizer, action))
    return trie


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
        actions: Sequence[Sequence[str] | None],
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
        self.close = tokenizer.encode(FREE_CLOSE, add_special_tokens=False)[-1]
        self.turn_end = sorted(set(stop_ids) | {self.newline})
        self.thought_budget = [self._thought_budget(trie) for trie in self.tries]

    def _thought_budget(self, trie: TokenTrie | None) -> int | None:
        """Tokens the thought may take: the rest must hold a newline, "Action:", the action, the turn end."""
        if trie is None or self.budget is None:
            return None
        budget = self.budget - (len(self.marker) + trie.depth() + 2)
        return min(budget, self.budget // 2) if trie.has_free() else budget

    def __call__(self, input_ids, scores):
        import torch

        generated = input_ids[:, self.width :]
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

    def _rule(self, row: int, trie: TokenTrie, generated) -> tuple[bool, list[int]] | None:
        """(True, the only tokens allowed) or (False, tokens forbidden) for the row's next token; None: any."""
        n = len(generated)
        if self.starts[row] is None and n and self.line_ends[row] is None:
            tail = self.tokenizer.decode(generated[-len(self.marker) - 1 :], skip_special_tokens=True)
            if tail.endswith(ACTION_MARKER):
                self.starts[row] = n
            elif "\n" in self.tokenizer.decode(generated[-1:], skip_special_tokens=True):
                self.line_ends[row] = n
        if self.starts[row] is None and self.line_ends[row] is not None:
            written = n - self.line_ends[row]
            if written < len(self.marker):
                return True, [self.marker[written]]
            self.starts[row] = n
        if self.starts[row] is None:  # still in the thought: it cannot end the turn
            budget = self.thought_budget[row]
            return (True, [self.newline]) if budget is not None and n >= budget else (False, self.stop_ids)
        path = generated[self.starts[row] :].tolist()
        node, used = trie.walk(path)
        if node is None:
            return None  # a finished row (its padding)
        if node.free:
            return self._free_argument(path[used:], n)
        return True, list(node.children) + (self.turn_end if node.end or not node.children else [])

    def _free_argument(self, argument: list[int], n: int) -> tuple[bool, list[int]]:
        """Any text, closed by "]" (by force at the budget's end); then only the turn's end."""
        text = self.tokenizer.decode(argument, skip_special_tokens=True)
        if FREE_CLOSE in text:
            return True, self.turn_end
        if self.budget is not None and n >= self.budget - 2:
            return True, [self.close]
        forbidden = self.turn_end + ([self.close] if not text.strip() else [])  # no empty argument
        return False, forbidden
