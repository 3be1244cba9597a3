"""What every fault detector is: the :class:`FaultDetector` protocol.

A detector looks once and says what is wrong: ``await detect()`` returns a
:class:`~flowsight.model.faults.Fault`, or None when all is well. It raises
only when it cannot look at all (that is a *broken detector*, reported as
such, not a fault of its target). Scheduling is not its business: the fault
monitor runs it every ``interval`` under a watchdog, with ``retries``
before a fault is declared (:class:`Schedule`).

Built-in kinds live one module each beside this one (``http``, ``tcp``,
``command``, ``resource``, ``integrity``, ``config``), each a line of the
table in :mod:`flowsight.detectors.registry`; each class declares its
``KIND`` and its ``OPTIONS`` (its ``[[detectors]]`` fields) and takes
``name`` and the keyword arguments those fields give. Third-party kinds come
from the ``flowsight.detectors`` entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flowsight.model.faults import Fault


@runtime_checkable
class FaultDetector(Protocol):
    """``name``: unique among the detectors; a fault's ``detector``."""

    name: str

    async def detect(self) -> Fault | None:
        """Look once: the fault found, or None.

        Raises:
            Exception: only when the detector itself cannot work (a bug, a
                bad option found late): the monitor reports it as broken.
        """
        ...


@dataclass(frozen=True, slots=True)
class Schedule:
    """How the monitor runs one detector.

    ``interval``: seconds from one check's start to the next's. ``timeout``:
    the detector's own limit (an HTTP or TCP detector reports a slower
    answer as a NetworkTimeout); the watchdog allows :attr:`watchdog` before
    it calls the detector hung. ``retries``: failed checks in a row tolerated
    before the fault is declared (0: the first failure declares it).
    """

    interval: float = 30.0
    timeout: float = 10.0
    retries: int = 1

    def __post_init__(self) -> None:
        if not self.interval > 0:
            raise ValueError(f"interval must be above 0 s, got {self.interval!r}")
        if not self.timeout > 0:
            raise ValueError(f"timeout must be above 0 s, got {self.timeout!r}")
        if self.retries < 0:
            raise ValueError(f"retries must be 0 or more, got {self.retries!r}")

    @property
    def watchdog(self) -> float:
        """How long a check may take before the detector counts as hung."""
        return self.timeout + max(1.0, self.timeout / 2)
