"""Durations and times people type (the CLI's flags, the API's query
parameters): one reading for both."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowsight.errors import ConfigError
from flowsight.model.durations import parse_duration, parse_time

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("30d", 2_592_000.0),
        ("250ms", 0.25),
        ("12", 12.0),
        (" 2 h ", 7200.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("text", "ts"),
    [
        ("2h", NOW - 7200),
        ("30m", NOW - 1800),
        ("7d", NOW - 7 * 86400),
        ("1h30m", NOW - 5400),
        ("1714564800", 1714564800.0),  # a plain number is a time (epoch seconds), as the API always read it
        ("1714564800.5", 1714564800.5),
        ("2024-05-01T12:00:00Z", 1714564800.0),
        ("2024-05-01T14:00:00+02:00", 1714564800.0),
        ("2024-05-01 12:00:00", 1714564800.0),  # no zone: UTC, as in log lines
    ],
)
def test_parse_time_takes_epoch_seconds_rfc_3339_or_a_duration_ago(text: str, ts: float) -> None:
    assert parse_time(text, now=NOW) == pytest.approx(ts)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("yesterday", "'yesterday' is not a time"),
        ("-2h", "'-2h' is not a time"),
        ("", "'' is not a time"),
        ("nan", "'nan' is not a finite number"),
        ("2024-13-01T00:00:00Z", "'2024-13-01T00:00:00Z' is not a valid RFC 3339 time"),
    ],
)
def test_a_bad_time_names_what_and_the_accepted_forms(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_time(text, now=NOW, what="query parameter 'since'")
    message = str(info.value)
    assert message.startswith(f"query parameter 'since': {says}")
    assert "a duration ago (2h, 30m, 7d), an RFC 3339 time (2024-05-01T12:00:00Z) or epoch seconds" in message


@given(st.text(max_size=40))
def test_parse_time_answers_a_number_or_a_config_error(text: str) -> None:
    try:
        assert isinstance(parse_time(text, now=NOW), float)
    except ConfigError:
        pass


def test_duration_text_is_the_shortest_text_read_back() -> None:
    from flowsight.model.durations import duration_text

    cases = {20: "20s", 900: "15m", 3600: "1h", 5400: "1h30m", 90061: "1d1h1m1s", 1.5: "1.5s", 0: "0s"}
    for seconds, text in cases.items():
        assert duration_text(seconds) == text and parse_duration(text) == seconds
