"""The ``config`` detector: is a configuration file usable?

``ConfigDetector(name, path, format=None, required=None, types=None,
env=None, environ=None)`` reads ``path`` and checks it:

- ``format``: ``toml``, ``yaml``, ``json``, ``ini`` or ``env``; by default
  told by the name (``.toml``; ``.yaml``/``.yml``; ``.json``; ``.ini``/
  ``.cfg``; ``.env``, ``.env.local``...). YAML is read with
  ``yaml.safe_load``; INI with :mod:`configparser` (no interpolation), its
  sections as tables; ``.env`` as ``KEY=VALUE`` lines (``#`` comments, an
  optional ``export`` before the name, values optionally in single quotes
  (kept as written) or double quotes (``\\n``, ``\\"``, ``\\\\`` escapes;
  may span lines)).
- ``required``: dotted keys that must be there (``database.url``). In an
  INI file the last dot parts the section from the option (``server.http.port``
  is option ``port`` of ``[server.http]``, unless a section has the whole
  name; options match in any case, as :mod:`configparser` has it); a
  ``.env`` key is the variable's name.
- ``types``: dotted key -> ``string``, ``integer``, ``number``,
  ``boolean``, ``array`` or ``table``; a key absent and not required is
  fine. INI and ``.env`` values are text: ``integer``, ``number`` and
  ``boolean`` mean the text reads as one (``configparser``'s booleans:
  1/yes/true/on, 0/no/false/off); they have no arrays, and ``.env`` no tables.
- ``env``: environment variables that must be set and not blank, looked up
  in ``environ`` (default: this process's environment, at each check).

Every problem of one check is in the evidence (``problems``); the first is
the fault, a :class:`~flowsight.model.faults.ConfigurationError` whose
``config_key`` says what is wrong:

- the file missing, unreadable or not parseable: ``<path>``, the message
  giving the parser's line and column
  (``app.toml: line 3, column 7: expected '=' after a key ...``);
- a key missing or of the wrong type: ``<path>:<dotted key>``
  (``app.toml:database.url``), ``path`` as given to the detector; a wrong
  type has evidence ``expected`` and ``found`` (type names only: a value
  may be a secret, so none is ever shown);
- an environment variable not set or blank: ``$<NAME>``.
"""

from __future__ import annotations

import asyncio
import configparser
import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml

from flowsight.options.fields import Options, Opt, array, choice, nonempty_string, string_table
from flowsight.detectors.tcp import check_name
from flowsight.model.faults import ConfigurationError, Fault

__all__ = ["FORMATS", "TYPES", "ConfigDetector", "Problem", "check_keys", "guess_format", "parse_config", "parse_env"]

FORMATS = ("toml", "yaml", "json", "ini", "env")
TYPES = ("string", "integer", "number", "boolean", "array", "table")
_BY_SUFFIX = {
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".ini": "ini",
    ".cfg": "ini",
    ".env": "env",
}
#: the types a format cannot have
_NOT_IN = {"ini": ("array",), "env": ("array", "table")}
_TEXTUAL = ("ini", "env")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_A = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "array": "an array",
    "table": "a table",
    "null": "null",
    "datetime": "a date/time",
}
_INTEGER = re.compile(r"[+-]?[0-9]+")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong: what the fault would be about, a message, evidence."""

    config_key: str
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"config_key": self.config_key, "message": self.message, **self.evidence}


class SyntaxProblem(ValueError):
    """A file its parser refuses: where (1-based; 0 when not known) and why."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column

    def where(self) -> str:
        if self.line and self.column:
            return f"line {self.line}, column {self.column}: "
        return f"line {self.line}: " if self.line else ""


def guess_format(path: str) -> str | None:
    """The format a file's name tells (None: it tells none)."""
    base = os.path.basename(path).lower()
    if base == ".env" or base.startswith(".env."):
        return "env"
    return _BY_SUFFIX.get(os.path.splitext(base)[1])


