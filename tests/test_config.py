"""``flowsight.toml``: the example loads into the model's types; every bad
file is refused with the file, line and field of each problem, never a traceback."""

from __future__ import annotations

import json
import logging
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.alerting.notifiers import (
    AlertmanagerNotifier,
    CommandNotifier,
    EmailNotifier,
    LogNotifier,
    SlackNotifier,
    WebhookNotifier,
)
from flowsight.config import Config, ConfigFileError, Problem, ReceiverConfig, build_notifier, load_config, parse_config
from flowsight.errors import ConfigError
from flowsight.model.alerts import InhibitRule, Matcher, Severity
from flowsight.model.alerts.flapping import FlapPolicy
from flowsight.model.alerts.routing import Route
from flowsight.model.alerts.builtin_rules import (
    RuleSettings,
    RunFailed,
    RunSlow,
    RunStalled,
    StepFailed,
    WorkflowSettings,
)

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "flowsight.example.toml"


def problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigFileError) as info:
        parse_config(textwrap.dedent(text), file="f.toml")
    return info.value.problems


# ---- the example ------------------------------------------------------------------
def test_the_example_file_loads_into_the_route_tree() -> None:
    cfg = load_config(EXAMPLE)
    grouping: dict[str, Any] = {"group_by": ("alertname", "workflow"), "group_interval": 300.0}
    assert cfg.route == Route(
        "team",
        **grouping,
        group_wait=30.0,
        repeat_interval=4 * 3600.0,
        routes=(
            Route(
                "pager",
                (Matcher("severity", "=", "critical"),),
                **grouping,
                group_wait=10.0,
                repeat_interval=4 * 3600.0,
                continue_=True,
            ),
            Route(
                "mail",
                (Matcher("workflow", "=~", "nightly-.*"),),
                **grouping,
                group_wait=30.0,
                repeat_interval=12 * 3600.0,
                routes=(
                    Route(
                        "log",
                        (Matcher("alertname", "=", "RunSlow"),),
                        **grouping,
                        group_wait=30.0,
                        repeat_interval=12 * 3600.0,
                    ),
                ),
            ),
            Route(
                "alertmanager",
                (Matcher("source", "=", "fault"),),
                **grouping,
                group_wait=30.0,
                repeat_interval=4 * 3600.0,
            ),
        ),
    )
    assert cfg.route_count() == 5
    assert cfg.file == str(EXAMPLE)
    assert cfg.external_url == "http://flowsight.example:8640"
    assert cfg.resolve_timeout == 300.0
    assert cfg.flap_policy == FlapPolicy(4, 600.0, 600.0)


def test_the_example_file_loads_inhibit_rules_rules_and_workflows() -> None:
    cfg = load_config(EXAMPLE)
    assert cfg.inhibit_rules == (
        InhibitRule((Matcher("severity", "=", "critical"),), (Matcher("severity", "=", "warning"),), ("workflow",)),
    )
    assert cfg.rules == RuleSettings(
        RunFailed(True, Severity.ERROR),
        RunStalled(True, Severity.WARNING),
        StepFailed(times=3, window=3600.0),
        RunSlow(factor=2.0, min_runs=5),
    )
    nightly = RuleSettings(
        cfg.rules.run_failed,
        cfg.rules.run_stalled,
        StepFailed(severity=Severity.CRITICAL, times=5, window=3600.0),
        RunSlow(enabled=False),
    )
    assert cfg.workflows == {
        "nightly-etl": WorkflowSettings("nightly-etl", ("postgres-main", "s3"), nightly),
        "ml-training": WorkflowSettings("ml-training", ("gpu-cluster",), None),
    }
    assert cfg.dependencies() == {"nightly-etl": ("postgres-main", "s3"), "ml-training": ("gpu-cluster",)}


