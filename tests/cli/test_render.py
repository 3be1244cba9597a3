"""The stderr console: one line stays one line when stderr is not a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowsight.cli.render import print_error, stderr_console

FLOWSIGHT = [sys.executable, "-m", "flowsight"]
PROBLEMS = [
    "flowsight.toml:2: alerting.route.receiver: unknown receiver 'team'; no receivers are defined "
    "(add [[alerting.receivers]])",
    'flowsight.toml:3: alerting.route.group_wait: expected a duration such as "30s", "5m", "2h" or a number '
    "of seconds, got string '" + "not-a-duration-" * 8 + "'",
]


def through_a_pipe(message: str) -> str:
    """What :func:`print_error` writes to a real pipe (not a terminal)."""
    read_fd, write_fd = os.pipe()
    with os.fdopen(write_fd, "w") as pipe:
        print_error(stderr_console(file=pipe), message)
    with os.fdopen(read_fd) as got:
        return got.read()


def test_a_long_error_written_to_a_pipe_is_not_wrapped() -> None:
    assert through_a_pipe("\n".join(PROBLEMS)) == "flowsight: " + "\n".join(PROBLEMS) + "\n"


@pytest.mark.parametrize("message", ["add [[alerting.receivers]]", "[bold]not bold[/bold]", "[red]", "a\\[b"])
def test_an_error_message_is_printed_as_written_never_as_markup(message: str) -> None:
    assert through_a_pipe(message) == f"flowsight: {message}\n"


def test_the_cli_keeps_each_file_line_problem_on_one_line_when_stderr_is_a_pipe(tmp_path: Path) -> None:
    config = tmp_path / "flowsight.toml"
    config.write_text("[alerting.route]\nreceiver = 'team'\ngroup_wait = '" + "not-a-duration-" * 8 + "'\n")
    subprocess.run([*FLOWSIGHT, "--db", str(tmp_path / "f.db"), "init"], check=True, capture_output=True, timeout=60)
    out = subprocess.run(
        [*FLOWSIGHT, "--db", str(tmp_path / "f.db"), "alerts", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    assert (
        lines[0] == f"flowsight: {config}:2: alerting.route.receiver: unknown receiver 'team'; "
        "no receivers are defined (add [[alerting.receivers]])"
    )
    assert lines[1].startswith(f"{config}:3: alerting.route.group_wait: expected a duration such as ")
    assert "got string 'not-a-duration-" in lines[1] and len(lines) == 2


def test_short_ids_are_the_shortest_unique_prefix_or_head_and_tail() -> None:
    from flowsight.cli.render import short_ids

    ids = ["01M970VFRPRG3P5P6J011D6D87", "01M970VFRMRG3P5P6J011D6D83", "01M9A0000000000000000000AA"]
    assert short_ids(ids) == {ids[0]: "01M970VFRP", ids[1]: "01M970VFRM", ids[2]: "01M9A000"}
    same_ms = ["01M971AQ6VB30YT5NV01YT197D", "01M971AQ6VB30YT5NV01YT197A", "01M971AQ6VB30YT5NV01YT1977"]
    assert short_ids(same_ms) == {same_ms[0]: "01M971AQ…197D", same_ms[1]: "01M971AQ…197A", same_ms[2]: "01M971AQ…1977"}
    assert short_ids(["short", "shorter"]) == {"short": "short", "shorter": "shorter"}
