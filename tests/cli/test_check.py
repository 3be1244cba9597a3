"""``flowsight check``, run as a user runs it: a real process, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "flowsight.example.toml"


def check(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "FLOWSIGHT_CONFIG"}
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "flowsight", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=environ,
    )


def test_check_accepts_the_example_and_says_what_it_holds(tmp_path: Path) -> None:
    out = check("--config", str(EXAMPLE), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"{EXAMPLE}: OK (6 receivers, 5 routes, 1 inhibit rule, 5 log rules, 2 log sources")
    assert not (tmp_path / "flowsight.db").exists()  # checking a file needs no store


def test_check_prints_every_problem_as_file_line_field_message_and_exits_1(tmp_path: Path) -> None:
    (tmp_path / "flowsight.toml").write_text(
        "[alerting.route]\nreceiver = 'team'\ngroup_wait = 'soon'\n[[alerting.recievers]]\nname = 'team'\n"
    )
    out = check(cwd=tmp_path)  # ./flowsight.toml by default
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines() == [
        "flowsight.toml:2: alerting.route.receiver: unknown receiver 'team'; no receivers are defined "
        "(add [[alerting.receivers]])",
        'flowsight.toml:3: alerting.route.group_wait: expected a duration such as "30s", "5m", "2h" or a number '
        "of seconds, got string 'soon'",
        "flowsight.toml:4: alerting.recievers: unknown field 'recievers'; did you mean 'receivers'?",
    ]
    assert "Traceback" not in out.stderr and "3 problems" in out.stderr


def test_check_reports_a_toml_syntax_error_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nexternal_url = http://x\n")
    out = check("--config", str(bad), cwd=tmp_path)
    assert out.returncode == 1
    assert out.stdout.startswith(f"{bad}:2: TOML syntax error: ")
    assert "Traceback" not in out.stderr


def test_check_reads_the_file_named_by_flowsight_config(tmp_path: Path) -> None:
    cfg = tmp_path / "conf" / "alerts.toml"
    cfg.parent.mkdir()
    cfg.write_text("[rules.run_failed]\nseverity = 'critical'\n")
    out = check(cwd=tmp_path, env={"FLOWSIGHT_CONFIG": str(cfg)})
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith(f"{cfg}: OK (1 receiver, 1 route, 0 inhibit rules, 0 log rules, 0 log sources")


def test_check_counts_log_rules_and_log_sources(tmp_path: Path) -> None:
    (tmp_path / "flowsight.toml").write_text(
        "[[logs.sources]]\npath = 'app.log'\n"
        "[[log_rules]]\nname = 'DbDown'\nkind = 'match'\ncontains = 'connection refused'\n"
        "[[log_rules]]\nname = 'Quiet'\nkind = 'absence'\ncontains = 'backup finished'\nwithin = '1h'\n"
    )
    out = check(cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.startswith("flowsight.toml: OK (1 receiver, 1 route, 0 inhibit rules, 2 log rules, 1 log source")


def test_check_without_a_file_exits_2_and_says_how_to_give_one(tmp_path: Path) -> None:
    out = check(cwd=tmp_path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "flowsight.toml does not exist" in out.stderr and "--config" in out.stderr
    assert "Traceback" not in out.stderr


def test_check_never_echoes_the_value_of_a_secret_field(tmp_path: Path) -> None:
    (tmp_path / "flowsight.toml").write_text(
        "[alerting.route]\nreceiver = 'hook'\n"
        "[[alerting.receivers]]\nname = 'hook'\nkind = 'webhook'\n"
        "url = 'htps://user:hunter2@hooks.example.com/x?token=s3cr3t'\n"
        "headers = { Authorization = 12345678, X-Team = 'ops' }\n"
        "[[alerting.receivers]]\nname = 'mail'\nkind = 'email'\nsmarthost = 'smtp.example.com:587'\n"
        "from = 'fs@example.com'\nto = ['ops@example.com']\nusername = 'fs'\npassword = 87654321\n"
        "[[alerting.receivers]]\nname = 'chat'\nkind = 'slack'\nurl = 'hooks.slack.com/services/T0/B0/XXXXSECRET'\n"
        "[[alerting.receivers]]\nname = 'am'\nkind = 'alertmanager'\nurl = ['http://am:pw@x']\n"
        "[[detectors]]\nname = 'api'\nkind = 'http'\nurl = 'http://api.example.com/health'\n"
        "headers = { Authorization = 24681357 }\n"
    )
    out = check(cwd=tmp_path)
    assert out.returncode == 1, out.stdout + out.stderr
    secret = "(a secret: not shown)"
    assert out.stdout.splitlines() == [
        f"flowsight.toml:6: alerting.receivers[0].url: expected an http:// or https:// URL with a host, got a string "
        f"{secret}",
        f"flowsight.toml:7: alerting.receivers[0].headers.Authorization: expected a string, got an integer {secret}",
        f"flowsight.toml:15: alerting.receivers[1].password: expected a string, got an integer {secret}",
        f"flowsight.toml:19: alerting.receivers[2].url: expected an http:// or https:// URL with a host, got a string "
        f"{secret}",
        f"flowsight.toml:23: alerting.receivers[3].url: expected a string, got an array {secret}",
        f"flowsight.toml:28: detectors[0].headers.Authorization: expected a string, got an integer {secret}",
    ]
    for value in ("hunter2", "s3cr3t", "12345678", "87654321", "XXXXSECRET", "am:pw", "24681357"):
        assert value not in out.stdout + out.stderr
