"""Placeholder translation: users write ``?`` (positional) or ``:name`` (named) for every database.

The scanner walks the statement once and rewrites only placeholders that stand outside string
literals, quoted identifiers, dollar-quoted bodies (PostgreSQL) and comments. ``??`` is a literal
``?`` (PostgreSQL's JSONB operators) and ``::`` is left alone (PostgreSQL casts). Results are
cached per dialect, so the scan happens once per distinct statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple

from flowcoro.db.errors import QueryError

__all__ = ["Dialect", "Translated", "bind", "translate"]

_CACHE_LIMIT: Final = 2048


class Dialect(NamedTuple):
    """How one database spells placeholders and quotes text."""

    name: str
    #: "numeric" -> $1, $2; "format" -> %s (a literal % becomes %%); "qmark" -> ?
    paramstyle: str
    backslash_escapes: bool  # '\'' is an escaped quote inside '...'
    dollar_quotes: bool  # $tag$ ... $tag$ bodies
    backticks: bool  # `identifier`
    hash_comments: bool  # '# to end of line'
    nested_comments: bool  # /* /* */ */


POSTGRES: Final = Dialect("postgresql", "numeric", False, True, False, False, True)
MYSQL: Final = Dialect("mysql", "format", True, False, True, True, False)
SQLITE: Final = Dialect("sqlite", "qmark", False, False, True, False, False)


class Translated(NamedTuple):
    sql: str
    #: None for positional statements, else the parameter names in the order the driver wants.
    names: tuple[str, ...] | None
    nparams: int


_caches: dict[Dialect, dict[str, Translated]] = {}


def _ident_char(c: str) -> bool:
    return c.isalnum() or c == "_"


def _skip_dollar(sql: str, i: int) -> int:
    """If ``sql[i]`` opens a dollar-quoted body, return the index just past it, else ``i``."""
    n = len(sql)
    j = i + 1
    while j < n and _ident_char(sql[j]) and not (j == i + 1 and sql[j].isdigit()):
        j += 1
    if j >= n or sql[j] != "$":
        return i
    tag = sql[i : j + 1]
    end = sql.find(tag, j + 1)
    return n if end < 0 else end + len(tag)


def _scan(sql: str, d: Dialect) -> Translated:
    out: list[str] = []
    names: list[str] = []
    positional = 0
    index: dict[str, int] = {}
    n = len(sql)
    i = 0
    start = 0  # start of the pending verbatim run
    fmt = d.paramstyle == "format"

    def verbatim(text: str) -> str:
        # the driver %-formats the whole statement, literals included
        return text.replace("%", "%%") if fmt else text

    def placeholder(k: int) -> str:
        if d.paramstyle == "numeric":
            return f"${k}"
        if fmt:
            return "%s"
        return "?"

    while i < n:
        c = sql[i]
        if c == "'" or c == '"' or (c == "`" and d.backticks):
            # strings and quoted identifiers: a doubled quote escapes it
            backslash = d.backslash_escapes or (
                c == "'" and d.dollar_quotes and i > 0 and sql[i - 1] in "eE"
            )
            j = i + 1
            while j < n:
                ch = sql[j]
                if backslash and ch == "\\" and c == "'":
                    j += 2
                    continue
                if ch == c:
                    if j + 1 < n and sql[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
            continue
        if (c == "-" and sql.startswith("--", i)) or (c == "#" and d.hash_comments):
            j = sql.find("\n", i)
            i = n if j < 0 else j + 1
            continue
        if c == "/" and sql.startswith("/*", i):
            depth = 1
            j = i + 2
            while j < n and depth:
                if sql.startswith("*/", j):
                    depth -= 1
                    j += 2
                elif d.nested_comments and sql.startswith("/*", j):
                    depth += 1
                    j += 2
                else:
                    j += 1
            i = j
            continue
        if c == "$" and d.dollar_quotes:
            if i == 0 or not _ident_char(sql[i - 1]):
                j = _skip_dollar(sql, i)
                if j != i:
                    i = j
                    continue
            i += 1
            continue
        if c == "?":
            out.append(verbatim(sql[start:i]))
            if i + 1 < n and sql[i + 1] == "?":
                out.append("?")
                i += 2
                start = i
                continue
            if names:
                raise QueryError("a statement cannot mix '?' and ':name' placeholders")
            positional += 1
            out.append(placeholder(positional))
            i += 1
            start = i
            continue
        if c == ":":
            if i + 1 < n and sql[i + 1] == ":":
                i += 2
                continue
            if (
                i + 1 < n
                and (sql[i + 1].isalpha() or sql[i + 1] == "_")
                and (i == 0 or sql[i - 1] != ":")
            ):
                j = i + 1
                while j < n and _ident_char(sql[j]):
                    j += 1
                name = sql[i + 1 : j]
                if positional:
                    raise QueryError("a statement cannot mix '?' and ':name' placeholders")
                out.append(verbatim(sql[start:i]))
                if d.paramstyle == "numeric":
                    k = index.get(name)
                    if k is None:
                        names.append(name)
                        k = index[name] = len(names)
                    out.append(f"${k}")
                else:
                    names.append(name)
                    out.append(placeholder(len(names)))
                i = j
                start = i
                continue
            i += 1
            continue
        i += 1
    out.append(verbatim(sql[start:]))
    text = "".join(out)
    if names:
        return Translated(text, tuple(names), len(names))
    return Translated(text, None, positional)


def translate(sql: str, dialect: Dialect) -> Translated:
    """Rewrite ``sql``'s placeholders for ``dialect`` (cached)."""
    cache = _caches.get(dialect)
    if cache is None:
        cache = _caches[dialect] = {}
    hit = cache.get(sql)
    if hit is not None:
        return hit
    if not isinstance(sql, str):
        raise TypeError(f"sql must be a str, not {type(sql).__name__}")
    result = _scan(sql, dialect)
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[sql] = result
    return result


