"""``flowsight spool send``: send now what processes left in the spool for a
server (say, after a wrong token was fixed), and say what is left."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from flowsight.errors import FlowsightError


def add_parser(sub: Any) -> None:
    from flowsight.sdk.client import ENV_SERVER_URL
    from flowsight.sdk.http import ENV_TOKEN

    spool = sub.add_parser("spool", help="what the SDK, flowsight run and logs watch keep for a server: send it")
    ssub = spool.add_subparsers(dest="spool_command", required=True, metavar="ACTION")
    send = ssub.add_parser("send", help="send the events and log entries spooled for a server now")
    send.add_argument(
        "--url", default=os.environ.get(ENV_SERVER_URL), help=f"the server they were for (default: ${ENV_SERVER_URL})"
    )
    send.add_argument("--token", default=os.environ.get(ENV_TOKEN), help=f"API token (default: ${ENV_TOKEN})")
    send.add_argument("--timeout", type=float, default=60.0, help="seconds to keep sending (default 60)")


def cmd_spool(args: argparse.Namespace) -> int:
    """0: nothing is left in the spool; 1: some is (why is said); 2: usage."""
    from flowsight.sdk.http import HttpOptions, HttpSink
    from flowsight.sdk.logsinks import server_log_sink

    if not args.url:
        raise FlowsightError("name the server: flowsight spool send --url http://host:8640 (or $FLOWSIGHT_URL)")
    options = HttpOptions(exit_timeout=args.timeout)
    sinks: list[HttpSink[Any]] = [
        HttpSink(args.url, args.token, options=options),
        server_log_sink(args.url, args.token, options=options, spool_root=None, transport=None),
    ]
    parts, left = [], 0
    for sink in sinks:
        before = sink.adopt_spooled()
        sink.start()
        sink.close(report=False)
        after = sink.left_in_spool
        left += after
        parts.append(
            f"{before - after} of {before} {sink.what} sent" + (f" ({after} left: {sink.last_error})" if after else "")
        )
    print(f"flowsight: {args.url}: {'; '.join(parts)}", file=sys.stderr if left else sys.stdout)
    return 1 if left else 0
