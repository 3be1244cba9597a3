"""``flowsight.toml``: loading and checking the configuration.

>>> cfg = load_config("flowsight.toml")          # raises ConfigFileError listing every problem
>>> notifiers = {rc.name: build_notifier(rc, cfg.external_url) for rc in cfg.receivers}

Modules: :mod:`~flowsight.config.schema` (:class:`Config` and the reading of
each section), :mod:`~flowsight.config.receivers` (reading
``[[alerting.receivers]]``, :func:`build_notifier`), :mod:`~flowsight.config.logs` (``[logs]``
and ``[[log_rules]]``: ``cfg.make_log_rules()`` gives ready
:class:`~flowsight.logs.alert_rules.LogAlertRule` objects), :mod:`~flowsight.options.fields` (field
converters and problem collection), :mod:`~flowsight.options.locate` (the
line of every field, which :mod:`tomllib` does not keep).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowsight.errors import ConfigError

from flowsight.options.fields import Problem
from flowsight.config.logs import LogRuleConfig, LogSettings, LogSource
from flowsight.config.receivers import ReceiverConfig, build_notifier, kinds
from flowsight.config.schema import Config, ConfigFileError, load_config, parse_config

CONFIG_ENV = "FLOWSIGHT_CONFIG"
DEFAULT_FILE = "flowsight.toml"


def __getattr__(name: str) -> Any:
    # KINDS, the receiver kinds, comes from their one table
    # (flowsight.alerting.notifiers.KINDS), read when asked for: importing
    # it with this package would be an import cycle
    if name == "KINDS":
        return kinds()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def default_config_path() -> Path:
    """``$FLOWSIGHT_CONFIG`` when set, else ``./flowsight.toml`` (which may not exist)."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_FILE)


def config_for(given: str | None) -> Config:
    """The configuration to run with: the file given (``--config``), else
    ``$FLOWSIGHT_CONFIG``, else ``./flowsight.toml`` if there is one, else
    :meth:`Config.default`. A file named but missing is an error.

    Raises:
        ConfigError: the file is missing or invalid (every problem listed).
    """
    if given or os.environ.get(CONFIG_ENV):
        return load_config(Path(given) if given else default_config_path())
    default = Path(DEFAULT_FILE)
    return load_config(default) if default.is_file() else Config.default()


def config_or_default(
    given: str | os.PathLike[str] | None, warn: Callable[[str], None], without: str = "its settings"
) -> Config:
    """As :func:`config_for`, but a configuration nobody named on the command
    line (``$FLOWSIGHT_CONFIG`` or ``./flowsight.toml``) that cannot be read
    is told to ``warn`` and replaced by :meth:`Config.default`: a typo there
    must not stop a wrapped command or a cron job. ``without``: what the
    warning says is done without.

    Raises:
        ConfigError: ``given`` (named on the command line) is missing or invalid.
    """
    if given:
        return config_for(str(given))
    try:
        return config_for(None)
    except ConfigError as exc:
        warn(
            f"warning: {default_config_path()} cannot be used; going on without {without} "
            f"(flowsight check lists its problems):\n{exc}"
        )
        return Config.default()


__all__ = [
    "CONFIG_ENV",
    "DEFAULT_FILE",
    "KINDS",
    "Config",
    "ConfigFileError",
    "LogRuleConfig",
    "LogSettings",
    "LogSource",
    "Problem",
    "ReceiverConfig",
    "build_notifier",
    "config_for",
    "config_or_default",
    "default_config_path",
    "load_config",
    "parse_config",
]
