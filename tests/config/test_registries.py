"""One table per extension point: every receiver kind and every built-in
detector kind declares its ``KIND`` and ``OPTIONS`` beside its class, and
the configuration checks a kind's fields and makes its object from that one
declaration. A kind added to its table, and nowhere else, is both checkable
(``flowsight check``) and constructible."""

from __future__ import annotations

import inspect
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import flowsight.config
from flowsight.alerting.notifiers import KINDS, notifier_class
from flowsight.config import ConfigFileError, build_notifier, parse_config
from flowsight.config.detectors import build_detector
from flowsight.options.fields import Options, Opt, declared, duration, integer, nonempty_string, string
from flowsight.detectors.registry import DETECTOR_CLASSES, detector_class
from flowsight.model.faults import Fault


def _required_parameters(cls: type) -> set[str]:
    params = inspect.signature(cls).parameters.values()
    return {p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD} - {"name"}


def _check_declaration(cls: type, kind: str) -> None:
    options = declared(cls, kind)
    assert options, f"{kind}: no fields declared"
    params = inspect.signature(cls).parameters
    for field, opt in options.items():
        assert isinstance(opt, Opt) and callable(opt.conv)
        keyword = opt.keyword or field
        # a field is a keyword argument of the class, or one its check_options turns into another
        assert keyword in params or hasattr(cls, "check_options"), f"{kind}: field {field!r} is not a parameter"
    # what the class cannot do without is what the configuration requires
    assert {opt.keyword or f for f, opt in options.items() if opt.required} == _required_parameters(cls), kind


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_receiver_kind_declares_its_fields_beside_its_class(kind: str) -> None:
    cls = notifier_class(kind)
    assert cls.__module__ == f"flowsight.alerting.notifiers.{KINDS[kind][0]}"
    _check_declaration(cls, kind)
    assert not any(opt.path for opt in declared(cls, kind).values())  # a receiver's files: check_options


@pytest.mark.parametrize("kind", list(DETECTOR_CLASSES))
def test_every_built_in_detector_kind_declares_its_fields_beside_its_class(kind: str) -> None:
    cls = detector_class(kind)
    assert cls.__module__ == f"flowsight.detectors.{DETECTOR_CLASSES[kind][0]}"
    _check_declaration(cls, kind)
    assert not any(opt.template or opt.keyword for opt in declared(cls, kind).values())


def test_the_kinds_the_configuration_names_are_the_tables() -> None:
    assert flowsight.config.KINDS == tuple(KINDS)
    with pytest.raises(ConfigFileError) as info:
        parse_config("[[alerting.receivers]]\nname = 'x'\n\n[alerting.route]\nreceiver = 'x'\n")
    assert f"(one of {', '.join(KINDS)})" in str(info.value)
    with pytest.raises(ConfigFileError) as info:
        parse_config("[[detectors]]\nname = 'x'\n")
    assert f"(one of {', '.join(DETECTOR_CLASSES)}" in str(info.value)


def test_a_class_registered_under_another_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="must declare KIND = 'webhook' and OPTIONS"):
        declared(notifier_class("slack"), "webhook")
    with pytest.raises(TypeError, match="must declare KIND"):
        declared(object, "tcp")


# ---- a kind registered once -------------------------------------------------------
class PagerNotifier:
    KIND: ClassVar[str] = "pager"
    OPTIONS: ClassVar[Options] = {
        "number": Opt(nonempty_string, required=True),
        "retry": Opt(duration(positive=True), keyword="retry_after"),
        "token": Opt(string, secret=True),
    }

    def __init__(self, number: str, *, retry_after: float = 60.0, token: str = "", external_url: str = "") -> None:
        if not number.startswith("+"):
            raise ValueError(f"pager field 'number': {number!r} must start with +")
        self.number, self.retry_after, self.token, self.external_url = number, retry_after, token, external_url

    async def send(self, note: Any) -> None:  # pragma: no cover - never sent here
        pass


class ProbeDetector:
    KIND: ClassVar[str] = "probe"
    OPTIONS: ClassVar[Options] = {"target": Opt(nonempty_string, path=True, required=True), "tries": Opt(integer(1))}

    def __init__(self, name: str, *, target: str, tries: int = 1, timeout: float = 10.0) -> None:
        self.name, self.target, self.tries, self.timeout = name, target, tries, timeout

    async def detect(self) -> Fault | None:  # pragma: no cover - never run here
        return None


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """``pager`` and ``probe`` added, each by its module and one table line."""
    for package, cls in (("flowsight.alerting.notifiers", PagerNotifier), ("flowsight.detectors", ProbeDetector)):
        module = types.ModuleType(f"{package}.{cls.KIND}_for_test")
        setattr(module, cls.__name__, cls)
        monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(KINDS, "pager", ("pager_for_test", "PagerNotifier"))
    monkeypatch.setitem(DETECTOR_CLASSES, "probe", ("probe_for_test", "ProbeDetector"))
    yield


CONFIG = """\
    [alerting.route]
    receiver = "oncall"

    [[alerting.receivers]]
    name = "oncall"
    kind = "pager"
    number = "{number}"
    retry = "{retry}"

    [[detectors]]
    name = "gateway"
    kind = "probe"
    target = "{target}"
    {tries}
    """


def test_a_kind_registered_once_is_checked_and_made_from_its_declaration(registered: None, tmp_path: Path) -> None:
    cfg = parse_config(
        textwrap.dedent(CONFIG.format(number="+15550100", retry="2m", target="gw.sock", tries="tries = 3")),
        base_dir=tmp_path,
    )
    assert flowsight.config.KINDS[-1] == "pager"

    [rc] = cfg.receivers
    assert (rc.kind, rc.options) == ("pager", {"number": "+15550100", "retry_after": 120.0})
    notifier = build_notifier(rc, "http://flowsight.example")
    assert isinstance(notifier, PagerNotifier)
    assert (notifier.number, notifier.retry_after, notifier.external_url) == (
        "+15550100",
        120.0,
        "http://flowsight.example",
    )

    [dc] = cfg.detectors
    assert (dc.kind, dc.options) == ("probe", {"target": str(tmp_path / "gw.sock"), "tries": 3})
    detector = build_detector(dc)
    assert isinstance(detector, ProbeDetector) and (detector.name, detector.tries) == ("gateway", 3)


def test_a_kind_registered_once_has_its_fields_checked(registered: None) -> None:
    text = textwrap.dedent(CONFIG.format(number="15550100", retry="soon", target="", tries="trys = 3"))
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, file="f.toml")
    assert [str(p) for p in info.value.problems] == [
        'f.toml:8: alerting.receivers[0].retry: expected a duration such as "30s", "5m", "2h" or a number '
        "of seconds, got string 'soon'",
        "f.toml:13: detectors[0].target: expected a non-empty string, got ''",
        "f.toml:14: detectors[0].trys: unknown field 'trys'; did you mean 'tries'?",
    ]
    # what only the class checks is found at load too, at the field it names
    text = textwrap.dedent(CONFIG.format(number="15550100", retry="1m", target="gw", tries=""))
    with pytest.raises(ConfigFileError) as info:
        parse_config(text, file="f.toml")
    assert [str(p) for p in info.value.problems] == [
        "f.toml:7: alerting.receivers[0].number: receiver 'oncall': pager field 'number': '15550100' must start with +"
    ]
