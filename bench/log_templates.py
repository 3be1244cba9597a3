"""Log template mining: flowsight's TemplateMiner against Drain3 on Loghub.

For every ``*_2k.log_structured.csv`` under ``../shared/data/loghub`` (the
Content column is the message, EventId the true template), both miners parse
the same lines in this process (best of 5 fresh runs each); printed per dataset: grouping accuracy
(Loghub's definition: a line is correct when the set of lines in its predicted
group equals exactly the set of lines with its true EventId) and lines/s.
Goal: mean accuracy >= 0.90 with one configuration, at >= 3x Drain3's lines/s.

Drain3 runs with its default configuration (depth 4, sim_th 0.4) plus the
same masking regex flowsight uses, given as one Drain3 masking instruction.

Run: ``.venv/bin/python bench/log_templates.py [loghub-dir]``.
"""

from __future__ import annotations

import csv
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from flowsight.logs.templates import MASK_REGEX, TemplateMiner

REPEATS = 5
DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "loghub"


def load(path: Path) -> tuple[list[str], list[str]]:
    """Messages and true EventIds of one structured Loghub file."""
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def grouping_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Loghub grouping accuracy: share of lines whose predicted group is exactly their true group."""
    true_sizes = Counter(truth)
    pred_groups: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(predicted):
        pred_groups[p].append(i)
    correct = 0
    for members in pred_groups.values():
        ids = {truth[i] for i in members}
        if len(ids) == 1 and true_sizes[next(iter(ids))] == len(members):
            correct += len(members)
    return correct / len(truth) if truth else 1.0


def run_flowsight(messages: Sequence[str]) -> tuple[list[str], float]:
    miner = TemplateMiner()
    add = miner.add
    t0 = time.perf_counter()
    ids = [add(m).template_id for m in messages]
    elapsed = time.perf_counter() - t0
    # A line's group is its template's final id (ids follow generalisation).
    return [miner.resolve(i) for i in ids], elapsed


def run_drain3(messages: Sequence[str]) -> tuple[list[str], float]:
    from drain3 import TemplateMiner as Drain3Miner  # type: ignore[import-untyped]
    from drain3.masking import MaskingInstruction  # type: ignore[import-untyped]
    from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]

    config = TemplateMinerConfig()
    config.masking_instructions = [MaskingInstruction(MASK_REGEX, "*")]
    miner = Drain3Miner(config=config)
    t0 = time.perf_counter()
    ids = [miner.add_log_message(m)["cluster_id"] for m in messages]
    elapsed = time.perf_counter() - t0
    return [str(i) for i in ids], elapsed


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else DEFAULT_DIR
    files = sorted(root.glob("*/*_2k.log_structured.csv"))
    if not files:
        print(f"no *_2k.log_structured.csv under {root}; pass the Loghub directory")
        return 1
    runners: dict[str, Callable[[Sequence[str]], tuple[list[str], float]]] = {
        "flowsight": run_flowsight,
        "drain3": run_drain3,
    }
    acc: dict[str, list[float]] = defaultdict(list)
    lines = 0
    secs: dict[str, float] = defaultdict(float)
    print(f"{'dataset':<10} {'flowsight acc':>13} {'drain3 acc':>10} {'flowsight l/s':>14} {'drain3 l/s':>11}")
    for path in files:
        messages, truth = load(path)
        lines += len(messages)
        row = {}
        for name, run in runners.items():
            # Best of REPEATS fresh runs (a new miner each time) for both
            # miners: 2,000 lines take milliseconds, so one run is mostly noise.
            runs = [run(messages) for _ in range(REPEATS)]
            groups = runs[0][0]
            elapsed = min(e for _, e in runs)
            a = grouping_accuracy(truth, groups)
            acc[name].append(a)
            secs[name] += elapsed
            row[name] = (a, len(messages) / elapsed)
        name = path.name.split("_")[0]
        print(
            f"{name:<10} {row['flowsight'][0]:>13.3f} {row['drain3'][0]:>10.3f} "
            f"{row['flowsight'][1]:>14,.0f} {row['drain3'][1]:>11,.0f}"
        )
    mean = {k: sum(v) / len(v) for k, v in acc.items()}
    speed = {k: lines / s for k, s in secs.items()}
    print(f"mean accuracy flowsight = {mean['flowsight']:.3f}  drain3 = {mean['drain3']:.3f}")
    print(f"lines/s flowsight = {speed['flowsight']:,.0f}  drain3 = {speed['drain3']:,.0f}")
    print(f"ratio flowsight/drain3 lines/s = {speed['flowsight'] / speed['drain3']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
