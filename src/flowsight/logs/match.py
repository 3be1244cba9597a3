"""Many log rules, one pass: a multi-pattern matcher that answers like ``re.search``.

``MultiMatcher(patterns).match(text)`` returns the keys of every pattern that
``re.search`` finds in ``text``, in the order the patterns were given: the
answer of a per-pattern ``re.search`` loop, always. The point is the cost: a
line that matches no rule (most lines) must not take one regex run per rule.
``match_many(texts)`` answers a batch of lines at once and is the fast path.

Two engines, chosen per pattern:

1. **hyperscan** (when the ``hyperscan`` package imports; ``engine="auto"``).
   Each pattern is parsed with Python's own parser (``re._parser``) and
   written out again as a hyperscan expression, so hyperscan never sees
   Python syntax it would read differently (``\\Z``, ``{,3}``, ``[[:a:]]``).
   The translation is exact on the text it is used for, ASCII lines without
   ``\\n``: every one-character node (literal, class, ``.``, ``\\w``, case-
   insensitive letter) becomes the set of ASCII characters that Python's
   ``re`` itself accepts for it, found by asking ``re`` for each of the 127,
   so case folding and Unicode classes cannot drift. ``\\n`` is left out of
   every set, so in a block of lines joined with ``\\n`` (hyperscan's
   multi-line mode: ``^``/``$`` at line ends) no match can span two lines;
   ``\\b`` agrees because Python's word characters are ``[A-Za-z0-9_]`` on
   ASCII. The ends are rewritten where that keeps whether a search finds a
   match and saves hyperscan work (it reports every end offset of every
   match): ``X*`` at either end is dropped, ``X{m,n}`` at the start cut to
   ``X{m}``, and a trailing ``X+`` of one character class is followed by "a
   character not in X, or the line end", so a run of digits is reported once,
   not once a digit. Patterns it cannot take exactly go to the Python engine,
   one by one: lookaround, backreferences, possessive and atomic parts,
   patterns that can match the empty string, and what hyperscan refuses to
   compile. Lines that are not ASCII or hold a ``\\n`` go there too. A batch
   is one scan of the joined lines; a match's line is the number of ``\\n``
   before its end, counted in C between consecutive matches. The price per
   batch is the join and one Python callback per (line, pattern) match; a
   match is kept as one int, not a tuple, so that matching does not wake the
   garbage collector (whose full passes walk every object a program holds).

2. **Python** (always there; ``engine="python"`` forces it). From the parse
   tree of each pattern it takes a *required literal*: a set of strings at
   least one of which every match contains (the longest such; an alternation
   gives one per branch). A batch is joined into one string and each distinct
   literal is found with ``str.find`` (C, no regex), jumping to the next line
   after a hit; case-insensitive literals are found in the lowered block.
   Only the lines holding a pattern's literal run that pattern's regex, and a
   pattern that *is* its literal set (``Got exception``, ``(?i)timeout``,
   ``ERROR|FATAL``) needs no regex run at all. Patterns without a literal of
   3+ characters run on every line. Each literal costs one scan of the batch,
   so this engine's cost still grows with the number of distinct literals:
   faster than a per-rule ``re`` loop, slower than hyperscan, the more so the
   more rules (``bench/log_rules.py``; figures: docs/benchmarks.md).

Anything the analysis does not understand costs speed, never correctness:
such a pattern gets no literal, or is not translated.

Pure: no I/O. A matcher is not thread-safe (hyperscan's scratch space is
shared by its scans): one matcher per consumer thread.
"""

from __future__ import annotations

import importlib
import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import accumulate, chain, compress, count, repeat
from operator import add, and_, lshift, or_, rshift
from typing import Any, Literal

from flowsight.errors import ConfigError

# re's parser is not in typeshed; it has been re._parser since 3.11.
_parser: Any = importlib.import_module("re._parser")
_compiler: Any = importlib.import_module("re._compiler")
_k: Any = importlib.import_module("re._constants")
_sre: Any = importlib.import_module("_sre")