# ---- parsing ---------------------------------------------------------------------------
def parse_config(text: str, format: str) -> Any:
    """The document ``text`` holds, in ``format`` (an INI file: section ->
    option -> text; ``.env``: name -> text).

    Raises:
        SyntaxProblem: the parser refused it.
    """
    if format == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise _toml_problem(exc, text) from None
    if format == "yaml":
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise _yaml_problem(exc) from None
        return {} if doc is None else doc  # an empty file: an empty mapping, as applications read it
    if format == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SyntaxProblem(_lower_first(exc.msg), exc.lineno, exc.colno) from None
    if format == "ini":
        return _parse_ini(text)
    return parse_env(text)


_TOML_AT = re.compile(r"(.*) \(at line (\d+), column (\d+)\)", re.DOTALL)


def _toml_problem(exc: tomllib.TOMLDecodeError, text: str) -> SyntaxProblem:
    message = str(exc)
    if m := _TOML_AT.fullmatch(message):
        return SyntaxProblem(_lower_first(m.group(1)), int(m.group(2)), int(m.group(3)))
    if message.endswith(" (at end of document)"):
        lines = text.split("\n")
        return SyntaxProblem(
            _lower_first(message.removesuffix(" (at end of document)")) + " (at the end)",
            len(lines),
            len(lines[-1]) + 1,
        )
    return SyntaxProblem(_lower_first(message))


def _yaml_problem(exc: yaml.YAMLError) -> SyntaxProblem:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return SyntaxProblem(str(exc))
    message = exc.problem or str(exc)
    if exc.context:
        since = f", from line {exc.context_mark.line + 1}" if exc.context_mark is not None else ""
        message += f" ({exc.context}{since})"
    return SyntaxProblem(message, exc.problem_mark.line + 1, exc.problem_mark.column + 1)


def _parse_ini(text: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.MissingSectionHeaderError as exc:
        raise SyntaxProblem("expected a [section] header before the first option", exc.lineno) from None
    except configparser.ParsingError as exc:
        line = exc.errors[0][0] if exc.errors else 0
        raise SyntaxProblem("expected 'option = value', '[section]' or a comment", line) from None
    except configparser.DuplicateOptionError as exc:
        raise SyntaxProblem(
            f"option {exc.option!r} appears twice in section [{exc.section}]", exc.lineno or 0
        ) from None
    except configparser.DuplicateSectionError as exc:
        raise SyntaxProblem(f"section [{exc.section}] appears twice", exc.lineno or 0) from None
    except configparser.Error as exc:
        raise SyntaxProblem(str(exc)) from None
    doc = {section: dict(parser[section]) for section in parser.sections()}
    if parser.defaults():
        doc[parser.default_section] = dict(parser.defaults())
    return doc


def parse_env(text: str) -> dict[str, str]:
    """A ``.env`` file's variables (syntax: see the module docstring).

    Raises:
        SyntaxProblem: a line that is not ``NAME=value``, or a quote never closed.
    """
    out: dict[str, str] = {}
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        body = line.lstrip()  # the right end kept: inside quotes, trailing white space is the value's
        if not body.rstrip() or body.startswith("#"):
            continue
        if re.match(r"export\s", body):
            body = body[len("export") :].lstrip()
        key, eq, value = body.partition("=")
        key = key.strip()
        if not eq or not _ENV_KEY.fullmatch(key):
            raise SyntaxProblem("expected NAME=value", i, len(line) - len(line.lstrip()) + 1)
        value = value.lstrip()
        quote = value[:1]
        if quote not in ("'", '"'):
            out[key] = re.split(r"\s#", value, maxsplit=1)[0].rstrip()  # " # ..." ends a bare value
            continue
        start, column = i, line.index(quote, line.index("=")) + 1
        rest = value[1:]
        while (end := _closing(rest, quote)) < 0:
            if i >= len(lines):
                raise SyntaxProblem(f"the {quote} quote opened here is never closed", start, column)
            rest += "\n" + lines[i]
            i += 1
        after = rest[end + 1 :].strip()
        if after and not after.startswith("#"):
            raise SyntaxProblem(f"unexpected text after the closing {quote} quote", i)
        out[key] = rest[:end] if quote == "'" else _unescape(rest[:end])
    return out


def _closing(text: str, quote: str) -> int:
    """Where the closing ``quote`` is in ``text`` (-1: not there); inside
    double quotes a backslash escapes the next character."""
    j = 0
    while j < len(text):
        if text[j] == "\\" and quote == '"':
            j += 2
            continue
        if text[j] == quote:
            return j
        j += 1
    return -1


def _unescape(text: str) -> str:
    return re.sub(
        r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)), text, flags=re.DOTALL
    )


