"""Detector kinds: the built-in table, and plug-ins from a real installed
distribution (a package and its ``.dist-info`` on ``sys.path``)."""

from __future__ import annotations

import importlib
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowsight.detectors.command import CommandDetector
from flowsight.detectors.http import HttpDetector
from flowsight.detectors.registry import DETECTOR_CLASSES, ENTRY_POINT_GROUP, detector_class, plugin_kinds
from flowsight.detectors.tcp import TcpDetector
from flowsight.model.faults import Fault
from tests.helpers import run

PLUGIN = """\
from flowsight.model.faults import Fault, ServiceUnavailable


class PingDetector:
    def __init__(self, name, *, host, timeout=10.0):
        self.name = name
        self.host = host

    async def detect(self):
        return Fault(ServiceUnavailable(self.host), f"{self.host} does not answer pings", detector=self.name)
"""


@pytest.fixture
def plugin_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A distribution installed on ``sys.path`` whose entry points add the
    kinds ``<kind>`` (a class), ``<kind>-broken`` (a module that fails to
    import), ``<kind>-function`` (not a class) and ``http`` (a built-in's
    name); yields ``<kind>``, unique per test."""
    kind = f"ping{uuid.uuid4().hex[:8]}"
    package = f"flowsight_test_{kind}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(PLUGIN + "\n\ndef not_a_class():\n    pass\n")
    (tmp_path / f"{package}_broken.py").write_text("import flowsight_no_such_dependency\n")
    info = tmp_path / f"{package}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        f"{kind} = {package}:PingDetector\n"
        f"{kind}-broken = {package}_broken:PingDetector\n"
        f"{kind}-function = {package}:not_a_class\n"
        f"http = {package}:PingDetector\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield kind
    for module in (package, f"{package}_broken"):
        sys.modules.pop(module, None)


def test_the_six_built_in_kinds_are_in_the_table() -> None:
    assert set(DETECTOR_CLASSES) == {"http", "tcp", "command", "resource", "integrity", "config"}
    for module, cls_name in DETECTOR_CLASSES.values():
        assert cls_name.endswith("Detector") and module.isidentifier()


@pytest.mark.parametrize(("kind", "cls"), [("http", HttpDetector), ("tcp", TcpDetector), ("command", CommandDetector)])
def test_a_built_in_kind_gives_its_class(kind: str, cls: type) -> None:
    assert detector_class(kind) is cls


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown detector kind 'pingg'; known kinds: http, tcp, command, "):
        detector_class("pingg")


def test_a_plugin_kind_comes_from_an_installed_distribution(plugin_dist: str) -> None:
    kind = plugin_dist
    assert {kind, f"{kind}-broken", f"{kind}-function"} <= set(plugin_kinds())
    assert "http" not in plugin_kinds()  # a built-in's name stays the built-in's

    cls = detector_class(kind)
    detector = cls(name="gateway", host="10.0.0.1")
    fault = run(detector.detect)
    assert isinstance(fault, Fault) and fault.target == "10.0.0.1" and fault.detector == "gateway"
    assert detector_class("http") is HttpDetector


def test_a_plugin_that_fails_to_import_is_refused_naming_its_entry_point(plugin_dist: str) -> None:
    kind = plugin_dist
    with pytest.raises(
        ValueError,
        match=rf"entry point {kind}-broken = flowsight_test_{kind}_broken:PingDetector "
        r".*ModuleNotFoundError: No module named 'flowsight_no_such_dependency'",
    ):
        detector_class(f"{kind}-broken")


def test_a_plugin_that_is_not_a_class_is_refused(plugin_dist: str) -> None:
    with pytest.raises(ValueError, match="must name a class"):
        detector_class(f"{plugin_dist}-function")


def test_without_the_distribution_the_plugin_kind_is_unknown(plugin_dist: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # sys.path as it was
    importlib.invalidate_caches()
    assert plugin_dist not in plugin_kinds()
    with pytest.raises(ValueError, match="unknown detector kind"):
        detector_class(plugin_dist)
