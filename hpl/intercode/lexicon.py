"""The words an InterCode-SQL query may use under `generation.actions: admissible` (a protocol variant).

ALFWorld and WebShop list their valid actions; a query has no such list, but its bare words do. Every word
outside a string literal must be one of:
- an SQL keyword or function the server knows (MariaDB's own information_schema.KEYWORDS, SQL_FUNCTIONS);
  a function that is no keyword or name is followed by "(" at once (`COUNT(`, never `FROM_DAYS AS`);
- a table or column name of the task's database or of information_schema; after FROM, JOIN and
  DESCRIBE, a table name only (or a schema name followed by "." and a table);
- an alias: T1..T9 as Spider writes them, a name declared after AS or WITH or, of up to 3 characters,
  right after a table name (`FROM singer s`), or a word of up to 3 characters followed by "." (`s.Name`
  before `s` is declared);
- a number.
A keyword that is no word of the grammar, no argument word (`YEAR`, `UNSIGNED`) and no name is a function,
called at once. String literals (up to 40 characters, no backtick) and punctuation stay free; other
characters may appear inside string literals only. The order of the words follows Spider's grammar
(`hpl.intercode.grammar`): the state holds its LALR stack, fed each finished word, literal and operator.
A word may grow only while some word the grammar takes here begins so, so no state is left without a
token (`FROM_UNIXTIME` begins like `FROM`).
So the constrained model still writes the whole query, but cannot name a table of another database, which is
the tiny model's measured failure (docs/performance.md, learning curve). The structure is checked as far
as reading left to right allows, since the tiny model's next failure is syntax errors: a block's clauses
(SELECT ... LIMIT) come once each and in order, parentheses balance, a quote cannot open a literal right
after a word (`FROM student_enrolment li'`: 33 of the 34 syntax errors left by the other rules), and the
closing fence cannot follow a word or character that needs an operand (every such query is a syntax
error on MariaDB; tested). Of the expert data's queries that run, 1.1% (22 of 1,947) use what these
rules refuse: an alias of 4 or more characters before its declaration, a subquery's alias without AS,
mixed-case names ("petType"), a comma join.
Words are matched as the server or Spider spells them, or in lower, upper or capitalized case.

`SqlLexicon` is the `hpl.admissible.Lexicon` of one database: a state machine over the query's characters,
from after "```sql" to the closing "```".
"""

from __future__ import annotations

import bisect
import functools
import itertools
import string
from collections.abc import Iterable
from typing import NamedTuple

from hpl.intercode import grammar

OPEN = "```sql"  # the fence and language tag of the expert's actions ("Action: ```sql SELECT ... ```")
CLOSE = "```"
WORD_CHARS = frozenset(string.ascii_letters + string.digits + "_")
QUOTES = "'\""
ALIASES = tuple(f"T{i}" for i in range(1, 10))  # Spider's aliases, often used before their AS
QUALIFIER_CHARS = 3  # a short unknown word before "." is an alias used before it is declared (`c.Name`)
PUNCTUATION = frozenset(" \t.,;()*=<>!+-/%|&^~?@:[]{}\\")  # what may stand between words
TABLE_POSITION = ("from", "join", "describe")  # the word after these must be a known name
DECLARING = ("as", "with")  # the word after these may be a new name
# a query block's clauses come once each, in this order (a subquery, in parentheses, is a block of its own)
# (DESCRIBE t is a statement of its table alone: ranked last, no clause may follow it)
CLAUSES = {"select": 1, "from": 2, "where": 3, "group": 4, "having": 5, "order": 6, "limit": 7, "describe": 8}
DESCRIBE = CLAUSES["describe"]
NEW_BLOCK = ("union", "intersect", "except")  # a new SELECT may follow at the same depth
# a query cannot end after these words or characters: each needs what follows it
DANGLING_WORDS = frozenset(
    "select from where and or not on by join as in like between group order having limit union intersect "
    "except distinct when then else case is with all any exists describe".split()
)
DANGLING_CHARS = frozenset(",=<>!+-/%|&^~.(")
OPERATOR_CHARS = frozenset("=<>!")  # a comparison operator's characters, written without a space between
# keywords that stand alone as an argument (`TIMESTAMPDIFF(YEAR, a, b)`, `CAST(x AS UNSIGNED)` in GPT-4's runs)
ARGUMENT_WORDS = frozenset(
    "year quarter month week day hour minute second microsecond unsigned signed integer decimal".split()
)
# a string literal's characters at most: Spider's longest (train and test gold queries) has 28; the tiny
# model's syntax errors were mostly a quote opened after "%" and a literal running to the reply budget
MAX_LITERAL = 40
STEP_MEMO = 1 << 20  # (state, character) steps a lexicon remembers


