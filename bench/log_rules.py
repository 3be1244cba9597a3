"""Log rules on many lines: flowsight's MultiMatcher against ``grep -E -c`` and a ``re`` loop.

The lines: ``HDFS/HDFS_2k.log`` of the Loghub samples (``../shared/data/loghub``)
replicated to 1,000,000 lines in its own order, with every block id, IP
address, thread id and timestamp redrawn from a seeded RNG, so no two copies
are the same text. They are written to a temporary file for grep and kept in
memory, as ``str`` lines, for Python: a tailer hands the matcher decoded lines,
in batches (``match_many`` on 10,000 at a time here).

The rules: 20 a HDFS operator would write (levels, exceptions, timeouts,
block life-cycle messages; a few match often, most rarely), and 100 (those 20
and 80 more of the same kind). Each is written once in Python syntax and
turned into a POSIX ERE for grep (``\\d`` -> ``[0-9]``, case-insensitive
letters -> ``[xX]``); grep gets them all as ``-e`` options with ``LC_ALL=C``
and counts the lines that match any (``-c``). That count must equal the
number of lines the matcher gives at least one key: it is checked.

Measured, for 20 and 100 rules: lines/s of the matcher with the best engine
installed (hyperscan when it is) and with the pure-Python engine, of grep,
and of a plain loop of ``re.search`` per rule per line (on the first 50,000
lines: it is slow); best of 3 runs each, the contenders taking turns so that
load from other work hits them alike. Goals: >= 1,000,000 lines/s, >= 0.5x
grep, and 100 rules cost <= 1.5x what 20 cost. The ratio flowsight/grep for
20 rules is printed last.

Run: ``.venv/bin/python bench/log_rules.py [loghub-dir] [--lines N]``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from flowsight.logs.match import MultiMatcher, Pattern, engines

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "loghub"
BATCH = 10_000
REPEATS = 3
RE_LOOP_LINES = 50_000

# (regex in Python syntax, ignore case). The first 20 are the small rule set.
RULES: list[tuple[str, bool]] = [
    (r"Exception", False),
    (r"timeout", True),
    (r"Got exception while serving", False),
    (r"PacketResponder \d+ for block .* terminating", False),
    (r"^\d{6} \d{6} \d+ (WARN|ERROR|FATAL) ", False),
    (r"connection (refused|reset)", True),
    (r"java\.io\.IOException", False),
    (r"NameSystem\.allocateBlock: /\S+/part-\d+", False),
    (r"OutOfMemoryError", False),
    (r"ask \d+\.\d+\.\d+\.\d+:\d+ to replicate", False),
    (r"Received block blk_-?\d+ of size \d{9,}", False),
    (r"checksum (error|mismatch)", True),
    (r"Verification succeeded for blk_", False),
    (r"disk (full|error|failure)", True),
    (r"Starting thread to transfer block", False),
    (r"permission denied", True),
    (r"writeBlock blk_-?\d+ received exception", False),
    (r"No space left on device", True),
    (r"Slow BlockReceiver write", False),
    (r"(corrupt|missing) (block|replica)", True),
    # --- 80 more of the same kind
    (r"java\.net\.SocketTimeoutException", False),
    (r"java\.net\.ConnectException", False),
    (r"java\.io\.EOFException", False),
    (r"java\.nio\.channels\.ClosedByInterruptException", False),
    (r"Broken pipe", False),
    (r"Connection reset by peer", False),
    (r"BlockAlreadyExistsException", False),
    (r"NotReplicatedYetException", False),
    (r"LeaseExpiredException", False),
    (r"SafeModeException", False),
    (r"safe ?mode is (on|off)", True),
    (r"Block blk_-?\d+ is valid, and cannot be written to", False),
    (r"Unexpected error trying to delete block blk_-?\d+", False),
    (r"BlockInfo not found in volumeMap", False),
    (r"PendingReplicationMonitor timed out block blk_-?\d+", False),
    (r"Redundant addStoredBlock request received for blk_-?\d+", False),
    (r"Reported block blk_-?\d+ is corrupt", False),
    (r"Exception in receiveBlock for block blk_-?\d+", False),
    (r"Exception writing block blk_-?\d+ to mirror", False),
    (r"PacketResponder blk_-?\d+ \d+ Exception", False),
    (r"Interrupted receiveBlock", False),
    (r"Changing block file offset of block blk_-?\d+", False),
    (r"Receiving empty packet for block blk_-?\d+", False),
    (r"BlockReport of \d+ blocks got processed in \d+ msecs", False),
    (r"Removing lease on +file", False),
    (r"heartbeat .*(lost|expired|timed out)", True),
    (r"DatanodeRegistration\(\d+\.\d+\.\d+\.\d+:\d+", False),
    (r"Number of transactions: \d+ Total time for transactions", False),
    (r"Roll Edit Log from \d+\.\d+\.\d+\.\d+", False),
    (r"SHUTDOWN_MSG", False),
    (r"STARTUP_MSG", False),
    (r"FSNamesystem\.audit: .* cmd=delete", False),
    (r"Adding an already existing block blk_-?\d+", False),
    (r"replica (not found|already exists)", True),
    (r"failed to (read|write) block", True),
    (r"is added to blk_-?\d+ size 0$", False),
    (r"ask \d+\.\d+\.\d+\.\d+:\d+ to delete +blk_-?\d+ blk_-?\d+", False),
    (r"to datanode\(s\) \d+\.\d+\.\d+\.\d+:\d+ \d+\.\d+\.\d+\.\d+:\d+", False),
    (r"Served block blk_-?\d+ to /10\.252\.", False),
    (r"Received block blk_-?\d+ src: /\S+ dest: /\S+ of size \d+", False),
    (r"Deleting block blk_-?\d+ file /\S+/blk_-?\d+\.meta", False),
    (r"Error processing datanode Command", False),
    (r"DiskErrorException", False),
    (r"Invalid directory in dfs\.data\.dir", False),
    (r"Incompatible namespaceIDs", False),
    (r"Failed to transfer blk_-?\d+ to \d+\.\d+\.\d+\.\d+:\d+", False),
    (r"Decommission (started|complete) for node", True),
    (r"Lost heartbeat from node", False),
    (r"Too many open files", True),
    (r"GC overhead limit exceeded", False),
    (r"Java heap space", False),
    (r"unable to create new native thread", False),
    (r"Address already in use", False),
    (r"No route to host", False),
    (r"Connection timed out", True),
    (r"Read timed out", True),
    (r"Call to .* failed on local exception", False),
    (r"RemoteException", False),
    (r"AccessControlException", False),
    (r"InvalidToken", False),
    (r"Checksum error in block blk_-?\d+", False),
    (r"Premature EOF from inputStream", False),
    (r"Block blk_-?\d+ has corrupt replicas", False),
    (r"Under-replicated blocks: [1-9]\d*", False),
    (r"Missing blocks: [1-9]\d*", False),
    (r"dfs\.DataNode\$DataXceiver: .*:(Got exception|DataXceiver)", False),
    (r"^\d{6} \d{6} \d+ FATAL ", False),
    (r"^\d{6} \d{6} \d+ ERROR dfs\.", False),
    (r"dfs\.(FSDataset|DataBlockScanner): .*(failed|error)", True),
    (r"Block blk_-?\d+ is not valid", False),
    (r"does not exist in blockMap", False),
    (r'Exception in thread "', False),
    (r"retrying", True),
    (r"Could not obtain block blk_-?\d+", False),
    (r"Error in deleting blocks", False),
    (r"Failed to delete block", True),
    (r"DataXceiveServer: .*Exception", False),
    (r"But it does not belong to any file", False),
    (r"Inconsistent size for block blk_-?\d+", False),
    (r"Block blk_-?\d+ reported from \S+ is not in the blocksMap", False),
]
assert len(RULES) == 100


def to_ere(regex: str, ignore_case: bool) -> str:
    """The POSIX ERE grep gets for one of the rules above (only the syntax they use)."""
    out: list[str] = []
    i = 0
    in_class = False
    while i < len(regex):
        ch = regex[i]
        if ch == "\\":
            nxt = regex[i + 1]
            out.append({"d": "[0-9]", "S": "[^[:space:]]", "s": "[[:space:]]"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == "[":
            in_class = True
        elif ch == "]":
            in_class = False
        if ignore_case and ch.isalpha() and not in_class:
            out.append(f"[{ch.lower()}{ch.upper()}]")
        else:
            out.append(ch)
        i += 1
    ere = "".join(out)
    if "(?" in ere:
        raise ValueError(f"rule {regex!r} uses syntax grep -E does not have")
    return ere


def make_lines(source: Path, n: int, seed: int = 20240611) -> list[str]:
    """``n`` lines in the order of ``source``, variables redrawn so copies differ.

    Block ids and IP addresses come from seeded pools of 65,536 each, the
    thread id is drawn per line and the clock runs through one day.
    """
    rng = random.Random(seed)
    bits = rng.getrandbits
    blocks = [f"blk_{'-' if bits(1) else ''}{bits(63)}" for _ in range(65_536)]
    ips = [f"10.25{bits(8) % 3}.{bits(8)}.{bits(8) or 1}" for _ in range(65_536)]
    variable = re.compile(r"(blk_-?\d+|\d+\.\d+\.\d+\.\d+)")
    templates: list[tuple[str, list[list[str]]]] = []
    for line in source.read_text(encoding="utf-8").splitlines():
        _date, _clock, _thread, rest = line.split(" ", 3)
        parts = variable.split(rest.replace("%", "%%"))
        fmt = "%s %s " + "".join(p if j % 2 == 0 else "%s" for j, p in enumerate(parts))
        templates.append((fmt, [blocks if p.startswith("blk_") else ips for p in parts[1::2]]))
    out = []
    clock = ""
    second = -1
    for i in range(n):
        fmt, pools = templates[i % len(templates)]
        if i * 86_400 // n != second:
            second = i * 86_400 // n
            clock = f"081109 {second // 3600:02d}{second // 60 % 60:02d}{second % 60:02d}"
        out.append(fmt % (clock, bits(12), *[pool[bits(16)] for pool in pools]))
    return out


def best_rates(runs: dict[str, tuple[Callable[[], object], int]]) -> dict[str, float]:
    """Lines/s of each run (name -> (run, lines)), best of REPEATS. The runs
    take turns, so load from other work on the machine hits them alike."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(REPEATS):
        for name, (run, _lines) in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: lines / best[name] for name, (_run, lines) in runs.items()}


