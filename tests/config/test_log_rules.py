"""``[logs]`` and ``[[log_rules]]`` in flowsight.toml: the example loads into
ready rules; every bad rule is refused with the file, line, rule name and reason."""

from __future__ import annotations

import datetime as dt
import json
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.config import Config, ConfigFileError, load_config, parse_config
from flowsight.config.logs import DEFAULT_RETENTION, LogRuleConfig, LogSettings, LogSource
from flowsight.model.alerts import Severity
from flowsight.logs.absence import AbsenceRule
from flowsight.logs.alert_rules import FrequencyRule, MatchRule, NewTemplateRule, SpikeRule
from flowsight.logs.ruleset import LogRuleSet
from flowsight.logs.entries import LogEntry, LogLevel

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "flowsight.example.toml"
T0 = 1_717_243_200.0


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigFileError) as info:
        parse_config(textwrap.dedent(text), file="f.toml", base_dir="/etc/flowsight")
    return [str(p) for p in info.value.problems]


# ---- the example --------------------------------------------------------------------------
def test_the_example_file_loads_the_log_rules_as_ready_rules() -> None:
    cfg = load_config(EXAMPLE)
    rules = cfg.make_log_rules()
    assert [(type(r), r.name) for r in rules] == [
        (MatchRule, "DatabaseUnreachable"),
        (FrequencyRule, "TimeoutsPerRun"),
        (SpikeRule, "ErrorRateSpike"),
        (AbsenceRule, "BackupMissing"),
        (NewTemplateRule, "NewErrorShape"),
    ]
    db, timeouts, spike, backup, shapes = rules
    assert isinstance(timeouts, FrequencyRule) and isinstance(spike, SpikeRule)
    assert isinstance(backup, AbsenceRule)
    assert db.pattern == "connection (refused|reset) .*:5432" and db.level is LogLevel.ERROR
    assert db.severity is Severity.CRITICAL and db.group_by == ("workflow", "host")
    assert db.labels == {"team": "data"} and db.annotations == {"runbook_url": "https://wiki.example/db"}
    assert (timeouts.contains, timeouts.ignore_case, timeouts.threshold, timeouts.window, timeouts.group_by) == (
        "timed out",
        True,
        5,
        600.0,
        ("run_id",),
    )
    assert (spike.window, spike.factor, spike.direction, spike.min_count) == (900.0, 3.0, "up", 10)
    assert (backup.by, backup.timezone, backup.fields, backup.group_by) == (
        dt.time(3, 0),
        "Europe/Paris",
        {"workflow": "nightly-backup"},
        (),
    )
    assert shapes.level is LogLevel.WARN and shapes.realert == 1800.0
    text = EXAMPLE.read_text().splitlines()
    for rc in cfg.log_rules:  # each rule's line is its [[log_rules]] header
        assert text[rc.line - 1] == "[[log_rules]]" and text[rc.line] == f'name = "{rc.name}"'


def test_the_example_file_loads_the_logs_section() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.logs.retention == 14 * 86400.0
    assert [(s.path, s.workflow, s.start, s.multiline) for s in cfg.logs.sources] == [
        ("/var/log/etl/*.log", "nightly-etl", "end", True),
        ("/var/log/backup.log", None, "end", True),
    ]


def test_each_call_makes_rules_with_fresh_state() -> None:
    cfg = parse_config("[[log_rules]]\nname = 'e'\nkind = 'match'\ncontains = 'boom'\n")
    first, second = cfg.make_log_rules(), cfg.make_log_rules()
    assert first[0] is not second[0]
    e = LogEntry(T0, LogLevel.ERROR, "boom", "f")
    assert len(LogRuleSet(first, now=T0).evaluate(e, None, T0)) == 1
    assert len(LogRuleSet(second, now=T0).evaluate(e, None, T0)) == 1  # the cooldown was the other rule's


def test_without_the_sections_there_are_no_rules_and_default_log_settings() -> None:
    cfg = Config.default()
    assert cfg.log_rules == () and cfg.make_log_rules() == []
    assert cfg.logs == LogSettings(DEFAULT_RETENTION, ())
    assert parse_config("[logs]\n").logs == LogSettings()