class QueryState(NamedTuple):
    """Where a query's text stands, as far as the word rules care."""

    quote: str = ""  # the open string literal's quote character ("" outside one)
    word: str = ""  # the bare word being written (as written)
    previous: str = ""  # the last finished word, lowercased
    aliases: frozenset[str] = frozenset()  # names declared so far, in their spellings (`_spellings`)
    ticks: int = 0  # backticks of the closing fence written
    schema: str = ""  # after FROM/JOIN, the schema just named ("information_schema."): its table follows
    clauses: tuple[int, ...] = (0,)  # per open parenthesis (and the query), the last clause's rank (CLAUSES)
    dangling: bool = True  # the text so far needs more before the query can close (empty, "WHERE", "a =")
    parse: tuple[int, ...] = ()  # the grammar's LALR stack over the finished lexemes (hpl.intercode.grammar)
    operator: str = ""  # a comparison operator being written ("<" may become "<=" or "<>")
    literal: int = 0  # characters of the open string literal


class SqlLexicon:
    """The bare words allowed in a query on one database. A word is spelled as the server or the schema
    spells it, or in lower or upper case, or capitalized: the server ignores the case (`lower_case_table_names=1`), but
    a model that mixes cases ("DEpARTmeNTS") has left the spellings it was trained on."""

    def __init__(
        self,
        keywords: Iterable[str],
        tables: Iterable[str],
        columns: Iterable[str],
        schemas: dict[str, Iterable[str]] | None = None,
        functions: Iterable[str] = (),
    ) -> None:
        self.tables = _spellings(tables)  # the words allowed after FROM and JOIN ...
        self.schemas = _spellings(schemas or {})  # ... and these, followed by "." and one of their tables
        self.schema_tables = {name.lower(): _spellings(names) for name, names in (schemas or {}).items()}
        self.schema_prefixes = {name: _prefixes(names) for name, names in self.schema_tables.items()}
        self.table_names = frozenset(w.lower() for w in tables)  # an alias may follow one
        columns = _spellings(columns)
        keywords, functions = list(keywords), list(functions)
        self.words = (
            _spellings([*keywords, *functions]) | self.tables | columns | self.schemas | _spellings(ALIASES)
        )
        self.prefixes = _prefixes(self.words)
        # a function, or a keyword that is no word of the grammar, no argument word and no name of the
        # database, is a call: "(" follows it at once. The tiny model otherwise writes FROM_DAYS or
        # FROM_BASE64 where it meant FROM, or a keyword as a column (`max(weight_string)`, `Level`)
        names = {w.lower() for w in self.tables | columns | self.schemas}
        plain = names | (grammar.KEYWORDS - {"count"}) | ARGUMENT_WORDS  # COUNT is a keyword and a call
        self.calls = _spellings(w for w in [*keywords, *functions] if w.lower() not in plain)
        self.table_prefixes = _prefixes(self.tables | self.schemas)
        self.sorted_words = tuple(sorted(self.words))  # for the words a prefix may grow into
        self._steps: dict[tuple[QueryState, str], QueryState | None] = {}

    def start(self) -> QueryState:
        return QueryState(parse=grammar.start())

    def closed(self, state: QueryState) -> bool:
        return state.ticks == len(CLOSE)

    def extend(self, state: QueryState | None, text: str) -> QueryState | None:
        """The state after `text`, or None if it breaks a rule (an unknown word, a line break, text after
        the closing fence)."""
        steps = self._steps
        for char in text:
            if state is None:
                return None
            key = (state, char)
            if key not in steps:  # a vocabulary scan steps through the same (state, character) pairs often
                if len(steps) > STEP_MEMO:
                    steps.clear()
                steps[key] = self._step(state, char)
            state = steps[key]
        return state

    def _step(self, state: QueryState, char: str) -> QueryState | None:
        if state.ticks:  # in the closing fence: the rest of it, then nothing but spaces
            if char == "`" and not self.closed(state):
                return state._replace(ticks=state.ticks + 1)
            return state if self.closed(state) and char in " \t" else None
        if char == "\n":
            return None  # the action is one line
        if state.quote:
            if char == state.quote:
                return _parsed(state._replace(quote="", literal=0, dangling=False), grammar.STRING)
            if char == "`" or state.literal >= MAX_LITERAL:
                return None  # a literal that swallows the fence, or runs on: its quote is due
            return state._replace(literal=state.literal + 1)
        if state.operator and char not in OPERATOR_CHARS:
            state = _finish_operator(state)
            if state is None:
                return None
        if char == "." and state.word[:1].isdigit() and "." not in state.word:
            return state._replace(word=state.word + ".")  # a decimal number (3.5)
        if char in WORD_CHARS:
            word = state.word + char
            return state._replace(word=word) if self._may_grow(word, state) else None
        if state.schema and not state.word:
            return None  # "information_schema." is followed by its table at once
        if char in QUOTES and state.word:
            return None  # a string literal starts after a space, "(", "," or an operator, not inside a word
        finished = self._finish_word(state, char)
        if finished is None:
            return None
        if finished.schema:
            return finished  # a schema name, and `char` is its "."
        state = finished
        if char in " \t":
            return state
        if state.clauses[-1] == DESCRIBE and char != "`":
            return None  # DESCRIBE is followed by its table, then the close
        if state.previous in TABLE_POSITION and char != "(":
            return None  # after FROM and JOIN: a table or a subquery
        if char not in PUNCTUATION and char not in QUOTES and char != "`":
            return None  # outside a string literal: ASCII words, numbers and punctuation only
        state = state._replace(previous="")  # an alias follows its table after spaces only
        if char == "`":  # the closing fence: only once the query is whole
            complete = len(state.clauses) == 1 and not state.dangling and grammar.complete(state.parse)
            return state._replace(ticks=1) if complete else None
        if char in QUOTES:
            return state._replace(quote=char) if grammar.STRING in grammar.accepts(state.parse) else None
        if char in OPERATOR_CHARS:
            return _extend_operator(state, char)
        if char not in grammar.PUNCTUATION:
            return None  # no statement of the grammar uses it ("|", "@", ...)
        state = _parsed(state, grammar.PUNCTUATION[char])
        if state is None:
            return None
        if char == "(":
            return state._replace(clauses=(*state.clauses, 0), dangling=True)
        if char == ")":  # closes an open parenthesis, not one never opened
            return (
                state._replace(clauses=state.clauses[:-1], dangling=False) if len(state.clauses) > 1 else None
            )
        return state if char == "*" else state._replace(dangling=char in DANGLING_CHARS)

    def _declares(self, state: QueryState) -> bool:
        """Whether the next word may be a new name: after AS or WITH (a common table expression), or right
        after a table name (an alias without AS: `FROM singer s`). Not after ")": that closes a function
        call as often as a subquery, and a model would name anything after `avg(x)`."""
        return state.previous in DECLARING or state.previous in self.table_names

    def _free(self, word: str, state: QueryState) -> bool:
        """Numbers, and a name being declared, are not checked (a table position is, before this); a name
        declared without AS has at most 3 characters, as all 352 of the expert data's do (`FROM singer s`):
        the tiny model's `FROM Singer Highschooler AS T1` is a syntax error."""
        if word[0].isdigit() or state.previous in DECLARING:
            return True
        return state.previous in self.table_names and len(word) <= QUALIFIER_CHARS

    def _may_qualify(self, word: str, state: QueryState) -> bool:
        """Whether `word` may be an alias used before its declaration (it must then be followed by ".")."""
        return len(word) <= QUALIFIER_CHARS and state.previous not in TABLE_POSITION

    def _may_grow(self, word: str, state: QueryState) -> bool:
        if state.clauses[-1] == DESCRIBE and state.previous != "describe":
            return False  # a second word after DESCRIBE's table
        declared = any(alias.startswith(word) for alias in state.aliases)
        if state.schema:
            return word in self.schema_prefixes[state.schema]
        if state.previous in TABLE_POSITION:  # a table, or a name declared earlier (WITH's tables)
            return word in self.table_prefixes or declared
        if not _grammar_allows(word, state.parse):
            return False
        if not (
            self._free(word, state) or word in self.prefixes or declared or self._may_qualify(word, state)
        ):
            return False
        return self._completable(word, state, declared)

    def _completable(self, word: str, state: QueryState, declared: bool) -> bool:
        """Whether `word` can still end as a word the grammar takes here: a name, a call or a keyword that
        some word beginning so is. The rules overlap (FROM_UNIXTIME starts like FROM; a function must be
        called, an alias may not be), and a prefix that no word completes would leave the model no token."""
        if word[0].isdigit():
            return True  # a number, and the grammar takes one here (`_grammar_allows`)
        names, calls, qualifies, keywords = _next_roles(state.parse)
        if names and (declared or self._free(word, state)):
            return True
        if qualifies and self._may_qualify(word, state):
            return True
        is_name, is_call, as_keywords = self._roles(word)
        return (names and is_name) or (calls and is_call) or not as_keywords.isdisjoint(keywords)

    @functools.lru_cache(maxsize=1 << 16)  # noqa: B019 (a lexicon lives as long as its environment)
    def _roles(self, word: str) -> tuple[bool, bool, frozenset[str]]:
        """What the known words beginning with `word` may be: (a name, a call, these grammar keywords)."""
        start = bisect.bisect_left(self.sorted_words, word)
        name, call, keywords = False, False, set()
        for known in itertools.takewhile(lambda w: w.startswith(word), self.sorted_words[start:]):
            if known in self.calls:
                call = True
            if known.lower() in grammar.KEYWORDS:
                keywords.add(known.lower())
            elif known not in self.calls:
                name = True
        return name, call, frozenset(keywords)

    def _finish_word(self, state: QueryState, char: str) -> QueryState | None:
        word = state.word
        if not word:
            return state
        if state.schema:
            known_table = word in self.schema_tables[state.schema]
            return (
                _parsed(
                    state._replace(word="", schema="", previous=word.lower(), dangling=False), grammar.NAME
                )
                if known_table
                else None
            )
        if state.previous in TABLE_POSITION and word not in self.tables | state.aliases:
            named = word in self.schemas and char == "."  # "information_schema." is followed by its table
            if not named:
                return None
            schema = _parsed(_parsed(state, grammar.NAME), grammar.PUNCTUATION["."])
            return schema and schema._replace(word="", schema=word.lower())
        known = word in self.words or word in state.aliases
        if (
            word in self.calls
            and char != "("
            and state.previous not in DECLARING
            and word not in state.aliases
        ):
            return None
        qualifier = char == "." and self._may_qualify(word, state)
        if not (known or qualifier or self._free(word, state)):
            return None
        declared = self._declares(state) and not known and not word[0].isdigit()
        aliases = state.aliases | _spellings([word]) if declared else state.aliases
        state = _parsed(state, grammar.terminal(word))
        return state and _in_order(state._replace(word="", previous=word.lower(), aliases=aliases))


