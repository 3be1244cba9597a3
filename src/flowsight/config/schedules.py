"""``[workflows.NAME]``'s expectations (``schedule`` or ``every``,
``timezone``, ``start_grace``, ``max_runtime``, ``min_runtime``,
``deadline``, ``failures_before_alert``, ``[workflows.NAME.steps.STEP]
max_runtime``): each field read with :mod:`flowsight.model.schedules`'
readers, every problem at its own line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flowsight.errors import ConfigError
from flowsight.model.schedules import READERS, Expectations, cross_check, seconds
from flowsight.options.fields import Converter, Invalid, Reader, Table, duration

T = TypeVar("T")
#: the expectation fields of [workflows.NAME] (besides depends_on and rules)
FIELDS = (*READERS, "steps")
STEP = ("max_runtime",)


def _checked(read: Callable[[Any], T]) -> Converter[T]:
    def conv(value: Any) -> T:
        try:
            return read(value)
        except ConfigError as exc:
            raise Invalid(str(exc)) from None

    return conv


_CONVERTERS: dict[str, Converter[Any]] = {name: _checked(read) for name, read in READERS.items()}


def read_expectations(reader: Reader, name: str, t: Table) -> Expectations | None:
    """The expectations ``[workflows.NAME]`` gives; None when it gives none
    or has problems (recorded in ``reader``)."""
    if not any(key in t for key in FIELDS):
        return None
    before = len(reader.problems)
    given = {key: v for key, conv in _CONVERTERS.items() if (v := t.get(key, conv)) is not None}
    steps: dict[str, float] = {}
    raw = t.data.get("steps")
    if raw is not None:
        if not isinstance(raw, dict):
            reader.error(t.at("steps"), "expected a table of steps ([workflows.NAME.steps.STEP] max_runtime = ...)")
        else:
            for step in raw:
                st = reader.table((*t.path, "steps", step), raw[step], STEP)
                if st is not None:
                    limit = st.get("max_runtime", _checked(seconds), required=True)
                    if limit is not None:
                        steps[step] = limit
    exp = Expectations(name, **given, steps=steps)
    if all(key in given for key in ("schedule", "every", "timezone") if key in t):
        # what the fields say together, of those that are readable (not when the schedule itself is not)
        for field, message in cross_check(exp):
            reader.error(t.at(field), message)
    return None if len(reader.problems) > before else exp


#: [schedules]: how often a server writes its heartbeat (a gap of three is a time nobody watched),
#: and how long slot judgements are kept
SCHEDULES = ("heartbeat", "keep")


def read_schedules(top: Table) -> dict[str, float]:
    """``[schedules]``'s fields given, in seconds."""
    t = top.sub("schedules", SCHEDULES)
    if t is None:
        return {}
    return {k: v for k in SCHEDULES if (v := t.get(k, duration(positive=True))) is not None}
