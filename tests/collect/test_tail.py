"""FileTail on real files in tmp_path: polling passes are driven by hand
(`read_available`) and time by a fake clock, so nothing depends on sleeping."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowsight.collect import FileTail, LogSource, RawLine
from flowsight.collect.multiline import Joiner, starts_like_entry


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Problems(list[str]):
    def __call__(self, message: str) -> None:
        self.append(message)

    def matching(self, text: str) -> list[str]:
        return [m for m in self if text in m]


def make_tail(patterns: list[str] | str, **kw: object) -> tuple[FileTail, Clock, Problems]:
    clock, problems = Clock(), Problems()
    kw.setdefault("start", "beginning")
    tail = FileTail([patterns] if isinstance(patterns, str) else patterns, clock=clock, on_problem=problems, **kw)  # type: ignore[arg-type]
    return tail, clock, problems


def drain(tail: FileTail, clock: Clock | None = None) -> list[str]:
    """Poll until nothing more comes; with a clock, also let idle entries flush."""
    out: list[str] = []
    while True:
        got = tail.read_available()
        out += [line.text for line in got]
        if got:
            continue
        if clock is None:
            return out
        clock.t += 60
        got = tail.read_available()
        out += [line.text for line in got]
        if not got:
            return out


def append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def numbered(a: int, b: int) -> str:
    return "".join(f"line {i}\n" for i in range(a, b))


def texts(a: int, b: int) -> list[str]:
    return [f"line {i}" for i in range(a, b)]


# -- basics -------------------------------------------------------------------


def test_file_tail_is_a_log_source(tmp_path: Path) -> None:
    tail, _, _ = make_tail(str(tmp_path / "x.log"))
    assert isinstance(tail, LogSource)


def test_appended_lines_come_out_in_order_with_their_byte_offsets(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "alpha\nbé\n")
    tail, _, _ = make_tail(str(log), multiline=False)
    assert tail.read_available() == [RawLine(str(log), "alpha", 0), RawLine(str(log), "bé", 6)]
    append(log, "gamma\r\n")
    assert tail.read_available() == [RawLine(str(log), "gamma", 10)]
    assert tail.read_available() == []


def test_start_at_end_skips_old_lines_but_keeps_the_unfinished_one(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "old 1\nold 2\nunfini")
    tail, _, _ = make_tail(str(log), start="end", multiline=False)
    assert tail.read_available() == []
    append(log, "shed\nnew\n")
    assert drain(tail) == ["unfinished", "new"]


def test_partial_last_line_is_held_until_its_newline_arrives(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    append(log, "one\ntw")
    tail, _, _ = make_tail(str(log), multiline=False)
    assert drain(tail) == ["one"]
    append(log, "o")
    assert drain(tail) == []
    append(log, "\nthree\n")
    assert drain(tail) == ["two", "three"]


def test_a_missing_plain_path_is_reported_once_and_followed_when_it_appears(tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    tail, _, problems = make_tail(str(log), start="end", multiline=False)
    assert drain(tail) == [] and drain(tail) == []
    assert len(problems.matching("no such file yet")) == 1
    append(log, "first\n")
    assert drain(tail) == ["first"]  # created after the first poll: read from its start


# -- rotation -----------------------------------------------------------------


def test_rotation_by_rename_mid_write_loses_and_repeats_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, problems = make_tail(str(log), multiline=False)
    writer = open(log, "a")
    writer.write(numbered(0, 5) + "line 5 (half")
    writer.flush()
    assert drain(tail) == texts(0, 5)
    # The writer finishes its line and writes more into the old file, which
    # is then renamed away; a new file takes the path before our next poll.
    writer.write(")\n" + numbered(6, 8))
    writer.close()
    os.rename(log, tmp_path / "app.log.1")
    append(log, numbered(8, 12))
    assert drain(tail) == texts(0, 0) + ["line 5 (half)"] + texts(6, 12)
    append(log, numbered(12, 14))
    assert drain(tail) == texts(12, 14)
    assert problems == []  # the path still names a file: a rotation, not a problem


def test_rotation_with_a_gap_before_the_new_file_reports_and_recovers(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, problems = make_tail(str(log), multiline=False)
    append(log, numbered(0, 3))
    assert drain(tail) == texts(0, 3)
    append(log, numbered(3, 5) + "no newline at the end")
    os.rename(log, tmp_path / "app.log.1")
    assert drain(tail) == texts(3, 5) + ["no newline at the end"]
    assert len(problems.matching("disappeared")) == 1
    append(log, numbered(5, 7))
    assert drain(tail) == texts(5, 7)


def test_a_rotated_name_matched_by_the_glob_is_followed_not_read_again(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, _ = make_tail(str(tmp_path / "app.log*"), multiline=False)
    append(log, numbered(0, 3))
    assert drain(tail) == texts(0, 3)
    writer = open(log, "a")  # a writer that keeps its descriptor after the rename
    os.rename(log, tmp_path / "app.log.1")
    writer.write(numbered(3, 5))
    writer.close()
    append(log, numbered(5, 7))
    got = tail.read_available()
    assert [x.text for x in got] == texts(3, 7)
    assert {x.path for x in got} == {str(tmp_path / "app.log.1"), str(log)}


def test_copytruncate_mid_write_starts_again_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, problems = make_tail(str(log), multiline=False)
    writer = open(log, "a")  # O_APPEND, as logging.FileHandler opens it
    writer.write(numbered(0, 5))
    writer.flush()
    assert drain(tail) == texts(0, 5)
    writer.write(numbered(5, 8))
    writer.flush()
    assert drain(tail) == texts(5, 8)
    shutil.copyfile(log, tmp_path / "app.log.1")
    os.truncate(log, 0)
    writer.write(numbered(8, 10))  # shorter than before: the truncation is visible
    writer.flush()
    assert drain(tail) == texts(8, 10)
    writer.write(numbered(10, 30))
    writer.close()
    assert drain(tail) == texts(10, 30)
    assert len(problems.matching("truncated")) == 1


def test_a_truncation_refilled_past_our_offset_before_the_poll_is_noticed(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, problems = make_tail(str(log), multiline=False)
    append(log, numbered(0, 3))
    assert drain(tail) == texts(0, 3)
    os.truncate(log, 0)
    append(log, numbered(100, 110))
    assert drain(tail) == texts(100, 110)
    assert problems.matching("truncated and rewritten")


def test_copytruncate_delivers_the_partial_line_it_cut_off(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, _ = make_tail(str(log), multiline=False)
    append(log, "a\nhalf a li")
    assert drain(tail) == ["a"]
    os.truncate(log, 0)
    append(log, "b\n")
    assert drain(tail) == ["half a li", "b"]


# -- restart ------------------------------------------------------------------


def test_restart_resumes_from_the_saved_offset_without_loss_or_repeat(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.state"
    append(log, numbered(0, 5) + "2024-05-01 12:00:00 ERROR failed\nTraceback (most recent call last):\n")
    tail, _, _ = make_tail(str(log), state_path=state)
    first = drain(tail)  # the last entry is still open: not handed out
    assert first == texts(0, 5)
    append(log, '  File "x.py", line 1\nValueError: boom\nINFO line 6\nINFO part')
    tail.save_state()
    tail.close()
    saved = json.loads(state.read_text())
    assert [f["offset"] for f in saved["files"]] == [len(numbered(0, 5))]

    append(log, "ial\nINFO line 7\n")
    again, clock, _ = make_tail(str(log), state_path=state, start="end")
    second = drain(again, clock)
    assert first + second == texts(0, 5) + [
        '2024-05-01 12:00:00 ERROR failed\nTraceback (most recent call last):\n  File "x.py", line 1\nValueError: boom',
        "INFO line 6",
        "INFO partial",
        "INFO line 7",
    ]


def test_restart_reads_files_created_while_down_from_their_start(tmp_path: Path) -> None:
    state = tmp_path / "tail.state"
    append(tmp_path / "a.log", numbered(0, 2))
    tail, _, _ = make_tail(str(tmp_path / "*.log"), state_path=state, start="end", multiline=False)
    assert drain(tail) == []
    append(tmp_path / "a.log", numbered(2, 3))
    assert drain(tail) == texts(2, 3)
    tail.save_state()
    tail.close()
    append(tmp_path / "a.log", numbered(3, 4))
    append(tmp_path / "b.log", numbered(10, 12))
    again, _, _ = make_tail(str(tmp_path / "*.log"), state_path=state, start="end", multiline=False)
    assert sorted(drain(again)) == sorted(texts(3, 4) + texts(10, 12))


def test_restart_after_a_truncation_while_down_reads_from_the_start(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.state"
    append(log, numbered(0, 10))
    tail, _, _ = make_tail(str(log), state_path=state, multiline=False)
    drain(tail)
    tail.save_state()
    tail.close()
    os.truncate(log, 0)
    append(log, numbered(10, 11))
    again, _, problems = make_tail(str(log), state_path=state, multiline=False)
    assert drain(again) == texts(10, 11)
    assert problems.matching("shorter than the saved offset")


def test_async_iteration_saves_state_when_it_ends(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.state"
    append(log, numbered(0, 3))
    tail, _, _ = make_tail(str(log), state_path=state, multiline=False, poll=0.01)

    async def take(n: int) -> list[str]:
        got: list[str] = []
        async with contextlib.aclosing(tail.__aiter__()) as lines:
            async for line in lines:
                got.append(line.text)
                if len(got) == n:
                    break
        return got

    assert asyncio.run(take(2)) == texts(0, 2)
    again, _, _ = make_tail(str(log), state_path=state, multiline=False)
    assert drain(again) == texts(2, 3)


def test_a_saved_offset_for_a_reused_inode_is_not_trusted(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.state"
    append(log, numbered(0, 3))
    st = os.stat(log)
    other = {"dev": st.st_dev, "ino": st.st_ino, "path": str(log), "offset": 7, "head": b"another".hex()}
    state.write_text(json.dumps({"version": 1, "files": [other]}))
    tail, _, _ = make_tail(str(log), state_path=state, multiline=False)
    assert drain(tail) == texts(0, 3)


def test_save_state_replaces_the_file_atomically(tmp_path: Path) -> None:
    log, state = tmp_path / "app.log", tmp_path / "tail.state"
    append(log, numbered(0, 3))
    tail, _, _ = make_tail(str(log), state_path=state, multiline=False)
    drain(tail)
    tail.save_state()
    st = os.stat(log)
    assert json.loads(state.read_text())["files"] == [
        {
            "dev": st.st_dev,
            "ino": st.st_ino,
            "path": str(log),
            "offset": st.st_size,
            "head": b"line 0\nline 1\nline 2\n".hex(),
        }
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.log", "tail.state"]


def test_a_file_missing_at_restart_keeps_its_saved_offset_until_it_is_back(tmp_path: Path) -> None:
    log, state, away = tmp_path / "app.log", tmp_path / "tail.state", tmp_path / "away.log"
    append(log, numbered(0, 3))
    tail, _, _ = make_tail(str(log), state_path=state, multiline=False)
    assert drain(tail) == texts(0, 3)
    tail.save_state()
    tail.close()
    tail.save_state()  # after close: does nothing, the state stays
    os.rename(log, away)  # gone for a while (an unmounted disk, a move)
    again, _, _ = make_tail(str(log), state_path=state, multiline=False)
    assert drain(again) == []
    again.save_state()
    again.close()
    append(away, numbered(3, 4))
    os.rename(away, log)
    third, _, _ = make_tail(str(log), state_path=state, multiline=False)
    assert drain(third) == texts(3, 4)


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"version": 99, "files": []}', b'{"version": 1, "files": [{"dev": 1}]}', b"[]"],
)
def test_a_broken_state_file_is_reported_and_ignored(tmp_path: Path, content: bytes) -> None:
    state = tmp_path / "tail.state"
    state.write_bytes(content)
    append(tmp_path / "app.log", "x\n")
    tail, _, problems = make_tail(str(tmp_path / "app.log"), state_path=state, start="end", multiline=False)
    assert problems.matching("not a valid tail state")
    assert drain(tail) == []  # start="end" applies, as on a first run
    append(tmp_path / "app.log", "y\n")
    assert drain(tail) == ["y"]
    tail.save_state()
    assert json.loads(state.read_text())["version"] == 1


# -- multi-line entries -------------------------------------------------------

PY_TRACEBACK = """\
2024-05-01 12:00:00,001 ERROR etl: load failed
Traceback (most recent call last):
  File "/app/etl.py", line 10, in load
    rows = fetch()
           ^^^^^^^