def _parsed(state: QueryState | None, symbol: str) -> QueryState | None:
    """The state after the grammar reads `symbol`, or None where the grammar refuses it."""
    if state is None:
        return None
    parse = grammar.feed(state.parse, symbol)
    return None if parse is None else state._replace(parse=parse)


@functools.lru_cache(maxsize=1 << 14)
def _next_roles(parse: tuple[int, ...]) -> tuple[bool, bool, bool, frozenset[str]]:
    """(a name may come, a call may come, a qualifier (a name and ".") may come, the grammar keywords that
    may come, lowercase)."""
    allowed = grammar.accepts(parse)
    named = grammar.feed(parse, grammar.NAME) if grammar.NAME in allowed else None
    after = grammar.accepts(named) if named is not None else frozenset()
    keywords = frozenset(k.lower() for k in allowed if k.lower() in grammar.KEYWORDS)
    return named is not None, grammar.PUNCTUATION["("] in after, grammar.PUNCTUATION["."] in after, keywords


def _grammar_allows(word: str, parse: tuple[int, ...]) -> bool:
    """Whether a word beginning so may come next: a number, a name, or one of the grammar's keywords."""
    if word[0].isdigit():
        return grammar.NUMBER in grammar.accepts(parse)
    names, _, _, keywords = _next_roles(parse)
    low = word.lower()
    return names or any(k.startswith(low) for k in keywords)