def _load_hyperscan() -> Any:
    try:
        return importlib.import_module("hyperscan")
    except (ImportError, OSError):  # not installed, or its library does not load here
        return None


_hs: Any = _load_hyperscan()

Engine = Literal["auto", "hyperscan", "python"]

_MIN_LITERAL = 3  # shorter required literals filter too little to be worth a scan
_MAX_SET = 16  # most strings an exact or required literal set may hold
_ASCII = range(128)


@dataclass(frozen=True, slots=True)
class Pattern:
    """One pattern of a matcher: ``regex`` in Python syntax (a plain substring
    is ``re.escape(text)``), reported as ``key`` when it matches."""

    key: int
    regex: str
    ignore_case: bool = False


# --- required literals (the Python engine's filter) -------------------------

# A literal piece is (text, mode): mode 0 = no cased characters (it reads the
# same with and without ignore-case), 1 = case-sensitive, 2 = case-insensitive
# with ``text`` lowered (ASCII only).
_Lit = tuple[str, int]
_Set = frozenset[_Lit]


def _mode_join(a: int, b: int) -> int:
    if a == b or b == 0:
        return a
    return b if a == 0 else -1


def _product(left: Iterable[_Lit], right: Iterable[_Lit]) -> set[_Lit] | None:
    out: set[_Lit] = set()
    right = list(right)
    for lt, lm in left:
        for rt, rm in right:
            mode = _mode_join(lm, rm)
            if mode < 0:
                return None
            out.add((lt + rt, mode))
            if len(out) > _MAX_SET:
                return None
    return out


def _score(lits: _Set) -> tuple[int, int]:
    return (min(len(t) for t, _ in lits), -len(lits))


def _best(cands: Iterable[_Set | None]) -> _Set | None:
    best: _Set | None = None
    for c in cands:
        if c and len(c) <= _MAX_SET and (best is None or _score(c) > _score(best)):
            best = c
    return best


def _literal(ch: int, flags: int) -> _Lit | None:
    c = chr(ch)
    if c == "\n":  # the separator of a joined batch: never part of a literal
        return None
    cased = bool(_sre.unicode_iscased(ch))
    if not cased:
        return (c, 0)
    if not flags & re.IGNORECASE:
        return (c, 1)
    # Case-insensitive: ASCII letters are found in the lowered text; other
    # cased characters fold in ways a lowered text does not show.
    return (c.lower(), 2) if c.isascii() else None


def _small_class(items: Any, flags: int) -> _Set | None:
    if flags & re.IGNORECASE:
        return None
    chars: list[int] = []
    for op, av in items:
        if op is _k.LITERAL:
            chars.append(av)
        elif op is _k.RANGE and av[1] - av[0] < _MAX_SET:
            chars.extend(range(av[0], av[1] + 1))
        else:
            return None
        if len(chars) > 4:
            return None
    lits = [_literal(c, flags) for c in chars]
    return frozenset(x for x in lits if x is not None) if None not in lits else None


# (exact, best, clean): exact = every string the node can match, when few and
# known; best = the best required literal set; clean = no assertion, atomic or
# possessive part, so that matching the exact set is the same as matching.
_Info = tuple[_Set | None, _Set | None, bool]


def _node(op: Any, av: Any, flags: int) -> _Info:
    if op is _k.LITERAL:
        lit = _literal(av, flags)
        return (frozenset([lit]) if lit else None), None, True
    if op is _k.IN:
        return _small_class(av, flags), None, True
    if op is _k.SUBPATTERN:
        _group, add, remove, sub = av
        return _seq(sub, _compiler._combine_flags(flags, add, remove))
    if op is _k.ATOMIC_GROUP:
        inner = _seq(av, flags)
        return inner[0], inner[1], False
    if op is _k.BRANCH:
        infos = [_seq(alt, flags) for alt in av[1]]
        clean = all(i[2] for i in infos)
        every: set[_Lit] | None = set()
        for e, _, _ in infos:
            if e is None or every is None or len(every) + len(e) > _MAX_SET:
                every = None
            else:
                every |= e
        union: set[_Lit] | None = set()
        for e, b, _ in infos:
            need = _best([b, e])
            if need is None or union is None:
                union = None
            else:
                union |= need
        return (frozenset(every) if every is not None else None), (frozenset(union) if union else None), clean
    if op is _k.GROUPREF_EXISTS:
        _cond, yes, no = av
        yes_best = _best(_seq(yes, flags)[:2])
        no_best = _best(_seq(no, flags)[:2]) if no is not None else None
        return None, (yes_best | no_best if yes_best and no_best else None), False
    return None, None, op is not _k.GROUPREF


