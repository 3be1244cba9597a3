"""LineSplitter, the pure part of the stream sources: bytes in, lines out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsight.collect import LineSplitter, RawLine


class Problems(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)


def split(chunks: list[bytes], *, multiline: bool = False, max_line: int = 1 << 20) -> tuple[list[RawLine], Problems]:
    problems = Problems()
    s = LineSplitter("stdin", max_line=max_line, multiline=multiline, on_problem=problems)
    out: list[RawLine] = []
    for chunk in chunks:
        out += s.feed(chunk, 0.0)
    return out + s.finish(0.0), problems


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\nb\n"], ["a", "b"]),
        ([b"a\r\nb\r\n"], ["a", "b"]),  # CRLF
        ([b"a\nlast"], ["a", "last"]),  # partial last line at the end
        ([b"a\nlast\r"], ["a", "last"]),
        ([b"par", b"tial", b" line\n"], ["partial line"]),  # a line across chunks
        ([b"\n\n"], ["", ""]),  # empty lines are lines
        ([b""], []),
        ([b"caf\xc3", b"\xa9\n"], ["caf\u00e9"]),  # a character split between two reads
    ],
)
def test_lines_are_cut_at_newlines_whatever_the_chunks(chunks: list[bytes], expected: list[str]) -> None:
    lines, problems = split(chunks)
    assert [line.text for line in lines] == expected
    assert problems == []


def test_offsets_are_byte_offsets_in_the_stream() -> None:
    lines, _ = split([b"ab\n\xc3\xa9\n", b"x\n"])
    assert [(line.path, line.offset) for line in lines] == [("stdin", 0), ("stdin", 3), ("stdin", 6)]


@pytest.mark.parametrize(
    ("data", "text", "says"),
    [
        (b"ok \xff\xfe bad\n", "ok \ufffd\ufffd bad", "invalid UTF-8 at byte 3"),
        (b"nul\x00here\n", "nul\ufffdhere", "NUL bytes"),
    ],
)
def test_bad_bytes_are_replaced_and_said_once(data: bytes, text: str, says: str) -> None:
    lines, problems = split([data, data, data])
    assert [line.text for line in lines] == [text] * 3
    assert len(problems) == 1 and says in problems[0] and problems[0].startswith("stdin: ")
    assert "once per stream" in problems[0]


def test_a_long_line_is_cut_into_pieces_at_character_boundaries() -> None:
    line = ("é" * 40).encode() + b"\nnext\n"  # 80 bytes of two-byte characters
    lines, problems = split([line[:7], line[7:]], max_line=33)
    texts = [x.text for x in lines]
    assert "".join(texts[:-1]) == "é" * 40 and texts[-1] == "next"
    assert all(len(t.encode()) <= 33 for t in texts)
    assert len(problems) == 1 and "longer than max_line=33 bytes at byte 0" in problems[0]


def test_the_pieces_of_a_cut_line_are_never_joined_with_the_entry_around_them() -> None:
    data = b"ERROR boom\n" + b"  " + b"x" * 40 + b"\n  frame\n"
    lines, _ = split([data], multiline=True, max_line=16)
    texts = [x.text for x in lines]
    assert texts[0] == "ERROR boom"  # flushed when the long line started
    assert "".join(texts[1:-1]) == "  " + "x" * 40
    assert texts[-1] == "  frame"


def test_a_traceback_is_one_entry() -> None:
    data = (
        b"INFO start\nERROR failed\nTraceback (most recent call last):\n"
        b'  File "job.py", line 3, in <module>\nValueError: boom\nINFO next\n'
    )
    lines, _ = split([data], multiline=True)
    assert [x.text.splitlines()[0] for x in lines] == ["INFO start", "ERROR failed", "INFO next"]
    assert lines[1].text.endswith("ValueError: boom")


def test_an_entry_waits_for_continuations_then_goes_out_after_idle() -> None:
    s = LineSplitter("p", multiline=True, idle=1.0)
    assert s.feed(b"ERROR x\n  detail\n", 10.0) == []
    assert s.holding
    assert s.flush_idle(10.5) == []
    assert [x.text for x in s.flush_idle(11.0)] == ["ERROR x\n  detail"]
    assert not s.holding


def test_max_line_below_16_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        LineSplitter("x", max_line=8)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8), multiline=st.booleans())
def test_how_the_bytes_are_chunked_never_changes_the_lines(data: bytes, cuts: list[int], multiline: bool) -> None:
    points = sorted({c for c in cuts if c <= len(data)})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    whole, _ = split([data], multiline=multiline, max_line=32)
    pieces, _ = split(chunks, multiline=multiline, max_line=32)
    assert pieces == whole


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_characters="\n\r\x00", blacklist_categories=("Cs",)), max_size=40),
        max_size=10,
    )
)
def test_valid_lines_come_out_as_they_went_in(texts: list[str]) -> None:
    lines, problems = split(["".join(t + "\n" for t in texts).encode()])
    assert [x.text for x in lines] == texts and problems == []


def _grouped(chunks: list[bytes], size: int, max_line: int = 1 << 20) -> list[RawLine]:
    s = LineSplitter("stdin", max_line=max_line, multiline=False, on_problem=Problems())
    out: list[RawLine] = []
    for chunk in chunks:
        out += s.feed(chunk, 0.0, group=size)
    return out + s.finish(0.0)


def test_a_chunk_fed_as_groups_gives_its_lines_in_groups_of_at_most_n_with_their_offsets() -> None:
    out = _grouped([b"a\r\nbb\nccc\nd\ne\npartial", b" end\n"], 2)
    assert [(x.text, x.offset, x.lines) for x in out] == [
        ("a\nbb", 0, 2),
        ("ccc\nd", 6, 2),
        ("e", 12, 1),
        ("partial end", 14, 1),
    ]


def test_an_entry_being_joined_goes_out_before_the_groups() -> None:
    s = LineSplitter("stdin", multiline=True, on_problem=Problems())
    held = s.feed(b"ERROR boom\nTraceback (most recent call last):\n", 0.0)
    assert held == [] and s.holding
    out = s.feed(b'  File "x.py", line 1\nnext\nother\n', 0.0, group=10)
    assert [(x.text, x.lines) for x in out] == [
        ("ERROR boom\nTraceback (most recent call last):", 1),
        ('  File "x.py", line 1\nnext\nother', 3),
    ]


def test_a_line_too_long_for_a_group_is_cut_line_by_line_as_always() -> None:
    out = _grouped([b"short\n" + b"x" * 40 + b"\n"], 10, max_line=16)
    assert [x.text for x in out] == ["short", "x" * 16, "x" * 16, "x" * 8]


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=8), size=st.integers(2, 5))
def test_grouping_changes_only_the_grain_never_the_text(data: bytes, cuts: list[int], size: int) -> None:
    points = sorted({c for c in cuts if c <= len(data)})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]
    lines, _ = split(chunks, max_line=1 << 20)
    groups = _grouped(chunks, size)
    assert "\n".join(g.text for g in groups) == "\n".join(x.text for x in lines)
    assert sum(g.lines for g in groups) == len(lines)
    assert all(g.lines <= size for g in groups)
    starts = {x.offset for x in lines}
    assert all(g.offset in starts for g in groups)
