"""Fixtures for the SDK over HTTP: a real server, fast retries, clients that
are closed after the test, and the default client put back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flowsight.sdk import client as sdk_client
from flowsight.sdk.client import Client
from flowsight.sdk.http import HttpOptions
from tests.sdk.serving import ServerProcess

#: retries every few tenths of a second, so tests of outages take little time
FAST = HttpOptions(retry_base=0.05, retry_max_delay=0.3, rescan_every=0.2, exit_timeout=5.0)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A running ``flowsight serve`` over ``tmp_path/server.db``."""
    s = ServerProcess(tmp_path / "server.db", log_dir=tmp_path).start()
    yield s
    s.stop()


@pytest.fixture
def stopped_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """One not started yet (its port is free): the test starts it."""
    s = ServerProcess(tmp_path / "server.db", log_dir=tmp_path)
    yield s
    s.stop()


MakeClient = Callable[..., Client]


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """``make_client(url, **options)``: a client with a spool under ``tmp_path``
    and fast retries; closed after the test."""
    made: list[Client] = []

    def make(url: str, **options: Any) -> Client:
        options.setdefault("spool_dir", tmp_path / "spool")
        options.setdefault("http", FAST)
        c = Client(url=url, **options)
        c.start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def no_default(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The module-level default client starts empty and is closed and put back after."""
    monkeypatch.setattr(sdk_client, "_default", None)
    yield
    if sdk_client._default is not None:
        sdk_client._default.close()