def _lower_first(message: str) -> str:
    """Parsers begin their messages with a capital; after ``line 3, column 7:`` it reads better without."""
    if len(message) > 1 and message[0].isupper() and message[1].islower():
        return message[0].lower() + message[1:]
    return message


# ---- the pure checks -------------------------------------------------------------------
_TYPE_NAMES: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "table"),
    (type(None), "null"),
)  # bool before int: it is one


def type_name(value: Any) -> str:
    """A parsed value's type, in the names of ``types``."""
    for cls, name in _TYPE_NAMES:
        if isinstance(value, cls):
            return name
    return "datetime" if hasattr(value, "isoformat") else type(value).__name__


def is_type(value: Any, expected: str, textual: bool = False) -> bool:
    """Whether ``value`` is of type ``expected``; ``textual`` (INI, ``.env``):
    text stands for the number or boolean it reads as."""
    if textual and isinstance(value, str):
        text = value.strip()
        if expected == "integer":
            return _INTEGER.fullmatch(text) is not None
        if expected == "number":
            try:
                float(text)
            except ValueError:
                return False
            return True
        if expected == "boolean":
            return text.lower() in configparser.ConfigParser.BOOLEAN_STATES
    found = type_name(value)
    return found == expected or (expected == "number" and found == "integer")


def _lookup(doc: Any, key: str, format: str) -> tuple[bool, Any, str]:
    """(found, value, why not found) of dotted ``key`` in ``doc``."""
    if format == "env" or (format == "ini" and key in doc):
        parts = [key]  # a variable, or a whole section
    elif format == "ini":
        section, _, option = key.rpartition(".")
        parts = [section, option.lower()] if section else [option]
    else:
        parts = key.split(".")
    node = doc
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            above = ".".join(parts[:i]) or "the top level"
            return False, None, f"{above} is {_A.get(type_name(node), type_name(node))}, not a table"
        if part not in node:
            return False, None, ""
        node = node[part]
    return True, node, ""


def check_keys(doc: Any, format: str, path: str, required: Iterable[str], types: Mapping[str, str]) -> list[Problem]:
    """The keys of ``doc`` (parsed from ``path``) that are missing or of the wrong type."""
    problems: list[Problem] = []
    missing: set[str] = set()
    for key in required:
        found, _, why = _lookup(doc, key, format)
        if not found:
            missing.add(key)
            problems.append(
                Problem(
                    f"{path}:{key}",
                    f"{path}: {key} is missing" + (f" ({why})" if why else ""),
                    {"key": key, "problem": "missing"},
                )
            )
    for key, expected in types.items():
        found, value, _ = _lookup(doc, key, format)
        if not found or key in missing or is_type(value, expected, format in _TEXTUAL):
            continue
        actual = type_name(value)
        reads = " that does not read as one" if format in _TEXTUAL and actual == "string" else ""
        problems.append(
            Problem(
                f"{path}:{key}",
                f"{path}: {key} must be {_A[expected]}, found {_A.get(actual, actual)}{reads}",
                {"key": key, "problem": "wrong type", "expected": expected, "found": actual},
            )
        )
    return problems


def check_environment(names: Iterable[str], environ: Mapping[str, str]) -> list[Problem]:
    """The variables of ``names`` not set, or blank, in ``environ``."""
    problems = []
    for name in names:
        value = environ.get(name)
        if value is None or not value.strip():
            what = "not set" if value is None else "blank"
            problems.append(
                Problem(f"${name}", f"environment variable {name} is {what}", {"variable": name, "problem": what})
            )
    return problems