def test_the_example_file_loads_receivers_with_converted_options() -> None:
    cfg = load_config(EXAMPLE)
    by_name = {r.name: r for r in cfg.receivers}
    assert [(r.name, r.kind) for r in cfg.receivers] == [
        ("team", "webhook"),
        ("pager", "slack"),
        ("mail", "email"),
        ("alertmanager", "alertmanager"),
        ("script", "command"),
        ("log", "log"),
    ]
    assert by_name["team"].options == {
        "url": "http://127.0.0.1:9000/hook",
        "timeout": 10.0,
        "headers": {"Authorization": "Bearer change-me"},
    }
    mail = by_name["mail"].options
    assert mail["sender"] == "flowsight <flowsight@example.com>" and "from" not in mail
    assert mail["to"] == ["data-team@example.com", "oncall@example.com"]
    assert by_name["script"].options == {"argv": ["/usr/local/bin/notify", "--quiet"], "timeout": 30.0}
    assert by_name["log"].options == {"level": logging.WARNING}
    text = EXAMPLE.read_text().splitlines()
    for rc in cfg.receivers:  # each receiver's line is its [[alerting.receivers]] header
        assert text[rc.line - 1] == "[[alerting.receivers]]"
        assert text[rc.line] == f'name = "{rc.name}"'


def test_build_notifier_makes_each_kind_from_its_options() -> None:
    cfg = load_config(EXAMPLE)
    made = {rc.name: build_notifier(rc, cfg.external_url) for rc in cfg.receivers}
    expected = {
        "team": WebhookNotifier,
        "pager": SlackNotifier,
        "mail": EmailNotifier,
        "alertmanager": AlertmanagerNotifier,
        "script": CommandNotifier,
        "log": LogNotifier,
    }
    for name, cls in expected.items():
        assert isinstance(made[name], cls), name
    team = made["team"]
    assert isinstance(team, WebhookNotifier)
    assert team.external_url == "http://flowsight.example:8640" and team.headers == {
        "Authorization": "Bearer change-me"
    }
    mail = made["mail"]
    assert isinstance(mail, EmailNotifier)
    assert (mail.host, mail.port, mail.sender) == ("smtp.example.com", 587, "flowsight <flowsight@example.com>")


def test_build_notifier_names_the_receiver_when_its_class_refuses() -> None:
    with pytest.raises(ConfigError, match="receiver 'cmd'"):
        build_notifier(ReceiverConfig("cmd", "command", {"argv": []}), "")


def test_the_default_config_sends_everything_to_the_log() -> None:
    cfg = Config.default()
    assert cfg.receivers == (ReceiverConfig("log", "log", {}, 0),)
    assert cfg.route == Route("log")
    assert cfg.rules == RuleSettings() and cfg.workflows == {} and cfg.dependencies() == {}
    assert isinstance(build_notifier(cfg.receivers[0]), LogNotifier)


def test_a_file_without_alerting_keeps_the_default_receiver_and_route() -> None:
    cfg = parse_config("[rules.run_failed]\nseverity = 'critical'\n")
    assert cfg.route == Route("log") and [r.name for r in cfg.receivers] == ["log"]
    assert cfg.rules.run_failed == RunFailed(severity=Severity.CRITICAL)


def test_child_routes_inherit_receiver_grouping_and_timings_unless_they_give_their_own() -> None:
    cfg = parse_config(
        textwrap.dedent("""
        [alerting.route]
        receiver = "a"
        group_by = ["..."]
        group_wait = 5
        repeat_interval = "1h"
        [[alerting.route.routes]]
        matchers = ['x="1"']
        group_interval = "1m"
        [[alerting.route.routes.routes]]
        matchers = ['y!~"z.*"']
        receiver = "b"
        group_by = ["y"]
        [[alerting.receivers]]
        name = "a"
        kind = "log"
        [[alerting.receivers]]
        name = "b"
        kind = "log"
        level = "error"
    """)
    )
    child = cfg.route.routes[0]
    grandchild = child.routes[0]
    assert (child.receiver, child.group_by, child.group_wait, child.group_interval, child.repeat_interval) == (
        "a",
        ("...",),
        5.0,
        60.0,
        3600.0,
    )
    assert (grandchild.receiver, grandchild.group_by, grandchild.group_interval, grandchild.matchers) == (
        "b",
        ("y",),
        60.0,
        (Matcher("y", "!~", "z.*"),),
    )
    assert cfg.receiver("b") == ReceiverConfig("b", "log", {"level": logging.ERROR}, 17)


