"""Host header values and the hosts a server answers to (the DNS rebinding guard)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.errors import ConfigError
from flowsight.model.hosts import AllowedHosts, allowed_pattern, host_name


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("localhost", "localhost"),
        ("localhost:8640", "localhost"),
        ("LocalHost.:8640", "localhost"),  # case and the root's trailing dot do not make another name
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1:8640", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::1]:8640", "::1"),
        ("[0:0:0:0:0:0:0:1]:8640", "::1"),  # one address, one spelling
        ("::1", "::1"),  # without brackets (no browser sends it, but it is unambiguous)
        ("flowsight.example.com:443", "flowsight.example.com"),
        ("evil.example@127.0.0.1", None),  # user info: urlsplit would read 127.0.0.1 out of it
        ("127.0.0.1/x", None),
        ("a b", None),
        ("", None),
        (".", None),
        ("x:port", None),
        ("x:99999", None),
        ("[::1", None),
        ("[v1.x]", None),  # only an IPv6 address goes in brackets
        ("[127.0.0.1]:80", None),
        ("[fe80::1%25eth0]:80", None),
    ],
)
def test_host_name_reads_a_host_header(header: str, host: str | None) -> None:
    assert host_name(header) == host


@given(st.text(max_size=40))
def test_host_name_never_fails_on_any_text(text: str) -> None:
    host = host_name(text)
    assert host is None or (host and "@" not in host and "/" not in host and host == host.lower())


@pytest.mark.parametrize(
    ("pattern", "kept"),
    [
        ("flowsight.example.com", "flowsight.example.com"),
        (" Flowsight.Example.com ", "flowsight.example.com"),
        ("10.0.0.5", "10.0.0.5"),
        ("[fd00::5]", "fd00::5"),
        ("fd00::5", "fd00::5"),
        ("*.corp.example", "*.corp.example"),
        ("*", "*"),
    ],
)
def test_an_allowed_host_is_a_name_an_address_a_domain_or_any(pattern: str, kept: str) -> None:
    assert allowed_pattern(pattern) == kept


@pytest.mark.parametrize(
    "pattern",
    [
        "flowsight.example.com:8640",
        "10.0.0.5:80",
        "*.10.0.0.5",
        "a b",
        "",
        "http://flowsight.example.com",
        "*x.example",
    ],
)
def test_an_allowed_host_that_is_not_one_is_refused_saying_what_is(pattern: str) -> None:
    with pytest.raises(ConfigError, match=r"allowed host .*: give a host name or address without a port"):
        allowed_pattern(pattern)


ALLOWED = AllowedHosts.of(["localhost", "127.0.0.1", "::1", "flowsight.example", "*.corp.example"])


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, True),  # HTTP/1.0 without Host: no browser sends that
        ("localhost:8640", True),
        ("[::1]:8640", True),
        ("flowsight.example", True),
        ("a.corp.example:8640", True),
        ("a.b.corp.example", True),
        ("corp.example", False),  # the domain's names, not the domain
        ("evilcorp.example", False),
        ("localhost.evil.example", False),
        ("127.0.0.1.evil.example:8640", False),
        ("evil.example", False),
    ],
)
def test_a_host_is_answered_only_when_allowed(header: str | None, ok: bool) -> None:
    assert (ALLOWED.refusal(header) is None) is ok


def test_a_refusal_names_the_host_and_how_to_allow_it() -> None:
    assert ALLOWED.refusal("Evil.Example:8640") == (
        "host 'evil.example' is not one this server answers to (a guard against DNS rebinding); if it is "
        "reached by that name, allow it: flowsight serve --allowed-host evil.example, or "
        'allowed_hosts = ["evil.example"] in [server] of flowsight.toml'
    )
    assert ALLOWED.refusal("a b") == "Host header 'a b' is not a host name or address with an optional port"


def test_any_host_is_allowed_with_a_star() -> None:
    assert AllowedHosts.of(["*"]).refusal("whatever.example") is None
