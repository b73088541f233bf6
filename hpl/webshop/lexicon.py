"""The words a WebShop search may use under `webshop.search_words: instruction` (a protocol variant).

Under `generation.actions: admissible` a WebShop click is chosen among the page's buttons, while the query
of `search[...]` is free text. The embedded tiny model cannot copy the instruction into it: on the 200 test
goals its greedy queries leave the instruction after a median 6% of its characters and go on with a query
memorised from training ("find me machine wash men's dress shirts ..." whatever the goal), so the best
product on the first result page is worth 0.46 on average, against 0.95 for the instruction's own words
(docs/performance.md). `InstructionWords` keeps the query's words within the instruction's: the model still
chooses which words, in which order, and when to close, but cannot write a word the goal does not contain.
The search engine itself accepts any query; this is a constraint on the agent, named in table1's Actions
column, and off unless configured (the paper preset searches freely).

A word is a run of letters and digits, compared in lower case (the expert lowercases the instruction), and
each word may be used as often as the instruction uses it: the tiny model otherwise loops ("b-bk2-bk2-bk2
..." until the reply budget ends the query). Between words stand up to 3 of the instruction's own
punctuation characters or spaces, none twice in a row (", ", ": ", " & "); `]` closes the query after at
least one word, and never inside a word that is only the start of an instruction word.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from typing import NamedTuple

CLOSE = "]"
MAX_GAP = 3  # characters between two words (" & ")
_WORD = re.compile(r"[a-z0-9]+")


class QueryState(NamedTuple):  # a tuple: built per character of every token scanned, cheaply
    word: str = ""  # the word being written, lowercased
    left: tuple[int, ...] = ()  # per instruction word (InstructionWords.words order): uses left
    gap: str = ""  # the characters written since the last word
    closed: bool = False


class InstructionWords:
    """The `hpl.admissible.Lexicon` of one instruction: a state machine over the query's characters."""

    def __init__(self, instruction: str) -> None:
        text = instruction.lower()
        counts = Counter(_WORD.findall(text))
        self.words = {word: i for i, word in enumerate(counts)}  # word -> its index in `left`
        self.uses = tuple(counts.values())  # a new query's `left`
        self.completions: dict[str, tuple[int, ...]] = {}  # a word's start -> the words it can become
        for word, i in self.words.items():
            for n in range(1, len(word) + 1):
                self.completions[word[:n]] = (*self.completions.get(word[:n], ()), i)
        self.between = frozenset(c for c in text if not c.isalnum() and c not in "\r\n[]") | {" "}
        # (state, character) -> next state: a scan of the vocabulary repeats the same first steps per token
        self._steps: dict[tuple[QueryState, str], QueryState | None] = {}

    def start(self) -> QueryState:
        return QueryState(left=self.uses)

    def closed(self, state: QueryState) -> bool:
        return state.closed

    def extend(self, state: QueryState | None, text: str) -> QueryState | None:
        """The state after `text`, or None when it leaves the instruction's words."""
        for char in text:
            if state is None or state.closed:
                return None
            key = (state, char)
            if key not in self._steps:
                self._steps[key] = self._step(state, char.lower())
            state = self._steps[key]
        return state

    def _step(self, state: QueryState, char: str) -> QueryState | None:
        left = state.left
        if char.isascii() and char.isalnum():
            word = state.word + char
            if not any(left[i] for i in self.completions.get(word, ())):
                return None
            return QueryState(word, left)
        if state.word:  # the word ends here: it must be whole and not used up
            i = self.words.get(state.word)
            if i is None or not left[i]:
                return None
            left = (*left[:i], left[i] - 1, *left[i + 1 :])
        elif char != CLOSE and (len(state.gap) >= MAX_GAP or state.gap.endswith(char)):
            return None
        if char == CLOSE:
            return QueryState(left=left, closed=True) if left != self.uses else None  # a word was written
        if char not in self.between:
            return None
        return QueryState(left=left, gap=state.gap + char if not state.word else char)


@functools.lru_cache(maxsize=4096)
def instruction_words(instruction: str) -> InstructionWords:
    """One lexicon per instruction: its allowed tokens per state are cached with it (hpl.admissible), and
    every turn, rollout and episode of the same goal reuses them."""
    return InstructionWords(instruction)
