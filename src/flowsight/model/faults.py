"""Faults: what broke around the workflows, as the fault monitor sees it.

A :data:`FaultType` is one of five kinds, each naming what it is about (its
*target*): :class:`ServiceUnavailable` (a service id), :class:`NetworkTimeout`
(an endpoint), :class:`ResourceExhaustion` (a resource such as
``disk:/var/lib``), :class:`DataCorruption` (a data id, e.g. a file) and
:class:`ConfigurationError` (a config key). A :class:`Fault` is one finding of
a detector: its type, a message for people, the evidence (status code,
latency, free bytes, expected and actual hash, ...), and the workflows and
runs it hurts where known. A :class:`FaultRecord` is a fault in the history:
opened, then resolved with its duration.

:func:`assess_severity` is the one place where a fault's severity is decided.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Union

from flowsight.model.alerts import Severity


class FaultKind(str, Enum):
    SERVICE_UNAVAILABLE = "service_unavailable"
    NETWORK_TIMEOUT = "network_timeout"
    RESOURCE_EXHAUSTION = "resource_exhaustion"
    DATA_CORRUPTION = "data_corruption"
    CONFIGURATION_ERROR = "configuration_error"

    __hash__ = str.__hash__

    @property
    def alertname(self) -> str:
        """The specification's name: ``ServiceUnavailable``, ... (the alert's name too)."""
        return _TITLES[self]


_TITLES = {
    FaultKind.SERVICE_UNAVAILABLE: "ServiceUnavailable",
    FaultKind.NETWORK_TIMEOUT: "NetworkTimeout",
    FaultKind.RESOURCE_EXHAUSTION: "ResourceExhaustion",
    FaultKind.DATA_CORRUPTION: "DataCorruption",
    FaultKind.CONFIGURATION_ERROR: "ConfigurationError",
}


@dataclass(frozen=True, slots=True)
class ServiceUnavailable:
    """A service does not answer, or answers wrongly (refused, 5xx, a body
    without the expected keyword, a program that exits non-zero)."""

    service_id: str
    kind: ClassVar[FaultKind] = FaultKind.SERVICE_UNAVAILABLE

    @property
    def target(self) -> str:
        return self.service_id


@dataclass(frozen=True, slots=True)
class NetworkTimeout:
    """An endpoint answers too slowly, or not within the timeout."""

    endpoint: str
    kind: ClassVar[FaultKind] = FaultKind.NETWORK_TIMEOUT

    @property
    def target(self) -> str:
        return self.endpoint


@dataclass(frozen=True, slots=True)
class ResourceExhaustion:
    """A resource is (nearly) used up: ``disk:/mount``, ``inodes:/mount``,
    ``memory``, ``swap``, ``fds:PID``, ``cpu``."""

    resource: str
    kind: ClassVar[FaultKind] = FaultKind.RESOURCE_EXHAUSTION

    @property
    def target(self) -> str:
        return self.resource


@dataclass(frozen=True, slots=True)
class DataCorruption:
    """Data is not what was written: a changed, truncated or missing file."""

    data_id: str
    kind: ClassVar[FaultKind] = FaultKind.DATA_CORRUPTION

    @property
    def target(self) -> str:
        return self.data_id


@dataclass(frozen=True, slots=True)
class ConfigurationError:
    """A configuration is unusable: a syntax error, a missing key, a wrong
    type, an environment variable not set."""

    config_key: str
    kind: ClassVar[FaultKind] = FaultKind.CONFIGURATION_ERROR

    @property
    def target(self) -> str:
        return self.config_key


#: The specification's ``FaultType``.
FaultType = Union[ServiceUnavailable, NetworkTimeout, ResourceExhaustion, DataCorruption, ConfigurationError]

_BY_KIND: dict[FaultKind, type[Any]] = {
    FaultKind.SERVICE_UNAVAILABLE: ServiceUnavailable,
    FaultKind.NETWORK_TIMEOUT: NetworkTimeout,
    FaultKind.RESOURCE_EXHAUSTION: ResourceExhaustion,
    FaultKind.DATA_CORRUPTION: DataCorruption,
    FaultKind.CONFIGURATION_ERROR: ConfigurationError,
}


def fault_type(kind: FaultKind | str, target: str) -> FaultType:
    """The fault type of ``kind`` about ``target`` (e.g. read back from the store).

    Raises:
        ValueError: an unknown kind, naming the known ones.
    """
    try:
        k = FaultKind(kind)
    except ValueError:
        known = ", ".join(k.value for k in FaultKind)
        raise ValueError(f"unknown fault kind {kind!r}; expected one of: {known}") from None
    made: FaultType = _BY_KIND[k](target)
    return made


@dataclass(frozen=True, slots=True)
class Fault:
    """One finding of a detector.

    ``detector``: the name of the detector that found it (with the kind and
    target, its identity while it lasts: see :attr:`key`). ``evidence``:
    JSON values that show it (``status``, ``latency_s``, ``free_bytes``,
    ``expected_sha256``/``actual_sha256``, ``file``, ``key``, ``exit_code``,
    ...). ``workflows``/``runs``: those it hurts, where known (the fault
    monitor adds the running runs of workflows that depend on the target).
    """

    type: FaultType
    message: str
    detector: str = ""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    workflows: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()

    @property
    def kind(self) -> FaultKind:
        return self.type.kind

    @property
    def target(self) -> str:
        return self.type.target

    @property
    def key(self) -> str:
        """What makes two findings the same fault: detector, kind and target."""
        return f"{self.detector}\x1f{self.kind.value}\x1f{self.target}"


class FaultStatus(str, Enum):
    OPEN = "open"
    RESOLVED = "resolved"

    __hash__ = str.__hash__


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """A fault in the history (the specification's ``FaultRecord{fault,
    timestamp, severity}``): ``timestamp`` is when it was declared;
    ``resolved_at`` when its detector passed again. ``id``: the store's."""

    fault: Fault
    timestamp: float
    severity: Severity
    status: FaultStatus = FaultStatus.OPEN
    resolved_at: float | None = None
    id: int | None = None

    def duration(self, now: float) -> float:
        """How long it lasted (so far, while open)."""
        end = self.resolved_at if self.resolved_at is not None else now
        return max(0.0, end - self.timestamp)


