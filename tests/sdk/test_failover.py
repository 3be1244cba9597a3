"""The SDK and ``flowsight run`` given several servers (replicas of one
service, ``URL,URL``): a server that is down or killed is passed over for
the next at once; nothing is lost, nothing counted twice; one spool for all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

import flowsight

from flowsight.errors import ConfigError
from flowsight.sdk.http import normalize_urls, spool_key
from flowsight.sdk.spool import Spool, spool_dir_for
from tests.sdk.conftest import MakeClient
from tests.sdk.serving import ServerProcess, free_port


def test_several_urls_are_each_normalised_in_order_once() -> None:
    assert normalize_urls(" http://a:1/ , http://b:2/api/v1/events,http://a:1") == ["http://a:1", "http://b:2"]
    assert normalize_urls("http://a:1") == ["http://a:1"]
    with pytest.raises(ConfigError, match=r"several as http://a:8640,http://b:8640"):
        normalize_urls(" , ")
    with pytest.raises(ConfigError, match=r"'b:2': write it as http://host:port"):
        normalize_urls("http://a:1,b:2")
    for bad in ("http://a:1 http://b:2", "http://a:notaport"):  # a space for a comma, a port that is no number
        with pytest.raises(ConfigError, match=r"several replicas as http://a:8640,http://b:8640"):
            normalize_urls(bad)


def _events(pg_url: str) -> list[tuple[str, int]]:
    with psycopg.connect(pg_url) as conn:
        return [(k, int(n)) for k, n in conn.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind ORDER BY kind")]


def test_a_client_of_two_replicas_goes_on_through_the_other_when_one_is_killed(
    pg_url: str, tmp_path: Path, make_client: MakeClient
) -> None:
    a = ServerProcess(pg_url, log_dir=tmp_path, flags=("--replica-id", "a")).start()  # type: ignore[arg-type]
    b = ServerProcess(pg_url, log_dir=tmp_path, flags=("--replica-id", "b")).start()  # type: ignore[arg-type]
    try:
        c = make_client(f"{a.url},{b.url}")
        assert c.url == f"{a.url},{b.url}"
        for i in range(40):
            if i == 20:
                assert c.flush(timeout=20)
                a.kill()  # kill -9: the next batch cannot reach it
            with flowsight.workflow("nightly", run_id=f"r{i}", client=c):
                pass
        assert c.flush(timeout=30)
        assert _events(pg_url) == [("completed", 40), ("started", 40)]  # each once
    finally:
        a.kill()
        b.stop()


def test_flowsight_run_with_a_dead_server_first_reports_to_the_next(pg_url: str, tmp_path: Path) -> None:
    live = ServerProcess(pg_url, log_dir=tmp_path).start()  # type: ignore[arg-type]
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    try:
        servers = f"{dead},{live.url}"
        out = subprocess.run(
            [sys.executable, "-m", "flowsight.cli.main", "run", "--url", servers, "--workflow", "job", "--", "true"],
            capture_output=True,
            text=True,
            timeout=120,
            env={"PATH": "/usr/bin:/bin", "FLOWSIGHT_SPOOL_DIR": str(tmp_path / "spool")},
        )
        assert out.returncode == 0, out.stderr
        assert "spool" not in out.stderr, out.stderr  # the next server took it: nothing kept, no warning
        assert ("completed", 1) in _events(pg_url)
        # one spool for the servers together, emptied
        spool = spool_dir_for(spool_key(f"{live.url},{dead}"), tmp_path / "spool")  # the order does not matter
        assert [p.name for p in (tmp_path / "spool").iterdir()] == [spool.name]
        assert Spool(spool).segments() == []
    finally:
        live.stop()
