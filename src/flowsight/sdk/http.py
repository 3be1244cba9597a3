"""Sending the SDK's events to a ``flowsight serve``: spool first, then POST.

The writer thread hands each batch to :meth:`HttpSink.write`, which encodes it
(JSON array, gzip) and writes it to the disk :class:`~flowsight.sdk.spool.Spool`
— nothing else, so the writer never waits on the network. A sender thread
POSTs the spooled segments to ``/api/v1/events``, oldest first, and deletes
each one only after the server answered 200. Event ids are fixed before
spooling, so a segment sent again after a crash (of either side) is a
duplicate on the server, never counted twice.

Log entries travel the same way, through a sink of their own
(``path=LOGS_PATH``, their own encoder, their own spool directory
``<spool>/logs``): see :mod:`flowsight.sdk.logs`.

What an answer means is decided by two pure functions, :func:`verdict` (status
-> deliver, retry, split, keep for a good token, give up) and :func:`retry_delay` (attempt -> seconds,
exponential with jitter).
"""

from __future__ import annotations

import gzip
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

import httpx
import msgspec

from flowsight import __version__
from flowsight.errors import ConfigError
from flowsight.sdk.spool import DEFAULT_MAX_BYTES, Segment, Spool, count_of, spool_dir_for
from flowsight.sdk.transport import sdk_thread

log = logging.getLogger("flowsight.sdk")

ENV_URL = "FLOWSIGHT_URL"
ENV_TOKEN = "FLOWSIGHT_TOKEN"
EVENTS_PATH = "/api/v1/events"
LOGS_PATH = "/api/v1/logs"


def normalize_url(url: str) -> str:
    """The server's base URL (``http[s]://host[:port][/prefix]``, no trailing
    slash; a URL ending in ``/api/v1/events`` is taken for its base).

    Raises:
        ConfigError: not an http(s) URL with a host.
    """
    text = url.strip().rstrip("/")
    if text.endswith(EVENTS_PATH):
        text = text[: -len(EVENTS_PATH)]
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - read for its check: a port that is not a number raises here
        well_formed = not any(c.isspace() for c in text)
    except ValueError:
        well_formed = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not well_formed:
        raise ConfigError(
            f"server URL {url!r}: write it as http://host:port (or https://...), "
            f"e.g. http://127.0.0.1:8640 for a local `flowsight serve`; several replicas as "
            f"http://a:8640,http://b:8640"
        )
    return text


def normalize_urls(text: str) -> list[str]:
    """Several servers, replicas of one service, written ``URL,URL,...``:
    each normalized (:func:`normalize_url`), in order, once.

    Raises:
        ConfigError: no URL, or one that is not an http(s) URL with a host.
    """
    urls: list[str] = []
    for part in text.split(","):
        if part.strip() and (url := normalize_url(part)) not in urls:
            urls.append(url)
    if not urls:
        raise ConfigError(
            f"server URL {text!r}: write it as http://host:port, or several as http://a:8640,http://b:8640"
        )
    return urls


def spool_key(text: str) -> str:
    """What a spool is kept for: the servers in any order (the same replicas
    listed again in another order find what an earlier process left)."""
    return ",".join(sorted(normalize_urls(text)))


# ---- decisions --------------------------------------------------------------
class Verdict(str, Enum):
    DELIVERED = "delivered"  # the server took the batch (each event accepted, duplicate or rejected)
    RETRY = "retry"  # try the same batch again later: server busy, down or failing
    SPLIT = "split"  # too big for the server: send it in halves
    UNAUTHORIZED = "unauthorized"  # 401/403: the token is wrong, not the data: keep it, say so, try again
    PERMANENT = "permanent"  # the server refuses the batch as sent: report it, do not send it again


def verdict(status: int, count: int) -> Verdict:
    """What to do with a batch of ``count`` events the server answered ``status`` to."""
    if 200 <= status < 300:
        return Verdict.DELIVERED
    if status == 429 or status >= 500 or status == 408:
        return Verdict.RETRY
    if status == 413 and count > 1:
        return Verdict.SPLIT
    if status in (401, 403):
        return Verdict.UNAUTHORIZED
    return Verdict.PERMANENT