def test_rule_options_are_converted() -> None:
    cfg = parse_config(
        textwrap.dedent("""
        [[log_rules]]
        name = "hb"
        kind = "absence"
        pattern = 'heartbeat \\d+'
        level = "WARNING"
        within = "1h30m"
        realert = 0
        fields = { host = "db1", pid = 42, ok = true }
        [[log_rules]]
        name = "backup"
        kind = "absence"
        by = 03:30:00
    """)
    )
    hb, backup = cfg.log_rules
    assert hb == LogRuleConfig(
        "hb",
        "absence",
        {
            "pattern": r"heartbeat \d+",
            "level": LogLevel.WARN,
            "within": 5400.0,
            "realert": 0.0,
            "fields": {"host": "db1", "pid": 42, "ok": True},
        },
        2,
    )
    assert backup.options == {"by": dt.time(3, 30)}


def test_relative_source_paths_are_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "flowsight.toml").write_text(
        "[[logs.sources]]\npath = 'logs/*.log'\nstart = 'beginning'\n[[logs.sources]]\npath = '~/app.log'\n"
    )
    a, b = load_config(tmp_path / "flowsight.toml").logs.sources
    assert a == LogSource(str(tmp_path / "logs" / "*.log"), None, "beginning", True, 1)
    assert b.path == str(Path("~/app.log").expanduser())


# ---- refusals ------------------------------------------------------------------------------
def rule(body: str, kind: str = "match", name: str = "r1") -> str:
    return f"[[log_rules]]\nname = '{name}'\nkind = '{kind}'\n{body}"