# ---- the detector ----------------------------------------------------------------------
class ConfigDetector:
    """See the module docstring.

    Raises:
        ValueError: an option is not what it must be (the message names it).
    """

    KIND: ClassVar[str] = "config"
    OPTIONS: ClassVar[Options] = {
        "path": Opt(nonempty_string, required=True, path=True),
        "format": Opt(choice(FORMATS)),
        "required": Opt(array(nonempty_string)),
        "types": Opt(string_table),
        "env": Opt(array(nonempty_string)),
    }

    def __init__(
        self,
        name: str,
        *,
        path: str | os.PathLike[str],
        format: str | None = None,
        required: Iterable[str] | None = None,
        types: Mapping[str, str] | None = None,
        env: Iterable[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.name = check_name(name)
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"detector {name!r}: path must be the configuration file's path, got {path!r}")
        self.path = os.fspath(path)
        if format is None:
            format = guess_format(self.path)
            if format is None:
                raise ValueError(
                    f"detector {name!r}: cannot tell the format of {self.path!r} from its name; "
                    f"set format to one of {', '.join(FORMATS)}"
                )
        elif format not in FORMATS:
            raise ValueError(f"detector {name!r}: format must be one of {', '.join(FORMATS)}; got {format!r}")
        self.format = format
        self.required = self._keys("required", required)
        if types is not None and not isinstance(types, Mapping):
            raise ValueError(f"detector {name!r}: types must be a table of dotted key -> type, got {types!r}")
        self.types = dict(types or {})
        self._keys("types", self.types)
        allowed = [t for t in TYPES if t not in _NOT_IN.get(format, ())]
        for key, expected in self.types.items():
            if expected not in allowed:
                raise ValueError(
                    f"detector {name!r}: types[{key!r}] must be one of {', '.join(allowed)} "
                    f"(in a {format} file); got {expected!r}"
                )
        self.env = self._names(env)
        if environ is not None and not isinstance(environ, Mapping):
            raise ValueError(f"detector {name!r}: environ must be a mapping of variable names to values")
        self.environ = environ

    def _keys(self, option: str, keys: Iterable[str] | None) -> list[str]:
        if keys is None:
            return []
        listed = list(keys) if not isinstance(keys, str) else None
        if listed is None or not all(isinstance(k, str) and k and "" not in k.split(".") for k in listed):
            raise ValueError(
                f"detector {self.name!r}: {option} must be a list of dotted keys such as 'database.url', got {keys!r}"
            )
        return listed

    def _names(self, names: Iterable[str] | None) -> list[str]:
        listed = [] if names is None else list(names) if not isinstance(names, str) else None
        if listed is None or not all(isinstance(n, str) and _ENV_NAME.fullmatch(n) for n in listed):
            raise ValueError(
                f"detector {self.name!r}: env must be a list of environment variable names such "
                f"as 'DATABASE_URL', got {names!r}"
            )
        return listed

    async def detect(self) -> Fault | None:
        """Read and check the file once: None when all is well, else the fault."""
        doc, problem = await asyncio.to_thread(self._load)
        problems = (
            [problem] if problem is not None else check_keys(doc, self.format, self.path, self.required, self.types)
        )
        problems += check_environment(self.env, os.environ if self.environ is None else self.environ)
        if not problems:
            return None
        first = problems[0]
        more = len(problems) - 1
        message = first.message + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
        return Fault(
            ConfigurationError(first.config_key),
            message,
            detector=self.name,
            evidence={**first.evidence, "problems": [p.as_json() for p in problems]},
        )

    def _load(self) -> tuple[Any, Problem | None]:
        """The parsed file, or the problem that prevents it (blocking)."""
        path = self.path
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None, Problem(path, f"{path}: missing", {"problem": "missing"})
        except OSError as exc:
            return None, Problem(
                path, f"{path}: cannot be read ({exc.strerror})", {"problem": "unreadable", "error": str(exc)}
            )
        try:
            text = data.decode("utf-8-sig")
            return parse_config(text, self.format), None
        except UnicodeDecodeError as exc:
            bad = exc.object  # what was decoded: past the byte-order mark, if any
            error = SyntaxProblem(f"not UTF-8 text (byte 0x{bad[exc.start]:02x})", bad.count(b"\n", 0, exc.start) + 1)
        except SyntaxProblem as exc:
            error = exc
        return None, Problem(
            path,
            f"{path}: {error.where()}{error.message}",
            {"problem": "syntax", "line": error.line, "column": error.column, "error": error.message},
        )
