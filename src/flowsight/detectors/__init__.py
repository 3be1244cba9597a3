"""Fault detectors: the protocol (:mod:`flowsight.detectors.base`) and the
built-in kinds, one module each."""

from flowsight.detectors.base import FaultDetector, Schedule

__all__ = ["FaultDetector", "Schedule"]