# ---- severity ------------------------------------------------------------------------
#: Where each kind starts: data that is wrong and configuration that cannot be
#: read do harm at once and do not mend themselves; a service or a resource
#: may come back; a slow endpoint still answers.
BASE_SEVERITY: dict[FaultKind, Severity] = {
    FaultKind.DATA_CORRUPTION: Severity.ERROR,
    FaultKind.CONFIGURATION_ERROR: Severity.ERROR,
    FaultKind.SERVICE_UNAVAILABLE: Severity.WARNING,
    FaultKind.RESOURCE_EXHAUSTION: Severity.WARNING,
    FaultKind.NETWORK_TIMEOUT: Severity.INFO,
}
#: Lasting this long (seconds) raises a fault one level; lasting ``LONG`` two.
LASTING = 15 * 60.0
LONG = 60 * 60.0
#: Opened this many times within the repetition window: one level up (flaky).
REPEATS = 3
_ORDER = [Severity.INFO, Severity.WARNING, Severity.ERROR, Severity.CRITICAL]


def assess_severity(fault: Fault, *, lasted: float = 0.0, dependents: int = 0, repeats: int = 0) -> Severity:
    """The severity of ``fault``: a pure function, documented here.

    It starts at :data:`BASE_SEVERITY` for the fault's kind (corruption and
    configuration errors: error; an unavailable service and an exhausted
    resource: warning; a network timeout: info), then rises one level for
    each of these, up to critical:

    - it has lasted ``lasted`` >= 15 minutes (:data:`LASTING`); one more
      level at >= 1 hour (:data:`LONG`);
    - ``dependents`` >= 1: running workflows depend on its target (they
      declare ``depends_on``) or it names runs it hurts;
    - ``repeats`` >= 3 (:data:`REPEATS`): it was opened that many times
      recently (it keeps coming back).

    ``lasted`` that is not a finite number counts as 0.
    """
    level = _ORDER.index(BASE_SEVERITY[fault.kind])
    if math.isfinite(lasted):
        level += (lasted >= LASTING) + (lasted >= LONG)
    level += dependents >= 1 or bool(fault.runs)
    level += repeats >= REPEATS
    return _ORDER[min(level, len(_ORDER) - 1)]
