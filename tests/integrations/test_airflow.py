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
from tests.helpers import wait_for
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


def skip():
    from airflow.exceptions import AirflowSkipException

    raise AirflowSkipException("nothing new today")


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

with DAG("skippy", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as skippy:
    # skip_me skips itself; after never runs (the scheduler skips it)
    PythonOperator(task_id="start", python_callable=ok) >> PythonOperator(task_id="skip_me", python_callable=skip) >> (
        PythonOperator(task_id="after", python_callable=ok)
    )
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

    def dag_run_state(self, run_id: str) -> str | None:
        with sqlite3.connect(self.home / "airflow.db") as db:
            row = db.execute("SELECT state FROM dag_run WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else str(row[0])

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


@BOTH
def test_a_task_that_skips_itself_ends_its_step_and_one_never_run_is_no_step(airflow: Airflow) -> None:
    airflow.airflow("dags", "test", "skippy")
    with open_store(str(airflow.db)) as store:
        [run] = store.runs.list_runs().runs
        steps = store.runs.run_steps(run.workflow_id)
        [said] = [
            e for e in store.runs.run_events(run.workflow_id) if e.step == "skip_me" and e.kind.value != "step_started"
        ]
    assert run.state.value == "completed"
    assert [(s.step, s.status) for s in steps] == [("start", "completed"), ("skip_me", "completed")]
    assert (said.kind.value, said.attrs.get("skipped"), said.attrs.get("reason")) == ("step_completed", True, "skipped")


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


MEND = """
import os
from datetime import datetime
from airflow import DAG
from airflow.exceptions import AirflowSkipException
from airflow.operators.python import PythonOperator


def ok():
    print("ok")


def transform():
    if not os.path.exists({fixed!r}):
        raise RuntimeError("upstream schema changed")


def skip():
    raise AirflowSkipException("nothing to publish")


with DAG("mend", start_date=datetime(2024, 1, 1), schedule=None, catchup=False) as dag:
    names = ["extract", "transform", "load", "publish"]
    calls = [ok, transform, ok, skip]
    tasks = [PythonOperator(task_id=n, python_callable=c) for n, c in zip(names, calls)]
    tasks[0] >> tasks[1] >> tasks[2] >> tasks[3]
"""


def test_a_dag_run_cleared_and_run_again_by_the_scheduler_is_a_new_run_the_first_keeping_its_outcome(
    airflow: Airflow, tmp_path: Path
) -> None:
    """The real scheduler (SequentialExecutor, SQLite): a DAG run fails; its failed task is fixed and
    cleared with what follows; the scheduler runs them again. Airflow keeps one DAG run (its clear
    number 1); flowsight keeps the failed run as it ended and a new run ``~1`` of what ran again,
    the task that skipped itself closed by the DAG run's end (Airflow 2 tells no listener of a skip)."""
    fixed = tmp_path / "fixed"
    (airflow.home / "dags" / "mend.py").write_text(MEND.format(fixed=str(fixed)))
    airflow.env["PATH"] = os.pathsep.join([str(Path(airflow.python).parent), airflow.env.get("PATH", "")])
    airflow.env["AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC"] = "1"
    airflow.airflow("dags", "reserialize")
    airflow.airflow("dags", "unpause", "mend")
    airflow.airflow("dags", "trigger", "mend", "--run-id", "night1")
    with (tmp_path / "scheduler.log").open("wb") as out:
        scheduler = subprocess.Popen(
            [airflow.python, "-m", "airflow", "scheduler"], env=airflow.env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for("the first run failed", lambda: airflow.dag_run_state("night1") == "failed", timeout=180)
        fixed.touch()
        airflow.airflow("tasks", "clear", "mend", "--task-regex", "^transform$", "--downstream", "--yes")
        wait_for("the run again succeeded", lambda: airflow.dag_run_state("night1") == "success", timeout=180)
    finally:
        scheduler.terminate()
        try:
            scheduler.wait(60)
        except subprocess.TimeoutExpired:
            scheduler.kill()
            scheduler.wait()
    with open_store(str(airflow.db)) as store:
        first, again = store.runs.get_run("mend:night1"), store.runs.get_run("mend:night1~1")
        first_steps = [(s.step, s.attempt, s.status) for s in store.runs.run_steps("mend:night1")]
        again_steps = [(s.step, s.attempt, s.status) for s in store.runs.run_steps("mend:night1~1")]
        skipped = [e for e in store.runs.run_events("mend:night1~1") if e.step == "publish" and e.attrs.get("skipped")]
    assert first is not None and again is not None
    assert (first.state.value, again.state.value) == ("failed", "completed")
    assert first_steps == [("extract", 1, "completed"), ("transform", 1, "failed")]
    assert again_steps == [("transform", 1, "completed"), ("load", 1, "completed"), ("publish", 1, "completed")]
    assert [e.attrs.get("skipped") for e in skipped] == [True]


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