def _seq(items: Any, flags: int) -> _Info:
    """Walk a sequence, joining exact pieces into runs; a run ends where the
    sequence can match something not exactly known, and becomes a candidate."""
    run: set[_Lit] | None = {("", 0)}
    broken = False
    clean = True
    cands: list[_Set | None] = []
    for op, av in items:
        if op in (_k.AT, _k.ASSERT, _k.ASSERT_NOT):
            clean = False  # zero width: the text around it is still one string
            continue
        if op in (_k.MAX_REPEAT, _k.MIN_REPEAT, _k.POSSESSIVE_REPEAT):
            lo, hi, sub = av
            exact, best, sub_clean = _seq(sub, flags)
            clean = clean and sub_clean and op is not _k.POSSESSIVE_REPEAT
            power: set[_Lit] | None = None
            if lo == hi and exact is not None and lo <= _MAX_SET:
                power = {("", 0)}
                for _ in range(lo):
                    power = _product(power, exact) if power is not None else None
            if power is not None:
                exact = frozenset(power)
            elif lo >= 1 and exact is not None:
                # one copy ends what came before, the last copy starts what follows
                head = _product(run, exact) if run is not None else None
                cands.extend([frozenset(head) if head else None, exact])
                run, broken = set(exact), True
                continue
            else:
                if lo >= 1:
                    cands.append(best)
                exact = None
        else:
            exact, best, node_clean = _node(op, av, flags)
            clean = clean and node_clean
            cands.append(best)
        if exact is not None and run is not None:
            joined = _product(run, exact)
            if joined is not None:
                run = joined
                continue
        if run is not None:
            cands.append(frozenset(run))
        cands.append(exact)
        run, broken = {("", 0)}, True
    if run is not None:
        cands.append(frozenset(run))
    whole = frozenset(run) if run is not None and not broken else None
    return whole, _best(cands), clean


@dataclass(frozen=True, slots=True)
class _Plan:
    literals: tuple[tuple[str, bool], ...]  # (text, case-insensitive); empty: run on every line
    exact: bool  # a literal found is a match


def _plan(parsed: Any) -> _Plan:
    try:
        exact, best, clean = _seq(parsed, parsed.state.flags)
    except Exception:  # an unexpected parse tree costs speed, not correctness
        return _Plan((), False)
    if best is None or _score(best)[0] < _MIN_LITERAL:
        return _Plan((), False)
    literals = tuple(sorted((t, m == 2) for t, m in best))
    return _Plan(literals, clean and exact == best)


# --- hyperscan translation --------------------------------------------------


class _Untranslatable(Exception):
    pass


_ascii_sets: dict[tuple[Any, str, int], frozenset[int]] = {}


def _ascii_set(op: Any, av: Any, flags: int) -> frozenset[int]:
    """The ASCII characters (but ``\\n``) one single-character node accepts,
    as Python's ``re`` decides it."""
    cache_key = (op, repr(av), flags)
    found = _ascii_sets.get(cache_key)
    if found is None:
        state = _parser.State()
        state.flags = flags
        rx = _compiler.compile(_parser.SubPattern(state, [(op, av)]), 0)
        found = frozenset(c for c in _ASCII if c != 10 and rx.fullmatch(chr(c)))
        _ascii_sets[cache_key] = found
    return found


def _ranges(chars: Iterable[int]) -> str:
    ranges: list[list[int]] = []
    for c in sorted(chars):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    return "".join(f"\\x{a:02x}" if a == b else f"\\x{a:02x}-\\x{b:02x}" for a, b in ranges)


