"""The agent's action text for InterCode-SQL: a fenced SQL statement, a bare one, or `submit`.

ETO/IPR's prompt asks for `Action: ```sql <query>``` ` or `Action: submit`; their released data puts the
fence on separate lines ("Action: \\n```sql\\nSELECT ...\\n```") and their environment runs the first line of
the first ```sql block. This pipeline reads an action as the text after the last "Action:" up to the end of
that line (`hpl.react.parse_action`), so its prompt and expert data keep the whole fence on the action's
line: "Action: ```sql SELECT ... ```". `normalize_reply` rewrites a reply in the multi-line style (IPR's
released data, or a model that drifts back to it) into that form.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[ \t]*(?:(?:sql|mysql)(?=\s))?(.*?)```", re.S | re.I)
_OPEN_FENCE = re.compile(r"^```[ \t]*(?:(?:sql|mysql)(?=\s|$))?", re.I)
_SUBMIT = re.compile(r"submit\b[\s.!]*", re.I)
_MULTILINE_ACTION = re.compile(
    r"Action:[ \t]*\n\s*```[ \t]*(sql|mysql)?[ \t]*\n(.*?)\n?[ \t]*```", re.S | re.I
)

SUBMIT = "submit"


def parse_sql_action(action: str) -> tuple[str, str]:
    """("submit", "") for submit, else ("sql", the SQL text: the first fenced block's content, or the bare
    text). The SQL may be empty or hold several statements: the sandbox judges that."""
    text = (action or "").strip()
    fence = _FENCE.search(text)
    if fence:
        body = fence.group(1).strip()
    else:
        body = _OPEN_FENCE.sub("", text).strip()  # an unclosed fence: the rest of the line is the query
    if _SUBMIT.fullmatch(body) or _SUBMIT.fullmatch(text):
        return SUBMIT, ""
    return "sql", body


def format_sql_action(sql: str) -> str:
    """The action text for one SQL statement, on one line (newlines become spaces)."""
    one_line = " ".join(part.strip() for part in sql.strip().splitlines() if part.strip())
    return f"```sql {one_line} ```"


def normalize_reply(reply: str) -> str:
    """Rewrite "Action: \\n```sql\\n<query>\\n```" into "Action: ```sql <query> ```" (other replies unchanged)."""

    def one_line(match: re.Match) -> str:
        return "Action: " + format_sql_action(match.group(2))

    return _MULTILINE_ACTION.sub(one_line, reply)
