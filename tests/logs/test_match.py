from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsight.errors import ConfigError
from flowsight.logs import match
from flowsight.logs.match import MultiMatcher, Pattern, engines

ENGINES = engines()  # hyperscan when installed, and python always
LOGHUB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "loghub"
BENCH = Path(__file__).resolve().parents[2] / "bench" / "log_rules.py"


def expected(patterns: Sequence[Pattern], text: str) -> tuple[int, ...]:
    """The reference: one re.search per pattern."""
    return tuple(p.key for p in patterns if re.search(p.regex, text, re.IGNORECASE if p.ignore_case else 0))


def check(patterns: Sequence[Pattern], texts: Sequence[str], engine: str) -> None:
    m = MultiMatcher(patterns, engine=engine)  # type: ignore[arg-type]
    want = [expected(patterns, t) for t in texts]
    assert [m.match(t) for t in texts] == want
    assert m.match_many(texts) == want
    # every batch boundary must give the same answer
    assert m.match_many(texts[:1]) + m.match_many(texts[1:]) == want


def pats(*regexes: str, ignore_case: bool = False, first: int = 10) -> list[Pattern]:
    return [Pattern(first + i, rx, ignore_case) for i, rx in enumerate(regexes)]


HDFS = [
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_38865049064139660 terminating",
    "081109 204005 35 INFO dfs.FSNamesystem: BLOCK* NameSystem.addStoredBlock: blockMap updated: "
    "10.251.73.220:50010 is added to blk_7128370237687728475 size 67108864",
    "081109 214043 2561 WARN dfs.DataNode$DataXceiver: 10.251.30.85:50010:Got exception while serving "
    "blk_-2918118818249673980 to /10.251.90.64:",
    "081109 213509 2601 ERROR dfs.DataNode: java.net.SocketTimeoutException: Read TIMEOUT after 60000 ms",
    "",
    "connection Reset by peer; Connection refused",
    "naïve café — ΣΊΣΥΦΟΣ timeout ſtate Kelvin",
    "two\nlines WARN here",
    "tab\there\r\nend",
]

RULES = [
    "Exception",
    r"(?i)timeout",
    "Got exception while serving",
    r"PacketResponder \d+ for block .* terminating",
    r"^\d{6} \d{6} \d+ (WARN|ERROR|FATAL) ",
    r"(?i)connection (refused|reset)",
    r"blk_-?\d+ size \d{8,}",
    r"\bWARN\b",
    r"here$",
    r"^081109",
    r"[cC]afé",
    r"\d+ ms\Z",
    r"(?i)kelvin|state",
]


