"""Celery tasks as flowsight runs, from the worker's signals.

Set-up: ``pip install 'flowsight[celery]'``, then in the module that makes the
Celery app (loaded by the workers, and by the code that sends tasks)::

    import flowsight.integrations.celery   # or: app.conf.imports = ["flowsight.integrations.celery"]

and point the SDK where to report (``FLOWSIGHT_URL`` for a server, with its
spool; else ``FLOWSIGHT_DATABASE_URL``, default ``./flowsight.db``).

What maps to what:

* a task sent alone is a run of its own, named after the task;
* a chain is one run (its id is the chain's root id), named after its first
  task; each task is a step named after the task;
* a retry (``self.retry``, ``autoretry_for``) is the step's next attempt, the
  failure before it a failed attempt that does not fail the run;
* a failure with no retry fails the step and the run (a chain stops there);
* a revoked task cancels its run;
* the run completes when a task ends with no task left in its chain.

The workflow's name travels with the chain in a message header
(``flowsight_workflow``, set when a task is sent), so a worker running the
chain's third task names the run as the one running its first did. A worker
killed mid-task (``kill -9``) sends nothing more: the run stays running and
is flagged stalled once quiet for longer than its bound
(``FLOWSIGHT_CELERY_STALL_TIMEOUT`` seconds, default 30 min; a workflow's
history gives a tighter one), never "fine". A chain with a group in it (a
chord) is one run, the group's tasks steps named with their place
(``count[0]``). A group or a chord sent on its own is one run too, its id
the group's id: the sender (with this module imported) gives each of the
group's tasks the run (header ``flowsight_run``) and, for a group, how many
tasks it runs (``flowsight_group_tasks``): each task's completion says so
(``ends_run_after``), and the store completes the run when that many have
completed (no task of a group knows it is the last); a chord's run
completes when its body has run. A task sent by a task of a run is a step
of that run. A group ending a chain completes the chain's run with its
first task to end (nothing says how many steps the run has in all).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from celery import Task, current_task, signals  # type: ignore[import-untyped]  # celery ships no type information

from flowsight.integrations.adapter import EngineAdapter

ENGINE = "celery"
HEADER = "flowsight_workflow"
RUN = "flowsight_run"
TASKS = "flowsight_group_tasks"
adapter = EngineAdapter(ENGINE)
_stall = os.environ.get("FLOWSIGHT_CELERY_STALL_TIMEOUT")
STALL_TIMEOUT = float(_stall) if _stall else None


def _ids(name: str, r: Any) -> tuple[str, str, str, int]:
    """(workflow, run id, step, attempt) of the task ``name`` being run
    (``r``: its request; read once, each read of ``task.request`` is a
    lookup in a thread-local stack): a group's task is named with its place
    in the group (``count[1]``)."""
    run_id = getattr(r, RUN, None) or r.root_id or r.id
    workflow = getattr(r, HEADER, None) or name
    index = getattr(r, "group_index", None)
    step = f"{name}[{index}]" if index is not None else name
    return str(workflow), str(run_id), step, int(r.retries or 0) + 1


def _is_root(r: Any) -> bool:
    return not r.root_id or r.root_id == r.id


def _last(r: Any) -> bool:
    """Whether no task of the run comes after this one (the header task of a
    chord inside a chain has the chord's body to come; a chord sent on its
    own makes each header task a run of its own)."""
    in_chain = bool(r.root_id) and r.root_id != r.id
    in_run = in_chain or bool(getattr(r, RUN, None))
    return not r.chain and not r.callbacks and not (in_run and getattr(r, "chord", None))


def _group_tasks(r: Any) -> int | None:
    """How many tasks the group this task was sent in has, when it is the
    whole run (a group sent on its own)."""
    n = getattr(r, TASKS, None)
    return n if isinstance(n, int) and not r.chain and not r.callbacks and not getattr(r, "chord", None) else None


def _publishing(sender: str | None = None, headers: dict[str, Any] | None = None, body: Any = None, **_: Any) -> None:
    """A task being sent carries its run's workflow (the sending task's, or
    its own name for a new run) and, where the run is not its root task's,
    the run: the sending task's, or the group it is sent in."""
    if headers is None or headers.get(HEADER):
        return
    running = current_task._get_current_object() if current_task else None
    if running is not None and running.request is not None and running.request.id:
        r = running.request
        headers[HEADER] = getattr(r, HEADER, None) or running.name
        if _continues(r, headers.get("id")):  # the next task of its chain, its chord's body, a callback
            for key in (RUN, TASKS):
                if getattr(r, key, None) is not None:
                    headers[key] = getattr(r, key)
    elif sender:
        headers[HEADER] = sender
        sending, group_id = _group_sending()
        if sending is None or group_id is None:
            return
        headers[RUN] = group_id
        headers[HEADER] = _first_task(sending) or sender  # one name for the run, whichever task says it
        embed = body[2] if isinstance(body, (tuple, list)) and len(body) > 2 else None
        size = _tasks_in(sending)
        if size is not None and not (
            headers.get("group") == group_id and isinstance(embed, dict) and embed.get("chord")
        ):
            headers[TASKS] = size  # a chord sent alone: its body ends the run


def _continues(r: Any, task_id: Any) -> bool:
    """Whether the task ``task_id`` being sent by the running task (request
    ``r``) carries on its canvas: the next task of its chain, the body of its
    chord, a callback. (A task it sends of its own, a subtask, is a step of
    the run of its root id, as Celery has it: a task of a group is its own
    root, so a subtask of one is not counted among the group's tasks.)"""
    following = [*(r.chain[-1:] if r.chain else []), *([r.chord] if getattr(r, "chord", None) else [])]
    following += list(r.callbacks or [])
    for sig in following:
        options = sig.get("options") if isinstance(sig, dict) else None
        if isinstance(options, dict) and options.get("task_id") == task_id:
            return True
    return False