BAD = [
    pytest.param(
        rule("", kind="regex"),
        "f.toml:3: log_rules[0].kind: rule 'r1': expected one of 'match', "
        "'frequency', 'spike', 'absence', 'new_template', got string 'regex'",
        id="unknown-kind",
    ),
    pytest.param(
        "[[log_rules]]\nname = 'r1'\n",
        "f.toml:1: log_rules[0].kind: rule 'r1': missing; this field is "
        "required (one of match, frequency, spike, absence, new_template)",
        id="missing-kind",
    ),
    pytest.param(
        "[[log_rules]]\nkind = 'match'\n",
        "f.toml:1: log_rules[0].name: missing; this field is required",
        id="missing-name",
    ),
    pytest.param(
        rule("treshold = 3\nwindow = '1m'\nthreshold = 3\n", kind="frequency"),
        "f.toml:4: log_rules[0].treshold: rule 'r1': unknown field 'treshold'; did you mean 'threshold'?",
        id="unknown-key",
    ),
    pytest.param(
        rule("threshold = 3\n"),
        "f.toml:4: log_rules[0].threshold: rule 'r1': unknown field 'threshold'",
        id="key-of-another-kind",
    ),
    pytest.param(
        rule("pattern = 'timeout (after'\n"),
        "f.toml:4: log_rules[0].pattern: rule 'r1': invalid regex "
        "'timeout (after': missing ), unterminated subpattern at position 8",
        id="invalid-regex",
    ),
    pytest.param(
        rule("pattern = ''\n"),
        "f.toml:4: log_rules[0].pattern: rule 'r1': an empty pattern matches every line; leave pattern out instead",
        id="empty-regex",
    ),
    pytest.param(
        rule("pattern = 'a'\ncontains = 'b'\n"),
        "f.toml:5: log_rules[0].contains: rule 'r1': give pattern (a regex) or contains (a substring), not both",
        id="pattern-and-contains",
    ),
    pytest.param(
        rule("threshold = 3\nwindow = 'soon'\n", kind="frequency"),
        'f.toml:5: log_rules[0].window: rule \'r1\': expected a duration such as "30s", "5m", "2h" '
        "or a number of seconds, got string 'soon'",
        id="bad-duration",
    ),
    pytest.param(
        rule("realert = -5\n"),
        "f.toml:4: log_rules[0].realert: rule 'r1': expected a duration that is not negative, got integer -5",
        id="negative-realert",
    ),
    pytest.param(
        rule("threshold = 3\n", kind="frequency"),
        "f.toml:1: log_rules[0].window: rule 'r1': missing; this field is required",
        id="frequency-without-window",
    ),
    pytest.param(
        rule("threshold = 0\nwindow = 60\n", kind="frequency"),
        "f.toml:4: log_rules[0].threshold: rule 'r1': expected a whole number of at least 1, got 0",
        id="zero-threshold",
    ),
    pytest.param(
        rule("window = '5m'\nfactor = 1\n", kind="spike"),
        "f.toml:5: log_rules[0].factor: rule 'r1': expected a number greater than 1, got 1",
        id="spike-factor",
    ),
    pytest.param(
        rule("window = '5m'\ndirection = 'sideways'\n", kind="spike"),
        "f.toml:5: log_rules[0].direction: rule 'r1': expected one of 'up', 'down', 'both', got string 'sideways'",
        id="spike-direction",
    ),
    pytest.param(
        rule("by = '3am'\n", kind="absence"),
        "f.toml:4: log_rules[0].by: rule 'r1': expected a time of day as \"HH:MM\" such as \"03:00\", got string '3am'",
        id="by-not-hh-mm",
    ),
    pytest.param(
        rule("by = '25:00'\n", kind="absence"),
        "f.toml:4: log_rules[0].by: rule 'r1': expected a time of day as \"HH:MM\"",
        id="by-out-of-range",
    ),
    pytest.param(
        rule("by = 3\n", kind="absence"),
        'f.toml:4: log_rules[0].by: rule \'r1\': expected a time of day as "HH:MM" such as "03:00", got integer 3',
        id="by-a-number",
    ),
    pytest.param(
        rule("by = '03:00'\ntimezone = 'Mars/Olympus'\n", kind="absence"),
        "f.toml:5: "
        "log_rules[0].timezone: rule 'r1': unknown timezone 'Mars/Olympus'; use an IANA name such as "
        "'UTC' or 'Europe/Paris'",
        id="unknown-timezone",
    ),
    pytest.param(
        rule("within = '1h'\ntimezone = 'UTC'\n", kind="absence"),
        "f.toml:5: log_rules[0].timezone: rule 'r1': timezone applies to by (a time of day) only",
        id="timezone-without-by",
    ),
    pytest.param(
        rule("within = '1h'\nby = '03:00'\n", kind="absence"),
        "f.toml:5: log_rules[0].by: rule 'r1': give within (a duration) or by (a time of day), not both",
        id="within-and-by",
    ),
    pytest.param(
        rule("contains = 'x'\n", kind="absence"),
        "f.toml:1: log_rules[0]: rule 'r1': an absence rule needs within",
        id="absence-without-deadline",
    ),
    pytest.param(
        rule("within = '1h'\nresolve_after = '5m'\n", kind="absence"),
        "f.toml:5: log_rules[0].resolve_after: rule 'r1': an absence alert resolves when the line comes",
        id="absence-resolve-after",
    ),
    pytest.param(
        rule("level = 'loud'\n"),
        "f.toml:4: log_rules[0].level: rule 'r1': expected a log level, one of "
        "'trace', 'debug', 'info', 'warn', 'error', 'fatal', got string 'loud'",
        id="unknown-level",
    ),
    pytest.param(
        rule("severity = 'high'\n"),
        "f.toml:4: log_rules[0].severity: rule 'r1': expected one of "
        "'info', 'warning', 'error', 'critical', got string 'high'",
        id="bad-severity",
    ),
    pytest.param(
        rule("fields = { host = ['a'] }\n"),
        "f.toml:4: log_rules[0].fields.host: rule 'r1': expected a string, number or boolean, got an array of 1",
        id="bad-field-value",
    ),
    pytest.param(
        rule("group_by = ['run_id', 'severity']\n"),
        "f.toml:4: log_rules[0].group_by[1]: rule 'r1': "
        "field 'severity' would be the label 'severity', which the rule sets itself",
        id="reserved-group-by",
    ),
    pytest.param(
        rule("labels = { alertname = 'x' }\n"),
        "f.toml:4: log_rules[0].labels.alertname: rule 'r1': the rule sets 'alertname' itself",
        id="reserved-label",
    ),
    pytest.param(
        rule("labels = { 'team-name' = 'x' }\n"),
        "f.toml:4: log_rules[0].labels.team-name: rule 'r1': 'team-name' is not a label name",
        id="bad-label-name",
    ),
    pytest.param(
        rule("labels = { host = 'x' }\ngroup_by = ['host']\n"),
        "f.toml:4: log_rules[0].labels.host: rule 'r1': the label 'host' comes from group_by",
        id="label-is-a-group-by-label",
    ),
    pytest.param(
        rule("labels = { workflow = 'x' }\n"),
        "f.toml:4: log_rules[0].labels.workflow: rule 'r1': the label 'workflow' comes from group_by",
        id="label-is-the-default-group-by",
    ),
    pytest.param(
        rule("") + rule("", name="r1"),
        "f.toml:5: log_rules[1].name: rule 'r1': duplicate log rule name "
        "(first defined on line 1); names must be unique",
        id="duplicate-name",
    ),
    pytest.param(
        "log_rules = 3\n",
        "f.toml:1: log_rules: expected an array of tables ([[log_rules]]), got integer 3",
        id="not-an-array",
    ),
    pytest.param(
        "[logs]\nretention = 'forever'\n",
        "f.toml:2: logs.retention: expected a duration such as",
        id="logs-bad-retention",
    ),
    pytest.param(
        "[logs]\nretention = 0\n",
        "f.toml:2: logs.retention: expected a duration greater than zero",
        id="logs-zero-retention",
    ),
    pytest.param(
        "[logs]\nkeep = '1d'\n",
        "f.toml:2: logs.keep: unknown field 'keep'; expected one of: retention, sources",
        id="logs-unknown-key",
    ),
    pytest.param(
        "[[logs.sources]]\nworkflow = 'etl'\n",
        "f.toml:1: logs.sources[0].path: missing; this field is required",
        id="source-without-path",
    ),
    pytest.param(
        "[[logs.sources]]\npath = 'a.log'\nstart = 'middle'\n",
        "f.toml:3: logs.sources[0].start: expected one of 'end', 'beginning', got string 'middle'",
        id="source-bad-start",
    ),
    pytest.param(
        "[[logs.sources]]\npath = 'a.log'\nmultiline = 'yes'\n",
        "f.toml:3: logs.sources[0].multiline: expected true or false, got string 'yes'",
        id="source-bad-multiline",
    ),
    pytest.param(
        "[[logs.sources]]\npath = 'a.log'\nfollow = true\n",
        "f.toml:3: logs.sources[0].follow: unknown field 'follow'",
        id="source-unknown-key",
    ),
    pytest.param(
        "[[logs.sources]]\npath = 'a.log'\n[[logs.sources]]\npath = '/etc/flowsight/a.log'\n",
        "f.toml:4: logs.sources[1].path: '/etc/flowsight/a.log' is already read by the source on line 1",
        id="source-twice",
    ),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_a_bad_rule_or_source_is_refused_with_its_line_name_and_reason(text: str, expected: str) -> None:
    found = problems(text)
    assert len(found) == 1, "\n".join(found)
    assert found[0].startswith(expected), found[0]


def test_every_problem_of_every_rule_is_listed_in_file_order() -> None:
    found = problems("""\
        [[log_rules]]
        name = "a"
        kind = "frequency"
        pattern = "(("
        window = "soon"
        [[log_rules]]
        name = "b"
        kind = "absence"
        by = "noon"
        [[log_rules]]
        name = "c"
        kind = "match"
        contains = "ok"
    """)
    assert [p.split(": ", 2)[:2] for p in found] == [
        ["f.toml:1", "log_rules[0].threshold"],
        ["f.toml:4", "log_rules[0].pattern"],
        ["f.toml:5", "log_rules[0].window"],
        ["f.toml:9", "log_rules[1].by"],
    ]
    assert all(p.split(": ", 2)[2].startswith(("rule 'a': ", "rule 'b': ")) for p in found)


def test_flowsight_check_reports_a_bad_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flowsight.cli import main

    path = tmp_path / "flowsight.toml"
    path.write_text("[[log_rules]]\nname = 'db'\nkind = 'match'\npattern = '[unclosed'\n")
    assert main(["check", "--config", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:4: log_rules[0].pattern: rule 'db': invalid regex '[unclosed'" in out


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12))
def test_a_pattern_is_taken_exactly_when_python_compiles_it(text: str) -> None:
    try:
        re.compile(text)
        ok = bool(text)
    except re.error:
        ok = False
    toml = f"[[log_rules]]\nname = 'r'\nkind = 'match'\npattern = {json.dumps(text, ensure_ascii=False)}\n"
    if ok:
        [rc] = parse_config(toml).log_rules
        assert rc.options["pattern"] == text
    else:
        with pytest.raises(ConfigFileError) as info:
            parse_config(toml, file="f.toml")
        [p] = info.value.problems
        assert (p.line, p.field) == (4, "log_rules[0].pattern") and p.message.startswith("rule 'r': ")


@given(st.integers(0, 23), st.integers(0, 59))
def test_every_time_of_day_is_taken(hour: int, minute: int) -> None:
    toml = f"[[log_rules]]\nname = 'r'\nkind = 'absence'\nby = '{hour:02d}:{minute:02d}'\n"
    [rc] = parse_config(toml).log_rules
    assert rc.options["by"] == dt.time(hour, minute)
