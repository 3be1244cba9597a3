"""The engines' watchers, with no change to the engine's code:
``flowsight celery watch --broker URL`` (a broker's task events, workers
started with ``-E``) and ``flowsight prefect watch --api URL`` (a Prefect
server's event stream)."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from typing import Any

#: engine -> (the module that must import, the pip extra that brings it)
NEEDS = {"celery": ("celery", "flowsight[celery]"), "prefect": ("prefect", "flowsight[prefect]")}


def _sender_args(w: Any, duration: Callable[[str], float]) -> None:
    w.add_argument("--url", help="send to this flowsight server instead of the store (default: $FLOWSIGHT_URL)")
    w.add_argument("--token", help="API token (default: $FLOWSIGHT_TOKEN)")
    w.add_argument(
        "--stall-timeout", type=duration, default=None, help="how long a run may go quiet before it is stalled"
    )


def add_parsers(sub: Any, duration: Callable[[str], float]) -> None:
    p = sub.add_parser("celery", help="Celery's runs: follow a broker's task events")
    csub = p.add_subparsers(dest="watch_command", required=True, metavar="ACTION")
    w = csub.add_parser(
        "watch", help="follow the task events of the workers on BROKER (started with -E) into the store or a server"
    )
    w.add_argument("--broker", required=True, help="the broker's URL (redis://..., amqp://...)")
    w.add_argument(
        "--settle",
        type=duration,
        default=5.0,
        help="a run completes when its tasks all ended well and no new one came for this long (default 5s)",
    )
    _sender_args(w, duration)

    p = sub.add_parser("prefect", help="Prefect's runs: follow a Prefect server's event stream")
    psub = p.add_subparsers(dest="watch_command", required=True, metavar="ACTION")
    w = psub.add_parser("watch", help="follow the flow runs and task runs of the Prefect server at API")
    w.add_argument("--api", required=True, help="the Prefect server's API URL (http://127.0.0.1:4200/api)")
    w.add_argument(
        "--since",
        type=duration,
        default=900.0,
        help="at the start, replay the events of this long ago on (default and most: 15m, what the server keeps to replay)",
    )
    w.add_argument(
        "--reconcile",
        type=duration,
        default=60.0,
        help="read the state of open runs from the server's API this often (default 60s)",
    )
    _sender_args(w, duration)


def cmd_watch(args: argparse.Namespace) -> int:
    """Run the watcher of ``args.command`` until SIGTERM or SIGINT."""
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)  # before the engine's slow import: a stop is never lost
    signal.signal(signal.SIGINT, stop)
    module, extra = NEEDS[args.command]
    try:
        __import__(module)
    except ImportError:
        print(f"flowsight: {module} is not installed: pip install '{extra}'", file=sys.stderr)
        return 2
    from flowsight.integrations.adapter import EngineAdapter
    from flowsight.sdk.client import Client

    client = Client(args.db, url=args.url, token=args.token)
    client.start()
    adapter = EngineAdapter(args.command, client.send)
    try:
        if args.command == "celery":
            from flowsight.integrations.celery_events import EventMapper, watch

            mapper = EventMapper(adapter, settle=args.settle, stall_timeout=args.stall_timeout)
            print(f"flowsight celery watch: following {args.broker} (workers need -E)", file=sys.stderr, flush=True)
            watch(args.broker, mapper, stop=lambda: stopping)
        else:
            from flowsight.integrations.prefect_events import PrefectMapper, follow

            pm = PrefectMapper(adapter, stall_timeout=args.stall_timeout)
            print(f"flowsight prefect watch: following {args.api}", file=sys.stderr, flush=True)
            asyncio.run(follow(args.api, pm, since=args.since, reconcile_every=args.reconcile, stop=lambda: stopping))
    finally:
        client.close()
    return 0