def _extend_operator(state: QueryState, char: str) -> QueryState | None:
    operator = state.operator + char
    if not any(c.startswith(operator) for c in grammar.COMPARISONS):
        return None
    if grammar.COMPARISON not in grammar.accepts(state.parse):
        return None
    return state._replace(operator=operator, dangling=True)


def _finish_operator(state: QueryState) -> QueryState | None:
    """The state once a comparison operator is written out ("!" alone is none)."""
    if state.operator not in grammar.COMPARISONS:
        return None
    return _parsed(state._replace(operator=""), grammar.COMPARISON)


def _in_order(state: QueryState) -> QueryState | None:
    """The state after its last word, if that word keeps the block's clauses in order (a second FROM, or
    WHERE after ORDER BY, is a syntax error before it is sent); whether the query may end there."""
    word, rank = state.previous, CLAUSES.get(state.previous, 0)
    if rank and rank <= state.clauses[-1]:
        return None
    if rank or word in NEW_BLOCK:
        state = state._replace(clauses=(*state.clauses[:-1], rank))
    return state._replace(dangling=word in DANGLING_WORDS)


def _spellings(words: Iterable[str]) -> frozenset[str]:
    """Each word as written, in lower case, in upper case and capitalized ("Count", "Teacher_id")."""
    return frozenset(form for w in words for form in (w, w.lower(), w.upper(), w.capitalize()))


def _prefixes(words: Iterable[str]) -> frozenset[str]:
    return frozenset(w[:i] for w in words for i in range(1, len(w) + 1))