def test_password_file_is_read_at_load_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("hunter2\n")
    (tmp_path / "ca.pem").write_text("")
    (tmp_path / "flowsight.toml").write_text(
        textwrap.dedent("""
        [alerting.route]
        receiver = "mail"
        [[alerting.receivers]]
        name = "mail"
        kind = "email"
        smarthost = "[::1]:25"
        from = "f@example.com"
        to = ["t@example.com"]
        security = "none"
        username = "me"
        password_file = "secret"
        ca_file = "ca.pem"
    """)
    )
    rc = load_config(tmp_path / "flowsight.toml").receivers[0]
    assert rc.options["password"] == "hunter2" and "password_file" not in rc.options
    assert rc.options["ca_file"] == str(tmp_path / "ca.pem")


def test_a_missing_or_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path)
    (tmp_path / "latin1.toml").write_bytes(b'a = 1\nb = "\xe9"\n')
    with pytest.raises(ConfigFileError, match=r"latin1.toml:2: not UTF-8"):
        load_config(tmp_path / "latin1.toml")


# ---- bad files: the exact line and field --------------------------------------------
_RECEIVER = """
[alerting.route]
receiver = "team"
[[alerting.receivers]]
name = "team"
kind = "log"
"""

BAD = [
    pytest.param(
        "[alerting]\nresolve_timeout = '5m'\n\n[[alerting.recievers]]\nname = 'x'\n",
        4,
        "alerting.recievers",
        "unknown field 'recievers'; did you mean 'receivers'?",
        id="unknown-key",
    ),
    pytest.param("[sever]\n", 1, "sever", "unknown field 'sever'; did you mean 'server'?", id="unknown-section"),
    pytest.param(
        "[rules.run_slow]\nfactr = 3\n",
        2,
        "rules.run_slow.factr",
        "unknown field 'factr'; did you mean 'factor'?",
        id="unknown-rule-field",
    ),
    pytest.param(
        _RECEIVER + "[alerting.flapping]\nmax_changes = '4'\n",
        8,
        "alerting.flapping.max_changes",
        "expected a whole number, got string '4'",
        id="wrong-type",
    ),
    pytest.param(
        "[alerting]\nroute = 'team'\n",
        2,
        "alerting.route",
        "expected a table, got string 'team'",
        id="wrong-type-table",
    ),
    pytest.param(
        _RECEIVER + "[rules.run_failed]\nenabled = 'yes'\n",
        8,
        "rules.run_failed.enabled",
        "expected true or false, got string 'yes'",
        id="wrong-type-bool",
    ),
    pytest.param(
        _RECEIVER.replace('receiver = "team"', 'receiver = "team"\ngroup_wait = "soon"'),
        4,
        "alerting.route.group_wait",
        'expected a duration such as "30s", "5m", "2h" or a number of seconds, got string \'soon\'',
        id="bad-duration",
    ),
    pytest.param(
        _RECEIVER + "[rules.step_failed]\nwindow = -60\n",
        8,
        "rules.step_failed.window",
        "expected a duration that is not negative, got integer -60",
        id="negative-duration",
    ),
    pytest.param(
        _RECEIVER + "[alerting.flapping]\nsettle = nan\n",
        8,
        "alerting.flapping.settle",
        "got float nan",
        id="nan-duration",
    ),
    pytest.param(
        _RECEIVER.replace('receiver = "team"', 'receiver = "team"\nrepeat_interval = "inf"'),
        4,
        "alerting.route.repeat_interval",
        "got string 'inf'",
        id="infinite-duration",
    ),
    pytest.param(
        _RECEIVER + "[rules.run_slow]\nfactor = inf\n",
        8,
        "rules.run_slow.factor",
        "expected a number, got float inf",
        id="infinite-factor",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.route.routes]]\nmatchers = [\n  'a=\"b\"',\n  'workflow=~\"(nightly\"',\n]\n",
        10,
        "alerting.route.routes[0].matchers[1]",
        "invalid regex '(nightly'",
        id="bad-matcher-regex",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.route.routes]]\nmatchers = ['workflow=~\"(\\w+)-\\1\"']\n",
        8,
        "alerting.route.routes[0].matchers[0]",
        "backreferences are not supported",
        id="route-backreference",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.inhibit_rules]]\nsource_matchers = ['a=b']\n"
        "target_matchers = ['alertname=~\"Run(?!Slow).*\"']\n",
        9,
        "alerting.inhibit_rules[0].target_matchers[0]",
        "lookahead assertions are not supported",
        id="inhibit-lookahead",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.inhibit_rules]]\nsource_matchers = ['nonsense']\ntarget_matchers = ['a=b']\n",
        8,
        "alerting.inhibit_rules[0].source_matchers[0]",
        "write name=value, name!=value, name=~regex or name!~regex",
        id="bad-matcher",
    ),
    pytest.param(
        _RECEIVER.replace('receiver = "team"', 'receiver = "teem"'),
        3,
        "alerting.route.receiver",
        "unknown receiver 'teem'; did you mean 'team'?",
        id="unknown-receiver-root",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.route.routes]]\n[[alerting.route.routes]]\nreceiver = 'pager'\n",
        9,
        "alerting.route.routes[1].receiver",
        "unknown receiver 'pager'; expected one of: team",
        id="unknown-receiver-child",
    ),
    pytest.param(
        "[alerting.route]\nreceiver = 'x'\n",
        2,
        "alerting.route.receiver",
        "unknown receiver 'x'; no receivers are defined",
        id="no-receivers",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'team'\nkind = 'log'\n",
        8,
        "alerting.receivers[1].name",
        "duplicate receiver name 'team' (first defined on line 4)",
        id="duplicate-receiver",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'mail'\nkind = 'email'\nsmarthost = 'h:25'\nfrom = 'a@b.c'\n",
        7,
        "alerting.receivers[1].to",
        "missing; this field is required",
        id="email-without-to",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'mail'\nkind = 'email'\nsmarthost = 'h:25'\n"
        "from = 'a@b.c'\nto = []\n",
        12,
        "alerting.receivers[1].to",
        "expected a non-empty array, got []",
        id="email-empty-to",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'pd'\nkind = 'pagerduty'\nkey = 'x'\n",
        9,
        "alerting.receivers[1].kind",
        "expected one of 'alertmanager', 'command', 'email', 'log', 'slack', 'webhook', got string 'pagerduty'",
        id="unknown-kind",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'w'\nkind = 'webhook'\nurl = 'ftp://x'\n",
        10,
        "alerting.receivers[1].url",  # a URL may hold its credentials: never shown
        "expected an http:// or https:// URL with a host, got a string (a secret: not shown)",
        id="bad-url",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'c'\nkind = 'command'\nargv = ['ok', 3]\n",
        10,
        "alerting.receivers[1].argv[1]",
        "expected a string, got integer 3",
        id="bad-argv",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 's'\nkind = 'slack'\nurl = 'https://h'\ntitle = '{{ oops'\n",
        11,
        "alerting.receivers[1].title",
        "template syntax error on line 1",
        id="bad-template",
    ),
    pytest.param(
        _RECEIVER + "[[alerting.receivers]]\nname = 'm'\nkind = 'email'\nsmarthost = 'h:25'\n"
        "from = 'a@b.c'\nto = ['t@b.c']\nusername = 'u'\npassword_file = '/nonexistent/pw'\n",
        14,
        "alerting.receivers[1].password_file",
        "cannot read '/nonexistent/pw'",
        id="missing-password-file",
    ),
    pytest.param(
        _RECEIVER + "[rules.run_stalled]\nseverity = 'high'\n",
        8,
        "rules.run_stalled.severity",
        "expected one of 'info', 'warning', 'error', 'critical', got string 'high'",
        id="bad-severity",
    ),
    pytest.param(
        _RECEIVER + "[rules.step_failed]\ntimes = -1\n",
        8,
        "rules.step_failed.times",
        "expected a whole number of at least 1, got -1",
        id="negative-times",
    ),
    pytest.param(
        _RECEIVER + "[workflows.etl.rules.run_slow]\nfactor = 0\n",
        8,
        "workflows.etl.rules.run_slow.factor",
        "expected a number greater than 0, got 0",
        id="workflow-rule-override",
    ),
    pytest.param(
        '[workflows."a.b"]\ndepends_on = "pg"\n',
        2,
        'workflows."a.b".depends_on',
        "expected an array, got string 'pg'",
        id="quoted-workflow-name",
    ),
    pytest.param(
        _RECEIVER.replace('receiver = "team"', 'receiver = "team"\nmatchers = ["a=b"]'),
        4,
        "alerting.route.matchers",
        "the root route takes every alert",
        id="root-matchers",
    ),
    pytest.param(
        _RECEIVER.replace('receiver = "team"', 'receiver = "team"\ngroup_by = ["...", "a"]'),
        4,
        "alerting.route.group_by",
        '"..." (every label) alone',
        id="group-by-wildcard-and-labels",
    ),
    pytest.param(
        "[[alerting.receivers]]\nname = 'a'\nkind = 'log'\n",
        1,
        "alerting.route",
        "missing; with [[alerting.receivers]] give [alerting.route]",
        id="receivers-without-route",
    ),
    pytest.param(
        "[alerting.route]\nreceiver = 'x'\n\n[alerting\n",
        4,
        "",
        "TOML syntax error: Expected ']' at the end of a table declaration (column 10)",
        id="toml-syntax",
    ),
    pytest.param(
        "a = 1\nb = [1,\n", 2, "", "TOML syntax error at the end of the file: Invalid value", id="toml-syntax-at-end"
    ),
    pytest.param(
        "[server]\nexternal_url = 1979-05-27T07:32:00Z\n",
        2,
        "server.external_url",
        "expected a string, got date/time 1979-05-27T07:32:00+00:00",
        id="datetime",
    ),
]