def _group_sending() -> tuple[Any, str | None]:
    """The outermost group sending the task being sent, and its id. Celery's
    headers do not say how many tasks a group has (it sends them one by one,
    its size known to itself only), nor, in a group of groups or chords, the
    outer one: both are read from the ``group.apply_async`` calls a few
    frames up."""
    from celery.canvas import group  # type: ignore[import-untyped]  # celery ships no type information

    found: tuple[Any, str | None] = (None, None)
    frame = sys._getframe(1).f_back
    for _ in range(48):
        if frame is None:
            break
        me = frame.f_locals.get("self")
        if isinstance(me, group) and frame.f_code.co_name == "apply_async":
            gid = frame.f_locals.get("group_id")
            found = (me, str(gid) if gid else None)
        frame = frame.f_back
    return found


def _first_task(sig: Any) -> str | None:
    """The name of the first task of a canvas (a group's, a chain's, a chord's header's)."""
    from celery.canvas import _chain, _chord, group

    while isinstance(sig, (group, _chain, _chord)):
        tasks = sig.tasks
        if isinstance(tasks, group):  # a chord's header
            tasks = tasks.tasks
        if not isinstance(tasks, (list, tuple)) or not tasks:
            return None
        sig = tasks[0]
    name = getattr(sig, "task", None)
    return str(name) if name else None


def _tasks_in(sig: Any) -> int | None:
    """How many tasks ``sig`` runs (a chain's or a group's all, a chord's header and body)."""
    from celery.canvas import _chain, _chord, group

    if isinstance(sig, _chord):
        parts: Any = [sig.tasks, sig.body]
    elif isinstance(sig, (group, _chain)):
        parts = sig.tasks
    elif isinstance(sig, (list, tuple)):  # a chord's header given as a list
        parts = sig
    else:
        return 1
    if not isinstance(parts, (list, tuple)):
        return None  # a generator: counting it would use it up
    counts = [_tasks_in(p) for p in parts]
    return None if None in counts else sum(c for c in counts if c is not None)


def _started(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if task is None:
        return
    r = task.request
    workflow, run_id, step, attempt = _ids(str(task.name), r)
    now = time.time()
    if attempt == 1 and _is_root(r):
        extra = {"stall_timeout": STALL_TIMEOUT} if STALL_TIMEOUT else {}
        adapter.run_started(workflow, run_id, ts=now, celery_root_id=run_id, **extra)
    adapter.step_started(
        workflow, run_id, step, attempt=attempt, ts=now, instance=str(task_id), celery_task_id=str(task_id)
    )


def _retrying(request: Any = None, reason: Any = None, **_: Any) -> None:
    task = current_task._get_current_object() if current_task else None
    if task is None or request is None:
        return
    workflow, run_id, step, attempt = _ids(str(task.name), task.request)
    adapter.step_ended(
        workflow, run_id, step, "failed", attempt=attempt, error=str(reason), retrying=True, instance=request.id
    )


def _failed(sender: Task | None = None, exception: BaseException | None = None, **_: Any) -> None:
    if sender is None:
        return
    r = sender.request
    workflow, run_id, step, attempt = _ids(str(sender.name), r)
    error = f"{type(exception).__name__}: {exception}" if exception is not None else "failed"
    adapter.step_ended(workflow, run_id, step, "failed", attempt=attempt, error=error, instance=r.id)
    adapter.run_ended(workflow, run_id, "failed", error=f"task {step} failed: {error}")


def _ended(task: Task | None = None, state: str | None = None, **_: Any) -> None:
    if task is None or state != "SUCCESS":
        return  # RETRY and FAILURE were said by their own signals
    r = task.request
    workflow, run_id, step, attempt = _ids(str(task.name), r)
    tasks = _group_tasks(r)
    if tasks is not None:  # the store completes the run with the group's last completion
        adapter.step_ended(workflow, run_id, step, "completed", attempt=attempt, instance=r.id, ends_run_after=tasks)
        return
    adapter.step_ended(workflow, run_id, step, "completed", attempt=attempt, instance=r.id)
    if _last(r):
        adapter.run_ended(workflow, run_id, "completed")


def _revoked(request: Any = None, terminated: bool = False, signum: Any = None, **_: Any) -> None:
    if request is None:
        return
    run_id = str(getattr(request, RUN, None) or getattr(request, "root_id", None) or request.id)
    name = str(getattr(request, "task_name", None) or getattr(request, "name", None) or "task")
    workflow = str(getattr(request, HEADER, None) or name)
    how = f"terminated by signal {signum}" if terminated else "revoked"
    adapter.run_ended(workflow, run_id, "cancelled", reason=f"task {name} {how}")


def _process_ending(**_: Any) -> None:
    """A prefork pool's child ends with ``os._exit``: what it said goes to the store or the spool first."""
    adapter.flush(5.0)


def connect() -> None:
    """Listen to the worker's and the sender's signals (done when this module
    is imported; connecting twice connects once)."""
    signals.before_task_publish.connect(_publishing, weak=False, dispatch_uid="flowsight-publish")
    signals.task_prerun.connect(_started, weak=False, dispatch_uid="flowsight-prerun")
    signals.task_retry.connect(_retrying, weak=False, dispatch_uid="flowsight-retry")
    signals.task_failure.connect(_failed, weak=False, dispatch_uid="flowsight-failure")
    signals.task_postrun.connect(_ended, weak=False, dispatch_uid="flowsight-postrun")
    signals.task_revoked.connect(_revoked, weak=False, dispatch_uid="flowsight-revoked")
    signals.worker_process_shutdown.connect(_process_ending, weak=False, dispatch_uid="flowsight-process-end")


connect()
