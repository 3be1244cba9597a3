from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from flowsight.model.logtemplates import WILDCARD, TemplateMiner, mask, template_id

LOGHUB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "loghub"
BENCH = Path(__file__).resolve().parents[2] / "bench" / "log_templates.py"


@pytest.mark.parametrize(
    ("message", "masked"),
    [
        ("took 42 ms", "took <*> ms"),
        ("ratio -3.5 now", "ratio <*> now"),
        ("from 10.0.0.12 ok", "from <*> ok"),
        ("peer 10.250.19.102:50010 up", "peer <*> up"),
        ("addr 0x7f3a9c00 bad", "addr <*> bad"),
        ("req 113d3a99c3da401fbd62cc2caa5b96d2 done", "req <*> done"),
        ("id 38101a0b-2096-447d-96ea-a692162415ae x", "id <*> x"),
        ("open /var/log/app.log failed", "open <*> failed"),
        ("block blk_-6952295868487656571 gone", "block <*> gone"),
        ("block blk_38865049064139660 gone", "block <*> gone"),
        ("no variables here", "no variables here"),
    ],
)
def test_mask_replaces_variable_shapes(message: str, masked: str) -> None:
    assert mask(message) == masked


def test_same_shape_lines_share_a_template() -> None:
    miner = TemplateMiner()
    a = miner.add("Received block blk_1 of size 67108864 from /10.251.42.84")
    b = miner.add("Received block blk_-99 of size 3 from /10.0.0.1")
    assert a.is_new and not b.is_new
    assert b.template_id == a.template_id
    assert WILDCARD in b.template


def test_differing_word_is_generalised_and_old_id_resolves_to_new() -> None:
    miner = TemplateMiner()
    a = miner.add("session opened for user alice by web")
    b = miner.add("session opened for user bob by web")
    assert b.template == "session opened for user <*> by web"
    assert miner.resolve(a.template_id) == b.template_id == template_id(b.template)


def test_different_shapes_get_different_templates() -> None:
    miner = TemplateMiner()
    a = miner.add("connection closed by peer")
    b = miner.add("disk full on volume data")
    assert a.template_id != b.template_id and b.is_new


def test_is_new_only_the_first_time() -> None:
    miner = TemplateMiner()
    flags = [miner.add(f"job {i} finished in {i * 3} s").is_new for i in range(5)]
    assert flags == [True, False, False, False, False]


def test_id_is_stable_across_save_and_restore() -> None:
    miner = TemplateMiner()
    first = miner.add("Deleting block blk_123 file /data/dfs/blk_123")
    saved = json.loads(json.dumps(miner.state()))
    restored = TemplateMiner.from_state(saved)
    again = restored.add("Deleting block blk_456 file /data/dfs/blk_456")
    assert not again.is_new
    assert again.template_id == first.template_id
    # and a fresh process computes the same id from the same text
    assert TemplateMiner().add("Deleting block blk_9 file /data/dfs/blk_9").template_id == first.template_id


def test_exact_repeat_is_not_new_and_counts() -> None:
    miner = TemplateMiner()
    first = miner.add("heartbeat ok")
    again = miner.add("heartbeat ok")
    assert first.is_new and not again.is_new and again.template_id == first.template_id
    assert miner.templates()[first.template_id] == ("heartbeat ok", 2)


def test_restored_miner_resolves_ids_given_before_the_save() -> None:
    miner = TemplateMiner()
    a = miner.add("session opened for user alice by web")
    b = miner.add("session opened for user bob by web")
    restored = TemplateMiner.from_state(json.loads(json.dumps(miner.state())))
    assert restored.resolve(a.template_id) == b.template_id


@pytest.mark.parametrize("threshold", [-0.1, 1.5])
def test_similarity_threshold_outside_0_1_is_refused(threshold: float) -> None:
    with pytest.raises(ValueError, match="sim_threshold"):
        TemplateMiner(sim_threshold=threshold)


def test_restore_rejects_unknown_state_version() -> None:
    with pytest.raises(ValueError, match="version"):
        TemplateMiner.from_state({"version": 99})


@pytest.mark.skipif(not LOGHUB.is_dir(), reason=f"Loghub samples not found at {LOGHUB}")
def test_mean_grouping_accuracy_on_loghub() -> None:
    spec = importlib.util.spec_from_file_location("bench_log_templates", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    files = sorted(LOGHUB.glob("*/*_2k.log_structured.csv"))
    assert files
    accs = []
    for path in files:
        messages, truth = bench.load(path)
        groups, _ = bench.run_flowsight(messages)
        accs.append(bench.grouping_accuracy(truth, groups))
    assert sum(accs) / len(accs) >= ACHIEVED_MEAN - 0.01


ACHIEVED_MEAN = 0.931  # bench/log_templates.py, 8 Loghub 2k samples
