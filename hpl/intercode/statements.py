"""SQL text handling without a parser: split a script into statements, and judge whether one is read-only.

Both the dump loader (which must name the statement and line that fail) and the agent sandbox (which runs
one statement and refuses writes) need to know where statements end. A full SQL parser is not needed for
that: a statement ends at a `;` outside string literals, quoted identifiers and comments. The scanner
below tracks exactly those four contexts, which is what MySQL's own client does.

The read-only check is a *second* line of defence: the agent's database account only holds SELECT, so a
write fails at the server even if this check were fooled. The check exists so that a refused statement
gets a clear observation before reaching the server, and so that statements that need no privilege but
change session state (SET, `@var :=`, SELECT ... INTO @var) are refused too: a session without mutable
state is what lets a snapshot be just (last result, turn count).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: the first keyword of every statement an agent may run
READ_ONLY_VERBS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "VALUES"})

#: words refused anywhere outside literals: they write data or schema, take locks, or write files/variables.
#: (INSERT and REPLACE are also string functions, so they are refused only as the first keyword.)
FORBIDDEN_WORDS = frozenset(
    {
        "UPDATE",
        "DELETE",
        "DROP",
        "CREATE",
        "ALTER",
        "TRUNCATE",
        "GRANT",
        "REVOKE",
        "RENAME",
        "HANDLER",
        "LOCK",
        "INTO",
        "OUTFILE",
        "DUMPFILE",
        "ANALYZE",
        "OPTIMIZE",
        "REPAIR",
        "PURGE",
    }
)


@dataclass(frozen=True)
class Statement:
    """One statement of a script: its text (without the final `;`) and the 1-based line it starts on."""

    text: str
    line: int


def _skip_quoted(text: str, start: int, quote: str) -> int:
    """Index just past the literal opened by `quote` at `start` (backslash escapes and doubled quotes)."""
    i = start + 1
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and quote != "`":
            i += 2
            continue
        if char == quote:
            if i + 1 < n and text[i + 1] == quote:  # '' inside '...'
                i += 2
                continue
            return i + 1
        i += 1
    return n


def _skip_comment(text: str, start: int) -> int | None:
    """Index just past a comment starting at `start`, or None when no comment starts there.

    `/*! ... */` is MySQL's *executable* comment (the server runs its content), so it is not skipped:
    it stays part of the statement text.
    """
    if text.startswith("--", start) and (start + 2 == len(text) or text[start + 2] in " \t\r\n"):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    if text.startswith("#", start):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    if text.startswith("/*", start) and not text.startswith("/*!", start):
        end = text.find("*/", start + 2)
        return len(text) if end < 0 else end + 2
    return None


def _scan(text: str):
    """Yield (kind, start, end) spans: kind is 'code', 'literal' or 'comment'; code spans are single chars."""
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char in "'\"`":
            end = _skip_quoted(text, i, char)
            yield "literal", i, end
            i = end
            continue
        end = _skip_comment(text, i)
        if end is not None:
            yield "comment", i, end
            i = end
            continue
        yield "code", i, i + 1
        i += 1


def split_statements(text: str) -> list[Statement]:
    """The non-empty statements of `text` in order (comment-only pieces are dropped)."""
    statements: list[Statement] = []
    start = 0
    code_at: int | None = None  # where the current statement's first code (not comment) starts

    def close(end: int) -> None:
        piece = text[start:end]
        if code_at is not None and piece.strip():
            # the line of the statement's first code, not of a comment before it
            statements.append(Statement(piece.strip(), text.count("\n", 0, code_at) + 1))

    for kind, begin, end in _scan(text):
        if kind == "code" and text[begin] == ";":
            close(begin)
            start, code_at = end, None
        elif code_at is None and kind != "comment" and not text[begin].isspace():
            code_at = begin
    close(len(text))
    return statements


def code_only(text: str) -> str:
    """`text` with literals replaced by a placeholder and comments by a space (for keyword checks)."""
    parts = []
    for kind, begin, end in _scan(text):
        if kind == "code":
            parts.append(text[begin:end])
        elif kind == "literal":
            parts.append(" ? ")
        else:
            parts.append(" ")
    return "".join(parts)


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def first_keyword(text: str) -> str:
    """The first word of a statement, upper-cased, past leading parentheses ('' when there is none)."""
    match = _WORD.search(code_only(text).lstrip("( \t\r\n"))
    return match.group(0).upper() if match else ""


def read_only_violation(statement: str) -> str | None:
    """Why `statement` is not a read-only query, or None when it is one."""
    code = code_only(statement)
    verb = first_keyword(statement)
    if verb not in READ_ONLY_VERBS:
        shown = verb or statement.strip()[:20]
        return f"only read-only statements are allowed (SELECT, SHOW, DESCRIBE, EXPLAIN); refused: {shown}"
    words = {word.upper() for word in _WORD.findall(code)}
    bad = sorted(words & FORBIDDEN_WORDS)
    if bad:
        return f"only read-only statements are allowed; refused keyword: {bad[0]}"
    if ":=" in code:
        return "assignments to variables are not allowed"
    return None
