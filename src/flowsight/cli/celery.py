"""``flowsight celery watch --broker URL``: Celery runs from the broker's
event stream, with no change to the workers (started with ``-E``)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from typing import Any


def add_parsers(sub: Any, duration: Callable[[str], float]) -> None:
    p = sub.add_parser("celery", help="Celery's runs: follow a broker's task events")
    csub = p.add_subparsers(dest="celery_command", required=True, metavar="ACTION")
    w = csub.add_parser(
        "watch", help="follow the task events of the workers on BROKER (started with -E) into the store or a server"
    )
    w.add_argument("--broker", required=True, help="the broker's URL (redis://..., amqp://...)")
    w.add_argument("--url", help="send to this flowsight server instead of the store (default: $FLOWSIGHT_URL)")
    w.add_argument("--token", help="API token (default: $FLOWSIGHT_TOKEN)")
    w.add_argument(
        "--settle",
        type=duration,
        default=5.0,
        help="a run completes when its tasks all ended well and no new one came for this long (default 5s)",
    )
    w.add_argument(
        "--stall-timeout", type=duration, default=None, help="how long a task may go quiet before its run is stalled"
    )


def cmd_celery(args: argparse.Namespace) -> int:
    try:
        import celery  # type: ignore[import-untyped]  # noqa: F401 - only to say what is missing
    except ImportError:
        print("flowsight: celery is not installed: pip install 'flowsight[celery]'", file=sys.stderr)
        return 2
    from flowsight.integrations.adapter import EngineAdapter
    from flowsight.integrations.celery_events import EventMapper, watch
    from flowsight.sdk.client import Client

    client = Client(args.db, url=args.url, token=args.token)
    client.start()
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    mapper = EventMapper(EngineAdapter("celery", client.send), settle=args.settle, stall_timeout=args.stall_timeout)
    print(f"flowsight celery watch: following {args.broker} (workers need -E)", file=sys.stderr, flush=True)
    try:
        watch(args.broker, mapper, stop=lambda: stopping)
    finally:
        client.close()
    return 0
