"""Which gold queries have a result the data does not determine (bare columns in a grouped query).

MySQL 8 runs with ONLY_FULL_GROUP_BY and rejects a query that selects a column which is neither grouped
nor aggregated, unless the column is functionally dependent on the grouped ones. MariaDB (InterCode's
sql_mode, and ours) runs such a query and returns the bare column's value from *some* row of each group,
e.g. `SELECT min(Version_Number), template_type_code FROM Templates` pairs the minimum with an arbitrary
code. MariaDB's ONLY_FULL_GROUP_BY does not know functional dependence at all, so it rejects over a
hundred gold queries, most of which are fine (`GROUP BY T1.id` selecting `T1.name`).

The rule (`undetermined`): a gold query is undetermined when MariaDB rejects it under ONLY_FULL_GROUP_BY
*and* the choice of row matters on the actual data. The check rewrites the query twice, wrapping every
bare column (outside an aggregate, not a GROUP BY key) in MIN() and in MAX(), and runs both: if each bare
column takes one value per group, both give the rows the original gives. A second pair, MIN(c IS NULL) vs
MAX(c IS NULL), catches a group mixing NULL with one value (MIN/MAX skip NULLs). Both rewrites are run
under ONLY_FULL_GROUP_BY, so the server itself confirms that every bare column was found.

The rewriter handles the shapes of Spider's gold queries (SELECT cores joined by UNION/INTERSECT/EXCEPT,
no subquery in a core that needs rewriting) and raises `UnsupportedQuery` on anything else, so a new data
file cannot be misjudged silently.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pymysql

ONLY_FULL_GROUP_BY_ERRORS = {1055, 1140}  # "isn't in GROUP BY"; mixing aggregates and columns, no GROUP BY
AGGREGATES = frozenset({"MIN", "MAX", "COUNT", "SUM", "AVG", "GROUP_CONCAT", "STD", "STDDEV", "VARIANCE"})
_SET_OPERATORS = frozenset({"UNION", "INTERSECT", "EXCEPT"})
_CLAUSES = ("SELECT", "FROM", "WHERE", "GROUP", "HAVING", "ORDER", "LIMIT")
_NOT_COLUMNS = frozenset(
    {"AS", "ASC", "DESC", "AND", "OR", "NOT", "NULL", "IS", "IN", "LIKE", "BETWEEN", "DISTINCT", "BY"}
)
_TOKEN = re.compile(
    r"'(?:[^'\\]|\\.|'')*'|\"(?:[^\"\\]|\\.|\"\")*\"|`[^`]*`|[A-Za-z_][\w$]*(?:\.[A-Za-z_`][\w$`]*)?|\d+(?:\.\d+)?|<=>|[<>!]=|<>|\S",
    re.S,
)
PAIRS = (("MIN({})", "MAX({})"), ("MIN(({}) IS NULL)", "MAX(({}) IS NULL)"))


class UnsupportedQuery(ValueError):
    """A query shape the bare-column rewriter does not handle."""


def _tokens(query: str) -> list[str]:
    return _TOKEN.findall(query.strip().rstrip(";"))


def _is_word(token: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_][\w$]*(?:\.[A-Za-z_`][\w$`]*)?", token))


def _cores(tokens: list[str]) -> list[tuple[int, int]]:
    """(start, end) token spans of the SELECT cores joined by top-level set operators."""
    spans, start, depth = [], 0, 0
    for i, token in enumerate(tokens):
        depth += (token == "(") - (token == ")")
        if depth == 0 and token.upper() in _SET_OPERATORS:
            spans.append((start, i))
            start = i + 1
            if start < len(tokens) and tokens[start].upper() in {"ALL", "DISTINCT"}:
                start += 1
    spans.append((start, len(tokens)))
    return spans


def _clauses(tokens: list[str], start: int, end: int) -> dict[str, tuple[int, int]]:
    """Clause name -> (first token after the keyword(s), end) within one core, at paren depth 0."""
    marks, depth = [], 0
    for i in range(start, end):
        word = tokens[i].upper()
        depth += (tokens[i] == "(") - (tokens[i] == ")")
        if depth == 0 and word in _CLAUSES:
            skip = 2 if word in {"GROUP", "ORDER"} else 1
            marks.append((word, i, i + skip))
        elif depth > 0 and word == "SELECT":
            raise UnsupportedQuery("a subquery inside a grouped SELECT core")
    found = {}
    for index, (word, _, body) in enumerate(marks):
        stop = marks[index + 1][1] if index + 1 < len(marks) else end
        found[word] = (body, stop)
    return found


def _normal(column: str) -> str:
    return column.replace("`", "").lower()


def _has_aggregate(tokens: list[str], start: int, end: int) -> bool:
    return any(
        tokens[i].upper() in AGGREGATES and i + 1 < end and tokens[i + 1] == "(" for i in range(start, end)
    )


def _wrap_bare(tokens: list[str], start: int, end: int, keys: set[str], wrapper: str) -> list[str]:
    """Tokens of one clause with every bare column (not in an aggregate, not a key) wrapped."""
    out, i, inside = [], start, 0  # inside: paren depth within an aggregate call
    while i < end:
        token = tokens[i]
        upper = token.upper()
        if inside:
            inside += (token == "(") - (token == ")")
            out.append(token)
        elif upper in AGGREGATES and i + 1 < end and tokens[i + 1] == "(":
            out.extend([token, "("])
            inside, i = 1, i + 2
            continue
        elif upper == "AS":
            out.extend(tokens[i : i + 2])  # an alias is not a column
            i += 2
            continue
        elif _is_word(token) and upper not in _NOT_COLUMNS and tokens[i + 1 : i + 2] != ["("]:
            out.append(token if _normal(token) in keys else wrapper.format(token))
        else:
            out.append(token)
        i += 1
    return out


def rewrite_bare_columns(query: str, wrapper: str) -> str:
    """`query` with every bare column of its grouped or aggregated SELECT cores wrapped in `wrapper`
    (a format string such as "MIN({})"); cores without grouping are left as they are."""
    tokens = _tokens(query)
    pieces: list[str] = []
    previous_end = 0
    for start, end in _cores(tokens):
        pieces.extend(tokens[previous_end:start])  # the set operator (and ALL/DISTINCT) before this core
        previous_end = end
        clauses = _clauses(tokens, start, end)
        if "SELECT" not in clauses:
            raise UnsupportedQuery("no SELECT at the top level of a core")
        keys = set()
        if "GROUP" in clauses:
            keys = {_normal(t) for t in tokens[slice(*clauses["GROUP"])] if _is_word(t)}
        grouped = "GROUP" in clauses or _has_aggregate(tokens, *clauses["SELECT"])
        position = start
        for name in ("SELECT", "HAVING", "ORDER"):
            if name not in clauses:
                continue
            body, stop = clauses[name]
            pieces.extend(tokens[position:body])
            if grouped:
                pieces.extend(_wrap_bare(tokens, body, stop, keys, wrapper))
            else:
                pieces.extend(tokens[body:stop])
            position = stop
        pieces.extend(tokens[position:end])
    return _join(pieces)


def _join(tokens: list[str]) -> str:
    """Tokens as SQL text; no space between a function name and "(" (MariaDB reads `count (*)` as an
    error without sql_mode IGNORE_SPACE)."""
    text = ""
    for token in tokens:
        glued = token == "(" and text and _is_word(text.split(" ")[-1])
        text += token if glued or not text else " " + token
    return text


def _rows(cursor: Any, query: str) -> Counter:
    cursor.execute(query)
    return Counter(str(row) for row in cursor.fetchall())


def rejected_by_full_group_by(cursor: Any, query: str) -> bool:
    """Whether the server refuses `query` under ONLY_FULL_GROUP_BY (the cursor's session mode is set)."""
    try:
        cursor.execute(query)
        cursor.fetchall()
    except pymysql.MySQLError as err:
        if err.args and err.args[0] in ONLY_FULL_GROUP_BY_ERRORS:
            return True
        raise
    return False


def undetermined(cursor: Any, query: str) -> str | None:
    """Why `query`'s result depends on MariaDB's choice of row for a bare column, or None when it does
    not (the cursor is on the query's database). Raises `UnsupportedQuery` if a rewrite misses a column."""
    _strict(cursor)
    try:
        if not rejected_by_full_group_by(cursor, query):
            return None
        for low, high in PAIRS:
            variants = [rewrite_bare_columns(query, wrapper) for wrapper in (low, high)]
            for variant in variants:
                if rejected_by_full_group_by(cursor, variant):
                    raise UnsupportedQuery(f"a bare column was not found: {variant}")
            if _rows(cursor, variants[0]) != _rows(cursor, variants[1]):
                return f"bare column takes several values per group: {variants[0]} differs from {variants[1]}"
        return None
    finally:
        cursor.execute("SET SESSION sql_mode = @@GLOBAL.sql_mode")


def _strict(cursor: Any) -> None:
    cursor.execute("SET SESSION sql_mode = CONCAT(@@GLOBAL.sql_mode, ',ONLY_FULL_GROUP_BY')")
