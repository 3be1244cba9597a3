"""The demo's workflows: real code instrumented with the SDK.

Run one with ``python -m flowsight.demo.workflows NAME`` (the store comes from
``FLOWSIGHT_DATABASE_URL``). Each sleeps to stand in for real work, and each
shows something: history-based ETAs, progress inside a step, a retry and a
failure, a suspension and resumption, and a run that stalls.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import flowsight


def nightly_etl(scale: float = 1.0) -> None:
    """Three steps; run several times in a row, so later runs get an ETA from history."""
    with flowsight.workflow("nightly-etl", total_steps=3, source="warehouse") as run:
        with run.step("extract"):
            time.sleep(1.0 * scale)
        with run.step("transform"):
            for i in range(10):
                time.sleep(0.15 * scale)
                run.progress(i + 1, 10)
        with run.step("load"):
            time.sleep(0.8 * scale)


def ml_training() -> None:
    """Progress per epoch inside the long step."""
    with flowsight.workflow("ml-training", total_steps=4, model="resnet-mini") as run:
        with run.step("prepare-data"):
            time.sleep(1.0)
        with run.step("train"):
            for epoch in range(1, 21):
                time.sleep(0.35)
                run.progress(epoch, 20)
        with run.step("evaluate"):
            time.sleep(0.8)
        with run.step("publish"):
            time.sleep(0.4)


class ReportError(RuntimeError):
    pass


def flaky_report() -> None:
    """A step that fails once and is retried, then one that fails for good."""
    with flowsight.workflow("flaky-report", total_steps=3) as run:
        for attempt in range(2):
            try:
                with run.step("fetch-sales"):
                    time.sleep(0.8)
                    if attempt == 0:
                        raise TimeoutError("sales API did not answer within 0.8s")
                break
            except TimeoutError:
                continue
        with run.step("aggregate"):
            time.sleep(1.0)
        with run.step("render-pdf"):
            time.sleep(0.6)
            raise ReportError("template 'q3.html' refers to missing field 'region_total'")


def invoice_batch() -> None:
    """Suspended while waiting for an approval, then resumed."""
    with flowsight.workflow("invoice-batch", total_steps=3) as run:
        with run.step("collect"):
            time.sleep(1.0)
        run.suspend("waiting for finance approval")
        time.sleep(3.0)
        run.resume("approved by finance")
        with run.step("issue"):
            time.sleep(1.5)
        with run.step("email"):
            time.sleep(0.8)


def partner_sync() -> None:
    """Goes quiet in its second step and never comes back (the demo kills it)."""
    with flowsight.workflow("partner-sync", total_steps=3, stall_timeout=3) as run:
        with run.step("login"):
            time.sleep(0.5)
        with run.step("download"):
            run.progress(3, 100)
            flowsight.flush()
            time.sleep(3600)  # hung on a socket, say


def nightly_series() -> None:
    for scale in (0.6, 0.7, 1.0):
        nightly_etl(scale)
        time.sleep(0.2)


WORKFLOWS: dict[str, Callable[[], None]] = {
    "nightly-etl": nightly_series,
    "ml-training": ml_training,
    "flaky-report": flaky_report,
    "invoice-batch": invoice_batch,
    "partner-sync": partner_sync,
}


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in WORKFLOWS:
        print(f"usage: python -m flowsight.demo.workflows {{{','.join(WORKFLOWS)}}}", file=sys.stderr)
        return 2
    random.seed()
    try:
        WORKFLOWS[argv[0]]()
    except ReportError:
        return 1  # the failure is the point; it is recorded
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
