"""Split a SQL script (sql/<dialect>.sql) into statements: the DDL runs one statement at a time."""

from __future__ import annotations


def split_sql_statements(text: str) -> list[str]:
    """Split a SQL script on ``;`` outside quotes and comments; comments are dropped."""
    statements, current, i, n = [], [], 0, len(text)
    has_code = False
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            end = n if end == -1 else end
            current.append(" ")
            i = end
            continue
        if ch == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end == -1 else end + 2
            current.append(" ")
            i = end
            continue
        if ch in ("'", '"'):
            end = i + 1
            while end < n:
                if text[end] == ch:
                    if end + 1 < n and text[end + 1] == ch:  # doubled quote = escaped quote
                        end += 2
                        continue
                    break
                end += 1
            current.append(text[i : end + 1])
            has_code = True
            i = end + 1
            continue
        if ch == ";":
            if has_code:
                statements.append("".join(current).strip())
            current, has_code = [], False
            i += 1
            continue
        if not ch.isspace():
            has_code = True
        current.append(ch)
        i += 1
    if has_code:
        statements.append("".join(current).strip())
    return statements
