"""The engines' own virtual environments (scripts/engine-venvs): Airflow and
Prefect each run from one of their own, with this checkout's flowsight
installed into it, so their pins never bend the suite's."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

from tests.helpers import unavailable

ROOT = Path(__file__).resolve().parents[2]
#: set by scripts/test: ``airflow=/path/bin/python;prefect=...``
ENV = "FLOWSIGHT_TEST_ENGINES"


@functools.cache
def _pythons() -> dict[str, str]:
    listed = os.environ.get(ENV)
    if listed is None:  # pytest run by hand: make (or find, cached) the venvs now
        out = subprocess.run([str(ROOT / "scripts" / "engine-venvs")], capture_output=True, text=True, timeout=900)
        listed = ";".join(out.stdout.split())
    pairs = (item.split("=", 1) for item in listed.split(";") if "=" in item)
    return {name: path for name, path in pairs}


def engine_python(engine: str) -> str:
    """The python of ``engine``'s venv: else a skip with the reason, or a failure under CI=true."""
    path = _pythons().get(engine)
    if path and Path(path).exists():
        return path
    unavailable(f"{engine} could not be installed in its own venv (scripts/engine-venvs)")