@pytest.mark.parametrize("engine", ENGINES)
def test_realistic_rules_give_the_answer_of_a_re_search_loop(engine: str) -> None:
    check(pats(*RULES), HDFS, engine)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(
    ("regexes", "texts"),
    [
        # anchors: ^, $, \A, \Z, MULTILINE, and $ before a final newline
        ([r"^ab", r"ab$", r"\Aab", r"ab\Z", r"(?m)^cd", r"(?m)ab$"], ["ab", "xab", "abx", "ab\n", "ab\ncd", "x\nab"]),
        # word boundaries
        ([r"\bcat\b", r"\Bat\b", r"cat\B"], ["cat", "concat", "cats", "a cat.", "cat_", "été cat"]),
        # classes, negated classes, dot, dotall, categories under ASCII and Unicode
        (
            [r"a[^b]c", r"a.c", r"(?s)a.c", r"\d\d:\d\d", r"x\s+y", r"(?a)\w\w\w", r"\W\W\W"],
            ["abc", "aXc", "a\nc", "12:34", "x \t y", "١٢:٣٤", "xy", "ééé", "...", "a c"],
        ),
        # case-insensitive literals, classes, and local flags
        (
            [r"(?i)error", r"(?i:warn)ING", r"(?i)[a-c]x", r"ERROR(?-i:x)", r"(?i)straße"],
            ["ERROR", "eRrOr", "WARNING", "warnING", "warning", "Bx", "bX", "ERRORx", "STRASSE", "straẞe"],
        ),
        # Unicode case folding edges: Kelvin sign, long s, dotted/dotless i
        ([r"(?i)k", r"(?i)s", r"(?i)i", r"(?i)\u212a", r"(?i)ſ", r"(?ai)k"], ["K", "k", "\u212a", "ſ", "S", "İ", "ı"]),
        # alternations, optional and counted parts, lazy repeats
        (
            [r"(foo|bar)baz", r"colou?r", r"ab{2,3}c", r"a.*?b", r"(ab)+c", r"x{0,2}yz", r"(?:a|b|)cd"],
            ["barbaz", "foobaz", "color", "colour", "abbc", "abbbbc", "a  b", "ababc", "yz", "cd", "bcd"],
        ),
        # no literal to filter on, or only short ones
        ([r"\d+", r"[A-Z]{3}", r"..", r"x.y", r"\s"], ["", "a", "12", "ABC", "x y", " "]),
        # constructs hyperscan cannot take: lookaround, backreference, possessive, atomic
        (
            [r"foo(?=bar)", r"(?<!x)abc", r"(\w+) \1", r"a++b", r"(?>a|ab)c", r"(a)?(?(1)b|c)"],
            ["foobar", "foobaz", "xabc", "yabc", "hey hey", "a b", "aab", "abc", "ac", "ab", "c"],
        ),
        # patterns that can match the empty string match every text
        ([r"x*", r"^", r"$", r"(?:)", r"\b"], ["", "a", " "]),
        # literals that overlap each other and repeat within a line
        ([r"abcd", r"cdef", r"bc", r"abc", r"defg"], ["abcdefg", "abcabc", "xxcdefxx", "bcbc"]),
        # rewritten ends: runs at the end of a line, of the batch, and mid-line
        (
            [r"blk_\d+", r"a\S+", r"x.+", r"\d{2,}ab", r".*foo", r"x*y", r"[^ ]+z\s*", r"(?i)id=\w+"],
            [
                "blk_1",
                "blk_12x",
                "blk_",
                "xblk_9 y",
                "ab a",
                "a",
                "ax",
                "x",
                "xy",
                "12ab",
                "1ab",
                "foo",
                "y",
                "zz",
                "a z",
                "ID=",
                "id=_",
            ],
        ),
        # control characters: Python's \s also takes \x1c-\x1f; NUL and DEL are ordinary
        (
            [r"a\sb", r"a\Sb", r"a.b", r"\x00", r"[\x7f]", r"\W"],
            ["a\x1cb", "a\x1fb", "a\x00b", "a\rb", "\x7f", "a\x0bb"],
        ),
        # a literal newline, tabs, backslashes and regex metacharacters in text
        ([r"a\nb", r"\\d", r"\[x\]", r"\t", re.escape("a.b*c")], ["a\nb", "\\d", "[x]", "\t", "a.b*c", "axbbc"]),
    ],
)
def test_matches_like_re_search(engine: str, regexes: list[str], texts: list[str]) -> None:
    check(pats(*regexes), texts, engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_ignore_case_flag_of_a_pattern(engine: str) -> None:
    check(
        pats("timeout", r"conn\w+ (refused|reset)", ignore_case=True) + pats("TIMEOUT", first=20),
        ["TimeOut", "CONNECTION RESET", "timeout", "TIMEOUT", "ti\u212aeout"],
        engine,
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_surrogates_and_astral_characters(engine: str) -> None:
    check(pats("ab", r"\ud800", "😀x", r"(?i)😀X"), ["ab\ud800", "😀x", "😀X", "a😀b"], engine)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_patterns_and_no_texts(engine: str) -> None:
    m = MultiMatcher([], engine=engine)  # type: ignore[arg-type]
    assert m.match("anything") == ()
    assert m.match_many(["a", "b"]) == [(), ()]
    assert MultiMatcher(pats("a"), engine=engine).match_many([]) == []  # type: ignore[arg-type]


@pytest.mark.skipif(not (LOGHUB / "HDFS" / "HDFS_2k.log").is_file(), reason=f"Loghub samples not found at {LOGHUB}")
@pytest.mark.parametrize("engine", ENGINES)
def test_benchmark_rules_on_hdfs_lines_match_like_re_search(engine: str) -> None:
    spec = importlib.util.spec_from_file_location("bench_log_rules", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    lines = bench.make_lines(LOGHUB / "HDFS" / "HDFS_2k.log", 6000)
    patterns = [Pattern(k, rx, ic) for k, (rx, ic) in enumerate(bench.RULES)]
    m = MultiMatcher(patterns, engine=engine)  # type: ignore[arg-type]
    want = [expected(patterns, t) for t in lines]
    assert sum(map(bool, want)) > 1000  # many lines match: a real test of the batch path
    assert m.match_many(lines[:2500]) + m.match_many(lines[2500:]) == want
    assert [m.match(t) for t in lines[:500]] == want[:500]


def test_keys_come_in_pattern_order_not_key_order() -> None:
    m = MultiMatcher([Pattern(5, "b"), Pattern(1, "a"), Pattern(3, "c")], engine="python")
    assert m.match("abc") == (5, 1, 3)


def test_a_pattern_that_is_its_literal_runs_no_regex() -> None:
    plan = match._plan(match._parser.parse(r"(?i)connection (refused|reset)", 0))
    assert plan.exact and plan.literals == (("connection refused", True), ("connection reset", True))
    plan = match._plan(match._parser.parse(r"PacketResponder \d+ for block .* terminating", 0))
    assert not plan.exact and plan.literals == (("PacketResponder ", False),)


@pytest.mark.skipif("hyperscan" not in ENGINES, reason="hyperscan is not installed")
def test_hyperscan_takes_what_it_can_and_python_the_rest() -> None:
    # a backreference, lookahead, empty match, and a repeat bound hyperscan refuses
    m = MultiMatcher(pats("Exception", r"(\w+) \1", r"(?i)timeout", r"foo(?=bar)", r"x*", r"xa{2,70000}"))
    assert m.engine == "hyperscan"
    assert m.python_keys == (11, 13, 14, 15)
    assert m.match_many(["xaa Exception", "hey hey", "x", "foobar TimeOut"]) == [
        (10, 14, 15),
        (11, 14),
        (14,),
        (12, 13, 14),
    ]
    assert MultiMatcher(pats("a"), engine="python").engine == "python"


def test_ascii_case_folding_is_lowering() -> None:
    # the Python engine finds case-insensitive literals in the lowered text of ASCII lines
    for a in map(chr, range(128)):
        for b in map(chr, range(128)):
            assert bool(re.fullmatch(re.escape(a), b, re.IGNORECASE)) == (a.lower() == b.lower())


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        (Pattern(7, "disk (full"), ["log pattern 7", "'disk (full'", "missing )"]),
        (Pattern(8, "a{2,1}"), ["log pattern 8", "min repeat greater than max repeat"]),
        (Pattern(9, r"\p{L}"), ["log pattern 9", "bad escape"]),
    ],
)
def test_bad_regex_names_key_pattern_and_reason(pattern: Pattern, words: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        MultiMatcher([Pattern(1, "ok"), pattern])
    for w in words:
        assert w in str(e.value)


def test_duplicate_keys_and_unknown_engine_are_refused() -> None:
    with pytest.raises(ConfigError, match="key is given twice"):
        MultiMatcher([Pattern(1, "a"), Pattern(1, "b")])
    with pytest.raises(ConfigError, match="engine"):
        MultiMatcher([], engine="pcre")  # type: ignore[arg-type]


def test_insisting_on_hyperscan_without_it_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(match, "_hs", None)
    with pytest.raises(ConfigError, match=r"flowsight\[hyperscan\]"):
        MultiMatcher([], engine="hyperscan")
    assert MultiMatcher(pats("a")).engine == "python"


# --- Hypothesis: random regexes from log-ish pieces against random texts ------

ALPHABET = "abcAB Kk01_-.:/\t\r\x00\x1cé\u212a"
atoms = st.one_of(
    st.sampled_from(
        [
            "a",
            "b",
            "c",
            "A",
            "B",
            "k",
            "K",
            "0",
            "1",
            " ",
            "_",
            "-",
            ":",
            "é",
            "\u212a",
            r"\.",
            r"\d",
            r"\w",
            r"\s",
            r"\W",
            r"\S",
            r"\D",
            ".",
            "[ab]",
            "[^a ]",
            "[a-c0-9]",
            "[A-Z_]",
        ]
    ),
    st.text(alphabet="abcAB01 ", min_size=2, max_size=5).map(re.escape),
)


def _regex(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(children, min_size=1, max_size=4).map("".join),
        st.lists(children, min_size=2, max_size=3).map(lambda xs: "(?:" + "|".join(xs) + ")"),
        st.tuples(children, st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "+?", "*?"])).map(
            lambda t: "(?:" + t[0] + ")" + t[1]
        ),
        st.tuples(st.sampled_from(["(?i:", "(?-i:", "(?a:", "(?s:", "("]), children).map(lambda t: t[0] + t[1] + ")"),
    )


regexes = st.recursive(atoms, _regex, max_leaves=8).flatmap(
    lambda body: st.tuples(
        st.sampled_from(["", "^", r"\b", "(?i)", r"\A", "(?m)^"]),
        st.just(body),
        st.sampled_from(["", "$", r"\b", r"\Z", r"\B"]),
    ).map("".join)
)
texts = st.text(alphabet=ALPHABET + "\n", max_size=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rules=st.lists(st.tuples(regexes, st.booleans()), min_size=1, max_size=6),
    lines=st.lists(texts, min_size=1, max_size=8),
)
def test_any_rules_on_any_lines_match_like_re_search(rules: list[tuple[str, bool]], lines: list[str]) -> None:
    patterns = [Pattern(i, rx, ic) for i, (rx, ic) in enumerate(rules)]
    for engine in ENGINES:
        check(patterns, lines, engine)
