"""A real ``flowsight serve`` answers only to the names it is reached by: a
page of another site that points its own name at 127.0.0.1 (DNS rebinding)
gets a 400 on every route, before any of them runs."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from flowsight.server.hosts import allowed_hosts
from tests.server.conftest import Server, create_token, event, flowsight, free_port, start_server

MACHINE = ["myhost", "127.0.0.1", "::1", "10.1.2.3", "fd00::3"]


@pytest.mark.parametrize(
    ("bind", "configured", "allowed", "refused"),
    [
        ("127.0.0.1", [], ["localhost", "127.0.0.1", "::1"], ["myhost", "10.1.2.3", "evil.example"]),
        ("localhost", [], ["localhost", "127.0.0.1", "::1"], ["myhost", "evil.example"]),
        ("::1", [], ["localhost", "127.0.0.1", "::1"], ["myhost"]),
        ("127.0.0.2", [], ["127.0.0.2", "localhost"], ["myhost"]),
        ("0.0.0.0", [], ["localhost", "127.0.0.1", "myhost", "10.1.2.3", "fd00::3"], ["evil.example", "10.1.2.4"]),
        ("::", [], ["localhost", "myhost", "10.1.2.3", "fd00::3"], ["evil.example"]),
        ("10.1.2.3", [], ["10.1.2.3", "myhost"], ["localhost", "127.0.0.1", "fd00::3", "evil.example"]),
        (
            "127.0.0.1",
            ["flowsight.example", "*.corp.example"],
            ["flowsight.example", "a.corp.example", "localhost"],
            ["corp.example", "evil.example"],
        ),
    ],
)
def test_a_server_answers_to_its_bind_address_and_the_names_configured(
    bind: str, configured: list[str], allowed: list[str], refused: list[str]
) -> None:
    hosts = allowed_hosts(bind, configured, machine=MACHINE)
    assert [h for h in allowed if not hosts.allows(h)] == []
    assert [h for h in refused if hosts.allows(h)] == []


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A token-less (open) server on 127.0.0.1 that also answers to flowsight.example and *.corp.example."""
    tmp = tmp_path_factory.mktemp("hosts")
    s = start_server(
        str(tmp / "flowsight.db"),
        "--allowed-host",
        "flowsight.example",
        "--allowed-host",
        "*.corp.example",
        log_dir=tmp,
    )
    yield s
    assert s.stop() == 0, s.output()


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:{port}",
        "127.0.0.1",
        "localhost:{port}",
        "localhost",
        "LOCALHOST.:{port}",
        "[::1]:{port}",
        "flowsight.example:{port}",
        "dash.corp.example",
    ],
)
def test_the_names_it_is_reached_by_are_answered(local: Server, host: str) -> None:
    c = local.client()
    headers = {"Host": host.format(port=local.port)}
    assert c.get("/healthz", headers=headers).status_code == 200
    assert c.get("/api/v1/runs", headers=headers).status_code == 200


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "evil.example", "localhost.evil.example:{port}", "127.0.0.1.evil.example", "corp.example"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz"),
        ("GET", "/api/v1/runs"),
        ("GET", "/"),
        ("POST", "/api/v1/events"),
        ("DELETE", "/api/v1/silences/s1"),
        ("GET", "/no/such/path"),
    ],
)
def test_any_other_host_is_a_400_naming_it_and_how_to_allow_it(
    local: Server, host: str, method: str, path: str
) -> None:
    c = local.client()
    header = host.format(port=local.port)
    r = c.request(
        method, path, headers={"Host": header}, json=event("started", "etl", "rebound") if method == "POST" else None
    )
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    name = header.partition(":")[0]
    assert r.json()["error"] == (
        f"host {name!r} is not one this server answers to (a guard against DNS rebinding); if it is reached by "
        f'that name, allow it: flowsight serve --allowed-host {name}, or allowed_hosts = ["{name}"] in '
        "[server] of flowsight.toml"
    )
    assert c.get("/api/v1/runs/rebound").status_code == 404  # nothing it sent was stored


def test_a_host_header_that_is_not_a_host_is_a_400(local: Server) -> None:
    r = local.client().get("/api/v1/runs", headers={"Host": "evil.example@127.0.0.1"})
    assert r.status_code == 400
    assert r.json()["error"] == (
        "Host header 'evil.example@127.0.0.1' is not a host name or address with an optional port"
    )


def test_allowed_hosts_come_from_the_configuration_file_too(tmp_path: Path) -> None:
    config = tmp_path / "flowsight.toml"
    config.write_text('[server]\nallowed_hosts = ["flowsight.example"]\n')
    s = start_server(str(tmp_path / "flowsight.db"), "--config", str(config), log_dir=tmp_path)
    try:
        c = s.client()
        assert c.get("/api/v1/runs", headers={"Host": f"flowsight.example:{s.port}"}).status_code == 200
        assert c.get("/api/v1/runs", headers={"Host": "evil.example"}).status_code == 400
    finally:
        assert s.stop() == 0, s.output()


def test_a_server_on_every_address_answers_to_the_machine_s_names_and_addresses(tmp_path: Path) -> None:
    db = str(tmp_path / "flowsight.db")
    token = create_token(db, "read", "dash")
    own = [
        a.address
        for addrs in psutil.net_if_addrs().values()
        for a in addrs
        if a.family == socket.AF_INET and not a.address.startswith("127.")
    ]
    s = start_server(db, log_dir=tmp_path, host="0.0.0.0")
    try:
        c = s.client(token)
        for host in ["127.0.0.1", "localhost", socket.gethostname(), *own]:
            assert c.get("/api/v1/runs", headers={"Host": f"{host}:{s.port}"}).status_code == 200, host
        assert c.get("/api/v1/runs", headers={"Host": f"evil.example:{s.port}"}).status_code == 400
    finally:
        assert s.stop() == 0, s.output()


def test_an_allowed_host_that_is_not_one_stops_the_server_before_it_listens(tmp_path: Path) -> None:
    out = flowsight(
        "serve",
        "--port",
        str(free_port()),
        "--allowed-host",
        "flowsight.example:8640",
        db=str(tmp_path / "flowsight.db"),
        timeout=30,
    )
    assert out.returncode == 2
    assert "allowed host 'flowsight.example:8640': give a host name or address without a port" in " ".join(
        out.stderr.split()
    )
    assert "Uvicorn running" not in out.stderr


def test_a_request_without_a_host_header_is_answered(local: Server) -> None:
    with socket.create_connection(("127.0.0.1", local.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_an_httpx_client_of_the_server_url_is_answered(local: Server) -> None:
    """What every client (the SDK, flowsight run --url, the browser tests) sends: Host 127.0.0.1:PORT."""
    assert httpx.get(f"{local.url}/healthz", timeout=10).status_code == 200