@pytest.mark.parametrize(("text", "line", "field", "message"), BAD)
def test_a_bad_file_is_refused_with_the_line_and_field_of_the_problem(
    text: str, line: int, field: str, message: str
) -> None:
    found = problems(text)
    assert len(found) == 1, "\n".join(map(str, found))
    p = found[0]
    assert (p.file, p.line, p.field) == ("f.toml", line, field), str(p)
    assert message in p.message
    assert str(p) == (f"f.toml:{line}: {field}: {p.message}" if field else f"f.toml:{line}: {p.message}")


def test_every_problem_in_a_file_is_reported_in_file_order() -> None:
    text = """\
        [server]
        external_url = "flowsight.example"
        [alerting]
        resolve_timeout = "soon"
        [alerting.route]
        receiver = "nobody"
        [[alerting.receivers]]
        name = "mail"
        kind = "email"
        smarthost = "smtp"
        from = "a@b.c"
        [rules.step_failed]
        times = 0
        [workflows.etl]
        depends = ["pg"]
    """
    with pytest.raises(ConfigFileError) as info:
        parse_config(textwrap.dedent(text), file="flowsight.toml")
    assert [(p.line, p.field) for p in info.value.problems] == [
        (2, "server.external_url"),
        (4, "alerting.resolve_timeout"),
        (6, "alerting.route.receiver"),
        (7, "alerting.receivers[0].to"),
        (10, "alerting.receivers[0].smarthost"),
        (13, "rules.step_failed.times"),
        (15, "workflows.etl.depends"),
    ]
    assert isinstance(info.value, ConfigError)
    assert str(info.value).splitlines() == [str(p) for p in info.value.problems]
    assert (
        str(info.value).splitlines()[-1]
        == "flowsight.toml:15: workflows.etl.depends: unknown field 'depends'; did you mean 'depends_on'?"
    )


