"""The config detector on real files of each format: a syntax error, a
missing key, a wrong type and a missing environment variable are each
found, and all is well again once mended."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.detectors.config import ConfigDetector, SyntaxProblem, guess_format, parse_env
from flowsight.model.faults import ConfigurationError, Fault
from tests.helpers import run

ENVIRON = {"APP_SECRET": "s3cret"}


def check(detector: ConfigDetector) -> Fault | None:
    return run(detector.detect)


@dataclass(frozen=True)
class Case:
    """One format: a good file, the same broken four ways, and what is reported."""

    file: str
    good: str
    syntax: str
    syntax_error: str  # what follows "<path>: "
    no_url: str  # the url key left out
    bad_port: str  # the port of the wrong type
    url: str = "database.url"
    port: str = "database.port"
    found: str = "string"


CASES = [
    Case(
        "app.toml",
        good='[database]\nurl = "postgres://db/app"\nport = 5432\n\n[workers]\ncount = 4\n',
        syntax='[database]\nurl = "postgres://db/app"\nport 5432\n',
        syntax_error="line 3, column 6: expected '=' after a key in a key/value pair",
        no_url="[database]\nport = 5432\n",
        bad_port='[database]\nurl = "postgres://db/app"\nport = "5432"\n',
    ),
    Case(
        "app.yaml",
        good="database:\n  url: postgres://db/app\n  port: 5432\nworkers:\n  count: 4\n",
        syntax="database:\n  url: postgres://db/app\n  port: [5432\nworkers:\n  count: 4\n",
        syntax_error="line 4, column 8: expected ',' or ']', but got ':' (while parsing a flow sequence, from line 3)",
        no_url="database:\n  port: 5432\n",
        bad_port="database:\n  url: postgres://db/app\n  port: [5432]\n",
        found="array",
    ),
    Case(
        "app.json",
        good='{"database": {"url": "postgres://db/app", "port": 5432}}',
        syntax='{"database": {"url": "postgres://db/app",\n "port": 5432\n "x": 1}}',
        syntax_error="line 3, column 2: expecting ',' delimiter",
        no_url='{"database": {"port": 5432}}',
        bad_port='{"database": {"url": "postgres://db/app", "port": 5432.5}}',
        found="number",
    ),
    Case(
        "app.ini",
        good="[database]\nurl = postgres://db/app\nPort = 5432\n\n[workers]\ncount = 4\n",
        syntax="[database]\nurl = postgres://db/app\nport\n",
        syntax_error="line 3: expected 'option = value', '[section]' or a comment",
        no_url="[database]\nport = 5432\n",
        bad_port="[database]\nurl = postgres://db/app\nport = fifty\n",
    ),
    Case(
        ".env",
        good='# the app\nexport DATABASE_URL="postgres://db/app"\nDATABASE_PORT=5432 # default\n',
        syntax="DATABASE_URL='postgres://db/app\nDATABASE_PORT=5432\n",
        syntax_error="line 1, column 14: the ' quote opened here is never closed",
        no_url="DATABASE_PORT=5432\n",
        bad_port="DATABASE_URL=postgres://db/app\nDATABASE_PORT=5432.0\n",
        url="DATABASE_URL",
        port="DATABASE_PORT",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_each_problem_is_found_and_mended(tmp_path: Path, case: Case) -> None:
    path = tmp_path / case.file
    environ = dict(ENVIRON)
    detector = ConfigDetector(
        name="app-config",
        path=str(path),
        required=[case.url, case.port],
        types={case.port: "integer"},
        env=["APP_SECRET"],
        environ=environ,
    )
    p = str(path)

    path.write_text(case.good)
    assert check(detector) is None

    path.write_text(case.syntax)
    fault = check(detector)
    assert fault is not None and fault.type == ConfigurationError(p) and fault.detector == "app-config"
    assert fault.message == f"{p}: {case.syntax_error}"
    assert fault.evidence["problem"] == "syntax" and fault.evidence["line"] > 0

    path.write_text(case.no_url)
    fault = check(detector)
    assert fault is not None and fault.type == ConfigurationError(f"{p}:{case.url}")
    assert fault.message == f"{p}: {case.url} is missing"
    assert fault.evidence["key"] == case.url and fault.evidence["problem"] == "missing"

    path.write_text(case.bad_port)
    fault = check(detector)
    assert fault is not None and fault.type == ConfigurationError(f"{p}:{case.port}")
    assert fault.evidence["expected"] == "integer" and fault.evidence["found"] == case.found
    assert fault.message.startswith(f"{p}: {case.port} must be an integer, found a")
    assert "5432" not in fault.message and "fifty" not in fault.message  # values may be secrets: never shown

    path.write_text(case.good)
    del environ["APP_SECRET"]
    fault = check(detector)
    assert fault is not None and fault.type == ConfigurationError("$APP_SECRET")
    assert fault.message == "environment variable APP_SECRET is not set"
    environ["APP_SECRET"] = "  "
    fault = check(detector)
    assert fault is not None and fault.message == "environment variable APP_SECRET is blank"

    environ["APP_SECRET"] = "s3cret"
    assert check(detector) is None


def test_all_problems_of_one_check_are_in_the_evidence_the_first_is_the_fault(tmp_path: Path) -> None:
    path = tmp_path / "app.toml"
    path.write_text('[database]\nport = "5432"\n')
    detector = ConfigDetector(
        name="c",
        path=path,
        required=["database.url", "database.port"],
        types={"database.port": "integer", "workers.count": "integer"},
        env=["APP_SECRET", "APP_TOKEN"],
        environ={"APP_TOKEN": "t"},
    )
    fault = check(detector)
    assert fault is not None and fault.target == f"{path}:database.url"
    assert fault.message == f"{path}: database.url is missing (and 2 more problems)"
    assert [p["config_key"] for p in fault.evidence["problems"]] == [
        f"{path}:database.url",
        f"{path}:database.port",
        "$APP_SECRET",
    ]
    assert fault.evidence["problems"][1] == {
        "config_key": f"{path}:database.port",
        "key": "database.port",
        "problem": "wrong type",
        "expected": "integer",
        "found": "string",
        "message": f"{path}: database.port must be an integer, found a string",
    }


def test_a_missing_or_unreadable_file_is_a_configuration_error_of_its_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.yaml"
    detector = ConfigDetector(name="c", path=path, required=["a"], env=["X"], environ={})
    fault = check(detector)
    assert fault is not None and fault.type == ConfigurationError(str(path))
    assert fault.message == f"{path}: missing (and 1 more problem)"
    assert [p["config_key"] for p in fault.evidence["problems"]] == [str(path), "$X"]

    path.mkdir()  # a folder where the file should be
    fault = check(ConfigDetector(name="c", path=path))
    assert fault is not None and fault.type == ConfigurationError(str(path))
    assert fault.message.startswith(f"{path}: cannot be read (") and fault.evidence["problem"] == "unreadable"


def test_text_that_is_not_utf8_is_a_syntax_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "app.json"
    path.write_bytes(b'{\n"a": "\xff"}')
    fault = check(ConfigDetector(name="c", path=path))
    assert fault is not None and fault.message == f"{path}: line 2: not UTF-8 text (byte 0xff)"


def test_a_key_under_a_value_that_is_not_a_table_says_why(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("database: postgres://db/app\n")
    fault = check(ConfigDetector(name="c", path=path, required=["database.url"]))
    assert fault is not None
    assert fault.message == f"{path}: database.url is missing (database is a string, not a table)"
    path.write_text("- a\n- b\n")
    fault = check(ConfigDetector(name="c", path=path, required=["database"]))
    assert fault is not None and fault.message.endswith("(the top level is an array, not a table)")


@pytest.mark.parametrize(
    ("text", "types", "ok"),
    [
        ("a = 1", {"a": "integer"}, True),
        ("a = 1", {"a": "number"}, True),
        ("a = 1.5", {"a": "integer"}, False),
        ("a = true", {"a": "integer"}, False),
        ("a = true", {"a": "boolean"}, True),
        ("a = [1]", {"a": "array"}, True),
        ("[a]\nb = 1", {"a": "table", "a.b": "integer"}, True),
        ("a = 1979-05-27", {"a": "string"}, False),
        ("a = 'x'", {"b": "integer"}, True),  # absent and not required: fine
    ],
)
def test_toml_types(tmp_path: Path, text: str, types: dict[str, str], ok: bool) -> None:
    (tmp_path / "t.toml").write_text(text + "\n")
    assert (check(ConfigDetector(name="c", path=tmp_path / "t.toml", types=types)) is None) == ok


@pytest.mark.parametrize(
    ("value", "kind", "ok"),
    [
        ("42", "integer", True),
        ("-7", "integer", True),
        ("4.2", "integer", False),
        ("4.2", "number", True),
        ("1e3", "number", True),
        ("lots", "number", False),
        ("yes", "boolean", True),
        ("Off", "boolean", True),
        ("maybe", "boolean", False),
        ("anything", "string", True),
    ],
)
def test_ini_text_is_read_as_the_type_asked_for(tmp_path: Path, value: str, kind: str, ok: bool) -> None:
    (tmp_path / "app.cfg").write_text(f"[server.http]\nValue = {value}\n")
    detector = ConfigDetector(
        name="c",
        path=tmp_path / "app.cfg",
        required=["server.http.VALUE", "server.http"],
        types={"server.http.value": kind, "server.http": "table"},
    )
    assert (check(detector) is None) == ok


def test_ini_defaults_count_in_every_section(tmp_path: Path) -> None:
    (tmp_path / "app.ini").write_text("[DEFAULT]\ntimeout = 30\n\n[db]\nurl = x\n")
    assert (
        check(
            ConfigDetector(
                name="c",
                path=tmp_path / "app.ini",
                required=["db.timeout", "DEFAULT.timeout"],
                types={"db.timeout": "integer"},
            )
        )
        is None
    )


def test_env_file_syntax() -> None:
    text = (
        '# comment\n\nexport A=1\nB = \'single # kept \\n\'\nC="double \\"q\\"\\nline"  # comment\n'
        'D=bare value # comment\nE=a#b\nF=\nG="multi\nline"\n'
    )
    assert parse_env(text) == {
        "A": "1",
        "B": "single # kept \\n",
        "C": 'double "q"\nline',
        "D": "bare value",
        "E": "a#b",
        "F": "",
        "G": "multi\nline",
    }


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("A=1\njust words\n", 2, 1, "expected NAME=value"),
        ("A=1\n  1A=2\n", 2, 3, "expected NAME=value"),
        ('A="open\nB=2\n', 1, 3, 'the " quote opened here is never closed'),
        ("A='x' y\n", 1, 0, "unexpected text after the closing ' quote"),
    ],
)
def test_env_file_errors(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(SyntaxProblem) as caught:
        parse_env(text)
    assert (caught.value.line, caught.value.column, caught.value.message) == (line, column, message)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True),
        st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\r\x00"), max_size=20),
    )
)
def test_env_values_written_in_double_quotes_read_back(values: dict[str, str]) -> None:
    escaped = {k: v.replace("\\", "\\\\").replace('"', '\\"') for k, v in values.items()}
    assert parse_env("".join(f'{k}="{v}"\n' for k, v in escaped.items())) == values


def test_the_format_is_told_by_the_name_or_given(tmp_path: Path) -> None:
    assert [
        guess_format(n)
        for n in [
            "a.toml",
            "a.YML",
            "a.yaml",
            "a.json",
            "a.ini",
            "setup.cfg",
            ".env",
            ".env.local",
            "prod.env",
            "a.conf",
        ]
    ] == ["toml", "yaml", "yaml", "json", "ini", "ini", "env", "env", "env", None]
    (tmp_path / "app.conf").write_text("a = 1\n")
    assert check(ConfigDetector(name="c", path=tmp_path / "app.conf", format="toml", required=["a"])) is None


def test_the_environment_of_this_process_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.json").write_text("{}")
    detector = ConfigDetector(name="c", path=tmp_path / "a.json", env=["FLOWSIGHT_TEST_VAR"])
    monkeypatch.delenv("FLOWSIGHT_TEST_VAR", raising=False)
    fault = check(detector)
    assert fault is not None and fault.target == "$FLOWSIGHT_TEST_VAR"
    monkeypatch.setenv("FLOWSIGHT_TEST_VAR", "1")
    assert check(detector) is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"path": "app.conf"}, "cannot tell the format of 'app.conf' from its name; set format to one of toml, "),
        ({"path": "a.toml", "format": "xml"}, "format must be one of toml, yaml, json, ini, env; got 'xml'"),
        ({"path": ""}, "path must be the configuration file's path"),
        ({"path": "a.toml", "required": "database.url"}, "required must be a list of dotted keys"),
        ({"path": "a.toml", "required": ["database..url"]}, "required must be a list of dotted keys"),
        (
            {"path": "a.toml", "types": {"a": "int"}},
            r"types\['a'\] must be one of string, integer, number, boolean, "
            r"array, table \(in a toml file\); got 'int'",
        ),
        (
            {"path": "a.ini", "types": {"a.b": "array"}},
            r"types\['a.b'\] must be one of string, integer, number, "
            r"boolean, table \(in a ini file\)",
        ),
        ({"path": ".env", "types": {"A": "table"}}, r"must be one of string, integer, number, boolean \(in a env"),
        ({"path": "a.toml", "env": ["NOT-A-NAME"]}, "env must be a list of environment variable names"),
        ({"path": "a.toml", "environ": ["A"]}, "environ must be a mapping"),
    ],
)
def test_options_are_checked_when_made(options: dict[str, Any], error: str) -> None:
    with pytest.raises(ValueError, match=error) as caught:
        ConfigDetector(name="c", **options)
    assert str(caught.value).startswith("detector 'c': ")