def matcher_run(m: MultiMatcher, batches: Sequence[list[str]]) -> int:
    """Lines with at least one key (as ``grep -c`` counts), batch by batch."""
    hits = 0
    many = m.match_many
    for batch in batches:
        answers = many(batch)
        hits += len(answers) - answers.count(())
    return hits


def re_loop(rules: Sequence[tuple[str, bool]], lines: Sequence[str]) -> list[tuple[int, ...]]:
    compiled = [(k, re.compile(rx, re.IGNORECASE if ic else 0).search) for k, (rx, ic) in enumerate(rules)]
    return [tuple(k for k, search in compiled if search(line)) for line in lines]


def grep_count(path: Path, rules: Sequence[tuple[str, bool]]) -> int:
    args = ["grep", "-E", "-c"]
    for rx, ic in rules:
        args += ["-e", to_ere(rx, ic)]
    done = subprocess.run(
        [*args, str(path)], capture_output=True, text=True, env={**os.environ, "LC_ALL": "C"}, check=False
    )
    if done.returncode not in (0, 1) or done.stderr:
        raise RuntimeError(f"grep failed: {done.stderr.strip()}")
    return int(done.stdout)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("loghub", nargs="?", type=Path, default=DEFAULT_DIR)
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    source = args.loghub / "HDFS" / "HDFS_2k.log"
    if not source.is_file():
        print(f"skipped: no HDFS/HDFS_2k.log under {args.loghub}; pass the Loghub directory")
        return 0
    n = args.lines
    lines = make_lines(source, n)
    batches = [lines[i : i + BATCH] for i in range(0, n, BATCH)]  # as a tailer hands them over
    best = engines()[0]
    runs = list(dict.fromkeys([best, "python"]))  # the best engine, and the pure-Python one
    sample = lines[:RE_LOOP_LINES]
    print(
        f"{n:,} HDFS lines ({sum(map(len, lines)) / n:.0f} chars on average), batches of {BATCH:,}; "
        f"best engine here: {best}"
    )
    rates: dict[tuple[int, str], float] = {}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "hdfs.log"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        for size in (20, 100):
            rules = RULES[:size]
            patterns = [Pattern(k, rx, ic) for k, (rx, ic) in enumerate(rules)]
            reference = re_loop(rules, sample)
            counts = {"grep": grep_count(path, rules)}
            contenders: dict[str, tuple[Callable[[], object], int]] = {}
            for engine in runs:
                m = MultiMatcher(patterns, engine=engine)  # type: ignore[arg-type]
                if m.match_many(sample) != reference:
                    raise SystemExit(f"the {engine} engine disagrees with the re loop on {size} rules")
                counts[engine] = matcher_run(m, batches)
                contenders[engine] = (partial(matcher_run, m, batches), n)
            if len(set(counts.values())) != 1:
                raise SystemExit(f"lines matching any of {size} rules differ: {counts}")
            contenders["grep"] = (partial(grep_count, path, rules), n)
            contenders["re loop"] = (partial(re_loop, rules, sample), len(sample))
            for name, rate in best_rates(contenders).items():
                rates[size, name] = rate
            print(
                f"{size} rules: {counts['grep']:,} lines ({counts['grep'] / n:.1%}) match at least one; "
                f"grep, the matcher and (on {len(sample):,} lines) the re loop agree"
            )
    print(f"{'lines/s':<22} {'20 rules':>12} {'100 rules':>12} {'cost 100/20':>12}")
    for name in [*runs, "grep", "re loop"]:
        label = f"flowsight ({name})" if name in runs else name
        r20, r100 = rates[20, name], rates[100, name]
        print(f"{label:<22} {r20:>12,.0f} {r100:>12,.0f} {r20 / r100:>12.2f}")
    for size in (20, 100):
        print(
            f"{size} rules: "
            + ", ".join(
                f"{e}/{peer} = {rates[size, e] / rates[size, peer]:.2f}" for e in runs for peer in ("grep", "re loop")
            )
        )
    print(end_to_end(lines[:200_000]))
    print(f"ratio flowsight/grep lines/s = {rates[20, best] / rates[20, 'grep']:.2f}")
    return 0


def end_to_end(lines: list[str]) -> str:
    """Tail + parse + ids + store, then template + 20 rules + template ids
    written back (bench/log_pipeline.py), on the first lines of the same data."""
    import asyncio

    from log_pipeline import analyze, collect  # the script beside this one

    with tempfile.TemporaryDirectory() as tmp:
        path, db = Path(tmp) / "e2e.log", str(Path(tmp) / "fs.db")
        path.write_text("\n".join(lines) + "\n")
        t0 = time.perf_counter()
        asyncio.run(collect(path, db))
        analyze(db)
        elapsed = time.perf_counter() - t0
    return (
        f"end to end (tail + parse + template + 20 rules + store, {len(lines):,} lines): "
        f"{len(lines) / elapsed:,.0f} lines/s"
    )


if __name__ == "__main__":
    raise SystemExit(main())
