"""Built-in alert rules on the execution and state monitors: their settings.

Each rule can be changed or turned off in ``flowsight.toml`` (``[rules.NAME]``)
and per workflow (``[workflows.NAME.rules.RULE]``), overriding the global one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flowsight.model.alerts import Severity


@dataclass(frozen=True)
class RunFailed:
    """A run ended Failed."""

    enabled: bool = True
    severity: Severity = Severity.ERROR


@dataclass(frozen=True)
class RunStalled:
    """A run is stalled (see :mod:`flowsight.model.stall`)."""

    enabled: bool = True
    severity: Severity = Severity.WARNING


@dataclass(frozen=True)
class StepFailed:
    """The same step failed ``times`` times within ``window`` seconds (in one
    run or across runs of the workflow)."""

    enabled: bool = True
    severity: Severity = Severity.WARNING
    times: int = 3
    window: float = 3600.0


@dataclass(frozen=True)
class RunSlow:
    """A run has taken more than ``factor`` times its workflow's usual (median)
    duration, once the workflow has at least ``min_runs`` completed runs."""

    enabled: bool = True
    severity: Severity = Severity.WARNING
    factor: float = 2.0
    min_runs: int = 5


@dataclass(frozen=True)
class RuleSettings:
    run_failed: RunFailed = field(default_factory=RunFailed)
    run_stalled: RunStalled = field(default_factory=RunStalled)
    step_failed: StepFailed = field(default_factory=StepFailed)
    run_slow: RunSlow = field(default_factory=RunSlow)


@dataclass(frozen=True)
class WorkflowSettings:
    """Per-workflow settings: what it depends on (a firing fault alert for a
    dependency mutes this workflow's step and run alerts) and rule overrides."""

    name: str
    depends_on: tuple[str, ...] = ()
    rules: RuleSettings | None = None  # None: the global rules
