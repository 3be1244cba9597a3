"""``[workflows.NAME]`` expectations in flowsight.toml: read into the model;
an invalid cron expression, an unknown time zone, a grace longer than the
interval and a deadline that is not a time are each refused by ``flowsight
check``, naming the file, the line and the field; the workflows around them
keep theirs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import time
from pathlib import Path

import pytest

from flowsight.config import ConfigFileError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "flowsight.example.toml"


def test_the_example_file_loads_the_expectations() -> None:
    cfg = load_config(EXAMPLE)
    e = cfg.expectations["nightly-etl"]
    assert (e.schedule, e.timezone, e.start_grace, e.max_runtime, e.min_runtime) == (
        "0 2 * * *",
        "Europe/Copenhagen",
        600.0,
        7200.0,
        300.0,
    )
    assert e.deadline == time(6, 0) and e.failures_before_alert == 3 and dict(e.steps) == {"load": 2700.0}
    assert "ml-training" not in cfg.expectations  # depends_on alone expects nothing
    assert cfg.schedule_heartbeat == 10.0 and cfg.schedule_keep == 35 * 86400.0
    assert cfg.workflows["nightly-etl"].depends_on == ("postgres-main", "s3")


BAD = """
[workflows.ok-before]
every = "15m"

[workflows.cron]
schedule = "0 2 * *"

[workflows.zone]
schedule = "@daily"
timezone = "Europe/Atlantis"

[workflows.grace]
schedule = "*/10 * * * *"
start_grace = "15m"

[workflows.deadline]
schedule = "0 2 * * *"
deadline = "six"

[workflows.ok-after]
schedule = "0 3 * * 1-5"
"""


@pytest.mark.parametrize(
    ("line", "field", "says"),
    [
        (6, "workflows.cron.schedule", "expected a cron expression of 5 fields"),
        (10, "workflows.zone.timezone", "unknown time zone 'Europe/Atlantis'"),
        (14, "workflows.grace.start_grace", "15m 00s is not shorter than the shortest interval between expected runs"),
        (18, "workflows.deadline.deadline", 'expected a time of day such as "06:00"'),
    ],
)
def test_each_bad_field_is_refused_at_its_line(line: int, field: str, says: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(BAD, file="flowsight.toml")
    found = [p for p in info.value.problems if p.field == field]
    assert len(found) == 1 and found[0].line == line and says in found[0].message, info.value.problems
    assert len(info.value.problems) == 4


def test_flowsight_check_says_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "flowsight.toml"
    path.write_text(BAD)
    out = subprocess.run(
        [sys.executable, "-m", "flowsight", "check", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1
    lines = out.stdout.splitlines() + out.stderr.splitlines()
    assert f"{path}:6: workflows.cron.schedule: expected a cron expression of 5 fields" in "\n".join(lines)
    assert any(ln.startswith(f"{path}:10: workflows.zone.timezone: unknown time zone") for ln in lines)
    assert any(ln.startswith(f"{path}:14: workflows.grace.start_grace:") for ln in lines)
    assert any(ln.startswith(f"{path}:18: workflows.deadline.deadline:") for ln in lines)
    # fixed, the file is OK and says how many workflows have expectations
    good = "\n".join(ln for ln in BAD.splitlines() if not ln.startswith(("start_grace", "deadline = ")))
    path.write_text(good.replace('"0 2 * *"', '"0 2 * * *"').replace("Europe/Atlantis", "Europe/Oslo"))
    ok = subprocess.run(
        [sys.executable, "-m", "flowsight", "check", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.rstrip().endswith("6 workflows with expectations)")


def test_steps_every_and_names() -> None:
    cfg = parse_config(
        textwrap.dedent(
            """
            [workflows.poll]
            every = "15m"
            max_runtime = "10m"

            [workflows.poll.steps.fetch]
            max_runtime = "2m"

            [workflows.weekly]
            schedule = "@weekly"
            """
        )
    )
    assert cfg.expectations["poll"].every == 900.0 and dict(cfg.expectations["poll"].steps) == {"fetch": 120.0}
    assert cfg.expectations["weekly"].schedule == "0 0 * * 0"
    with pytest.raises(ConfigFileError) as info:
        parse_config('[workflows.bad-step.steps.x]\nmax_runtim = "1m"\n')
    fields = {p.field: p.message for p in info.value.problems}
    assert "did you mean 'max_runtime'" in fields["workflows.bad-step.steps.x.max_runtim"]
    assert fields["workflows.bad-step.steps.x.max_runtime"] == "missing; this field is required"
