"""Split a SQL script into statements: semicolons inside quotes, comments and $$ bodies stay put."""

from __future__ import annotations

import re

_DOLLAR_TAG = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*\$|\$\$")
_TRIGGER = re.compile(r"^\s*CREATE\s+(?:TEMP(?:ORARY)?\s+)?TRIGGER\b", re.I)
_ENDS_WITH_END = re.compile(r"\bEND\s*$", re.I)


def _inside_trigger_body(statement: str) -> bool:
    """A SQLite CREATE TRIGGER … BEGIN … END: its inner semicolons do not end it (no CASE … END inside)."""
    code = _strip_comments(statement)
    return bool(_TRIGGER.match(code)) and not _ENDS_WITH_END.search(code)


def split_sql(script: str) -> list[str]:
    """Statements of `script` without their trailing semicolon; empty and comment-only ones dropped."""
    statements: list[str] = []
    buf: list[str] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        nxt = script[i + 1] if i + 1 < n else ""
        if ch == "-" and nxt == "-":
            end = script.find("\n", i)
            end = n if end == -1 else end
            buf.append(script[i:end])
            i = end
        elif ch == "/" and nxt == "*":
            end = script.find("*/", i + 2)
            end = n if end == -1 else end + 2
            buf.append(script[i:end])
            i = end
        elif ch in ("'", '"'):
            j = i + 1
            while j < n:
                if script[j] == ch:
                    if j + 1 < n and script[j + 1] == ch:  # doubled quote is an escaped quote
                        j += 2
                        continue
                    break
                j += 1
            buf.append(script[i : j + 1])
            i = j + 1
        elif ch == "$" and (m := _DOLLAR_TAG.match(script, i)):
            tag = m.group(0)
            end = script.find(tag, m.end())
            end = n if end == -1 else end + len(tag)
            buf.append(script[i:end])
            i = end
        elif ch == ";" and _inside_trigger_body("".join(buf)):
            buf.append(ch)
            i += 1
        elif ch == ";":
            statements.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(ch)
            i += 1
    statements.append("".join(buf))
    return [s.strip() for s in statements if _has_code(s)]


def _strip_comments(statement: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", "", statement, flags=re.S)


def _has_code(statement: str) -> bool:
    return bool(_strip_comments(statement).strip())
