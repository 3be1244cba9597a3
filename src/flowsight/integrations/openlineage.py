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
from datetime import timezone
from typing import Any

from dateutil.parser import isoparse  # type: ignore[import-untyped]  # openlineage-python's; no stubs here
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


def _name(path: tuple[str | int, ...]) -> str:
    """A field's name: ``run.facets.parent.job.name``, ``inputs[0].name``."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _at(data: Any, *path: str | int) -> Any:
    """``data[path[0]][path[1]]...``, or an error naming the field."""
    here = data
    for i, key in enumerate(path):
        if isinstance(key, int):  # an array's item (the caller has checked the array)
            here = here[key]
            continue
        if not isinstance(here, Mapping):
            where = _name(path[:i]) or "the event"
            raise EventError(f"field '{where}': expected an object, got {type(here).__name__}", field=_name(path[:i]))
        if key not in here:
            raise EventError(f"field '{_name(path[: i + 1])}': missing", field=_name(path[: i + 1]))
        here = here[key]
    return here


def _text(data: Any, *path: str | int) -> str:
    value = _at(data, *path)
    if not isinstance(value, str) or not value:
        field = _name(path)
        raise EventError(f"field '{field}': expected a non-empty string, got {value!r}", field=field)
    return value


def _datasets(data: Mapping[str, Any], key: str, cls: type[InputDataset] | type[OutputDataset]) -> list[Any]:
    items = data.get(key) or []
    if not isinstance(items, list):
        raise EventError(f"field '{key}': expected an array, got {type(items).__name__}", field=key)
    return [
        cls(namespace=_text(data, key, i, "namespace"), name=_text(data, key, i, "name")) for i in range(len(items))
    ]


def _run_and_job(data: Any, *at: str) -> tuple[str, str, str]:
    """The run id, the job's namespace and name of a parent or root facet at ``at``."""
    return _text(data, *at, "run", "runId"), _text(data, *at, "job", "namespace"), _text(data, *at, "job", "name")


def _facets(data: Any) -> dict[str, Any]:
    """The run facets flowsight reads, typed (the rest passed over)."""
    facets = _at(data, "run").get("facets") or {}
    if not isinstance(facets, Mapping):
        raise EventError(f"field 'run.facets': expected an object, got {type(facets).__name__}", field="run.facets")
    out: dict[str, Any] = {}
    if facets.get("parent") is not None:
        at = ("run", "facets", "parent")
        run_id, namespace, name = _run_and_job(data, *at)
        root = None
        if isinstance(facets["parent"], Mapping) and facets["parent"].get("root") is not None:
            root_id, root_namespace, root_name = _run_and_job(data, *at, "root")
            root_run = _validated(_name((*at, "root", "run", "runId")), RootRun, runId=root_id)
            root = Root(run=root_run, job=RootJob(namespace=root_namespace, name=root_name))
        parent_run = _validated(_name((*at, "run", "runId")), ParentRun, runId=run_id)
        out["parent"] = ParentRunFacet(run=parent_run, job=ParentJob(namespace=namespace, name=name), root=root)
    error = facets.get("errorMessage")
    if isinstance(error, Mapping) and isinstance(error.get("message"), str) and error["message"]:
        trace = error.get("stackTrace")  # a facet flowsight cannot read is passed over, the event kept
        out["errorMessage"] = ErrorMessageRunFacet(
            message=error["message"],
            programmingLanguage=str(error.get("programmingLanguage") or ""),
            stackTrace=trace if isinstance(trace, str) else None,
        )
    return out


def _validated(field: str, make: Any, *args: Any, **kwargs: Any) -> Any:
    """``make(*args, **kwargs)``: a model whose validator refuses a value, refused naming ``field``."""
    try:
        return make(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        raise EventError(f"field '{field}': {exc}", field=field) from None


def read_run_event(data: Any) -> RunEvent:
    """One event as ``openlineage-python``'s ``RunEvent`` (the facets flowsight reads typed,
    the rest passed over).

    Raises:
        EventError: naming the field that is missing or wrong.
    """
    if not isinstance(_at(data, "run"), Mapping):
        raise EventError(f"field 'run': expected an object, got {type(data['run']).__name__}", field="run")
    kind = _text(data, "eventType")
    try:
        state = RunState(kind)
    except ValueError:
        allowed = ", ".join(s.value for s in RunState)
        raise EventError(f"field 'eventType': {kind!r} is not one of {allowed}", field="eventType") from None
    run = _validated("run.runId", Run, runId=_text(data, "run", "runId"), facets=_facets(data))
    event: RunEvent = _validated(
        "eventTime",
        RunEvent,
        eventType=state,
        eventTime=_text(data, "eventTime"),
        run=run,
        job=Job(namespace=_text(data, "job", "namespace"), name=_text(data, "job", "name")),
        producer=str(data.get("producer") or ""),
        inputs=_datasets(data, "inputs", InputDataset),
        outputs=_datasets(data, "outputs", OutputDataset),
    )
    return event


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
    when = isoparse(ev.eventTime)  # the parser the model's validator read it with
    ts = (when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)).timestamp()
    event_id = fact_id_at(int(ts * 1e9), SOURCE, ev.run.runId, namespace, job, kind.value)
    wire = WireEvent(id=event_id, ts=ts, kind=kind, workflow=workflow, run_id=run_id)
    wire.step, wire.attrs = step, attrs
    return finish_wire(wire)
