"""Where fields are: :func:`flowsight.options.locate.locate` scans TOML a
second time (``tomllib`` forgets positions) and must find the line of every
key and array element, however the document is written."""

from __future__ import annotations

import json
import textwrap
import tomllib
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from flowsight.options.locate import Path, format_path, locate


def test_locate_counts_arrays_of_tables_and_skips_multiline_strings() -> None:
    text = textwrap.dedent('''\
        [alerting.route]
        receiver = "a"
        [[alerting.route.routes]]
        text = """
        fake = 1
        [not.a.header]
        """
        [[alerting.route.routes]]
        x = { y = 'z', "q.r" = [1,
          2] }
        [[alerting.route.routes.routes]]
        w = 1  # comment [x]
        ''')
    lines = locate(text)
    assert lines[("alerting", "route", "routes", 1)] == 8
    assert lines[("alerting", "route", "routes", 1, "x", "q.r", 1)] == 10
    assert lines[("alerting", "route", "routes", 1, "routes", 0, "w")] == 12
    assert ("not",) not in lines and ("alerting", "route", "routes", 0, "fake") not in lines
    assert format_path(("workflows", "a.b", "rules", 2)) == 'workflows."a.b".rules[2]'


def test_locate_never_raises_on_text_that_is_not_toml() -> None:
    assert locate('[a]\nb = "unterminated\n[c]\n') == {("a",): 1, ("a", "b"): 2}


# ---- any valid document --------------------------------------------------------------
# A generated document is written line by line, noting the line of every key
# and array element as it goes; locate must find the same lines.
_TEXT = st.characters(blacklist_categories=("Cc", "Cs"))  # what may stand unescaped in a TOML string
_TRICKY = "[]{}=#,.'\"\\\n "  # what a scanner may mistake for structure


def _chars(exclude: str = "", newlines: bool = False) -> st.SearchStrategy[str]:
    alphabet = st.one_of(_TEXT, st.sampled_from(_TRICKY if newlines else _TRICKY.replace("\n", "")))
    return st.text(alphabet.filter(lambda c: c not in exclude), max_size=8)


def _basic(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # without control characters, a TOML basic string


bare_keys = st.from_regex(r"[A-Za-z0-9_-]{1,6}", fullmatch=True)
_HEADERS = {"a", "b", *(f"{c}{i}" for c in "tsk" for i in range(10))}  # the tables documents() makes
scalars = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.sampled_from(["true", "false", "3.25", "-1e3", "inf", "nan", "0x1F", "1979-05-27T07:32:00Z", "07:32:00"]),
    _chars().map(_basic),
    _chars(exclude="'").map(lambda s: f"'{s}'"),
    _chars(exclude='"\\', newlines=True).map(lambda s: f'"""{s}"""'),
    _chars(exclude="'", newlines=True).map(lambda s: f"'''{s}'''"),
    # escapes, a line-ending backslash, quotes just before the closing ones
    _chars(newlines=True).map(lambda s: '"""' + s.replace("\\", "\\\\").replace('"', '\\"') + '\\\n  """""'),
    _chars(exclude="'", newlines=True).map(lambda s: f"'''{s}'''''"),
)


def _meaning(written: str) -> str:
    """The key a written key (bare, 'literal' or "basic") means."""
    return next(iter(tomllib.loads(f"{written} = 1")))


keys = st.one_of(bare_keys, bare_keys.map(lambda k: f"'{k} x'"), _chars().filter(bool).map(_basic)).filter(
    lambda k: _meaning(k) not in _HEADERS
)


class _Doc:
    def __init__(self, crlf: bool) -> None:
        self.parts: list[str] = []
        self.line = 1
        self.expected: dict[Path, int] = {}
        self.nl = "\r\n" if crlf else "\n"

    def write(self, text: str) -> None:
        self.parts.append(text.replace("\n", self.nl))
        self.line += text.count("\n")

    def expect(self, path: Path) -> None:
        self.expected.setdefault(path, self.line)


