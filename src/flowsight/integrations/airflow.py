"""Airflow DAG runs as flowsight runs, their task instances as steps: a
listener plugin, registered through Airflow's ``airflow.plugins`` entry
point, so no DAG is edited.

Set-up: ``pip install 'flowsight[airflow]'`` where Airflow runs (scheduler
and workers), and ``FLOWSIGHT_URL`` (a server; the SDK's disk spool keeps
what it cannot send) or ``FLOWSIGHT_DATABASE_URL`` (a store) in their
environment. With neither set the plugin says nothing (it is installed
wherever flowsight is, and reports only where asked to).

What maps to what:

* a DAG run is a run of the workflow named after the DAG (run id
  ``DAG_ID:RUN_ID``: Airflow's run ids are unique per DAG only);
* a task instance is a step named after the task (a mapped one
  ``task[index]``); its try number is the step's attempt;
* a try that fails with a retry left (``up_for_retry``) is a failed attempt
  that does not fail the run; the next try is the next attempt;
* a task instance that skips itself (``AirflowSkipException``) ends its
  step as completed, with ``skipped`` (Airflow 3 says so as it happens;
  Airflow 2 says nothing, so the DAG run's end closes its skipped steps);
  a task the scheduler skipped (a branch not taken) never ran: no step;
* the DAG run's success or failure ends the run;
* a DAG run cleared and run again is a new run (run id
  ``DAG_ID:RUN_ID~N``, ``N`` Airflow's clear number): its first run's
  outcome stays as it was.

Airflow 2 lets an exception from a listener crash the scheduler, and runs
listeners on its own threads, so every hook here catches everything and does
no more than queue an event (a task process, which ends without its exit
handlers, waits at most :data:`FLUSH_TIMEOUT` for its events to be sent or
spooled).
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pluggy
from airflow import __version__ as airflow_version
from airflow.plugins_manager import AirflowPlugin

from flowsight.integrations.adapter import EngineAdapter

ENGINE = "airflow"
AIRFLOW_3 = int(airflow_version.split(".")[0]) >= 3
#: the longest a task process waits, as it ends, for its events to be sent or spooled
FLUSH_TIMEOUT = 5.0
# Airflow's marker (airflow.listeners.hookimpl), made here: the same on Airflow 2 and 3's task SDK
hookimpl = pluggy.HookimplMarker("airflow")
adapter = EngineAdapter(ENGINE)
log = logging.getLogger("flowsight.airflow")
F = TypeVar("F", bound=Callable[..., None])


def enabled() -> bool:
    return bool(os.environ.get("FLOWSIGHT_URL") or os.environ.get("FLOWSIGHT_DATABASE_URL"))


def _quiet(fn: F) -> F:
    """Never let flowsight break Airflow: a hook that fails logs and returns."""

    @functools.wraps(fn)
    def hook(*args: Any, **kwargs: Any) -> None:
        if not enabled():
            return
        try:
            fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 - the hook is Airflow's code path: nothing may escape it
            log.exception("flowsight: %s failed (Airflow goes on)", fn.__name__)

    return hook  # type: ignore[return-value]


def _ts(value: Any) -> float | None:
    return value.timestamp() if value is not None and hasattr(value, "timestamp") else None


def run_id(dag_id: str, airflow_run_id: str, clear_number: int = 0) -> str:
    """The flowsight run of a DAG run's ``clear_number``-th run (0: its first)."""
    base = f"{dag_id}:{airflow_run_id}"
    return f"{base}~{clear_number}" if clear_number else base


def _rid(dag_run: Any) -> str:
    return run_id(str(dag_run.dag_id), str(dag_run.run_id), int(getattr(dag_run, "clear_number", 0) or 0))


def step_name(ti: Any) -> str:
    index = getattr(ti, "map_index", -1)
    return f"{ti.task_id}[{index}]" if index is not None and index >= 0 else str(ti.task_id)


def _dag_run_attrs(dag_run: Any) -> dict[str, Any]:
    logical = getattr(dag_run, "logical_date", None) or getattr(dag_run, "execution_date", None)
    attrs: dict[str, Any] = {"airflow_dag_id": dag_run.dag_id, "airflow_run_id": dag_run.run_id}
    if getattr(dag_run, "run_type", None) is not None:
        attrs["airflow_run_type"] = str(getattr(dag_run.run_type, "value", dag_run.run_type))
    if logical is not None:
        attrs["airflow_logical_date"] = logical.isoformat()
    return attrs


def _start_run(dag_run: Any) -> None:
    adapter.run_started(str(dag_run.dag_id), _rid(dag_run), ts=_ts(dag_run.start_date), **_dag_run_attrs(dag_run))


# ---- DAG runs (the scheduler's process: queue, never wait) ----------------------------------
@hookimpl
@_quiet
def on_dag_run_running(dag_run: Any, msg: str) -> None:
    _start_run(dag_run)


@hookimpl
@_quiet
def on_dag_run_success(dag_run: Any, msg: str) -> None:
    _close_skipped(dag_run)
    adapter.run_ended(str(dag_run.dag_id), _rid(dag_run), "completed", ts=_ts(dag_run.end_date))