# ---- round trips ------------------------------------------------------------------
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
duration_parts = st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(sorted(_UNITS))), min_size=1, max_size=4)


def toml_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)  # a JSON string without control characters is a TOML basic string


@given(duration_parts)
def test_durations_written_with_units_round_trip(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{n}{unit}" for n, unit in parts)
    cfg = parse_config(f"[alerting.flapping]\nsettle = {toml_string(text)}\n")
    assert cfg.flap_policy.settle == pytest.approx(sum(n * _UNITS[u] for n, u in parts))


@given(st.one_of(st.integers(0, 10**9), st.floats(0, 1e9, allow_nan=False)))
def test_durations_written_as_seconds_round_trip(seconds: float) -> None:
    cfg = parse_config(f"[alerting.flapping]\nsettle = {seconds!r}\n")
    assert cfg.flap_policy.settle == seconds


label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True)
label_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12)


@given(label_names, st.sampled_from(["=", "!=", "=~", "!~"]), label_values)
def test_matchers_round_trip_through_the_file(name: str, op: str, label: str) -> None:
    value = re.escape(label) if op in ("=~", "!~") else label  # a regex that matches exactly the label
    written = f'{name}{op}"{value}"'
    cfg = parse_config(f"""
[alerting.route]
receiver = "r"
[[alerting.route.routes]]
matchers = [{toml_string(written)}]
[[alerting.receivers]]
name = "r"
kind = "log"
""")
    assert cfg.route.routes[0].matchers == (Matcher(name, op, value),)
    assert cfg.route.routes[0].matchers[0].matches({name: label}) == (op in ("=", "=~"))