@st.composite
def values(draw: st.DrawFn, doc: _Doc, path: Path, depth: int = 0) -> None:
    """Writes a value for ``path`` (an array or inline table may nest)."""
    kind = draw(st.sampled_from(["scalar", "scalar", "array", "inline"] if depth < 2 else ["scalar"]))
    if kind == "scalar":
        doc.write(draw(scalars))
    elif kind == "array":
        doc.write("[")
        for i in range(draw(st.integers(0, 3))):
            doc.write(draw(st.sampled_from(["", " ", "\n  ", " # a [comment], = x\n  "])))
            doc.expect((*path, i))
            draw(values(doc, (*path, i), depth + 1))
            doc.write(draw(st.sampled_from([",", " ,", ",\n"])))
        doc.write(draw(st.sampled_from(["]", "\n]"])))
    else:  # inline tables stay on one line (only their values may span lines)
        doc.write("{")
        for j, key in enumerate(draw(st.lists(keys, max_size=3, unique_by=_meaning))):
            doc.write(", " if j else " ")
            doc.expect((*path, _meaning(key)))
            doc.write(f"{key} = ")
            draw(values(doc, (*path, _meaning(key)), 2))
        doc.write(" }")


@st.composite
def key_values(draw: st.DrawFn, doc: _Doc, table: Path) -> None:
    for key in draw(st.lists(keys, max_size=3, unique_by=_meaning)):
        doc.write(draw(st.sampled_from(["", "  ", "\n", "# comment = [x]\n"])))
        dotted = draw(st.booleans())
        path = (*table, _meaning(key), "v") if dotted else (*table, _meaning(key))
        doc.expect(path)
        doc.write(f"{key}{' . v' if dotted else ''}{draw(st.sampled_from(['=', ' = ', '	=  ']))}")
        draw(values(doc, path))
        doc.write(draw(st.sampled_from(["\n", "  # trailing\n"])))


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[Path, int]]:
    """A valid TOML document and the line of every path written in it."""
    doc = _Doc(crlf=draw(st.booleans()))
    draw(key_values(doc, ()))
    aot: dict[str, int] = {}  # array of tables -> its last index
    for i in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["table", "aot", "aot-sub", "aot-aot"]))
        name = draw(st.sampled_from(["a", "b"]))
        if kind in ("aot-sub", "aot-aot") and name not in aot:
            kind = "aot"
        sp = draw(st.sampled_from(["", " "]))
        if kind == "table":  # a new table each time: t0, t1 ... with a quoted sub-key
            path: Path = (f"t{i}", "sub key")
            header = f'[{sp}t{i}{sp}.{sp}"sub key"{sp}]'
        elif kind == "aot":
            aot[name] = aot.get(name, -1) + 1
            path = (name, aot[name])
            header = f"[[{sp}{name}{sp}]]"
        elif kind == "aot-sub":  # a sub-table of the last element, new each time
            path = (name, aot[name], f"s{i}")
            header = f"[{name}.s{i}]"
        else:  # an array of tables inside the last element
            key = (name, aot[name], f"k{i}")
            path = (*key, 0)
            header = f"[[{name}.k{i}]]"
        doc.write(draw(st.sampled_from(["", "\n", "# [not.a.header]\n"])))
        doc.expect(path)
        doc.write(header + draw(st.sampled_from(["\n", " # [x]\n"])))
        draw(key_values(doc, path))
    return "".join(doc.parts), doc.expected


@given(documents())
def test_locate_finds_the_line_of_every_key_and_element_of_any_valid_document(doc: tuple[str, dict[Path, int]]) -> None:
    text, expected = doc
    data = tomllib.loads(text)  # the generator writes valid TOML only
    lines = locate(text)
    for path, line in expected.items():
        assert lines.get(path) == line, (format_path(path), text)
    assert {p for p in _leaves(data) if p} <= set(lines)


def _leaves(value: Any, path: Path = ()) -> list[Path]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]