def bind(t: Translated, args: Sequence[Any]) -> Sequence[Any]:
    """Arrange the caller's arguments the way the translated statement wants them."""
    if t.names is None:
        if len(args) != t.nparams:
            raise QueryError(
                f"the statement has {t.nparams} '?' placeholder(s) but {len(args)} argument(s) "
                "were given"
            )
        return args
    if len(args) != 1 or not isinstance(args[0], Mapping):
        raise QueryError("a statement with ':name' placeholders takes one mapping of values")
    values = args[0]
    try:
        return [values[name] for name in t.names]
    except KeyError as exc:
        raise QueryError(f"no value for placeholder :{exc.args[0]}") from None


def split_statements(script: str, dialect: Dialect) -> list[str]:
    """Split a script on ``;`` outside literals, quoted names, dollar quotes and comments."""
    out: list[str] = []
    n = len(script)
    i = start = 0
    d = dialect
    while i < n:
        c = script[i]
        if c in "'\"" or (c == "`" and d.backticks):
            j = i + 1
            while j < n:
                if d.backslash_escapes and script[j] == "\\":
                    j += 2
                    continue
                if script[j] == c:
                    if j + 1 < n and script[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            i = j + 1
        elif (c == "-" and script.startswith("--", i)) or (c == "#" and d.hash_comments):
            j = script.find("\n", i)
            i = n if j < 0 else j + 1
        elif c == "/" and script.startswith("/*", i):
            j = script.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == "$" and d.dollar_quotes and (i == 0 or not _ident_char(script[i - 1])):
            j = _skip_dollar(script, i)
            i = j if j != i else i + 1
        elif c == ";":
            out.append(script[start:i])
            i += 1
            start = i
        else:
            i += 1
    out.append(script[start:])
    return [s.strip() for s in out if _has_code(s, d)]


def _has_code(text: str, d: Dialect) -> bool:
    """True unless ``text`` is only whitespace and comments."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
        elif text.startswith("--", i) or (c == "#" and d.hash_comments):
            j = text.find("\n", i)
            i = n if j < 0 else j + 1
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            i = n if j < 0 else j + 2
        else:
            return True
    return False
