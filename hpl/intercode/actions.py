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
SQL = "sql"
INVALID = "invalid"

#: IPR's answer to an action it cannot read (eval_agent/envs/intercode_sql_env.py), typos kept; only the
#: query format it shows is this pipeline's one-line form (IPR shows its multi-line fence, which the
#: pipeline's "rest of the Action: line" parsing would read as an empty action)
NOT_UNDERSTOOD = (
    'I don\'t understand your input.\n Your input shoud include the key world "Action:".\n If you want to '
    "perform a query operation, please use the following format:\n Action: ```sql the mysql code ```. And the "
    "action should be executable and should not contain natural language.\n If you have got the final answer, "
    'please use the following format:\n Action: submit. Remember your output should contain only one "Action:" '
    "part."
)


def parse_sql_action(action: str) -> tuple[str, str]:
    """(kind, SQL) of an action, as IPR reads it where IPR acts:

    - "submit" anywhere in the action submits (IPR: `if "submit" in action`), as does "Submit"/"submit.";
    - else the *first line* of the first fenced block runs (IPR runs `code.split("\n")[0]`);
    - beyond IPR (which answers "I don't understand"): a bare statement, or an unclosed fence, runs;
    - nothing to run (empty action, empty fence): ("invalid", "").
    The SQL may hold several statements: the sandbox judges that."""
    text = (action or "").strip()
    if SUBMIT in text or _SUBMIT.fullmatch(text):
        return SUBMIT, ""
    fence = _FENCE.search(text)
    if fence:
        body = fence.group(1).strip()
    else:
        body = _OPEN_FENCE.sub("", text).strip()  # an unclosed fence: the rest of the line is the query
    body = body.split("\n")[0].strip()
    if _SUBMIT.fullmatch(body):
        return SUBMIT, ""
    return (SQL, body) if body else (INVALID, "")


def format_sql_action(sql: str) -> str:
    """The action text for one SQL statement, on one line (newlines become spaces)."""
    one_line = " ".join(part.strip() for part in sql.strip().splitlines() if part.strip())
    return f"```sql {one_line} ```"


def normalize_reply(reply: str) -> str:
    """Rewrite "Action: \\n```sql\\n<query>\\n```" into "Action: ```sql <query> ```" (other replies unchanged)."""

    def one_line(match: re.Match) -> str:
        return "Action: " + format_sql_action(match.group(2))

    return _MULTILINE_ACTION.sub(one_line, reply)
