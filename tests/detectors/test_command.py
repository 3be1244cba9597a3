"""The command detector running real programs (this Python, with small scripts)."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowsight.detectors.command import CommandDetector
from flowsight.errors import ConfigError
from flowsight.model.faults import Fault, ResourceExhaustion, ServiceUnavailable
from tests.helpers import run

PY = sys.executable
pytestmark = pytest.mark.usefixtures("any_loop")  # the CLI's loop and the server's


def check(detector: CommandDetector) -> Fault | None:
    return run(detector.detect)


def python(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


def gone(pid: int, within: float = 5.0) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for init counts)
    within ``within`` seconds: a bound on the kernel's delivery of SIGKILL,
    not a measurement."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.01)
    return False


def test_a_program_exiting_0_finds_nothing() -> None:
    assert check(CommandDetector(name="ok", argv=python("print('all good')"))) is None


def test_a_non_zero_exit_is_a_fault_of_the_target_with_the_output_as_message(tmp_path: Path) -> None:
    flag = tmp_path / "mended"
    script = (
        "import os, sys\n"
        "if os.path.exists(sys.argv[1]): sys.exit(0)\n"
        "print('checking /var', flush=True)\n"
        "print('disk /var is 97% full', file=sys.stderr)\n"
        "sys.exit(3)\n"
    )
    detector = CommandDetector(
        name="disk", argv=python(script, str(flag)), fault="resource_exhaustion", target="disk:/var"
    )

    fault = check(detector)
    assert fault is not None and fault.type == ResourceExhaustion("disk:/var") and fault.detector == "disk"
    assert fault.message == "checking /var\ndisk /var is 97% full"
    assert fault.evidence == {"exit_code": 3, "output": "checking /var\ndisk /var is 97% full"}

    flag.touch()
    assert check(detector) is None


def test_a_silent_failure_says_its_exit_status() -> None:
    fault = check(CommandDetector(name="svc", argv=python("import sys; print(); sys.exit(3)")))
    assert fault is not None and fault.type == ServiceUnavailable("svc")
    assert fault.message == "exited with status 3"
    assert fault.evidence["exit_code"] == 3


def test_a_program_killed_by_a_signal_says_which() -> None:
    fault = check(CommandDetector(name="svc", argv=python("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")))
    assert fault is not None and fault.message == "killed by signal SIGSEGV"
    assert fault.evidence["exit_code"] == -11


def test_only_the_end_of_a_long_output_is_kept() -> None:
    script = "for i in range(2000): print(f'line {i:04d}', 'x' * 40)\nraise SystemExit(1)"
    fault = check(CommandDetector(name="svc", argv=python(script)))
    assert fault is not None
    assert len(fault.evidence["output"]) <= 4096 and fault.evidence["output"].endswith("line 1999 " + "x" * 40)
    assert len(fault.message) <= 500 and fault.message.endswith("line 1999 " + "x" * 40)
    assert fault.message.startswith("line 19")  # whole lines: the last ones that fit


def test_a_program_past_its_timeout_is_ended_with_all_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a stubborn one\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\n"
        "print('waiting for the database', flush=True)\n"
        "time.sleep(60)\n"
    )
    fault = check(CommandDetector(name="slowcheck", argv=python(script, str(pids)), timeout=1.5))
    assert fault is not None and fault.type == ServiceUnavailable("slowcheck")
    assert fault.message == f"{PY} did not finish within 1.5 s (killed)"
    assert fault.evidence == {"timeout_s": 1.5, "output": "waiting for the database"}
    program, child = map(int, pids.read_text().split())
    assert gone(program) and gone(child)


def test_a_check_cancelled_by_the_watchdog_leaves_no_process(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, sys, time\n"
        "open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
        "time.sleep(60)\n"
    )
    detector = CommandDetector(name="hung", argv=python(script, str(pids)), timeout=60)

    async def cancel_once_started() -> None:
        task = asyncio.create_task(detector.detect())
        while not pids.exists():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancel_once_started)
    assert gone(int(pids.read_text()))


def test_a_process_left_holding_the_output_is_ended_and_the_exit_status_counts(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(sys.argv[1], 'w').write(str(child.pid))\n"
    )
    assert check(CommandDetector(name="bg", argv=python(script, str(pids)), timeout=0.5)) is None
    assert gone(int(pids.read_text()))


def test_env_is_laid_over_the_environment_and_cwd_is_used(tmp_path: Path) -> None:
    script = (
        "import os, sys\n"
        "sys.exit(0 if os.environ['CHECK_MODE'] == 'deep' and 'PATH' in os.environ"
        " and os.getcwd() == sys.argv[1] else 4)\n"
    )
    where = str(tmp_path.resolve())
    assert check(CommandDetector(name="env", argv=python(script, where), env={"CHECK_MODE": "deep"}, cwd=where)) is None


def test_a_program_that_does_not_exist_breaks_the_detector(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"detector 'gone': cannot start '.*/no-such-check': "
        r"no such file or directory: .*/no-such-check$",
    ):
        check(CommandDetector(name="gone", argv=[str(tmp_path / "no-such-check")]))


def test_a_file_that_is_not_executable_breaks_the_detector(tmp_path: Path) -> None:
    script = tmp_path / "check.sh"
    script.write_text("#!/bin/sh\nexit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    if os.access(script, os.X_OK):
        pytest.skip("running as a user who may execute anything")
    with pytest.raises(ConfigError, match="permission denied"):
        check(CommandDetector(name="noexec", argv=[str(script)]))


def test_a_working_directory_that_does_not_exist_breaks_the_detector(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no such file or directory: .*/nowhere$"):
        check(CommandDetector(name="cwd", argv=python("pass"), cwd=str(tmp_path / "nowhere")))


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"argv": []}, "argv"),
        ({"argv": "check-db --quick"}, "argv"),
        ({"argv": ["check", 3]}, "argv"),
        ({"argv": [""]}, "argv"),
        ({"timeout": 0}, "timeout"),
        ({"fault": "down"}, "fault"),
        ({"target": ""}, "target"),
        ({"cwd": 3}, "cwd"),
        ({"env": {"N": 1}}, "env"),
        ({"env": ["A=1"]}, "env"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=rf"detector 'c': {named} "):
        CommandDetector(name="c", **{"argv": ["true"], **options})