def retry_delay(
    attempt: int, rand: float, *, base: float = 0.25, cap: float = 10.0, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, ...).

    Exponential (``base * 2**(attempt-1)``, at most ``cap``) with "equal
    jitter": half of it fixed, the other half scaled by ``rand`` in [0, 1), so
    clients that failed together do not come back together. A server's
    ``Retry-After`` raises it (still at most ``cap``).
    """
    exp = min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 62))
    delay = exp / 2 + exp / 2 * rand
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return min(delay, cap)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: rare; the backoff applies


def _message(response: httpx.Response) -> str:
    """The server's reason: its JSON ``error``, else the start of the body."""
    try:
        data = response.json()
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return str(data["error"])
    except ValueError:
        pass
    return response.text[:300].strip() or response.reason_phrase


# ---- the sink ----------------------------------------------------------------
@dataclass(frozen=True)
class HttpOptions:
    """Tuning for :class:`HttpSink`; the defaults suit most programs."""

    timeout: float = 10.0  # seconds for a request (read, write)
    connect_timeout: float = 3.0
    retry_base: float = 0.25  # first retry after 0.125-0.25 s, doubling ...
    retry_max_delay: float = 10.0  # ... up to this
    max_body_bytes: int = 4 * 1024 * 1024  # uncompressed JSON per request; bigger batches are split
    gzip_level: int = 1  # fast: the writer thread compresses
    exit_timeout: float = 5.0  # at exit, how long to keep sending while the server answers
    rescan_every: float = 2.0  # idle: look for segments other processes left
    spool_max_bytes: int = DEFAULT_MAX_BYTES


@dataclass
class DeliveryStats:
    """Counters of one sink (read them for metrics)."""

    requests: int = 0
    accepted: int = 0  # stored by the server
    duplicates: int = 0  # the server had them already (a re-send): not counted twice
    rejected: int = 0  # refused one by one inside a 200 (logged; not re-sent)
    failed: int = 0  # in batches the server refused as a whole, 4xx (logged; not re-sent)
    retries: int = 0  # failed attempts that will be tried again


_enc = msgspec.json.Encoder()
_raw_list = msgspec.json.Decoder(list[msgspec.Raw])


