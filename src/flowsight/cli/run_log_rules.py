"""Log alert rules for ``flowsight run``: its command's lines checked as they come.

Where the rules come from: ``--rules FILE`` (a file in ``flowsight.toml`` 's
format: its ``[[log_rules]]``, and for a local store its ``[[receivers]]``,
``[route]`` and ``[[inhibit_rules]]``); without it, when the run goes to a
local store, ``$FLOWSIGHT_CONFIG`` or ``./flowsight.toml`` if it has log rules
(one that cannot be read is a warning: the command runs, unchecked).
A run sent to a server (``--url``) is checked by the server's own rules, so
there only an explicit ``--rules`` is checked here as well.

Where the alerts go:

* with a server, to ``POST /api/v1/alerts``: its alert manager deduplicates,
  groups, silences and delivers them (a server that does not answer: said
  on stderr, the run goes on);
* with a local store, to an alert manager of this process whose routes send
  at once (no ``group_wait``: the command may end any moment), with the
  file's receivers; its notifications go through the store's outbox (leased,
  so a ``flowsight serve`` on the same database never sends one twice), and
  its alerts are kept in the store (``flowsight alerts`` lists them).

At the command's end, what the rules still owe is sent before flowsight exits.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from flowsight.alerting.delivery import Dispatcher
from flowsight.alerting.manager import AlertManager
from flowsight.config import Config, build_notifier, config_or_default, load_config
from flowsight.model.alerts import Alert
from flowsight.logs.analyzer import LogAnalyzer
from flowsight.logs.entries import LogEntry
from flowsight.model.alerts.routing import Route
from flowsight.monitors.log import LogMonitor
from flowsight.store.opener import open_store

__all__ = ["RunRules", "rules_config"]


#: how often time-based rules (absence) are looked at and due notifications sent
TICK = 1.0
#: how long flowsight waits at exit for the last notifications
FLUSH_TIMEOUT = 10.0


def _say(what: str) -> None:
    """A problem of the rules, told on stderr as ``flowsight run`` tells its own
    (the command goes on); defined here so that this module does not import
    :mod:`flowsight.cli.run`, which imports it."""
    print(f"flowsight: {what}", file=sys.stderr, flush=True)


def rules_config(rules_file: str | None, *, to_server: bool) -> Config | None:
    """The configuration whose log rules a run is checked against, or None
    (see the module docstring).

    Raises:
        ConfigError: ``rules_file`` is missing or invalid (every problem listed).
    """
    if rules_file is not None:
        return load_config(rules_file)
    if to_server:
        return None
    config = config_or_default(None, _say, "its log rules")
    return config if config.log_rules else None


def _at_once(route: Route) -> Route:
    return replace(route, group_wait=0.0, routes=tuple(_at_once(r) for r in route.routes))


class RunRules:
    """The rules of ``config`` over the log entries of one run.

    ``server``: the URL alerts are posted to (with ``token``); otherwise
    ``db_url`` is the store the alerts and their notifications go to.
    """

    def __init__(
        self,
        config: Config,
        *,
        server: str | None = None,
        token: str | None = None,
        db_url: str | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self._raised: list[Alert] = []
        self.monitor = LogMonitor(
            log_analyzer=LogAnalyzer(),
            alert_rules=config.make_log_rules(),
            send_alert=self._raised.append,
            clock=clock,
            external_url=config.external_url,
        )
        self.raised = 0  # alerts the rules raised
        self._server = server.rstrip("/") if server else None
        self._http = (
            httpx.AsyncClient(
                headers={"Authorization": f"Bearer {token}"} if token else {}, timeout=10.0, transport=transport
            )
            if self._server
            else None
        )
        self._store = open_store(db_url) if self._server is None else None
        self.manager: AlertManager | None = None
        self.dispatcher: Dispatcher | None = None
        if self._store is not None:
            self.manager = AlertManager(
                _at_once(config.route),
                inhibit_rules=config.inhibit_rules,
                flap_policy=config.flap_policy,
                clock=clock,
                dependencies=config.dependencies(),
            )
            notifiers = {rc.name: build_notifier(rc, config.external_url) for rc in config.receivers}
            self.dispatcher = Dispatcher(self._store, notifiers, clock=clock)

    def observe(self, entry: LogEntry) -> None:
        """Check ``entry`` against every rule (what they raise goes out at the next :meth:`step`)."""
        self.monitor.analyze_log(entry)

    async def run(self, stop: asyncio.Event) -> None:
        """Every `TICK` seconds, :meth:`step`, until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), TICK)
            except TimeoutError:
                pass
            try:
                await self.step()
            except Exception as exc:  # a failed round must not end the run; the next one tries again
                _say(f"log rules: {exc}")

    async def step(self) -> None:
        """Hand what the rules raised (and time-based rules now owe) to the
        server or to the local alert manager, and send what is due."""
        now = self.clock()
        self.monitor.tick(now)
        raised, self._raised[:] = self._raised[:], []
        self.raised += len(raised)
        if self._http is not None:
            if raised:
                await self._post(raised)
            return
        assert self.manager is not None and self.dispatcher is not None and self._store is not None
        for alert in raised:
            self.manager.send_alert(alert)
        notes = self.manager.tick(now)
        if notes:
            self.dispatcher.enqueue(notes)  # in the outbox before the alerts' state says they were told
        if notes or raised:
            self._store.alerts.save_alerts(self.manager.snapshot(), now, replace=False)
        await self.dispatcher.run_once()  # now: what was just enqueued is due

    async def close(self) -> None:
        """The last round (at the command's end), within `FLUSH_TIMEOUT` seconds; then let go."""
        try:
            await asyncio.wait_for(self.step(), FLUSH_TIMEOUT)
        except TimeoutError:
            _say(
                f"log rules: the last alerts were not all delivered within {FLUSH_TIMEOUT:g}s; "
                "they wait in the store's outbox for the next sender"
            )
        except Exception as exc:
            _say(f"log rules: {exc}")
        finally:
            if self._http is not None:
                await self._http.aclose()
            if self.dispatcher is not None:
                self.dispatcher.close()
            if self._store is not None:
                self._store.close()

    async def _post(self, alerts: list[Alert]) -> None:
        assert self._http is not None
        body = [
            {
                "labels": dict(a.labels),
                "annotations": dict(a.annotations),
                "severity": a.severity.value,
                "source": a.source,
                "starts_at": a.starts_at,
                "ends_at": a.ends_at,
                "link": a.link,
            }
            for a in alerts
        ]
        try:
            response = await self._http.post(f"{self._server}/api/v1/alerts", json=body)
        except httpx.HTTPError as exc:
            _say(f"log rules: {len(alerts)} alert(s) not delivered to {self._server}: {exc}")
            return
        if response.status_code >= 300:
            _say(
                f"log rules: {len(alerts)} alert(s) refused by {self._server}: HTTP {response.status_code} "
                f"{response.text[:200]}"
            )
