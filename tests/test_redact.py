"""Credentials out of URLs and of text that quotes them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.redact import redact, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example.com/alerts", "https://hooks.example.com/alerts"),
        ("https://user:hunter2@hooks.example.com/alerts", "https://***@hooks.example.com/alerts"),
        ("https://TOKEN@hooks.example.com/", "https://***@hooks.example.com/"),  # a token as the user
        ("https://hooks.example.com/a?token=s3cr3t&team=ops", "https://hooks.example.com/a?token=***&team=***"),
        ("https://hooks.example.com/a?s3cr3t", "https://hooks.example.com/a?***"),
        ("https://hooks.example.com/a#s3cr3t", "https://hooks.example.com/a#***"),
        ("http://u:p@[::1]:9093/?key=k", "http://***@[::1]:9093/?key=***"),
        ("http://[x", "***"),  # not even a URL: nothing of it
    ],
)
def test_a_url_shows_where_it_goes_never_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/services/***"),
        ("https://chat.example.com/hook", "https://chat.example.com/***"),
        ("https://chat.example.com/", "https://chat.example.com/"),
    ],
)
def test_a_url_whose_path_is_the_secret_shows_its_first_segment_only(url: str, shown: str) -> None:
    assert redact_url(url, secret_path=True) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "webhook http://u:p@h:1/hook?token=s3cr3t: HTTP 404: Cannot POST /hook?token=s3cr3t&x=1.",
            "webhook http://***@h:1/hook?token=***: HTTP 404: Cannot POST /hook?token=***&x=***.",
        ),
        ("see 'https://u:p@h/x', (http://h/?a=b).", "see 'https://***@h/x', (http://h/?a=***)."),
        ("ConnectError: [Errno 111] Connection refused", "ConnectError: [Errno 111] Connection refused"),
        ("GET /x?token=abc:def more", "GET /x?token=*** more"),
    ],
)
def test_text_keeps_its_words_and_loses_the_credentials_it_quotes(text: str, shown: str) -> None:
    assert redact(text) == shown


@given(
    user=st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=4, max_size=12),
    secret=st.text("abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=6, max_size=20),
    before=st.sampled_from(["", "error: ", "'", "(", "webhook "]),
    after=st.sampled_from(["", ": HTTP 500", "'", ").", " and more"]),
)
def test_no_secret_of_a_quoted_url_survives(user: str, secret: str, before: str, after: str) -> None:
    text = f"{before}https://{user}:{secret}@hooks.example.com/p?token={secret}&sig={secret}{after}"
    assert secret not in redact(text)
    assert f"{user}:" not in redact(text)
