"""Spider's SQL as an LALR(1) grammar over the words of a query, for admissible InterCode-SQL actions.

`hpl.intercode.lexicon` decides which *words* a query may use; this module decides in which *order*. A
query must be one statement of the forms the expert data uses: `SHOW TABLES`, `DESCRIBE <table>`, or a
SELECT query of Spider's grammar (the one Spider's `process_sql.py` parses: SELECT [DISTINCT] ... FROM
tables and JOINs ... WHERE / GROUP BY / HAVING / ORDER BY / LIMIT, nested queries in parentheses, UNION,
INTERSECT and EXCEPT, conditions with AND, OR, NOT, IN, LIKE, BETWEEN, IS NULL), optionally closed by ";".
GPT-4's runs add SHOW COLUMNS, WITH, LEFT/INNER JOIN and REGEXP, which the grammar admits too. Left out,
because no gold query of Spider uses them and the tiny model's broken queries did: "%" (its `name%'`
opened a literal that ran to the reply budget) and comma joins (`FROM courses , cum.aggregate`).
So a constrained query can no longer be a syntax error of the kinds the tiny model wrote with words alone
(docs/performance.md: a dangling `WHERE T1.id =`, a second statement, `HANDLER`).

The lexicon classifies each finished word, number, string, operator or punctuation character as one of
this grammar's terminals (`terminal`) and feeds it here. The parser's state is the LALR stack, a tuple of
ints, so it is hashable and a lexicon state holding it can be cached like any other. The parse table
comes from lark (a well-kept parser generator), built once per process.
"""

from __future__ import annotations

import functools

from lark import Lark
from lark.parsers.lalr_analysis import Shift

# Terminals: the grammar's keywords by name, then the classes of the other lexemes.
KEYWORDS = frozenset(
    "select from where group by having order limit join on as and or not in like between is null "
    "distinct asc desc union all intersect except show tables columns describe exists with left inner right "
    "outer cross regexp count".split()
)
NAME, NUMBER, STRING, COMPARISON = "NAME", "NUMBER", "STRING", "COMPARISON"
COMPARISONS = frozenset(("=", "<", ">", "<=", ">=", "!=", "<>"))
PUNCTUATION = {
    "(": "LPAR",
    ")": "RPAR",
    ",": "COMMA",
    ".": "DOT",
    "*": "STAR",
    "+": "PLUS",
    "-": "MINUS",
    "/": "SLASH",
    ";": "SEMICOLON",
}
END = "$END"

_GRAMMAR = r"""
start: statement SEMICOLON?
?statement: SHOW TABLES | SHOW COLUMNS FROM table | (DESCRIBE | DESC) table | with? query
table: NAME (DOT NAME)?

with: WITH NAME AS LPAR query RPAR (COMMA NAME AS LPAR query RPAR)*
query: select (setop select)*
setop: UNION ALL? | INTERSECT | EXCEPT
select: SELECT DISTINCT? items FROM sources where? group? having? order? limit?
items: (STAR | item) (COMMA item)*
item: cond (AS? NAME)?
sources: source (join source (ON cond)?)*
join: (LEFT | RIGHT) OUTER? JOIN | (INNER | CROSS)? JOIN
source: table (AS? NAME)? | LPAR query RPAR AS? NAME
where: WHERE cond
group: GROUP BY cond (COMMA cond)*
having: HAVING cond
order: ORDER BY ordered (COMMA ordered)*
ordered: cond (ASC | DESC)?
limit: LIMIT NUMBER (COMMA NUMBER)?

?cond: cond OR conj | conj
?conj: conj AND neg | neg
?neg: NOT neg | pred
?pred: sum COMPARISON sum
     | sum NOT? IN LPAR (query | cond (COMMA cond)*) RPAR
     | sum NOT? (LIKE | REGEXP) sum
     | sum NOT? BETWEEN sum AND sum
     | sum IS NOT? NULL
     | EXISTS LPAR query RPAR
     | sum
?sum: sum (PLUS | MINUS) prod | prod
?prod: prod (STAR | SLASH) atom | atom
?atom: column | NUMBER | STRING | NULL | call | MINUS atom | LPAR cond RPAR | LPAR query RPAR
column: NAME (DOT (NAME | STAR))?
call: COUNT LPAR (STAR | DISTINCT? cond) RPAR
    | (NAME | LEFT | RIGHT) LPAR (DISTINCT? cond (COMMA cond)* | cond AS NAME)? RPAR
"""


def terminal(word: str) -> str:
    """The grammar terminal of a finished word of the query (a keyword, a number or a name)."""
    if word.lower() in KEYWORDS:
        return word.upper()
    return NUMBER if word[0].isdigit() else NAME


@functools.cache
def _table() -> dict:
    """state -> {terminal or rule name: (Shift, state) or (Reduce, rule)}: lark's LALR table, with the
    grammar's keywords declared as terminals of their own."""
    keywords = "\n".join(f'{k.upper()}: "{k}"i' for k in sorted(KEYWORDS))
    terminals = "\n".join(f"{name}: /{name.lower()}/" for name in (NAME, NUMBER, STRING, COMPARISON))
    punctuation = "\n".join(f'{name}: "{char}"' for char, name in PUNCTUATION.items())
    parser = Lark(
        "\n".join((_GRAMMAR, keywords, terminals, punctuation)),
        parser="lalr",
        keep_all_tokens=True,
    )
    analysis = parser.parser.parser.parser  # the LALR parser's parse table
    table = analysis.parse_table
    return {"states": table.states, "start": table.start_states["start"], "end": table.end_states["start"]}


def start() -> tuple[int, ...]:
    return (_table()["start"],)


@functools.lru_cache(maxsize=1 << 16)
def feed(stack: tuple[int, ...], symbol: str) -> tuple[int, ...] | None:
    """The LALR stack after `symbol` (a terminal, or END), or None if the grammar does not allow it there."""
    states = _table()["states"]
    end = _table()["end"]
    while True:
        if symbol == END and stack[-1] == end:
            return stack  # the statement reduced to `start`: accepted
        action = states[stack[-1]].get(symbol)
        if action is None:
            return None
        kind, target = action
        if kind is Shift:
            return (*stack, target)
        size = len(target.expansion)
        stack = stack[: len(stack) - size] if size else stack
        goto = states[stack[-1]].get(target.origin.name)
        if goto is None:
            return None
        stack = (*stack, goto[1])


@functools.lru_cache(maxsize=1 << 14)
def accepts(stack: tuple[int, ...]) -> frozenset[str]:
    """The terminals (and END) that may come next."""
    candidates = _table()["states"][stack[-1]]
    return frozenset(s for s in (*candidates, END) if s.isupper() and feed(stack, s) is not None)


def complete(stack: tuple[int, ...]) -> bool:
    """Whether the statement may end here."""
    return END in accepts(stack)