# ---- what only the notifier checks, and line endings ----------------------------------
def test_what_only_the_notifier_checks_is_reported_at_load_at_its_field(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    text = textwrap.dedent("""\
        [alerting.route]
        receiver = "mail"
        [[alerting.receivers]]
        name = "mail"
        kind = "email"
        smarthost = "smtp.example.com:587"
        from = "f@example.com"
        to = ["t@example.com"]
        ca_file = "ca.pem"
    """)
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, file="f.toml", base_dir=tmp_path)
    [p] = info.value.problems
    assert (p.line, p.field) == (9, "alerting.receivers[0].ca_file")
    assert "receiver 'mail'" in p.message and "cannot load" in p.message


def test_a_byte_order_mark_before_the_first_line_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "flowsight.toml"
    path.write_bytes(b"\xef\xbb\xbf[server]\nexternal_url = 'http://h:8640'\n[rules.run_slow]\nfactr = 1\n")
    with pytest.raises(ConfigFileError) as info:
        load_config(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:4: rules.run_slow.factr: unknown field 'factr'; did you mean 'factor'?"
    ]


def test_windows_line_endings_and_inline_route_tables_are_located() -> None:
    text = (
        "[alerting.route]\r\nreceiver = 'a'\r\nroutes = [\r\n  { receiver = 'a' },\r\n"
        "  { receiver = 'b', matchers = ['x=y'] },\r\n]\r\n[[alerting.receivers]]\r\nname = 'a'\r\nkind = 'log'\r\n"
    )
    [p] = problems(text)
    assert (p.line, p.field) == (5, "alerting.route.routes[1].receiver")
