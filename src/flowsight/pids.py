"""Whether a process of this host still runs: what the SDK's spool asks of a
lock's holder and a server of the lease holder it finds (a killed process)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host runs. A zombie (killed, not yet
    reaped by its parent) does not; one of another user (no permission to
    signal it) does."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True  # no /proc (not Linux): it answered the signal