def _hs_class(chars: frozenset[int]) -> str:
    if not chars:
        return r"[\x80-\xff]"  # never in ASCII text: this branch cannot match
    if len(chars) == 1:
        return f"\\x{next(iter(chars)):02x}"
    if len(chars) > 64:
        # The same on ASCII text, and hyperscan scans a negated class
        # (``.`` is [^\x0a], ``\S`` [^\x09-\x0d\x1c-\x20]) faster (docs/benchmarks.md).
        return "[^" + _ranges(set(_ASCII) - chars) + "]"
    return "[" + _ranges(chars) + "]"


def _hs_seq(items: Any, flags: int) -> str:
    return "".join(_hs_node(op, av, flags) for op, av in items)


def _hs_node(op: Any, av: Any, flags: int) -> str:
    if op in (_k.LITERAL, _k.NOT_LITERAL, _k.ANY, _k.IN):
        return _hs_class(_ascii_set(op, av, flags))
    if op is _k.SUBPATTERN:
        _group, add, remove, sub = av
        return "(?:" + _hs_seq(sub, _compiler._combine_flags(flags, add, remove)) + ")"
    if op is _k.BRANCH:
        return "(?:" + "|".join(_hs_seq(alt, flags) for alt in av[1]) + ")"
    if op in (_k.MAX_REPEAT, _k.MIN_REPEAT):  # greedy or lazy: the same matches exist
        lo, hi, sub = av
        top = "" if hi is _k.MAXREPEAT else str(hi)
        return "(?:" + _hs_seq(sub, flags) + ")" + ("{%d}" % lo if top == str(lo) else "{%d,%s}" % (lo, top))
    if op is _k.AT:
        if av in (_k.AT_BEGINNING, _k.AT_BEGINNING_STRING):
            return "^"
        if av in (_k.AT_END, _k.AT_END_STRING):
            return "$"
        if av is _k.AT_BOUNDARY:
            return r"\b"
        if av is _k.AT_NON_BOUNDARY:
            return r"\B"
    raise _Untranslatable(str(op))


def _hs_expression(parsed: Any) -> str:
    """The hyperscan expression of a parsed pattern, ends rewritten as the
    module docstring says (raises ``_Untranslatable``). Cutting a trailing
    ``\\d+`` to ``\\d`` would also report a run once, but makes hyperscan
    pick worse literals, which is slower (docs/benchmarks.md)."""
    if parsed.getwidth()[0] == 0:
        raise _Untranslatable("can match the empty string")
    flags = parsed.state.flags
    items = list(parsed)
    repeats = (_k.MAX_REPEAT, _k.MIN_REPEAT)
    while items[0][0] in repeats and items[0][1][0] == 0:
        del items[0]
    if items[0][0] in repeats:
        lo, _hi, sub = items[0][1]
        items[0] = (items[0][0], (lo, lo, sub))
    while items[-1][0] in repeats and items[-1][1][0] == 0:
        del items[-1]
    tail = ""
    op, av = items[-1]
    if op in repeats and av[1] is _k.MAXREPEAT and len(av[2]) == 1:
        ((char_op, char_av),) = av[2]
        if char_op in (_k.LITERAL, _k.NOT_LITERAL, _k.ANY, _k.IN):
            others = frozenset(_ASCII) - _ascii_set(char_op, char_av, flags) - {10}
            tail = "(?:" + _hs_class(others) + "|$)"
    return _hs_seq(items, flags) + tail


# --- the engines --------------------------------------------------------------


class _Lines:
    """Where each text of a joined batch ends, computed once and only if needed."""

    __slots__ = ("texts", "_nexts")

    def __init__(self, texts: Sequence[str]) -> None:
        self.texts = texts
        self._nexts: list[int] | None = None

    @property
    def nexts(self) -> list[int]:
        """``nexts[i]``: offset of text i+1 in the joined block (one past text i's separator)."""
        if self._nexts is None:
            self._nexts = list(accumulate(map(add, map(len, self.texts), repeat(1))))
        return self._nexts