KeyError: 'rows'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/app/etl.py", line 12, in load
    raise RuntimeError("no rows")
RuntimeError: no rows"""

JAVA_TRACE = """\
2024-05-01 12:00:01.002 ERROR [main] c.e.Job - job failed
java.lang.IllegalStateException: bad state
\tat com.example.Job.run(Job.java:42)
\tat com.example.Main.main(Main.java:7)
Caused by: java.io.IOException: disk gone
\tat com.example.Disk.write(Disk.java:9)
\t... 2 more"""

BARE_TRACEBACK = """\
Traceback (most recent call last):
  File "script.py", line 3, in <module>
    main()
ValueError: boom"""


@pytest.mark.parametrize("entry", [PY_TRACEBACK, JAVA_TRACE], ids=["python", "java"])
def test_a_stack_trace_is_joined_to_the_entry_it_belongs_to(tmp_path: Path, entry: str) -> None:
    log = tmp_path / "app.log"
    tail, clock, _ = make_tail(str(log))
    append(log, "2024-05-01 11:59:59 INFO start\n" + entry + "\n2024-05-01 12:00:02 INFO next\n")
    assert drain(tail) == ["2024-05-01 11:59:59 INFO start", entry]  # "next" may still continue
    assert drain(tail, clock) == ["2024-05-01 12:00:02 INFO next"]


def test_a_bare_traceback_in_unprefixed_output_is_one_entry(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    tail, clock, _ = make_tail(str(log))
    append(log, "processing\n" + "finished step\n" + BARE_TRACEBACK + "\nstill here\n")
    assert drain(tail, clock) == ["processing", "finished step\n" + BARE_TRACEBACK, "still here"]


def test_a_trailing_traceback_is_flushed_after_the_idle_time_only(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, clock, _ = make_tail(str(log), multiline_idle=1.0)
    append(log, PY_TRACEBACK + "\n")
    assert tail.read_available() == []
    clock.t += 0.5
    assert tail.read_available() == []
    clock.t += 0.5
    got = tail.read_available()
    assert [x.text for x in got] == [PY_TRACEBACK] and got[0].offset == 0


def test_multiline_off_passes_every_line_through(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, _ = make_tail(str(log), multiline=False)
    append(log, JAVA_TRACE + "\n")
    assert drain(tail) == JAVA_TRACE.split("\n")


@pytest.mark.parametrize(
    ("line", "starts"),
    [
        ("2024-05-01 12:00:00 x", True),
        ("[2024/05/01 12:00] x", True),
        ("12:00:01 x", True),
        ("May  1 12:00:01 host x", True),
        ("1714564800.123 x", True),
        ("ERROR:root:boom", True),
        ('{"level": "info"}', True),
        ("  File x", False),
        ("KeyError: 'rows'", False),
        ("hello", False),
        # the rest is the parser's judgement (tests/logs/test_parse.py has it format by format)
        ('level=error msg="connection reset by peer" host=db1', True),
        ("<11>May  1 12:00:01 host app: disk gone", True),
        ("user=bob action=login", False),
        ("", False),
    ],
)
def test_what_starts_like_a_log_entry(line: str, starts: bool) -> None:
    assert starts_like_entry(line) is starts


@pytest.mark.parametrize(
    "record",
    [
        'level=error msg="connection reset by peer" host=db1',
        '{"level": "error", "msg": "connection reset by peer"}',
        "<11>May  1 12:00:01 db1 app: connection reset by peer",
        "ERROR: connection reset by peer",
        "[2024-05-01 12:00:01] ERROR connection reset by peer",
    ],
)
def test_a_line_with_its_own_level_or_time_after_a_prefixed_line_is_an_entry_of_its_own(
    tmp_path: Path, record: str
) -> None:
    log = tmp_path / "app.log"
    tail, clock, _ = make_tail(str(log))
    append(log, f"2024-05-01 12:00:00 INFO starting\nplain text of the info line\n{record}\nits own plain line\n")
    assert drain(tail, clock) == [
        "2024-05-01 12:00:00 INFO starting\nplain text of the info line",
        f"{record}\nits own plain line",
    ]


def test_a_traceback_after_a_logfmt_record_is_joined_to_it(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, clock, _ = make_tail(str(log))
    record = 'level=error msg="load failed"\n' + BARE_TRACEBACK
    append(log, "level=info msg=start\n" + record + "\nlevel=info msg=next\n")
    assert drain(tail, clock) == ["level=info msg=start", record, "level=info msg=next"]


def test_joiner_keeps_entries_below_max_chars() -> None:
    joiner = Joiner(max_chars=21)
    out = []
    for i, line in enumerate(["2024-05-01 x", "  aaaaaaaa", "  bbbbbbbb", "  cc"]):
        out += joiner.feed(line, i * 10, i * 10 + 10, 0.0)
    out += joiner.flush()
    assert [j.text for j in out] == ["2024-05-01 x", "  aaaaaaaa\n  bbbbbbbb", "  cc"]


# -- bad input ----------------------------------------------------------------


def test_a_10_mb_line_is_cut_into_max_line_pieces_and_reported_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, clock, problems = make_tail(str(log))
    big = "".join(chr(ord("a") + i % 26) for i in range(10 * 1024 * 1024 + 5))
    append(log, "2024-05-01 before\n" + big + "\n  2024-05-01 after\n")
    out = drain(tail, clock)
    assert out[0] == "2024-05-01 before"
    assert [len(p) for p in out[1:-1]] == [1 << 20] * 10 + [5]
    assert "".join(out[1:-1]) == big
    assert out[-1] == "  2024-05-01 after"  # indented, yet not joined to a piece of the cut line
    assert len(problems.matching("longer than max_line")) == 1
    append(log, "2024-05-01 still going\n")
    assert drain(tail, clock) == ["2024-05-01 still going"]


def test_long_lines_are_cut_at_character_boundaries(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, _ = make_tail(str(log), max_line=17, multiline=False)
    text = "é" * 40  # two bytes each; 17 would split one
    append(log, text + "\n")
    out = drain(tail)
    assert "".join(out) == text and "\ufffd" not in "".join(out)
    assert all(len(p.encode()) <= 17 for p in out)


def test_invalid_utf8_is_replaced_and_reported_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, problems = make_tail(str(log), multiline=False)
    append(log, b"ok \xff\xfe bad\nagain \xc3\n\xe2\x82\xac fine\n")
    assert drain(tail) == ["ok \ufffd\ufffd bad", "again \ufffd", "€ fine"]
    assert problems.matching("invalid UTF-8 at byte 3") and len(problems.matching("UTF-8")) == 1


def test_binary_garbage_does_not_stop_the_tailer(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, clock, problems = make_tail(str(log))
    garbage = bytes((i * 7919 + 13) % 256 for i in range(200_000))
    append(log, garbage + b"\n2024-05-01 after the garbage\n")
    out = drain(tail, clock)
    assert out[-1] == "2024-05-01 after the garbage"
    assert not any("\x00" in text for text in out)
    assert problems.matching("NUL") and problems.matching("UTF-8")
    append(log, "2024-05-01 and on\n")
    assert drain(tail, clock) == ["2024-05-01 and on"]


def test_a_deleted_file_is_read_to_its_end_reported_and_followed_again(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    tail, _, problems = make_tail(str(log), multiline=False)
    append(log, numbered(0, 2))
    assert drain(tail) == texts(0, 2)
    append(log, numbered(2, 4))
    os.remove(log)
    assert drain(tail) == texts(2, 4)  # read through the descriptor we still hold
    assert len(problems.matching("disappeared")) == 1
    assert problems.matching("no such file yet") == []
    append(log, numbered(4, 5))
    assert drain(tail) == texts(4, 5)


def test_a_missing_path_is_waited_for_and_said_once(tmp_path: Path) -> None:
    tail, _, problems = make_tail(str(tmp_path / "app.log"), multiline=False)
    assert drain(tail) == [] and drain(tail) == []
    assert problems == [f"{tmp_path / 'app.log'}: no such file yet; waiting for it to appear"]
    assert tail.missing == [str(tmp_path / "app.log")]
    append(tmp_path / "app.log", "x\n")
    assert drain(tail) == ["x"] and tail.missing == []


def test_without_waiting_a_missing_path_is_no_such_file_and_an_empty_glob_a_warning(tmp_path: Path) -> None:
    append(tmp_path / "there.log", "x\n")
    patterns = [str(tmp_path / "gone.log"), str(tmp_path / "there.log"), str(tmp_path / "*.txt")]
    tail, _, problems = make_tail(patterns, wait=False, multiline=False)
    assert drain(tail) == ["x"]
    assert problems == [
        f"{tmp_path / 'gone.log'}: no such file",
        f"{tmp_path / '*.txt'}: matches no file (a glob; nothing to read)",
    ]
    assert tail.missing == [str(tmp_path / "gone.log")]


def test_the_glob_picks_up_new_files_from_their_start_and_skips_directories(tmp_path: Path) -> None:
    (tmp_path / "old.log").write_text("old\n")
    (tmp_path / "dir.log").mkdir()
    tail, _, problems = make_tail(str(tmp_path / "*.log"), start="end", multiline=False)
    assert drain(tail) == []
    (tmp_path / "new.log").write_text("n1\nn2\n")
    append(tmp_path / "old.log", "o2\n")
    assert sorted(drain(tail)) == ["n1", "n2", "o2"]
    assert len(problems.matching("not a regular file")) == 1


# -- a real writer, a real reader ---------------------------------------------


def test_async_reader_gets_10000_lines_across_two_rotations_exactly_once(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    total = 10_000
    got: list[int] = []
    reads_before_end: list[int] = []  # how far the reader was as the writer went on

    def write() -> None:
        f = open(log, "a")
        for i in range(total):
            if i in (3_000, 7_000):  # like logging.handlers.RotatingFileHandler
                f.close()
                os.rename(log, tmp_path / f"app.log.{i}")
                f = open(log, "a")
            if i % 7 == 0:  # now and then a line arrives in two writes
                f.write(str(i))
                f.flush()
                f.write("\n")
            else:
                f.write(f"{i}\n")
            f.flush()
            if i % 100 == 0:  # give the reader turns in the middle of the writing
                reads_before_end.append(len(got))
                threading.Event().wait(0.001)
        f.close()

    tail = FileTail([str(log)], start="beginning", poll=0.005, multiline_idle=0.05, on_problem=lambda m: None)
    writer = threading.Thread(target=write)

    async def read() -> list[int]:
        writer.start()
        async with contextlib.aclosing(tail.__aiter__()) as lines:
            async for line in lines:
                got.append(int(line.text))
                if len(got) == total:
                    break
        return got

    asyncio.run(asyncio.wait_for(read(), timeout=60))
    writer.join()
    assert got == list(range(total))
    assert 0 < max(reads_before_end) < total  # the reader really read while the writer wrote


# -- properties -----------------------------------------------------------------

TOKENS = st.sampled_from(
    [
        "\n",
        "x",
        " ",
        "\t",
        "é",
        "2024-05-01 ",
        "INFO ",
        "Traceback (most recent call last):",
        "Caused by: ",
        "ValueError: v",
        "java.lang.Error: e",
        "\tat a.B(C.java:1)",
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.lists(TOKENS, max_size=12).map("".join), min_size=1, max_size=12),
    restart_at=st.integers(min_value=0, max_value=12),
    multiline=st.booleans(),
)
def test_every_line_comes_out_once_in_order_whatever_the_writes_and_restarts(
    chunks: list[str], restart_at: int, multiline: bool
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log, state = Path(tmp) / "app.log", Path(tmp) / "tail.state"
        log.touch()
        tail, clock, _ = make_tail(str(log), state_path=state, multiline=multiline)
        out: list[str] = []
        for i, chunk in enumerate(chunks):
            append(log, chunk)
            out += [x.text for x in tail.read_available()]
            if i == restart_at:
                tail.save_state()
                tail.close()
                tail, clock, _ = make_tail(str(log), state_path=state, multiline=multiline)
            clock.t += 0.4
        out += [x.text for x in tail.read_available()]
        out += [x.text for x in tail.flush()]
        tail.close()
        content = "".join(chunks)
        assert "\n".join(out) == content.removesuffix("\n")
        if not multiline:
            assert out == content.removesuffix("\n").split("\n") if content not in ("", "\n") else out in ([], [""])


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("write"), st.lists(TOKENS, max_size=10).map("".join)),
        st.tuples(st.sampled_from(["poll", "rotate", "truncate", "restart", "idle"]), st.just("")),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(ops=OPS, multiline=st.booleans())
def test_rotations_truncations_and_restarts_in_any_order_lose_and_repeat_nothing(
    ops: list[tuple[str, str]], multiline: bool
) -> None:
    """Within the documented limits: a truncation is seen by a poll before and
    after it, a restart polls first, and every file is polled at least once
    before it is rotated away (not matched by the pattern, it is found by no
    later poll)."""
    with tempfile.TemporaryDirectory() as tmp:
        log, state = Path(tmp) / "app.log", Path(tmp) / "tail.state"
        log.touch()
        tail, clock, _ = make_tail(str(log), state_path=state, multiline=multiline)
        out: list[str] = []
        segments: list[str] = []  # what each file period held; its partial end counts as a line
        current = ""
        rotations = 0
        unseen_rotation = True  # a file the tailer has not looked at yet

        def poll() -> None:
            nonlocal unseen_rotation
            out.extend(x.text for x in tail.read_available())
            unseen_rotation = False

        def close_period() -> None:
            nonlocal current
            if current:
                segments.append(current.removesuffix("\n"))
            current = ""

        for op, chunk in ops:
            if op == "write":
                append(log, chunk)
                current += chunk
            elif op == "poll":
                poll()
            elif op == "idle":
                clock.t += 5
            elif op == "rotate":
                if unseen_rotation:
                    poll()
                rotations += 1
                os.rename(log, Path(tmp) / f"app.log.{rotations}")
                log.touch()
                close_period()
                unseen_rotation = True
            elif op == "truncate":
                poll()
                os.truncate(log, 0)
                close_period()
                poll()
            else:  # restart
                poll()
                tail.save_state()
                tail.close()
                tail, clock, _ = make_tail(str(log), state_path=state, multiline=multiline)
                unseen_rotation = True
        poll()
        out += [x.text for x in tail.flush()]
        tail.close()
        close_period()
        assert "\n".join(out) == "\n".join(segments), (ops, multiline, out, segments)
