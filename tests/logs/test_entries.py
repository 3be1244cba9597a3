"""Log levels, level words and the log entry."""

from __future__ import annotations

import dataclasses

import pytest

from flowsight.logs.entries import LEVEL_WORDS, LogEntry, LogLevel, level_from_syslog, level_from_word


def test_levels_are_ordered_by_rank_not_alphabetically() -> None:
    assert list(LogLevel) == sorted(LogLevel)
    assert LogLevel.TRACE < LogLevel.DEBUG < LogLevel.INFO < LogLevel.WARN < LogLevel.ERROR < LogLevel.FATAL
    assert LogLevel.WARN >= LogLevel.WARN > LogLevel.INFO <= LogLevel.INFO
    assert LogLevel.FATAL > LogLevel.ERROR and not LogLevel.ERROR > LogLevel.FATAL  # "error" > "fatal" as text
    assert max(LogLevel) is LogLevel.FATAL


def test_a_level_compared_with_something_else_is_not_ordered() -> None:
    with pytest.raises(TypeError):
        _ = LogLevel.INFO < 3


def test_a_level_is_its_text_as_a_key() -> None:
    by_text: dict[str, int] = {LogLevel.WARN: 1}
    assert by_text["warn"] == 1
    assert LogLevel("error") is LogLevel.ERROR
    assert [level.value for level in LogLevel] == ["trace", "debug", "info", "warn", "error", "fatal"]


@pytest.mark.parametrize(
    ("words", "level"),
    [
        (("TRACE", "FINEST", "FINER", "FINE"), LogLevel.TRACE),
        (("DEBUG", "DBG", "VERBOSE", "D", "V"), LogLevel.DEBUG),
        (("INFO", "INFORMATION", "NOTICE", "I"), LogLevel.INFO),
        (("WARN", "WARNING", "W"), LogLevel.WARN),
        (("ERROR", "ERR", "E"), LogLevel.ERROR),
        (
            ("CRITICAL", "CRIT", "FATAL", "SEVERE", "FAILURE", "PANIC", "EMERG", "EMERGENCY", "ALERT", "F"),
            LogLevel.FATAL,
        ),
    ],
)
def test_level_words_map_to_their_level_in_any_case(words: tuple[str, ...], level: LogLevel) -> None:
    for word in words:
        for spelling in (word, word.lower(), word.title(), word.swapcase().title().swapcase()):
            assert level_from_word(spelling) is level, spelling


@pytest.mark.parametrize("word", ["", " ", "INF", "warnings", "errors", "A", "information!", "x" * 1000, "INFO "])
def test_other_words_are_no_level(word: str) -> None:
    assert level_from_word(word) is None


def test_every_level_word_is_upper_case() -> None:
    assert all(word == word.upper() for word in LEVEL_WORDS)


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (0, LogLevel.FATAL),
        (1, LogLevel.FATAL),
        (2, LogLevel.FATAL),
        (3, LogLevel.ERROR),
        (4, LogLevel.WARN),
        (5, LogLevel.INFO),
        (6, LogLevel.INFO),
        (7, LogLevel.DEBUG),
        (-1, None),
        (8, None),
        (191, None),
    ],
)
def test_syslog_severities_map_to_levels(severity: int, level: LogLevel | None) -> None:
    assert level_from_syslog(severity) is level


def test_a_log_entry_is_frozen_and_has_empty_defaults() -> None:
    entry = LogEntry(1.5, LogLevel.INFO, "hello", "stdin")
    assert (entry.workflow, entry.run_id, entry.step, dict(entry.fields), entry.raw) == (None, None, None, {}, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.message = "changed"  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")  # slots
    assert entry == LogEntry(1.5, LogLevel.INFO, "hello", "stdin", fields={})