@hookimpl
@_quiet
def on_dag_run_failed(dag_run: Any, msg: str) -> None:
    _close_skipped(dag_run)
    why = f"DAG run failed: {msg}" if msg else "DAG run failed"
    adapter.run_ended(str(dag_run.dag_id), _rid(dag_run), "failed", ts=_ts(dag_run.end_date), error=why)


def _close_skipped(dag_run: Any) -> None:
    """The steps of the task instances that ran and skipped themselves, on
    Airflow 2, which tells no listener of them (3 does, as it happens). Read
    in the DAG run's own session where it has one (the scheduler's: no second
    connection to the metadata DB). A task the scheduler skipped never ran
    (try 0): no step."""
    if AIRFLOW_3 or not hasattr(dag_run, "get_task_instances"):
        return
    from sqlalchemy.orm import object_session

    session = object_session(dag_run)
    found = dag_run.get_task_instances(state=["skipped"], **({"session": session} if session is not None else {}))
    for ti in found:
        if int(ti.try_number or 0) >= 1:
            _skipped(ti, dag_run)


# ---- task instances (the task's process) ------------------------------------------------------
def _ids(ti: Any, dag_run: Any = None) -> tuple[str, str, str, int]:
    """(workflow, run id, step, attempt) of a task instance; ``dag_run``: its DAG run, if at hand."""
    wf = str(ti.dag_id)
    dag_run = dag_run if dag_run is not None else _dag_run_of(ti)
    clear = int(getattr(dag_run, "clear_number", 0) or 0) if dag_run is not None else 0
    return wf, run_id(wf, ti.run_id, clear), step_name(ti), int(ti.try_number or 1)


def _dag_run_of(ti: Any) -> Any:
    """The task's DAG run where it is at hand, else None: Airflow 2's
    TaskInstance has it as ``ti.dag_run``; Airflow 3's task SDK
    RuntimeTaskInstance has none, but its (cached) template context holds the
    DAG run the API server sent."""
    try:
        if hasattr(ti, "dag_run"):
            return ti.dag_run
        if hasattr(ti, "get_template_context"):
            return ti.get_template_context().get("dag_run")
    except Exception:  # noqa: BLE001 - a detached ORM object: the DAG run's own hook says it
        pass
    return None


@hookimpl
@_quiet
def on_task_instance_running(previous_state: Any, task_instance: Any) -> None:
    ti = task_instance
    dag_run = _dag_run_of(ti)
    if getattr(dag_run, "start_date", None) is not None:  # `dags test` never says the DAG run started
        _start_run(dag_run)  # the same fact as the DAG run's hook: stored once
    wf, rid, step, attempt = _ids(ti, dag_run)
    ts = _ts(getattr(ti, "start_date", None)) or time.time()
    adapter.step_started(wf, rid, step, attempt=attempt, ts=ts, airflow_task_id=str(ti.task_id))


@hookimpl
@_quiet
def on_task_instance_success(previous_state: Any, task_instance: Any) -> None:
    wf, rid, step, attempt = _ids(task_instance)
    adapter.step_ended(wf, rid, step, "completed", attempt=attempt, ts=_ts(getattr(task_instance, "end_date", None)))
    _flush_if_task_process(task_instance)


def _failed(ti: Any, error: Any) -> None:
    wf, rid, step, attempt = _ids(ti)
    retrying = str(getattr(ti.state, "value", ti.state)) == "up_for_retry"
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error or "task failed")
    ts = _ts(getattr(ti, "end_date", None))
    adapter.step_ended(wf, rid, step, "failed", attempt=attempt, ts=ts, error=text, retrying=retrying)
    _flush_if_task_process(ti)


def _flush_if_task_process(ti: Any) -> None:
    """In the task's own process, which Airflow ends without its exit handlers, wait (at most
    FLUSH_TIMEOUT) for the events to reach the store or the spool; elsewhere (the scheduler failing
    a task it lost, Airflow 3's API server marking one) never wait."""
    pid = getattr(ti, "pid", None)
    if pid is None or pid == os.getpid():
        adapter.flush(FLUSH_TIMEOUT)


@hookimpl
@_quiet
def on_task_instance_failed(previous_state: Any, task_instance: Any, error: Any) -> None:
    _failed(task_instance, error)


def _skipped(ti: Any, dag_run: Any = None) -> None:
    wf, rid, step, attempt = _ids(ti, dag_run)
    ts = _ts(getattr(ti, "end_date", None))
    adapter.step_ended(wf, rid, step, "completed", attempt=attempt, ts=ts, skipped=True, reason="skipped")


@hookimpl
@_quiet
def on_task_instance_skipped(previous_state: Any, task_instance: Any) -> None:
    """Airflow 3: the task skipped itself (``AirflowSkipException``)."""
    _skipped(task_instance)
    _flush_if_task_process(task_instance)


class FlowsightPlugin(AirflowPlugin):  # type: ignore[misc]  # Airflow's class: Any to mypy
    """The plugin Airflow finds through the ``airflow.plugins`` entry point."""

    name = "flowsight"
    listeners = [sys.modules[__name__]]