class _Answer(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: int
    results: list[dict[str, Any]] = []


_answer = msgspec.json.Decoder(_Answer)
_NEXT, _RESCAN, _RETRY = "next", "rescan", "retry"  # what the sender does after a segment
#: the servers whose refusal of the token this process has told (once each: one error per outage)
_told_unauthorized: set[str] = set()

T = TypeVar("T")


class HttpSink(Generic[T]):
    """A :class:`~flowsight.sdk.transport.Sink` that delivers to the server at
    ``url`` through a disk spool (module docstring). ``token`` is sent as
    ``Authorization: Bearer``. ``spool`` defaults to one in
    :func:`~flowsight.sdk.spool.spool_dir_for` ``(url, spool_root)``.
    ``transport`` (an ``httpx`` transport) and ``rand`` are for tests.

    What it sends: by default events (msgspec structs) to ``/api/v1/events``;
    ``path`` names another ingest endpoint that answers like it, ``encode``
    turns a batch into its JSON array, ``what`` names the items in messages.

    Raises:
        ConfigError: a bad URL, or a spool directory that cannot be used.
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        spool: Spool | None = None,
        spool_root: str | os.PathLike[str] | None = None,
        options: HttpOptions | None = None,
        transport: httpx.BaseTransport | None = None,
        rand: Callable[[], float] = random.random,
        path: str = EVENTS_PATH,
        encode: Callable[[list[T]], bytes] | None = None,
        what: str = "events",
        thread_name: str = "flowsight-sender",
    ) -> None:
        #: the servers, tried in turn: a request that cannot reach one or that it answers with a
        #: retry (5xx, 429) goes to the next at once; the spool waits only once all of them failed
        self.urls = normalize_urls(url)
        self._at = 0  # the server requests go to now
        self.options = opts = options or HttpOptions()
        self.path = path
        self.what = what
        self._encode: Callable[[list[T]], bytes] = encode or _enc.encode
        self._thread_name = thread_name
        self.spool = spool or Spool(
            spool_dir_for(spool_key(self.servers), spool_root),
            max_bytes=opts.spool_max_bytes,
            label=self.servers,
            what=what,
        )
        headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"flowsight-sdk/{__version__}",
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._headers = headers
        self._transport = transport
        self._rand = rand
        self._http: dict[str, httpx.Client] = {}
        self.stats = DeliveryStats()
        #: what went wrong last (None once a batch got through again)
        self.last_error: str | None = None
        #: how many items this sink wrote were still in the spool when it closed
        self.left_in_spool = 0
        self._cond = threading.Condition()
        self._outstanding: set[Path] = set()  # this sink's segments not yet known delivered or dropped
        self._halves: dict[Path, list[Path]] = {}  # segments split on a 413 -> what replaced them
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._failing = False
        self._refused_token = False  # the last answer was a 401 or 403
        self._retry_after: float | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The server requests go to now."""
        return self.urls[self._at]

    @property
    def servers(self) -> str:
        """Every server, as given (``URL,URL,...``)."""
        return ",".join(self.urls)

    @property
    def dropped(self) -> int:
        """Events dropped by this process to keep the spool in its bound."""
        return self.spool.dropped

    # ---- the writer thread's side -----------------------------------------
    def write(self, items: list[T]) -> None:
        if not items:
            return
        for body, count in self._bodies(items):
            path = self.spool.put(gzip.compress(body, self.options.gzip_level, mtime=0), count)
            if path is not None:
                with self._cond:
                    self._outstanding.add(path)
        self._wake.set()

    def _bodies(self, items: list[T]) -> list[tuple[bytes, int]]:
        """JSON arrays of at most ``max_body_bytes`` (unless one item alone is bigger)."""
        body = self._encode(items)
        if len(body) <= self.options.max_body_bytes or len(items) == 1:
            return [(body, len(items))]
        half = len(items) // 2
        return self._bodies(items[:half]) + self._bodies(items[half:])

    # ---- the caller's side ------------------------------------------------
    def adopt_spooled(self) -> int:
        """Count every segment now in the spool (others' left-overs too) as
        this sink's own, so :meth:`wait` and :meth:`close` wait for them;
        the items they hold."""
        found = self.spool.segments()
        with self._cond:
            self._outstanding.update(found)
        self._wake.set()
        return sum(count_of(p.name) for p in found)

    def stopping(self, deadline: float) -> None:
        """Nothing to cut short: what is not sent by exit stays in the spool."""

    def start(self) -> None:
        """Start sending (also what earlier processes left in the spool)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def wait(self, timeout: float | None, *, while_reachable: bool = False) -> bool:
        """Block until every segment this sink wrote so far is delivered (or
        dropped: counted and warned about). False on ``timeout``, or — with
        ``while_reachable`` — as soon as the server is failing."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            pending = set(self._outstanding)
        while True:
            with self._cond:  # a segment split in halves is pending as long as its halves are
                while any(p in self._halves for p in pending):
                    pending = {h for p in pending for h in self._halves.get(p, (p,))}
            pending = {p for p in pending if p.exists()}  # another process may have sent some
            if not pending:
                return True
            if while_reachable and self._failing:
                return False
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            with self._cond:
                self._cond.wait(0.1 if left is None else min(0.1, left))

    def close(self, timeout: float | None = None, *, report: bool = True) -> None:
        """Keep sending for up to ``exit_timeout`` seconds while the server
        answers, then stop; what is left stays in the spool for the next
        process that reports to this URL, counted in `left_in_spool` and
        warned about (unless not ``report``: the caller says it)."""
        hung = False
        if self._thread is not None:
            limit = self.options.exit_timeout if timeout is None else min(timeout, self.options.exit_timeout)
            self.wait(limit, while_reachable=True)
            self._stop.set()
            self._wake.set()
            self._thread.join(1.0)
            # still in a request the server does not answer: not worth holding up the exit for;
            # its segment stays in the spool (deleted only after a 200), the thread is a daemon
            hung = self._thread.is_alive()
            self._thread = None
        with self._cond:
            left = {p for p in self._outstanding if p.exists()}
            self._outstanding.clear()
            self._halves.clear()
        self.left_in_spool = sum(count_of(p.name) for p in left)
        if left and report and not self._refused_token:  # that error said where they are and how to send them
            log.warning(
                "flowsight: %d %s not yet delivered to %s stay in the spool %s (%s); the next process "
                "that reports to this URL sends them",
                self.left_in_spool,
                self.what,
                self.servers,
                self.spool.dir,
                self.last_error or "the server is slow to answer",
            )
        if not hung:
            self._close_clients()

    # ---- the sender thread ------------------------------------------------
    def _run(self) -> None:
        sdk_thread.active = True
        attempt = 0
        try:
            while not self._stop.is_set():
                try:
                    attempt = self._round(attempt)
                except Exception:  # a bug or a broken spool must not end delivery for the life of the process
                    log.exception(
                        "flowsight: the SDK's sender failed; it tries again in %.0fs", self.options.retry_max_delay
                    )
                    self._stop.wait(self.options.retry_max_delay)
        finally:
            # a thread that outlived close()'s wait (a request the server was slow to answer) closes
            # its own connections as it ends: no socket left to the garbage collector
            if self._stop.is_set():
                self._close_clients()

    def _close_clients(self) -> None:
        clients, self._http = self._http, {}
        for client in clients.values():
            client.close()

    def _round(self, attempt: int) -> int:
        """Send the spooled segments, oldest first, until one must wait; then
        wait (backoff, or until there is something new). The next attempt number."""
        self._wake.clear()
        outcome = _NEXT
        for path in self.spool.segments():
            if self._stop.is_set():
                return attempt
            with self.spool.claim(path) as seg:
                if seg is None:
                    continue  # another sender has it, or it is gone
                outcome = self._deliver(seg)
            if outcome is _RETRY:
                break
            attempt = 0
            with self._cond:
                self._outstanding.discard(path)
                self._cond.notify_all()
            if outcome is _RESCAN:
                return attempt  # a split: its halves come next, before younger segments
        if outcome is _RETRY:
            attempt += 1
            self.stats.retries += 1
            with self._cond:
                self._cond.notify_all()
            o = self.options
            self._stop.wait(
                retry_delay(
                    attempt, self._rand(), base=o.retry_base, cap=o.retry_max_delay, retry_after=self._retry_after
                )
            )
        else:
            with self._cond:  # forget what other processes delivered for us
                self._outstanding = {p for p in self._outstanding if p.exists()}
            self._wake.wait(self.options.rescan_every)
        return attempt

    def _client(self) -> httpx.Client:
        client = self._http.get(self.url)
        if client is None:
            o = self.options
            client = self._http[self.url] = httpx.Client(
                base_url=self.url,
                headers=self._headers,
                transport=self._transport,
                timeout=httpx.Timeout(o.timeout, connect=o.connect_timeout),
            )
        return client

    def _post(self, seg: Segment) -> httpx.Response | None:
        """POST the segment to the servers in turn, from the current one, until
        one answers other than "try again"; None when none could be reached."""
        response: httpx.Response | None = None
        for turn in range(len(self.urls)):
            last = turn == len(self.urls) - 1
            try:
                response = self._client().post(self.path, content=seg.body)
            except httpx.TransportError as exc:
                why, response = f"cannot reach {self.url} ({type(exc).__name__}: {exc or 'no detail'})", None
            else:
                if verdict(response.status_code, seg.count) is not Verdict.RETRY:
                    break
                why = f"{self.url} answered {response.status_code}"
            if last:  # every one failed: said once per outage, the segment kept for the backoff
                if response is None:
                    self._trouble(why)
                break
            self._at = (self._at + 1) % len(self.urls)
            log.info("flowsight: %s; trying the next server, %s", why, self.url)
        return response

    def _deliver(self, seg: Segment) -> str:
        """Send one claimed segment: _NEXT, _RESCAN (it was split) or _RETRY
        (kept; ``_retry_after`` holds the server's wish). Deletes it unless
        it is to be retried."""
        self.stats.requests += 1
        self._retry_after = None
        response = self._post(seg)
        if response is None:
            return _RETRY
        v = verdict(response.status_code, seg.count)
        if v is Verdict.UNAUTHORIZED:
            self._unauthorized(response)
            return _RETRY
        if v is Verdict.RETRY:
            self._trouble(f"{self.url} answered {response.status_code}: {_message(response)}")
            self._retry_after = _retry_after(response)
            return _RETRY
        if v is Verdict.SPLIT:
            self._split(seg)
            return _RESCAN
        if v is Verdict.DELIVERED:
            try:
                self._count(_answer.decode(response.content), seg.count)
            except msgspec.DecodeError:
                v = Verdict.PERMANENT  # not flowsight answering: a wrong URL, a proxy
        if v is Verdict.PERMANENT:
            self._refused(response, seg.count)
        self.spool.remove(seg)
        if self._failing:
            log.info("flowsight: %s answers again; sending what was spooled", self.url)
        self._failing = self._refused_token = False
        if v is Verdict.DELIVERED:
            self.last_error = None
        return _NEXT

    def _trouble(self, what: str) -> None:
        if not self._failing:  # once per outage, not once per retry
            self._failing = True
            log.warning(
                "flowsight: %s; %s are kept in the spool %s and sent when it answers (retrying with backoff)",
                what,
                self.what,
                self.spool.dir,
            )
        self.last_error = what

    def _unauthorized(self, response: httpx.Response) -> None:
        """A 401 or 403: a configuration problem to fix, not data to throw
        away. The batch stays in the spool (retried with backoff, so a token
        made on the server later lets it through); one error per process and
        server says why, where the items are and how to send them."""
        why = f"{self.url} refuses the token: {response.status_code} {_message(response)}"
        self._failing = self._refused_token = True
        self.last_error = why
        if self.url not in _told_unauthorized:
            _told_unauthorized.add(self.url)
            log.error(
                "flowsight: %s. Nothing is dropped: what this process sends is kept in the spool %s; set the "
                "right token (FLOWSIGHT_TOKEN, or flowsight.configure(url=..., token=...)) and send it with: "
                "flowsight spool send --url %s (any later process reporting there with a good token sends "
                "it too)",
                why,
                self.spool.dir.parent if self.spool.dir.name == "logs" else self.spool.dir,
                self.url,
            )

    def _count(self, answer: _Answer, count: int) -> None:
        s = self.stats
        s.accepted += answer.accepted
        s.duplicates += answer.duplicates
        s.rejected += answer.rejected
        if answer.rejected:
            errors = [str(r.get("error")) for r in answer.results if r.get("status") == "rejected"][:3]
            more = f" (and {answer.rejected - len(errors)} more)" if answer.rejected > len(errors) else ""
            log.warning(
                "flowsight: %s rejected %d of %d %s; they are not sent again: %s%s",
                self.url,
                answer.rejected,
                count,
                self.what,
                "; ".join(errors),
                more,
            )

    def _refused(self, response: httpx.Response, count: int) -> None:
        status = response.status_code
        if 200 <= status < 300:
            why = f"answered {status} but not with flowsight's ingest answer: is {self.url} a flowsight server?"
        else:
            why = f"refused them: {status} {_message(response)}"
        self.last_error = why
        self.stats.failed += count
        log.warning("flowsight: a batch of %d %s was dropped, not sent again: %s %s", count, self.what, self.url, why)

    def _split(self, seg: Segment) -> None:
        items = _raw_list.decode(gzip.decompress(seg.body))
        half = len(items) // 2
        bodies = [
            (gzip.compress(_enc.encode(part), self.options.gzip_level, mtime=0), len(part))
            for part in (items[:half], items[half:])
        ]
        log.info("flowsight: %s found a batch of %d %s too big; sending it in halves", self.url, seg.count, self.what)
        new = self.spool.split(seg, (bodies[0], bodies[1]))
        with self._cond:
            self._halves[seg.path] = new
            if seg.path in self._outstanding:
                self._outstanding.update(new)
