"""Airflow DAG runs in flowsight through the listener plugin (found by
Airflow through flowsight's ``airflow.plugins`` entry point, no DAG edited),
with the real Airflow in its own venv (2.x, and 3.x for the DAG runs):
``airflow dags test`` on a SQLite metadata DB. A DAG of three tasks, one failing once and retried, the last
mapped over two inputs, is one run with its task instances as steps
(``load[0]``, ``load[1]``), the retry an attempt, at Airflow's own times."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import textwrap
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flowsight.store import open_store
from tests.integrations.engines import engine_python
from tests.sdk.serving import ServerProcess

# one migrated metadata DB per Airflow for the module (scripts/test runs --dist loadgroup)
pytestmark = pytest.mark.xdist_group("airflow")

DAG = """
import os
from datetime import datetime, timedelta
from airflow import DAG
from airflow.operators.python import PythonOperator

MARKS = {marks!r}


def ok(*part):
    print("ok", *part)


def flaky(**ctx):
    mark = os.path.join(MARKS, ctx["dag"].dag_id + "-" + ctx["run_id"].replace(":", "_"))
    if not os.path.exists(mark):
        open(mark, "w").close()
        raise RuntimeError("warehouse busy")


def broken():
    raise ValueError("bad row 17")


def make(dag_id, middle):
    args = {{"retries": 1, "retry_delay": timedelta(seconds=0)}}
    with DAG(dag_id, start_date=datetime(2024, 1, 1), schedule=None, catchup=False, default_args=args) as dag:
        t1 = PythonOperator(task_id="extract", python_callable=ok)
        t2 = PythonOperator(task_id="transform", python_callable=middle)
        t3 = PythonOperator.partial(task_id="load", python_callable=ok).expand(op_args=[["a"], ["b"]])  # mapped
        t1 >> t2 >> t3
    return dag


nightly = make("nightly", flaky)
broken_dag = make("broken", broken)
"""


class Airflow:
    """An AIRFLOW_HOME with a SQLite metadata DB and the DAGs above."""

    def __init__(self, tmp: Path, python: str, template: Path | None = None) -> None:
        self.python = python
        self.home = tmp / "airflow"
        dags = self.home / "dags"
        dags.mkdir(parents=True)
        (dags / "etl.py").write_text(textwrap.dedent(DAG.format(marks=str(tmp))))
        self.db = tmp / "flowsight.db"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("FLOWSIGHT_", "AIRFLOW"))},
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
            "FLOWSIGHT_DATABASE_URL": str(self.db),
        }
        if template is not None:  # a metadata DB migrated once for the module
            shutil.copy(template, self.home / "airflow.db")
        else:
            self.airflow("db", "migrate")

    def airflow(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [self.python, "-m", "airflow", *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if ok:
            assert out.returncode == 0, f"airflow {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        return out

    def recorded(self, dag_id: str) -> tuple[tuple[float, float], dict[str, float]]:
        """What Airflow's metadata DB holds of the times: the DAG run's start and end, and when each
        task's last try ended (``airflow dags test`` records no task start, nor its earlier tries)."""
        with sqlite3.connect(self.home / "airflow.db") as db:
            [(start, end)] = db.execute("SELECT start_date, end_date FROM dag_run WHERE dag_id = ?", (dag_id,))
            ends = db.execute("SELECT task_id, map_index, end_date FROM task_instance WHERE dag_id = ?", (dag_id,))
            named = {(f"{task}[{i}]" if i >= 0 else task): at for task, i, at in ends}
            return (_utc(start), _utc(end)), {step: _utc(at) for step, at in named.items()}


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """A metadata DB migrated once per Airflow of the module."""
    made: dict[str, Path] = {}

    def get(engine: str) -> Path:
        if engine not in made:
            made[engine] = Airflow(tmp_path_factory.mktemp(engine), engine_python(engine)).home / "airflow.db"
        return made[engine]

    return get


@pytest.fixture
def airflow(request: pytest.FixtureRequest, tmp_path: Path, migrated: Callable[[str], Path]) -> Airflow:
    """Airflow 2 (``airflow``), or the one a test names (``airflow3``)."""
    engine = getattr(request, "param", "airflow")
    return Airflow(tmp_path, engine_python(engine), migrated(engine))