def _hit_lines(find: Callable[[int], int], lines: _Lines) -> list[int]:
    """Indexes of the texts in which ``find(pos)`` (the offset of the next hit
    at or after ``pos`` in the joined block, or -1) finds something."""
    pos = find(0)
    if pos < 0:
        return []
    nexts = lines.nexts
    out = []
    while pos >= 0:
        i = bisect_right(nexts, pos)
        out.append(i)
        pos = find(nexts[i])  # one hit per text is enough
    return out


def _regex_find(rx: re.Pattern[str], hay: str) -> Callable[[int], int]:
    def find(pos: int) -> int:
        m = rx.search(hay, pos)
        return -1 if m is None else m.start()

    return find


class _PyEngine:
    """Required-literal filter, then the real regex on the candidate lines."""

    def __init__(self, pids: Sequence[int], compiled: Sequence[re.Pattern[str]], plans: Sequence[_Plan]) -> None:
        self.pids = tuple(pids)
        self.search = {pid: compiled[pid].search for pid in self.pids}
        self.always = frozenset(pid for pid in self.pids if not plans[pid].literals)
        self.cs: dict[str, list[int]] = {}
        self.ci: dict[str, list[int]] = {}
        self.exact = frozenset(pid for pid in self.pids if plans[pid].exact)
        self.ci_exact = frozenset(pid for pid in self.exact if any(ci for _, ci in plans[pid].literals))
        for pid in self.pids:
            for text, ci in plans[pid].literals:
                (self.ci if ci else self.cs).setdefault(text, []).append(pid)
        self._ci_rx = {text: re.compile(re.escape(text), re.IGNORECASE) for text in self.ci}

    def match_pids(self, text: str) -> list[int]:
        cands = set(self.always)
        for lit, pids in self.cs.items():
            if lit in text:
                cands.update(pids)
        ascii_text = True
        if self.ci:
            ascii_text = text.isascii()
            low = text.lower() if ascii_text else text
            for lit, pids in self.ci.items():
                if (lit in low) if ascii_text else self._ci_rx[lit].search(text):
                    cands.update(pids)
        trust = self.exact if ascii_text else self.exact - self.ci_exact
        search = self.search
        return [pid for pid in sorted(cands) if pid in trust or search[pid](text)]

    def pairs(self, block: str, lines: _Lines, shift: int) -> list[int]:
        """``text index << shift | pattern id`` of every match in the texts joined in ``block``."""
        found: dict[int, list[list[int]]] = {}
        for lit, pids in self.cs.items():
            hit = _hit_lines(partial(block.find, lit), lines)
            if hit:
                for pid in pids:
                    found.setdefault(pid, []).append(hit)
        ascii_block = True
        if self.ci:
            ascii_block = block.isascii()  # then lowering keeps every offset
            low = block.lower() if ascii_block else block
            for lit, pids in self.ci.items():
                find = partial(low.find, lit) if ascii_block else _regex_find(self._ci_rx[lit], block)
                hit = _hit_lines(find, lines)
                if hit:
                    for pid in pids:
                        found.setdefault(pid, []).append(hit)
        trust = self.exact if ascii_block else self.exact - self.ci_exact
        texts = lines.texts
        out: list[int] = []
        for pid in self.pids:
            search = self.search[pid]
            if pid in self.always:
                hit = list(compress(count(), map(search, texts)))
            else:
                groups = found.get(pid)
                if not groups:
                    continue
                hit = groups[0] if len(groups) == 1 else sorted(set().union(*groups))
                if pid not in trust:
                    hit = [i for i in hit if search(texts[i])]
            out.extend(map(or_, map(lshift, hit, repeat(shift)), repeat(pid)))
        return out


