"""Where each field of a TOML document is written: its line.

:mod:`tomllib` parses but forgets positions, so this scans the same text a
second time, only to note the line of every table header, key and array
element. It runs after :mod:`tomllib` accepted the text, so it may assume
the document is valid TOML and stays small: no value is decoded, only
skipped (strings, arrays, inline tables, scalars).

A path is a tuple of keys (``str``) and array indices (``int``), the same
shape as the value's place in :func:`tomllib.loads`' result:
``("alerting", "receivers", 1, "url")``.
"""

from __future__ import annotations

import re
import tomllib

Path = tuple[str | int, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_WS = " \t"


def format_path(path: Path) -> str:
    """``alerting.receivers[1].url``; keys that are not bare are quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        key = part if _BARE.fullmatch(part) else '"' + part.replace("\\", "\\\\").replace('"', '\\"') + '"'
        out += ("." if out else "") + key
    return out


def locate(text: str) -> dict[Path, int]:
    """The line (1-based) where each path in ``text`` is first written.

    Tables created implicitly (``[a.b.c]`` creates ``a`` and ``a.b``) get the
    line of their first mention. ``text`` must be valid TOML; should the
    scan still stumble on something, the lines found so far are returned (a
    problem is then reported at its nearest ancestor's line), never an error.
    """
    scanner = _Scanner(text)
    try:
        return scanner.run()
    except (ValueError, IndexError, AssertionError, tomllib.TOMLDecodeError):
        return scanner.lines


class _Scanner:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.lines: dict[Path, int] = {}
        self.aot: dict[Path, int] = {}  # array-of-tables path -> its last index

    # ---- positions ---------------------------------------------------------
    def line(self) -> int:
        return self.s.count("\n", 0, self.i) + 1

    def note(self, path: Path, line: int) -> None:
        for n in range(1, len(path) + 1):
            self.lines.setdefault(path[:n], line)

    # ---- the document ------------------------------------------------------
    def run(self) -> dict[Path, int]:
        table: Path = ()
        while True:
            self.skip_blank()
            if self.i >= len(self.s):
                return self.lines
            line = self.line()
            if self.s.startswith("[[", self.i):
                self.i += 2
                keys = self.key()
                self.i = self.s.index("]]", self.i) + 2
                base = self.resolve(keys[:-1])
                arr = (*base, keys[-1])
                index = self.aot.get(arr, -1) + 1
                self.aot[arr] = index
                table = (*arr, index)
                self.note(table, line)
            elif self.s.startswith("[", self.i):
                self.i += 1
                keys = self.key()
                self.i = self.s.index("]", self.i) + 1
                table = self.resolve(keys)
                self.note(table, line)
            else:
                self.keyval(table)

    def resolve(self, keys: list[str]) -> Path:
        """The path of a header's keys: an array of tables on the way means
        its last element (``[[a.b]]`` then ``[a.b.c]`` is ``a.b[last].c``)."""
        path: Path = ()
        for k in keys:
            path = (*path, k)
            if path in self.aot:
                path = (*path, self.aot[path])
        return path

    def keyval(self, table: Path) -> None:
        line = self.line()
        path = (*table, *self.key())
        self.note(path, line)
        self.skip_ws()
        self.i += 1  # '='
        self.value(path)

    def key(self) -> list[str]:
        """A dotted key, left just after it (before ``=`` or ``]``)."""
        keys: list[str] = []
        while True:
            self.skip_ws()
            c = self.s[self.i]
            if c in "\"'":
                start = self.i
                self.skip_string()
                keys.append(tomllib.loads("k = " + self.s[start : self.i])["k"])
            else:
                m = _BARE.match(self.s, self.i)
                assert m is not None, f"not a key at offset {self.i}"
                keys.append(m.group())
                self.i = m.end()
            self.skip_ws()
            if self.i < len(self.s) and self.s[self.i] == ".":
                self.i += 1
                continue
            return keys

    # ---- values -----------------------------------------------------------
    def value(self, path: Path) -> None:
        self.skip_ws()
        c = self.s[self.i]
        if c in "\"'":
            self.skip_string()
        elif c == "[":
            self.i += 1
            index = 0
            while True:
                self.skip_blank()
                if self.s[self.i] == "]":
                    self.i += 1
                    return
                self.note((*path, index), self.line())
                self.value((*path, index))
                index += 1
                self.skip_blank()
                if self.s[self.i] == ",":
                    self.i += 1
        elif c == "{":
            self.i += 1
            while True:
                self.skip_ws()
                if self.s[self.i] == "}":
                    self.i += 1
                    return
                if self.s[self.i] == ",":
                    self.i += 1
                    continue
                self.keyval(path)
        else:  # number, boolean, date and time: up to what can end a value
            while self.i < len(self.s) and self.s[self.i] not in ",]}#\r\n":
                self.i += 1

    def skip_string(self) -> None:
        q = self.s[self.i]
        if self.s.startswith(q * 3, self.i):
            end = self.i + 3
            while True:
                end = self.s.index(q * 3, end)
                if q == '"' and _escaped(self.s, end):
                    end += 1
                    continue
                break
            end += 3
            while end < len(self.s) and self.s[end] == q:  # up to two quotes may close the content
                end += 1
            self.i = end
            return
        end = self.i + 1
        while True:
            end = self.s.index(q, end)
            if q == '"' and _escaped(self.s, end):
                end += 1
                continue
            break
        self.i = end + 1

    def skip_ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def skip_blank(self) -> None:
        """Whitespace, newlines and comments."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r\n":
                self.i += 1
            elif c == "#":
                nl = self.s.find("\n", self.i)
                self.i = len(self.s) if nl < 0 else nl
            else:
                return


def _escaped(s: str, i: int) -> bool:
    """Whether the quote at ``i`` is escaped (an odd number of backslashes before it)."""
    n = 0
    while i - n - 1 >= 0 and s[i - n - 1] == "\\":
        n += 1
    return n % 2 == 1
