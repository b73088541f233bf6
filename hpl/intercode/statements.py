"""SQL text handling without a parser: split a script into statements, and judge whether one is read-only.

Both the dump loader (which must name the statement and line that fail) and the agent sandbox (which runs
one statement and refuses writes) need to know where statements end. A full SQL parser is not needed for
that: a statement ends at a `;` outside string literals, quoted identifiers and comments. The scanner
below tracks exactly those four contexts, which is what MySQL's own client does.

The read-only check is a *second* line of defence: the agent's database account only holds SELECT, so a
write fails at the server even if this check were fooled. The check exists so that a refused statement
gets a clear observation before reaching the server, and so that statements that need no privilege but
change session state (SET, `@var :=`, SELECT ... INTO @var) are refused too: a session without mutable
state is what lets a snapshot be just (last result, turn count). Some statements need no privilege and
outlive the session: `SET PASSWORD` changes the agent account's own password (every later login fails),
`SET STATEMENT max_statement_time=0 FOR` lifts the time limit. Both are refused as first keywords, and
neither may hide in an executable comment (`/*! */`, `/*M! */`), which the server runs although it looks
like a comment: those, and optimizer hints (`/*+ */`), are refused anywhere in the text.
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


#: the longest agent statement sent to the server (gold queries are under 1 000 characters)
MAX_STATEMENT_CHARS = 65_536


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


#: comment openings the server does not ignore: MySQL's executable comment `/*!` and `/*!NNNNN`,
#: MariaDB's `/*M!` and `/*M!NNNNNN` (the server runs their content), and optimizer hints `/*+` (MySQL 8
#: and MariaDB 12 hints such as MAX_EXECUTION_TIME and SET_VAR change the statement's own limits).
#: Matched case-insensitively: refusing a lower-case `/*m!` the server would ignore costs nothing.
EXECUTABLE_COMMENT = re.compile(r"/\*(?:!|[Mm]!|\+)")


def executable_comment(text: str) -> str | None:
    """The first executable comment or optimizer hint opening in `text` (anywhere), or None."""
    match = EXECUTABLE_COMMENT.search(text)
    return match.group(0) if match else None


def _skip_comment(text: str, start: int) -> int | None:
    """Index just past a comment starting at `start`, or None when no comment starts there.

    Executable comments and hints (`EXECUTABLE_COMMENT`) are not skipped: the server runs or obeys their
    content, so it stays part of the statement text (a dump's `/*!40101 SET ... */;` is a statement).
    """
    if text.startswith("--", start) and (start + 2 == len(text) or text[start + 2] in " \t\r\n"):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    if text.startswith("#", start):
        end = text.find("\n", start)
        return len(text) if end < 0 else end
    if text.startswith("/*", start) and not EXECUTABLE_COMMENT.match(text, start):
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


def text_violation(text: str, max_chars: int = MAX_STATEMENT_CHARS) -> str | None:
    """Why `text` cannot be sent to the server as a query at all, or None.

    Agent text is arbitrary: a lone surrogate (e.g. '\\udcff' from a decoding error) cannot be encoded for
    the wire, and a text beyond the server's packet limit makes the server drop the connection, which
    would look like a server failure.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return f"the query is not valid text: character {text[err.start]!a} at position {err.start}"
    if len(text) > max_chars:
        return f"the query is too long ({len(text)} characters; at most {max_chars})"
    return None


def read_only_violation(statement: str) -> str | None:
    """Why `statement` is not a read-only query, or None when it is one."""
    hidden = executable_comment(statement)
    if hidden is not None:
        # searched in the raw text, literals included: our idea of where a literal ends could differ
        # from the server's (e.g. NO_BACKSLASH_ESCAPES on an external server), and an executable comment
        # is the one construct that turns text the check skipped into code the server runs
        return f"executable comments and optimizer hints ({hidden} ... */) are not allowed"
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