class _HsEngine:
    """One hyperscan database of the translated patterns, scanned over a block."""

    def __init__(self, expressions: dict[int, bytes], shift: int) -> None:
        self.db = _compile(expressions)
        self.shift = shift

    def _scan(self, data: bytes) -> list[int]:
        # A hit is one int, ``end << shift | pattern id``: no tuple per hit for
        # the garbage collector to track, and ints sort fast.
        hits: list[int] = []
        append = hits.append
        shift = self.shift

        def on_match(pid: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
            append(end << shift | pid)

        self.db.scan(data, match_event_handler=on_match)
        return hits

    def match_pids(self, text: str) -> set[int]:
        mask = (1 << self.shift) - 1
        return {hit & mask for hit in self._scan(text.encode("ascii"))}

    def lines(self, data: bytes, n: int) -> tuple[list[int], list[int]] | None:
        """Text indexes and pattern ids of the matches in ``data``, ``n`` ASCII
        texts joined with ``\\n``, in text order; None when a text holds a ``\\n``."""
        hits = self._scan(data)
        if not hits:
            return ([], []) if data.count(b"\n") == n - 1 else None
        hits.sort()  # by end offset: hyperscan mostly reports in that order already
        ends = list(map(rshift, hits, repeat(self.shift)))
        # A match ends inside its text or at its end, never on a separator: the
        # text's index is the number of \n before the end, counted in C from
        # the previous end (cheaper than a table of text offsets and bisect).
        lines = list(accumulate(map(data.count, repeat(b"\n"), chain((0,), ends), ends)))
        # n texts hold n - 1 separators, and more \n only if a text holds one
        if lines[-1] + data.count(b"\n", ends[-1]) != n - 1:
            return None
        return lines, list(map(and_, hits, repeat((1 << self.shift) - 1)))


def _compile(expressions: dict[int, bytes]) -> Any:
    db = _hs.Database()
    db.compile(
        expressions=list(expressions.values()),
        ids=list(expressions),
        elements=len(expressions),
        flags=_hs.HS_FLAG_MULTILINE,
    )
    return db


def _translate(parsed: Sequence[Any]) -> dict[int, bytes]:
    """Pattern id -> hyperscan expression, for the patterns hyperscan takes."""
    expressions: dict[int, bytes] = {}
    for pid, tree in enumerate(parsed):
        try:
            expressions[pid] = _hs_expression(tree).encode("ascii")
        except Exception:  # _Untranslatable, or a tree this code does not expect
            pass
    try:
        _compile(expressions)
    except Exception:
        # hyperscan does not say which one it refused: ask one by one
        for pid, expr in list(expressions.items()):
            try:
                _compile({pid: expr})
            except Exception:
                del expressions[pid]  # the Python engine takes it
    return expressions


class MultiMatcher:
    """Match a text against many patterns at once.

    ``engine``: ``"auto"`` uses hyperscan when it is installed, ``"hyperscan"``
    insists on it, ``"python"`` uses the pure-Python engine only. Raises
    ``ConfigError`` naming the key and the reason for a pattern that does not
    compile, for keys given twice, and for ``engine="hyperscan"`` without
    the package.
    """

    def __init__(self, patterns: Iterable[Pattern], *, engine: Engine = "auto") -> None:
        self.patterns = tuple(patterns)
        if engine not in ("auto", "hyperscan", "python"):
            raise ConfigError(f"matcher engine must be 'auto', 'hyperscan' or 'python', got {engine!r}")
        if engine == "hyperscan" and _hs is None:
            raise ConfigError(
                "matcher engine 'hyperscan': the hyperscan package is not installed; "
                "pip install 'flowsight[hyperscan]' or use engine='auto'"
            )
        seen: set[int] = set()
        compiled: list[re.Pattern[str]] = []
        parsed: list[Any] = []
        for p in self.patterns:
            if p.key in seen:
                raise ConfigError(f"log pattern {p.key}: the key is given twice; every pattern needs its own key")
            seen.add(p.key)
            if not isinstance(p.regex, str):
                raise ConfigError(f"log pattern {p.key}: the regex must be a string, got {type(p.regex).__name__}")
            flags = re.IGNORECASE if p.ignore_case else 0
            try:
                compiled.append(re.compile(p.regex, flags))
            except (re.error, OverflowError, RecursionError) as e:
                raise ConfigError(
                    f"log pattern {p.key}: {p.regex!r} is not a valid regular expression: {e}; "
                    f"write it in Python re syntax (a plain text is re.escape(text))"
                ) from None
            parsed.append(_parser.parse(p.regex, flags))
        self._keys = tuple(p.key for p in self.patterns)
        self._single = tuple((key,) for key in self._keys)  # one answer tuple per key, reused
        self._shift = max(1, (len(self.patterns) - 1).bit_length())  # pattern ids packed in ints
        plans = [_plan(tree) for tree in parsed]
        every = range(len(self.patterns))
        self._all = _PyEngine(every, compiled, plans)
        self._hs: _HsEngine | None = None
        self._rest = self._all
        if engine != "python" and _hs is not None:
            expressions = _translate(parsed) if parsed else {}
            if expressions:
                self._hs = _HsEngine(expressions, self._shift)
                self._rest = _PyEngine([pid for pid in every if pid not in expressions], compiled, plans)
        #: The engine in use: "hyperscan" or "python".
        self.engine: str = "python" if self._hs is None else "hyperscan"
        #: Keys of the patterns the Python engine runs even on ASCII lines.
        self.python_keys: tuple[int, ...] = tuple(self._keys[pid] for pid in self._rest.pids)

    def match(self, text: str) -> tuple[int, ...]:
        """Keys of the patterns ``re.search`` finds in ``text``, in pattern order."""
        keys = self._keys
        if self._hs is None or not text.isascii() or "\n" in text:
            return tuple(keys[pid] for pid in self._all.match_pids(text))
        pids = self._hs.match_pids(text)
        if self._rest.pids:
            pids.update(self._rest.match_pids(text))
        return tuple(keys[pid] for pid in sorted(pids))

    def match_many(self, texts: Sequence[str]) -> list[tuple[int, ...]]:
        """``[match(t) for t in texts]``, answered for the whole batch at once."""
        n = len(texts)
        if n == 0:
            return []
        block = "\n".join(texts)
        hs = self._hs
        shift = self._shift
        mask = (1 << shift) - 1
        found: tuple[Iterable[int], Iterable[int]] | None = None
        codes: list[int] | None = None
        if hs is None:
            codes = self._all.pairs(block, _Lines(texts), shift)
        elif block.isascii():
            found = hs.lines(block.encode("ascii"), n)
            if found is not None and self._rest.pids:
                codes = self._rest.pairs(block, _Lines(texts), shift)
                codes += map(or_, map(lshift, found[0], repeat(shift)), found[1])
        if codes is not None:
            codes.sort()
            found = map(rshift, codes, repeat(shift)), map(and_, codes, repeat(mask))
        if found is None:
            # The few odd lines (not ASCII, or holding a \n) go to the Python
            # engine; the rest stay one batch.
            odd = [i for i, t in enumerate(texts) if not t.isascii() or "\n" in t]
            plain = list(texts)
            for i in odd:
                plain[i] = ""  # no translated pattern matches an empty line
            answers = self.match_many(plain)
            for i in odd:
                answers[i] = self.match(texts[i])
            return answers
        # (text, pattern) in text order: most texts match one pattern or none, and
        # get a shared tuple; a text matching several gets its keys in pattern order.
        single = self._single
        out: list[tuple[int, ...]] = [()] * n
        cur = first = -1
        more: list[int] = []
        for line, pid in zip(*found):
            if line != cur:
                if more:
                    out[cur] = self._ordered(first, more)
                    more = []
                out[line] = single[pid]
                cur, first = line, pid
            elif pid != first:
                more.append(pid)
        if more:
            out[cur] = self._ordered(first, more)
        return out

    def _ordered(self, first: int, more: list[int]) -> tuple[int, ...]:
        return tuple([self._keys[p] for p in sorted({first, *more})])


def engines() -> tuple[str, ...]:
    """The engines this installation can run, best first."""
    return ("hyperscan", "python") if _hs is not None else ("python",)
