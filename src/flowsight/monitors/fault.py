"""The fault monitor: every detector on its own schedule, faults declared,
assessed, recorded, alerted and resolved.

:meth:`FaultMonitor.monitor_faults` runs each detector in its own task at a
fixed rate (``Schedule.interval`` from one start to the next, never drifting
with the check's own duration), under a watchdog: a slow or hung detector
never delays the others. A failed check is not yet a fault: ``retries``
failures in a row are tolerated (one blip is not a fault); the next one
declares it (:meth:`FaultMonitor.handle_fault`): the running runs of the
workflows that depend on its target are added, its severity assessed
(:func:`~flowsight.model.faults.assess_severity`), a record written to the
store, an alert sent. While it lasts its severity is assessed again (it rises
with the duration); a change re-alerts. When the detector passes again, the
fault resolves: the record gets its end, the alert is resolved.

A detector that raises or outlives its watchdog is *broken* (after the same
retries): it is reported as such (a ``DetectorBroken`` alert, its state in
:attr:`FaultMonitor.states`), never as a fault of its target.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields, replace

from flowsight.detectors.base import FaultDetector, Schedule
from flowsight.monitors.fault_decide import (
    Broken,
    CheckResult,
    Declare,
    DetectorState,
    Mended,
    Reassess,
    Resolve,
    decide,
)
from flowsight.errors import StoreFullError
from flowsight.model.alerts import Alert, AlertStatus, Severity
from flowsight.model.durations import format_duration
from flowsight.model.faults import Fault, FaultKind, FaultRecord, FaultStatus, assess_severity
from flowsight.model.runs.state import WorkflowState
from flowsight.monitors.sink import Sink, send
from flowsight.store.interface import Store

log = logging.getLogger("flowsight.faults")

#: how far back repeated openings of one fault count (assess_severity's ``repeats``)
REPEAT_WINDOW = 24 * 3600.0
#: an unchanged open fault is written back to the store at most this often
TOUCH_EVERY = 60.0
DETECTOR_BROKEN = "DetectorBroken"


class FaultMonitor:
    """The specification's ``FaultMonitor{fault_detectors, alert_manager, fault_history}``.

    ``fault_detectors``: the detectors (names unique); ``schedules``: per
    detector name (default :class:`Schedule`'s). ``alert_manager``: where
    alerts go (anything with ``send_alert(alert)``, or a callable).
    ``store``: where records go (None: kept in :attr:`fault_history` only).
    ``dependencies``: workflow -> the services it depends on (a fault's
    target or its detector's name). ``clock``: the time.
    """

    def __init__(
        self,
        fault_detectors: Sequence[FaultDetector],
        alert_manager: Sink | None = None,
        *,
        store: Store | None = None,
        schedules: Mapping[str, Schedule] | None = None,
        dependencies: Mapping[str, Sequence[str]] | None = None,
        clock: Callable[[], float] = time.time,
        external_url: str = "",
        history: int = 1000,
        keep_lateness: bool = False,
    ) -> None:
        names = [d.name for d in fault_detectors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"detector names must be unique: {', '.join(map(repr, dupes))} given twice")
        self.fault_detectors = list(fault_detectors)
        self.alert_manager = alert_manager
        self.store = store
        self.dependencies = {wf: tuple(s) for wf, s in (dependencies or {}).items() if s}
        self.clock = clock
        self.external_url = external_url
        self.fault_history: deque[FaultRecord] = deque(maxlen=history)
        self.keep_lateness = keep_lateness
        schedules = schedules or {}
        self.states = {d.name: DetectorState(d.name, schedules.get(d.name, Schedule())) for d in fault_detectors}
        self._ids = 0

    # ---- checking ---------------------------------------------------------------
    async def check(self, detector: FaultDetector) -> CheckResult:
        """Run ``detector`` once under its watchdog; never raises (but for cancellation)."""
        schedule = self.states[detector.name].schedule if detector.name in self.states else Schedule()
        started = self.clock()
        t0 = time.monotonic()
        try:
            fault = await asyncio.wait_for(detector.detect(), schedule.watchdog)
        except TimeoutError:
            return CheckResult(
                detector.name,
                error=f"no result within {schedule.watchdog:g} s (hung)",
                started_at=started,
                duration=time.monotonic() - t0,
            )
        except Exception as exc:  # the detector's own failure: it is broken, its target is not at fault
            text = str(exc) or type(exc).__name__
            return CheckResult(
                detector.name,
                error=f"{type(exc).__name__}: {text}" if str(exc) else text,
                started_at=started,
                duration=time.monotonic() - t0,
            )
        if fault is not None and fault.detector != detector.name:
            fault = Fault(fault.type, fault.message, detector.name, fault.evidence, fault.workflows, fault.runs)
        return CheckResult(detector.name, fault=fault, started_at=started, duration=time.monotonic() - t0)

    async def check_once(self) -> list[CheckResult]:
        """Every detector once, side by side (``flowsight detectors check``): no state kept, nothing recorded."""
        return list(await asyncio.gather(*(self.check(d) for d in self.fault_detectors)))

    async def monitor_faults(self, stop: asyncio.Event | None = None) -> None:
        """Run every detector on its schedule until ``stop`` is set (or the
        task is cancelled); each in its own task, so none waits for another."""
        stop = stop or asyncio.Event()
        tasks = [
            asyncio.create_task(self._loop(d, stop), name=f"flowsight-detector-{d.name}") for d in self.fault_detectors
        ]
        try:
            await stop.wait()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for d in self.fault_detectors:  # a detector may hold connections (an HTTP client)
                close = getattr(d, "aclose", None)
                if close is not None:
                    try:
                        await close()
                    except Exception:
                        log.exception("closing detector %r failed", d.name)

    async def _loop(self, detector: FaultDetector, stop: asyncio.Event) -> None:
        state = self.states[detector.name]
        interval = state.schedule.interval
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not stop.is_set():
            late = loop.time() - due
            state.max_lateness = max(state.max_lateness, late)
            if self.keep_lateness:
                state.lateness.append(late)
            result = await self.check(detector)
            try:
                await self.observe(result)
            except StoreFullError:
                pass  # said once per full-disk episode by the store, not once per check
            except Exception:  # the store failed: logged; the schedule goes on
                log.exception("fault monitor: recording the check of %r failed", detector.name)
            due += interval
            now = loop.time()
            if due < now:  # the check took longer than the interval: skip the missed starts
                due += ((now - due) // interval + 1) * interval
            await asyncio.sleep(due - now)

    # ---- deciding -------------------------------------------------------------------
    async def observe(self, result: CheckResult) -> None:
        """Take one check's result: count it against the retries; declare,
        update or resolve the detector's fault; mark it broken or mended
        (:func:`~flowsight.monitors.fault_decide.decide`, then its actions)."""
        now = self.clock()
        state = self.states[result.detector]
        new, actions = decide(state, result, now)
        for f in fields(DetectorState):  # in place: the state a caller holds stays the monitor's
            setattr(state, f.name, getattr(new, f.name))
        for action in actions:
            match action:
                case Broken(error):
                    log.warning("detector %r is broken: %s", state.name, error)
                    state.broken_alert = self._broken_alert(state, now)
                    self._send(state.broken_alert)
                case Mended():
                    log.warning("detector %r works again", state.name)
                    assert state.broken_alert is not None
                    self._send(_resolved(state.broken_alert, now))
                    state.broken_alert = None
                case Resolve():
                    await self._resolve(state, now)
                case Declare(fault):
                    try:
                        state.record = await self.handle_fault(fault)
                    except BaseException:
                        state.status = "failing"  # failed, and not declared yet: the next check declares it
                        raise
                    state.touched_at = now
                case Reassess(fault):
                    await self._again(state, fault, now)

    async def handle_fault(self, fault: Fault) -> FaultRecord:
        """Declare ``fault``: add the running runs it hurts, assess its
        severity, record it (open) and send its alert. Returns the record
        (the one already open when another monitor declared it first)."""
        now = self.clock()
        fault = await self._with_victims(fault)
        repeats = 1
        if self.store is not None:
            repeats += await asyncio.to_thread(self.store.faults.fault_openings, fault.key, now - REPEAT_WINDOW)
        severity = assess_severity(fault, lasted=0.0, dependents=len(fault.runs), repeats=repeats)
        if self.store is not None:
            record, opened = await asyncio.to_thread(self.store.faults.open_fault, fault, severity, now)
        else:
            self._ids += 1
            record, opened = FaultRecord(fault, now, severity, id=self._ids), True
        if opened:
            log.warning("fault: %s %s: %s (%s)", fault.kind.alertname, fault.target, fault.message, severity.value)
        self.fault_history.append(record)
        self._send(self._alert(record))
        return record

    async def _again(self, state: DetectorState, fault: Fault, now: float) -> None:
        """The open fault seen again: re-assess; write back on a change (or
        now and then); a new severity is a new alert (the old one resolved)."""
        record = state.record
        assert record is not None
        fault = await self._with_victims(fault)
        repeats = 1
        if self.store is not None:
            repeats = await asyncio.to_thread(self.store.faults.fault_openings, fault.key, now - REPEAT_WINDOW)
        runs = tuple(dict.fromkeys((*record.fault.runs, *fault.runs)))
        severity = assess_severity(fault, lasted=now - record.timestamp, dependents=len(runs), repeats=repeats)
        changed = severity is not record.severity or fault.message != record.fault.message or runs != record.fault.runs
        if not changed and now - state.touched_at < TOUCH_EVERY:
            return
        old = record
        if self.store is not None and record.id is not None:
            state.record = await asyncio.to_thread(self.store.faults.update_fault, record, fault, severity, now)
        else:
            merged = Fault(
                fault.type,
                fault.message,
                fault.detector,
                fault.evidence,
                tuple(dict.fromkeys((*record.fault.workflows, *fault.workflows))),
                runs,
            )
            state.record = FaultRecord(merged, record.timestamp, severity, id=record.id)
        state.touched_at = now
        if severity is not old.severity:
            log.warning(
                "fault: %s %s is now %s (lasting %s; %d running runs hurt; opened %d times in 24 h)",
                fault.kind.alertname,
                fault.target,
                severity.value,
                format_duration(now - record.timestamp),
                len(runs),
                repeats,
            )
            self._send(_resolved(self._alert(old), now))
            self._send(self._alert(state.record))

    async def _resolve(self, state: DetectorState, now: float) -> None:
        record = state.record
        assert record is not None
        state.record = None
        if self.store is not None and record.id is not None:
            done = await asyncio.to_thread(self.store.faults.resolve_fault, record, now)
        else:
            done = None
        if done is None:
            done = FaultRecord(record.fault, record.timestamp, record.severity, FaultStatus.RESOLVED, now, record.id)
        log.warning(
            "fault resolved: %s %s after %.0f s", record.fault.kind.alertname, record.fault.target, done.duration(now)
        )
        self.fault_history.append(done)
        self._send(_resolved(self._alert(record), now))

    async def _with_victims(self, fault: Fault) -> Fault:
        """``fault`` with the workflows that depend on its target and their
        running runs: workflows that declare it in ``[workflows.NAME]
        depends_on``, and running runs that declare it themselves (the SDK's
        ``workflow(..., depends_on=[...])``, kept in the run's attributes)."""
        names = {fault.target, fault.detector}
        workflows = [wf for wf, services in self.dependencies.items() if names & set(services)]
        if self.store is None:
            if not workflows:
                return fault
            return Fault(
                fault.type,
                fault.message,
                fault.detector,
                fault.evidence,
                tuple(dict.fromkeys((*fault.workflows, *workflows))),
                fault.runs,
            )
        store = self.store

        def running() -> list[tuple[str, str]]:
            out: list[tuple[str, str]] = []
            for wf in workflows:
                page = store.runs.list_runs(workflow=wf, states=[WorkflowState.RUNNING], limit=200)
                out.extend((m.workflow, m.workflow_id) for m in page.runs)
            for m in store.runs.list_runs(states=[WorkflowState.RUNNING], limit=1000).runs:
                declared = m.attrs.get("depends_on")
                if isinstance(declared, list) and names & {d for d in declared if isinstance(d, str)}:
                    out.append((m.workflow, m.workflow_id))
            return out

        hurt = await asyncio.to_thread(running)
        if not hurt and not workflows:
            return fault
        return Fault(
            fault.type,
            fault.message,
            fault.detector,
            fault.evidence,
            tuple(dict.fromkeys((*fault.workflows, *workflows, *(wf for wf, _ in hurt)))),
            tuple(dict.fromkeys((*fault.runs, *(r for _, r in hurt)))),
        )

    # ---- alerts ---------------------------------------------------------------------
    def _send(self, alert: Alert) -> None:
        send(self.alert_manager, alert)

    def _alert(self, record: FaultRecord) -> Alert:
        return fault_alert(record, external_url=self.external_url)

    def _broken_alert(self, state: DetectorState, now: float) -> Alert:
        return Alert(
            labels={"alertname": DETECTOR_BROKEN, "detector": state.name, "severity": Severity.WARNING.value},
            annotations={
                "summary": f"detector {state.name!r} cannot check: {state.last_error}",
                "description": f"{state.errors} checks in a row failed to run; its target's state is "
                f"unknown until it works again. Last error: {state.last_error}",
            },
            severity=Severity.WARNING,
            source="fault",
            starts_at=now,
        )


def service_of(fault: Fault) -> str:
    """The ``service`` label of a fault's alert (what workflows name in
    ``depends_on``): the service id of a ServiceUnavailable, else the
    detector's name."""
    if fault.kind is FaultKind.SERVICE_UNAVAILABLE or not fault.detector:
        return fault.target
    return fault.detector


def fault_alert(record: FaultRecord, *, external_url: str = "") -> Alert:
    """The alert for a fault record (firing; see :func:`_resolved`)."""
    f = record.fault
    first = f.message.strip().splitlines()[0] if f.message.strip() else f.kind.alertname
    facts = [f.message.strip()]
    if f.evidence:
        facts.append("evidence: " + ", ".join(f"{k}={v}" for k, v in f.evidence.items()))
    if f.runs:
        shown = ", ".join(f.runs[:10]) + (f" and {len(f.runs) - 10} more" if len(f.runs) > 10 else "")
        facts.append(f"running runs hurt: {shown}")
    labels = {
        "alertname": f.kind.alertname,
        "service": service_of(f),
        "target": f.target,
        "severity": record.severity.value,
    }
    if f.detector:
        labels["detector"] = f.detector
    link = f"{external_url.rstrip('/')}/faults/{record.id}" if external_url and record.id is not None else None
    return Alert(
        labels=labels,
        annotations={"summary": f"{f.kind.alertname} {f.target}: {first}", "description": "\n".join(facts)},
        severity=record.severity,
        source="fault",
        starts_at=record.timestamp,
        link=link,
    )


def _resolved(alert: Alert, now: float) -> Alert:
    return replace(alert, status=AlertStatus.RESOLVED, ends_at=now)
