"""Runs a program with the payload (JSON) on stdin and ``FLOWSIGHT_STATUS``,
``FLOWSIGHT_RECEIVER`` and ``FLOWSIGHT_IDEMPOTENCY_KEY`` in its environment.

Its exit status is the verdict, as for a mail system's delivery to a program
(sysexits.h):

* 0: delivered, whether it read the payload or not (a program may need only
  the variables);
* 75 (``EX_TEMPFAIL``): not now; a temporary failure, retried with backoff;
* any other status: a permanent failure, whose error is the status and the end
  of the program's output (stdout and stderr);
* killed by a signal, or still running after ``timeout`` (then killed): a
  temporary failure (the program gave no verdict);
* a program that cannot be started: a permanent failure.

The payload is handed over in a file (unlinked, already written), not a
pipe: a program that exits, or closes its stdin, without reading it leaves
nothing half-written behind, and its exit status is what counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from typing import ClassVar

import msgspec

from flowsight.alerting.manager import Notification
from flowsight.alerting.payload import webhook_payload
from flowsight.options.fields import Options, Opt, array, duration, nonempty_string
from flowsight.errors import DeliveryError

#: how much of the end of a failed program's output its error keeps (characters)
OUTPUT_KEPT = 300


class CommandNotifier:
    KIND: ClassVar[str] = "command"
    OPTIONS: ClassVar[Options] = {
        "argv": Opt(array(nonempty_string, nonempty=True), required=True),
        "timeout": Opt(duration(positive=True)),
    }

    def __init__(self, argv: list[str], *, timeout: float = 30.0, external_url: str = "") -> None:
        if not argv:
            raise ValueError("command receiver: give the program to run")
        self.argv = argv
        self.timeout = timeout
        self.external_url = external_url

    async def send(self, note: Notification) -> None:
        """Run the program once with ``note``.

        Raises:
            DeliveryError: it did not take the notification (see the module docstring).
        """
        body = msgspec.json.encode(webhook_payload(note, self.external_url))
        env = {
            **os.environ,
            "FLOWSIGHT_STATUS": note.status,
            "FLOWSIGHT_RECEIVER": note.receiver,
            "FLOWSIGHT_IDEMPOTENCY_KEY": note.idempotency_key,
        }
        with tempfile.TemporaryFile() as payload:
            payload.write(body)
            payload.seek(0)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *self.argv, stdin=payload, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env=env
                )
            except OSError as exc:
                raise DeliveryError(f"command {self.argv[0]!r} cannot run: {exc}", permanent=True) from exc
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), self.timeout)
        except TimeoutError:
            raise DeliveryError(f"command {self.argv[0]!r} did not finish within {self.timeout:g} s") from None
        finally:
            if proc.returncode is None:  # timed out, or the send was cancelled (the dispatcher's own timeout)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())  # reaped even when cancelled: no orphan, no transport left open
        code = proc.returncode
        assert code is not None
        if code == 0:
            return
        what = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = out.decode(errors="replace").strip()[-OUTPUT_KEPT:]
        raise DeliveryError(
            f"command {self.argv[0]!r} {what}" + (f": {tail}" if tail else ""),
            permanent=code > 0 and code != os.EX_TEMPFAIL,
        )