BOTH = pytest.mark.parametrize("airflow", ["airflow", "airflow3"], indirect=True)


@BOTH
def test_a_dag_run_is_one_run_with_its_tasks_as_steps_and_a_retry_as_an_attempt(airflow: Airflow) -> None:
    plugins = airflow.airflow("plugins")
    assert "flowsight" in plugins.stdout  # found through the entry point: no plugins folder, no DAG edited
    airflow.airflow("dags", "test", "nightly")
    with open_store(str(airflow.db)) as store:
        [run] = store.runs.list_runs().runs
        steps = store.runs.run_steps(run.workflow_id)
    assert run.workflow == "nightly" and run.workflow_id.startswith("nightly:manual__")
    assert run.state.value == "completed" and run.retries == 1
    assert [(s.step, s.attempt, s.status) for s in steps[:3]] == [
        ("extract", 1, "completed"),
        ("transform", 1, "failed"),
        ("transform", 2, "completed"),
    ]
    assert sorted((s.step, s.attempt, s.status) for s in steps[3:]) == [  # the mapped ones, in any order
        ("load[0]", 1, "completed"),
        ("load[1]", 1, "completed"),
    ]
    assert "warehouse busy" in (steps[1].error or "")
    (start, end), task_ends = airflow.recorded("nightly")
    assert run.start_time is not None and run.end_time is not None
    assert abs(run.start_time - start) <= 1.0 and abs(run.end_time - end) <= 1.0
    last_tries = {s.step: s for s in steps}
    assert all(abs((last_tries[task].ended_at or 0) - at) <= 1.0 for task, at in task_ends.items()), task_ends
    assert all(start - 1.0 <= (s.started_at or 0) <= (s.ended_at or 0) <= end + 1.0 for s in steps)


@BOTH
def test_a_task_failing_for_good_fails_the_run_with_its_error(airflow: Airflow) -> None:
    out = airflow.airflow("dags", "test", "broken", ok=False)
    assert out.returncode != 0  # Airflow's own verdict
    with open_store(str(airflow.db)) as store:
        [run] = store.runs.list_runs().runs
        steps = store.runs.run_steps(run.workflow_id)
    assert run.state.value == "failed"
    assert [(s.step, s.attempt, s.status) for s in steps] == [
        ("extract", 1, "completed"),
        ("transform", 1, "failed"),
        ("transform", 2, "failed"),
    ]
    assert "ValueError: bad row 17" in (steps[-1].error or "")


def test_a_server_away_while_airflow_runs_loses_nothing_and_doubles_nothing(airflow: Airflow, tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "server.db", log_dir=tmp_path)
    airflow.env.pop("FLOWSIGHT_DATABASE_URL")
    airflow.env["FLOWSIGHT_URL"] = server.url
    airflow.env["FLOWSIGHT_SPOOL_DIR"] = str(tmp_path / "spool")
    airflow.airflow("dags", "test", "nightly")  # nobody listening: the events wait in the spool
    server.start()
    try:
        airflow.airflow("dags", "test", "nightly")  # the next process sends the spool, then its own
        rows = server.rows("SELECT run_id, state FROM runs")
        assert len(rows) == 2 and {st for _, st in rows} == {"completed"}
        per_run = server.rows("SELECT run_id, COUNT(*) FROM events GROUP BY run_id")
        assert sorted(n for _, n in per_run) == [12, 12]  # each fact once
    finally:
        server.stop()


def test_the_listener_never_raises_into_airflow(airflow: Airflow) -> None:
    """Airflow 2 lets a listener's exception crash its scheduler: a hook handed what it cannot read
    logs the failure and returns."""
    code = (
        "from flowsight.integrations import airflow as a\n"
        "a.on_dag_run_running(object(), '')\n"
        "a.on_task_instance_running(None, object())\n"
        "a.on_task_instance_failed(None, object(), None)\n"
        "print('still here')\n"
    )
    out = subprocess.run([airflow.python, "-c", code], env=airflow.env, capture_output=True, text=True, timeout=120)
    said = out.stdout + out.stderr  # Airflow's logging writes to stdout
    assert out.returncode == 0 and out.stdout.splitlines()[-1] == "still here", said
    assert "flowsight: on_task_instance_running failed (Airflow goes on)" in said
