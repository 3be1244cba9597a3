"""``[[thresholds]]`` in flowsight.toml: thresholds and baselines read into
the model; a bad one (an unknown metric, a value that is not a number,
``for = "soon"``) is refused by ``flowsight check`` and by ``flowsight serve``
at start, naming the file, the line, the threshold and the field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flowsight.config import ConfigFileError, parse_config
from flowsight.model.alerts import Severity
from flowsight.model.performance import ScopeKind
from flowsight.model.performance.thresholds import Baseline, Direction, Threshold

GOOD = """
[[thresholds]]
name = "HighCPU"
metric = "cpu_percent"
scope = "run"
above = 90
resolve = 80
for = "2m"
severity = "error"
workflow = "nightly-etl"

[[thresholds]]
name = "Starved"
metric = "steps_per_s"
scope = "workflow"
below = 0.5
for = "10m"

[[thresholds]]
name = "SlowLoad"
kind = "baseline"
metric = "step_duration"
step = "load"
quantile = "p95"
factor = 1.5
runs = 30

[[thresholds]]
name = "OddRun"
kind = "baseline"
metric = "run_duration"
zscore = 3.5
"""


def test_thresholds_and_baselines_are_read_into_the_model() -> None:
    cfg = parse_config(GOOD, file="f.toml")
    assert cfg.thresholds == (
        Threshold(
            "HighCPU", "cpu_percent", ScopeKind.RUN, 90.0, Direction.ABOVE, 120.0, 80.0, Severity.ERROR, "nightly-etl"
        ),
        Threshold("Starved", "steps_per_s", ScopeKind.WORKFLOW, 0.5, Direction.BELOW, 600.0),
    )
    assert cfg.baselines == (
        Baseline("SlowLoad", "step_duration", quantile=0.95, factor=1.5, runs=30, min_runs=10, step="load"),
        Baseline("OddRun", "run_duration", zscore=3.5),
    )


BAD = [
    ('metric = "cpu"', "thresholds[0].metric: threshold 'HighCPU': expected one of"),
    ('above = "ninety"', "thresholds[0].above: threshold 'HighCPU': expected a number, got string 'ninety'"),
    ('for = "soon"', "thresholds[0].for: "),
    ('scope = "planet"', "thresholds[0].scope: threshold 'HighCPU': expected one of"),
    ("below = 5", "give exactly one of 'above' and 'below'"),
    ("resolve = 95", "resolve (95.0) must be at or below the value (90.0)"),
    ('colour = "red"', "thresholds[0].colour: threshold 'HighCPU': unknown field 'colour'"),
]


@pytest.mark.parametrize(("line", "words"), BAD)
def test_a_bad_threshold_names_the_file_line_threshold_and_field(line: str, words: str) -> None:
    text = textwrap.dedent(f"""
        [[thresholds]]
        name = "HighCPU"
        metric = "cpu_percent"
        scope = "run"
        above = 90
        {line}
        """)
    if line.startswith(("metric", "above", "scope")):  # replace the good line rather than repeat the key
        key = line.split(" ")[0]
        text = "\n".join(ln for ln in text.splitlines() if not ln.startswith(f"{key} = ")) + f"\n{line}\n"
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, file="f.toml")
    said = "\n".join(str(p) for p in info.value.problems)
    assert said.startswith("f.toml:") and words in said, said


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('kind = "baseline"\nmetric = "cpu_percent"', "thresholds[0].metric: threshold 'B': expected one of"),
        (
            'kind = "baseline"\nmetric = "run_duration"\nquantile = "p150"',
            "thresholds[0].quantile: threshold 'B': expected a quantile",
        ),
        ('kind = "baseline"\nmetric = "run_duration"\nstep = "load"', "only a step_duration baseline names a step"),
        ('kind = "baseline"\nmetric = "run_duration"\nfactor = 0.5', "factor must be 1 or more"),
        ('kind = "guess"', "thresholds[0].kind: expected one of"),
    ],
)
def test_a_bad_baseline_is_refused(body: str, words: str) -> None:
    with pytest.raises(ConfigFileError) as info:
        parse_config(f'[[thresholds]]\nname = "B"\n{body}\n', file="f.toml")
    assert words in "\n".join(str(p) for p in info.value.problems)


def test_check_and_serve_refuse_a_bad_threshold(tmp_path: Path) -> None:
    path = tmp_path / "flowsight.toml"
    path.write_text(
        '[[thresholds]]\nname = "HighCPU"\nmetric = "cpu_percent"\nscope = "run"\nabove = 90\nfor = "soon"\n'
    )
    base = [sys.executable, "-m", "flowsight.cli.main", "--db", str(tmp_path / "f.db")]
    check = subprocess.run([*base, "check", "--config", str(path)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 1 and f"{path}:6: thresholds[0].for:" in check.stdout
    serve = subprocess.run(
        [*base, "serve", "--port", "0", "--config", str(path)], capture_output=True, text=True, timeout=60
    )
    assert serve.returncode == 2 and "thresholds[0].for" in serve.stderr
    ok = subprocess.run([*base, "check", "--config", str(_good(tmp_path))], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "4 thresholds" in ok.stdout


def _good(tmp_path: Path) -> Path:
    path = tmp_path / "good.toml"
    path.write_text(GOOD)
    return path
