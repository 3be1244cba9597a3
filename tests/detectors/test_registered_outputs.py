"""Outputs a run registers (``run.output(path)``) on both stores: the SDK
sends the file's sum as an ``output`` event, the store keeps the last
registration of each path, and an integrity detector with
``registered = true`` reports the file changed, truncated or gone — through
``flowsight detectors check`` too."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowsight.detectors.integrity import IntegrityDetector
from flowsight.errors import EventError
from flowsight.model.runs.events import make_event
from flowsight.model.faults import DataCorruption
from flowsight.sdk.client import Client, workflow
from flowsight.store import SqlStore
from tests.helpers import run


@pytest.fixture
def client(store_url: str) -> Iterator[Client]:
    c = Client(db=store_url)
    yield c
    c.close()


def write_outputs(client: Client, folder: Path) -> dict[str, str]:
    folder.mkdir(exist_ok=True)
    sums = {}
    with workflow("export", run_id="exp-1", client=client) as r:
        with r.step("write"):
            for name, text in (("a.csv", "id,v\n1,2\n"), ("b.csv", "id,v\n3,4\n" * 100)):
                path = folder / name
                path.write_text(text)
                sums[str(path)] = r.output(path)
    client.flush()
    return sums


def test_a_registered_output_is_kept_with_its_sum_and_step(client: Client, store: SqlStore, tmp_path: Path) -> None:
    sums = write_outputs(client, tmp_path / "out")
    a = str(tmp_path / "out" / "a.csv")
    assert sums[a] == hashlib.sha256(b"id,v\n1,2\n").hexdigest()
    got = store.faults.registered_outputs()
    assert set(got) == set(sums) and got[a][0] == sums[a] and got[a][1] == 9
    events = [e for e in store.runs.run_events("exp-1") if e.kind.value == "output"]
    assert [(e.step, e.attrs["path"]) for e in events] == [("write", a), ("write", str(tmp_path / "out" / "b.csv"))]
    assert store.faults.registered_outputs(under=[str(tmp_path / "elsewhere")]) == {}
    assert set(store.faults.registered_outputs(under=[str(tmp_path / "out")])) == set(sums)


def test_a_later_registration_of_a_path_replaces_an_earlier_one(store: SqlStore) -> None:
    def out(digest: str, ts: float, eid: str) -> Any:
        return make_event(
            "output", "export", "r", attrs={"path": "/data/x", "sha256": digest, "size": 1}, ts=ts, event_id=eid
        )

    store.runs.write_events([out("a" * 64, 200.0, "o2")])
    store.runs.write_events([out("b" * 64, 100.0, "o1")])  # delivered late: older, it does not win
    assert store.faults.registered_outputs()["/data/x"][0] == "a" * 64
    store.runs.write_events([out("c" * 64, 300.0, "o3")])
    assert store.faults.registered_outputs()["/data/x"][0] == "c" * 64


@pytest.mark.parametrize(
    ("attrs", "field"),
    [
        ({"sha256": "a" * 64}, "attrs.path"),
        ({"path": "relative/x", "sha256": "a" * 64}, "attrs.path"),
        ({"path": "/x", "sha256": "A" * 64}, "attrs.sha256"),
        ({"path": "/x", "sha256": "a" * 63}, "attrs.sha256"),
        ({"path": "/x", "sha256": "a" * 64, "size": -1}, "attrs.size"),
    ],
)
def test_an_output_event_without_a_usable_path_or_sum_is_refused(attrs: dict[str, Any], field: str) -> None:
    with pytest.raises(EventError) as info:
        make_event("output", "export", "r", attrs=attrs)
    assert info.value.field == field


def test_the_integrity_detector_checks_registered_outputs(client: Client, store: SqlStore, tmp_path: Path) -> None:
    folder = tmp_path / "out"
    write_outputs(client, folder)
    det = IntegrityDetector("outputs", registered=True, store=store, paths=[str(folder)])
    assert run(det.detect) is None
    (folder / "a.csv").write_text("id,v\n9,9\n")  # same size, other bytes
    fault = run(det.detect)
    assert fault is not None and fault.type == DataCorruption(str(folder / "a.csv"))
    assert fault.evidence["expected_sha256"] == hashlib.sha256(b"id,v\n1,2\n").hexdigest()
    (folder / "a.csv").write_text("id,v\n1,2\n")
    with (folder / "b.csv").open("r+") as f:
        f.truncate(10)
    fault = run(det.detect)
    assert fault is not None and fault.target == str(folder / "b.csv") and fault.evidence["actual_size"] == 10
    (folder / "b.csv").unlink()
    fault = run(det.detect)
    assert fault is not None and "missing" in fault.message


def test_registered_needs_the_store_when_it_checks() -> None:
    det = IntegrityDetector("outputs", registered=True)
    with pytest.raises(ValueError, match="needs the store"):
        run(det.detect)


def test_detectors_check_reads_registered_outputs_from_the_store(
    client: Client, store_url: str, tmp_path: Path
) -> None:
    folder = tmp_path / "out"
    write_outputs(client, folder)
    config = tmp_path / "flowsight.toml"
    config.write_text(f'[[detectors]]\nname = "outputs"\nkind = "integrity"\nregistered = true\npaths = ["{folder}"]\n')
    cmd = [
        sys.executable,
        "-m",
        "flowsight.cli.main",
        "--db",
        store_url,
        "detectors",
        "check",
        "--config",
        str(config),
        "--json",
    ]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (folder / "b.csv").write_text("changed")
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1
    [row] = json.loads(bad.stdout)["detectors"]
    assert row["fault"]["kind"] == "data_corruption" and row["fault"]["target"] == str(folder / "b.csv")
