"""``scripts/demo`` sets ./.venv up only when it must: a real venv, a real pip,
a stand-in project (so the test installs a few kilobytes, not flowsight)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PYPROJECT = """[build-system]
requires = ["setuptools>=65"]
build-backend = "setuptools.build_meta"

[project]
name = "demo-standin"
version = "0.1.0"

[project.scripts]
flowsight = "standin:main"

[tool.setuptools]
py-modules = ["standin"]
"""


def _demo(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(project / "scripts" / "demo"), "--no-live"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=project,
    )


def test_the_demo_script_installs_only_when_pyproject_changed_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "demo", tmp_path / "scripts" / "demo")
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    (tmp_path / "standin.py").write_text("import sys\n\ndef main():\n    print('demo ran with', sys.argv[1:])\n")
    first = _demo(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "installing flowsight" in first.stderr and "demo ran with ['demo', '--no-live']" in first.stdout
    again = _demo(tmp_path)
    assert again.returncode == 0 and "installing" not in again.stderr  # nothing changed: straight to the demo
    assert "demo ran with" in again.stdout
    (tmp_path / "pyproject.toml").write_text(PYPROJECT.replace('version = "0.1.0"', 'version = "0.2.0"'))
    changed = _demo(tmp_path)
    assert changed.returncode == 0 and "installing flowsight" in changed.stderr
