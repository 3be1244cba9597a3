"""A full disk under a store, said once per episode: when writes start to
fail for want of space, and when one succeeds again.

Every writer hears the failure (a client as a 503, a background loop as a
:class:`~flowsight.errors.StoreFullError`), but the operator hears it here:
one ERROR line in the log at the start, one INFO line at the end, however
many writes failed in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("flowsight.store")


class DiskFull:
    """The full-disk episodes of a store; ``name()`` says which (its dialect
    and where it is, without credentials). ``clock`` is monotonic seconds."""

    def __init__(self, name: Callable[[], str], *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.clock = clock
        self.since: float | None = None  # when the episode began; None: not full
        self._lock = threading.Lock()

    def failed(self, what: str, reason: object) -> None:
        """A write (``what``) failed for want of space: said if it begins an episode."""
        with self._lock:
            if self.since is not None:
                return
            self.since = self.clock()
        log.error(
            "%s: the disk is full: nothing can be written until space is freed (%s failed: %s)",
            self.name(),
            what,
            " ".join(str(reason).split()),
        )  # one line (PostgreSQL adds a HINT line)

    def wrote(self) -> None:
        """A write succeeded: said if it ends an episode. (Cheap when none is on:
        it is called after every write.)"""
        if self.since is None:
            return
        with self._lock:
            since, self.since = self.since, None
        if since is not None:
            log.info("%s: writes succeed again; the disk was full for %.0f s", self.name(), self.clock() - since)
