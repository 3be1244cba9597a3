"""OpenLineage run events as flowsight runs and steps (``POST /api/v1/lineage``).

Each event is read into ``openlineage-python``'s own models (their
validators refuse what the specification does: a run id that is no UUID, an
event time with no time in it), then mapped:

* a job's run with no parent is a run of the workflow named after the job
  (run id: the OpenLineage run id);
* a job's run with a ``parent`` run facet (an Airflow task under its DAG
  run, a Spark job under an Airflow task) is a step, named after the job, of
  the root run (the facet's ``root``, else its parent): the run that is a
  flowsight run;
* ``START`` starts it, ``COMPLETE`` completes it, ``FAIL`` fails it (the
  ``errorMessage`` facet is the error, its stack trace the traceback),
  ``ABORT`` cancels it (a step: fails it); ``RUNNING`` and ``OTHER`` change
  no state;
* the event's input and output datasets (``namespace/name``) are kept on
  its event, and a run's on its start (where the run page shows them).

Each event's id is made of the OpenLineage run id, the job and the event
type, so an event sent again is stored once.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated.error_message_run import ErrorMessageRunFacet
from openlineage.client.generated.parent_run import Job as ParentJob
from openlineage.client.generated.parent_run import ParentRunFacet, Root, RootJob, RootRun
from openlineage.client.generated.parent_run import Run as ParentRun

from flowsight.errors import EventError
from flowsight.model.runs.events import Event, EventKind, WireEvent, finish_wire
from flowsight.model.runs.ids import fact_id_at

K = EventKind
SOURCE = "openlineage"
_RUN_KINDS = {
    RunState.START: K.STARTED,
    RunState.COMPLETE: K.COMPLETED,
    RunState.FAIL: K.FAILED,
    RunState.ABORT: K.CANCELLED,
}
_STEP_KINDS = {
    RunState.START: K.STEP_STARTED,
    RunState.COMPLETE: K.STEP_COMPLETED,
    RunState.FAIL: K.STEP_FAILED,
    RunState.ABORT: K.STEP_FAILED,
}


def _at(data: Any, *path: str) -> Any:
    """``data[path[0]][path[1]]...``, or an error naming the field."""
    here = data
    for i, key in enumerate(path):
        if not isinstance(here, Mapping):
            where = ".".join(path[:i]) or "the event"
            raise EventError(f"field '{where}': expected an object, got {type(here).__name__}", field=where)
        if key not in here:
            raise EventError(f"field '{'.'.join(path[: i + 1])}': missing", field=".".join(path[: i + 1]))
        here = here[key]
    return here


def _text(data: Any, *path: str) -> str:
    value = _at(data, *path)
    if not isinstance(value, str) or not value:
        field = ".".join(path)
        raise EventError(f"field '{field}': expected a non-empty string, got {value!r}", field=field)
    return value


def _datasets(data: Mapping[str, Any], key: str, cls: type[InputDataset] | type[OutputDataset]) -> list[Any]:
    items = data.get(key) or []
    if not isinstance(items, list):
        raise EventError(f"field '{key}': expected an array, got {type(items).__name__}", field=key)
    return [cls(namespace=_text(d, "namespace"), name=_text(d, "name")) for d in items]


def read_run_event(data: Any) -> RunEvent:
    """One event as ``openlineage-python``'s ``RunEvent`` (the facets flowsight reads typed,
    the rest passed over).

    Raises:
        EventError: naming the field that is missing or wrong.
    """
    run = _at(data, "run")
    if not isinstance(run, Mapping):
        raise EventError(f"field 'run': expected an object, got {type(run).__name__}", field="run")
    facets = run.get("facets") or {}
    run_facets: dict[str, Any] = {}
    try:
        parent = facets.get("parent") if isinstance(facets, Mapping) else None
        if parent is not None:
            root = parent.get("root") if isinstance(parent, Mapping) else None
            run_facets["parent"] = ParentRunFacet(
                run=ParentRun(runId=_text(parent, "run", "runId")),
                job=ParentJob(namespace=_text(parent, "job", "namespace"), name=_text(parent, "job", "name")),
                root=None
                if root is None
                else Root(
                    run=RootRun(runId=_text(root, "run", "runId")),
                    job=RootJob(namespace=_text(root, "job", "namespace"), name=_text(root, "job", "name")),
                ),
            )
        error = facets.get("errorMessage") if isinstance(facets, Mapping) else None
        if error is not None:
            trace = error.get("stackTrace") if isinstance(error, Mapping) else None
            run_facets["errorMessage"] = ErrorMessageRunFacet(
                message=_text(error, "message"),
                programmingLanguage=str(error.get("programmingLanguage") or ""),
                stackTrace=trace if isinstance(trace, str) else None,
            )
        kind = _text(data, "eventType")
        try:
            state = RunState(kind)
        except ValueError:
            allowed = ", ".join(s.value for s in RunState)
            raise EventError(f"field 'eventType': {kind!r} is not one of {allowed}", field="eventType") from None
        return RunEvent(
            eventType=state,
            eventTime=_text(data, "eventTime"),
            run=Run(runId=_text(data, "run", "runId"), facets=run_facets),
            job=Job(namespace=_text(data, "job", "namespace"), name=_text(data, "job", "name")),
            producer=str(data.get("producer") or ""),
            inputs=_datasets(data, "inputs", InputDataset),
            outputs=_datasets(data, "outputs", OutputDataset),
        )
    except EventError:
        raise
    except (ValueError, TypeError, AttributeError) as exc:  # the models' validators: a run id, a time
        raise EventError(f"not an OpenLineage RunEvent: {exc}") from None


def _names(datasets: list[Any] | None) -> list[str]:
    return [f"{d.namespace}/{d.name}" for d in datasets or []]


def lineage_event(ev: RunEvent) -> Event | None:
    """The flowsight event of one OpenLineage run event (None for ``RUNNING``
    and ``OTHER``, which change no state).

    Raises:
        EventError: what it makes is not a valid event (a name too long, say).
    """
    facets = ev.run.facets or {}
    parent = facets.get("parent")
    job, namespace = ev.job.name, ev.job.namespace
    attrs: dict[str, Any] = {"openlineage.run_id": ev.run.runId, "openlineage.namespace": namespace}
    if ev.inputs:
        attrs["lineage_inputs"] = _names(ev.inputs)
    if ev.outputs:
        attrs["lineage_outputs"] = _names(ev.outputs)
    state = ev.eventType
    if isinstance(parent, ParentRunFacet):
        top = parent.root if parent.root is not None else parent
        run_id, workflow, step = top.run.runId, top.job.name, job
        kind = _STEP_KINDS.get(state) if state is not None else None
    else:
        run_id, workflow, step = ev.run.runId, job, None
        kind = _RUN_KINDS.get(state) if state is not None else None
    if kind is None:
        return None
    error = facets.get("errorMessage")
    if kind in (K.FAILED, K.STEP_FAILED):
        if isinstance(error, ErrorMessageRunFacet):
            attrs["error"] = error.message
            if error.stackTrace:
                attrs["traceback"] = error.stackTrace
        else:
            attrs["error"] = "aborted" if state is RunState.ABORT else "failed"
    elif kind is K.CANCELLED:
        attrs["reason"] = "aborted"
    when = datetime.fromisoformat(ev.eventTime.replace("Z", "+00:00"))
    ts = (when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)).timestamp()
    event_id = fact_id_at(int(ts * 1e9), SOURCE, ev.run.runId, namespace, job, kind.value)
    wire = WireEvent(id=event_id, ts=ts, kind=kind, workflow=workflow, run_id=run_id)
    wire.step, wire.attrs = step, attrs
    return finish_wire(wire)
